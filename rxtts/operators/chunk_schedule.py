"""``chunk_schedule()``: group sentences into synthesis chunks (DESIGN section 6).

The pure part is :class:`ChunkScheduler` (no Rx, no clock); the operator adds the
FLUSH handling and the ``flush_timeout_ms`` timer on a scheduler.
"""

from __future__ import annotations

import itertools
import numbers
import re
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, Final

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, SerialDisposable
from reactivex.scheduler import TimeoutScheduler

from rxtts.config import DEFAULT_SCHEDULE

from .flush import TextItem, step

__all__ = ["DEFAULT_SCHEDULE", "ChunkScheduler", "chunk_schedule"]

"""The BALANCED schedule (PROTOCOL G-10: rxtts follows the JS SDK docs)."""

# A clause ends at , ; : or a dash *followed by whitespace* (so a cut never splits a word).
_CLAUSE: Final = re.compile(r"[,;:—–](?=\s)|\s[-–—](?=\s)")
_SPACE_RUN: Final = re.compile(r"\s+")


def _validate(
    schedule: Sequence[int], max_buffer_length: int, flush_timeout_ms: float | None
) -> tuple[int, ...]:
    raw = tuple(schedule)
    if not raw:
        raise ValueError("schedule must not be empty")
    for v in raw:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
            raise ValueError(f"schedule entries must be positive integers, got {v!r}")
    values = tuple(int(v) for v in raw)
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise ValueError(f"schedule must be strictly increasing, got {list(values)}")
    ok_max = isinstance(max_buffer_length, int) and not isinstance(max_buffer_length, bool)
    if not ok_max or max_buffer_length <= 0:
        raise ValueError(f"max_buffer_length must be a positive integer, got {max_buffer_length!r}")
    if flush_timeout_ms is not None and (isinstance(flush_timeout_ms, bool) or not flush_timeout_ms > 0):
        raise ValueError(f"flush_timeout_ms must be positive or None, got {flush_timeout_ms!r}")
    return values


def _cut_point(text: str, joins: Sequence[int], threshold: int, limit: int) -> int:
    """Where to end the next piece of an over-long run (``len(text) > limit``).

    In order of preference, with ``low = min(threshold, limit // 2)``: the first
    sentence boundary (``joins``: where two segments were joined) in ``[low,
    limit]``; the first clause boundary ending in that window; the last
    whitespace at or before ``limit``; the first whitespace after it. ``-1``
    when ``text`` has no whitespace (one long word is never split).
    """
    low = min(threshold, limit // 2)
    for j in joins:
        if low <= j <= limit:
            return j
    for m in _CLAUSE.finditer(text, max(low - 2, 0), limit + 1):
        if low <= m.end() <= limit:
            return m.end()
    last = -1
    for m in _SPACE_RUN.finditer(text, 0, limit + 1):
        if m.start() > 0:
            last = m.start()
    if last > 0:
        return last
    m2 = _SPACE_RUN.search(text, limit)
    return m2.start() if m2 is not None else -1


class ChunkScheduler:
    """Pure chunk-length scheduler: sentences in, synthesis chunks out.

    Semantics (DESIGN section 6):

    * Chunk ``k`` (0-based, counted since the last flush: a FLUSH starts a new
      turn) is released at the first sentence boundary (the end of a pushed
      segment) where the buffered text is at least ``schedule[min(k, len-1)]``
      characters long (capped by ``max_buffer_length``, the length that always
      forces a chunk). With ``auto_mode`` chunk 0 is released at the first
      boundary whatever its length.
    * Buffered segments are joined with one space.
    * **Over-long runs** (decision): a released run longer than
      ``limit = min(2 * threshold, max_buffer_length)`` is cut into pieces, each
      one chunk (so ``k`` and the threshold advance per piece). A piece ends at
      the first sentence boundary, else the first clause boundary (``, ; : —``
      followed by a space), at or after the threshold (``min(threshold, limit //
      2)``) and within the limit; else at the last word boundary before
      ``limit``, else at the first one after it. Cuts happen only at whitespace,
      never inside a word (a single word longer than the limit stays whole).
      What is left after the pieces is a sentence end again: it is released if
      long enough, otherwise it waits for the next sentence.
    * ``flush()`` (FLUSH or completion) and ``timeout()`` (the operator's
      ``flush_timeout_ms``) release the whole buffer, cut the same way;
      ``flush()`` also resets ``k`` to 0.
    """

    __slots__ = ("_auto", "_buf", "_k", "_len", "_max", "_schedule")

    def __init__(
        self,
        schedule: Sequence[int] = DEFAULT_SCHEDULE,
        auto_mode: bool = False,
        max_buffer_length: int = 1000,
    ) -> None:
        self._schedule = _validate(schedule, max_buffer_length, None)
        self._auto = auto_mode
        self._max = max_buffer_length
        self._buf: list[str] = []
        self._len = 0  # len(" ".join(self._buf))
        self._k = 0  # index of the next chunk in this turn

    @property
    def chunk_index(self) -> int:
        """Index ``k`` of the next chunk since the last flush."""
        return self._k

    @property
    def buffered_length(self) -> int:
        """Length of :attr:`buffered`, without building it."""
        return self._len

    @property
    def buffered(self) -> str:
        """Text waiting for the next chunk."""
        return " ".join(self._buf)

    def threshold(self, k: int | None = None) -> int:
        """Minimum length of chunk ``k`` (default: the next chunk)."""
        s = self._schedule
        k = self._k if k is None else k
        return min(s[min(k, len(s) - 1)], self._max)

    def push(self, segment: str) -> list[str]:
        """Add one complete segment (a sentence boundary follows it)."""
        segment = segment.strip()
        if not segment:
            return []
        self._len += len(segment) + (1 if self._buf else 0)
        self._buf.append(segment)
        if self._len < self.threshold() and not (self._auto and self._k == 0):
            return []
        return self._release(keep_short_rest=True)

    def timeout(self) -> list[str]:
        """Release the buffer after silence (k keeps counting)."""
        return self._release(keep_short_rest=False)

    def flush(self) -> list[str]:
        """Release everything and start a new turn (k = 0)."""
        out = self._release(keep_short_rest=False)
        self._k = 0
        return out

    def _release(self, keep_short_rest: bool) -> list[str]:
        if not self._buf:
            return []
        joins: list[int] = []  # sentence boundaries inside the joined text
        for segment in self._buf[:-1]:
            joins.append((joins[-1] + 1 if joins else 0) + len(segment))
        text = " ".join(self._buf) if len(self._buf) > 1 else self._buf[0]
        self._buf.clear()
        self._len = 0
        out: list[str] = []
        while True:
            threshold = self.threshold()
            limit = min(2 * threshold, self._max)
            if len(text) <= limit:
                break
            cut = _cut_point(text, joins, threshold, limit)
            if cut < 0:
                break
            out.append(text[:cut].rstrip())
            self._k += 1
            rest = text[cut:].lstrip()
            shift = len(text) - len(rest)
            joins = [j - shift for j in joins if j - shift > 0]
            text = rest
        if out and keep_short_rest and len(text) < self.threshold():
            self._buf.append(text)  # the rest of a cut run waits for the next sentence
            self._len = len(text)
            return out
        if text:
            out.append(text)
            self._k += 1
        return out


def chunk_schedule(
    schedule: Sequence[int] = DEFAULT_SCHEDULE,
    auto_mode: bool = False,
    max_buffer_length: int = 1000,
    flush_timeout_ms: float | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[TextItem]], Observable[TextItem]]:
    """Groups sentences into synthesis chunks by a chunk-length schedule.

    Input items are complete segments (the output of :func:`sentences`); the
    end of each one is a sentence boundary. Chunk ``k`` goes out at the first
    boundary where it holds ``>= schedule[min(k, len-1)]`` characters; with
    ``auto_mode`` chunk 0 goes out at the first boundary. Over-long runs are cut
    at clause/word boundaries (see :class:`ChunkScheduler`). FLUSH emits the
    rest, forwards FLUSH and restarts the schedule at chunk 0; completion emits
    the rest. With ``flush_timeout_ms``, the buffer is emitted after that much
    silence (no input at all); the timer only runs while the buffer is not
    empty.

    .. marble::
        :alt: chunk_schedule

        --"Hi there."--"How are you?"-----"Fine."-F--|
        [        chunk_schedule((20,), auto_mode=True)        ]
        --"Hi there."-----------------------"How are you? Fine."F--|

    Example:
        >>> text.pipe(sentences(), chunk_schedule((50, 100, 150, 250), auto_mode=True))

    Args:
        schedule: Minimum characters per chunk, strictly increasing; the last
            entry repeats.
        auto_mode: Release chunk 0 at the first sentence boundary.
        max_buffer_length: Characters that always force a chunk; also caps
            the length a run may reach before it is cut.
        flush_timeout_ms: Emit the buffer after this many milliseconds
            without input (``None``: never).
        scheduler: Scheduler for the timer; defaults to the subscribe
            scheduler, then :class:`TimeoutScheduler`.

    Returns:
        An operator function from a segment stream to a chunk stream, with
        every FLUSH forwarded after the chunks that precede it.

    Raises:
        ValueError: an empty or non-increasing ``schedule``, a non-positive
            ``max_buffer_length`` or ``flush_timeout_ms`` (the message names
            the field).
    """
    values = _validate(schedule, max_buffer_length, flush_timeout_ms)
    timeout = None if flush_timeout_ms is None else timedelta(milliseconds=flush_timeout_ms)

    def _chunk_schedule(source: Observable[TextItem]) -> Observable[TextItem]:
        def subscribe(
            observer: abc.ObserverBase[TextItem],
            scheduler_: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            chunker = ChunkScheduler(values, auto_mode, max_buffer_length)
            timer = SerialDisposable()
            lock = threading.RLock()  # source and timer threads may interleave
            generation = [0]  # invalidates a timer that fired while we were busy
            _scheduler = scheduler or scheduler_ or TimeoutScheduler.singleton()

            def arm() -> None:
                generation[0] += 1
                if timeout is None or not chunker.buffered_length:
                    if not timer.is_disposed:  # downstream may dispose us inside on_next
                        timer.disposable = None
                    return
                current = generation[0]

                def action(_: abc.SchedulerBase, __: Any = None) -> None:
                    with lock:
                        if generation[0] != current:
                            return
                        for chunk in chunker.timeout():
                            observer.on_next(chunk)

                timer.disposable = _scheduler.schedule_relative(timeout, action)

            def on_next(item: TextItem) -> None:
                with lock:
                    try:
                        out = step(chunker, item, "chunk_schedule")
                    except Exception as exc:  # forwarded to the observer
                        observer.on_error(exc)
                        return
                    for chunk in out:
                        observer.on_next(chunk)
                    if timeout is not None:
                        arm()

            def on_error(exc: Exception) -> None:
                with lock:
                    generation[0] += 1
                    timer.dispose()
                    observer.on_error(exc)

            def on_completed() -> None:
                with lock:
                    generation[0] += 1
                    timer.dispose()
                    for chunk in chunker.flush():
                        observer.on_next(chunk)
                    observer.on_completed()

            subscription = source.subscribe(on_next, on_error, on_completed, scheduler=scheduler_)
            return CompositeDisposable(subscription, timer)

        return Observable(subscribe)

    return _chunk_schedule
