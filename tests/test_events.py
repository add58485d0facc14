"""Tests for rxtts.events: value semantics, zero-copy PCM views, G.711 decoding."""

from __future__ import annotations

import dataclasses
import time
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxtts.errors import RateLimitError
from rxtts.events import (
    AudioChunk,
    ChunkComplete,
    ContextClosed,
    ContextCreated,
    ContextError,
    ContextTimeout,
    Final,
    GenerationStarted,
    Interrupted,
    ServerWarning,
    SessionClosed,
    SessionStarted,
    SessionUsage,
    SettingsUpdated,
    TurnMetrics,
    WordTimestamp,
    WordTimestamps,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # stdlib oracle (audioop-lts on Python >= 3.13)


def _pcm(samples: list[int]) -> bytes:
    return np.asarray(samples, dtype="<i2").tobytes()


# -- AudioChunk ---------------------------------------------------------------------------


def test_pcm_samples_are_a_zero_copy_view_of_the_bytes() -> None:
    audio = _pcm([0, 1, -1, 32767, -32768, 1234])
    chunk = AudioChunk(audio=audio, sample_rate=24000, encoding="pcm_s16le", index=0)
    samples = chunk.samples
    assert samples.dtype == np.dtype("<i2")
    assert samples.tolist() == [0, 1, -1, 32767, -32768, 1234]
    base: object = samples.base
    assert base is audio  # a view on the very bytes object, no copy
    assert np.shares_memory(samples, np.frombuffer(audio, dtype=np.uint8))
    assert not samples.flags.writeable  # bytes are immutable; so is the view


def test_pcm_samples_are_little_endian_regardless_of_host() -> None:
    chunk = AudioChunk(audio=b"\x01\x02", sample_rate=8000, encoding="pcm_s16le", index=0)
    assert int(chunk.samples[0]) == 0x0201


def test_mulaw_samples_are_decoded_like_audioop() -> None:
    codes = bytes(range(256))
    chunk = AudioChunk(audio=codes, sample_rate=8000, encoding="mulaw", index=3)
    expected = np.frombuffer(audioop.ulaw2lin(codes, 2), dtype="<i2")
    assert chunk.samples.dtype == np.int16
    assert np.array_equal(chunk.samples, expected)
    assert int(chunk.samples[0xFF]) == 0  # mu-law 0xFF is silence


def test_alaw_samples_are_decoded_like_audioop() -> None:
    codes = bytes(range(256))
    chunk = AudioChunk(audio=codes, sample_rate=8000, encoding="alaw", index=0)
    expected = np.frombuffer(audioop.alaw2lin(codes, 2), dtype="<i2")
    assert np.array_equal(chunk.samples, expected)
    assert int(chunk.samples[0xD5]) == 8  # A-law 0xD5 is the smallest positive step


@pytest.mark.parametrize(
    ("audio", "encoding", "rate", "count", "seconds"),
    [
        (bytes(4800), "pcm_s16le", 24000, 2400, 0.1),  # PROTOCOL 4.3 frame: 4800 B
        (bytes(9600), "pcm_s16le", 24000, 4800, 0.2),  # PROTOCOL U-15: ~200 ms frames
        (bytes(800), "mulaw", 8000, 800, 0.1),  # ulaw_8000: 1 byte per sample
        (bytes(1600), "alaw", 8000, 1600, 0.2),
        (bytes(3200), "pcm_s16le", 16000, 1600, 0.1),
        (b"", "pcm_s16le", 24000, 0, 0.0),
    ],
)
def test_num_samples_and_duration(audio: bytes, encoding: str, rate: int, count: int, seconds: float) -> None:
    chunk = AudioChunk(audio=audio, sample_rate=rate, encoding=encoding, index=0)  # type: ignore[arg-type]
    assert chunk.num_samples == count == len(chunk.samples)
    assert chunk.duration == pytest.approx(seconds)


@settings(max_examples=100, deadline=None, database=None)
@given(st.binary(max_size=512), st.sampled_from(["pcm_s16le", "mulaw", "alaw"]))
def test_samples_length_always_matches_num_samples(audio: bytes, encoding: str) -> None:
    if encoding == "pcm_s16le":
        audio = audio[: len(audio) // 2 * 2]
    chunk = AudioChunk(audio=audio, sample_rate=8000, encoding=encoding, index=0)  # type: ignore[arg-type]
    assert len(chunk.samples) == chunk.num_samples
    assert chunk.duration == chunk.num_samples / 8000


# -- value semantics ------------------------------------------------------------------------


def _sample_events() -> list[object]:
    usage = SessionUsage(1.36, 35, 0.136, "eur", "kugel-3")
    return [
        SessionStarted(session_id="s1"),
        ContextCreated(context_id="narrator"),
        GenerationStarted(chunk_id=0, text="Hello.", context_id="narrator"),
        AudioChunk(audio=b"\x00\x01", sample_rate=24000, encoding="pcm_s16le", index=0, chunk_id=0),
        WordTimestamps(words=(WordTimestamp("Hello", 0, 200, 0, 5),), chunk_id=0),
        ChunkComplete(chunk_id=0, audio_seconds=1.0, gen_ms=117.6),
        SessionClosed(total_audio_seconds=1.36, total_text_chunks=2, usage=usage),
        Interrupted(),
        ContextClosed(context_id="c0", usage=usage),
        ContextTimeout(context_id="c1"),
        ServerWarning(message="auto-flushed"),
        TurnMetrics(ttfb=0.1, ttfa=0.12, audio_seconds=1.0, chunk_count=1, frame_count=5),
        usage,
        WordTimestamp("a", 0, 1, 0, 1),
    ]


@pytest.mark.parametrize("event", _sample_events(), ids=lambda e: type(e).__name__)
def test_events_are_frozen_and_hashable(event: object) -> None:
    assert dataclasses.is_dataclass(event)
    name = dataclasses.fields(event)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(event, name, None)
    clone = dataclasses.replace(event)  # type: ignore[type-var]
    assert clone == event and hash(clone) == hash(event)
    assert {event, clone} == {event}


def test_events_use_slots() -> None:
    chunk = AudioChunk(audio=b"", sample_rate=8000, encoding="mulaw", index=0)
    assert not hasattr(chunk, "__dict__")


@pytest.mark.parametrize(
    "event",
    [
        Final(stats={"chunks": 5}),
        SettingsUpdated(settings={"cfg_scale": 1.5}),
    ],
    ids=lambda e: type(e).__name__,
)
def test_events_with_mapping_fields_are_frozen_but_unhashable(event: object) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.context_id = "x"  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        hash(event)
    assert event == dataclasses.replace(event)  # type: ignore[type-var]


def test_at_is_set_monotonically_and_excluded_from_equality() -> None:
    before = time.monotonic()
    a = ChunkComplete(chunk_id=1, audio_seconds=0.5, gen_ms=10.0)
    after = time.monotonic()
    assert before <= a.at <= after
    b = ChunkComplete(chunk_id=1, audio_seconds=0.5, gen_ms=10.0, at=a.at + 100.0)
    assert a == b and hash(a) == hash(b)
    assert a != ChunkComplete(chunk_id=2, audio_seconds=0.5, gen_ms=10.0, at=a.at)


def test_context_id_is_part_of_equality_and_defaults_to_none() -> None:
    assert Interrupted().context_id is None
    assert ContextTimeout(context_id="a") != ContextTimeout(context_id="b")
    assert ContextTimeout(context_id="a") == ContextTimeout(context_id="a")


def test_events_of_different_types_are_never_equal() -> None:
    created: object = ContextCreated(context_id="a")
    interrupted: object = Interrupted()
    assert created != ContextTimeout(context_id="a")
    assert interrupted != ContextTimeout()


def test_context_error_carries_the_typed_exception() -> None:
    err = RateLimitError("Too many concurrent contexts", error_code="TOO_MANY_CONTEXTS")
    ev = ContextError(error=err, context_id="c20")
    assert ev.error is err and ev.context_id == "c20"
    assert ev == ContextError(error=err, context_id="c20")


def test_defaults_of_terminal_events() -> None:
    closed = SessionClosed()
    assert (closed.total_audio_seconds, closed.total_text_chunks, closed.total_audio_chunks) == (
        0.0,
        0,
        0,
    )
    assert closed.usage is None
    final = Final()
    assert final.total_audio_seconds is None and dict(final.stats) == {} and final.usage is None
    assert Final().stats is not Final().stats  # no shared mutable default


# -- SessionUsage wire shape (PROTOCOL 3.5) ----------------------------------------------------


def test_usage_to_json_full() -> None:
    usage = SessionUsage(5.4, 142, 0.49, "eur", "kugel-3")
    assert usage.to_json() == {
        "audio_seconds": 5.4,
        "characters": 142,
        "cost_cents": 0.49,
        "currency": "eur",
        "model_id": "kugel-3",
    }


def test_usage_unknown_cost_is_null_never_zero() -> None:
    usage = SessionUsage(2.0, cost_cents=None, cost_unavailable=True)
    assert usage.to_json() == {"audio_seconds": 2.0, "cost_cents": None, "cost_unavailable": True}
    assert SessionUsage(0.0, cost_cents=0.0).to_json()["cost_cents"] == 0.0
