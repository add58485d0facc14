"""The ``/ws/tts/stream`` machine and its tables (PROTOCOL 5)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum, auto

from rxtts.config import DEFAULT_SCHEDULE
from rxtts.errors import ProtocolError
from rxtts.protocol.frames import (
    CancelFrame,
    ClientFrame,
    CloseFrame,
    CloseSocketFrame,
    ErrorFrame,
    FinalFrame,
    FlushFrame,
    InterruptedFrame,
    SessionClosedFrame,
    SettingsUpdatedFrame,
    TextFrame,
    UpdateSettingsFrame,
    WarningFrame,
    WireConfig,
)
from rxtts.protocol.server._core import (
    AUTO_FLUSH_WARNING,
    IDLE_AUTO_FLUSH_SECONDS,
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
    Transition,
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

# -- /ws/tts/stream --------------------------------------------------------------------


class StreamState(Enum):
    """A ``/ws/tts/stream`` socket."""

    IDLE = auto()
    """No turn takes text (turns may still be ending)."""
    OPEN = auto()
    """A turn takes text."""
    CLOSED = auto()
    """``close_socket`` came: no more client frames."""


class StreamEvent(Enum):
    """Classified client frames and timers of a stream socket."""

    TEXT = auto()
    """Text that opens/extends a turn, no flush."""
    TEXT_FLUSH = auto()
    """Such text with ``flush: true``."""
    VOICELESS = auto()
    """Non-blank text while no ``voice_id`` is known and no turn is open."""
    BLANK = auto()
    """``""`` or whitespace, no flush."""
    FLUSH = auto()
    """Bare ``flush`` or blank text with ``flush: true``."""
    CLOSE = auto()
    CANCEL = auto()
    UPDATE_SETTINGS = auto()
    CLOSE_SOCKET = auto()
    IDLE_TIMER = auto()
    """The S-8 timer of the open turn fired."""


class StreamEffect(Enum):
    """What a stream transition does, in table order."""

    MERGE_CONFIG = auto()
    """S-1: config from whichever frame first carries it, sticky."""
    OPEN_TURN = auto()
    """A new turn; it starts speaking after the turns before it (S-6)."""
    APPEND = auto()
    """Append the frame's text to the open turn."""
    ARM_IDLE = auto()
    """S-8, S-8a: re-arm the open turn's idle timer from now (held while output is busy)."""
    END_TURN = auto()
    """FLUSH the open turn; it is ending; disarm its idle timer."""
    EMPTY_CLOSE = auto()
    """S-4: an empty ``session_closed`` now, or owed right after the last ending turn's."""
    CANCEL_ALL = auto()
    """S-5: cancel every turn and purge every unsent turn frame, owed closes too."""
    INTERRUPTED = auto()
    MISSING_VOICE = auto()
    MERGE_SETTINGS = auto()
    """S-7: never opens or ends a turn; applies from the next."""
    SETTINGS_UPDATED = auto()
    WARN_IDLE = auto()
    CLOSE_SOCKET = auto()
    """S-10: close 1000 once no turn is live."""


_SS, _SE, _SF = StreamState, StreamEvent, StreamEffect
_ANY_STREAM = (_SS.IDLE, _SS.OPEN)
STREAM_TABLE: Table[StreamState, StreamEvent, StreamEffect] = {
    **_row(
        [_SS.IDLE],
        _SE.TEXT,
        _SS.OPEN,
        _SF.MERGE_CONFIG,
        _SF.OPEN_TURN,
        _SF.APPEND,
        _SF.ARM_IDLE,
        rule="S-1, S-2, S-8",
    ),
    **_row([_SS.OPEN], _SE.TEXT, _SS.OPEN, _SF.MERGE_CONFIG, _SF.APPEND, _SF.ARM_IDLE, rule="S-2, S-8"),
    **_row(
        [_SS.IDLE],
        _SE.TEXT_FLUSH,
        _SS.IDLE,
        _SF.MERGE_CONFIG,
        _SF.OPEN_TURN,
        _SF.APPEND,
        _SF.END_TURN,
        rule="S-3",
    ),
    **_row([_SS.OPEN], _SE.TEXT_FLUSH, _SS.IDLE, _SF.MERGE_CONFIG, _SF.APPEND, _SF.END_TURN, rule="S-3"),
    **_row([_SS.IDLE], _SE.VOICELESS, _SS.IDLE, _SF.MERGE_CONFIG, _SF.MISSING_VOICE, rule="3.4"),
    # S-9: blank text opens nothing; inside a turn it is spacing between tokens.
    **_row([_SS.IDLE], _SE.BLANK, _SS.IDLE, _SF.MERGE_CONFIG, rule="S-9"),
    **_row([_SS.OPEN], _SE.BLANK, _SS.OPEN, _SF.MERGE_CONFIG, _SF.APPEND, _SF.ARM_IDLE, rule="S-2"),
    **_row([_SS.IDLE], _SE.FLUSH, _SS.IDLE, _SF.MERGE_CONFIG, _SF.EMPTY_CLOSE, rule="S-4"),
    **_row([_SS.OPEN], _SE.FLUSH, _SS.IDLE, _SF.MERGE_CONFIG, _SF.APPEND, _SF.END_TURN, rule="S-3"),
    **_row([_SS.IDLE], _SE.CLOSE, _SS.IDLE, _SF.EMPTY_CLOSE, rule="S-4"),
    **_row([_SS.OPEN], _SE.CLOSE, _SS.IDLE, _SF.END_TURN, rule="S-4"),
    # S-5: interrupted even when no turn is open (PY waits for it).
    **_row(_ANY_STREAM, _SE.CANCEL, _SS.IDLE, _SF.CANCEL_ALL, _SF.INTERRUPTED, rule="S-5"),
    **_row(_ANY_STREAM, _SE.UPDATE_SETTINGS, None, _SF.MERGE_SETTINGS, _SF.SETTINGS_UPDATED, rule="S-7"),
    **_row([_SS.IDLE], _SE.CLOSE_SOCKET, _SS.CLOSED, _SF.EMPTY_CLOSE, _SF.CLOSE_SOCKET, rule="S-10"),
    **_row([_SS.OPEN], _SE.CLOSE_SOCKET, _SS.CLOSED, _SF.END_TURN, _SF.CLOSE_SOCKET, rule="S-10"),
    **_row([_SS.OPEN], _SE.IDLE_TIMER, _SS.IDLE, _SF.WARN_IDLE, _SF.END_TURN, rule="S-8, S-8a"),
    **_row([_SS.IDLE, _SS.CLOSED], _SE.IDLE_TIMER, None, rule="S-8"),  # stale timer
}
"""Executed by :meth:`StreamServer.receive` and :meth:`StreamServer.timer_fired`."""


class TurnEvent(Enum):
    """Pipeline events of one turn."""

    FLUSH_DONE = auto()
    ERROR = auto()


class TurnEffect(Enum):
    """What a turn transition does."""

    FINAL = auto()
    """U-4: ``final`` with the turn's totals, only if the turn had content."""
    SESSION_CLOSED = auto()
    """S-3: ``session_closed`` right after, with usage; purged by a later cancel."""
    ERROR_FRAME = auto()
    CANCEL = auto()
    FORGET = auto()
    """Remove the turn; start the next one (S-6)."""


_TS, _TE, _TF = PipelineState, TurnEvent, TurnEffect
TURN_TABLE: Table[PipelineState, TurnEvent, TurnEffect] = {
    **_row(
        [_TS.ENDING], _TE.FLUSH_DONE, _TS.CLOSED, _TF.FINAL, _TF.SESSION_CLOSED, _TF.FORGET, rule="S-3, S-6"
    ),
    **_row(
        [_TS.OPEN, _TS.ENDING],
        _TE.ERROR,
        _TS.CLOSED,
        _TF.CANCEL,
        _TF.ERROR_FRAME,
        _TF.SESSION_CLOSED,
        _TF.FORGET,
        rule="4.2",
    ),
}
"""Executed by :meth:`StreamServer.flush_done` and :meth:`StreamServer.error`."""


@dataclass(slots=True)
class StreamServer(_Machine):
    """The ``/ws/tts/stream`` machine: turns, sticky config, barge-in (PROTOCOL 5).

    Turns are keyed ``turn-N``. Text after a flush opens the next turn at once; it is
    opened with ``start=False`` and started once the previous turn's ``session_closed``
    is out (PROTOCOL S-6).
    """

    config: WireConfig = field(default_factory=WireConfig)
    idle_seconds: float = IDLE_AUTO_FLUSH_SECONDS
    state: StreamState = StreamState.IDLE
    open_turn: str | None = None
    ending: list[str] = field(default_factory=list)
    _counter: itertools.count[int] = field(default_factory=itertools.count)
    deferred_closes: dict[str, int] = field(default_factory=dict)
    """Empty ``session_closed`` replies owed right after an ending turn's own (S-4, S-6)."""
    output_busy: bool = False
    """S-8a: the socket still has turn audio to make or send (:meth:`output_idle`)."""
    idle_since: float = 0.0

    @property
    def closed(self) -> bool:
        """Whether ``close_socket`` came."""
        return self.state is StreamState.CLOSED

    # -- client frames ---------------------------------------------------------------

    def receive(self, frame: ClientFrame, now: float = 0.0) -> list[Command]:
        """Commands for one decoded client frame; ``now`` times the S-8 timer."""
        event = self._classify(frame)
        row = STREAM_TABLE.get((self.state, event)) if event is not None else None
        if row is None:
            where = "after close_socket" if self.closed else "on /ws/tts/stream"
            return [_send(protocol_error(f"{type(frame).__name__} is not allowed {where}"))]
        return self._run(row, _Step(frame, now=now))

    def _classify(self, frame: ClientFrame) -> StreamEvent | None:
        match frame:
            case TextFrame() | FlushFrame():
                text, flush = _text_and_flush(frame)
                if not text.strip():
                    return StreamEvent.FLUSH if flush else StreamEvent.BLANK
                voiceless = self.config.merged(frame.config).voice_id is None
                if voiceless and self.state is not StreamState.OPEN:
                    return StreamEvent.VOICELESS
                return StreamEvent.TEXT_FLUSH if flush else StreamEvent.TEXT
            case CloseFrame():
                return StreamEvent.CLOSE
            case CancelFrame():
                return StreamEvent.CANCEL
            case UpdateSettingsFrame():
                return StreamEvent.UPDATE_SETTINGS
            case CloseSocketFrame():
                return StreamEvent.CLOSE_SOCKET
        return None

    def timer_fired(self, key: str, now: float = math.inf) -> list[Command]:
        """The I/O layer's timer ``key`` fired (PROTOCOL S-8: the open turn's idle end)."""
        p = self.pipelines.get(key)
        if key != self.open_turn or p is None or self.output_busy or now < p.idle_deadline:
            return []  # stale, or held while output is busy (S-8a)
        return self._run(STREAM_TABLE[(self.state, StreamEvent.IDLE_TIMER)], _Step(key=key, now=now))

    def idle_timeout(self, key: str) -> list[Command]:
        """Shorthand for :meth:`timer_fired` with the deadline passed."""
        return self.timer_fired(key)

    def output_idle(self, idle: bool, now: float) -> list[Command]:
        """S-8a: the socket's turn output became idle (nothing to make or send) or busy.

        The open turn's idle timer is held while busy and counts from the later of its
        last text and the moment output went idle.
        """
        if idle == (not self.output_busy):
            return []
        self.output_busy = not idle
        if idle:
            self.idle_since = now
        return self._idle_timer(now) if self.open_turn is not None else []

    def _idle_timer(self, now: float) -> list[Command]:
        key = self.open_turn
        assert key is not None
        if self.output_busy:
            return [CancelTimer(key)]
        p = self.pipelines[key]
        p.idle_deadline = max(p.last_text_at, self.idle_since) + self.idle_seconds
        return [ArmTimer(key, p.idle_deadline)]

    def _run(self, row: Transition[StreamState, StreamEffect], step: _Step) -> list[Command]:
        for effect in row.effects:
            _STREAM_EFFECTS[effect](self, step)
        self.state = row.next
        return step.cmds

    # -- effects ------------------------------------------------------------------------

    def _merge_config(self, step: _Step) -> None:
        assert isinstance(step.frame, TextFrame | FlushFrame)
        self.config = self.config.merged(step.frame.config)

    def _open_turn(self, step: _Step) -> None:
        key = f"turn-{next(self._counter)}"
        self.open_turn = key
        start = not self.ending
        self.pipelines[key] = _Pipeline(key, self.config, started=start, last_text_at=step.now)
        step.cmds.append(OpenPipeline(key, self._resolved(), start=start))

    def _append(self, step: _Step) -> None:
        assert step.frame is not None and self.open_turn is not None
        text, _ = _text_and_flush(step.frame)
        p = self.pipelines[self.open_turn]
        p.last_text_at = step.now
        if text:
            p.characters += len(text)
            p.text += text
            step.cmds.append(AppendText(p.key, text))

    def _arm_idle(self, step: _Step) -> None:
        step.cmds.extend(self._idle_timer(step.now))

    def _end_turn(self, step: _Step) -> None:
        assert self.open_turn is not None
        p = self.pipelines[self.open_turn]
        p.state = PipelineState.ENDING
        self.open_turn = None
        self.ending.append(p.key)
        step.cmds += [CancelTimer(p.key), Flush(p.key)]

    def _empty_close(self, step: _Step) -> None:
        if self.ending:
            # PROTOCOL S-4, S-6: every close/blank flush gets its empty session_closed,
            # in order, so it goes right after the ending turn's own.
            last = self.ending[-1]
            self.deferred_closes[last] = self.deferred_closes.get(last, 0) + 1
            return
        step.cmds.append(_send(SessionClosedFrame(0.0, 0, 0)))

    def _cancel_all(self, step: _Step) -> None:
        for key in [*self.ending, *([self.open_turn] if self.open_turn else [])]:
            self.pipelines.pop(key).state = PipelineState.CANCELLED
            step.cmds.append(CancelPipeline(key))
        if self.open_turn is not None:
            step.cmds.append(CancelTimer(self.open_turn))
        self.ending.clear()
        self.deferred_closes.clear()
        self.open_turn = None
        # S-5: a turn whose frames are still queued (paced) is not over for the client:
        # drop all of them, final and session_closed too; interrupted replaces them.
        step.cmds.append(Purge(None))

    def _interrupted(self, step: _Step) -> None:
        step.cmds.append(_send(InterruptedFrame()))

    def _missing_voice(self, step: _Step) -> None:
        step.cmds.append(_send(missing_voice_error()))

    def _merge_settings(self, step: _Step) -> None:
        assert isinstance(step.frame, UpdateSettingsFrame)
        self.config = self.config.merged(step.frame.settings)

    def _settings_updated(self, step: _Step) -> None:
        step.cmds.append(_send(SettingsUpdatedFrame(settings_snapshot(self.config))))

    def _warn_idle(self, step: _Step) -> None:
        step.cmds.append(_send(WarningFrame(AUTO_FLUSH_WARNING)))

    def _close_socket(self, step: _Step) -> None:
        step.cmds.append(CloseSocket(1000))

    def _resolved(self) -> WireConfig:
        schedule = self.config.chunk_length_schedule or DEFAULT_SCHEDULE
        return self.config.merged(WireConfig(chunk_length_schedule=schedule))

    # -- pipeline events ---------------------------------------------------------------

    def flush_done(self, key: str) -> list[Command]:
        """The turn's pipeline passed its FLUSH: ``final`` then ``session_closed`` (S-3)."""
        return self._turn(key, TurnEvent.FLUSH_DONE, None)

    def error(self, key: str, exc: ProtocolError) -> list[Command]:
        """The pipeline failed: report it and end the turn so the client never hangs."""
        return self._turn(key, TurnEvent.ERROR, exc)

    def _turn(self, key: str, event: TurnEvent, exc: ProtocolError | None) -> list[Command]:
        p = self._live(key)
        row = TURN_TABLE.get((p.state, event)) if p is not None else None
        if p is None or row is None:
            return []  # a cancelled pipeline's late result (S-5)
        step = _Step(key=key, exc=exc)
        for effect in row.effects:
            _TURN_EFFECTS[effect](self, p, step)
        p.state = row.next
        return step.cmds

    def _t_final(self, p: _Pipeline, step: _Step) -> None:
        if p.next_idx or p.chunks_done:  # PROTOCOL U-4: final only if the turn had content
            step.frames.append(FinalFrame(None, *self._totals(p)))

    def _t_session_closed(self, p: _Pipeline, step: _Step) -> None:
        step.frames.append(SessionClosedFrame(*self._totals(p), usage=self._usage(p)))
        step.frames += [SessionClosedFrame(0.0, 0, 0) for _ in range(self.deferred_closes.pop(p.key, 0))]
        # S-5: a later cancel purges them while unsent; an error report stays.
        step.cmds.append(_send(*step.frames, purge_key=p.key if step.exc is None else None))

    def _t_error_frame(self, p: _Pipeline, step: _Step) -> None:
        exc = step.exc
        assert exc is not None
        step.frames.append(ErrorFrame(exc.message, exc.error_code or "INTERNAL_ERROR", exc.status or 500))

    def _t_cancel(self, p: _Pipeline, step: _Step) -> None:
        step.cmds.append(CancelPipeline(p.key))
        if self.open_turn == p.key:
            step.cmds.append(CancelTimer(p.key))
            self.open_turn = None
            self.state = StreamState.IDLE if self.state is StreamState.OPEN else self.state

    def _t_forget(self, p: _Pipeline, step: _Step) -> None:
        if p.key in self.ending:
            self.ending.remove(p.key)
        del self.pipelines[p.key]
        step.cmds += self._start_next([*self.ending, *([self.open_turn] if self.open_turn else [])])

    @staticmethod
    def _totals(p: _Pipeline) -> tuple[float, int, int]:
        return (round(p.audio_seconds, 4), p.chunks_done, p.next_idx)


_STREAM_EFFECTS: Mapping[StreamEffect, Callable[[StreamServer, _Step], None]] = {
    fx: getattr(StreamServer, f"_{fx.name.lower()}") for fx in StreamEffect
}
_TURN_EFFECTS: Mapping[TurnEffect, Callable[[StreamServer, _Pipeline, _Step], None]] = {
    fx: getattr(StreamServer, f"_t_{fx.name.lower()}") for fx in TurnEffect
}
