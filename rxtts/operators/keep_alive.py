"""Keep idle multi-context contexts alive: empty text before the inactivity timeout fires.

A multi-context server closes a context that has seen no text for ``inactivity_timeout``
seconds (20 s by default, PROTOCOL M-10) with ``context_timeout``. A context that is idle
but still wanted (a character waiting for its next line, an LLM that is thinking) is kept
open by sending ``{"text": "", "context_id": ...}``, which resets the timer and produces no
audio (PROTOCOL M-4).

- :func:`keep_alive` is the operator form for a text stream: it inserts
  :data:`KEEP_ALIVE` (``""``) whenever the stream has been silent for ``interval``.
- :func:`idle_ticks` is the timer underneath: it emits whenever its source has been
  silent for ``interval``; the multi-context session drives it with the frames it sends
  to one context (``MultiContextSession.hold``).
- :class:`KeepAlivePolicy` names the interval a session uses for the contexts it holds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, SerialDisposable
from reactivex.scheduler import TimeoutScheduler

__all__ = ["KEEP_ALIVE", "KeepAlivePolicy", "idle_ticks", "keep_alive"]

_T = TypeVar("_T")
_R = TypeVar("_R")

KEEP_ALIVE: Final = ""
"""The keep-alive token: empty text resets a context's idle timer (PROTOCOL M-4)."""


@dataclass(frozen=True, slots=True)
class KeepAlivePolicy:
    """How often a held context that sent nothing gets a keep-alive."""

    interval: float = 10.0
    """Seconds of silence on a context before an empty-text keep-alive is sent; keep it
    well under the session's ``inactivity_timeout`` (20 s by default)."""

    def __post_init__(self) -> None:
        if not self.interval > 0:
            raise ValueError(f"interval: must be > 0, got {self.interval}")

    @classmethod
    def for_timeout(cls, inactivity_timeout: float, fraction: float = 0.5) -> KeepAlivePolicy:
        """A policy that pings after ``fraction`` of ``inactivity_timeout`` seconds of silence."""
        if not 0 < fraction < 1:
            raise ValueError(f"fraction: must be in (0, 1), got {fraction}")
        return cls(inactivity_timeout * fraction)


def _on_idle(
    interval: float,
    idle_value: Callable[[int], _R],
    pass_items: bool,
    scheduler: abc.SchedulerBase | None,
) -> Callable[[Observable[Any]], Observable[Any]]:
    """Shared core: pass (or swallow) items, emit ``idle_value(n)`` after each silence."""
    if not interval > 0:
        raise ValueError(f"interval: must be > 0, got {interval}")

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(
            observer: abc.ObserverBase[Any], scheduler_: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            _scheduler = scheduler or scheduler_ or TimeoutScheduler.singleton()
            timer = SerialDisposable()
            lock = threading.RLock()
            ticks = 0
            done = False

            def tick(_: abc.SchedulerBase, __: Any = None) -> None:
                nonlocal ticks
                with lock:
                    if done:
                        return
                    n, ticks = ticks, ticks + 1
                    observer.on_next(idle_value(n))
                    arm()  # still idle: the next tick is another interval away

            def arm() -> None:
                timer.disposable = _scheduler.schedule_relative(interval, tick)

            def on_next(item: Any) -> None:
                with lock:
                    if done:
                        return
                    if pass_items:
                        observer.on_next(item)
                    arm()  # activity restarts the silence

            def on_error(error: Exception) -> None:
                nonlocal done
                with lock:
                    done = True
                    timer.dispose()
                    observer.on_error(error)

            def on_completed() -> None:
                nonlocal done
                with lock:
                    done = True
                    timer.dispose()
                    observer.on_completed()

            with lock:
                arm()
            subscription = source.subscribe(on_next, on_error, on_completed, scheduler=scheduler_)
            return CompositeDisposable(timer, subscription)

        return Observable(subscribe)

    return operator


def idle_ticks(
    interval: float, scheduler: abc.SchedulerBase | None = None
) -> Callable[[Observable[Any]], Observable[int]]:
    """Emit 0, 1, 2... each time the source has been silent for ``interval`` seconds.

    The silence is measured from subscription and from every source item; while the
    source stays silent a tick follows every ``interval``. Source items are not
    forwarded. Completes and errors with the source::

        source:  -a--------b-|
                   interval = 3
        result:  ----0--1----|

    Args:
        interval: seconds of silence per tick.
        scheduler: timer scheduler; default: the subscribe scheduler, else a
            :class:`~reactivex.scheduler.TimeoutScheduler`.

    Returns:
        An operator from any observable to its idle ticks.
    """
    return _on_idle(interval, lambda n: n, False, scheduler)


def keep_alive(
    interval: float, scheduler: abc.SchedulerBase | None = None
) -> Callable[[Observable[_T]], Observable[_T | str]]:
    """Insert :data:`KEEP_ALIVE` (``""``) into a text stream after each ``interval`` of silence.

    Meant for the token stream of one context (``multi.speak(ctx, tokens.pipe(keep_alive(5)))``):
    an LLM that thinks longer than the server's inactivity timeout no longer loses its
    context. Items pass through unchanged; ``k`` is ``""``::

        source:  -a--------b-|
                   interval = 3
        result:  -a--k--k--b-|

    Args:
        interval: seconds of silence before each keep-alive; keep it under the
            context's inactivity timeout.
        scheduler: timer scheduler; default: the subscribe scheduler, else a
            :class:`~reactivex.scheduler.TimeoutScheduler`.

    Returns:
        An operator passing the text through with keep-alive tokens added.
    """
    return _on_idle(interval, lambda _: KEEP_ALIVE, True, scheduler)
