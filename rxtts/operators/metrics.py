"""Per-turn latency metrics: TTFB, TTFA, audio seconds, chunk and frame counts.

TTFB is the time from the turn's first sent text to its first audio frame; TTFA is the
time to the first *non-silent* sample, i.e. the receive time of the frame holding it plus
the sample's offset in that frame (engines often lead with silence). Both are measured on
this side of the wire with :func:`time.monotonic` (``AudioChunk.at``).

:class:`MetricsAccumulator` is the pure core; the streaming session feeds it directly
(one object per turn, no extra Rx layer per frame) and :func:`turn_metrics` is the same
logic as an operator for any event stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from reactivex import Observable, abc

from rxtts.audio.silence import DEFAULT_THRESHOLD_DBFS, first_non_silent_sample
from rxtts.events import AudioChunk, ChunkComplete, SessionClosed, TtsEvent, TurnMetrics


@dataclass(slots=True)
class MetricsAccumulator:
    """Collects one turn's metrics from its events; :meth:`result` builds the event."""

    started_at: float | None = None
    """Monotonic time the first text was sent (``None`` until then)."""
    threshold_dbfs: float = DEFAULT_THRESHOLD_DBFS
    """Level above which a sample counts as sound (for TTFA)."""
    first_audio_at: float | None = None
    """Receive time of the first audio frame."""
    first_sound_at: float | None = None
    """Time of the first non-silent sample."""
    audio_seconds: float = 0.0
    """Seconds of audio received."""
    chunk_count: int = 0
    """``chunk_complete`` events seen."""
    frame_count: int = 0
    """Audio frames seen."""

    def text_sent(self, at: float | None = None) -> None:
        """Mark the first text of the turn as sent (later calls are ignored)."""
        if self.started_at is None:
            self.started_at = time.monotonic() if at is None else at

    def on_event(self, event: TtsEvent) -> None:
        """Account for one event of the turn."""
        if isinstance(event, AudioChunk):
            self._audio(event)
        elif isinstance(event, ChunkComplete):
            self.chunk_count += 1

    def _audio(self, chunk: AudioChunk) -> None:
        self.frame_count += 1
        self.audio_seconds += chunk.duration
        if self.first_audio_at is None:
            self.first_audio_at = chunk.at
        if self.first_sound_at is None:
            offset = first_non_silent_sample(chunk.samples, self.threshold_dbfs)
            if offset is not None:
                self.first_sound_at = chunk.at + offset / chunk.sample_rate

    def _since_start(self, at: float | None) -> float | None:
        if at is None or self.started_at is None:
            return None
        return max(0.0, at - self.started_at)

    def result(self, context_id: str | None = None, turn: int | None = None) -> TurnMetrics:
        """The :class:`TurnMetrics` event of what was seen so far (of ``turn``)."""
        return TurnMetrics(
            ttfb=self._since_start(self.first_audio_at),
            ttfa=self._since_start(self.first_sound_at),
            audio_seconds=round(self.audio_seconds, 6),
            chunk_count=self.chunk_count,
            frame_count=self.frame_count,
            context_id=context_id,
            turn=turn,
        )


def turn_metrics(
    started_at: Callable[[], float | None] | None = None,
    threshold_dbfs: float = DEFAULT_THRESHOLD_DBFS,
) -> Callable[[Observable[TtsEvent]], Observable[TtsEvent]]:
    """Insert a :class:`TurnMetrics` event before every ``SessionClosed``.

    Times are measured from ``started_at()`` (read at the turn's first event, e.g. the
    send time of its first text), else from the moment of subscription (or of the
    previous ``SessionClosed`` for later turns)::

        events:  -g--a--a--c--S-|
        result:  -g--a--a--c--MS-|      M = TurnMetrics(ttfb, ttfa, ...)

    Args:
        started_at: returns the monotonic time the turn's first text was sent.
        threshold_dbfs: level above which a sample counts as sound (TTFA).

    Returns:
        An operator passing every event through, adding the metrics events.
    """

    def _turn_metrics(source: Observable[TtsEvent]) -> Observable[TtsEvent]:
        def subscribe(
            observer: abc.ObserverBase[TtsEvent], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            acc = MetricsAccumulator(threshold_dbfs=threshold_dbfs)
            acc.text_sent()
            fresh = True

            def on_next(event: TtsEvent) -> None:
                nonlocal acc, fresh
                if fresh and started_at is not None:
                    at = started_at()
                    if at is not None:
                        acc.started_at = at
                fresh = False
                acc.on_event(event)
                if isinstance(event, SessionClosed):
                    observer.on_next(acc.result(event.context_id))
                    acc = MetricsAccumulator(threshold_dbfs=threshold_dbfs)
                    acc.text_sent()
                    fresh = True
                observer.on_next(event)

            return source.subscribe(on_next, observer.on_error, observer.on_completed, scheduler=scheduler)

        return Observable(subscribe)

    return _turn_metrics


__all__ = ["MetricsAccumulator", "turn_metrics"]
