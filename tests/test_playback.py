"""Tests for rxtts.audio.playback: the device-free SampleQueue and Player wiring.

The audio device is simulated: tests call the callback the way PortAudio would, with
a fixed block size, and inspect what would have reached the speaker.
"""

from __future__ import annotations

import sys
import threading
import types
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest
import reactivex

import rxtts.audio
from rxtts.audio import float32_to_pcm16
from rxtts.audio.playback import Player, SampleQueue


def tone(n: int, freq: float = 440.0, rate: int = 24000, amp: float = 0.5) -> np.ndarray:
    return float32_to_pcm16(amp * np.sin(2 * np.pi * freq * np.arange(n) / rate))


def drain(queue: SampleQueue, blocks: int, frames: int = 256) -> np.ndarray:
    """Run the callback ``blocks`` times like a device would; return the output signal."""
    out = []
    for _ in range(blocks):
        buf = np.full((frames, queue.channels), 12345, dtype=np.int16)  # garbage
        queue.callback(buf, frames)
        out.append(buf.copy())
    return np.concatenate(out)


# -- SampleQueue ------------------------------------------------------------------------


def test_chunks_play_back_to_back_with_no_gap_or_click() -> None:
    signal = tone(24000)
    rng = np.random.default_rng(3)
    cuts = np.sort(rng.choice(np.arange(1, len(signal)), size=60, replace=False))
    q = SampleQueue()
    for chunk in np.split(signal, cuts):  # odd sizes, unrelated to the device block size
        q.feed(chunk)
    blocks = len(signal) // 256 + 2
    out = drain(q, blocks=blocks)[:, 0]
    assert np.array_equal(out[: len(signal)], signal)  # every sample, in order, no gap
    assert not out[len(signal) :].any()  # then silence
    # continuity: no step across any boundary larger than the tone's own slope
    max_slope = np.abs(np.diff(signal.astype(np.int32))).max()
    assert np.abs(np.diff(out[: len(signal)].astype(np.int32))).max() <= max_slope
    assert q.played_frames == len(signal)
    # only the blocks past the end ran short (the stream was never finished)
    assert q.underruns == blocks - len(signal) // 256


def test_underrun_pads_with_zeros_and_is_counted() -> None:
    q = SampleQueue()
    chunk = tone(100)
    q.feed(chunk)
    out = drain(q, blocks=1)[:, 0]
    assert np.array_equal(out[:100], chunk)
    assert not out[100:].any()
    assert (q.underruns, q.underrun_frames) == (1, 156)
    drain(q, blocks=2)  # still starving mid-stream: each callback counts
    assert (q.underruns, q.underrun_frames) == (3, 156 + 512)


def test_idle_and_finished_streams_are_not_underruns() -> None:
    q = SampleQueue()
    assert not drain(q, blocks=3).any()
    assert q.underruns == 0  # nothing was ever fed
    q.feed(tone(300))
    q.finish()
    out = drain(q, blocks=3)[:, 0]
    assert np.array_equal(out[:300], tone(300))
    assert q.underruns == 0 and q.underrun_frames == 0  # end of a finished stream
    q.feed(tone(10))  # a new stream re-arms underrun counting
    drain(q, blocks=1)
    assert q.underruns == 1


def test_stop_drops_queued_audio_immediately() -> None:
    q = SampleQueue()
    q.feed(tone(10_000))
    first = drain(q, blocks=1)
    assert first.any()
    dropped = q.stop()
    assert dropped == 10_000 - 256
    assert q.queued_frames == 0 and q.dropped_frames == dropped
    assert not drain(q, blocks=4).any()  # the very next callback is silence
    assert q.underruns == 0  # a barge-in is not an underrun
    q.feed(tone(50))  # and the queue is usable again at once
    assert np.array_equal(drain(q, blocks=1)[:50, 0], tone(50))


def test_float_output_buffer_and_float_input() -> None:
    q = SampleQueue()
    q.feed(np.array([0.5, -0.25], dtype=np.float32))
    buf = np.ones((4, 1), dtype=np.float32)
    q.callback(buf, 4)
    assert buf[:, 0].tolist() == [0.5, -0.25, 0.0, 0.0]


def test_stereo_queue_broadcasts_mono_and_keeps_stereo_frames() -> None:
    q = SampleQueue(channels=2)
    q.feed(np.array([1, 2], dtype=np.int16))
    q.feed(np.array([[3, 4], [5, 6]], dtype=np.int16))
    out = drain(q, blocks=1, frames=4)
    assert out.tolist() == [[1, 1], [2, 2], [3, 4], [5, 6]]
    with pytest.raises(ValueError):
        q.feed(np.zeros((3, 3), dtype=np.int16))
    with pytest.raises(ValueError):
        SampleQueue(channels=0)


def test_fed_arrays_are_copied() -> None:
    q = SampleQueue()
    chunk = np.array([7, 8, 9], dtype=np.int16)
    q.feed(chunk)
    chunk[:] = 0
    assert drain(q, blocks=1, frames=3)[:, 0].tolist() == [7, 8, 9]


def test_concurrent_producer_and_audio_thread_lose_nothing() -> None:
    signal = tone(48_000)
    q = SampleQueue()
    out: list[np.ndarray] = []
    done = threading.Event()

    def device() -> None:
        while not done.is_set() or q.queued_frames:
            buf = np.zeros((128, 1), dtype=np.int16)
            q.callback(buf, 128)
            out.append(buf[:, 0].copy())

    consumer = threading.Thread(target=device)
    consumer.start()
    for chunk in np.array_split(signal, 200):
        q.feed(chunk)
    done.set()
    consumer.join(timeout=10)
    played = np.concatenate(out)
    # underruns may insert zeros between chunks, but the audio itself arrives intact
    assert q.played_frames == len(signal)
    assert np.array_equal(played[played != 0], signal[signal != 0])


def test_wait_empty_times_out_then_succeeds_when_drained() -> None:
    q = SampleQueue()
    q.feed(tone(1000))
    assert q.wait_empty(timeout=0.01) is False
    t = threading.Timer(0.02, lambda: drain(q, blocks=4))
    t.start()
    assert q.wait_empty(timeout=5.0) is True
    t.join()


# -- Player (with a fake sounddevice) ---------------------------------------------------


class FakeStream:
    """Stands in for sounddevice.OutputStream; the test plays the device."""

    instances: ClassVar[list[FakeStream]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.started = self.stopped = self.closed = False
        FakeStream.instances.append(self)

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def close(self) -> None:
        self.closed = True

    def pull(self, frames: int, blocks: int = 1) -> np.ndarray:
        out = []
        for _ in range(blocks):
            buf = np.zeros((frames, self.kwargs["channels"]), dtype=np.int16)
            self.kwargs["callback"](buf, frames, None, None)
            out.append(buf)
        return np.concatenate(out)


@pytest.fixture
def fake_sd(monkeypatch: pytest.MonkeyPatch) -> type[FakeStream]:
    FakeStream.instances = []
    module = types.ModuleType("sounddevice")
    module.OutputStream = FakeStream  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sounddevice", module)
    return FakeStream


@dataclass(frozen=True, slots=True)
class Chunk:
    """Shaped like rxtts.events.AudioChunk (the fields the player reads)."""

    samples: np.ndarray
    sample_rate: int
    encoding: str = "pcm_s16le"


@dataclass(frozen=True, slots=True)
class Other:
    """Any non-audio event."""

    text: str


def test_missing_sounddevice_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(ImportError, match=r"pip install 'rxtts\[play\]'"):
        Player()


def test_player_as_rx_observer_plays_audio_chunks_only(fake_sd: type[FakeStream]) -> None:
    a, b = tone(1000), tone(700, freq=880)
    player = Player()
    assert fake_sd.instances == []  # the device opens lazily
    events = [Chunk(a, 24000), Other("hi"), Chunk(b, 24000), Other("bye")]
    reactivex.from_iterable(events).subscribe(player)
    (stream,) = fake_sd.instances
    assert stream.started
    assert stream.kwargs["samplerate"] == 24000 and stream.kwargs["dtype"] == "int16"
    out = stream.pull(256, blocks=8)[:, 0]
    assert np.array_equal(out[:1700], np.concatenate([a, b]))
    assert not out[1700:].any()
    assert player.underruns == 0  # on_completed finished the stream
    assert player.played_seconds == pytest.approx(1700 / 24000)
    player.close()
    assert stream.stopped and stream.closed


def test_player_decodes_g711_chunks(fake_sd: type[FakeStream]) -> None:
    x = tone(400, rate=8000)
    player = Player(sample_rate=8000)
    player.on_next(Chunk(rxtts.audio.encode_ulaw(x), 8000, "mulaw"))
    player.on_next(Chunk(rxtts.audio.encode_alaw(x), 8000, "alaw"))
    out = fake_sd.instances[0].pull(800)[:, 0]
    assert np.array_equal(out[:400], rxtts.audio.decode_ulaw(rxtts.audio.encode_ulaw(x)))
    assert np.array_equal(out[400:], rxtts.audio.decode_alaw(rxtts.audio.encode_alaw(x)))


def test_player_resamples_chunks_at_another_rate(fake_sd: type[FakeStream]) -> None:
    player = Player(sample_rate=48000)
    reactivex.from_iterable([Chunk(tone(2400, rate=24000), 24000)]).subscribe(player)
    stream = fake_sd.instances[0]
    assert stream.kwargs["samplerate"] == 48000
    out = stream.pull(480, blocks=12)[:, 0]
    assert abs(player.queue.played_frames - 4800) <= 1  # 0.1 s at 48 kHz
    spectrum = np.abs(np.fft.rfft(out[:4800].astype(np.float64)))
    assert np.fft.rfftfreq(4800, 1 / 48000)[int(np.argmax(spectrum))] == pytest.approx(440, abs=10)


def test_player_stop_is_barge_in(fake_sd: type[FakeStream]) -> None:
    player = Player()
    player.on_next(Chunk(tone(24000), 24000))
    stream = fake_sd.instances[0]
    assert stream.pull(256).any()
    player.stop()
    assert not stream.pull(256, blocks=3).any()
    assert player.queue.dropped_frames == 24000 - 256
    player.on_error(RuntimeError("boom"))
    assert isinstance(player.error, RuntimeError)


def test_player_close_is_idempotent_and_final(fake_sd: type[FakeStream]) -> None:
    with Player() as player:
        player.feed(tone(10))
    player.close()
    assert fake_sd.instances[0].closed
    with pytest.raises(RuntimeError, match="closed"):
        player.feed(tone(10))


def test_lazy_reexports() -> None:
    assert rxtts.audio.Player is Player
    assert rxtts.audio.SampleQueue is SampleQueue
    with pytest.raises(AttributeError):
        _ = rxtts.audio.NoSuchThing
