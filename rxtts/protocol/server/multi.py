"""The ``/ws/tts/multi`` machine and its tables (PROTOCOL 6)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import ClassVar

from rxtts.config import DEFAULT_SCHEDULE, MAX_CONTEXTS, VoiceSettings
from rxtts.errors import ProtocolError
from rxtts.protocol.frames import (
    ClientFrame,
    CloseContextFrame,
    CloseSocketFrame,
    ContextClosedFrame,
    ContextCreatedFrame,
    ContextTimeoutFrame,
    ErrorFrame,
    FinalFrame,
    FlushFrame,
    ServerFrame,
    SessionClosedFrame,
    SettingsUpdatedFrame,
    TextFrame,
    UpdateSettingsFrame,
    WireConfig,
)
from rxtts.protocol.server._core import (
    DEFAULT_INACTIVITY_TIMEOUT,
    AppendText,
    ArmTimer,
    CancelPipeline,
    CancelTimer,
    CloseSocket,
    Command,
    Flush,
    OpenPipeline,
    PipelineState,
    Purge,
    Table,
    _error,
    _Machine,
    _Pipeline,
    _row,
    _send,
    _Step,
    _text_and_flush,
    missing_voice_error,
    protocol_error,
    settings_snapshot,
)

# -- /ws/tts/multi ---------------------------------------------------------------------


class MultiState(Enum):
    """A ``/ws/tts/multi`` socket."""

    OPEN = auto()
    CLOSING = auto()
    """``close_socket`` came; contexts finish, then ``session_closed`` and 1000 (M-8)."""
    CLOSED = auto()


class MultiEvent(Enum):
    """Classified socket-level client frames."""

    CONTEXT_FRAME = auto()
    """A frame naming a ``context_id``: run the context table."""
    PREP = auto()
    """M-3: the context-less ``{"text": "", voice_id, model_id}`` prep frame."""
    CONTEXTLESS_TEXT = auto()
    """Speakable text or a flush without ``context_id``."""
    UPDATE_SETTINGS = auto()
    CLOSE_SOCKET = auto()


class MultiEffect(Enum):
    """What a socket transition does."""

    DISPATCH = auto()
    """Run the context table for the frame's context."""
    MERGE_CONFIG = auto()
    """M-3: session config only."""
    CONTEXT_ID_REQUIRED = auto()
    MERGE_SETTINGS = auto()
    """M-11: applies to later contexts."""
    SETTINGS_UPDATED = auto()
    CLOSE_ALL = auto()
    """M-8: close every open context gracefully."""
    MAYBE_CLOSE = auto()
    """M-8: once no context is open, ``session_closed`` and close 1000."""


_MS, _ME, _MF = MultiState, MultiEvent, MultiEffect
MULTI_SOCKET_TABLE: Table[MultiState, MultiEvent, MultiEffect] = {
    **_row([_MS.OPEN], _ME.CONTEXT_FRAME, None, _MF.DISPATCH, rule="M-5"),
    **_row([_MS.OPEN], _ME.PREP, None, _MF.MERGE_CONFIG, rule="M-3"),
    **_row([_MS.OPEN], _ME.CONTEXTLESS_TEXT, None, _MF.CONTEXT_ID_REQUIRED, rule="M-12"),
    **_row([_MS.OPEN], _ME.UPDATE_SETTINGS, None, _MF.MERGE_SETTINGS, _MF.SETTINGS_UPDATED, rule="M-11"),
    **_row([_MS.OPEN], _ME.CLOSE_SOCKET, _MS.CLOSING, _MF.CLOSE_ALL, _MF.MAYBE_CLOSE, rule="M-8"),
}
"""Executed by :meth:`MultiServer.receive`; nothing is allowed after ``close_socket``."""


class ContextState(Enum):
    """One context id of a multi socket."""

    ABSENT = auto()
    """Unknown (never created, or closed/timed out) with a free slot."""
    NO_SLOT = auto()
    """Unknown while 20 contexts are open (M-9)."""
    OPEN = auto()
    CLOSING = auto()
    """Gracefully closing: its text finishes, then ``final`` and ``context_closed``."""
    DRAINING = auto()
    """Closed gracefully, its ``final``/``context_closed`` queued behind paced audio: the
    slot is held until they are sent, and an immediate close still purges them (M-7)."""


class ContextEvent(Enum):
    """Classified context frames, timers and pipeline events."""

    TEXT = auto()
    """Speakable text (non-blank, or spacing after earlier text), no flush."""
    TEXT_FLUSH = auto()
    VOICELESS = auto()
    """Speakable text for a context without a voice."""
    BLANK = auto()
    """``text: " "``/``""``: create or keep alive (M-1, M-4)."""
    FLUSH = auto()
    CLOSE = auto()
    CLOSE_IMMEDIATE = auto()
    TIMER = auto()
    """The inactivity timer fired for an idle context (M-10)."""
    TIMER_BUSY = auto()
    """It fired while the context still speaks what a flush asked for."""
    FLUSH_DONE = auto()
    LAST_FLUSH_DONE = auto()
    """The last pending FLUSH of a closing context passed."""
    OUTPUT_IDLE = auto()
    """Every frame of a draining context was written."""
    ERROR = auto()


class ContextEffect(Enum):
    """What a context transition does."""

    CREATE = auto()
    """M-1, M-2: bind voice settings, sticky session config, ``context_created``."""
    TOO_MANY = auto()
    """M-9: ``TOO_MANY_CONTEXTS``; the socket survives."""
    APPEND = auto()
    MISSING_VOICE = auto()
    FLUSH = auto()
    CLOSING = auto()
    """Refuse text for a closing context."""
    TOUCH = auto()
    """M-4, M-10: re-arm the inactivity timer from now."""
    CANCEL = auto()
    """M-7: stop synthesis, drop the buffer, purge unsent frames incl. ``final`` (M-7a)."""
    CLOSED_SENT = auto()
    """M-7a: ``context_closed`` billing only the audio written to the socket."""
    CLOSED = auto()
    """``context_closed`` with the usage of all the context's audio."""
    UNKNOWN_CLOSED = auto()
    """M-7: reply even for unknown ids."""
    FINAL = auto()
    """M-6: ``final``; purged by a later immediate close (M-7a)."""
    TIMEOUT = auto()
    ERROR_FRAME = auto()
    """M-12: the error with its ``context_id``."""
    FORGET = auto()
    """Free the slot; disarm the timer; M-8 may now close the socket."""


_CS, _CE, _CF = ContextState, ContextEvent, ContextEffect
_NEW = (_CS.ABSENT,)
_LIVE = (_CS.OPEN, _CS.CLOSING)
CONTEXT_TABLE: Table[ContextState, ContextEvent, ContextEffect] = {
    **_row(_NEW, _CE.TEXT, _CS.OPEN, _CF.CREATE, _CF.APPEND, _CF.TOUCH, rule="M-1, M-2"),
    **_row(_NEW, _CE.TEXT_FLUSH, _CS.OPEN, _CF.CREATE, _CF.APPEND, _CF.FLUSH, _CF.TOUCH, rule="M-1, M-6"),
    **_row(_NEW, _CE.VOICELESS, _CS.OPEN, _CF.CREATE, _CF.MISSING_VOICE, _CF.TOUCH, rule="M-1, 6.1"),
    **_row(_NEW, _CE.BLANK, _CS.OPEN, _CF.CREATE, _CF.TOUCH, rule="M-1, M-4"),
    **_row(_NEW, _CE.FLUSH, _CS.OPEN, _CF.CREATE, _CF.FLUSH, _CF.TOUCH, rule="M-1, M-6"),
    **_row((_CS.NO_SLOT,), _CE.TEXT, None, _CF.TOO_MANY, rule="M-9"),
    **_row((_CS.NO_SLOT,), _CE.TEXT_FLUSH, None, _CF.TOO_MANY, rule="M-9"),
    **_row((_CS.NO_SLOT,), _CE.VOICELESS, None, _CF.TOO_MANY, rule="M-9"),
    **_row((_CS.NO_SLOT,), _CE.BLANK, None, _CF.TOO_MANY, rule="M-9"),
    **_row((_CS.NO_SLOT,), _CE.FLUSH, None, _CF.TOO_MANY, rule="M-9"),
    **_row((_CS.ABSENT, _CS.NO_SLOT), _CE.CLOSE, None, _CF.UNKNOWN_CLOSED, rule="M-7"),
    **_row((_CS.ABSENT, _CS.NO_SLOT), _CE.CLOSE_IMMEDIATE, None, _CF.UNKNOWN_CLOSED, rule="M-7"),
    **_row([_CS.OPEN], _CE.TEXT, None, _CF.APPEND, _CF.TOUCH, rule="M-4"),
    **_row([_CS.OPEN], _CE.TEXT_FLUSH, None, _CF.APPEND, _CF.FLUSH, _CF.TOUCH, rule="M-6"),
    **_row([_CS.OPEN], _CE.VOICELESS, None, _CF.MISSING_VOICE, _CF.TOUCH, rule="6.1"),
    **_row([_CS.OPEN], _CE.BLANK, None, _CF.TOUCH, rule="M-4"),
    **_row([_CS.OPEN], _CE.FLUSH, None, _CF.FLUSH, _CF.TOUCH, rule="M-6"),
    **_row([_CS.OPEN], _CE.CLOSE, _CS.CLOSING, _CF.FLUSH, _CF.TOUCH, rule="M-7"),
    **_row([_CS.CLOSING], _CE.TEXT, None, _CF.CLOSING, rule="M-7"),
    **_row([_CS.CLOSING], _CE.TEXT_FLUSH, None, _CF.CLOSING, rule="M-7"),
    **_row([_CS.CLOSING], _CE.VOICELESS, None, _CF.CLOSING, rule="M-7"),
    **_row([_CS.CLOSING], _CE.BLANK, None, _CF.CLOSING, rule="M-7"),
    **_row([_CS.CLOSING], _CE.FLUSH, None, _CF.CLOSING, rule="M-7"),
    **_row([_CS.CLOSING], _CE.CLOSE, None, rule="M-7"),
    # M-7, M-7a: immediate close wins over a graceful one still finishing.
    **_row(_LIVE, _CE.CLOSE_IMMEDIATE, _CS.ABSENT, _CF.CANCEL, _CF.CLOSED_SENT, _CF.FORGET, rule="M-7, M-7a"),
    **_row([_CS.OPEN], _CE.TIMER, _CS.ABSENT, _CF.CANCEL, _CF.TIMEOUT, _CF.FORGET, rule="M-10"),
    **_row([_CS.OPEN], _CE.TIMER_BUSY, None, _CF.TOUCH, rule="M-10"),
    # M-7: a closing context still owes final + context_closed: no timeout.
    **_row([_CS.CLOSING], _CE.TIMER, None, rule="M-7"),
    **_row([_CS.CLOSING], _CE.TIMER_BUSY, None, rule="M-7"),
    **_row(_LIVE, _CE.FLUSH_DONE, None, _CF.FINAL, rule="M-6"),
    # M-7: context_closed follows the last audio; until it is written the context drains.
    **_row([_CS.CLOSING], _CE.LAST_FLUSH_DONE, _CS.DRAINING, _CF.FINAL, _CF.CLOSED, rule="M-7"),
    **_row([_CS.DRAINING], _CE.OUTPUT_IDLE, _CS.ABSENT, _CF.FORGET, rule="M-7"),
    # M-7, M-7a: an immediate close of a draining context stops its paced audio at once.
    **_row(
        [_CS.DRAINING], _CE.CLOSE_IMMEDIATE, _CS.ABSENT, _CF.CANCEL, _CF.CLOSED_SENT, _CF.FORGET, rule="M-7a"
    ),
    **_row([_CS.DRAINING], _CE.CLOSE, None, rule="M-7"),
    **_row([_CS.DRAINING], _CE.TEXT, None, _CF.CLOSING, rule="M-7"),
    **_row([_CS.DRAINING], _CE.TEXT_FLUSH, None, _CF.CLOSING, rule="M-7"),
    **_row([_CS.DRAINING], _CE.VOICELESS, None, _CF.CLOSING, rule="M-7"),
    **_row([_CS.DRAINING], _CE.BLANK, None, _CF.CLOSING, rule="M-7"),
    **_row([_CS.DRAINING], _CE.FLUSH, None, _CF.CLOSING, rule="M-7"),
    **_row([_CS.DRAINING], _CE.TIMER, None, rule="M-7"),
    **_row([_CS.DRAINING], _CE.TIMER_BUSY, None, rule="M-7"),
    **_row(_LIVE, _CE.ERROR, _CS.ABSENT, _CF.ERROR_FRAME, _CF.CANCEL, _CF.CLOSED, _CF.FORGET, rule="M-12"),
}
"""Executed by :meth:`MultiServer.receive`, ``timer_fired``, ``flush_done``, ``error``."""


@dataclass(slots=True)
class _CtxStep(_Step):
    text: str = ""
    config: WireConfig = field(default_factory=WireConfig)
    voice: VoiceSettings | None = None


@dataclass(slots=True)
class MultiServer(_Machine):
    """The ``/ws/tts/multi`` machine: up to 20 keyed contexts (PROTOCOL 6)."""

    config: WireConfig = field(default_factory=WireConfig)
    max_contexts: int = MAX_CONTEXTS
    default_voice_id: int | None = None
    """Voice for a context created without one; its text is still refused with
    ``MISSING_VOICE_ID`` (PROTOCOL 6.1), but its pipeline needs some voice."""
    default_inactivity_timeout: float = DEFAULT_INACTIVITY_TIMEOUT
    state: MultiState = MultiState.OPEN
    output_busy: set[str] = field(default_factory=set)
    """Contexts whose audio is still made or unsent (:meth:`output_idle`)."""

    INTERLEAVED: ClassVar[bool] = True

    def lane(self, frame: ServerFrame) -> str | None:
        """PROTOCOL M-5: per-context order, contexts interleave; socket frames
        (``session_closed``, settings acks) overtake nothing."""
        context_id: str | None = getattr(frame, "context_id", None)
        return context_id

    def pace_key(self, key: str) -> str:
        """Each context is its own speaker (PROTOCOL 6.1: one plays, another pre-buffers)."""
        return key

    @property
    def closing_socket(self) -> bool:
        """Whether ``close_socket`` came."""
        return self.state is not MultiState.OPEN

    @property
    def closed(self) -> bool:
        """Whether the M-8 close was issued."""
        return self.state is MultiState.CLOSED

    @property
    def open_contexts(self) -> list[str]:
        """Ids of contexts holding a slot, in creation order."""
        return [k for k, p in self.pipelines.items() if p.live]

    @property
    def inactivity_timeout(self) -> float:
        """Seconds an idle context lives (PROTOCOL M-10, U-8: the client's value first)."""
        return self.config.inactivity_timeout or self.default_inactivity_timeout

    def context_state(self, cid: str) -> ContextState:
        """The state of ``cid`` as the context table sees it."""
        p = self._live(cid)
        if p is None:
            full = len(self.open_contexts) >= self.max_contexts
            return ContextState.NO_SLOT if full else ContextState.ABSENT
        if p.state is PipelineState.DRAINING:
            return ContextState.DRAINING
        return ContextState.CLOSING if p.state is PipelineState.ENDING else ContextState.OPEN

    # -- client frames ----------------------------------------------------------------

    def receive(self, frame: ClientFrame, now: float = 0.0) -> list[Command]:
        """Commands for one decoded client frame."""
        event = self._classify(frame)
        row = MULTI_SOCKET_TABLE.get((self.state, event)) if event is not None else None
        if row is None:
            where = "after close_socket" if self.closing_socket else "on /ws/tts/multi"
            cid = getattr(frame, "context_id", None)
            return [_send(protocol_error(f"{type(frame).__name__} is not allowed {where}", cid))]
        step = _Step(frame, now=now)
        for effect in row.effects:
            _MULTI_EFFECTS[effect](self, step)
        if self.state is MultiState.OPEN:  # CLOSE_ALL/MAYBE_CLOSE move it on themselves
            self.state = row.next
        return step.cmds

    @staticmethod
    def _classify(frame: ClientFrame) -> MultiEvent | None:
        match frame:
            case TextFrame(context_id=None):
                speakable = bool(frame.text.strip()) or bool(frame.flush)
                return MultiEvent.CONTEXTLESS_TEXT if speakable else MultiEvent.PREP
            case TextFrame() | FlushFrame() | CloseContextFrame() if frame.context_id is not None:
                return MultiEvent.CONTEXT_FRAME
            case UpdateSettingsFrame():
                return MultiEvent.UPDATE_SETTINGS
            case CloseSocketFrame():
                return MultiEvent.CLOSE_SOCKET
        return None

    def _dispatch(self, step: _Step) -> None:
        frame = step.frame
        match frame:
            case CloseContextFrame(context_id=cid, immediate=immediate):
                event = ContextEvent.CLOSE_IMMEDIATE if immediate else ContextEvent.CLOSE
                step.cmds += self._context(cid, event, _CtxStep(frame, cid, step.now))
            case TextFrame(context_id=str(cid)) | FlushFrame(context_id=str(cid)):
                text, flush = _text_and_flush(frame)
                voice = frame.voice_settings if isinstance(frame, TextFrame) else None
                ctx = _CtxStep(frame, cid, step.now, text=text, config=frame.config, voice=voice)
                step.cmds += self._context(
                    cid, self._classify_text(cid, text, flush, frame.config, voice), ctx
                )

    def _classify_text(
        self, cid: str, text: str, flush: bool, config: WireConfig, voice: VoiceSettings | None
    ) -> ContextEvent:
        p = self._live(cid)
        # M-4: blank text makes no audio; spacing between tokens of a context is kept.
        speakable = bool(text.strip()) or bool(text and p is not None and p.characters)
        if not speakable:
            return ContextEvent.FLUSH if flush else ContextEvent.BLANK
        if p is not None:
            voice_id = p.config.voice_id
        elif voice is not None and voice.voice_id is not None:
            voice_id = voice.voice_id
        else:  # PROTOCOL 6.1: the session default is the top-level voice_id of a frame
            voice_id = self.config.merged(config).voice_id
        if voice_id is None:
            return ContextEvent.VOICELESS
        return ContextEvent.TEXT_FLUSH if flush else ContextEvent.TEXT

    def _merge_config(self, step: _Step) -> None:
        assert isinstance(step.frame, TextFrame)
        self.config = self.config.merged(step.frame.config)

    def _context_id_required(self, step: _Step) -> None:
        err = ProtocolError("context_id is required", error_code="VALIDATION_ERROR")
        step.cmds.append(_error(err))

    def _merge_settings(self, step: _Step) -> None:
        assert isinstance(step.frame, UpdateSettingsFrame)
        self.config = self.config.merged(step.frame.settings)

    def _settings_updated(self, step: _Step) -> None:
        step.cmds.append(_send(SettingsUpdatedFrame(settings_snapshot(self.config))))

    def _close_all(self, step: _Step) -> None:
        self.state = MultiState.CLOSING
        for cid in self.open_contexts:
            step.cmds += self._context(cid, ContextEvent.CLOSE, _CtxStep(key=cid, now=step.now))

    def _maybe_close(self, step: _Step) -> None:
        if self.state is MultiState.CLOSING and not self.open_contexts:
            self.state = MultiState.CLOSED
            step.cmds += [_send(SessionClosedFrame()), CloseSocket(1000)]

    # -- the context table -------------------------------------------------------------

    def _context(self, cid: str, event: ContextEvent, step: _CtxStep) -> list[Command]:
        row = CONTEXT_TABLE.get((self.context_state(cid), event))
        if row is None:
            return []  # a late pipeline event of a context that is gone
        for effect in row.effects:
            _CONTEXT_EFFECTS[effect](self, cid, step)
        p = self.pipelines.get(cid)
        if p is not None and row.next is ContextState.CLOSING:
            p.state = PipelineState.ENDING
        elif p is not None and row.next is ContextState.DRAINING:
            p.state = PipelineState.DRAINING
        return step.cmds

    def _c_create(self, cid: str, step: _CtxStep) -> None:
        # PROTOCOL M-2: session keys from the creating frame are sticky for the socket.
        self.config = self.config.merged(step.config)
        voice = step.voice
        bound = WireConfig(
            voice_id=voice.voice_id if voice and voice.voice_id is not None else None,
            cfg_scale=voice.cfg_scale if voice else None,
            max_new_tokens=voice.max_new_tokens if voice else None,
            chunk_length_schedule=self.config.chunk_length_schedule or DEFAULT_SCHEDULE,
        )
        # PROTOCOL 6.1: the voice binds only from voice_settings.
        p = _Pipeline(cid, self.config.merged(bound), context_id=cid)
        self.pipelines[cid] = p
        config = p.config
        if config.voice_id is None and self.default_voice_id is not None:
            config = config.merged(WireConfig(voice_id=self.default_voice_id))
        step.cmds += [OpenPipeline(cid, config, voice), _send(ContextCreatedFrame(cid))]

    def _c_too_many(self, cid: str, step: _CtxStep) -> None:
        self.config = self.config.merged(step.config)
        err = ErrorFrame("Too many concurrent contexts", "TOO_MANY_CONTEXTS", 429, context_id=cid)
        step.cmds.append(_send(err))

    def _c_append(self, cid: str, step: _CtxStep) -> None:
        p = self.pipelines[cid]
        p.characters += len(step.text)
        p.text += step.text
        step.cmds.append(AppendText(cid, step.text))

    def _c_missing_voice(self, cid: str, step: _CtxStep) -> None:
        step.cmds.append(_send(missing_voice_error(cid)))

    def _c_flush(self, cid: str, step: _CtxStep) -> None:
        self.pipelines[cid].pending_flushes += 1
        step.cmds.append(Flush(cid))

    def _c_closing(self, cid: str, step: _CtxStep) -> None:
        step.cmds.append(_error(ProtocolError("context is closing", error_code="VALIDATION_ERROR"), cid))

    def _c_touch(self, cid: str, step: _CtxStep) -> None:
        p = self.pipelines[cid]
        p.idle_deadline = step.now + self.inactivity_timeout
        step.cmds.append(ArmTimer(cid, p.idle_deadline))

    def _c_cancel(self, cid: str, step: _CtxStep) -> None:
        self.pipelines[cid].state = PipelineState.CANCELLED
        step.cmds += [CancelPipeline(cid), Purge(frozenset([cid]))]

    def _c_closed_sent(self, cid: str, step: _CtxStep) -> None:
        usage = self._usage(self.pipelines[cid], sent_only=True)
        step.cmds.append(_send(ContextClosedFrame(cid, usage)))

    def _c_closed(self, cid: str, step: _CtxStep) -> None:
        # purge-keyed: an immediate close while it waits behind paced audio replaces it.
        step.cmds.append(_send(ContextClosedFrame(cid, self._usage(self.pipelines[cid])), purge_key=cid))

    def _c_unknown_closed(self, cid: str, step: _CtxStep) -> None:
        step.cmds.append(_send(ContextClosedFrame(cid, self.pricing.usage(0.0, 0, self.config.model_id))))

    def _c_final(self, cid: str, step: _CtxStep) -> None:
        self.pipelines[cid].pending_flushes -= 1
        step.cmds.append(_send(FinalFrame(cid), purge_key=cid))

    def _c_timeout(self, cid: str, step: _CtxStep) -> None:
        step.cmds.append(_send(ContextTimeoutFrame(cid)))

    def _c_error_frame(self, cid: str, step: _CtxStep) -> None:
        assert step.exc is not None
        step.cmds.append(_error(step.exc, cid))

    def _c_forget(self, cid: str, step: _CtxStep) -> None:
        del self.pipelines[cid]
        self.output_busy.discard(cid)
        step.cmds.append(CancelTimer(cid))
        self._maybe_close(step)

    # -- timers and pipeline events -----------------------------------------------------

    def timer_fired(self, cid: str, now: float = math.inf) -> list[Command]:
        """The inactivity timer of ``cid`` fired (PROTOCOL M-10)."""
        p = self._live(cid)
        if p is None or now < p.idle_deadline:
            return []
        busy = p.current_chunk is not None or p.pending_flushes > 0 or cid in self.output_busy
        event = ContextEvent.TIMER_BUSY if busy else ContextEvent.TIMER
        return self._context(cid, event, _CtxStep(key=cid, now=now if math.isfinite(now) else 0.0))

    def timeout(self, cid: str) -> list[Command]:
        """Shorthand for :meth:`timer_fired` with the deadline passed."""
        return self.timer_fired(cid)

    def output_idle(self, cid: str, idle: bool, now: float) -> list[Command]:
        """``cid``'s output became idle (nothing to make or send) or busy: audio being
        generated or paced counts as activity (M-10), idle re-arms from ``now``."""
        p = self._live(cid)
        if p is not None and idle and p.state is PipelineState.DRAINING:
            self.output_busy.discard(cid)  # M-7: its context_closed is out: free the slot
            return self._context(cid, ContextEvent.OUTPUT_IDLE, _CtxStep(key=cid, now=now))
        if p is None or idle != (cid in self.output_busy):
            return []
        if not idle:
            self.output_busy.add(cid)
            return []
        self.output_busy.discard(cid)
        return self._context(cid, ContextEvent.TIMER_BUSY, _CtxStep(key=cid, now=now))

    def flush_done(self, cid: str) -> list[Command]:
        """A context's pipeline passed a FLUSH: ``final`` (M-6), maybe ``context_closed``."""
        p = self._live(cid)
        if p is None:
            return []
        last = p.state is PipelineState.ENDING and p.pending_flushes == 1
        event = ContextEvent.LAST_FLUSH_DONE if last else ContextEvent.FLUSH_DONE
        return self._context(cid, event, _CtxStep(key=cid))

    def error(self, cid: str, exc: ProtocolError) -> list[Command]:
        """A context's pipeline failed: report it with its id and close it (M-12)."""
        return self._context(cid, ContextEvent.ERROR, _CtxStep(key=cid, exc=exc))


_MULTI_EFFECTS: Mapping[MultiEffect, Callable[[MultiServer, _Step], None]] = {
    fx: getattr(MultiServer, f"_{fx.name.lower()}") for fx in MultiEffect
}
_CONTEXT_EFFECTS: Mapping[ContextEffect, Callable[[MultiServer, str, _CtxStep], None]] = {
    fx: getattr(MultiServer, f"_c_{fx.name.lower()}") for fx in ContextEffect
}
