"""Audio sinks (collect, WAV, playback) and the turn-metrics operator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reactivex
from reactivex import operators as ops
from reactivex.subject import Subject

from rxtts.audio.g711 import encode_ulaw
from rxtts.audio.playback import SampleQueue
from rxtts.audio.wav import read_wav
from rxtts.events import (
    AudioChunk,
    ChunkComplete,
    Interrupted,
    SessionClosed,
    TtsEvent,
    TurnMetrics,
)
from rxtts.operators.metrics import MetricsAccumulator, turn_metrics
from rxtts.operators.sinks import SampleRateMismatchError, collect_audio, play, to_numpy, write_wav

SR = 16000


def pcm_chunk(samples: np.ndarray, index: int = 0, rate: int = SR, at: float = 0.0) -> AudioChunk:
    return AudioChunk(samples.astype("<i2").tobytes(), rate, "pcm_s16le", index, 0, at=at)


def ramp(start: int, n: int) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.int16)


# -- collect / to_numpy ---------------------------------------------------------------------


def test_to_numpy_concatenates_audio_and_ignores_other_events() -> None:
    events: list[object] = [pcm_chunk(ramp(0, 5)), ChunkComplete(0, 0.1, 1.0), pcm_chunk(ramp(5, 3), 1)]
    out = to_numpy(events)
    assert out.dtype == np.int16 and out.tolist() == list(range(8))
    assert to_numpy([]).shape == (0,)


def test_to_numpy_decodes_g711_and_rejects_mixed_rates() -> None:
    pcm = np.array([0, 1000, -1000, 8000], dtype=np.int16)
    ulaw = AudioChunk(encode_ulaw(pcm).tobytes(), 8000, "mulaw", 0)
    decoded = to_numpy([ulaw])
    assert decoded.dtype == np.int16 and np.allclose(decoded, pcm, atol=300)
    with pytest.raises(SampleRateMismatchError):
        to_numpy([pcm_chunk(ramp(0, 2)), pcm_chunk(ramp(0, 2), rate=24000)])


def test_collect_audio_emits_one_array_on_completion() -> None:
    got: list[np.ndarray] = []
    source: Subject[TtsEvent] = Subject()
    source.pipe(collect_audio()).subscribe(got.append)
    source.on_next(pcm_chunk(ramp(0, 4)))
    assert got == []  # nothing before completion
    source.on_next(pcm_chunk(ramp(4, 4), 1))
    source.on_completed()
    assert len(got) == 1 and got[0].tolist() == list(range(8))


def test_collect_audio_is_cold_and_forwards_errors() -> None:
    events = reactivex.from_iterable([pcm_chunk(ramp(0, 3)), SessionClosed()])
    op = events.pipe(collect_audio())
    assert op.run().tolist() == [0, 1, 2]
    assert op.run().tolist() == [0, 1, 2]  # a second subscription starts afresh
    mixed = reactivex.from_iterable([pcm_chunk(ramp(0, 2)), pcm_chunk(ramp(0, 2), rate=8000)])
    with pytest.raises(SampleRateMismatchError):
        mixed.pipe(collect_audio()).run()


# -- WAV ------------------------------------------------------------------------------------


def test_write_wav_streams_frames_and_passes_events_through(tmp_path: Path) -> None:
    path = tmp_path / "turn.wav"
    events = [
        pcm_chunk(ramp(0, 100)),
        ChunkComplete(0, 0.1, 1.0),
        pcm_chunk(ramp(100, 50), 1),
        SessionClosed(),
    ]
    out = reactivex.from_iterable(events).pipe(write_wav(path), ops.to_list()).run()
    assert out == events
    samples, rate = read_wav(path)
    assert rate == SR and samples.tolist() == list(range(150))


def test_write_wav_leaves_a_valid_file_on_barge_in(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    source: Subject[TtsEvent] = Subject()
    stop: Subject[bool] = Subject()
    source.pipe(write_wav(path), ops.take_until(stop)).subscribe()
    source.on_next(pcm_chunk(ramp(0, 10)))
    source.on_next(pcm_chunk(ramp(10, 10), 1))
    stop.on_next(True)  # disposes upstream: the file is finalised
    source.on_next(pcm_chunk(ramp(20, 10), 2))  # late, never written
    samples, rate = read_wav(path)
    assert samples.tolist() == list(range(20)) and rate == SR


def test_write_wav_without_audio_writes_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    reactivex.of(SessionClosed()).pipe(write_wav(path, sample_rate=8000)).run()
    samples, rate = read_wav(path)
    assert samples.size == 0 and rate == 8000


def test_write_wav_rejects_a_rate_change(tmp_path: Path) -> None:
    events = reactivex.from_iterable([pcm_chunk(ramp(0, 4)), pcm_chunk(ramp(0, 4), rate=22050)])
    with pytest.raises(SampleRateMismatchError):
        events.pipe(write_wav(tmp_path / "x.wav")).run()
    samples, _ = read_wav(tmp_path / "x.wav")
    assert samples.tolist() == [0, 1, 2, 3]


# -- playback -------------------------------------------------------------------------------


class QueuePlayer:
    """A player without a device: chunks go to a real :class:`SampleQueue`."""

    def __init__(self) -> None:
        self.queue = SampleQueue()
        self.calls: list[str] = []

    def on_next(self, value: object) -> None:
        if isinstance(value, AudioChunk):
            self.queue.feed(value.samples)

    def finish(self) -> None:
        self.calls.append("finish")
        self.queue.finish()

    def stop(self) -> None:
        self.calls.append("stop")
        self.queue.stop()

    def pull(self, frames: int) -> np.ndarray:
        out = np.zeros((frames, 1), np.int16)
        self.queue.callback(out, frames)
        return out[:, 0]


def test_play_is_gap_free_across_chunk_boundaries() -> None:
    player = QueuePlayer()
    chunks: list[TtsEvent] = [pcm_chunk(ramp(i * 70, 70), i) for i in range(5)]
    chunks.append(SessionClosed())
    out = reactivex.from_iterable(chunks).pipe(play(player), ops.to_list()).run()
    assert out == chunks  # events pass through
    blocks = [player.pull(64) for _ in range(6)]  # device blocks don't align with chunks
    played = np.concatenate(blocks)
    assert played[:350].tolist() == list(range(350))  # contiguous: no gaps, no repeats
    assert player.calls == ["finish"] and player.queue.underruns == 0


def test_play_stops_at_once_on_barge_in() -> None:
    player = QueuePlayer()
    source: Subject[TtsEvent] = Subject()
    stop: Subject[bool] = Subject()
    source.pipe(play(player), ops.take_until(stop)).subscribe()
    source.on_next(pcm_chunk(ramp(1, 1000)))
    assert player.pull(10).tolist() == list(range(1, 11))
    stop.on_next(True)
    assert player.calls == ["stop"]
    assert player.pull(10).tolist() == [0] * 10  # silence on the very next block
    assert player.queue.dropped_frames == 990


def test_play_stops_on_interrupted_and_finishes_on_error() -> None:
    player = QueuePlayer()
    events = reactivex.from_iterable([pcm_chunk(ramp(1, 50)), Interrupted()])
    events.pipe(play(player)).run()
    assert player.calls[0] == "stop" and player.queue.dropped_frames == 50
    failing = reactivex.concat(reactivex.of(pcm_chunk(ramp(1, 5))), reactivex.throw(RuntimeError("x")))
    player2 = QueuePlayer()
    with pytest.raises(RuntimeError):
        failing.pipe(play(player2)).run()
    assert player2.calls == ["finish"] and player2.pull(5).tolist() == [1, 2, 3, 4, 5]


# -- turn metrics ---------------------------------------------------------------------------


def test_metrics_accumulator_measures_ttfb_and_ttfa_from_the_first_sound() -> None:
    acc = MetricsAccumulator()
    acc.text_sent(10.0)
    silent = pcm_chunk(np.zeros(1600, np.int16), at=10.2)
    sound = np.zeros(1600, np.int16)
    sound[640:] = 8000  # window-aligned (64-sample windows)
    acc.on_event(silent)
    acc.on_event(pcm_chunk(sound, 1, at=10.3))
    acc.on_event(ChunkComplete(0, 0.2, 3.0))
    m = acc.result()
    assert m.ttfb == pytest.approx(0.2)
    assert m.ttfa == pytest.approx(0.3 + 640 / SR)
    assert m.frame_count == 2 and m.chunk_count == 1 and m.audio_seconds == pytest.approx(0.2)


def test_metrics_without_audio_have_no_latencies() -> None:
    acc = MetricsAccumulator()
    acc.text_sent(1.0)
    m = acc.result()
    assert (m.ttfb, m.ttfa, m.frame_count, m.audio_seconds) == (None, None, 0, 0.0)


def test_turn_metrics_operator_inserts_metrics_before_each_session_closed() -> None:
    loud = np.full(160, 5000, np.int16)
    starts = iter([100.0, 200.0])
    events: list[TtsEvent] = [
        pcm_chunk(loud, at=100.5),
        SessionClosed(0.01),
        pcm_chunk(loud, at=200.25),
        pcm_chunk(loud, 1, at=200.3),
        SessionClosed(0.02),
    ]
    out = reactivex.from_iterable(events).pipe(turn_metrics(lambda: next(starts)), ops.to_list()).run()
    names = [type(e).__name__ for e in out]
    assert names == [
        "AudioChunk",
        "TurnMetrics",
        "SessionClosed",
        "AudioChunk",
        "AudioChunk",
        "TurnMetrics",
        "SessionClosed",
    ]
    first, second = (e for e in out if isinstance(e, TurnMetrics))
    assert first.ttfb == pytest.approx(0.5) and first.frame_count == 1
    assert second.ttfb == pytest.approx(0.25) and second.ttfa == pytest.approx(0.25)
    assert second.frame_count == 2


def test_play_downstream_of_take_until_also_stops_at_once() -> None:
    player = QueuePlayer()
    source: Subject[TtsEvent] = Subject()
    stop: Subject[bool] = Subject()
    source.pipe(ops.take_until(stop), play(player)).subscribe()  # sees a completion
    source.on_next(pcm_chunk(ramp(1, 100)))
    stop.on_next(True)
    assert player.calls == ["stop"] and player.pull(4).tolist() == [0, 0, 0, 0]


def test_play_plays_out_a_turn_that_ended_normally() -> None:
    player = QueuePlayer()
    reactivex.from_iterable([pcm_chunk(ramp(1, 8)), SessionClosed()]).pipe(play(player)).run()
    assert player.calls == ["finish"] and player.pull(8).tolist() == list(range(1, 9))
    bare = QueuePlayer()
    reactivex.of(pcm_chunk(ramp(1, 4))).pipe(play(bare, stop_if_cut_short=False)).run()
    assert bare.calls == ["finish"] and bare.pull(4).tolist() == [1, 2, 3, 4]
