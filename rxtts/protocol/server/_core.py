"""Commands, pricing, table plumbing and the per-pipeline bookkeeping shared by the
server machines (:mod:`rxtts.protocol.server`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import ClassVar, Generic, TypeAlias, TypeVar

from rxtts.config import VoiceSettings
from rxtts.errors import ProtocolError
from rxtts.events import Encoding, SessionUsage, WordTimestamp
from rxtts.protocol.frames import (
    UPDATABLE_SETTINGS,
    AudioFrame,
    ChunkCompleteFrame,
    ClientFrame,
    ErrorFrame,
    GenerationStartedFrame,
    ServerFrame,
    TextFrame,
    WireConfig,
    WordTimestampsFrame,
)
from rxtts.protocol.tables import format_rows

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
    rule: str = ""
    """The PROTOCOL rules (sections) the row enforces."""


Table: TypeAlias = Mapping[tuple[S, E], Transition[S, F]]


def render_table(table: Mapping[tuple[S, E], Transition[S, F]]) -> str:
    """The table as the text block shown in this module's docstring."""
    rows = [("state", "event", "next", "effects", "rule")]
    for (state, event), t in table.items():
        effects = ", ".join(f.name.lower() for f in t.effects) or "-"
        rows.append((state.name, event.name, t.next.name, effects, t.rule or "-"))
    return format_rows(rows, indent="    ", rule_line=True)


def _row(
    states: Iterable[S], event: E, nxt: S | None, *effects: F, rule: str = ""
) -> dict[tuple[S, E], Transition[S, F]]:
    """Rows for ``event`` in each of ``states``; ``nxt=None`` keeps the state."""
    return {(s, event): Transition(nxt if nxt is not None else s, tuple(effects), rule) for s in states}


# -- per-pipeline bookkeeping ---------------------------------------------------------


class PipelineState(Enum):
    """Lifecycle of one turn, request or context."""

    OPEN = auto()
    ENDING = auto()
    DRAINING = auto()
    """Generation done; its last frames still queued behind paced audio (holds a slot)."""
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
        return self.state in (PipelineState.OPEN, PipelineState.ENDING, PipelineState.DRAINING)


@dataclass(slots=True)
class _Machine:
    """Shared result handling: numbering, totals, timestamps (PROTOCOL S-2, U-1, U-2)."""

    pricing: Pricing = field(default_factory=Pricing)
    pipelines: dict[str, _Pipeline] = field(default_factory=dict)

    #: Whether frames of different lanes may overtake each other (multi, M-5).
    INTERLEAVED: ClassVar[bool] = False

    def lane(self, frame: ServerFrame) -> str | None:
        """The ordering lane of ``frame``: frames leave in order within a lane (stream,
        tts: one lane, strict order, S-6, T-2); ``None`` keeps its place among all."""
        return ""

    def pace_key(self, key: str) -> str:
        """Whose playback clock pipeline ``key``'s audio runs on (stream: the socket's)."""
        return ""

    def _live(self, key: str) -> _Pipeline | None:
        p = self.pipelines.get(key)
        return p if p is not None and p.live else None

    def _making(self, key: str) -> _Pipeline | None:
        """The pipeline if it may still produce results (not draining, cancelled, closed)."""
        p = self._live(key)
        return p if p is not None and p.state is not PipelineState.DRAINING else None

    def chunk_started(self, key: str, text: str) -> list[ServerFrame]:
        """A chunk's synthesis began; frames of cancelled pipelines are dropped."""
        p = self._making(key)
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
        p = self._making(key)
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
        p = self._making(key)
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
        p = self._making(key)
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
