"""The client half of ``/ws/tts/multi`` (PROTOCOL 6): one machine per context id.

Sans-I/O like :mod:`rxtts.protocol.client`: intents return frames, received frames
return typed events tagged with the context and its utterance (``turn``), and every
decision is a cell of :data:`MULTI_TABLE`, rendered here (a test keeps it in step)::

    state              input                 effect          next               rule
    NONE               create                create          CREATING           M-1
    NONE               send                  create_send     CREATING           M-1
    NONE               close                 none            NONE               M-7
    NONE               close_immediate       none            NONE
    NONE               recv:context_created  drop            NONE
    NONE               recv:context_closed   drop            NONE
    NONE               recv:context_timeout  drop            NONE
    NONE               recv:final            drop            NONE
    NONE               recv:error            deliver         NONE               M-12
    NONE               recv:other            drop            NONE               6.5
    CREATING           create                none            CREATING
    CREATING           send                  send            CREATING           6.3
    CREATING           flush                 flush           CREATING           M-6
    CREATING           keep_alive            keep_alive      CREATING           M-4
    CREATING           close                 close           CLOSING            M-7
    CREATING           close_immediate       close           CLOSING_IMMEDIATE  M-7
    CREATING           recv:context_created  deliver         OPEN               M-1
    CREATING           recv:context_closed   forget          NONE               M-7/M-9
    CREATING           recv:context_timeout  forget          NONE               M-10
    CREATING           recv:final            utterance_done  CREATING           M-6
    CREATING           recv:error            refused         REFUSAL            M-9/M-12
    CREATING           recv:other            audio           CREATING
    OPEN               create                none            OPEN               U-14
    OPEN               send                  send            OPEN               6.1
    OPEN               flush                 flush           OPEN               M-6
    OPEN               keep_alive            keep_alive      OPEN               M-4
    OPEN               close                 close           CLOSING            M-7
    OPEN               close_immediate       close           CLOSING_IMMEDIATE  M-7
    OPEN               recv:context_created  drop            OPEN               U-14
    OPEN               recv:context_closed   forget          NONE               M-7/M-9
    OPEN               recv:context_timeout  forget          NONE               M-10
    OPEN               recv:final            utterance_done  OPEN               M-6
    OPEN               recv:error            deliver         OPEN               M-12
    OPEN               recv:other            audio           OPEN               M-5
    CLOSING            close                 none            CLOSING
    CLOSING            close_immediate       close           CLOSING_IMMEDIATE  M-7
    CLOSING            recv:context_created  deliver         CLOSING
    CLOSING            recv:context_closed   forget          NONE               M-7/M-9
    CLOSING            recv:context_timeout  forget          NONE               M-10
    CLOSING            recv:final            utterance_done  CLOSING            M-7
    CLOSING            recv:error            deliver         CLOSING            M-12
    CLOSING            recv:other            audio           CLOSING            M-7
    CLOSING_IMMEDIATE  close                 none            CLOSING_IMMEDIATE
    CLOSING_IMMEDIATE  close_immediate       none            CLOSING_IMMEDIATE
    CLOSING_IMMEDIATE  recv:context_created  drop            CLOSING_IMMEDIATE
    CLOSING_IMMEDIATE  recv:context_closed   forget          NONE               M-7/M-9
    CLOSING_IMMEDIATE  recv:context_timeout  forget          NONE               M-10
    CLOSING_IMMEDIATE  recv:final            drop            CLOSING_IMMEDIATE  M-7a
    CLOSING_IMMEDIATE  recv:error            deliver         CLOSING_IMMEDIATE  M-12
    CLOSING_IMMEDIATE  recv:other            drop            CLOSING_IMMEDIATE  6.5

``REFUSAL``: NONE if nothing followed the refused creating frame, else
CLOSING_IMMEDIATE (the later frames may have created the context on the server, M-1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, auto
from types import MappingProxyType
from typing import Any

from rxtts.config import MultiContextConfig, VoiceSettings
from rxtts.errors import LocalProtocolError, TooManyContextsError
from rxtts.events import SessionUsage
from rxtts.protocol.client import By, Output, settings_update, to_event
from rxtts.protocol.frames import (
    AudioFrame,
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
    SessionStartedFrame,
    TextFrame,
    WireConfig,
    parse_config,
)
from rxtts.protocol.tables import Rule


class ContextState(Enum):
    """Client view of one context (PROTOCOL 6)."""

    NONE = auto()
    """Unknown id: holds no slot."""
    CREATING = auto()
    """Creation sent, ``context_created`` not seen yet: holds a slot."""
    OPEN = auto()
    """Created: takes text, flushes and keep-alives."""
    CLOSING = auto()
    """Graceful ``close_context`` sent: text finishes, then ``context_closed``."""
    CLOSING_IMMEDIATE = auto()
    """Immediate close sent: every later frame of the context is dropped (M-7)."""


C = ContextState
MULTI_INPUTS = (
    "create",
    "send",
    "flush",
    "keep_alive",
    "close",
    "close_immediate",
    "recv:context_created",
    "recv:context_closed",
    "recv:context_timeout",
    "recv:final",
    "recv:error",
    "recv:other",
)
"""Inputs of :data:`MULTI_TABLE` (per context)."""

_CLOSED_OR_GONE = {
    "recv:context_closed": Rule("forget", C.NONE, "M-7/M-9: the slot is free again"),
    "recv:context_timeout": Rule("forget", C.NONE, "M-10: timed out, slot free"),
}
MULTI_TABLE: Mapping[tuple[ContextState, str], Rule] = MappingProxyType(
    {
        (C.NONE, "create"): Rule("create", C.CREATING, "M-1: a first frame creates it"),
        (C.NONE, "send"): Rule("create_send", C.CREATING, "M-1: implicit creation"),
        (C.NONE, "close"): Rule("none", C.NONE, "M-7: unknown ids need nothing"),
        (C.NONE, "close_immediate"): Rule("none", C.NONE),
        (C.NONE, "recv:error"): Rule("deliver", C.NONE, "M-12: session-wide or unknown"),
        (C.NONE, "recv:other"): Rule("drop", C.NONE, "6.5: frames of forgotten contexts"),
        (C.NONE, "recv:final"): Rule("drop", C.NONE),
        (C.NONE, "recv:context_created"): Rule("drop", C.NONE),
        (C.NONE, "recv:context_closed"): Rule("drop", C.NONE),
        (C.NONE, "recv:context_timeout"): Rule("drop", C.NONE),
        (C.CREATING, "create"): Rule("none", C.CREATING),
        (C.CREATING, "send"): Rule("send", C.CREATING, "6.3: text may follow at once"),
        (C.CREATING, "flush"): Rule("flush", C.CREATING, "M-6"),
        (C.CREATING, "keep_alive"): Rule("keep_alive", C.CREATING, "M-4"),
        (C.CREATING, "close"): Rule("close", C.CLOSING, "M-7"),
        (C.CREATING, "close_immediate"): Rule("close", C.CLOSING_IMMEDIATE, "M-7"),
        (C.CREATING, "recv:context_created"): Rule("deliver", C.OPEN, "M-1"),
        (C.CREATING, "recv:error"): Rule("refused", By.REFUSAL, "M-9/M-12: a refused creation"),
        (C.CREATING, "recv:final"): Rule("utterance_done", C.CREATING, "M-6"),
        (C.CREATING, "recv:other"): Rule("audio", C.CREATING),
        **{(C.CREATING, k): r for k, r in _CLOSED_OR_GONE.items()},
        (C.OPEN, "create"): Rule("none", C.OPEN, "U-14: known ids send nothing"),
        (C.OPEN, "send"): Rule("send", C.OPEN, "6.1"),
        (C.OPEN, "flush"): Rule("flush", C.OPEN, "M-6"),
        (C.OPEN, "keep_alive"): Rule("keep_alive", C.OPEN, "M-4"),
        (C.OPEN, "close"): Rule("close", C.CLOSING, "M-7"),
        (C.OPEN, "close_immediate"): Rule("close", C.CLOSING_IMMEDIATE, "M-7"),
        (C.OPEN, "recv:context_created"): Rule("drop", C.OPEN, "U-14: repeated creation"),
        (C.OPEN, "recv:error"): Rule("deliver", C.OPEN, "M-12"),
        (C.OPEN, "recv:final"): Rule("utterance_done", C.OPEN, "M-6"),
        (C.OPEN, "recv:other"): Rule("audio", C.OPEN, "M-5"),
        **{(C.OPEN, k): r for k, r in _CLOSED_OR_GONE.items()},
        (C.CLOSING, "close"): Rule("none", C.CLOSING),
        (C.CLOSING, "close_immediate"): Rule("close", C.CLOSING_IMMEDIATE, "M-7: upgrade to immediate"),
        (C.CLOSING, "recv:context_created"): Rule("deliver", C.CLOSING),
        (C.CLOSING, "recv:error"): Rule("deliver", C.CLOSING, "M-12"),
        (C.CLOSING, "recv:final"): Rule("utterance_done", C.CLOSING, "M-7: text finishes"),
        (C.CLOSING, "recv:other"): Rule("audio", C.CLOSING, "M-7"),
        **{(C.CLOSING, k): r for k, r in _CLOSED_OR_GONE.items()},
        (C.CLOSING_IMMEDIATE, "close"): Rule("none", C.CLOSING_IMMEDIATE),
        (C.CLOSING_IMMEDIATE, "close_immediate"): Rule("none", C.CLOSING_IMMEDIATE),
        (C.CLOSING_IMMEDIATE, "recv:context_created"): Rule("drop", C.CLOSING_IMMEDIATE),
        (C.CLOSING_IMMEDIATE, "recv:error"): Rule("deliver", C.CLOSING_IMMEDIATE, "M-12"),
        (C.CLOSING_IMMEDIATE, "recv:final"): Rule("drop", C.CLOSING_IMMEDIATE, "M-7a: never a final"),
        (C.CLOSING_IMMEDIATE, "recv:other"): Rule("drop", C.CLOSING_IMMEDIATE, "6.5: barge-in safe"),
        **{(C.CLOSING_IMMEDIATE, k): r for k, r in _CLOSED_OR_GONE.items()},
    }
)
"""The multi client's per-context transition table, executed by :class:`MultiClient`.

Intents missing from the table raise :class:`LocalProtocolError` (e.g. ``send`` to a
closing context); received frames missing from it are dropped."""


@dataclass(slots=True)
class _Context:
    state: ContextState
    voice: int | None
    frames: list[ClientFrame] = field(default_factory=list)
    """What was sent for the context, for a replay after 1012/1013 (PROTOCOL 10)."""
    audio_frames: int = 0
    utterance: int = 0
    """Utterances completed (``final`` received): the ``turn`` of the next events."""


def _multi_input(frame: ServerFrame) -> str:
    match frame:
        case ContextCreatedFrame():
            return "recv:context_created"
        case ContextClosedFrame():
            return "recv:context_closed"
        case ContextTimeoutFrame():
            return "recv:context_timeout"
        case FinalFrame():
            return "recv:final"
        case ErrorFrame():
            return "recv:error"
    return "recv:other"


@dataclass(slots=True)
class MultiClient:
    """The client half of ``/ws/tts/multi`` with admission control (PROTOCOL M-9).

    Each context's intents and frames run through :data:`MULTI_TABLE`.
    """

    config: MultiContextConfig = field(default_factory=MultiContextConfig)
    _contexts: dict[str, _Context] = field(default_factory=dict)
    usage: dict[str, SessionUsage] = field(default_factory=dict)
    session_id: str | None = None
    session_config_sent: bool = False
    closed: bool = False
    _out: list[ClientFrame] = field(default_factory=list)
    _events: list[Output] = field(default_factory=list)
    _cid: str = ""
    _arg: Any = None

    @property
    def contexts(self) -> dict[str, ContextState]:
        """State of every context holding a slot, in creation order."""
        return {cid: c.state for cid, c in self._contexts.items()}

    @property
    def voices(self) -> dict[str, int | None]:
        """Voice bound to every context holding a slot."""
        return {cid: c.voice for cid, c in self._contexts.items()}

    @property
    def active_contexts(self) -> list[str]:
        """Ids holding a slot, in creation order."""
        return list(self._contexts)

    @property
    def free_slots(self) -> int:
        """Contexts that can still be created without exceeding the limit."""
        return self.config.max_contexts - len(self._contexts)

    def state_of(self, context_id: str) -> ContextState:
        """A context's state (:attr:`ContextState.NONE` for unknown ids)."""
        ctx = self._contexts.get(context_id)
        return C.NONE if ctx is None else ctx.state

    def _check_open(self) -> None:
        if self.closed:
            raise LocalProtocolError("the multi-context session is closed")

    def _step(self, cid: str, name: str, arg: Any = None, intent: bool = True) -> None:
        if intent and (not isinstance(cid, str) or not cid):
            raise LocalProtocolError("context_id must be a non-empty string")
        state = self.state_of(cid)
        rule = MULTI_TABLE.get((state, name))
        if rule is None:
            if not intent:
                return  # an unexpected frame for this state is dropped
            if state is C.NONE:
                raise LocalProtocolError(f"unknown context {cid!r}")
            raise LocalProtocolError(f"context {cid!r}: {name} is not allowed while {state.name}")
        self._cid, self._arg = cid, arg
        getattr(self, f"_do_{rule.effect}")()
        ctx = self._contexts.get(cid)
        nxt = rule.next
        if nxt is By.REFUSAL:
            # Frames sent after the refused one may have created the context on the
            # server (M-1): close it immediately and hold the slot until context_closed.
            nxt = C.CLOSING_IMMEDIATE if ctx is not None and len(ctx.frames) > 1 else C.NONE
            if nxt is C.CLOSING_IMMEDIATE:
                self._out.append(CloseContextFrame(cid, True))
        if nxt is C.NONE:
            self._contexts.pop(cid, None)
        elif ctx is not None:
            assert isinstance(nxt, ContextState)
            ctx.state = nxt

    def _emit(self) -> list[ClientFrame]:
        out, self._out = self._out, []
        return out

    # -- intents ----------------------------------------------------------------------

    def create_context(
        self,
        context_id: str,
        voice_id: int | None = None,
        voice_settings: VoiceSettings | None = None,
    ) -> list[ClientFrame]:
        """Create a context without speaking (PROTOCOL 6.3); known ids send nothing."""
        self._check_open()
        if isinstance(context_id, str) and self.state_of(context_id) in (C.CLOSING, C.CLOSING_IMMEDIATE):
            raise LocalProtocolError(f"context {context_id!r} is closing; wait for context_closed")
        self._step(context_id, "create", (voice_id, voice_settings))
        return self._emit()

    def send(self, context_id: str, text: str, flush: bool = False) -> list[ClientFrame]:
        """Text for a context, creating it first if unknown (PROTOCOL M-1)."""
        if not isinstance(text, str):
            raise LocalProtocolError(f"text must be a string, got {type(text).__name__}")
        self._check_open()
        self._step(context_id, "send", (text, flush))
        return self._emit()

    def flush(self, context_id: str) -> list[ClientFrame]:
        """Speak a context's buffer; ``final`` follows (PROTOCOL M-6)."""
        self._check_open()
        self._step(context_id, "flush")
        return self._emit()

    def keep_alive(self, context_id: str) -> list[ClientFrame]:
        """Reset a context's inactivity timer without audio (PROTOCOL M-4)."""
        self._check_open()
        self._step(context_id, "keep_alive")
        return self._emit()

    def close_context(self, context_id: str, immediate: bool = False) -> list[ClientFrame]:
        """Close a context; ``immediate`` drops its text and late audio (PROTOCOL M-7)."""
        self._check_open()
        self._step(context_id, "close_immediate" if immediate else "close", immediate)
        return self._emit()

    def close(self) -> list[ClientFrame]:
        """``close_socket`` (PROTOCOL M-8)."""
        if self.closed:
            return []
        self.closed = True
        return [CloseSocketFrame()]

    def update_settings(self, **settings: object) -> list[ClientFrame]:
        """``update_settings`` for later contexts (PROTOCOL M-11)."""
        self._check_open()  # nothing may follow close_socket (PROTOCOL M-8)
        return [settings_update(**settings)]

    def connection_lost(self) -> list[tuple[str, list[ClientFrame]]]:
        """Forget every context; returns ``(id, frames)`` of those that had no audio.

        PROTOCOL 10: contexts without audio are re-created (in creation order) and
        replayed once on a new socket; contexts that spoke are lost.
        """
        replay = [
            (cid, list(c.frames))
            for cid, c in self._contexts.items()
            if c.audio_frames == 0 and c.utterance == 0 and c.state is not C.CLOSING_IMMEDIATE
        ]
        self._contexts.clear()
        self.session_config_sent = False
        return replay

    def take_frames(self) -> list[ClientFrame]:
        """Frames the machine decided to send while receiving (a refused context's close)."""
        return self._emit()

    def lost_contexts(self) -> list[str]:
        """Ids that hold a slot now (what :meth:`connection_lost` would forget)."""
        return list(self._contexts)

    def replay(self, context_id: str, frames: list[ClientFrame]) -> list[ClientFrame]:
        """Re-create a context on a new socket with its frames (PROTOCOL 10)."""
        out: list[ClientFrame] = []
        for frame in frames:
            if isinstance(frame, TextFrame) and not out and not self.session_config_sent:
                frame = TextFrame(
                    frame.text,
                    frame.flush,
                    frame.context_id,
                    parse_config(self.config.session_wire()),
                    frame.voice_settings,
                )
                self.session_config_sent = True
            out.append(frame)
        voice = (
            frames[0].voice_settings.voice_id
            if isinstance(frames[0], TextFrame) and frames[0].voice_settings
            else None
        )
        self._contexts[context_id] = _Context(C.CREATING, voice, list(out))
        return out

    def receive(self, frame: ServerFrame) -> list[Output]:
        """Events for one server frame; frames of dropped contexts are discarded."""
        match frame:
            case SessionStartedFrame():
                self.session_id = frame.session_id
                self.session_config_sent = True
                return [to_event(frame)]
            case SessionClosedFrame():
                self._contexts.clear()
                return [to_event(frame)]
        cid = getattr(frame, "context_id", None)
        if cid is None:
            return [to_event(frame)]  # session-wide (errors without context, M-12)
        self._step(cid, _multi_input(frame), frame, intent=False)
        out, self._events = self._events, []
        return out

    # -- effects ----------------------------------------------------------------------

    def _do_none(self) -> None:
        pass

    def _do_create(self) -> None:
        voice_id, voice_settings = self._arg
        if self.free_slots <= 0:
            # Admission control: never put a 21st context on the wire (PROTOCOL M-9).
            raise TooManyContextsError(
                f"at most {self.config.max_contexts} open contexts per session; "
                f"close one or pass wait_for_slot=True",
                error_code="TOO_MANY_CONTEXTS",
                context_id=self._cid,
            )
        vs = voice_settings or VoiceSettings()
        voice = vs.voice_id if vs.voice_id is not None else voice_id
        voice = voice if voice is not None else self.config.default_voice_id
        bound = VoiceSettings(
            voice_id=voice,
            cfg_scale=vs.cfg_scale if vs.cfg_scale is not None else self.config.cfg_scale,
            max_new_tokens=vs.max_new_tokens or self.config.max_new_tokens,
            stability=vs.stability,
            similarity_boost=vs.similarity_boost,
            style=vs.style,
            use_speaker_boost=vs.use_speaker_boost,
        )
        config = WireConfig()
        if not self.session_config_sent:
            config = parse_config(self.config.session_wire())
            self.session_config_sent = True
        self._contexts[self._cid] = _Context(C.CREATING, voice)
        self.usage.pop(self._cid, None)
        self._record(TextFrame(" ", None, self._cid, config, bound))

    def _record(self, frame: ClientFrame) -> None:
        self._contexts[self._cid].frames.append(frame)
        self._out.append(frame)

    def _do_create_send(self) -> None:
        text_flush = self._arg
        self._arg = (None, None)
        self._do_create()
        self._arg = text_flush
        self._do_send()

    def _do_send(self) -> None:
        text, flush = self._arg
        self._record(TextFrame(text, flush, self._cid))

    def _do_flush(self) -> None:
        self._record(FlushFrame(self._cid))

    def _do_keep_alive(self) -> None:
        self._out.append(TextFrame("", None, self._cid))

    def _do_close(self) -> None:
        self._record(CloseContextFrame(self._cid, bool(self._arg)))

    def _turn(self) -> int:
        ctx = self._contexts.get(self._cid)
        return ctx.utterance if ctx is not None else 0

    def _do_deliver(self) -> None:
        self._events.append(to_event(self._arg, self._turn()))

    def _do_audio(self) -> None:
        if isinstance(self._arg, AudioFrame):
            self._contexts[self._cid].audio_frames += 1
        self._do_deliver()

    def _do_utterance_done(self) -> None:
        self._do_deliver()
        self._contexts[self._cid].utterance += 1

    def _do_drop(self) -> None:
        pass

    def _do_refused(self) -> None:
        self._do_deliver()  # the server holds no such context: its slot is free

    def _do_forget(self) -> None:
        frame = self._arg
        if isinstance(frame, ContextClosedFrame) and frame.usage is not None:
            self.usage[frame.context_id] = frame.usage
        self._do_deliver()


__all__ = ["MULTI_INPUTS", "MULTI_TABLE", "ContextState", "MultiClient"]
