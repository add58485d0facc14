"""Piper streaming decode inside a sentence (issue 12): windows, equivalence, cancel, cache.

The real joe voice throughout (``slow``, run in CI too), except the window arithmetic.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rxtts.server.engines import CancelToken, PiperEngine, SynthesisSettings
from rxtts.server.engines import piper as piper_module
from rxtts.server.engines.piper import PIPER_VOICES
from rxtts.server.engines.piper_parts import DEFAULT_MARGINS, DEFAULT_WINDOWS, window_bounds
from rxtts.server.engines.piper_split import model_digest, split_voice

JOE, BRIGHT = PIPER_VOICES[0], PIPER_VOICES[1]
SIX = "The weather is nice today."
TWENTY_FIVE = (
    "When the morning train finally arrived at the small station the very tired travellers "
    "gathered their bags and walked slowly toward the old wooden bridge."
)
HOP = 256


class SpySession:
    """Wraps an onnxruntime session: counts ``run`` calls, can act on the n-th one."""

    def __init__(self, inner: Any, on_call: dict[int, Any] | None = None) -> None:
        self.inner = inner
        self.calls = 0
        self.on_call = on_call or {}

    def run(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        action = self.on_call.get(self.calls)
        if action is not None:
            action()
        return self.inner.run(*args, **kwargs)


def spied(engine: PiperEngine, on_call: dict[int, Any] | None = None) -> tuple[PiperEngine, SpySession]:
    """A streaming engine sharing ``engine``'s sessions, with a spy on its decoder."""
    model = engine._load()
    spy = SpySession(model.decoder, on_call)
    clone = PiperEngine(threads=engine.threads)
    clone._model = replace(model, decoder=spy)
    return clone, spy


def noiseless(monkeypatch: pytest.MonkeyPatch) -> None:
    """Zero noise_scale and noise_w: the model is deterministic, so two decodes compare."""

    def scales(defaults: tuple[float, float, float], settings: SynthesisSettings, factor: float = 1.0) -> Any:
        return np.array([0.0, defaults[1] * factor / settings.speed, 0.0], dtype=np.float32)

    monkeypatch.setattr(piper_module, "piper_scales", scales)


@pytest.fixture(scope="module")
def streaming() -> PiperEngine:
    engine = PiperEngine(threads=2)
    engine.warm_up()
    return engine


@pytest.fixture(scope="module")
def whole() -> PiperEngine:
    engine = PiperEngine(threads=2, streaming=False)
    engine.warm_up()
    return engine


# -- window arithmetic (no model) ---------------------------------------------------------


@pytest.mark.parametrize("frames", [1, 15, 16, 23, 24, 64, 126, 370, 693, 2000])
def test_windows_tile_the_sentence_with_clipped_margins(frames: int) -> None:
    bounds = list(window_bounds(frames, DEFAULT_WINDOWS, DEFAULT_MARGINS))
    assert bounds[0][0] == 0 and bounds[-1][1] == frames
    for (_, b, _, _), (a, _, _, _) in itertools.pairwise(bounds):
        assert a == b  # contiguous, no gap, no overlap
    for a, b, lo, hi in bounds:
        assert a < b and lo == max(0, a - 48) and hi == min(frames, b + 40)
    assert bounds[0][1] == (16 if frames - 16 >= 24 else frames)  # early first audio


def test_windows_grow_and_absorb_a_short_tail() -> None:
    sizes = [b - a for a, b, _, _ in window_bounds(2000, DEFAULT_WINDOWS, DEFAULT_MARGINS)]
    assert sizes[:4] == [16, 48, 144, 432] and sizes[4:-1] == [432] * (len(sizes) - 5)
    assert [b - a for a, b, _, _ in window_bounds(70, (16, 48), (0, 0))] == [16, 54]  # 6 < 24 joins
    assert [b - a for a, b, _, _ in window_bounds(100, (16, 48), (0, 0))] == [16, 48, 36]
    assert [b - a for a, b, _, _ in window_bounds(126, DEFAULT_WINDOWS, DEFAULT_MARGINS)] == [16, 110]


# -- real voice ----------------------------------------------------------------------------


@pytest.mark.slow
def test_streaming_is_the_default_and_whole_sentence_stays_selectable(
    streaming: PiperEngine, whole: PiperEngine
) -> None:
    assert PiperEngine().streaming is True and whole.streaming is False
    model = streaming._load()
    assert model.frontend is not None and model.decoder is not None and model.whole is None
    assert whole._load().whole is not None
    # Thread options kept: each session has `threads` intra-op threads, never more.
    for session in (model.frontend, model.decoder):
        assert session.get_session_options().intra_op_num_threads == 2
        assert session.get_session_options().inter_op_num_threads == 1


@pytest.mark.slow
@pytest.mark.parametrize("text", [SIX, TWENTY_FIVE, "One. Two is here, and so is three!"])
@pytest.mark.parametrize("voice", [JOE, BRIGHT], ids=["joe", "bright"])
def test_windows_concatenate_to_the_whole_sentence_decode(
    monkeypatch: pytest.MonkeyPatch, streaming: PiperEngine, whole: PiperEngine, text: str, voice: Any
) -> None:
    noiseless(monkeypatch)
    blocks = list(streaming.synthesize(text, voice, SynthesisSettings(), CancelToken()))
    reference = list(whole.synthesize(text, voice, SynthesisSettings(), CancelToken()))
    assert len(blocks) > len(reference)  # really streamed in windows
    got, want = np.concatenate(blocks), np.concatenate(reference)
    # Measured: same length to the sample (joe and the resampled 1072), max diff <= 2e-5.
    assert abs(len(got) - len(want)) <= 2
    n = min(len(got), len(want))
    assert float(np.max(np.abs(got[:n] - want[:n]))) < 1e-3
    assert float(np.sqrt(np.mean(want**2))) > 0.03  # compared real speech, not silence


@pytest.mark.slow
def test_first_block_is_one_small_window_yielded_before_the_rest_is_decoded(streaming: PiperEngine) -> None:
    engine, spy = spied(streaming)
    blocks = engine.synthesize(TWENTY_FIVE, JOE, SynthesisSettings(), CancelToken())
    first = next(blocks)
    assert spy.calls == 1  # yielded right after the first window, before the others ran
    assert len(first) == DEFAULT_WINDOWS[0] * HOP  # 16 frames = 186 ms
    rest = list(blocks)
    assert spy.calls == 1 + len(rest) >= 4  # one block per decoder window


@pytest.mark.slow
def test_early_audio_off_decodes_each_sentence_in_one_run_with_the_same_samples(
    monkeypatch: pytest.MonkeyPatch, streaming: PiperEngine
) -> None:
    noiseless(monkeypatch)
    engine, spy = spied(streaming)
    text = TWENTY_FIVE + " " + SIX
    cheap = list(engine.synthesize(text, JOE, SynthesisSettings(early_audio=False), CancelToken()))
    assert spy.calls == len(cheap) == 2  # one decoder run and one block per sentence
    windowed = list(engine.synthesize(text, JOE, SynthesisSettings(), CancelToken()))
    assert spy.calls - 2 == len(windowed) >= 5
    got, want = np.concatenate(cheap), np.concatenate(windowed)
    assert len(got) == len(want) and float(np.max(np.abs(got - want))) < 1e-3


@pytest.mark.slow
def test_cancel_between_windows_runs_no_further_window(streaming: PiperEngine) -> None:
    engine, spy = spied(streaming)
    token = CancelToken()
    received = []
    for block in engine.synthesize(TWENTY_FIVE, JOE, SynthesisSettings(), token):
        received.append(block)
        token.cancel()  # barge-in right after the first audio
    assert len(received) == 1
    assert spy.calls == 1  # the token was checked before the next window


@pytest.mark.slow
def test_cancel_from_another_thread_stops_within_the_running_window(streaming: PiperEngine) -> None:
    token = CancelToken()
    cancelled = threading.Event()

    def cancel_soon() -> None:  # cancel while window 2 is being decoded
        timer = threading.Timer(0.005, lambda: (token.cancel(), cancelled.set()))
        timer.start()

    engine, spy = spied(streaming, {2: cancel_soon})
    received = list(engine.synthesize(TWENTY_FIVE, JOE, SynthesisSettings(), token))
    assert cancelled.wait(5)
    assert spy.calls == 2  # window 2 was terminated or finished; window 3 never started
    assert 1 <= len(received) <= 2
    full = list(streaming.synthesize(TWENTY_FIVE, JOE, SynthesisSettings(), CancelToken()))
    assert len(full) >= 4 and sum(map(len, received)) < sum(map(len, full)) / 2


@pytest.mark.slow
def test_split_is_cached_by_model_hash_outside_site_packages(tmp_path: Path, streaming: PiperEngine) -> None:
    first = split_voice(streaming.model_path, tmp_path)
    digest = model_digest(streaming.model_path)
    assert Path(first.directory) == tmp_path / "piper-split" / digest[:32]
    assert first.hop == HOP and first.frontend_path.exists() and first.decoder_path.exists()
    assert not Path(first.directory).is_relative_to(streaming.model_path.parent)
    stamp = first.decoder_path.stat().st_mtime_ns
    again = split_voice(streaming.model_path, tmp_path)
    assert again == first and again.decoder_path.stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert [p.name for p in (tmp_path / "piper-split").iterdir()] == [digest[:32]]  # no scratch left


def _blocks(engine: PiperEngine, text: str) -> Iterator[Any]:
    return engine.synthesize_blocks(text, JOE, SynthesisSettings(alignment=True), CancelToken())


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["streaming", "whole"])
def test_alignment_comes_with_the_first_block_of_each_sentence(
    request: pytest.FixtureRequest, mode: str
) -> None:
    engine: PiperEngine = request.getfixturevalue(mode)
    text = "One. Two is here, and so is three!"
    blocks = list(_blocks(engine, text))
    aligned = [i for i, b in enumerate(blocks) if b.alignment is not None]
    sentence_starts = [0] + [i + 1 for i in range(len(blocks) - 1) if i + 1 in aligned]
    assert len(aligned) == 2 and aligned[0] == 0 and aligned == sentence_starts
    words = [w.word for i in aligned for w in blocks[i].alignment.words]
    assert words == ["One", "Two", "is", "here", "and", "so", "is", "three"]
    # Durations x hop = audio: the last word ends exactly where the audio ends.
    assert blocks[aligned[1]].alignment.words[-1].end_sample == sum(map(len, blocks))
    first_end = blocks[0].alignment.words[-1].end_sample
    assert first_end == sum(len(b) for b in blocks[: aligned[1]])  # sentence 1's audio
    assert all(len(b) % HOP == 0 for b in blocks)  # whole frames


@pytest.mark.slow
def test_alignment_does_not_change_the_audio(monkeypatch: pytest.MonkeyPatch, streaming: PiperEngine) -> None:
    noiseless(monkeypatch)
    plain = np.concatenate(list(streaming.synthesize(TWENTY_FIVE, JOE, SynthesisSettings(), CancelToken())))
    aligned = np.concatenate([b.audio for b in _blocks(streaming, TWENTY_FIVE)])
    assert np.array_equal(plain, aligned)


@pytest.mark.slow
def test_derived_voice_word_times_are_rescaled_to_its_audio(streaming: PiperEngine) -> None:
    blocks = list(
        streaming.synthesize_blocks(TWENTY_FIVE, BRIGHT, SynthesisSettings(alignment=True), CancelToken())
    )
    assert blocks[0].alignment is not None
    words = blocks[0].alignment.words
    assert len(words) == 25
    total = sum(map(len, blocks))
    assert abs(words[-1].end_sample - total) <= 4  # model samples / 1.26, resampled


@pytest.mark.slow
def test_engine_benchmark_runs_and_reports_both_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Structure only (benchmarks are never timed tests): every case, both modes, numbers."""
    from rxtts.bench import engine as bench

    monkeypatch.setattr(bench, "SENTENCES", {"6 words": SIX, "25 words": TWENTY_FIVE})
    results = bench.run(repeats=1, warmup=0)
    assert [row["sentence"] for row in results["decode"]] == ["6 words", "25 words"]
    for row in results["decode"]:
        assert row["streaming"]["first_ms"] <= row["streaming"]["total_ms"]
        assert row["streaming"]["blocks"] >= 2 and row["whole"]["blocks"] == 1
        assert row["max_abs_diff"] < 1e-3 and row["length_diff_samples"] == 0
    assert all(row["mapping_ms"] > 0 for row in results["alignment"])
    table = bench.format_results(results)
    assert "25 words" in table and "load average" in table and results["machine"]["logical_cores"]
