"""``pace()``: let audio leave at most ``max_lead_seconds`` ahead of real-time playback.

A neural engine makes a whole clause at once; sent as fast as it is made, several
seconds of audio would sit in the client's buffer, and a barge-in (PROTOCOL S-5,
M-7: <= ~1 s of audio after a cancel) could not stop it. ``pace`` holds items back
on a scheduler, so it runs in virtual time under ``TestScheduler`` like any other
time-based Rx operator.

The clock models the client's playback buffer: ``play_end`` is when the audio
sent so far will have been played. It starts at the first audio item; each audio
item that leaves moves it to ``max(play_end, now) + duration`` (``max``: a client
whose buffer ran dry does not owe the gap: after a stall the clock restarts at
now, so a burst afterwards still leads by at most ``max_lead_seconds``). An item
leaves when ``play_end - now <= max_lead_seconds``, i.e. while no gap happened,
when ``sent_audio_seconds - elapsed <= max_lead_seconds`` with ``elapsed``
counted from the first audio item.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SerialDisposable
from reactivex.scheduler import TimeoutScheduler

__all__ = ["audio_seconds", "pace"]

_T = TypeVar("_T")
_EPSILON = 1e-9  # float slack: a timer due at the bound lets the item go


def audio_seconds(item: object) -> float:
    """Seconds of audio ``item`` holds: its ``seconds``, else ``samples / sample_rate``, else 0.

    Fits the server's outgoing frames (``seconds``) and :class:`EncodedAudio`
    (``samples``, ``sample_rate``); anything else (chunk events, text) is not audio.
    """
    seconds = getattr(item, "seconds", None)
    if isinstance(seconds, int | float) and not isinstance(seconds, bool):
        return float(seconds)
    samples = getattr(item, "samples", None)
    rate = getattr(item, "sample_rate", None)
    if isinstance(samples, int) and isinstance(rate, int) and rate > 0:
        return samples / rate
    return 0.0


def pace(
    max_lead_seconds: float | None,
    duration: Callable[[_T], float] = audio_seconds,
    scheduler: abc.SchedulerBase | None = None,
    *,
    reset: Observable[Any] | None = None,
) -> Callable[[Observable[_T]], Observable[_T]]:
    """Delays items so the audio sent leads real-time playback by at most ``max_lead_seconds``.

    ``duration(item)`` is the seconds of audio an item holds; items with 0 (chunk
    events, markers) are not audio: they leave as soon as everything before them
    has left (order is always kept). The first audio item leaves at once and
    starts the clock; later ones wait until ``play_end - now <= max_lead_seconds``
    (see the module docstring for the clock). Completion is forwarded after the
    queued items; an error is forwarded at once and drops the queue; disposing
    drops the queue at once (barge-in), so nothing queued is sent afterwards.

    ``reset``: each value restarts the clock (the client dropped its buffer, e.g.
    after a cancel, or a new turn should start without inherited lead): the next
    audio item leaves at once as if it were the first. Without it one clock
    spans every item of the subscription, which is right across turns of one
    socket (the client plays them back to back).

    .. marble::
        :alt: pace(1.0); one dash = 0.5 s; a, b, c hold 2, 1, 1 s of audio; m is a marker

        -(abcm)-----------|
        [     pace(1.0)     ]
        -a--b--(cm)-------|

    (``a`` leaves at once, starts the clock and plays for 2 s; ``b`` waits until
    only 1 s of ``a`` is left, +1 s; ``c`` until 1 s of ``b`` is left, +2 s; the
    marker ``m`` right behind it.)

    Example:
        >>> frames.pipe(pace(1.0, duration=lambda f: f.seconds, scheduler=loop_scheduler))

    Args:
        max_lead_seconds: Audio allowed in the client's buffer; ``None`` or
            ``inf``: no pacing (the source is returned unchanged).
        duration: Seconds of audio in an item (default :func:`audio_seconds`);
            negative or NaN counts as 0.
        scheduler: Scheduler for the delays; defaults to the subscribe
            scheduler, then :class:`TimeoutScheduler`.
        reset: Optional stream whose every value restarts the clock.

    Returns:
        An operator function that keeps order and values, only delaying them.

    Raises:
        ValueError: a negative or NaN ``max_lead_seconds``.
    """
    if max_lead_seconds is None or max_lead_seconds == math.inf:
        return _identity
    if isinstance(max_lead_seconds, bool) or not max_lead_seconds >= 0:  # also rejects NaN
        raise ValueError(f"max_lead_seconds must be >= 0, None or inf, got {max_lead_seconds!r}")
    lead = float(max_lead_seconds)

    def _pace(source: Observable[_T]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T],
            scheduler_: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            _scheduler = scheduler or scheduler_ or TimeoutScheduler.singleton()
            lock = threading.RLock()  # source, reset and timer threads may interleave
            queue: deque[tuple[_T, float]] = deque()
            timer = SerialDisposable()
            state = _State()

            def now() -> float:
                return _scheduler.to_seconds(_scheduler.now)

            def drain() -> None:
                """Send what the clock allows; arm the timer for the next item."""
                if state.draining:
                    return  # re-entered from inside on_next: the loop below goes on
                state.draining = True
                try:
                    while queue and not state.stopped:
                        item, seconds = queue[0]
                        if seconds > 0:
                            t = now()
                            if state.play_end is not None and state.play_end - t > lead + _EPSILON:
                                delay = timedelta(seconds=state.play_end - t - lead)
                                timer.disposable = _scheduler.schedule_relative(delay, on_timer)
                                return
                            start = t if state.play_end is None else max(state.play_end, t)
                            state.play_end = start + seconds
                        queue.popleft()
                        observer.on_next(item)
                    if state.completed and not state.stopped:
                        state.stopped = True
                        observer.on_completed()
                finally:
                    state.draining = False

            def on_timer(_: abc.SchedulerBase, __: Any = None) -> None:
                with lock:
                    drain()

            def on_next(item: _T) -> None:
                with lock:
                    if state.stopped:
                        return
                    try:
                        seconds = float(duration(item))
                    except Exception as exc:  # forwarded to the observer
                        on_error(exc)
                        return
                    queue.append((item, seconds if seconds > 0 else 0.0))  # NaN > 0 is False
                    if len(queue) == 1:  # otherwise an earlier item is waiting (timer armed)
                        drain()

            def on_error(exc: Exception) -> None:
                with lock:
                    if state.stopped:
                        return
                    state.stopped = True
                    queue.clear()
                    timer.dispose()
                    observer.on_error(exc)

            def on_completed() -> None:
                with lock:
                    if state.stopped:
                        return
                    state.completed = True
                    if not queue:
                        drain()

            def on_reset(_: Any) -> None:
                with lock:
                    if state.stopped:
                        return
                    state.play_end = None
                    timer.disposable = None
                    drain()

            def dispose() -> None:
                with lock:
                    state.stopped = True
                    queue.clear()  # barge-in: nothing queued leaves after this

            resets = reset.subscribe(on_reset, on_error, scheduler=scheduler_) if reset is not None else None
            subscription = source.subscribe(on_next, on_error, on_completed, scheduler=scheduler_)
            parts = [subscription, timer, Disposable(dispose)]
            if resets is not None:
                parts.append(resets)
            return CompositeDisposable(*parts)

        return Observable(subscribe)

    return _pace


class _State:
    """Mutable per-subscription state of :func:`pace`."""

    __slots__ = ("completed", "draining", "play_end", "stopped")

    def __init__(self) -> None:
        self.play_end: float | None = None  # when the audio sent so far ends playing
        self.completed = False  # the source completed; forward it once the queue is empty
        self.stopped = False  # terminated or disposed
        self.draining = False


def _identity(source: Observable[_T]) -> Observable[_T]:
    return source
