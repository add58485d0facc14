"""Tests for rxtts.audio: PCM, G.711 (audioop oracle), resampling, WAV, silence."""

from __future__ import annotations

import io
import warnings
import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxtts.audio import (
    ENCODINGS,
    StreamResampler,
    as_pcm16,
    decode_alaw,
    decode_samples,
    decode_ulaw,
    encode_alaw,
    encode_samples,
    encode_ulaw,
    first_non_silent_sample,
    float32_to_pcm16,
    is_silent,
    pcm16_to_float32,
    pcm16_view,
    read_wav,
    resample,
    rms_dbfs,
    to_bytes,
    wav_bytes,
    write_wav,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # the oracle (stdlib on 3.11/3.12, audioop-lts on 3.13+)

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))
int16s = st.integers(min_value=-32768, max_value=32767)


def sine(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1.0 / rate)[int(np.argmax(spectrum))])


# -- pcm --------------------------------------------------------------------------------


def test_pcm16_float_roundtrip_is_lossless_for_every_int16() -> None:
    f = pcm16_to_float32(ALL_INT16)
    assert f.dtype == np.float32
    assert f.min() == -1.0 and f.max() < 1.0
    assert np.array_equal(float32_to_pcm16(f), ALL_INT16)


def test_pcm16_to_float32_accepts_bytes_little_endian() -> None:
    assert pcm16_to_float32(b"\x00\x40\x00\xc0").tolist() == [0.5, -0.5]


def test_float32_to_pcm16_clips_rounds_and_zeroes_nan() -> None:
    x = np.array([2.0, -2.0, 1.0, -1.0, 1.5 / 32768, 0.5 / 32768, -0.4 / 32768, np.nan])
    assert float32_to_pcm16(x).tolist() == [32767, -32768, 32767, -32768, 2, 0, 0, 0]


@given(st.floats(min_value=-1.0, max_value=1.0, allow_nan=False, width=32))
def test_float_pcm16_roundtrip_error_is_at_most_half_a_step(v: float) -> None:
    back = pcm16_to_float32(float32_to_pcm16(np.array([v], dtype=np.float32)))[0]
    # 1.0 itself saturates to 32767/32768; everything else is within half an LSB
    limit = 1.0 / 32768 if v >= 32767.5 / 32768 else 0.5 / 32768 + 1e-9
    assert abs(float(back) - v) <= limit


def test_pcm16_view_is_zero_copy_and_read_only() -> None:
    data = np.array([1, -2, 300], dtype="<i2").tobytes()
    view = pcm16_view(data)
    assert view.tolist() == [1, -2, 300]
    assert np.shares_memory(view, np.frombuffer(data, dtype=np.uint8))
    with pytest.raises(ValueError):
        view[0] = 5
    mutable = bytearray(data)
    mview = pcm16_view(mutable)
    assert not mview.flags.writeable
    mutable[0] = 7  # same memory: the view sees the change
    assert mview[0] == 7


def test_pcm16_view_rejects_odd_length() -> None:
    with pytest.raises(ValueError, match="even"):
        pcm16_view(b"\x00\x01\x02")


def test_to_bytes_is_s16le_and_converts_floats() -> None:
    assert to_bytes(np.array([1, -2], dtype=np.int16)) == b"\x01\x00\xfe\xff"
    assert to_bytes(np.array([0.5, -1.0], dtype=np.float32)) == b"\x00\x40\x00\x80"
    with pytest.raises(TypeError):
        as_pcm16(np.array([1, 2], dtype=np.int32))


# -- G.711: bit-exact against audioop, exhaustively ------------------------------------


def test_ulaw_encode_matches_audioop_for_every_int16() -> None:
    assert encode_ulaw(ALL_INT16).tobytes() == audioop.lin2ulaw(ALL_INT16.tobytes(), 2)


def test_alaw_encode_matches_audioop_for_every_int16() -> None:
    assert encode_alaw(ALL_INT16).tobytes() == audioop.lin2alaw(ALL_INT16.tobytes(), 2)


def test_ulaw_decode_matches_audioop_for_every_code() -> None:
    assert decode_ulaw(ALL_CODES).tobytes() == audioop.ulaw2lin(ALL_CODES, 2)


def test_alaw_decode_matches_audioop_for_every_code() -> None:
    assert decode_alaw(ALL_CODES).tobytes() == audioop.alaw2lin(ALL_CODES, 2)


def test_decoders_accept_uint8_arrays_and_reject_other_dtypes() -> None:
    codes = np.frombuffer(ALL_CODES, dtype=np.uint8)
    assert np.array_equal(decode_ulaw(codes), decode_ulaw(ALL_CODES))
    assert np.array_equal(decode_alaw(codes), decode_alaw(ALL_CODES))
    with pytest.raises(TypeError):
        decode_ulaw(np.zeros(3, dtype=np.int16))


def test_encoders_accept_float_input_like_its_pcm16_conversion() -> None:
    x = sine(440, 8000, 0.05)
    assert np.array_equal(encode_ulaw(x), encode_ulaw(float32_to_pcm16(x)))
    assert np.array_equal(encode_alaw(x), encode_alaw(float32_to_pcm16(x)))


def test_encode_decode_samples_dispatch_on_frame_encoding() -> None:
    x = float32_to_pcm16(sine(300, 8000, 0.02))
    raw = x.tobytes()
    assert encode_samples(x, "pcm_s16le") == raw
    assert encode_samples(x, "mulaw") == audioop.lin2ulaw(raw, 2)
    assert encode_samples(x, "alaw") == audioop.lin2alaw(raw, 2)
    for enc in ENCODINGS:
        data = encode_samples(x, enc)
        assert len(data) == len(x) * (2 if enc == "pcm_s16le" else 1)
        assert len(decode_samples(data, enc)) == len(x)
    assert np.array_equal(decode_samples(raw, "pcm_s16le"), x)
    with pytest.raises(ValueError, match="unknown audio encoding"):
        encode_samples(x, "opus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown audio encoding"):
        decode_samples(raw, "flac")  # type: ignore[arg-type]


def _max_error(x: int, step: int, ceiling: int) -> int:
    """G.711 error bound: half a quantisation step plus the amount clipped off."""
    return step // 2 + max(0, abs(x) - ceiling)


@given(int16s)
def test_ulaw_roundtrip_error_bounded_by_its_segment_step(x: int) -> None:
    y = int(decode_ulaw(encode_ulaw(np.array([x], dtype=np.int16)))[0])
    seg = (~int(encode_ulaw(np.array([x], dtype=np.int16))[0]) >> 4) & 0x7
    step = 8 << seg  # mu-law: 16 levels per segment, step doubles each segment
    # + 3: the reference encoder first drops the 2 low bits (14-bit input, x >> 2)
    assert abs(x - y) <= _max_error(x, step, ceiling=32124) + 3
    assert (x >= 0) == (y >= 0) or abs(x) < 4  # sign kept except right at zero


@given(int16s)
def test_alaw_roundtrip_error_bounded_by_its_segment_step(x: int) -> None:
    code = int(encode_alaw(np.array([x], dtype=np.int16))[0])
    y = int(decode_alaw(np.array([code], dtype=np.uint8))[0])
    seg = ((code ^ 0x55) >> 4) & 0x7
    step = 16 << max(seg - 1, 0)  # A-law: segments 0 and 1 share the finest step
    assert abs(x - y) <= _max_error(x, step, ceiling=32256)
    assert (x >= 0) == (y > 0)  # A-law has no zero level: the sign is always kept


@given(int16s, int16s)
def test_g711_roundtrip_is_monotonic(a: int, b: int) -> None:
    lo, hi = sorted((a, b))
    pair = np.array([lo, hi], dtype=np.int16)
    for enc, dec in ((encode_ulaw, decode_ulaw), (encode_alaw, decode_alaw)):
        y = dec(enc(pair))
        assert y[0] <= y[1]


# -- resampling -------------------------------------------------------------------------


def test_resample_identity_returns_input_unchanged() -> None:
    x = float32_to_pcm16(sine(440, 16000, 0.1))
    assert resample(x, 16000, 16000) is x


@pytest.mark.parametrize("to_rate", [8000, 16000, 24000, 48000])
@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_resample_length_ratio_and_dtype(to_rate: int, dtype: type) -> None:
    x = sine(440, 22050, 0.5)
    x = float32_to_pcm16(x) if dtype is np.int16 else x
    y = resample(x, 22050, to_rate)
    assert y.dtype == dtype
    assert abs(len(y) - len(x) * to_rate / 22050) <= 1


@pytest.mark.parametrize("to_rate", [24000, 8000])
def test_resampled_sine_keeps_its_frequency(to_rate: int) -> None:
    x = float32_to_pcm16(sine(440, 22050, 1.0))
    y = resample(x, 22050, to_rate)
    assert abs(peak_hz(y, to_rate) - 440) <= 2.0  # bin width is 1 Hz for 1 s of audio
    assert abs(rms_dbfs(y) - rms_dbfs(x)) < 0.2  # level preserved


def test_downsampling_removes_content_above_the_new_nyquist() -> None:
    x = sine(6000, 22050, 0.5)  # 6 kHz cannot exist at 8 kHz (Nyquist 4 kHz)
    y = resample(x, 22050, 8000)
    assert rms_dbfs(x) > -10  # a 0.5-amplitude sine: -9 dBFS
    assert rms_dbfs(y[200:-200]) < -60  # filtered, not aliased to 2 kHz


def test_resample_rejects_bad_rates_and_dtypes() -> None:
    with pytest.raises(ValueError):
        resample(np.zeros(10, np.int16), 0, 8000)
    with pytest.raises(TypeError):
        resample(np.zeros(10, np.int32), 16000, 8000)
    assert len(resample(np.zeros(0, np.int16), 22050, 8000)) == 0


@pytest.mark.parametrize("to_rate", [24000, 8000])
@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_stream_resampler_matches_one_shot(to_rate: int, dtype: type) -> None:
    mix = (sine(440, 22050, 1.0) + 0.1 * sine(3000, 22050, 1.0)).astype(np.float32)
    x: np.ndarray = float32_to_pcm16(mix) if dtype is np.int16 else mix
    one_shot = resample(x, 22050, to_rate)
    stream = StreamResampler(22050, to_rate, dtype=dtype)
    rng = np.random.default_rng(7)
    cuts = np.sort(rng.choice(np.arange(1, len(x)), size=40, replace=False))
    parts = [stream.feed(c) for c in np.split(x, cuts)] + [stream.flush()]
    streamed = np.concatenate(parts)
    assert streamed.dtype == dtype
    assert abs(len(streamed) - len(one_shot)) <= 1
    n = min(len(streamed), len(one_shot))
    diff = np.abs(streamed[:n].astype(np.float64) - one_shot[:n].astype(np.float64))
    tolerance = 3 if dtype is np.int16 else 1e-4
    assert diff.max() <= tolerance


def test_stream_resampler_passthrough_flush_reset_and_conversion() -> None:
    same = StreamResampler(16000, 16000)
    chunk = np.arange(5, dtype=np.int16)
    assert same.passthrough and same.feed(chunk) is chunk
    s = StreamResampler(16000, 8000, dtype=np.int16)
    out = s.feed(sine(200, 16000, 0.1))  # float chunk converted to the stream's int16
    assert out.dtype == np.int16
    s.flush()
    with pytest.raises(RuntimeError, match="flushed"):
        s.feed(chunk)
    s.reset()
    total = len(s.feed(np.zeros(1600, np.int16))) + len(s.flush())
    assert total == 800


def test_stream_resampler_stereo() -> None:
    left, right = sine(440, 22050, 0.5), sine(1000, 22050, 0.5)
    x = np.stack([left, right], axis=1)
    s = StreamResampler(22050, 24000, channels=2, dtype=np.float32)
    y = np.concatenate([s.feed(x[:5000]), s.feed(x[5000:]), s.flush()])
    assert y.shape[1] == 2
    assert abs(peak_hz(y[:, 0], 24000) - 440) <= 4
    assert abs(peak_hz(y[:, 1], 24000) - 1000) <= 4


# -- WAV --------------------------------------------------------------------------------


def test_wav_mono_roundtrip_path(tmp_path: Path) -> None:
    x = float32_to_pcm16(sine(440, 22050, 0.25))
    path = tmp_path / "mono.wav"
    write_wav(path, x, 22050)
    y, rate = read_wav(path)
    assert rate == 22050 and y.dtype == np.int16 and y.ndim == 1
    assert np.array_equal(y, x)
    y[0] = 1  # read_wav returns owned, writable memory


def test_wav_stereo_roundtrip_file_object() -> None:
    left = float32_to_pcm16(sine(440, 24000, 0.1))
    right = float32_to_pcm16(sine(660, 24000, 0.1, amp=0.25))
    x = np.stack([left, right], axis=1)
    buf = io.BytesIO()
    write_wav(buf, x, 24000)
    buf.seek(0)
    with wave.open(buf, "rb") as w:  # stdlib sees a real interleaved stereo file
        assert (w.getnchannels(), w.getsampwidth(), w.getnframes()) == (2, 2, len(left))
        first = np.frombuffer(w.readframes(1), dtype="<i2")
    assert first.tolist() == [left[0], right[0]]
    buf.seek(0)
    y, rate = read_wav(buf)
    assert rate == 24000 and y.shape == (len(left), 2)
    assert np.array_equal(y, x)


def test_wav_bytes_and_float_input() -> None:
    x = sine(440, 16000, 0.1)
    data = wav_bytes(x, 16000)
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    y, rate = read_wav(io.BytesIO(data))
    assert rate == 16000
    assert np.array_equal(y, float32_to_pcm16(x))


def test_wav_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        wav_bytes(np.zeros((2, 2, 2), np.int16), 8000)
    with pytest.raises(ValueError):
        wav_bytes(np.zeros(4, np.int16), 0)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(bytes(10))
    buf.seek(0)
    with pytest.raises(ValueError, match="16-bit"):
        read_wav(buf)


# -- silence ----------------------------------------------------------------------------


def _reference_first_loud(x: np.ndarray, threshold_dbfs: float, window: int) -> int | None:
    """Naive per-window loop: the definition, written the slow obvious way."""
    scale = 32768.0 if x.dtype == np.int16 else 1.0
    for start in range(0, len(x), window):
        w = x[start : start + window].astype(np.float64) / scale
        rms = float(np.sqrt(np.mean(w * w)))
        if rms > 0 and 20 * np.log10(rms) > threshold_dbfs:
            return start
    return None


@pytest.mark.parametrize("lead", [0, 1, 640, 1000, 1023, 5000])
@pytest.mark.parametrize("threshold", [-50.0, -20.0])
def test_first_non_silent_sample_finds_the_tone_window(lead: int, threshold: float) -> None:
    x = np.concatenate([np.zeros(lead, np.float32), sine(440, 16000, 0.2)])
    expected = _reference_first_loud(x, threshold, 64)
    assert expected is not None and lead - 64 < expected <= lead + 64
    assert first_non_silent_sample(x, threshold_dbfs=threshold, window=64) == expected
    pcm = float32_to_pcm16(x)
    expected16 = _reference_first_loud(pcm, threshold, 64)
    assert first_non_silent_sample(pcm, threshold_dbfs=threshold, window=64) == expected16


def test_first_non_silent_sample_exact_window_on_boundary() -> None:
    tone = float32_to_pcm16(sine(1000, 16000, 0.1))
    x = np.concatenate([np.zeros(64 * 37, np.int16), tone])
    assert first_non_silent_sample(x) == 64 * 37
    assert first_non_silent_sample(x, window=128) == 128 * 18  # 2368 = 18.5 windows


def test_noise_floor_below_threshold_is_silence() -> None:
    rng = np.random.default_rng(1)
    floor = (rng.standard_normal(4000) * 10 ** (-60 / 20)).astype(np.float32)  # -60 dBFS
    x = np.concatenate([floor, sine(440, 16000, 0.05)])
    assert first_non_silent_sample(x, threshold_dbfs=-50.0) == 4000 - 4000 % 64
    assert first_non_silent_sample(floor, threshold_dbfs=-50.0) is None
    assert first_non_silent_sample(floor, threshold_dbfs=-70.0) == 0


def test_threshold_separates_levels() -> None:
    quiet = sine(440, 16000, 0.1, amp=10 ** (-37 / 20))  # RMS about -40 dBFS
    assert abs(rms_dbfs(quiet) - (-40.0)) < 0.1
    assert first_non_silent_sample(quiet, threshold_dbfs=-30.0) is None
    assert first_non_silent_sample(quiet, threshold_dbfs=-50.0) == 0
    assert is_silent(quiet, threshold_dbfs=-30.0) and not is_silent(quiet)


def test_all_silent_and_empty_give_none() -> None:
    assert first_non_silent_sample(np.zeros(100_000, np.int16)) is None
    assert first_non_silent_sample(np.zeros(0, np.float32)) is None
    assert is_silent(np.zeros(10, np.int16))
    assert rms_dbfs(np.zeros(10, np.int16)) == float("-inf")


def test_partial_last_window_and_long_input() -> None:
    x = np.zeros(64 * 5000 + 10, np.int16)  # spans more than one scan block
    x[-3:] = 20000
    assert first_non_silent_sample(x, window=64) == 64 * 5000


def test_stereo_silence_and_bad_args() -> None:
    x = np.zeros((1000, 2), np.int16)
    x[500:, 1] = 10000
    assert first_non_silent_sample(x) == 448
    with pytest.raises(ValueError):
        first_non_silent_sample(x, window=0)
    with pytest.raises(TypeError):
        first_non_silent_sample(np.zeros(4, np.uint8))


@settings(max_examples=50)
@given(st.integers(min_value=0, max_value=2000), st.integers(min_value=1, max_value=256))
def test_first_non_silent_sample_is_the_window_of_the_first_click(lead: int, window: int) -> None:
    x = np.zeros(lead + 1, np.int16)
    x[lead] = 32767  # one full-scale sample is loud in any window up to 256 at -50 dBFS
    assert first_non_silent_sample(x, window=window) == (lead // window) * window
