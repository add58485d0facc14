"""Client state machines: intents in, frames out; server frames in, typed events out.

Sans-I/O in the h11 style: no asyncio, sockets, reactivex or clock here. The session
layer calls an intent (``send_text``, ``cancel``...) and writes the returned frames; it
feeds every decoded server frame to ``receive`` and delivers the returned events, each
tagged with its turn. Every decision is a cell of an explicit transition table
(:data:`STREAM_TABLE`, :data:`MULTI_TABLE`) that the machines execute: the cell names
the effect and the next state. An intent missing from the table raises
:class:`~rxtts.errors.LocalProtocolError`; a received frame missing from it is dropped.

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

Context table (PROTOCOL 6), one machine per context id, from :data:`MULTI_TABLE`::

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

``TURNS``: IDLE without turns, STREAMING if the newest turn takes text, else FLUSHING;
``ACKS``: CANCELLING while a cancel is unacknowledged, else as ``TURNS``.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, auto
from types import MappingProxyType
from typing import Any, TypeAlias

from rxtts.config import MultiContextConfig, StreamConfig, VoiceSettings
from rxtts.errors import LocalProtocolError, RxTtsError, TooManyContextsError, classify
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
    CloseContextFrame,
    CloseFrame,
    CloseSocketFrame,
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


@dataclass(frozen=True, slots=True)
class Rule:
    """One cell of a transition table: the effect to run, then the next state."""

    effect: str
    """Name of the machine method that carries the effect out (``_do_<effect>``)."""
    next: Enum
    """The next state, or a :class:`By` resolver."""
    why: str = ""
    """The PROTOCOL rule the cell enforces."""


def render_table(
    table: Mapping[tuple[Enum, str], Rule], states: Sequence[Enum], inputs: Sequence[str]
) -> str:
    """A transition table as fixed-width text, one row per legal (state, input) cell.

    Columns: state, input, effect, next state, and the PROTOCOL rule it enforces. A
    pair without a row is illegal: ``LocalProtocolError`` for an intent, a received
    frame is dropped.
    """
    rows = [("state", "input", "effect", "next", "rule")]
    for state in states:
        for name in inputs:
            rule = table.get((state, name))
            if rule is not None:
                rows.append((state.name, name, rule.effect, rule.next.name, rule.why.split(":")[0]))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


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


# -- /ws/tts/multi ----------------------------------------------------------------------


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
    "MULTI_TABLE",
    "STREAM_TABLE",
    "By",
    "ContextState",
    "MultiClient",
    "Output",
    "Rule",
    "StreamClient",
    "TtsClient",
    "TurnState",
    "error_from_frame",
    "render_table",
    "settings_update",
    "to_event",
    "wire_config",
]
