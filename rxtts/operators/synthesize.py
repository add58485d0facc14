"""``synthesize()``: text chunks in, engine audio out, one chunk at a time, off the loop.

The engine call is blocking (piper runs onnxruntime), so every chunk is synthesised on a
worker thread of an :class:`~concurrent.futures.Executor`; its blocks hop back to the
subscriber through ``scheduler`` (the server passes an ``AsyncIOThreadSafeScheduler``,
i.e. ``loop.call_soon_threadsafe``). Without a scheduler the events are delivered on the
worker thread, serialised by a lock.

Chunks are synthesised strictly one after another: a chunk that arrives while another is
being spoken waits in a queue, and so does a FLUSH behind it, so ``FlushReached`` always
follows the audio of every chunk admitted before it (PROTOCOL S-3, M-6). Disposing the
subscription cancels the engine mid-chunk (:class:`CancelToken`: piper terminates the
running inference) and drops the queue; nothing is emitted after that (PROTOCOL S-5).

Alignment: blocks come through :func:`rxtts.engine.engine_blocks`, so an engine that
aligns (piper, with ``settings.alignment``) produces a :class:`BlockAlignment` right
before the :class:`BlockAudio` of the block that carries it, i.e. before any audio of the
words it times. Engines that yield plain arrays produce none.

Leading silence (issue 12): with ``lead_s``, the first chunk of a subscription (a
turn's or a context's first words) keeps at most ``lead_s`` seconds of silence (below
-50 dBFS) before its first sound; the rest of the first non-silent block's lead is cut
and that chunk's alignment shifts with it. Piper leads every sentence with 25-60 ms of
near-silence: at a turn's start it is only delay, between chunks it is part of the seam,
so later chunks keep theirs. Only the first block with any sound is cut, so a silent
chunk is never emptied.

Early audio (issue 12, capacity): a chunk is synthesised with
``SynthesisSettings.early_audio=True`` (piper: windowed decode, ~1.3x compute for the
earliest first sample) only while its listener may be waiting: the subscription's first
chunk, or a chunk that starts with less than :data:`EARLY_AUDIO_AHEAD_S` of audio ahead
of real-time playback (estimated as if playback started with the first block and never
paused: audio produced minus wall time since then). Later chunks of a flowing turn are
decoded the cheap way while the audio before them plays.

Normalisation (issue 13): a chunk may come as a
:class:`~rxtts.operators.NormalizedText` (the server's pipeline normalises after
``chunk_schedule``); the engine then speaks its ``text``, while ``ChunkStarted.text``
stays the text as written and every :class:`BlockAlignment` indexes it:
:func:`original_alignment` maps the spoken words back through ``to_original`` and
merges the words of one rewrite ("three dollars and fifty cents" is one word
``"$3.50"``, from the first spoken word's start to the last one's end).
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable

from rxtts.audio.silence import first_non_silent_sample
from rxtts.engine import (
    Alignment,
    CancelToken,
    Engine,
    SynthesisSettings,
    VoiceInfo,
    WordTiming,
    engine_blocks,
)
from rxtts.operators._normalize import NormalizedText
from rxtts.operators.flush import FLUSH, TextItem

__all__ = [
    "EARLY_AUDIO_AHEAD_S",
    "BlockAlignment",
    "BlockAudio",
    "ChunkDone",
    "ChunkStarted",
    "FlushReached",
    "SynthEvent",
    "SynthInput",
    "default_executor",
    "original_alignment",
    "synthesize",
]

EARLY_AUDIO_AHEAD_S = 1.0
"""A chunk that starts with less audio than this ahead of playback is synthesised for
early audio (module doc): piper's whole-sentence decode of 25 words takes ~0.3 s on 2
idle cores, ~0.65 s loaded, so with 1 s ahead the listener does not wait for it."""

SynthInput: TypeAlias = TextItem | NormalizedText
"""What :func:`synthesize` takes: text chunks (spoken as they are) or normalised chunks
(spoken as ``.text``, reported as ``.original``), and FLUSH."""


@dataclass(frozen=True, slots=True)
class ChunkStarted:
    """The engine started on one text chunk (becomes ``generation_started``)."""

    text: str
    """The chunk as written: exactly as handed to the engine, or, for a normalised chunk,
    its ``original`` (the client's text; :class:`BlockAlignment` offsets index it)."""
    normalized: NormalizedText | None = field(default=None, repr=False, compare=False)
    """The normalisation the engine's text came from; ``None``: it speaks :attr:`text`."""

    @property
    def spoken(self) -> str:
        """The text the engine speaks."""
        return self.text if self.normalized is None else self.normalized.text


@dataclass(frozen=True, slots=True, eq=False)
class BlockAudio:
    """One block of engine audio of the current chunk (compared by identity)."""

    samples: npt.NDArray[np.float32] = field(repr=False)
    """Mono float32 samples in [-1, 1]."""
    sample_rate: int
    """Rate of ``samples`` in Hz (the engine's native rate)."""


@dataclass(frozen=True, slots=True)
class BlockAlignment:
    """Word timings of the current chunk, emitted before the audio of the words it times.

    One per engine sentence (piper); becomes PROTOCOL 3.3 ``word_timestamps`` with
    ``start_ms = round(start_sample * 1000 / sample_rate)``.
    """

    alignment: Alignment
    """Word spans in samples at ``alignment.sample_rate`` from the chunk's first sample,
    char offsets into the chunk text as written (``ChunkStarted.text``, also for a
    normalised chunk, see :func:`original_alignment`)."""


@dataclass(frozen=True, slots=True)
class ChunkDone:
    """The current chunk is fully synthesised (becomes ``chunk_complete``)."""

    audio_seconds: float
    """Seconds of audio in the chunk."""
    gen_ms: float
    """Wall time the engine spent on the chunk, in milliseconds."""


@dataclass(frozen=True, slots=True)
class FlushReached:
    """Every chunk admitted before a FLUSH has been synthesised and emitted."""


SynthEvent: TypeAlias = ChunkStarted | BlockAlignment | BlockAudio | ChunkDone | FlushReached
"""What :func:`synthesize` emits."""


def original_alignment(alignment: Alignment, normalized: NormalizedText) -> Alignment:
    """``alignment`` of ``normalized.text``, re-expressed on ``normalized.original``.

    Each word's char span goes through ``to_original``; consecutive words whose spans
    overlap (the spoken words of one rewrite) merge into one word, the original text
    of the union, timed from the first one's start to the last one's end, exact only if
    all were. Identity text maps one to one, so an unchanged chunk keeps its alignment.
    """
    if not normalized.changed:
        return alignment
    original = normalized.original
    out: list[WordTiming] = []
    for w in alignment.words:
        start, end = normalized.to_original(w.char_start, w.char_end)
        if out and start < out[-1].char_end:
            prev = out[-1]
            start, end = min(start, prev.char_start), max(end, prev.char_end)
            out[-1] = WordTiming(
                original[start:end], start, end, prev.start_sample, w.end_sample, prev.exact and w.exact
            )
            continue
        out.append(WordTiming(original[start:end], start, end, w.start_sample, w.end_sample, w.exact))
    return Alignment(tuple(out), alignment.sample_rate, alignment.source)


_Post: TypeAlias = Callable[[Callable[[], None]], None]

_default_lock = threading.Lock()
_default_pool: ThreadPoolExecutor | None = None


def default_executor() -> Executor:
    """The process-wide two-thread pool used when no executor is given."""
    global _default_pool
    with _default_lock:
        if _default_pool is None:
            _default_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="rxtts-synth")
        return _default_pool


def _poster(scheduler: abc.SchedulerBase | None, lock: threading.RLock) -> _Post:
    """How worker results reach the subscriber: via ``scheduler``, else under ``lock``."""
    if scheduler is not None:
        sched = scheduler

        def post_scheduled(fn: Callable[[], None]) -> None:
            sched.schedule(lambda _s, _st: fn())

        return post_scheduled

    def post_locked(fn: Callable[[], None]) -> None:
        with lock:
            fn()

    return post_locked


class _Synthesis:
    """Per-subscription state: the chunk queue, the busy flag and the cancel token."""

    def __init__(
        self,
        engine: Engine,
        voice: VoiceInfo,
        settings: SynthesisSettings,
        executor: Executor,
        observer: abc.ObserverBase[SynthEvent],
        scheduler: abc.SchedulerBase | None,
        lead_s: float | None = None,
    ) -> None:
        self.engine = engine
        self.lead = None if lead_s is None else max(0, round(lead_s * engine.sample_rate))
        """Samples of silence kept before the first chunk's first sound (None: all)."""
        self.first_chunk = True
        self.first_audio_at: float | None = None
        """``perf_counter()`` of the first block: the estimated start of playback."""
        self.audio_s = 0.0
        """Seconds of audio of the chunks done so far."""
        self.voice = voice
        self.settings = settings
        self.executor = executor
        self.observer = observer
        self.lock = threading.RLock()
        self.post = _poster(scheduler, self.lock)
        self.token = CancelToken()
        self.queue: deque[SynthInput] = deque()
        self.busy = False
        self.upstream_done = False
        self.stopped = False

    # -- upstream (subscriber's thread) ------------------------------------------------

    def on_next(self, item: SynthInput) -> None:
        with self.lock:
            if not self.stopped:
                self.queue.append(item)
                self._pump()

    def on_error(self, error: Exception) -> None:
        with self.lock:
            if not self.stopped:
                self._stop()
                self.observer.on_error(error)

    def on_completed(self) -> None:
        with self.lock:
            self.upstream_done = True
            if not self.stopped:
                self._pump()

    def dispose(self) -> None:
        """Cancel the engine mid-chunk and drop queued chunks (PROTOCOL S-5, M-7)."""
        with self.lock:
            self._stop()

    def _stop(self) -> None:
        self.stopped = True
        self.queue.clear()
        self.token.cancel()

    def _pump(self) -> None:
        """Start the next queued chunk unless one is running; FLUSHes pass in order."""
        while not self.busy and self.queue and not self.stopped:
            item = self.queue.popleft()
            if item is FLUSH:
                self.observer.on_next(FlushReached())
                continue
            if isinstance(item, NormalizedText):
                started = ChunkStarted(item.original, item)
            else:
                assert isinstance(item, str)
                started = ChunkStarted(item)
            if not started.spoken.strip():
                continue
            self.busy = True
            self.observer.on_next(started)
            try:
                lead, self.first_chunk = (self.lead if self.first_chunk else None), False
                settings = self.settings
                if settings.early_audio and self._ahead_s() >= EARLY_AUDIO_AHEAD_S:
                    settings = dataclasses.replace(settings, early_audio=False)
                self.executor.submit(self._work, started.spoken, started.normalized, lead, settings)
            except RuntimeError as exc:  # executor shut down: the server is stopping
                self._fail(exc)
                return
        if not self.busy and not self.queue and self.upstream_done and not self.stopped:
            self.stopped = True
            self.observer.on_completed()

    def _ahead_s(self) -> float:
        """Audio ahead of real-time playback now (0 before the first block)."""
        if self.first_audio_at is None:
            return 0.0
        return self.audio_s - (time.perf_counter() - self.first_audio_at)

    # -- worker thread -----------------------------------------------------------------

    def _work(
        self, text: str, normalized: NormalizedText | None, lead: int | None, settings: SynthesisSettings
    ) -> None:
        """``lead``: silence kept before the chunk's first sound (None: all, see module doc)."""
        started = time.perf_counter()
        produced = 0
        rate = self.engine.sample_rate
        held: list[Alignment] = []  # alignments waiting for the lead cut (they shift with it)
        try:
            for block in engine_blocks(self.engine, text, self.voice, settings, self.token):
                if self.token.cancelled:
                    return
                if block.alignment is not None:  # before the audio of the words it times
                    alignment = block.alignment
                    if normalized is not None:
                        alignment = original_alignment(alignment, normalized)
                    if lead is None:
                        self._deliver(functools.partial(self._emit, BlockAlignment(alignment)))
                    else:
                        held.append(alignment)
                samples = np.ascontiguousarray(block.audio, dtype=np.float32).reshape(-1)
                if lead is not None and (sound := first_non_silent_sample(samples)) is not None:
                    cut = max(0, sound - lead)
                    samples, lead = samples[cut:], None
                    for alignment in held:
                        self._deliver(functools.partial(self._emit, BlockAlignment(alignment.shifted(cut))))
                    held.clear()
                if samples.size:
                    if self.first_audio_at is None:
                        self.first_audio_at = time.perf_counter()
                    produced += samples.size
                    self._deliver(functools.partial(self._emit, BlockAudio(samples, rate)))
        except Exception as exc:  # engine failure: becomes an error frame upstream
            if not self.token.cancelled:
                self._deliver(functools.partial(self._fail, exc))
            return
        if self.token.cancelled:
            return
        for alignment in held:  # a chunk without sound: nothing was cut
            self._deliver(functools.partial(self._emit, BlockAlignment(alignment)))
        gen_ms = (time.perf_counter() - started) * 1000.0
        self._deliver(lambda: self._chunk_end(ChunkDone(produced / rate, gen_ms)))

    def _deliver(self, fn: Callable[[], None]) -> None:
        try:
            self.post(fn)
        except RuntimeError:  # the event loop is closed: nobody is listening any more
            self.token.cancel()

    # -- delivered on the subscriber's side --------------------------------------------

    def _emit(self, event: SynthEvent) -> None:
        with self.lock:
            if not self.stopped:
                self.observer.on_next(event)

    def _chunk_end(self, done: ChunkDone) -> None:
        with self.lock:
            if self.stopped:
                return
            self.busy = False
            self.audio_s += done.audio_seconds
            self.observer.on_next(done)
            self._pump()

    def _fail(self, exc: Exception) -> None:
        with self.lock:
            if not self.stopped:
                self._stop()
                self.observer.on_error(exc)


def synthesize(
    engine: Engine,
    voice: VoiceInfo,
    settings: SynthesisSettings | None = None,
    executor: Executor | None = None,
    scheduler: abc.SchedulerBase | None = None,
    lead_s: float | None = None,
) -> Callable[[Observable[SynthInput]], Observable[SynthEvent]]:
    """Speak each text chunk with ``engine``, strictly one chunk after another.

    ::

        chunks:  -"Hi there."------"Bye."-FLUSH----------------|
                       synthesize(engine, voice)
        events:  -S(Hi there.)-A-A-D-S(Bye.)-A-D-F-------------|

        S = ChunkStarted, A = BlockAudio (as soon as the engine yields a block),
        D = ChunkDone, F = FlushReached (after every chunk admitted before it).
        An aligning engine adds L = BlockAlignment right before the A it belongs to:
        -S-L-A-A-L-A-D- for a two-sentence chunk.

        dispose:  -"Long sentence."-----x
        events:   -S(Long sentence.)-A--x   engine cancelled mid-chunk, queue dropped

    Args:
        engine: Any :class:`~rxtts.server.engines.Engine`; called on a worker thread.
        voice: The voice to speak with.
        settings: Speed/temperature/language; engine defaults when ``None``.
        executor: Where the blocking engine calls run (default: a shared 2-thread pool).
        scheduler: A thread-safe scheduler that delivers the worker's results (pass an
            ``AsyncIOThreadSafeScheduler`` to get every event on the event loop); ``None``
            delivers them on the worker thread under a lock. The subscribe scheduler is
            not used: it need not be thread-safe.
        lead_s: Seconds of silence kept at most before the first sound of the first
            chunk (the server passes :data:`~rxtts.server.pipeline.TURN_LEAD_S`); ``None``
            keeps the engine's lead.

    Returns:
        An operator ``Observable[str | NormalizedText | FLUSH] -> Observable[SynthEvent]``
        (a ``NormalizedText`` is spoken as ``.text``, reported as ``.original``); cold: each
        subscription has its own queue and cancel token. Blank chunks are skipped;
        engine errors are forwarded as ``on_error``.
    """
    effective_settings = settings or SynthesisSettings()

    def _synthesize(source: Observable[SynthInput]) -> Observable[SynthEvent]:
        def subscribe(
            observer: abc.ObserverBase[SynthEvent],
            subscribe_scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            state = _Synthesis(
                engine,
                voice,
                effective_settings,
                executor or default_executor(),
                observer,
                scheduler,
                lead_s,
            )
            upstream = source.subscribe(
                state.on_next, state.on_error, state.on_completed, scheduler=subscribe_scheduler
            )
            return CompositeDisposable(Disposable(state.dispose), upstream)

        return Observable(subscribe)

    return _synthesize
