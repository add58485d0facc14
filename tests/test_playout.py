"""playout(clock): marble tests in virtual time with a SimulatedClock on a TestScheduler."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from reactivex import operators as ops
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.recorded import Recorded

from rxtts.audio.clock import SimulatedClock, TurnKey
from rxtts.events import (
    AudioChunk,
    ChunkComplete,
    GenerationStarted,
    Heard,
    Interrupted,
    SessionClosed,
    WordTimestamp,
    WordTimestamps,
)
from rxtts.operators import heard, playout

SR = 1000
KEY: TurnKey = (None, 0)
on_next = ReactiveTest.on_next
on_completed = ReactiveTest.on_completed
on_error = ReactiveTest.on_error


def audio(ms: int, index: int) -> AudioChunk:
    return AudioChunk(np.full(ms, 3000, "<i2").tobytes(), SR, "pcm_s16le", index, 0, turn=0)


def run(
    messages: list[Recorded[Any]],
    max_lead: float = 1.0,
    dispose_at: float | None = None,
    start_delay: float = 0.0,
) -> tuple[list[tuple[float, str]], SimulatedClock, TestScheduler]:
    s = TestScheduler()
    clock = SimulatedClock(s, start_delay=start_delay)
    source = s.create_hot_observable(*messages)
    observer = s.create_observer()
    sub = source.pipe(playout(clock, max_lead)).subscribe(observer, scheduler=s)
    if dispose_at is not None:
        s.schedule_absolute(dispose_at, lambda _s, _st: sub.dispose())
    s.start()
    return [(round(m.time, 6), label(m)) for m in observer.messages], clock, s


def label(message: Recorded[Any]) -> str:
    n = message.value
    if n.kind != "N":
        return n.kind
    v = n.value
    return f"a{v.index}" if isinstance(v, AudioChunk) else type(v).__name__


def clock_position_at(t: float, start: float = 1.0) -> float:
    """Position of a clock fed without gaps from ``start`` on."""
    return max(0.0, t - start)


def fast_turn(at: float = 1.0, chunks: int = 4, ms: int = 500) -> list[Recorded[Any]]:
    msgs = [on_next(at, audio(ms, i)) for i in range(chunks)]
    return [*msgs, on_next(at, ChunkComplete(0, chunks * ms / 1000, 1.0, turn=0)), on_completed(at)]


def test_audio_faster_than_real_time_keeps_at_most_the_lead_ahead() -> None:
    got, _, _ = run(fast_turn())
    assert got == [
        (1.0, "a0"),
        (1.0, "a1"),
        (1.5, "a2"),
        (2.0, "a3"),
        (2.0, "ChunkComplete"),  # other events keep their place behind the audio
        (2.0, "C"),
    ]


def test_lead_is_measured_against_the_listener_position() -> None:
    got, _, _ = run(fast_turn(chunks=6, ms=300), max_lead=0.5)
    audio_times = [t for t, what in got if what.startswith("a")]
    assert audio_times == [1.0, 1.1, 1.4, 1.7, 2.0, 2.3]
    # after every forward the audio ahead of the listener is at most the lead
    for i, t in enumerate(audio_times):
        assert (i + 1) * 0.3 - clock_position_at(t) <= 0.5 + 1e-9


def test_audio_slower_than_real_time_passes_at_once() -> None:
    msgs = [on_next(1.0 + i, audio(500, i)) for i in range(3)] + [on_completed(3.5)]
    got, _, _ = run(msgs)
    assert got == [(1.0, "a0"), (2.0, "a1"), (3.0, "a2"), (3.5, "C")]


def test_a_chunk_longer_than_the_lead_still_goes_when_nothing_is_ahead() -> None:
    msgs = [on_next(1.0, audio(3000, 0)), on_next(1.0, audio(500, 1)), on_completed(1.0)]
    got, _, _ = run(msgs, max_lead=1.0)
    assert got == [(1.0, "a0"), (3.5, "a1"), (3.5, "C")]


def test_start_delay_of_the_far_side_delays_the_pacing() -> None:
    got, _, _ = run(fast_turn(), start_delay=0.2)
    assert [t for t, what in got if what.startswith("a")] == [1.0, 1.0, 1.7, 2.2]


def test_disposal_drops_the_held_lead_and_stops_the_clock() -> None:
    got, clock, _ = run(fast_turn(chunks=6), dispose_at=1.7)
    assert got == [(1.0, "a0"), (1.0, "a1"), (1.5, "a2")]
    assert clock.position(KEY) == pytest.approx(0.7)
    assert clock.stopped(KEY) and clock.remaining(KEY) == 0.0


def test_interrupted_drops_held_audio_and_is_forwarded_at_once() -> None:
    msgs = [on_next(1.0, GenerationStarted(0, "x", turn=0))]
    msgs += [on_next(1.0, audio(500, i)) for i in range(4)]
    msgs += [on_next(1.2, Interrupted()), on_next(1.3, audio(500, 9)), on_completed(1.3)]
    got, clock, _ = run(msgs)
    assert got == [
        (1.0, "GenerationStarted"),
        (1.0, "a0"),
        (1.0, "a1"),
        (1.2, "Interrupted"),
        (1.3, "C"),
    ]
    assert clock.position(KEY) == pytest.approx(0.2)


def test_errors_keep_their_place_behind_the_audio() -> None:
    boom = RuntimeError("x")
    msgs = [on_next(1.0, audio(500, i)) for i in range(3)] + [on_error(1.0, boom)]
    got, _, _ = run(msgs)
    assert got == [(1.0, "a0"), (1.0, "a1"), (1.5, "a2"), (1.5, "E")]


def test_completion_after_playout_does_not_stop_the_clock() -> None:
    _, clock, _ = run(fast_turn())
    assert not clock.stopped(KEY)
    assert clock.position(KEY) == pytest.approx(2.0)  # everything played out by the end


def test_invalid_lead_is_refused() -> None:
    with pytest.raises(ValueError, match="max_lead_seconds"):
        playout(SimulatedClock(TestScheduler()), 0)


def test_playout_then_heard_then_take_until_on_a_network_listener() -> None:
    # A browser plays what playout forwards; the user talks at 2.3 (position 1.3).
    s = TestScheduler()
    clock = SimulatedClock(s)
    text = "one two three four"
    words = tuple(
        WordTimestamp(w, 500 * i, 500 * (i + 1), text.index(w), text.index(w) + len(w))
        for i, w in enumerate(text.split())
    )
    msgs = [on_next(1.0, GenerationStarted(0, text, turn=0))]
    msgs += [on_next(1.0, audio(500, i)) for i in range(4)]
    msgs += [
        on_next(1.0, WordTimestamps(words, 0, turn=0)),
        on_next(1.0, SessionClosed(turn=0)),
        on_completed(1.0),
    ]
    results: list[Heard] = []
    user = s.create_hot_observable(on_next(2.3, "user"))
    observer = s.create_observer()
    s.create_hot_observable(*msgs).pipe(
        playout(clock), heard(clock, text, on_heard=results.append), ops.take_until(user)
    ).subscribe(observer, scheduler=s)
    s.start()
    [h] = results
    assert (h.heard_text, h.cut_word, h.reason) == ("one two", "three", "disposed")
    sent = [m for m in observer.messages if m.value.kind == "N" and isinstance(m.value.value, AudioChunk)]
    assert [round(m.time, 6) for m in sent] == [1.0, 1.0, 1.5, 2.0]  # a3 went at 2.0, before the cut
    assert clock.position(KEY) == pytest.approx(1.3)
