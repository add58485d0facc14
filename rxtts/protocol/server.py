"""Server state machines: client frames in, commands and server frames out.

Sans-I/O in the h11 style. The I/O layer (:mod:`rxtts.server`) feeds every decoded
client frame to :meth:`receive`, carries out the returned commands (start a turn
pipeline, append text, cancel it, send frames), and reports the pipeline's progress back
(:meth:`chunk_started`, :meth:`audio`, :meth:`chunk_done`, :meth:`flush_done`), getting
the frames to send. The machine owns every rule of PROTOCOL 5 and 6 that is about order,
numbering, totals and usage; the I/O layer owns only time and synthesis.

Stream turn states (PROTOCOL 5.1)::

    IDLE --text--> OPEN --flush/close/idle--> ENDING --flush_done--> CLOSED
                    |                           |
                    +-------- cancel -----------+--> CANCELLED (interrupted, nothing more)

Context states (PROTOCOL 6)::

    (none) --first frame--> OPEN --close_context--> CLOSING --flush_done--> CLOSED
                             |  --close_context(immediate)/timeout-------> CLOSED
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import TypeAlias

from rxtts.config import DEFAULT_SCHEDULE, MAX_CONTEXTS, VoiceSettings
from rxtts.errors import LocalProtocolError, ProtocolError
from rxtts.events import Encoding, SessionUsage
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


@dataclass(frozen=True, slots=True)
class OpenPipeline:
    """Start a synthesis pipeline for a turn or a context."""

    key: str
    """Turn key (``"turn-3"``) or context id."""
    config: WireConfig
    """Effective config; ``voice_id`` is resolved."""
    voice_settings: VoiceSettings | None = None
    """Context voice settings (multi)."""


@dataclass(frozen=True, slots=True)
class AppendText:
    """Feed text into a pipeline."""

    key: str
    text: str


@dataclass(frozen=True, slots=True)
class Flush:
    """Feed a FLUSH into a pipeline; the I/O layer answers with :meth:`flush_done`."""

    key: str


@dataclass(frozen=True, slots=True)
class CancelPipeline:
    """Dispose a pipeline at once: stop synthesis, drop its text."""

    key: str


@dataclass(frozen=True, slots=True)
class CloseSocket:
    """Close the WebSocket with this code once the frames before it are sent."""

    code: int = 1000
    reason: str = ""


Command: TypeAlias = Send | OpenPipeline | AppendText | Flush | CancelPipeline | CloseSocket


def _send(*frames: ServerFrame) -> Send:
    return Send(tuple(frames))


def _error(exc: ProtocolError, context_id: str | None = None) -> Send:
    return _send(
        ErrorFrame(
            exc.message,
            exc.error_code or "PROTOCOL_ERROR",
            exc.status or 400,
            context_id=context_id,
        )
    )


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


# -- per-pipeline bookkeeping ---------------------------------------------------------


class PipelineState(Enum):
    """Lifecycle of one turn or context."""

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
    characters: int = 0
    pending_flushes: int = 0
    closing: bool = False
    current_chunk: int | None = None

    @property
    def live(self) -> bool:
        return self.state in (PipelineState.OPEN, PipelineState.ENDING)


@dataclass(slots=True)
class _Machine:
    """Shared result handling: numbering, totals (PROTOCOL S-2, U-1, U-2)."""

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

    def word_timestamps(self, key: str, frame: WordTimestampsFrame) -> list[ServerFrame]:
        """Alignment of the current chunk, only if requested (PROTOCOL G-9)."""
        p = self._live(key)
        if p is None or not p.config.word_timestamps:
            return []
        return [WordTimestampsFrame(frame.words, p.current_chunk, p.context_id)]

    def chunk_done(self, key: str, audio_seconds: float, gen_ms: float) -> list[ServerFrame]:
        """The current chunk's audio is all sent (PROTOCOL S-9: always after a start)."""
        p = self._live(key)
        if p is None or p.current_chunk is None:
            return []
        p.chunks_done += 1
        chunk, p.current_chunk = p.current_chunk, None
        return [ChunkCompleteFrame(chunk, audio_seconds, gen_ms, p.context_id)]

    def _usage(self, p: _Pipeline) -> SessionUsage:
        return self.pricing.usage(p.audio_seconds, p.characters, p.config.model_id)


# -- /ws/tts/stream --------------------------------------------------------------------


@dataclass(slots=True)
class StreamServer(_Machine):
    """The ``/ws/tts/stream`` machine: turns, sticky config, barge-in (PROTOCOL 5).

    Turns are keyed ``turn-N``. Text after a flush opens the next turn at once; its
    frames are sent only after the previous turn's ``session_closed`` (PROTOCOL S-6)
    because the I/O layer runs turn pipelines one after another.
    """

    config: WireConfig = field(default_factory=WireConfig)
    open_turn: str | None = None
    ending: list[str] = field(default_factory=list)
    _counter: itertools.count[int] = field(default_factory=itertools.count)
    closed: bool = False
    deferred_closes: dict[str, int] = field(default_factory=dict)
    """Empty ``session_closed`` replies owed right after an ending turn's own (S-4, S-6)."""

    def receive(self, frame: ClientFrame) -> list[Command]:
        """Commands for one decoded client frame."""
        if self.closed:
            raise LocalProtocolError("frame after close_socket")
        match frame:
            case TextFrame() | FlushFrame():
                # PROTOCOL S-1: config from whichever frame first carries it, sticky.
                self.config = self.config.merged(frame.config)
                text = frame.text if isinstance(frame, TextFrame) else ""
                flush = frame.flush if isinstance(frame, TextFrame) else True
                return self._text(text, bool(flush))
            case CloseFrame():
                return self._close()
            case CancelFrame():
                return self._cancel()
            case UpdateSettingsFrame(settings=s):
                # PROTOCOL S-7: never opens or ends a turn; applies from the next one.
                self.config = self.config.merged(s)
                return [_send(SettingsUpdatedFrame(settings_snapshot(self.config)))]
            case CloseSocketFrame():
                cmds = self._close()
                self.closed = True
                return [*cmds, CloseSocket(1000)]
            case _:
                raise LocalProtocolError(f"{type(frame).__name__} is not a stream frame")

    def _text(self, text: str, flush: bool) -> list[Command]:
        cmds: list[Command] = []
        key = self.open_turn
        if key is None:
            if not text.strip():
                # Blank text opens nothing (PROTOCOL S-9); a bare flush with nothing
                # open is answered like `close` (PROTOCOL S-4).
                return self._close() if flush else []
            if self.config.voice_id is None:
                return [_send(missing_voice_error())]
            key = f"turn-{next(self._counter)}"
            self.open_turn = key
            self.pipelines[key] = _Pipeline(key, self.config)
            cmds.append(OpenPipeline(key, self._resolved()))
        p = self.pipelines[key]
        if text:
            p.characters += len(text)
            cmds.append(AppendText(key, text))
        if flush:
            cmds.extend(self._end(p))
        return cmds

    def _resolved(self) -> WireConfig:
        schedule = self.config.chunk_length_schedule or DEFAULT_SCHEDULE
        return self.config.merged(WireConfig(chunk_length_schedule=schedule))

    def _end(self, p: _Pipeline) -> list[Command]:
        p.state = PipelineState.ENDING
        self.open_turn = None
        self.ending.append(p.key)
        return [Flush(p.key)]

    def _close(self) -> list[Command]:
        # PROTOCOL S-4: close ends the open turn; with none, an empty session_closed.
        if self.open_turn is not None:
            return self._end(self.pipelines[self.open_turn])
        if self.ending:
            # PROTOCOL S-4, S-6: every close/blank flush gets its empty session_closed,
            # in order, so it goes right after the ending turn's own.
            last = self.ending[-1]
            self.deferred_closes[last] = self.deferred_closes.get(last, 0) + 1
            return []
        return [_send(SessionClosedFrame(0.0, 0, 0))]

    def idle_timeout(self, key: str) -> list[Command]:
        """The I/O layer's 5 s idle timer fired for an open turn (PROTOCOL S-8)."""
        if self.open_turn != key:
            return []
        return [_send(WarningFrame(AUTO_FLUSH_WARNING)), *self._end(self.pipelines[key])]

    def _cancel(self) -> list[Command]:
        # PROTOCOL S-5: stop everything, drop queued text, only `interrupted` follows.
        cmds: list[Command] = []
        for key in [*self.ending, *([self.open_turn] if self.open_turn else [])]:
            self.pipelines.pop(key).state = PipelineState.CANCELLED
            cmds.append(CancelPipeline(key))
        self.ending.clear()
        self.deferred_closes.clear()  # PROTOCOL S-5: nothing but `interrupted` follows
        self.open_turn = None
        cmds.append(_send(InterruptedFrame()))
        return cmds

    def flush_done(self, key: str) -> list[ServerFrame]:
        """The turn's pipeline passed its FLUSH: ``final`` then ``session_closed`` (S-3)."""
        p = self._live(key)
        if p is None:
            return []
        p.state = PipelineState.CLOSED
        self.ending.remove(key)
        del self.pipelines[key]
        totals = (round(p.audio_seconds, 4), p.chunks_done, p.next_idx)
        frames: list[ServerFrame] = []
        if p.next_idx or p.chunks_done:  # PROTOCOL U-4: final only if the turn had content
            frames.append(FinalFrame(None, *totals))
        frames.append(SessionClosedFrame(*totals, usage=self._usage(p)))
        frames.extend(self._owed_closes(key))
        return frames

    def _owed_closes(self, key: str) -> list[ServerFrame]:
        return [SessionClosedFrame(0.0, 0, 0) for _ in range(self.deferred_closes.pop(key, 0))]

    def error(self, key: str, exc: ProtocolError) -> list[Command]:
        """The pipeline failed: report it and end the turn so the client never hangs."""
        p = self._live(key)
        if p is None:
            return []
        frames = [ErrorFrame(exc.message, exc.error_code or "INTERNAL_ERROR", exc.status or 500)]
        if self.open_turn == key:
            self.open_turn = None
        else:
            self.ending.remove(key)
        del self.pipelines[key]
        p.state = PipelineState.CLOSED
        totals = (round(p.audio_seconds, 4), p.chunks_done, p.next_idx)
        return [
            CancelPipeline(key),
            _send(*frames, SessionClosedFrame(*totals, usage=self._usage(p)), *self._owed_closes(key)),
        ]


# -- /ws/tts/multi ---------------------------------------------------------------------


@dataclass(slots=True)
class MultiServer(_Machine):
    """The ``/ws/tts/multi`` machine: up to 20 keyed contexts (PROTOCOL 6)."""

    config: WireConfig = field(default_factory=WireConfig)
    max_contexts: int = MAX_CONTEXTS
    closing_socket: bool = False
    closed: bool = False

    @property
    def open_contexts(self) -> list[str]:
        """Ids of contexts holding a slot, in creation order."""
        return [k for k, p in self.pipelines.items() if p.live]

    @property
    def inactivity_timeout(self) -> float:
        """Seconds an idle context lives (PROTOCOL M-10, U-8)."""
        return self.config.inactivity_timeout or DEFAULT_INACTIVITY_TIMEOUT

    def receive(self, frame: ClientFrame) -> list[Command]:
        """Commands for one decoded client frame."""
        if self.closed or self.closing_socket:
            raise LocalProtocolError("frame after close_socket")
        match frame:
            case TextFrame(context_id=None):
                if frame.text.strip() or frame.flush:
                    err = ProtocolError("context_id is required", error_code="VALIDATION_ERROR")
                    return [_error(err)]
                # PROTOCOL M-3: the context-less prep frame only updates session config.
                self.config = self.config.merged(frame.config)
                return []
            case TextFrame(context_id=str(cid)):
                return self._text(cid, frame.text, bool(frame.flush), frame.config, frame.voice_settings)
            case FlushFrame(context_id=str(cid)):
                return self._text(cid, "", True, frame.config, None)
            case CloseContextFrame(context_id=cid, immediate=immediate):
                return self._close_context(cid, immediate)
            case UpdateSettingsFrame(settings=s):
                self.config = self.config.merged(s)  # PROTOCOL M-11: later contexts
                return [_send(SettingsUpdatedFrame(settings_snapshot(self.config)))]
            case CloseSocketFrame():
                return self._close_socket()
            case _:
                raise LocalProtocolError(f"{type(frame).__name__} is not a multi-context frame")

    def _create(
        self, cid: str, config: WireConfig, voice: VoiceSettings | None
    ) -> tuple[list[Command], _Pipeline | None]:
        # PROTOCOL M-2: session keys from the creating frame are sticky for the socket.
        self.config = self.config.merged(config)
        if len(self.open_contexts) >= self.max_contexts:
            # PROTOCOL M-9: the 21st context is refused, the socket survives.
            err = ErrorFrame("Too many concurrent contexts", "TOO_MANY_CONTEXTS", 429, context_id=cid)
            return [_send(err)], None
        voice_id = voice.voice_id if voice and voice.voice_id is not None else None
        bound = WireConfig(
            voice_id=voice_id,
            cfg_scale=voice.cfg_scale if voice else None,
            max_new_tokens=voice.max_new_tokens if voice else None,
            chunk_length_schedule=self.config.chunk_length_schedule or DEFAULT_SCHEDULE,
        )
        # PROTOCOL 6.1: the voice binds only from voice_settings; the session default
        # is the top-level voice_id of an earlier frame.
        p = _Pipeline(cid, self.config.merged(bound), context_id=cid)
        self.pipelines[cid] = p
        return [OpenPipeline(cid, p.config, voice), _send(ContextCreatedFrame(cid))], p

    def _text(
        self, cid: str, text: str, flush: bool, config: WireConfig, voice: VoiceSettings | None
    ) -> list[Command]:
        cmds: list[Command] = []
        p = self._live(cid)
        if p is None:
            cmds, p = self._create(cid, config, voice)
            if p is None:
                return cmds
        if p.closing:
            err = ProtocolError("context is closing", error_code="VALIDATION_ERROR")
            return [*cmds, _error(err, cid)]
        if text.strip() or (text and p.characters):
            if p.config.voice_id is None:
                return [*cmds, _send(missing_voice_error(cid))]
            p.characters += len(text)
            cmds.append(AppendText(cid, text))  # PROTOCOL M-4: blank text makes no audio
        if flush:
            p.pending_flushes += 1
            cmds.append(Flush(cid))
        return cmds

    def _close_context(self, cid: str, immediate: bool) -> list[Command]:
        p = self._live(cid)
        if p is None:
            # PROTOCOL M-7: SHOULD reply even for unknown ids.
            return [_send(ContextClosedFrame(cid, self.pricing.usage(0.0, 0, self.config.model_id)))]
        if immediate:
            return self._finish(p, cancelled=True)
        if p.closing:
            return []
        p.closing = True
        p.state = PipelineState.ENDING
        p.pending_flushes += 1
        return [Flush(cid)]

    def _finish(self, p: _Pipeline, cancelled: bool) -> list[Command]:
        p.state = PipelineState.CANCELLED if cancelled else PipelineState.CLOSED
        del self.pipelines[p.key]
        cmds: list[Command] = [CancelPipeline(p.key)] if cancelled else []
        cmds.append(_send(ContextClosedFrame(p.key, self._usage(p))))
        return cmds

    def timeout(self, cid: str) -> list[Command]:
        """The I/O layer's inactivity timer fired for a context (PROTOCOL M-10)."""
        p = self._live(cid)
        if p is None or p.closing:
            return []  # PROTOCOL M-7: a closing context still owes final + context_closed
        p.state = PipelineState.CANCELLED
        del self.pipelines[cid]
        return [CancelPipeline(cid), _send(ContextTimeoutFrame(cid))]

    def _close_socket(self) -> list[Command]:
        # PROTOCOL M-8: close every context gracefully, then session_closed, then 1000.
        self.closing_socket = True
        cmds: list[Command] = []
        for cid in self.open_contexts:
            cmds.extend(self._close_context(cid, immediate=False))
        return [*cmds, *self._maybe_close_socket()]

    def _maybe_close_socket(self) -> list[Command]:
        if not self.closing_socket or self.open_contexts or self.closed:
            return []
        self.closed = True
        return [_send(SessionClosedFrame()), CloseSocket(1000)]

    def flush_done(self, cid: str) -> list[Command]:
        """A context's pipeline passed a FLUSH: ``final`` (M-6), maybe ``context_closed``."""
        p = self._live(cid)
        if p is None:
            return []
        p.pending_flushes -= 1
        cmds: list[Command] = [_send(FinalFrame(cid))]
        if p.closing and p.pending_flushes == 0:
            cmds.extend(self._finish(p, cancelled=False))
            cmds.extend(self._maybe_close_socket())
        return cmds

    def error(self, cid: str, exc: ProtocolError) -> list[Command]:
        """A context's pipeline failed: report it with its id and close it (M-12)."""
        p = self._live(cid)
        if p is None:
            return []
        return [_error(exc, cid), *self._finish(p, cancelled=True), *self._maybe_close_socket()]


# -- /ws/tts -----------------------------------------------------------------------------


@dataclass(slots=True)
class TtsServer(_Machine):
    """The ``/ws/tts`` machine: one request at a time, in arrival order (PROTOCOL T-1..3)."""

    queue: list[str] = field(default_factory=list)
    _counter: itertools.count[int] = field(default_factory=itertools.count)
    gen_ms: dict[str, float] = field(default_factory=dict)
    owed: dict[str, list[ServerFrame]] = field(default_factory=dict)
    """Error replies queued behind a pending request, sent after its answer (T-2)."""

    def receive(self, frame: ClientFrame) -> list[Command]:
        """Commands for one request."""
        if not isinstance(frame, TtsRequest):
            raise LocalProtocolError(f"{type(frame).__name__} is not a tts frame")
        if frame.config.voice_id is None:
            return self._reply(missing_voice_error())  # PROTOCOL T-3
        if not frame.text.strip():
            return self._reply(ErrorFrame("text must not be empty", "VALIDATION_ERROR", 400))
        key = f"req-{next(self._counter)}"
        p = _Pipeline(key, frame.config, characters=len(frame.text))
        self.pipelines[key] = p
        self.queue.append(key)
        # The whole text is one request: schedule it as a single flushed turn.
        resolved = frame.config.merged(WireConfig(chunk_length_schedule=DEFAULT_SCHEDULE))
        return [OpenPipeline(key, resolved), AppendText(key, frame.text), Flush(key)]

    def _reply(self, frame: ServerFrame) -> list[Command]:
        # PROTOCOL T-2: answers in arrival order, never inside an earlier request's audio.
        if self.queue:
            self.owed.setdefault(self.queue[-1], []).append(frame)
            return []
        return [_send(frame)]

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
        """Alignment without ``chunk_id`` (PROTOCOL 4.3)."""
        p = self._live(key)
        if p is None or not p.config.word_timestamps:
            return []
        return [WordTimestampsFrame(frame.words)]

    def chunk_done(self, key: str, audio_seconds: float, gen_ms: float) -> list[ServerFrame]:
        """Accumulate generation time for the request's ``final``."""
        self.gen_ms[key] = self.gen_ms.get(key, 0.0) + gen_ms
        super(TtsServer, self).chunk_done(key, audio_seconds, gen_ms)
        return []

    def flush_done(self, key: str, native_samples: int = 0) -> list[ServerFrame]:
        """The request is spoken: one ``final`` with statistics (PROTOCOL T-1)."""
        p = self._live(key)
        if p is None:
            return []
        del self.pipelines[key]
        self.queue.remove(key)
        gen_ms = self.gen_ms.pop(key, 0.0)
        dur_ms = p.audio_seconds * 1000.0
        stats: Mapping[str, float | int] = {
            "chunks": p.next_idx,
            "total_samples": native_samples,
            "dur_ms": round(dur_ms, 2),
            "gen_ms": round(gen_ms, 2),
            "rtf": round(gen_ms / dur_ms, 4) if dur_ms else 0.0,
        }
        return [FinalFrame(stats=stats, usage=self._usage(p)), *self.owed.pop(key, [])]

    def error(self, key: str, exc: ProtocolError) -> list[ServerFrame]:
        """The request failed: an error frame instead of ``final`` (PROTOCOL 4.2)."""
        if self.pipelines.pop(key, None) is None:
            return []
        self.queue.remove(key)
        self.gen_ms.pop(key, None)
        err = ErrorFrame(exc.message, exc.error_code or "INTERNAL_ERROR", exc.status or 500)
        return [err, *self.owed.pop(key, [])]


__all__ = [
    "AUTO_FLUSH_WARNING",
    "DEFAULT_INACTIVITY_TIMEOUT",
    "IDLE_AUTO_FLUSH_SECONDS",
    "AppendText",
    "CancelPipeline",
    "CloseSocket",
    "Command",
    "Flush",
    "MultiServer",
    "OpenPipeline",
    "PipelineState",
    "Pricing",
    "Send",
    "StreamServer",
    "TtsServer",
    "missing_voice_error",
    "settings_snapshot",
]
