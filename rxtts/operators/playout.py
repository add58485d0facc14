"""``playout(clock)``: pace a turn's audio for a sink that plays in real time.

A browser behind a WebSocket or a telephony socket plays what it receives at 1x; the
server sends audio faster than that. Forwarding it all at once would buffer seconds of
speech on the far side, which a barge-in can no longer take back. ``playout`` keeps at
most ``max_lead_seconds`` of audio ahead of the listener (the clock's position for the
turn) and holds the rest here, where a barge-in drops it at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TypeVar

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SerialDisposable
from reactivex.notification import Notification, OnCompleted, OnError, OnNext
from reactivex.scheduler import TimeoutScheduler

from rxtts.audio.clock import EPSILON, PlaybackClock, TurnKey, learn_key
from rxtts.events import AudioChunk, Interrupted

T = TypeVar("T")

MIN_WAIT = 0.001
"""Shortest re-check delay (seconds): float noise never busy-loops the scheduler."""


def playout(
    clock: PlaybackClock,
    max_lead_seconds: float = 1.0,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[T]], Observable[T]]:
    """Forward ``AudioChunk`` s so at most ``max_lead_seconds`` are ahead of the listener.

    Each forwarded chunk is registered on ``clock`` (``clock.queued``: the far side plays
    it from now on); a chunk waits while ``forwarded - clock.position(turn) + its
    duration`` would exceed the lead (one chunk always goes when nothing is ahead, however
    long it is). Other events, completion and errors keep their place in the stream,
    behind the audio before them. With 0.5 s chunks arriving together and a 1 s lead::

        events:  -(a1 a2 a3 a4 c S|)
        result:  -(a1 a2)----a3----a4 c S|        (a3 at +0.5 s, a4 at +1.0 s)

    Barge-in: disposal or an :class:`~rxtts.events.Interrupted` event drops the held audio
    at once and calls ``clock.stop(turn)``; ``Interrupted`` (and held non-audio events)
    are forwarded immediately, later audio of the turn is dropped::

        events:  -(a1 a2 a3 a4)--I--|
        result:  -(a1 a2)--------I--|             (a3, a4 dropped; clock stopped)

    Args:
        clock: the listener's clock, usually a :class:`~rxtts.audio.clock.SimulatedClock`
            standing in for the far side's playback.
        max_lead_seconds: audio allowed ahead of the listener (> 0).
        scheduler: schedules the waits; default the subscribe scheduler, else a timeout
            scheduler.
    """
    if max_lead_seconds <= 0:
        raise ValueError(f"max_lead_seconds must be > 0, got {max_lead_seconds}")

    def _playout(source: Observable[T]) -> Observable[T]:
        def subscribe(
            observer: abc.ObserverBase[T], scheduler_: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            _scheduler = scheduler or scheduler_ or TimeoutScheduler.singleton()
            held: deque[Notification[T]] = deque()
            timer = SerialDisposable()
            key: TurnKey | None = None
            forwarded = 0.0
            ended = False
            cut = False

            def turn() -> TurnKey:
                return key or (None, None)

            def wait_for(chunk: AudioChunk) -> float:
                """Seconds until ``chunk`` fits in the lead (0: send now)."""
                lead = forwarded - clock.position(turn())
                if lead <= EPSILON:
                    return 0.0  # nothing ahead of the listener: always send
                return max(0.0, lead + chunk.duration - max_lead_seconds)

            def deliver(item: Notification[T]) -> None:
                nonlocal ended
                if isinstance(item, OnNext):
                    observer.on_next(item.value)
                elif isinstance(item, OnError):
                    ended = True
                    observer.on_error(item.exception)
                elif isinstance(item, OnCompleted):
                    ended = True
                    observer.on_completed()

            def drain(_: abc.SchedulerBase | None = None, __: object = None) -> None:
                nonlocal forwarded
                while held and not ended:
                    item = held[0]
                    value = item.value if isinstance(item, OnNext) else None
                    if isinstance(value, AudioChunk):
                        wait = wait_for(value)
                        if wait > EPSILON:
                            timer.disposable = _scheduler.schedule_relative(max(wait, MIN_WAIT), drain)
                            return
                        forwarded += value.duration
                        clock.queued(turn(), value.duration)
                    held.popleft()
                    deliver(item)

            def barge_in() -> None:
                nonlocal cut
                cut = True
                timer.disposable = Disposable()
                clock.stop(turn())  # rule: the held lead is dropped, the clock freezes
                kept = [n for n in held if not (isinstance(n, OnNext) and isinstance(n.value, AudioChunk))]
                held.clear()
                held.extend(kept)

            def on_next(event: T) -> None:
                nonlocal key
                key = key or learn_key(event)
                if isinstance(event, Interrupted) and not cut:
                    barge_in()
                if cut and isinstance(event, AudioChunk):
                    return  # the turn was cut: its late audio is never played
                held.append(OnNext(event))
                drain()

            def on_error(error: Exception) -> None:
                held.append(OnError(error))
                drain()

            def on_completed() -> None:
                held.append(OnCompleted())
                drain()

            def dispose() -> None:
                if not ended and not cut:
                    barge_in()
                held.clear()

            sub = source.subscribe(on_next, on_error, on_completed, scheduler=scheduler_)
            return CompositeDisposable(sub, timer, Disposable(dispose))

        return Observable(subscribe)

    return _playout


__all__ = ["playout"]
