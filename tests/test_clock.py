"""Playback clocks: SimulatedClock in virtual time, per-turn SampleQueue/Player positions."""

from __future__ import annotations

import sys
import types
from typing import Any, ClassVar

import numpy as np
import pytest
import reactivex
from reactivex.testing import TestScheduler

from rxtts.audio.clock import PlaybackClock, SimulatedClock, TurnKey, ttfa, turn_key
from rxtts.audio.playback import SampleQueue
from rxtts.events import AudioChunk, GenerationStarted
from rxtts.operators.sinks import play

SR = 1000
A: TurnKey = (None, 0)
B: TurnKey = ("ctx-b", 3)


def chunk(n: int, key: TurnKey = A, silent_lead: int = 0, index: int = 0) -> AudioChunk:
    samples = np.full(n, 8000, dtype="<i2")
    samples[:silent_lead] = 0
    return AudioChunk(samples.tobytes(), SR, "pcm_s16le", index, 0, context_id=key[0], turn=key[1])


def at(scheduler: TestScheduler, when: float, fn: Any) -> None:
    scheduler.schedule_absolute(when, lambda _s, _st: fn())


def readings(
    scheduler: TestScheduler, clock: SimulatedClock, key: TurnKey, times: list[float]
) -> list[float]:
    out: list[float] = []
    for t in times:
        at(scheduler, t, lambda: out.append(round(clock.position(key), 6)))
    return out


def test_simulated_clock_plays_from_queueing_at_1x_and_waits_when_dry() -> None:
    s = TestScheduler()
    clock = SimulatedClock(s)
    at(s, 1.0, lambda: clock.queued(A, 0.5))
    at(s, 1.2, lambda: clock.queued(A, 0.5))  # appended: plays right after the first
    at(s, 3.0, lambda: clock.queued(A, 0.25))  # after an underrun: starts at 3.0
    got = readings(s, clock, A, [0.5, 1.25, 1.9, 2.5, 3.1, 4.0])
    s.start()
    assert got == [0.0, 0.25, 0.9, 1.0, 1.1, 1.25]


def test_start_delay_applies_at_every_restart() -> None:
    s = TestScheduler()
    clock = SimulatedClock(s, start_delay=0.2)
    at(s, 1.0, lambda: clock.queued(A, 0.5))
    at(s, 3.0, lambda: clock.queued(A, 0.5))
    got = readings(s, clock, A, [1.1, 1.3, 1.8, 3.1, 3.4])
    s.start()
    assert got == [0.0, 0.1, 0.5, 0.5, 0.7]


def test_stop_freezes_the_position_and_drops_queued_and_later_audio() -> None:
    s = TestScheduler()
    clock = SimulatedClock(s)
    remaining: list[float] = []
    at(s, 0.0, lambda: clock.queued(A, 2.0))
    at(s, 0.7, lambda: clock.stop(A))
    at(s, 0.8, lambda: clock.queued(A, 1.0))
    at(s, 0.9, lambda: remaining.append(clock.remaining(A)))
    got = readings(s, clock, A, [0.6, 0.7, 5.0])
    s.start()
    assert got == [0.6, 0.7, 0.7]
    assert remaining == [0.0]
    assert clock.stopped(A) and not clock.stopped(B)


def test_turns_are_independent() -> None:
    s = TestScheduler()
    clock = SimulatedClock(s)
    at(s, 0.0, lambda: clock.queued(A, 1.0))
    at(s, 0.5, lambda: clock.queued(B, 1.0))
    at(s, 0.6, lambda: clock.stop(B))
    a = readings(s, clock, A, [0.8, 2.0])
    b = readings(s, clock, B, [0.8, 2.0])
    s.start()
    assert a == [0.8, 1.0]
    assert b == [0.1, 0.1]
    assert isinstance(clock, PlaybackClock)


def test_play_sink_drives_the_clock_and_ttfa_counts_the_first_non_silent_sample() -> None:
    s = TestScheduler()
    clock = SimulatedClock(s, start_delay=0.05)
    events = s.create_hot_observable(
        reactivex.testing.ReactiveTest.on_next(1.0, GenerationStarted(0, "hi", turn=0)),
        reactivex.testing.ReactiveTest.on_next(1.1, chunk(300, silent_lead=192)),  # 0.192 s silent
        reactivex.testing.ReactiveTest.on_next(1.2, chunk(300, index=1)),
    )
    events.pipe(play(clock, stop_if_cut_short=False)).subscribe()
    got = readings(s, clock, A, [1.2, 1.5, 2.0])
    s.start()
    assert got == [0.05, 0.35, 0.6]
    # first sound: queued at 1.1, plays at 1.15, after 0.192 s of leading silence
    assert clock.first_audible_at(A) == pytest.approx(1.342)
    assert ttfa(clock, A, started_at=1.0) == pytest.approx(0.342)
    assert ttfa(clock, B, started_at=1.0) is None


def test_stop_without_a_key_drops_every_turns_queue_but_later_audio_plays() -> None:
    s = TestScheduler()
    clock = SimulatedClock(s)
    events = s.create_hot_observable(
        reactivex.testing.ReactiveTest.on_next(1.0, chunk(2000)),
        reactivex.testing.ReactiveTest.on_next(1.0, chunk(2000, B)),
    )
    sub = events.pipe(play(clock)).subscribe()  # play stops its sink on disposal
    at(s, 1.5, sub.dispose)
    at(s, 2.0, lambda: clock.queued(A, 0.25))
    a = readings(s, clock, A, [1.4, 1.9, 3.0])
    b = readings(s, clock, B, [1.4, 3.0])
    s.start()
    assert a == [0.4, 0.5, 0.75]
    assert b == [0.4, 0.5]
    assert not clock.stopped(A)


def test_turn_key_reads_identity() -> None:
    assert turn_key(chunk(1, B)) == B
    assert turn_key(object()) == (None, None)


# -- SampleQueue / Player per turn ------------------------------------------------------------


def pull(q: SampleQueue, frames: int) -> np.ndarray:
    out = np.zeros((frames, 1), dtype=np.int16)
    q.callback(out, frames)
    return out[:, 0]


def test_sample_queue_counts_played_frames_per_turn() -> None:
    q = SampleQueue()
    q.feed(np.full(100, 1, np.int16), A)
    q.feed(np.full(50, 2, np.int16), B)
    pull(q, 120)
    assert (q.played_frames_of(A), q.played_frames_of(B)) == (100, 20)
    assert (q.queued_frames_of(A), q.queued_frames_of(B)) == (0, 30)


def test_sample_queue_stop_one_turn_drops_only_its_frames_and_freezes_it() -> None:
    q = SampleQueue()
    q.feed(np.full(100, 1, np.int16), A)
    q.feed(np.full(100, 2, np.int16), B)
    q.feed(np.full(100, 3, np.int16), A)
    pull(q, 40)  # A's head partly played
    assert q.stop(A) == 160
    q.feed(np.full(10, 4, np.int16), A)  # late audio of a stopped turn: dropped
    out = pull(q, 120)
    assert list(out[:100]) == [2] * 100 and not out[100:].any()
    assert q.played_frames_of(A) == 40 and q.played_frames_of(B) == 100
    assert q.is_stopped(A) and not q.is_stopped(B)
    assert q.dropped_frames == 170


def test_sample_queue_stop_all_drops_queued_frames_and_later_audio_plays() -> None:
    q = SampleQueue()
    q.feed(np.full(100, 1, np.int16), A)
    q.feed(np.full(100, 1, np.int16), B)
    pull(q, 30)
    assert q.stop() == 170
    q.feed(np.full(10, 1, np.int16), A)
    pull(q, 50)
    assert q.played_frames_of(A) == 40 and q.played_frames_of(B) == 0
    assert not q.is_stopped(A)


class _FakeOutputStream:
    instances: ClassVar[list[_FakeOutputStream]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        _FakeOutputStream.instances.append(self)

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...

    def pull(self, frames: int) -> None:
        buf = np.zeros((frames, self.kwargs["channels"]), dtype=np.int16)
        self.kwargs["callback"](buf, frames, None, None)


def test_player_position_is_what_the_device_pulled_per_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("sounddevice")
    module.OutputStream = _FakeOutputStream  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sounddevice", module)
    _FakeOutputStream.instances = []
    from rxtts.audio.playback import Player

    player = Player()
    player.on_next(chunk(500, A))
    player.on_next(chunk(500, B))
    device = _FakeOutputStream.instances[0]
    device.pull(700)
    assert player.position(A) == pytest.approx(0.5)
    assert player.position(B) == pytest.approx(0.2)
    assert player.remaining(B) == pytest.approx(0.3)
    player.stop(B)
    device.pull(500)
    assert player.position(B) == pytest.approx(0.2) and player.remaining(B) == 0.0
    assert isinstance(player, PlaybackClock)
    player.close()


def test_a_first_sound_dropped_before_it_played_is_not_audible() -> None:
    s = TestScheduler()
    clock = SimulatedClock(s)
    at(s, 1.0, lambda: clock.on_next(chunk(1000, silent_lead=512)))  # sound from 1.512
    at(s, 1.2, lambda: clock.stop(A))
    s.start()
    assert clock.first_audible_at(A) is None
