"""Client state machines: intents in, frames out; server frames in, typed events out.

Sans-I/O in the h11 style: no asyncio, sockets, reactivex or clock here. The session
layer calls an intent (``send_text``, ``cancel``...) and writes the returned frames; it
feeds every decoded server frame to ``receive`` and delivers the returned events, each
tagged with its turn. Every decision is a cell of an explicit transition table
(:data:`STREAM_TABLE` here, ``MULTI_TABLE`` in :mod:`rxtts.protocol.multi_client`)
that the machines execute: the cell names the effect and the next state. An intent
missing from the table raises :class:`~rxtts.errors.LocalProtocolError`; a received
frame missing from it is dropped.

Stream turn table (PROTOCOL 5), rendered from :data:`STREAM_TABLE` (a test keeps this
copy in step)::

    state       input                  effect       next        rule
    IDLE        begin_turn             begin        STREAMING   5.1
    IDLE        send_text              open         STREAMING   5.1
    IDLE        flush                  none         IDLE        5.5
    IDLE        end_turn               none         IDLE        S-4
    IDLE        cancel                 cancel       CANCELLING  S-5
    IDLE        recv:audio             deliver      IDLE
    IDLE        recv:session_closed    deliver      IDLE        S-4
    IDLE        recv:interrupted       deliver      IDLE        S-5
    IDLE        recv:settings_updated  ack          ACKS        S-7
    IDLE        recv:error             error        ACKS        3.4
    IDLE        recv:other             deliver      IDLE
    IDLE        connection_lost        lost         IDLE        10
    STREAMING   begin_turn             none         STREAMING
    STREAMING   send_text              append       STREAMING   5.2
    STREAMING   flush                  flush        TURNS       S-3
    STREAMING   end_turn               close        TURNS       S-4
    STREAMING   cancel                 cancel       CANCELLING  S-5
    STREAMING   recv:audio             audio        STREAMING   10
    STREAMING   recv:session_closed    turn_closed  TURNS       S-8
    STREAMING   recv:interrupted       deliver      STREAMING   S-5
    STREAMING   recv:settings_updated  ack          ACKS        S-7
    STREAMING   recv:error             error        ACKS        3.4
    STREAMING   recv:other             deliver      STREAMING   S-2
    STREAMING   connection_lost        lost         IDLE        10
    FLUSHING    begin_turn             begin        STREAMING   S-6
    FLUSHING    send_text              open         STREAMING   S-6
    FLUSHING    flush                  none         FLUSHING
    FLUSHING    end_turn               none         FLUSHING
    FLUSHING    cancel                 cancel       CANCELLING  S-5
    FLUSHING    recv:audio             audio        FLUSHING    10
    FLUSHING    recv:session_closed    turn_closed  TURNS       S-3
    FLUSHING    recv:interrupted       deliver      FLUSHING    S-5
    FLUSHING    recv:settings_updated  ack          ACKS        S-7
    FLUSHING    recv:error             error        ACKS        3.4
    FLUSHING    recv:other             deliver      FLUSHING    S-2
    FLUSHING    connection_lost        lost         IDLE        10
    CANCELLING  begin_turn             begin        CANCELLING  S-5
    CANCELLING  send_text              append       CANCELLING  S-5
    CANCELLING  flush                  flush        CANCELLING  S-3
    CANCELLING  end_turn               close        CANCELLING  S-4
    CANCELLING  cancel                 cancel       CANCELLING  S-5
    CANCELLING  ack_timeout            abandon      IDLE        S-5
    CANCELLING  recv:audio             drop         CANCELLING  S-5
    CANCELLING  recv:session_closed    drop         CANCELLING  S-5
    CANCELLING  recv:interrupted       acked        ACKS        S-5
    CANCELLING  recv:settings_updated  ack          ACKS        S-7
    CANCELLING  recv:error             error        ACKS        3.4
    CANCELLING  recv:other             drop         CANCELLING  S-5/S-6
    CANCELLING  connection_lost        lost         IDLE        10

``TURNS``: IDLE without turns, STREAMING if the newest turn takes text, else FLUSHING;
``ACKS``: CANCELLING while a cancel is unacknowledged, else as ``TURNS``.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, auto
from types import MappingProxyType
from typing import Any, TypeAlias

from rxtts.config import StreamConfig
from rxtts.errors import LocalProtocolError, RxTtsError, classify
from rxtts.events import (
    AudioChunk,
    ChunkComplete,
    ContextClosed,
    ContextCreated,
    ContextTimeout,
    Final,
    GenerationStarted,
    Interrupted,
    ServerWarning,
    SessionClosed,
    SessionStarted,
    SessionUsage,
    SettingsUpdated,
    TtsEvent,
    WordTimestamps,
)
from rxtts.protocol.frames import (
    UPDATABLE_SETTINGS,
    AudioFrame,
    CancelFrame,
    ChunkCompleteFrame,
    ClientFrame,
    CloseFrame,
    ContextClosedFrame,
    ContextCreatedFrame,
    ContextTimeoutFrame,
    ErrorFrame,
    FinalFrame,
    FlushFrame,
    GenerationStartedFrame,
    InterruptedFrame,
    ServerFrame,
    SessionClosedFrame,
    SessionStartedFrame,
    SettingsUpdatedFrame,
    TextFrame,
    TtsRequest,
    UpdateSettingsFrame,
    WarningFrame,
    WireConfig,
    WordTimestampsFrame,
    parse_config,
)
from rxtts.protocol.tables import Rule

Output: TypeAlias = TtsEvent | RxTtsError
"""What ``receive`` yields: an event, or a typed error to raise/deliver."""


def error_from_frame(frame: ErrorFrame) -> RxTtsError:
    """The typed error an error frame means (PROTOCOL 9)."""
    return classify(
        frame.error,
        error_code=frame.error_code,
        status=frame.code,
        retry_after=frame.retry_after,
        request_id=frame.request_id,
        context_id=frame.context_id,
    )


def _usage_of(frame: SessionClosedFrame) -> SessionUsage | None:
    # PROTOCOL 3.5: without `usage`, derive it from total_audio_seconds (cost unknown).
    if frame.usage is not None:
        return frame.usage
    if frame.total_audio_seconds is None:
        return None
    return SessionUsage(frame.total_audio_seconds, cost_cents=None)


def to_event(frame: ServerFrame, turn: int | None = None) -> Output:
    """The event (or error) a server frame means, tagged with the ``turn`` it belongs to."""
    match frame:
        case AudioFrame():
            return AudioChunk(
                frame.audio,
                frame.sr,
                frame.enc,
                frame.idx,
                frame.chunk_id,
                context_id=frame.context_id,
                turn=turn,
            )
        case GenerationStartedFrame():
            return GenerationStarted(frame.chunk_id, frame.text, context_id=frame.context_id, turn=turn)
        case WordTimestampsFrame():
            return WordTimestamps(frame.words, frame.chunk_id, context_id=frame.context_id, turn=turn)
        case ChunkCompleteFrame():
            return ChunkComplete(
                frame.chunk_id, frame.audio_seconds, frame.gen_ms, context_id=frame.context_id, turn=turn
            )
        case FinalFrame():
            return Final(
                frame.total_audio_seconds,
                frame.total_text_chunks,
                frame.total_audio_chunks,
                frame.stats,
                frame.usage,
                context_id=frame.context_id,
                turn=turn,
            )
        case SessionClosedFrame():
            return SessionClosed(
                frame.total_audio_seconds or 0.0,
                frame.total_text_chunks or 0,
                frame.total_audio_chunks or 0,
                _usage_of(frame),
                turn=turn,
            )
        case InterruptedFrame():
            return Interrupted(turn=turn)
        case SettingsUpdatedFrame():
            return SettingsUpdated(frame.settings, turn=turn)
        case WarningFrame():
            return ServerWarning(frame.message, turn=turn)
        case SessionStartedFrame():
            return SessionStarted(frame.session_id, turn=turn)
        case ContextCreatedFrame():
            return ContextCreated(context_id=frame.context_id, turn=turn)
        case ContextClosedFrame():
            return ContextClosed(frame.usage, context_id=frame.context_id, turn=turn)
        case ContextTimeoutFrame():
            return ContextTimeout(context_id=frame.context_id, turn=turn)
        case ErrorFrame():
            return error_from_frame(frame)


def settings_update(**settings: object) -> UpdateSettingsFrame:
    """An ``update_settings`` frame; only the six updatable keys (PROTOCOL 5.7)."""
    if not settings:
        raise LocalProtocolError("update_settings: empty update")
    fixed = sorted(set(settings) - set(UPDATABLE_SETTINGS))
    if fixed:
        raise LocalProtocolError(f"update_settings: not updatable: {', '.join(fixed)}")
    try:
        return UpdateSettingsFrame(parse_config(settings))
    except RxTtsError as exc:
        raise LocalProtocolError(exc.message, error_code="VALIDATION_ERROR") from None


def wire_config(config: StreamConfig) -> WireConfig:
    """A :class:`StreamConfig` as the keys of a turn's first frame (PROTOCOL 5.3)."""
    return parse_config(config.to_wire())


# -- transition tables ------------------------------------------------------------------


class By(Enum):
    """A next state that depends on the machine's turns, resolved after the effect."""

    TURNS = auto()
    """IDLE without turns, STREAMING when the newest turn takes text, else FLUSHING."""
    ACKS = auto()
    """CANCELLING while cancels are unacknowledged, else as :attr:`TURNS`."""
    REFUSAL = auto()
    """NONE if nothing followed the refused creating frame, else CLOSING_IMMEDIATE."""


# -- /ws/tts/stream --------------------------------------------------------------------


class TurnState(Enum):
    """State of the client's side of the stream endpoint (the newest turn's view)."""

    IDLE = auto()
    """No turn on the wire."""
    STREAMING = auto()
    """The newest turn takes text."""
    FLUSHING = auto()
    """Every turn is flushed; waiting for their ``session_closed``."""
    CANCELLING = auto()
    """A ``cancel`` is unacknowledged: every frame but ``interrupted``/errors is dropped."""


S = TurnState
STREAM_INPUTS = (
    "begin_turn",
    "send_text",
    "flush",
    "end_turn",
    "cancel",
    "ack_timeout",
    "recv:audio",
    "recv:session_closed",
    "recv:interrupted",
    "recv:settings_updated",
    "recv:error",
    "recv:other",
    "connection_lost",
)
"""Inputs of :data:`STREAM_TABLE`: intents, received frames, and the session's events."""

_STREAM_COMMON: dict[str, Rule] = {
    "cancel": Rule("cancel", S.CANCELLING, "S-5: drop every turn not yet closed"),
    "recv:settings_updated": Rule("ack", By.ACKS, "S-7: an ack, not a turn frame"),
    "recv:error": Rule("error", By.ACKS, "3.4: errors always reach the session"),
    "connection_lost": Rule("lost", S.IDLE, "10: replay turns that had no audio"),
}
STREAM_TABLE: Mapping[tuple[TurnState, str], Rule] = MappingProxyType(
    {
        **{(s, k): r for s in S for k, r in _STREAM_COMMON.items()},
        (S.IDLE, "begin_turn"): Rule("begin", S.STREAMING, "5.1: a turn opened before its text"),
        (S.STREAMING, "begin_turn"): Rule("none", S.STREAMING),
        (S.FLUSHING, "begin_turn"): Rule("begin", S.STREAMING, "S-6: the next turn follows"),
        (S.CANCELLING, "begin_turn"): Rule("begin", S.CANCELLING, "S-5: a new turn after the ack"),
        (S.IDLE, "send_text"): Rule("open", S.STREAMING, "5.1: first text opens a turn"),
        (S.STREAMING, "send_text"): Rule("append", S.STREAMING, "5.2: tokens sent as they come"),
        (S.FLUSHING, "send_text"): Rule("open", S.STREAMING, "S-6: the next turn follows"),
        (S.CANCELLING, "send_text"): Rule("append", S.CANCELLING, "S-5: a new turn after the ack"),
        (S.IDLE, "flush"): Rule("none", S.IDLE, "5.5: nothing to end"),
        (S.STREAMING, "flush"): Rule("flush", By.TURNS, "S-3: flush ends the turn"),
        (S.FLUSHING, "flush"): Rule("none", S.FLUSHING),
        (S.CANCELLING, "flush"): Rule("flush", S.CANCELLING, "S-3"),
        (S.IDLE, "end_turn"): Rule("none", S.IDLE, "S-4: no open turn, nothing sent"),
        (S.STREAMING, "end_turn"): Rule("close", By.TURNS, "S-4: close = flush"),
        (S.FLUSHING, "end_turn"): Rule("none", S.FLUSHING),
        (S.CANCELLING, "end_turn"): Rule("close", S.CANCELLING, "S-4"),
        (S.CANCELLING, "ack_timeout"): Rule("abandon", S.IDLE, "S-5: no ack: the socket is abandoned"),
        (S.STREAMING, "recv:audio"): Rule("audio", S.STREAMING, "10: audio bars a replay"),
        (S.FLUSHING, "recv:audio"): Rule("audio", S.FLUSHING, "10: audio bars a replay"),
        (S.CANCELLING, "recv:audio"): Rule("drop", S.CANCELLING, "S-5: late audio is dropped"),
        (S.IDLE, "recv:session_closed"): Rule("deliver", S.IDLE, "S-4: empty close"),
        (S.STREAMING, "recv:session_closed"): Rule("turn_closed", By.TURNS, "S-8: idle auto-flush"),
        (S.FLUSHING, "recv:session_closed"): Rule("turn_closed", By.TURNS, "S-3: the oldest turn ends"),
        (S.CANCELLING, "recv:session_closed"): Rule("drop", S.CANCELLING, "S-5: never after cancel"),
        (S.IDLE, "recv:interrupted"): Rule("deliver", S.IDLE, "S-5: ack with no turn open"),
        (S.STREAMING, "recv:interrupted"): Rule("deliver", S.STREAMING, "S-5: stale ack"),
        (S.FLUSHING, "recv:interrupted"): Rule("deliver", S.FLUSHING, "S-5: stale ack"),
        (S.CANCELLING, "recv:interrupted"): Rule("acked", By.ACKS, "S-5: the ack ends the cancel"),
        (S.IDLE, "recv:other"): Rule("deliver", S.IDLE),
        (S.STREAMING, "recv:other"): Rule("deliver", S.STREAMING, "S-2: the oldest turn's frames"),
        (S.FLUSHING, "recv:other"): Rule("deliver", S.FLUSHING, "S-2"),
        (S.CANCELLING, "recv:other"): Rule("drop", S.CANCELLING, "S-5/S-6: late frames dropped"),
        (S.IDLE, "recv:audio"): Rule("deliver", S.IDLE),
    }
)
"""The stream client's transition table, executed by :class:`StreamClient`."""


@dataclass(slots=True)
class _Turn:
    id: int
    flushed: bool = False
    frames: list[ClientFrame] = field(default_factory=list)
    audio_frames: int = 0


def _frame_input(frame: ServerFrame) -> str:
    match frame:
        case AudioFrame():
            return "recv:audio"
        case SessionClosedFrame():
            return "recv:session_closed"
        case InterruptedFrame():
            return "recv:interrupted"
        case SettingsUpdatedFrame():
            return "recv:settings_updated"
        case ErrorFrame():
            return "recv:error"
    return "recv:other"


@dataclass(slots=True)
class StreamClient:
    """The client half of ``/ws/tts/stream``: turns, config epochs, barge-in.

    Every intent and received frame is looked up in :data:`STREAM_TABLE`; the cell's
    effect runs, then the state moves. Turns are numbered from 0. ``receive`` returns
    ``(turn_id, output)`` pairs; the id is ``None`` for frames that belong to no turn.
    """

    config: StreamConfig = field(default_factory=StreamConfig)
    turns: deque[_Turn] = field(default_factory=deque)
    cancelling: int = 0
    """Cancels sent and not yet acknowledged."""
    config_dirty: bool = True
    state: TurnState = TurnState.IDLE
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _out: list[ClientFrame] = field(default_factory=list)
    _events: list[tuple[int | None, Output]] = field(default_factory=list)
    _arg: Any = None

    @property
    def current_turn(self) -> int | None:
        """Id of the turn that is accepting text, if any."""
        if self.turns and not self.turns[-1].flushed:
            return self.turns[-1].id
        return None

    def _step(self, name: str, arg: Any = None) -> None:
        rule = STREAM_TABLE.get((self.state, name))
        if rule is None:
            raise LocalProtocolError(f"{name} is not allowed while {self.state.name}")
        self._arg = arg
        getattr(self, f"_do_{rule.effect}")()
        self.state = self._resolve(rule.next)

    def _resolve(self, nxt: Enum) -> TurnState:
        if nxt is By.ACKS and self.cancelling:
            return S.CANCELLING
        if isinstance(nxt, By):
            if not self.turns:
                return S.IDLE
            return S.FLUSHING if self.turns[-1].flushed else S.STREAMING
        assert isinstance(nxt, TurnState)
        return nxt

    def _emit(self) -> list[ClientFrame]:
        out, self._out = self._out, []
        return out

    # -- intents ----------------------------------------------------------------------

    def begin_turn(self) -> int:
        """Open a turn without sending anything yet; returns its id."""
        self._step("begin_turn")
        return self.turns[-1].id

    def send_text(self, text: str, flush: bool = False) -> list[ClientFrame]:
        """Append text to the open turn (opening one); ``flush`` ends it (PROTOCOL 5.2)."""
        if not isinstance(text, str):
            raise LocalProtocolError(f"text must be a string, got {type(text).__name__}")
        self._step("send_text", (text, flush))
        return self._emit()

    def flush(self) -> list[ClientFrame]:
        """End the open turn, speaking its buffer; nothing if no turn is open."""
        self._step("flush")
        return self._emit()

    def end_turn(self) -> list[ClientFrame]:
        """``close`` the open turn (PROTOCOL S-4); nothing when none is open."""
        self._step("end_turn")
        return self._emit()

    def cancel(self) -> tuple[list[ClientFrame], list[int]]:
        """Barge-in: cancel every turn not yet closed (PROTOCOL 5.6).

        Returns the frames to send and the ids of the cancelled turns.
        """
        cancelled = [t.id for t in self.turns]
        self._step("cancel")
        return self._emit(), cancelled

    def ack_timeout(self) -> list[tuple[int, list[ClientFrame]]]:
        """No ``interrupted`` came: the socket's turn state is unknown (PROTOCOL S-5).

        The caller abandons the socket; returns the turns to replay on a new one
        (turns sent after the cancel: none of their audio was delivered).
        """
        self._step("ack_timeout")
        replay: list[tuple[int, list[ClientFrame]]] = self._arg
        return replay

    def update_config(self, config: StreamConfig) -> None:
        """Use ``config`` from the next turn on (local only)."""
        self.config = config
        self.config_dirty = True

    def update_settings(self, **settings: object) -> list[ClientFrame]:
        """``update_settings`` for the next turn (PROTOCOL 5.7); legal in every state."""
        return [settings_update(**settings)]

    def connection_lost(self) -> list[tuple[int, list[ClientFrame]]]:
        """The socket is gone: turns with no audio yet, with their frames for replay.

        PROTOCOL 10: a turn is replayed only if none of its audio was delivered. Turns
        that had audio are dropped. The next frame re-sends config.
        """
        self._step("connection_lost")
        replay: list[tuple[int, list[ClientFrame]]] = self._arg
        return replay

    def replay(self, turn_id: int, frames: list[ClientFrame]) -> list[ClientFrame]:
        """Re-open a turn on a new socket, config on its first frame (PROTOCOL 10)."""
        turn = _Turn(turn_id)
        self.turns.append(turn)
        out: list[ClientFrame] = []
        for frame in frames:
            if isinstance(frame, TextFrame) and not out:
                frame = TextFrame(frame.text, frame.flush, None, self._config())
            out.append(frame)
            turn.frames.append(frame)
            turn.flushed = turn.flushed or _ends_turn(frame)
        self.state = self._resolve(By.TURNS)
        return out

    def receive(self, frame: ServerFrame) -> list[tuple[int | None, Output]]:
        """Events for one server frame, tagged with the turn they belong to."""
        self._step(_frame_input(frame), frame)
        out, self._events = self._events, []
        return out

    # -- effects (one per table cell name) --------------------------------------------

    def _config(self) -> WireConfig:
        # PROTOCOL 5.3: config rides on the first frame after connect, cancel,
        # update_config or reconnect; the server keeps it sticky otherwise.
        if not self.config_dirty:
            return WireConfig()
        self.config_dirty = False
        return wire_config(self.config)

    def _push(self, frame: ClientFrame, ends: bool) -> None:
        turn = self.turns[-1]
        turn.frames.append(frame)
        turn.flushed = ends
        self._out.append(frame)

    def _do_begin(self) -> None:
        if self.current_turn is None:
            self.turns.append(_Turn(next(self._ids)))

    def _do_open(self) -> None:
        self.turns.append(_Turn(next(self._ids)))
        self._do_append()

    def _do_append(self) -> None:
        if self.current_turn is None:
            self.turns.append(_Turn(next(self._ids)))
        text, flush = self._arg
        self._push(TextFrame(text, flush, None, self._config()), flush)

    def _do_flush(self) -> None:
        if self.current_turn is not None:
            self._push(FlushFrame(None, self._config()), True)

    def _do_close(self) -> None:
        if self.current_turn is not None:
            self._push(CloseFrame(), True)

    def _do_none(self) -> None:
        pass

    def _do_cancel(self) -> None:
        self.turns.clear()
        self.cancelling += 1
        self.config_dirty = True
        self._out.append(CancelFrame())

    def _do_abandon(self) -> None:
        self._do_lost()

    def _do_lost(self) -> None:
        self._arg = [(t.id, list(t.frames)) for t in self.turns if t.audio_frames == 0]
        self.turns.clear()
        self.cancelling = 0
        self.config_dirty = True

    def _oldest(self) -> _Turn | None:
        return self.turns[0] if self.turns else None

    def _do_deliver(self) -> None:
        turn = self._oldest()
        tid = turn.id if turn else None
        self._events.append((tid, to_event(self._arg, tid)))

    def _do_audio(self) -> None:
        turn = self._oldest()
        if turn is not None:
            turn.audio_frames += 1
        self._do_deliver()

    def _do_turn_closed(self) -> None:
        self._do_deliver()
        if self.turns:
            self.turns.popleft()

    def _do_drop(self) -> None:
        pass

    def _do_acked(self) -> None:
        self.cancelling -= 1
        self._events.append((None, Interrupted()))

    def _do_ack(self) -> None:
        self._events.append((None, to_event(self._arg)))

    def _do_error(self) -> None:
        if self.cancelling:
            self._events.append((None, to_event(self._arg)))
        else:
            self._do_deliver()


def _ends_turn(frame: ClientFrame) -> bool:
    return isinstance(frame, FlushFrame | CloseFrame) or bool(isinstance(frame, TextFrame) and frame.flush)


# -- /ws/tts ------------------------------------------------------------------------------


@dataclass(slots=True)
class TtsClient:
    """The client half of ``/ws/tts``: requests answered in order (PROTOCOL T-2)."""

    pending: deque[int] = field(default_factory=deque)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def request(self, text: str, config: StreamConfig) -> tuple[int, list[ClientFrame]]:
        """A request id and its frame."""
        wire = wire_config(config)
        keep = {k: v for k, v in wire.to_wire().items() if k not in _STREAM_ONLY}
        rid = next(self._ids)
        self.pending.append(rid)
        return rid, [TtsRequest(text, parse_config(keep))]

    def receive(self, frame: ServerFrame) -> list[tuple[int | None, Output]]:
        """Events for the oldest pending request; ``final`` or an error ends it."""
        rid = self.pending[0] if self.pending else None
        out = to_event(frame, rid)
        if isinstance(frame, FinalFrame | ErrorFrame) and self.pending:
            self.pending.popleft()
        return [(rid, out)]


_STREAM_ONLY = frozenset({"chunk_length_schedule", "auto_mode", "flush_timeout_ms", "max_buffer_length"})

__all__ = [
    "STREAM_TABLE",
    "By",
    "Output",
    "Rule",
    "StreamClient",
    "TtsClient",
    "TurnState",
    "error_from_frame",
    "settings_update",
    "to_event",
    "wire_config",
]
