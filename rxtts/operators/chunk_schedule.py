"""``chunk_schedule()``: group text into synthesis chunks (DESIGN section 6).

The pure part is :class:`ChunkScheduler` (no Rx, no clock); the operator adds the
FLUSH handling and the ``flush_timeout_ms`` timer on a scheduler, gated by an
optional ``idle`` stream (PROTOCOL S-8a).

Where the idle and phrase logic lives (design decision): both need the text of
the sentence that is still arriving, and with ``sentences()`` in front that text
sits inside ``sentences()``' segmenter, invisible downstream (``sentences()`` only
emits complete sentences; before this change the server reached the partial
sentence only by injecting a FLUSH, which spoke the half word too). So
``chunk_schedule(segment=True)`` takes the raw token stream and runs the
:class:`~rxtts.operators.SentenceSegmenter` itself: one pure state machine holds
every pending character, the idle release cuts that text at its last word
boundary (:meth:`SentenceSegmenter.releasable`), and the phrase-aware first chunk
cuts the first sentence before it ends. ``text.pipe(sentences(),
chunk_schedule(...))`` keeps working exactly as before (segment input).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SerialDisposable
from reactivex.scheduler import TimeoutScheduler

from rxtts.config import DEFAULT_SCHEDULE

from ._chunker import (
    FUNCTION_WORDS,
    ChunkScheduler,
    FirstChunk,
    _validate,
)
from .flush import TextItem, step

__all__ = ["DEFAULT_SCHEDULE", "FUNCTION_WORDS", "ChunkScheduler", "FirstChunk", "chunk_schedule"]


def chunk_schedule(
    schedule: Sequence[int] = DEFAULT_SCHEDULE,
    auto_mode: bool = False,
    max_buffer_length: int = 1000,
    flush_timeout_ms: float | None = None,
    scheduler: abc.SchedulerBase | None = None,
    *,
    idle: Observable[bool] | None = None,
    segment: bool = False,
    first_chunk: FirstChunk | None = None,
    min_words: int = 4,
    max_words: int = 6,
    urgent_after_ms: float | None = 400,
) -> Callable[[Observable[TextItem]], Observable[TextItem]]:
    """Groups text into synthesis chunks by a chunk-length schedule.

    By default the input items are complete segments (the output of
    :func:`sentences`); the end of each one is a sentence boundary. With
    ``segment=True`` the input is the raw token stream and the sentence
    segmentation is built in (use it *instead of* ``sentences()`` in front):
    that is what lets the idle release and the phrase-aware first chunk see the
    sentence still arriving. Chunk ``k`` goes out at the first boundary where
    it holds ``>= schedule[min(k, len-1)]`` characters; with ``auto_mode``
    chunk 0 goes out at the first boundary. Over-long runs are cut at
    clause/word boundaries (see :class:`ChunkScheduler`). FLUSH emits the rest,
    forwards FLUSH and restarts the schedule at chunk 0; completion emits the
    rest.

    **Idle release** (``flush_timeout_ms``, PROTOCOL U-11, S-8a): the buffer is
    released after that much silence; the timer runs only while text is
    buffered, restarts at every input item and, with ``idle``, counts only
    while the latest ``idle`` value is ``True``: it starts when ``idle`` turns
    ``True`` (or at the last text if ``idle`` already was), and is cancelled
    when ``idle`` turns ``False``. Until ``idle`` emits, the consumer counts as
    idle. The release never cuts inside a word: with ``segment=True`` the
    pending sentence goes out up to its last word boundary and the partial word
    stays; a buffer holding only a partial word waits for more text, FLUSH or
    completion (the timer does not re-arm until the next input). An ``idle``
    error is forwarded; its completion keeps the last value.

    **Phrase-aware first chunk** (``first_chunk="phrase"``, needs
    ``segment=True``): chunk 0 goes out at the first clause boundary (``, ; :``
    or a dash) once it has ``min_words`` words, or by ``max_words`` words at the
    best phrase boundary; never after a function word (:data:`FUNCTION_WORDS`),
    never mid-word. ``first_chunk=None`` (default) means ``"phrase"`` when
    ``auto_mode`` and ``segment`` are on, else ``"sentence"``: the wire has only
    ``auto_mode`` (PROTOCOL 7), and "start at the first clean boundary" is what
    it asks for, so the LOW_LATENCY preset gets it from ``auto_mode=True``.

    .. marble::
        :alt: chunk_schedule

        --"Hi there."--"How are you?"-----"Fine."-F--|
        [        chunk_schedule((20,), auto_mode=True)        ]
        --"Hi there."-----------------------"How are you? Fine."F--|

    .. marble::
        :alt: idle release; one dash = 1 s; a = "Hel", b = "lo wor", c = "ld"

        text: -a-b----------------c-F--|
        idle: T----F------T-------------
        [ chunk_schedule((100,), flush_timeout_ms=3000, segment=True, idle=idle) ]
        out:  ---------------x------(yF)|

    (``x`` = ``"Hello"``: 3 s after ``idle`` turned True again, not after the last
    text, which came while the consumer was busy; ``"wor"`` stays. ``y`` =
    ``"world"``, released by the FLUSH.)

    Example:
        >>> text.pipe(chunk_schedule(LOW_LATENCY.chunk_length_schedule, auto_mode=True,
        ...     flush_timeout_ms=500, segment=True, idle=nothing_to_send))

    Args:
        schedule: Minimum characters per chunk, strictly increasing; the last
            entry repeats.
        auto_mode: Release chunk 0 at the first sentence boundary (and, with
            ``segment=True``, at the first phrase boundary: see ``first_chunk``).
        max_buffer_length: Characters that always force a chunk; also caps
            the length a run may reach before it is cut.
        flush_timeout_ms: Release the buffer after this many milliseconds
            of silence (``None``: never).
        scheduler: Scheduler for the timer; defaults to the subscribe
            scheduler, then :class:`TimeoutScheduler`.
        idle: "The consumer has nothing left to send" flags; the idle timer
            counts only while the latest value is ``True`` (``None``: always).
            Not subscribed without ``flush_timeout_ms`` or phrase mode.
        segment: The input is the raw token stream; segment it here.
        first_chunk: ``"sentence"``, ``"phrase"`` or ``None`` (derived from
            ``auto_mode`` and ``segment``).
        min_words: Words chunk 0 needs before a clause boundary may end it.
        max_words: Words after which chunk 0 is cut at the best phrase boundary.
            Default 6, chosen by ``rxtts bench realistic`` (22 realistic answers at
            40 tokens/s): 12 words made chunk 0 wait ~370 ms for text (TTFA p50 486 ms),
            6 words ~200 ms (TTFA p50 ~310 ms) with no loss of intelligibility (Whisper
            WER 3.2 % vs 4.1 %). The price: a long first sentence is more often cut before
            its first comma (at a phrase boundary, never after a function word).
        urgent_after_ms: Phrase mode with ``idle``: once the consumer has been idle
            this long (its listener is about to hear silence: the LLM stalled, e.g.
            on a tool call, or is slower than the voice), the buffered text goes out
            at once and the next chunk is cut like chunk 0, at a phrase boundary
            (:meth:`ChunkScheduler.starve`); ``None``: never. Default 400 ms: with
            the server's 1 s pacing lead, ~600 ms of audio are left to play, more than
            a phrase cut's wait (~200 ms of tokens at 40/s) plus the engine's first
            audio (~80 ms). Counted from the moment ``idle`` turned ``True``.

    Returns:
        An operator function from a segment (or token) stream to a chunk
        stream, with every FLUSH forwarded after the chunks that precede it.

    Raises:
        ValueError: an empty or non-increasing ``schedule``, a non-positive
            ``max_buffer_length``, ``flush_timeout_ms``, ``min_words`` or
            ``max_words`` or ``urgent_after_ms``, ``max_words < min_words``, an unknown
            ``first_chunk``, or ``first_chunk="phrase"`` without ``segment``
            (the message names the field).
    """
    values = _validate(schedule, max_buffer_length, flush_timeout_ms)
    ChunkScheduler(  # validates the remaining arguments now, not at subscribe time
        values, auto_mode, max_buffer_length, segment=segment, first_chunk=first_chunk,
        min_words=min_words, max_words=max_words,
    )  # fmt: skip
    timeout = None if flush_timeout_ms is None else timedelta(milliseconds=flush_timeout_ms)
    if urgent_after_ms is not None and (isinstance(urgent_after_ms, bool) or not urgent_after_ms > 0):
        raise ValueError(f"urgent_after_ms must be positive or None, got {urgent_after_ms!r}")
    urgent_after = None if urgent_after_ms is None else timedelta(milliseconds=urgent_after_ms)

    def _chunk_schedule(source: Observable[TextItem]) -> Observable[TextItem]:
        def subscribe(
            observer: abc.ObserverBase[TextItem],
            scheduler_: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            chunker = ChunkScheduler(
                values, auto_mode, max_buffer_length, segment=segment, first_chunk=first_chunk,
                min_words=min_words, max_words=max_words,
            )  # fmt: skip
            timer = SerialDisposable()
            urgent_timer = SerialDisposable()  # urgent_after_ms, from idle turning True
            urgent = urgent_after if chunker.phrase_first_chunk else None
            lock = threading.RLock()  # source, idle and timer threads may interleave
            generation = [0]  # invalidates a timer that fired while we were busy
            idle_now = [True]  # latest idle flag (idle until told otherwise)
            stopped = [False]
            _scheduler = scheduler or scheduler_ or TimeoutScheduler.singleton()

            def arm() -> None:
                """(Re)start the idle timer from now, or cancel it."""
                generation[0] += 1
                if timeout is None or not idle_now[0] or not chunker.has_text:
                    if not timer.is_disposed:  # downstream may dispose us inside on_next
                        timer.disposable = None
                    return
                current = generation[0]

                def action(_: abc.SchedulerBase, __: Any = None) -> None:
                    with lock:
                        if generation[0] != current or stopped[0]:
                            return
                        for chunk in chunker.timeout():
                            observer.on_next(chunk)
                        # Not re-armed: a partial word left behind waits for input.

                timer.disposable = _scheduler.schedule_relative(timeout, action)

            def arm_urgent() -> None:
                """Start the urgency timer when idle turns True; cancel it when False."""
                if urgent is None or urgent_timer.is_disposed:
                    return
                if not idle_now[0]:
                    urgent_timer.disposable = None
                    return

                def action(_: abc.SchedulerBase, __: Any = None) -> None:
                    with lock:
                        if stopped[0] or not idle_now[0]:
                            return
                        for chunk in chunker.starve():
                            observer.on_next(chunk)

                urgent_timer.disposable = _scheduler.schedule_relative(urgent, action)

            def on_next(item: TextItem) -> None:
                with lock:
                    if stopped[0]:
                        return
                    try:
                        out = step(chunker, item, "chunk_schedule")
                    except Exception as exc:  # forwarded to the observer
                        on_error(exc)
                        return
                    for chunk in out:
                        observer.on_next(chunk)
                    if timeout is not None:
                        arm()

            def on_idle(value: bool) -> None:
                with lock:
                    if stopped[0] or bool(value) == idle_now[0]:
                        return
                    idle_now[0] = bool(value)
                    arm()  # True: count from now; False: cancel
                    arm_urgent()

            def on_error(exc: Exception) -> None:
                with lock:
                    if stopped[0]:
                        return
                    stopped[0] = True
                    generation[0] += 1
                    timer.dispose()
                    urgent_timer.dispose()
                    observer.on_error(exc)

            def on_completed() -> None:
                with lock:
                    if stopped[0]:
                        return
                    stopped[0] = True
                    generation[0] += 1
                    timer.dispose()
                    urgent_timer.dispose()
                    for chunk in chunker.flush():
                        observer.on_next(chunk)
                    observer.on_completed()

            idle_subscription: abc.DisposableBase = Disposable()
            if idle is not None and (timeout is not None or urgent is not None):
                idle_subscription = idle.subscribe(on_idle, on_error, scheduler=scheduler_)
            subscription = source.subscribe(on_next, on_error, on_completed, scheduler=scheduler_)
            return CompositeDisposable(idle_subscription, subscription, timer, urgent_timer)

        return Observable(subscribe)

    return _chunk_schedule
