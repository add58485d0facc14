"""Server state machines: client frames in, commands and server frames out.

Sans-I/O in the h11 style: every protocol decision is a row of an explicit transition
table (``state × event → next state + effects``) that :meth:`receive` and the pipeline
hooks execute; the I/O layer (:mod:`rxtts.server`) only carries out the returned
commands (pipelines, frames, timers, close) and reports progress back. The core never
reads the clock: callers pass ``now`` (any monotonic seconds), the machine answers with
:class:`ArmTimer`/:class:`CancelTimer`, and the I/O layer calls :meth:`timer_fired`.

The tables below are generated from the executed tables (``render_table``);
``tests/test_protocol_machines.py`` fails when they drift. A ``(state, event)`` pair that
is absent is illegal: a client frame gets the ``PROTOCOL_ERROR`` frame, a pipeline event
(a late result of a cancelled pipeline, PROTOCOL S-5) is dropped.

``/ws/tts/stream`` socket (PROTOCOL 5; the open turn is the one taking text)::

    state   event            next    effects
    ------  ---------------  ------  -----------------------------------------
    IDLE    TEXT             OPEN    merge_config, open_turn, append, arm_idle
    OPEN    TEXT             OPEN    merge_config, append, arm_idle
    IDLE    TEXT_FLUSH       IDLE    merge_config, open_turn, append, end_turn
    OPEN    TEXT_FLUSH       IDLE    merge_config, append, end_turn
    IDLE    VOICELESS        IDLE    merge_config, missing_voice
    IDLE    BLANK            IDLE    merge_config
    OPEN    BLANK            OPEN    merge_config, append, arm_idle
    IDLE    FLUSH            IDLE    merge_config, empty_close
    OPEN    FLUSH            IDLE    merge_config, append, end_turn
    IDLE    CLOSE            IDLE    empty_close
    OPEN    CLOSE            IDLE    end_turn
    IDLE    CANCEL           IDLE    cancel_all, interrupted
    OPEN    CANCEL           IDLE    cancel_all, interrupted
    IDLE    UPDATE_SETTINGS  IDLE    merge_settings, settings_updated
    OPEN    UPDATE_SETTINGS  OPEN    merge_settings, settings_updated
    IDLE    CLOSE_SOCKET     CLOSED  empty_close, close_socket
    OPEN    CLOSE_SOCKET     CLOSED  end_turn, close_socket
    OPEN    IDLE_TIMER       IDLE    warn_idle, end_turn
    IDLE    IDLE_TIMER       IDLE    -
    CLOSED  IDLE_TIMER       CLOSED  -

``/ws/tts/stream`` turn pipelines (pipeline events of a turn)::

    state   event       next    effects
    ------  ----------  ------  -------------------------------------------
    ENDING  FLUSH_DONE  CLOSED  final, session_closed, forget
    OPEN    ERROR       CLOSED  cancel, error_frame, session_closed, forget
    ENDING  ERROR       CLOSED  cancel, error_frame, session_closed, forget

``/ws/tts/multi`` socket (PROTOCOL 6)::

    state  event             next     effects
    -----  ----------------  -------  --------------------------------
    OPEN   CONTEXT_FRAME     OPEN     dispatch
    OPEN   PREP              OPEN     merge_config
    OPEN   CONTEXTLESS_TEXT  OPEN     context_id_required
    OPEN   UPDATE_SETTINGS   OPEN     merge_settings, settings_updated
    OPEN   CLOSE_SOCKET      CLOSING  close_all, maybe_close

``/ws/tts/multi`` contexts (PROTOCOL 6; ``ABSENT``/``NO_SLOT``: an unknown id with a
free slot / with 20 open contexts)::

    state    event            next     effects
    -------  ---------------  -------  -----------------------------------
    ABSENT   TEXT             OPEN     create, append, touch
    ABSENT   TEXT_FLUSH       OPEN     create, append, flush, touch
    ABSENT   VOICELESS        OPEN     create, missing_voice, touch
    ABSENT   BLANK            OPEN     create, touch
    ABSENT   FLUSH            OPEN     create, flush, touch
    NO_SLOT  TEXT             NO_SLOT  too_many
    NO_SLOT  TEXT_FLUSH       NO_SLOT  too_many
    NO_SLOT  VOICELESS        NO_SLOT  too_many
    NO_SLOT  BLANK            NO_SLOT  too_many
    NO_SLOT  FLUSH            NO_SLOT  too_many
    ABSENT   CLOSE            ABSENT   unknown_closed
    NO_SLOT  CLOSE            NO_SLOT  unknown_closed
    ABSENT   CLOSE_IMMEDIATE  ABSENT   unknown_closed
    NO_SLOT  CLOSE_IMMEDIATE  NO_SLOT  unknown_closed
    OPEN     TEXT             OPEN     append, touch
    OPEN     TEXT_FLUSH       OPEN     append, flush, touch
    OPEN     VOICELESS        OPEN     missing_voice, touch
    OPEN     BLANK            OPEN     touch
    OPEN     FLUSH            OPEN     flush, touch
    OPEN     CLOSE            CLOSING  flush, touch
    CLOSING  TEXT             CLOSING  closing
    CLOSING  TEXT_FLUSH       CLOSING  closing
    CLOSING  VOICELESS        CLOSING  closing
    CLOSING  BLANK            CLOSING  closing
    CLOSING  FLUSH            CLOSING  closing
    CLOSING  CLOSE            CLOSING  -
    OPEN     CLOSE_IMMEDIATE  ABSENT   cancel, closed_sent, forget
    CLOSING  CLOSE_IMMEDIATE  ABSENT   cancel, closed_sent, forget
    OPEN     TIMER            ABSENT   cancel, timeout, forget
    OPEN     TIMER_BUSY       OPEN     touch
    CLOSING  TIMER            CLOSING  -
    CLOSING  TIMER_BUSY       CLOSING  -
    OPEN     FLUSH_DONE       OPEN     final
    CLOSING  FLUSH_DONE       CLOSING  final
    CLOSING  LAST_FLUSH_DONE  ABSENT   final, closed, forget
    OPEN     ERROR            ABSENT   error_frame, cancel, closed, forget
    CLOSING  ERROR            ABSENT   error_frame, cancel, closed, forget

``/ws/tts`` (PROTOCOL 4, T-1..T-3)::

    state  event       next  effects
    -----  ----------  ----  ---------------
    IDLE   REQUEST     BUSY  enqueue
    BUSY   REQUEST     BUSY  enqueue
    IDLE   REFUSAL     IDLE  reply
    BUSY   REFUSAL     BUSY  reply
    BUSY   DONE        BUSY  final, pay_owed
    BUSY   LAST_DONE   IDLE  final, pay_owed
    BUSY   ERROR       BUSY  fail, pay_owed
    BUSY   LAST_ERROR  IDLE  fail, pay_owed
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Any, Generic, TypeAlias, TypeVar

from rxtts.config import DEFAULT_SCHEDULE, MAX_CONTEXTS, VoiceSettings
from rxtts.errors import ProtocolError
from rxtts.events import Encoding, SessionUsage, WordTimestamp
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
    SettingsUpdatedFrame,
    TextFrame,
    TtsRequest,
    UpdateSettingsFrame,
    WarningFrame,
    WireConfig,
    WordTimestampsFrame,
)

IDLE_AUTO_FLUSH_SECONDS = 5.0
"""Unflushed stream turns end this long after their last text (PROTOCOL S-8)."""
DEFAULT_INACTIVITY_TIMEOUT = 20.0
"""Idle contexts close after this many seconds unless configured (PROTOCOL M-10)."""
DEFAULT_MODEL_ID = "kugel-3.5"
AUTO_FLUSH_WARNING = (
    "Turn ended after 5 s without text; remaining text was flushed. "
    'Send {"flush": true} to end turns explicitly.'
)


# -- commands to the I/O layer --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send these frames now, in order."""

    frames: tuple[ServerFrame, ...]
    purge_key: str | None = None
    """Pipeline whose :class:`Purge` drops these frames while still unsent (S-5, M-7a).
    Frames returned by the chunk hooks (``chunk_started``, ``audio``,
    ``word_timestamps``, ``chunk_done``) always belong to their pipeline."""


@dataclass(frozen=True, slots=True)
class OpenPipeline:
    """Create a synthesis pipeline for a turn or a context."""

    key: str
    """Turn key (``"turn-3"``), request key (``"req-0"``) or context id."""
    config: WireConfig
    """Effective config; ``voice_id`` is resolved."""
    voice_settings: VoiceSettings | None = None
    """Context voice settings (multi)."""
    start: bool = True
    """Start synthesis now; ``False``: wait for :class:`StartPipeline` (S-6, T-2)."""


@dataclass(frozen=True, slots=True)
class StartPipeline:
    """Start a pipeline opened with ``start=False``: the one before it has ended."""

    key: str


@dataclass(frozen=True, slots=True)
class AppendText:
    """Feed text into a pipeline."""

    key: str
    text: str


@dataclass(frozen=True, slots=True)
class Flush:
    """Feed a FLUSH into a pipeline; the I/O layer answers with ``flush_done``."""

    key: str


@dataclass(frozen=True, slots=True)
class CancelPipeline:
    """Dispose a pipeline at once: stop synthesis, drop its text."""

    key: str


@dataclass(frozen=True, slots=True)
class Purge:
    """Drop unsent frames of these pipelines (``None``: of every pipeline) (S-5, M-7a)."""

    keys: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class ArmTimer:
    """(Re)arm the timer ``key`` to fire :meth:`timer_fired` at ``deadline``."""

    key: str
    deadline: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Disarm the timer ``key`` if armed."""

    key: str


@dataclass(frozen=True, slots=True)
class CloseSocket:
    """Close the WebSocket with this code once the frames before it are sent."""

    code: int = 1000
    reason: str = ""


Command: TypeAlias = (
    Send
    | OpenPipeline
    | StartPipeline
    | AppendText
    | Flush
    | CancelPipeline
    | Purge
    | ArmTimer
    | CancelTimer
    | CloseSocket
)


def _send(*frames: ServerFrame, purge_key: str | None = None) -> Send:
    return Send(tuple(frames), purge_key)


def _error(exc: ProtocolError, context_id: str | None = None) -> Send:
    return _send(
        ErrorFrame(exc.message, exc.error_code or "PROTOCOL_ERROR", exc.status or 400, context_id=context_id)
    )


def protocol_error(message: str, context_id: str | None = None) -> ErrorFrame:
    """The frame for a client frame its state does not allow (DESIGN 7: socket lives)."""
    return ErrorFrame(message, "PROTOCOL_ERROR", 400, context_id=context_id)


def missing_voice_error(context_id: str | None = None) -> ErrorFrame:
    """``MISSING_VOICE_ID`` (PROTOCOL 3.4, T-3)."""
    return ErrorFrame("voice_id is required", "MISSING_VOICE_ID", 400, context_id=context_id)


def settings_snapshot(config: WireConfig) -> dict[str, object]:
    """The six updatable settings, ``None`` where unset (PROTOCOL U-24)."""
    return {k: getattr(config, k) for k in UPDATABLE_SETTINGS}


@dataclass(frozen=True, slots=True)
class Pricing:
    """Price of audio in EUR cents per minute; ``None`` = unknown (PROTOCOL 3.5)."""

    cents_per_minute: float | None = None

    def usage(self, audio_seconds: float, characters: int, model_id: str | None) -> SessionUsage:
        """Usage for this much audio; the cost is ``None`` rather than a fake 0."""
        if self.cents_per_minute is None:
            return SessionUsage(
                round(audio_seconds, 4),
                characters,
                None,
                None,
                model_id or DEFAULT_MODEL_ID,
                cost_unavailable=True,
            )
        cost = round(audio_seconds / 60.0 * self.cents_per_minute, 6)
        return SessionUsage(round(audio_seconds, 4), characters, cost, "eur", model_id or DEFAULT_MODEL_ID)


# -- tables ---------------------------------------------------------------------------

S = TypeVar("S", bound=Enum)
E = TypeVar("E", bound=Enum)
F = TypeVar("F", bound=Enum)


@dataclass(frozen=True, slots=True)
class Transition(Generic[S, F]):
    """One row of a table: the next state and the effects run in order."""

    next: S
    effects: tuple[F, ...] = ()


Table: TypeAlias = Mapping[tuple[S, E], Transition[S, F]]


def render_table(table: Mapping[tuple[S, E], Transition[S, F]]) -> str:
    """The table as the text block shown in this module's docstring."""
    rows = [("state", "event", "next", "effects")]
    for (state, event), t in table.items():
        effects = ", ".join(f.name.lower() for f in t.effects) or "-"
        rows.append((state.name, event.name, t.next.name, effects))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["    " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "    " + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _row(states: Iterable[S], event: E, nxt: S | None, *effects: F) -> dict[tuple[S, E], Transition[S, F]]:
    """Rows for ``event`` in each of ``states``; ``nxt=None`` keeps the state."""
    return {(s, event): Transition(nxt if nxt is not None else s, tuple(effects)) for s in states}


# -- per-pipeline bookkeeping ---------------------------------------------------------


class PipelineState(Enum):
    """Lifecycle of one turn, request or context."""

    OPEN = auto()
    ENDING = auto()
    CLOSED = auto()
    CANCELLED = auto()


@dataclass(slots=True)
class _Pipeline:
    key: str
    config: WireConfig
    context_id: str | None = None
    state: PipelineState = PipelineState.OPEN
    next_chunk: int = 0
    next_idx: int = 0
    chunks_done: int = 0
    audio_seconds: float = 0.0
    """Seconds of audio generated (handed to the I/O layer)."""
    sent_seconds: float = 0.0
    """Seconds of audio written to the socket (:meth:`_Machine.audio_sent`, M-7a)."""
    characters: int = 0
    pending_flushes: int = 0
    current_chunk: int | None = None
    chunk_offset_ms: float = 0.0
    """Audio of the pipeline before the current chunk (word timestamps, issue 17)."""
    text: str = ""
    """Every character the client sent to this turn/request/context: the base of
    word-timestamp char offsets."""
    char_cursor: int = 0
    """Where the next chunk's first word is searched in :attr:`text`."""
    started: bool = True
    last_text_at: float = 0.0
    idle_deadline: float = -math.inf
    """When the armed idle/inactivity timer is due (S-8, M-10)."""

    @property
    def live(self) -> bool:
        return self.state in (PipelineState.OPEN, PipelineState.ENDING)


@dataclass(slots=True)
class _Machine:
    """Shared result handling: numbering, totals, timestamps (PROTOCOL S-2, U-1, U-2)."""

    pricing: Pricing = field(default_factory=Pricing)
    pipelines: dict[str, _Pipeline] = field(default_factory=dict)

    def _live(self, key: str) -> _Pipeline | None:
        p = self.pipelines.get(key)
        return p if p is not None and p.live else None

    def chunk_started(self, key: str, text: str) -> list[ServerFrame]:
        """A chunk's synthesis began; frames of cancelled pipelines are dropped."""
        p = self._live(key)
        if p is None:
            return []
        p.current_chunk = p.next_chunk
        p.next_chunk += 1
        p.chunk_offset_ms = p.audio_seconds * 1000.0
        return [GenerationStartedFrame(p.current_chunk, text, p.context_id)]

    def audio(
        self, key: str, data: bytes, enc: Encoding, sample_rate: int, samples: int
    ) -> list[ServerFrame]:
        """One encoded audio frame of the current chunk (PROTOCOL G-8)."""
        p = self._live(key)
        if p is None or not data:
            return []
        frame = AudioFrame(data, enc, p.next_idx, sample_rate, samples, p.current_chunk, p.context_id)
        p.next_idx += 1
        p.audio_seconds += samples / sample_rate
        return [frame]

    def audio_sent(self, key: str, seconds: float) -> None:
        """``seconds`` of ``key``'s audio were written to the socket (M-7a billing)."""
        p = self._live(key)
        if p is not None:
            p.sent_seconds += seconds

    def word_timestamps(self, key: str, frame: WordTimestampsFrame) -> list[ServerFrame]:
        """Alignment of the current chunk, only if requested (PROTOCOL G-9).

        ``frame`` is relative to the chunk; the result is relative to the pipeline
        (issue 17): times from its first audio, char offsets into the text the client
        sent to this turn, request or context (:attr:`_Pipeline.text`).
        """
        p = self._live(key)
        if p is None or not p.config.word_timestamps:
            return []
        return [WordTimestampsFrame(self._rebase(p, frame.words), p.current_chunk, p.context_id)]

    @staticmethod
    def _rebase(p: _Pipeline, words: Iterable[WordTimestamp]) -> tuple[WordTimestamp, ...]:
        out: list[WordTimestamp] = []
        base_ms = p.chunk_offset_ms
        for w in words:
            at = p.text.find(w.word, p.char_cursor) if w.word else -1
            start = at if at >= 0 else p.char_cursor
            end = start + len(w.word) if at >= 0 else start
            p.char_cursor = max(p.char_cursor, end)
            out.append(
                WordTimestamp(
                    w.word, round(w.start_ms + base_ms), round(w.end_ms + base_ms), start, end, w.score
                )
            )
        return tuple(out)

    def chunk_done(self, key: str, audio_seconds: float, gen_ms: float) -> list[ServerFrame]:
        """The current chunk's audio is all sent (PROTOCOL S-9: always after a start)."""
        p = self._live(key)
        if p is None or p.current_chunk is None:
            return []
        p.chunks_done += 1
        chunk, p.current_chunk = p.current_chunk, None
        return [ChunkCompleteFrame(chunk, audio_seconds, gen_ms, p.context_id)]

    def _usage(self, p: _Pipeline, sent_only: bool = False) -> SessionUsage:
        seconds = p.sent_seconds if sent_only else p.audio_seconds
        return self.pricing.usage(seconds, p.characters, p.config.model_id)

    def _start_next(self, order: Iterable[str]) -> list[Command]:
        # PROTOCOL S-6, T-2: the next turn/request starts after this one's last frame.
        for key in order:
            p = self.pipelines[key]
            if p.started:
                return []
            p.started = True
            return [StartPipeline(key)]
        return []


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
    **_row([_SS.IDLE], _SE.TEXT, _SS.OPEN, _SF.MERGE_CONFIG, _SF.OPEN_TURN, _SF.APPEND, _SF.ARM_IDLE),
    **_row([_SS.OPEN], _SE.TEXT, _SS.OPEN, _SF.MERGE_CONFIG, _SF.APPEND, _SF.ARM_IDLE),
    **_row([_SS.IDLE], _SE.TEXT_FLUSH, _SS.IDLE, _SF.MERGE_CONFIG, _SF.OPEN_TURN, _SF.APPEND, _SF.END_TURN),
    **_row([_SS.OPEN], _SE.TEXT_FLUSH, _SS.IDLE, _SF.MERGE_CONFIG, _SF.APPEND, _SF.END_TURN),
    **_row([_SS.IDLE], _SE.VOICELESS, _SS.IDLE, _SF.MERGE_CONFIG, _SF.MISSING_VOICE),
    # S-9: blank text opens nothing; inside a turn it is spacing between tokens.
    **_row([_SS.IDLE], _SE.BLANK, _SS.IDLE, _SF.MERGE_CONFIG),
    **_row([_SS.OPEN], _SE.BLANK, _SS.OPEN, _SF.MERGE_CONFIG, _SF.APPEND, _SF.ARM_IDLE),
    **_row([_SS.IDLE], _SE.FLUSH, _SS.IDLE, _SF.MERGE_CONFIG, _SF.EMPTY_CLOSE),
    **_row([_SS.OPEN], _SE.FLUSH, _SS.IDLE, _SF.MERGE_CONFIG, _SF.APPEND, _SF.END_TURN),
    **_row([_SS.IDLE], _SE.CLOSE, _SS.IDLE, _SF.EMPTY_CLOSE),
    **_row([_SS.OPEN], _SE.CLOSE, _SS.IDLE, _SF.END_TURN),
    # S-5: interrupted even when no turn is open (PY waits for it).
    **_row(_ANY_STREAM, _SE.CANCEL, _SS.IDLE, _SF.CANCEL_ALL, _SF.INTERRUPTED),
    **_row(_ANY_STREAM, _SE.UPDATE_SETTINGS, None, _SF.MERGE_SETTINGS, _SF.SETTINGS_UPDATED),
    **_row([_SS.IDLE], _SE.CLOSE_SOCKET, _SS.CLOSED, _SF.EMPTY_CLOSE, _SF.CLOSE_SOCKET),
    **_row([_SS.OPEN], _SE.CLOSE_SOCKET, _SS.CLOSED, _SF.END_TURN, _SF.CLOSE_SOCKET),
    **_row([_SS.OPEN], _SE.IDLE_TIMER, _SS.IDLE, _SF.WARN_IDLE, _SF.END_TURN),
    **_row([_SS.IDLE, _SS.CLOSED], _SE.IDLE_TIMER, None),  # stale timer
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
    **_row([_TS.ENDING], _TE.FLUSH_DONE, _TS.CLOSED, _TF.FINAL, _TF.SESSION_CLOSED, _TF.FORGET),
    **_row(
        [_TS.OPEN, _TS.ENDING],
        _TE.ERROR,
        _TS.CLOSED,
        _TF.CANCEL,
        _TF.ERROR_FRAME,
        _TF.SESSION_CLOSED,
        _TF.FORGET,
    ),
}
"""Executed by :meth:`StreamServer.flush_done` and :meth:`StreamServer.error`."""


@dataclass(slots=True)
class _Step:
    """The inputs of one transition and the commands it produces."""

    frame: ClientFrame | None = None
    key: str | None = None
    now: float = 0.0
    exc: ProtocolError | None = None
    cmds: list[Command] = field(default_factory=list)
    frames: list[ServerFrame] = field(default_factory=list)


def _text_and_flush(frame: ClientFrame) -> tuple[str, bool]:
    if isinstance(frame, TextFrame):
        return frame.text, bool(frame.flush)
    return "", True


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
    **_row([_MS.OPEN], _ME.CONTEXT_FRAME, None, _MF.DISPATCH),
    **_row([_MS.OPEN], _ME.PREP, None, _MF.MERGE_CONFIG),
    **_row([_MS.OPEN], _ME.CONTEXTLESS_TEXT, None, _MF.CONTEXT_ID_REQUIRED),
    **_row([_MS.OPEN], _ME.UPDATE_SETTINGS, None, _MF.MERGE_SETTINGS, _MF.SETTINGS_UPDATED),
    **_row([_MS.OPEN], _ME.CLOSE_SOCKET, _MS.CLOSING, _MF.CLOSE_ALL, _MF.MAYBE_CLOSE),
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
    **_row(_NEW, _CE.TEXT, _CS.OPEN, _CF.CREATE, _CF.APPEND, _CF.TOUCH),
    **_row(_NEW, _CE.TEXT_FLUSH, _CS.OPEN, _CF.CREATE, _CF.APPEND, _CF.FLUSH, _CF.TOUCH),
    **_row(_NEW, _CE.VOICELESS, _CS.OPEN, _CF.CREATE, _CF.MISSING_VOICE, _CF.TOUCH),
    **_row(_NEW, _CE.BLANK, _CS.OPEN, _CF.CREATE, _CF.TOUCH),
    **_row(_NEW, _CE.FLUSH, _CS.OPEN, _CF.CREATE, _CF.FLUSH, _CF.TOUCH),
    **_row((_CS.NO_SLOT,), _CE.TEXT, None, _CF.TOO_MANY),
    **_row((_CS.NO_SLOT,), _CE.TEXT_FLUSH, None, _CF.TOO_MANY),
    **_row((_CS.NO_SLOT,), _CE.VOICELESS, None, _CF.TOO_MANY),
    **_row((_CS.NO_SLOT,), _CE.BLANK, None, _CF.TOO_MANY),
    **_row((_CS.NO_SLOT,), _CE.FLUSH, None, _CF.TOO_MANY),
    **_row((_CS.ABSENT, _CS.NO_SLOT), _CE.CLOSE, None, _CF.UNKNOWN_CLOSED),
    **_row((_CS.ABSENT, _CS.NO_SLOT), _CE.CLOSE_IMMEDIATE, None, _CF.UNKNOWN_CLOSED),
    **_row([_CS.OPEN], _CE.TEXT, None, _CF.APPEND, _CF.TOUCH),
    **_row([_CS.OPEN], _CE.TEXT_FLUSH, None, _CF.APPEND, _CF.FLUSH, _CF.TOUCH),
    **_row([_CS.OPEN], _CE.VOICELESS, None, _CF.MISSING_VOICE, _CF.TOUCH),
    **_row([_CS.OPEN], _CE.BLANK, None, _CF.TOUCH),
    **_row([_CS.OPEN], _CE.FLUSH, None, _CF.FLUSH, _CF.TOUCH),
    **_row([_CS.OPEN], _CE.CLOSE, _CS.CLOSING, _CF.FLUSH, _CF.TOUCH),
    **_row([_CS.CLOSING], _CE.TEXT, None, _CF.CLOSING),
    **_row([_CS.CLOSING], _CE.TEXT_FLUSH, None, _CF.CLOSING),
    **_row([_CS.CLOSING], _CE.VOICELESS, None, _CF.CLOSING),
    **_row([_CS.CLOSING], _CE.BLANK, None, _CF.CLOSING),
    **_row([_CS.CLOSING], _CE.FLUSH, None, _CF.CLOSING),
    **_row([_CS.CLOSING], _CE.CLOSE, None),
    # M-7, M-7a: immediate close wins over a graceful one still finishing.
    **_row(_LIVE, _CE.CLOSE_IMMEDIATE, _CS.ABSENT, _CF.CANCEL, _CF.CLOSED_SENT, _CF.FORGET),
    **_row([_CS.OPEN], _CE.TIMER, _CS.ABSENT, _CF.CANCEL, _CF.TIMEOUT, _CF.FORGET),
    **_row([_CS.OPEN], _CE.TIMER_BUSY, None, _CF.TOUCH),
    # M-7: a closing context still owes final + context_closed: no timeout.
    **_row([_CS.CLOSING], _CE.TIMER, None),
    **_row([_CS.CLOSING], _CE.TIMER_BUSY, None),
    **_row(_LIVE, _CE.FLUSH_DONE, None, _CF.FINAL),
    **_row([_CS.CLOSING], _CE.LAST_FLUSH_DONE, _CS.ABSENT, _CF.FINAL, _CF.CLOSED, _CF.FORGET),
    **_row(_LIVE, _CE.ERROR, _CS.ABSENT, _CF.ERROR_FRAME, _CF.CANCEL, _CF.CLOSED, _CF.FORGET),
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
        step.cmds.append(_send(ContextClosedFrame(cid, self._usage(self.pipelines[cid]))))

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


# -- /ws/tts -----------------------------------------------------------------------------


class TtsState(Enum):
    """A ``/ws/tts`` socket."""

    IDLE = auto()
    """No request pending."""
    BUSY = auto()
    """Requests pending; the first one speaks."""


class TtsEvent(Enum):
    """Requests, refusals and pipeline events."""

    REQUEST = auto()
    REFUSAL = auto()
    """An invalid request (T-3) or a refusal of the I/O layer (unknown voice, limits)."""
    DONE = auto()
    LAST_DONE = auto()
    """The only pending request is spoken."""
    ERROR = auto()
    LAST_ERROR = auto()


class TtsEffect(Enum):
    """What a tts transition does."""

    ENQUEUE = auto()
    """The whole text as one flushed pipeline, started after the ones before (T-2)."""
    REPLY = auto()
    """T-2: the refusal now, or owed right after the last pending request's answer."""
    FINAL = auto()
    """T-1: ``final`` with statistics and usage."""
    FAIL = auto()
    """An error frame instead of ``final`` (4.2)."""
    PAY_OWED = auto()
    """Refusals owed behind this request; then start the next request."""


_TTS, _TTE, _TTF = TtsState, TtsEvent, TtsEffect
TTS_TABLE: Table[TtsState, TtsEvent, TtsEffect] = {
    **_row([_TTS.IDLE, _TTS.BUSY], _TTE.REQUEST, _TTS.BUSY, _TTF.ENQUEUE),
    **_row([_TTS.IDLE, _TTS.BUSY], _TTE.REFUSAL, None, _TTF.REPLY),
    **_row([_TTS.BUSY], _TTE.DONE, None, _TTF.FINAL, _TTF.PAY_OWED),
    **_row([_TTS.BUSY], _TTE.LAST_DONE, _TTS.IDLE, _TTF.FINAL, _TTF.PAY_OWED),
    **_row([_TTS.BUSY], _TTE.ERROR, None, _TTF.FAIL, _TTF.PAY_OWED),
    **_row([_TTS.BUSY], _TTE.LAST_ERROR, _TTS.IDLE, _TTF.FAIL, _TTF.PAY_OWED),
}
"""Executed by :meth:`TtsServer.receive`, ``refuse``, ``flush_done`` and ``error``."""


@dataclass(slots=True)
class _TtsStep(_Step):
    reply: ServerFrame | None = None
    native_samples: int = 0


@dataclass(slots=True)
class TtsServer(_Machine):
    """The ``/ws/tts`` machine: one request at a time, in arrival order (PROTOCOL T-1..3)."""

    state: TtsState = TtsState.IDLE
    queue: list[str] = field(default_factory=list)
    _counter: itertools.count[int] = field(default_factory=itertools.count)
    gen_ms: dict[str, float] = field(default_factory=dict)
    owed: dict[str, list[ServerFrame]] = field(default_factory=dict)
    """Error replies queued behind a pending request, sent after its answer (T-2)."""

    def receive(self, frame: ClientFrame, now: float = 0.0) -> list[Command]:
        """Commands for one request."""
        if not isinstance(frame, TtsRequest):
            return self.refuse(protocol_error(f"{type(frame).__name__} is not allowed on /ws/tts"))
        if frame.config.voice_id is None:
            return self.refuse(missing_voice_error())  # PROTOCOL T-3
        if not frame.text.strip():
            return self.refuse(ErrorFrame("text must not be empty", "VALIDATION_ERROR", 400))
        return self._run(TtsEvent.REQUEST, _TtsStep(frame, now=now))

    def refuse(self, frame: ServerFrame) -> list[Command]:
        """An answer that is not audio, in arrival order (T-2: never inside another's)."""
        return self._run(TtsEvent.REFUSAL, _TtsStep(reply=frame))

    def _run(self, event: TtsEvent, step: _TtsStep) -> list[Command]:
        row = TTS_TABLE.get((self.state, event))
        if row is None:
            return []
        for effect in row.effects:
            _TTS_EFFECTS[effect](self, step)
        self.state = row.next
        return step.cmds

    def _enqueue(self, step: _TtsStep) -> None:
        frame = step.frame
        assert isinstance(frame, TtsRequest)
        key = f"req-{next(self._counter)}"
        start = not self.queue
        self.pipelines[key] = _Pipeline(key, frame.config, characters=len(frame.text), text=frame.text)
        self.pipelines[key].started = start
        self.queue.append(key)
        resolved = frame.config.merged(WireConfig(chunk_length_schedule=DEFAULT_SCHEDULE))
        step.cmds += [OpenPipeline(key, resolved, start=start), AppendText(key, frame.text), Flush(key)]

    def _reply(self, step: _TtsStep) -> None:
        assert step.reply is not None
        if self.queue:
            self.owed.setdefault(self.queue[-1], []).append(step.reply)
        else:
            step.cmds.append(_send(step.reply))

    def _final(self, step: _TtsStep) -> None:
        assert step.key is not None
        p = self.pipelines.pop(step.key)
        gen_ms = self.gen_ms.pop(step.key, 0.0)
        dur_ms = p.audio_seconds * 1000.0
        stats: Mapping[str, float | int] = {
            "chunks": p.next_idx,
            "total_samples": step.native_samples,
            "dur_ms": round(dur_ms, 2),
            "gen_ms": round(gen_ms, 2),
            "rtf": round(gen_ms / dur_ms, 4) if dur_ms else 0.0,
        }
        step.frames.append(FinalFrame(stats=stats, usage=self._usage(p)))

    def _fail(self, step: _TtsStep) -> None:
        assert step.key is not None and step.exc is not None
        del self.pipelines[step.key]
        self.gen_ms.pop(step.key, None)
        exc = step.exc
        step.cmds.append(CancelPipeline(step.key))
        step.frames.append(ErrorFrame(exc.message, exc.error_code or "INTERNAL_ERROR", exc.status or 500))

    def _pay_owed(self, step: _TtsStep) -> None:
        assert step.key is not None
        self.queue.remove(step.key)
        step.cmds.append(_send(*step.frames, *self.owed.pop(step.key, [])))
        step.cmds += self._start_next(self.queue)

    def chunk_started(self, key: str, text: str) -> list[ServerFrame]:
        """tts has no chunk frames; only count the chunk."""
        super(TtsServer, self).chunk_started(key, text)
        return []

    def audio(
        self, key: str, data: bytes, enc: Encoding, sample_rate: int, samples: int
    ) -> list[ServerFrame]:
        """Audio without ``chunk_id`` (PROTOCOL 3.2: ``chunk_id`` is stream/multi only)."""
        frames = super(TtsServer, self).audio(key, data, enc, sample_rate, samples)
        return [dataclasses.replace(f, chunk_id=None) for f in frames if isinstance(f, AudioFrame)]

    def word_timestamps(self, key: str, frame: WordTimestampsFrame) -> list[ServerFrame]:
        """Alignment without ``chunk_id`` (PROTOCOL 4.3), over the whole request."""
        frames = super(TtsServer, self).word_timestamps(key, frame)
        return [WordTimestampsFrame(f.words) for f in frames if isinstance(f, WordTimestampsFrame)]

    def chunk_done(self, key: str, audio_seconds: float, gen_ms: float) -> list[ServerFrame]:
        """Accumulate generation time for the request's ``final``."""
        if self._live(key) is not None:
            self.gen_ms[key] = self.gen_ms.get(key, 0.0) + gen_ms
        super(TtsServer, self).chunk_done(key, audio_seconds, gen_ms)
        return []

    def timer_fired(self, key: str, now: float = math.inf) -> list[Command]:
        """``/ws/tts`` arms no timers."""
        return []

    def _last(self, key: str) -> bool:
        return self.queue == [key]

    def flush_done(self, key: str, native_samples: int = 0) -> list[Command]:
        """The request is spoken: one ``final`` with statistics (PROTOCOL T-1)."""
        if self._live(key) is None:
            return []
        event = TtsEvent.LAST_DONE if self._last(key) else TtsEvent.DONE
        return self._run(event, _TtsStep(key=key, native_samples=native_samples))

    def error(self, key: str, exc: ProtocolError) -> list[Command]:
        """The request failed: an error frame instead of ``final`` (PROTOCOL 4.2)."""
        if self._live(key) is None:
            return []
        event = TtsEvent.LAST_ERROR if self._last(key) else TtsEvent.ERROR
        return self._run(event, _TtsStep(key=key, exc=exc))


_TTS_EFFECTS: Mapping[TtsEffect, Callable[[TtsServer, _TtsStep], None]] = {
    fx: getattr(TtsServer, f"_{fx.name.lower()}") for fx in TtsEffect
}

TABLES: Mapping[str, Mapping[tuple[Any, Any], Transition[Any, Any]]] = {
    "STREAM_TABLE": STREAM_TABLE,
    "TURN_TABLE": TURN_TABLE,
    "MULTI_SOCKET_TABLE": MULTI_SOCKET_TABLE,
    "CONTEXT_TABLE": CONTEXT_TABLE,
    "TTS_TABLE": TTS_TABLE,
}
"""Every executed table by name, as rendered in the module docstring."""

__all__ = [
    "AUTO_FLUSH_WARNING",
    "CONTEXT_TABLE",
    "DEFAULT_INACTIVITY_TIMEOUT",
    "IDLE_AUTO_FLUSH_SECONDS",
    "MULTI_SOCKET_TABLE",
    "STREAM_TABLE",
    "TABLES",
    "TTS_TABLE",
    "TURN_TABLE",
    "AppendText",
    "ArmTimer",
    "CancelPipeline",
    "CancelTimer",
    "CloseSocket",
    "Command",
    "ContextEffect",
    "ContextEvent",
    "ContextState",
    "Flush",
    "MultiEffect",
    "MultiEvent",
    "MultiServer",
    "MultiState",
    "OpenPipeline",
    "PipelineState",
    "Pricing",
    "Purge",
    "Send",
    "StartPipeline",
    "StreamEffect",
    "StreamEvent",
    "StreamServer",
    "StreamState",
    "Transition",
    "TtsEffect",
    "TtsEvent",
    "TtsServer",
    "TtsState",
    "TurnEffect",
    "TurnEvent",
    "missing_voice_error",
    "protocol_error",
    "render_table",
    "settings_snapshot",
]
