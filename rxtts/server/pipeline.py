"""The synthesis pipeline of one stream turn, tts request or multi context (DESIGN 4).

::

    text (str | FLUSH) ─► chunk_schedule(schedule, auto_mode, segment=True, idle, ...) ─►
    normalize_chunks(language) ─► synthesize(engine, voice, settings) ─►
    encode_audio(output_format) ─► events

Normalisation (PROTOCOL 7 ``normalize``, default true; issue 13): each chunk goes
through :func:`~rxtts.operators.normalize_text` in the client's ``language`` (else the
voice's) right after ``chunk_schedule``, on whole chunks, so a number never splits. The
engine speaks the normalised text; ``generation_started.text`` stays the text the
client sent (so a client can match it against what it sent), and word timestamps map
back through ``to_original`` onto the client's characters ("$3.50" is one word).

Word timestamps (PROTOCOL 3.3, issue 13), only when the client asked (G-9): the
pipeline asks the engine for alignment (``SynthesisSettings.alignment``); the runner
turns each :class:`~rxtts.operators.synthesize.BlockAlignment` into a
:class:`ChunkWords` at once, i.e. before the first audio frame of the words it times.
An engine without alignment (tone, espeak) gets an estimate at the end of the chunk,
from word lengths over the chunk's audio, after that audio. Scores: 1.0 from the
model's phoneme durations, :data:`INTERPOLATED_SCORE` where a boundary was
interpolated, :data:`ESTIMATED_SCORE` for an estimate.

:func:`build_pipeline` composes the public operators from the client's config;
:class:`PipelineRunner` is the I/O side of one pipeline: it buffers text until the
pipeline starts (stream turn N+1 waits for turn N, PROTOCOL S-6), counts unspoken
characters (the per-turn buffer limit, DESIGN 7), holds engine jobs while the
connection's send queue is full (:class:`GatedExecutor`, the server's output
backpressure) and disposes everything on cancel.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeAlias, TypeVar

from reactivex import Observable, abc
from reactivex import operators as ops
from reactivex.subject import Subject

from rxtts.config import DEFAULT_SCHEDULE, OutputFormat
from rxtts.engine import Alignment, Engine, SynthesisSettings, VoiceInfo, WordTiming
from rxtts.events import WordTimestamp
from rxtts.operators import NormalizedText, TextItem, chunk_schedule, normalize_text
from rxtts.operators.encode_audio import EncodeEvent, encode_audio
from rxtts.operators.flush import FLUSH
from rxtts.operators.synthesize import (
    BlockAlignment,
    ChunkDone,
    ChunkStarted,
    SynthInput,
    original_alignment,
    synthesize,
)
from rxtts.protocol.frames import WireConfig

__all__ = [
    "DEFAULT_MAX_BUFFER_LENGTH",
    "ESTIMATED_SCORE",
    "INTERPOLATED_SCORE",
    "MAX_FLUSH_TIMEOUT_MS",
    "TURN_LEAD_S",
    "ChunkWords",
    "GatedExecutor",
    "PipelineRunner",
    "PipelineSpec",
    "RunnerEvent",
    "alignment_word_timestamps",
    "build_pipeline",
    "estimate_alignment",
    "estimate_word_timestamps",
    "flush_timeout_ms",
    "normalize_chunks",
    "synthesis_settings",
]

DEFAULT_MAX_BUFFER_LENGTH = 1000
"""Characters that force a chunk when the client sets no ``max_buffer_length`` (PROTOCOL 7)."""
MAX_FLUSH_TIMEOUT_MS = 86_400_000
"""Longer ``flush_timeout_ms`` values act as one day (``timedelta`` overflows past ~1e17)."""

INTERPOLATED_SCORE = 0.8
"""``score`` of a word with an interpolated boundary (engine durations, but its phonemes
could not be told apart from a neighbour's)."""
ESTIMATED_SCORE = 0.5
"""``score`` of an estimated word (no engine alignment: spread by word length)."""

_WORD = re.compile(r"\S+")
_P = ParamSpec("_P")
_T = TypeVar("_T")


TURN_LEAD_S = 0.01
"""Silence kept at most before a turn's (or context's) first sound (issue 12): the
engine's own lead (piper: 25-60 ms) is pure delay there; 10 ms keeps a soft onset whole."""


def _letters(text: str) -> int:
    """Non-space characters: the operators keep all of them, so counts balance exactly."""
    return len(text) - sum(c.isspace() for c in text)


def flush_timeout_ms(config: WireConfig) -> int | None:
    """The client's ``flush_timeout_ms``, capped at :data:`MAX_FLUSH_TIMEOUT_MS`."""
    # Found by fuzzing: any positive int passes validation, 10**30 crashed the turn.
    value = config.flush_timeout_ms
    return None if value is None else min(value, MAX_FLUSH_TIMEOUT_MS)


def synthesis_settings(config: WireConfig) -> SynthesisSettings:
    """Engine settings from the client's config (``cfg_scale`` is model-only; ``normalize``
    is the pipeline's, :func:`normalize_chunks`); alignment only for ``word_timestamps``."""
    return SynthesisSettings(
        speed=config.speed or 1.0,
        temperature=config.temperature,
        language=config.language,
        alignment=bool(config.word_timestamps),
    )


def normalize_chunks(language: str) -> Callable[[Observable[TextItem]], Observable[SynthInput]]:
    """Each chunk as :class:`~rxtts.operators.NormalizedText` in ``language``; FLUSH as is.

    Unlike the public :func:`~rxtts.operators.normalize` (spoken text only), the span
    map travels with the chunk, so ``synthesize`` reports the client's text and maps
    word timings back to it. Cost: ~0.1 ms per chunk (``rxtts.bench.normalize``).
    """

    def convert(item: TextItem) -> SynthInput:
        return item if item is FLUSH or not isinstance(item, str) else normalize_text(item, language)

    return ops.map(convert)


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    """Everything one pipeline needs besides its text."""

    engine: Engine
    """The engine that speaks."""
    voice: VoiceInfo
    """The voice bound to the turn or context."""
    config: WireConfig
    """The effective client config (schedule, format, speed, ...)."""
    executor: Executor
    """Worker threads for the blocking engine."""
    scheduler: abc.SchedulerBase
    """Thread-safe scheduler of the connection's event loop (timers, result hops)."""
    frame_ms: int = 80
    """Audio frame length."""
    gate: Callable[[], bool] | None = None
    """Output backpressure: while it returns False no new engine job starts (the
    connection's send queue is full); ``None`` = never hold."""
    idle: Observable[bool] | None = None
    """S-8a: True while the pipeline has nothing to make or send; the
    ``flush_timeout_ms`` release counts only while the latest value is True."""

    @property
    def output_format(self) -> OutputFormat:
        """PROTOCOL 8: ``output_format`` beats ``sample_rate``."""
        return self.config.effective_format


def build_pipeline(text: Observable[TextItem], spec: PipelineSpec) -> Observable[EncodeEvent]:
    """Compose the public operators for one turn/context from the client's config.

    ``chunk_schedule(segment=True)`` segments the raw text itself, so its
    ``flush_timeout_ms`` release sees the sentence still arriving and never cuts inside a
    word; it counts only while ``spec.idle`` says the pipeline has nothing to send
    (PROTOCOL U-11, S-8a). That is the only idle timer of a pipeline.
    """
    cfg = spec.config
    scheduled: Observable[TextItem] = text.pipe(
        # PROTOCOL 10: the server owns scheduling: chunk_length_schedule, auto_mode,
        # flush_timeout_ms, max_buffer_length.
        chunk_schedule(
            schedule=cfg.chunk_length_schedule or DEFAULT_SCHEDULE,
            auto_mode=bool(cfg.auto_mode),
            max_buffer_length=cfg.max_buffer_length or DEFAULT_MAX_BUFFER_LENGTH,
            flush_timeout_ms=flush_timeout_ms(cfg),
            scheduler=spec.scheduler,
            idle=spec.idle,
            segment=True,
        ),
    )
    chunks: Observable[SynthInput] = scheduled
    if cfg.normalize is not False:  # PROTOCOL 7: normalize defaults to true
        chunks = scheduled.pipe(normalize_chunks(cfg.language or spec.voice.language))
    # Resampling and framing run on the engine's worker thread; each frame then hops to
    # the loop on its own, so frame 0 is on the wire while the rest is still encoded.
    return chunks.pipe(
        synthesize(spec.engine, spec.voice, synthesis_settings(cfg), spec.executor, lead_s=TURN_LEAD_S),
        encode_audio(spec.output_format, spec.frame_ms),
        ops.observe_on(spec.scheduler),
    )


def _copy_outcome(source: Future[_T], target: Future[_T]) -> None:
    if source.cancelled():
        target.cancel()
    elif (exc := source.exception()) is not None:
        target.set_exception(exc)
    else:
        target.set_result(source.result())


class GatedExecutor(Executor):
    """An executor that holds new jobs while ``gate()`` is False (output backpressure).

    Jobs submitted while the gate is closed wait here, in order, until :meth:`release`
    finds it open again; :meth:`drop` cancels them (the pipeline was disposed).
    ``shutdown`` only drops held jobs: the wrapped pool is shared and stays up.
    """

    def __init__(self, inner: Executor, gate: Callable[[], bool]) -> None:
        self._inner = inner
        self._gate = gate
        self._lock = threading.Lock()
        self._held: deque[tuple[Future[Any], Callable[[], Any]]] = deque()

    @property
    def held(self) -> int:
        """Jobs waiting for the gate."""
        return len(self._held)

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        with self._lock:
            if not self._held and self._gate():
                return self._inner.submit(fn, *args, **kwargs)
            future: Future[_T] = Future()
            self._held.append((future, functools.partial(fn, *args, **kwargs)))
            return future

    def release(self) -> None:
        """Start held jobs, oldest first, while the gate is open."""
        with self._lock:
            while self._held and self._gate():
                future, job = self._held.popleft()
                if future.set_running_or_notify_cancel():
                    inner = self._inner.submit(job)
                    inner.add_done_callback(functools.partial(_copy_outcome, target=future))

    def drop(self) -> None:
        """Cancel every held job."""
        with self._lock:
            held, self._held = self._held, deque()
        for future, _ in held:
            future.cancel()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.drop()


def estimate_alignment(text: str, audio_seconds: float) -> Alignment:
    """Word times of a chunk spread over its audio in proportion to word length.

    For engines without alignment (``source="estimate"``, times in ms as samples at
    1000 Hz); char offsets are exact offsets into ``text`` (PROTOCOL 3.3, U-18).
    """
    words = list(_WORD.finditer(text))
    if not words or audio_seconds <= 0:
        return Alignment((), 1000, "estimate")
    total_ms = audio_seconds * 1000.0
    weights = [len(m.group()) + 1 for m in words]
    scale = total_ms / sum(weights)
    out: list[WordTiming] = []
    start = 0.0
    for m, w in zip(words, weights, strict=True):
        end = start + w * scale
        out.append(WordTiming(m.group(), m.start(), m.end(), round(start), round(end), exact=False))
        start = end
    return Alignment(tuple(out), 1000, "estimate")


def estimate_word_timestamps(text: str, audio_seconds: float) -> tuple[WordTimestamp, ...]:
    """:func:`estimate_alignment` as PROTOCOL 3.3 words, ``score`` :data:`ESTIMATED_SCORE`."""
    return alignment_word_timestamps(estimate_alignment(text, audio_seconds))


def alignment_word_timestamps(alignment: Alignment) -> tuple[WordTimestamp, ...]:
    """PROTOCOL 3.3 words of a chunk: 1.0 for exact engine spans, :data:`INTERPOLATED_SCORE`
    for interpolated ones, :data:`ESTIMATED_SCORE` for estimates."""
    if alignment.source == "durations":
        return alignment.word_timestamps(INTERPOLATED_SCORE)
    return alignment.word_timestamps(ESTIMATED_SCORE)


@dataclass(frozen=True, slots=True)
class ChunkWords:
    """Word timestamps of (part of) the current chunk, relative to the chunk (issue 13).

    From the engine's alignment: emitted before the chunk's audio of those words; an
    estimate (engines without alignment): emitted after the chunk's audio, before
    ``ChunkDone``. Char offsets index the chunk text as the client wrote it."""

    words: tuple[WordTimestamp, ...]


RunnerEvent: TypeAlias = EncodeEvent | ChunkWords
"""What :class:`PipelineRunner` reports: the pipeline's events, alignments as words."""


class PipelineRunner:
    """One pipeline on a connection: input buffer, subscription, disposal.

    Cold until :meth:`start`: pushed items wait in a backlog, so a stream turn accepts
    text at once but speaks only after the previous turn ended (PROTOCOL S-6).
    Events arrive on the connection's event loop through ``on_event``/``on_error``.
    """

    def __init__(
        self,
        key: str,
        spec: PipelineSpec,
        on_event: Callable[[PipelineRunner, RunnerEvent], None],
        on_error: Callable[[PipelineRunner, Exception], None],
    ) -> None:
        self.key = key
        """Turn key or context id."""
        self.spec = spec
        """What the pipeline is built from."""
        self.pending_chars = 0
        """Non-space characters accepted but not yet handed to the engine."""
        self.in_chunk = False
        """True while the engine works on a chunk."""
        self.audio_seconds = 0.0
        """Seconds of audio sent so far."""
        self.chunk_text = ""
        """Text of the chunk being (or last) spoken, as the client wrote it."""
        self.chunk_normalized: NormalizedText | None = None
        """What the engine speaks for :attr:`chunk_text`, if normalised."""
        self.chunk_aligned = False
        """Whether the engine aligned the current chunk (else words are estimated)."""
        self.started = False
        self.disposed = False
        self._on_event = on_event
        self._on_error = on_error
        self._subject: Subject[TextItem] = Subject()
        self._backlog: list[TextItem] = []
        self._subscription: abc.DisposableBase | None = None
        self._gated = GatedExecutor(spec.executor, spec.gate) if spec.gate is not None else None

    @property
    def busy(self) -> bool:
        """Whether text is waiting or being spoken."""
        return self.in_chunk or self.pending_chars > 0

    def start(self) -> None:
        """Subscribe the pipeline and feed it the backlog."""
        if self.started or self.disposed:
            return
        self.started = True
        spec = self.spec if self._gated is None else dataclasses.replace(self.spec, executor=self._gated)
        pipeline = build_pipeline(self._subject, spec)
        self._subscription = pipeline.subscribe(self._event, self._error, scheduler=self.spec.scheduler)
        backlog, self._backlog = self._backlog, []
        for item in backlog:
            self._forward(item)

    def push(self, item: TextItem) -> None:
        """Append text or a FLUSH (buffered until :meth:`start`)."""
        if self.disposed:
            return
        if isinstance(item, str):
            self.pending_chars += _letters(item)
        if self.started:
            self._forward(item)
        else:
            self._backlog.append(item)

    def resume(self) -> None:
        """The send queue has room again: start the engine job held back, if any."""
        if self._gated is not None and not self.disposed:
            self._gated.release()

    def dispose(self) -> None:
        """Stop at once: the engine is cancelled mid-chunk, queued text dropped (S-5)."""
        if self.disposed:
            return
        self.disposed = True
        self._backlog.clear()
        if self._gated is not None:
            self._gated.drop()
        if self._subscription is not None:
            self._subscription.dispose()

    def _forward(self, item: TextItem) -> None:
        if self.disposed:  # the previous item ended the pipeline (e.g. a synchronous flush)
            return
        self._subject.on_next(item)

    @property
    def wants_words(self) -> bool:
        """Whether the client asked for word timestamps (PROTOCOL G-9)."""
        return bool(self.spec.config.word_timestamps)

    def _event(self, event: EncodeEvent) -> None:
        if self.disposed:
            return
        if isinstance(event, ChunkStarted):
            self.in_chunk = True
            self.chunk_text = event.text
            self.chunk_normalized = event.normalized
            self.chunk_aligned = False
            self.pending_chars = max(0, self.pending_chars - _letters(event.text))
        elif isinstance(event, BlockAlignment):
            # Issue 13: the engine's timings go out at once, ahead of the audio they time.
            self.chunk_aligned = True
            words = alignment_word_timestamps(event.alignment)
            if self.wants_words and words:
                self._on_event(self, ChunkWords(words))
            return
        elif isinstance(event, ChunkDone):
            self.in_chunk = False
            self.audio_seconds += event.audio_seconds
            if self.wants_words and not self.chunk_aligned:
                words = self._estimate(event.audio_seconds)
                if words and not self.disposed:
                    self._on_event(self, ChunkWords(words))
            if self.disposed:
                return
        self._on_event(self, event)

    def _estimate(self, audio_seconds: float) -> tuple[WordTimestamp, ...]:
        """Estimated words of the chunk: over the spoken text, mapped to the client's."""
        norm = self.chunk_normalized
        if norm is None:
            return estimate_word_timestamps(self.chunk_text, audio_seconds)
        spoken = estimate_alignment(norm.text, audio_seconds)
        return alignment_word_timestamps(original_alignment(spoken, norm))

    def _error(self, error: Exception) -> None:
        if not self.disposed:
            self._on_error(self, error)
