"""Tests of ``pace()``: audio leaves at most ``max_lead_seconds`` ahead of playback."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

import pytest
import reactivex
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.subject import Subject
from reactivex.testing import ReactiveTest, TestScheduler

from rxtts.operators import EncodedAudio, pace
from rxtts.operators.pace import audio_seconds

on_next = ReactiveTest.on_next
on_completed = ReactiveTest.on_completed
on_error = ReactiveTest.on_error


@dataclass(frozen=True)
class Frame:
    name: str
    seconds: float


@dataclass(frozen=True)
class Marker:
    name: str


def run(
    events: list[tuple[float, Any]],
    lead: float | None,
    end: float = 1000,
    reset: list[float] | None = None,
    disposed: float = 1000,
) -> list[Any]:
    """Virtual time: one tick is one second (TestScheduler clocks count seconds)."""
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(*[on_next(t, v) for t, v in events], on_completed(end))
    resets = None
    if reset is not None:
        resets = scheduler.create_hot_observable(*[on_next(t, None) for t in reset])
    return scheduler.start(lambda: xs.pipe(pace(lead, reset=resets)), disposed=disposed).messages


A, B, C, D = Frame("a", 2.0), Frame("b", 1.0), Frame("c", 1.0), Frame("d", 3.0)


def test_first_audio_passes_at_once_then_the_lead_is_bounded() -> None:
    messages = run([(210, A), (211, B), (212, C), (213, D)], lead=1.0)
    assert messages == [
        on_next(210, A),  # the clock starts here: a plays 210-212
        on_next(211, B),  # 212 - 211 = 1 <= 1: b at once, plays 212-213
        on_next(212, C),  # waits: 213 - 212 = 1 at 212
        on_next(213, D),  # c ends at 214: d leaves at 213
        on_completed(1000),
    ]


def test_a_burst_is_spread_over_playback_time() -> None:
    frames = [Frame(str(i), 1.0) for i in range(5)]
    messages = run([(210, f) for f in frames], lead=1.0)
    assert messages == [
        on_next(210, frames[0]),
        on_next(210, frames[1]),  # 1 s ahead is allowed
        on_next(211, frames[2]),
        on_next(212, frames[3]),
        on_next(213, frames[4]),
        on_completed(1000),
    ]


def test_non_audio_items_keep_their_place_in_the_queue() -> None:
    m1, m2 = Marker("started"), Marker("done")
    messages = run([(210, m1), (210, Frame("x", 3.0)), (210, Frame("y", 1.0)), (210, m2)], lead=0.5)
    assert messages == [
        on_next(210, m1),  # not audio, nothing before it: at once
        on_next(210, Frame("x", 3.0)),
        on_next(212.5, Frame("y", 1.0)),  # 213 - 212.5 = 0.5
        on_next(212.5, m2),  # right behind y, not before it
        on_completed(1000),
    ]


def test_completion_waits_for_the_queue() -> None:
    messages = run([(210, Frame("x", 5.0)), (210, Frame("y", 1.0))], lead=1.0, end=211)
    assert messages == [on_next(210, Frame("x", 5.0)), on_next(214, Frame("y", 1.0)), on_completed(214)]


def test_a_stall_restarts_the_clock() -> None:
    # The client's buffer ran dry between 212 and 300: the burst after the stall does
    # not "catch up" on the gap, it leads by 1 s again.
    messages = run(
        [(210, Frame("x", 2.0)), (300, Frame("y", 1.0)), (300, Frame("z", 1.0)), (300, D)], lead=1.0
    )
    assert [m.time for m in messages[:-1]] == [210, 300, 300, 301]


def test_error_passes_at_once_and_drops_the_queue() -> None:
    scheduler = TestScheduler()
    boom = RuntimeError("engine failed")
    xs = scheduler.create_hot_observable(on_next(210, Frame("x", 5.0)), on_next(210, B), on_error(211, boom))
    messages = scheduler.start(lambda: xs.pipe(pace(1.0))).messages
    assert messages == [on_next(210, Frame("x", 5.0)), on_error(211, boom)]


def test_dispose_drops_the_queue_at_once() -> None:
    messages = run([(210, Frame("x", 5.0)), (210, B), (210, C)], lead=1.0, disposed=212)
    assert messages == [on_next(210, Frame("x", 5.0))]  # b was due at 214: never sent


def test_reset_restarts_the_clock_for_a_new_turn() -> None:
    messages = run([(210, Frame("x", 10.0)), (211, B), (212, C)], lead=1.0, reset=[212])
    assert messages == [
        on_next(210, Frame("x", 10.0)),
        on_next(212, B),  # the reset at 212: b leaves as a first audio item
        on_next(212, C),  # b ends at 213: 1 s lead, at once
        on_completed(1000),
    ]


@pytest.mark.parametrize("lead", [None, math.inf])
def test_unpaced_pass_through(lead: float | None) -> None:
    messages = run([(210, Frame("x", 100.0)), (210, B)], lead=lead, end=211)
    assert messages == [on_next(210, Frame("x", 100.0)), on_next(210, B), on_completed(211)]


def test_zero_lead_sends_audio_as_it_plays() -> None:
    messages = run([(210, A), (210, B)], lead=0.0)
    assert [m.time for m in messages] == [210, 212, 1000]


@pytest.mark.parametrize("bad", [-1.0, math.nan])
def test_invalid_lead_raises(bad: float) -> None:
    with pytest.raises(ValueError, match="max_lead_seconds"):
        pace(bad)


def test_duration_errors_are_forwarded_and_bad_durations_count_as_zero() -> None:
    errors: list[Exception] = []
    reactivex.of(1).pipe(pace(1.0, duration=lambda _: 1 / 0)).subscribe(on_error=errors.append)
    assert isinstance(errors[0], ZeroDivisionError)
    got: list[int] = []
    reactivex.of(1, 2, 3).pipe(pace(0.0, duration=lambda _: math.nan)).subscribe(got.append)
    assert got == [1, 2, 3]


def test_subscribe_scheduler_is_used_when_none_given() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(210, A), on_next(210, B))
    messages = scheduler.start(lambda: xs.pipe(pace(0.5))).messages
    assert [m.time for m in messages] == [210, 211.5]


def test_default_duration_reads_seconds_or_samples() -> None:
    assert audio_seconds(Frame("x", 0.25)) == 0.25
    audio = EncodedAudio(b"\0\0" * 2400, "pcm_s16le", 24000, 2400)
    assert audio_seconds(audio) == 0.1
    assert audio_seconds(Marker("m")) == 0.0
    assert audio_seconds("text") == 0.0


def test_real_event_loop_bounds_the_lead() -> None:
    """An AsyncIOScheduler on a real loop: 30 frames of 20 ms arrive at once."""

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        scheduler = AsyncIOScheduler(loop)
        subject: Subject[Frame] = Subject()
        sent: list[float] = []
        done = asyncio.Event()
        subject.pipe(pace(0.1, scheduler=scheduler)).subscribe(
            lambda _: sent.append(loop.time()), on_completed=done.set
        )
        for i in range(30):
            subject.on_next(Frame(str(i), 0.02))
        subject.on_completed()
        await asyncio.wait_for(done.wait(), 10)
        return sent

    sent = asyncio.run(main())
    t0 = sent[0]
    assert len(sent) == 30
    for i, t in enumerate(sent):
        lead = 0.02 * i - (t - t0)  # audio sent before frame i minus elapsed playback
        assert lead <= 0.1 + 0.01, (i, lead)  # never ahead by more than the bound
    # ... and not held much longer than needed (a loaded machine may add delay).
    assert sent[-1] - t0 >= 0.02 * 29 - 0.1 - 0.01
    assert sent[-1] - t0 < 0.02 * 29 - 0.1 + 2.0


def test_docstring_marble() -> None:
    a, b, c, m = Frame("a", 2.0), Frame("b", 1.0), Frame("c", 1.0), Marker("m")
    messages = run([(210, a), (210, b), (210, c), (210, m)], lead=1.0)
    assert messages == [
        on_next(210, a),
        on_next(211, b),
        on_next(212, c),
        on_next(212, m),
        on_completed(1000),
    ]
