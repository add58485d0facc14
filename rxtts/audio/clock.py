"""Playback clocks: how much of each turn's audio the listener has actually heard.

A *turn* is keyed by ``(context_id, turn)`` (:data:`TurnKey`, read off every event with
:func:`turn_key`; see :mod:`rxtts.events`). A :class:`PlaybackClock` answers one
question per turn, :meth:`~PlaybackClock.position`: seconds of that turn's audio
played so far. Sinks tell it what they queued (:meth:`~PlaybackClock.queued`) and
barge-in stops a turn (:meth:`~PlaybackClock.stop`: the position freezes, the queued
rest is dropped, later audio of the turn is ignored).

Two implementations:

- :class:`rxtts.audio.playback.Player`: the device's truth, frames the audio callback
  actually pulled for the turn (``queued`` is a no-op: the player counts what it is fed).
- :class:`SimulatedClock`: a real-time simulation for files, tests and network sinks.
  Audio starts playing when it is queued (plus ``start_delay``, e.g. a jitter buffer or
  device latency) and plays at 1x; a turn that runs dry waits (underrun) and resumes
  when more audio is queued. Time is the scheduler's ``now``, so a
  :class:`reactivex.testing.TestScheduler` runs it in virtual time and the default
  scheduler in wall time.

Both are also :class:`~rxtts.operators.sinks.AudioSink` s (``on_next`` queues an
``AudioChunk`` of its turn, ``finish``, ``stop()`` drops every turn's queued audio), so
``play(clock)`` drives them like a speaker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeAlias, runtime_checkable

from rxtts.audio.silence import DEFAULT_THRESHOLD_DBFS, first_non_silent_sample

if TYPE_CHECKING:
    from reactivex.abc import SchedulerBase

TurnKey: TypeAlias = tuple[str | None, int | None]
"""``(context_id, turn)``: which turn of which context a piece of audio belongs to."""

EPSILON = 1e-9
"""Seconds below which two clock readings are equal (float noise of sums of durations)."""


def turn_key(event: object) -> TurnKey:
    """The :data:`TurnKey` of an event (``(None, None)`` for objects without identity)."""
    context_id = getattr(event, "context_id", None)
    turn = getattr(event, "turn", None)
    return (
        context_id if isinstance(context_id, str) else None,
        turn if isinstance(turn, int) else None,
    )


def learn_key(event: object) -> TurnKey | None:
    """The turn key of an event that names its turn, else ``None``.

    Operators over one turn take their key from the first event with a ``turn`` (some
    events, e.g. an ``Interrupted`` ack, belong to no turn).
    """
    return turn_key(event) if getattr(event, "turn", None) is not None else None


@runtime_checkable
class PlaybackClock(Protocol):
    """Per-turn playback position (see the module docstring)."""

    def position(self, key: TurnKey) -> float:
        """Seconds of the turn's audio played so far (frozen after :meth:`stop`)."""
        ...

    def remaining(self, key: TurnKey) -> float:
        """Seconds of the turn's audio queued and not yet played (0 after :meth:`stop`)."""
        ...

    def queued(self, key: TurnKey, seconds: float) -> None:
        """A sink queued ``seconds`` more audio of the turn for playback."""
        ...

    def stop(self, key: TurnKey) -> None:
        """Barge-in for one turn: the position freezes, queued audio is dropped."""
        ...


# -- the simulation ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Track:
    """One turn on a :class:`SimulatedClock`: a run of contiguous audio (a segment)."""

    base: float = 0.0
    """Position at the start of the current segment (audio of earlier segments)."""
    start: float = 0.0
    """Clock time the current segment starts playing."""
    length: float = 0.0
    """Seconds of audio in the current segment."""
    stopped_at: float | None = None
    """Position frozen by :meth:`SimulatedClock.stop`, else ``None``."""
    audible_at: float | None = None
    """Clock time the first non-silent sample plays (TTFA), once known."""

    def position(self, now: float) -> float:
        if self.stopped_at is not None:
            return self.stopped_at
        return self.base + min(max(0.0, now - self.start), self.length)

    def forget_unplayed_sound(self, now: float) -> None:
        """A first sound that was dropped before it played was never audible (TTFA)."""
        if self.audible_at is not None and self.audible_at > now:
            self.audible_at = None

    def end(self) -> float:
        """Clock time the queued audio finishes playing."""
        return self.start + self.length


class SimulatedClock:
    """A 1x real-time playback simulation keyed by turn (see the module docstring).

    Args:
        scheduler: source of ``now`` (virtual time with a ``TestScheduler``); default a
            wall-clock scheduler.
        start_delay: seconds between queueing audio into an idle turn and its first
            sample playing (output latency); applies again after an underrun.
    """

    def __init__(self, scheduler: SchedulerBase | None = None, start_delay: float = 0.0) -> None:
        if start_delay < 0:
            raise ValueError(f"start_delay must be >= 0, got {start_delay}")
        if scheduler is None:
            from reactivex.scheduler import TimeoutScheduler

            scheduler = TimeoutScheduler.singleton()
        self.scheduler = scheduler
        """The scheduler whose ``now`` is this clock's time."""
        self.start_delay = start_delay
        """Output latency of every (re)start."""
        self._tracks: dict[TurnKey, _Track] = {}

    def now(self) -> float:
        """The clock's time in seconds (the scheduler's ``now``)."""
        return self.scheduler.to_seconds(self.scheduler.now)

    def _track(self, key: TurnKey) -> _Track:
        track = self._tracks.get(key)
        if track is None:
            track = self._tracks[key] = _Track(start=self.now())
        return track

    # -- PlaybackClock -------------------------------------------------------------------

    def position(self, key: TurnKey) -> float:
        """Seconds of the turn played by now; 0 for unknown turns."""
        track = self._tracks.get(key)
        return 0.0 if track is None else track.position(self.now())

    def remaining(self, key: TurnKey) -> float:
        """Seconds of the turn still to play; 0 once stopped."""
        track = self._tracks.get(key)
        if track is None or track.stopped_at is not None:
            return 0.0
        return max(0.0, track.base + track.length - track.position(self.now()))

    def queued(self, key: TurnKey, seconds: float) -> None:
        """Queue ``seconds`` of the turn: they play after what is queued, at 1x.

        Audio of a stopped turn is dropped: a barge-in is final.
        """
        self._enqueue(key, seconds)

    def _enqueue(self, key: TurnKey, seconds: float) -> float | None:
        """Queue audio; the clock time it starts playing, or ``None`` if dropped."""
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
        track = self._track(key)
        if track.stopped_at is not None:
            return None
        now = self.now()
        if (track.length == 0.0 and track.base == 0.0) or now > track.end() + EPSILON:
            # Idle or ran dry (underrun): a new segment starts after the output latency.
            track.base += track.length
            track.start = now + self.start_delay
            track.length = 0.0
        begins = track.end()
        track.length += seconds
        return begins

    def stop(self, key: TurnKey | None = None) -> None:
        """Freeze the turn's position now; drop what is queued and whatever comes later.

        Without a key (``AudioSink.stop``, e.g. from ``play(clock)`` on barge-in) every
        turn's queued audio is dropped now, like ``Player.stop()``; audio queued later
        still plays (only ``stop(key)`` makes a turn's cut final).
        """
        if key is None:
            now = self.now()
            for track in self._tracks.values():
                if track.stopped_at is None:
                    track.base = track.position(now)
                    track.start = now
                    track.length = 0.0
                    track.forget_unplayed_sound(now)
            return
        track = self._track(key)
        if track.stopped_at is None:
            track.stopped_at = track.position(self.now())
            track.forget_unplayed_sound(self.now())

    def stopped(self, key: TurnKey) -> bool:
        """Whether :meth:`stop` was called for the turn."""
        track = self._tracks.get(key)
        return track is not None and track.stopped_at is not None

    # -- as an AudioSink (rxtts.operators.sinks.play) --------------------------------------

    def on_next(self, value: object) -> None:
        """Queue an ``AudioChunk``'s duration for its turn and note its first sound.

        Other events are ignored, like :class:`~rxtts.audio.playback.Player` does.
        """
        duration = getattr(value, "duration", None)
        samples = getattr(value, "samples", None)
        rate = getattr(value, "sample_rate", None)
        if not isinstance(duration, float) or samples is None or not isinstance(rate, int):
            return
        key = turn_key(value)
        begins = self._enqueue(key, duration)
        track = self._tracks[key]
        if track.audible_at is None and begins is not None:
            offset = first_non_silent_sample(samples, DEFAULT_THRESHOLD_DBFS)
            if offset is not None:
                track.audible_at = begins + offset / rate

    def finish(self) -> None:
        """End of a stream: queued audio plays out (nothing to do in a simulation)."""

    # -- TTFA ----------------------------------------------------------------------------

    def first_audible_at(self, key: TurnKey) -> float | None:
        """Clock time the turn's first non-silent sample plays, if it has been queued.

        Only audio queued through :meth:`on_next` (which sees the samples) counts.
        """
        track = self._tracks.get(key)
        return None if track is None else track.audible_at


def ttfa(clock: SimulatedClock, key: TurnKey, started_at: float) -> float | None:
    """Time to first *audible* audio of a turn on ``clock``.

    The first audible sample is the first non-silent sample (threshold
    :data:`~rxtts.audio.silence.DEFAULT_THRESHOLD_DBFS`) at the moment it plays, i.e.
    when the position passes it. ``started_at`` is in clock time (:meth:`SimulatedClock.now`
    when the turn's first text was sent). ``None`` until such a sample was queued.
    """
    at = clock.first_audible_at(key)
    return None if at is None else max(0.0, at - started_at)


__all__ = [
    "EPSILON",
    "PlaybackClock",
    "SimulatedClock",
    "TurnKey",
    "learn_key",
    "ttfa",
    "turn_key",
]
