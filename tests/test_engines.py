"""Tests of the server's TTS engines (tone, piper, espeak) and the voice catalogue."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from rxtts.engine import AligningEngine, Alignment, EngineBlock, WordTiming, engine_blocks
from rxtts.server.engines import (
    CancelToken,
    Engine,
    EngineUnavailableError,
    EspeakEngine,
    PiperEngine,
    SynthesisSettings,
    ToneEngine,
    UnknownVoiceError,
    VoiceCatalogue,
    VoiceInfo,
    best_available_engine,
    build_engine,
)
from rxtts.server.engines import catalogue as catalogue_module
from rxtts.server.engines import espeak as espeak_module
from rxtts.server.engines import piper as piper_module
from rxtts.server.engines.piper_parts import piper_scales, soft_limit

SENTENCE = "Hello world, this is a test."
PITCH_TEXT = "Hello world, this is a test of my speaking voice."
PARAGRAPH = (
    "Once upon a time there was a little village by the sea. The people there fished "
    "every morning, and in the evening they told stories by the fire. The children "
    "listened closely, because the stories were about storms, ships and distant lands. "
    "One night an old sailor arrived, and he had a story nobody had ever heard before. "
    "He spoke until the fire burned low, and nobody wanted to go to bed."
)
PY_SDK_SEX = {"male", "female", "neutral"}
PY_SDK_AGE = {"young", "middle_aged", "middle_age", "old"}


# -- helpers -----------------------------------------------------------------------------


def collect(engine: Engine, text: str, voice_id: int, **settings: object) -> np.ndarray:
    voice = VoiceCatalogue.from_engine(engine).get(voice_id)
    blocks = list(engine.synthesize(text, voice, SynthesisSettings(**settings), CancelToken()))  # type: ignore[arg-type]
    assert blocks, "engine yielded no audio"
    return np.concatenate(blocks)


def median_f0(audio: np.ndarray, sample_rate: int) -> float:
    """Median fundamental frequency of the voiced 40 ms frames (normalised autocorrelation).

    The search range is 60–320 Hz: wide enough for every catalogue voice, narrow enough
    that fricatives' noise is not taken for a 400 Hz pitch."""
    frame, hop = int(0.04 * sample_rate), int(0.01 * sample_rate)
    lo, hi = int(sample_rate / 320.0), int(sample_rate / 60.0)
    loud = 0.5 * float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    f0s: list[float] = []
    for start in range(0, len(audio) - frame, hop):
        x = audio[start : start + frame].astype(np.float64)
        x -= x.mean()
        if np.sqrt(np.mean(x**2)) < loud:
            continue
        ac = np.correlate(x, x, "full")[frame - 1 :]
        ac /= ac[0]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] >= 0.5:  # voiced
            f0s.append(sample_rate / lag)
    assert len(f0s) >= 10, "too few voiced frames to estimate pitch"
    return float(np.median(f0s))


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))


def consume_with_cancel_after(
    blocks: Iterator[np.ndarray], cancel: CancelToken, delay_s: float
) -> tuple[int, float]:
    """Consume ``blocks``; cancel from another thread ``delay_s`` after the first block.

    Returns (blocks received, seconds from the cancel call to the iterator returning).
    """
    cancelled_at: list[float] = []

    def fire() -> None:
        cancelled_at.append(time.perf_counter())
        cancel.cancel()

    count = 0
    timer: threading.Timer | None = None
    for _ in blocks:
        count += 1
        if timer is None:
            timer = threading.Timer(delay_s, fire)
            timer.start()
    ended = time.perf_counter()
    assert timer is not None
    timer.join()
    assert cancelled_at, "synthesis finished before the cancel fired"
    return count, ended - cancelled_at[0]


# -- base: settings, tokens, voice JSON ---------------------------------------------------


def test_settings_validate_speed_and_temperature() -> None:
    assert SynthesisSettings().speed == 1.0
    with pytest.raises(ValueError, match="speed"):
        SynthesisSettings(speed=0.0)
    with pytest.raises(ValueError, match="temperature"):
        SynthesisSettings(temperature=-0.1)


def test_cancel_token_runs_hooks_once_and_late_hooks_immediately() -> None:
    token = CancelToken()
    calls: list[str] = []
    token.add_hook(lambda: calls.append("a"))
    unhook = token.add_hook(lambda: calls.append("removed"))
    unhook()
    assert not token.cancelled
    token.cancel()
    token.cancel()
    assert token.cancelled
    assert calls == ["a"]
    token.add_hook(lambda: calls.append("late"))
    assert calls == ["a", "late"]
    assert token.wait(0.0) is True


def test_cancel_token_wait_wakes_on_cancel_from_another_thread() -> None:
    token = CancelToken()
    threading.Timer(0.05, token.cancel).start()
    start = time.perf_counter()
    assert token.wait(10.0) is True
    assert time.perf_counter() - start < 5.0


def test_engine_block_reads_as_its_audio() -> None:
    audio = np.array([0.1, -0.2, 0.3], dtype=np.float32)
    timing = WordTiming("Hi", 0, 2, 0, 3)
    block = EngineBlock(audio, Alignment((timing,), 22050))
    assert len(block) == 3 and np.asarray(block) is audio
    assert np.asarray(block, dtype=np.float64).dtype == np.float64
    assert np.array_equal(np.concatenate([block, EngineBlock(audio)]), np.tile(audio, 2))
    assert block.alignment is not None and block.alignment.source == "durations"
    inexact = WordTiming("there", 3, 8, 22050, 33075, exact=False)
    stamps = Alignment((timing, inexact), 22050).word_timestamps()
    assert [(w.word, w.start_ms, w.end_ms, w.char_start, w.char_end, w.score) for w in stamps] == [
        ("Hi", 0, 0, 0, 2, 1.0),
        ("there", 1000, 1500, 3, 8, 0.5),
    ]


def test_engine_blocks_wraps_plain_arrays_and_prefers_synthesize_blocks() -> None:
    tone = ToneEngine()
    assert not isinstance(tone, AligningEngine)
    voice = tone.voices()[0]
    plain = list(tone.synthesize(SENTENCE, voice, SynthesisSettings(), CancelToken()))
    wrapped = list(engine_blocks(tone, SENTENCE, voice, SynthesisSettings(), CancelToken()))
    assert [b.alignment for b in wrapped] == [None] * len(plain)
    assert all(
        np.array_equal(b.audio, p) and b.audio.dtype == np.float32
        for b, p in zip(wrapped, plain, strict=True)
    )

    class Aligning(ToneEngine):
        def synthesize_blocks(
            self, text: str, voice: VoiceInfo, settings: SynthesisSettings, cancel: CancelToken
        ) -> Iterator[EngineBlock]:
            yield EngineBlock(np.zeros(4, np.float32), Alignment((), self.sample_rate))

    aligning = Aligning()
    assert isinstance(aligning, AligningEngine)
    got = list(engine_blocks(aligning, SENTENCE, voice, SynthesisSettings(), CancelToken()))
    assert len(got) == 1 and got[0].alignment == Alignment((), aligning.sample_rate)


@pytest.mark.parametrize("engine_name", ["piper", "espeak", "tone"])
def test_voice_json_has_protocol_voice_shape(engine_name: str) -> None:
    for voice in VoiceCatalogue.for_engine(engine_name):
        doc = voice.to_json()
        assert set(doc) == {
            "id",
            "name",
            "description",
            "category",
            "sex",
            "age",
            "quality",
            "supported_languages",
            "sample_text",
            "is_public",
            "verified",
        }
        assert doc["id"] == voice.id and isinstance(doc["id"], int)
        assert doc["name"] == voice.name and doc["name"]
        assert doc["category"] == "premade" and doc["quality"] == "mid"
        assert doc["sex"] in PY_SDK_SEX and doc["age"] in PY_SDK_AGE
        assert doc["supported_languages"] == [voice.language]
        assert isinstance(doc["sample_text"], str) and doc["sample_text"]
        assert doc["is_public"] is True and doc["verified"] is True
        hash(voice)  # usable as a dict key despite the params mapping


# -- catalogue and engine selection -------------------------------------------------------


def test_catalogue_lookup_list_and_unknown_voice() -> None:
    catalogue = VoiceCatalogue.for_engine("piper")
    assert catalogue.get(1071).name == "Joe"
    assert catalogue.get(1072).name == "Jo (bright)"
    assert catalogue.ids() == tuple(sorted(catalogue.ids()))
    assert [v.id for v in catalogue.list()] == list(catalogue.ids())
    assert 1071 in catalogue and 9999 not in catalogue and len(catalogue) == 3
    with pytest.raises(UnknownVoiceError, match="9999") as info:
        catalogue.get(9999)
    assert isinstance(info.value, ValueError) and not isinstance(info.value, KeyError)
    assert info.value.voice_id == 9999


def test_every_engine_has_the_demo_voice_ids() -> None:
    for name in ("piper", "espeak", "tone"):
        catalogue = VoiceCatalogue.for_engine(name)
        assert {1071, 1072, 1073} <= set(catalogue.ids()), name
        assert all(v.engine == name for v in catalogue)
    espeak_ids = VoiceCatalogue.for_engine("espeak").ids()
    assert {2001, 2002, 2003, 2004} <= set(espeak_ids)
    assert VoiceCatalogue.for_engine("espeak").get(2003).language == "de"


def test_catalogue_rejects_duplicates_and_unknown_engines() -> None:
    voice = VoiceInfo(id=1, name="a", engine="tone")
    with pytest.raises(ValueError, match="duplicate"):
        VoiceCatalogue([voice, voice])
    with pytest.raises(ValueError, match="unknown engine"):
        VoiceCatalogue.for_engine("festival")
    with pytest.raises(ValueError, match="unknown engine"):
        build_engine("festival")


def test_build_engine_returns_engines_matching_the_protocol() -> None:
    tone = build_engine("tone")
    assert isinstance(tone, ToneEngine) and isinstance(tone, Engine)
    espeak = build_engine("espeak")
    assert isinstance(espeak, EspeakEngine) and isinstance(espeak, Engine)
    piper = build_engine("piper", threads=1)
    assert isinstance(piper, PiperEngine) and isinstance(piper, Engine)
    assert piper.threads == 1 and piper.sample_rate == 22050


def test_best_available_engine_prefers_piper_then_espeak(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = "piper" if piper_module.piper_available() else "espeak"
    assert best_available_engine() == expected
    monkeypatch.setattr(catalogue_module, "piper_available", lambda: False)
    assert best_available_engine() == "espeak"
    monkeypatch.setattr(catalogue_module, "espeak_available", lambda: False)
    with pytest.raises(EngineUnavailableError, match=r"rxtts\[piper\]") as info:
        best_available_engine()
    assert isinstance(info.value, RuntimeError)


def test_piper_engine_unavailable_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(piper_module, "piper_available", lambda: False)
    with pytest.raises(EngineUnavailableError, match=r"pip install 'rxtts\[piper\]'"):
        PiperEngine()


def test_espeak_engine_unavailable_on_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> tuple[object, None]:
        raise EngineUnavailableError("the espeak engine needs libespeak-ng")

    monkeypatch.setattr(espeak_module, "_LIBRARY", None)
    monkeypatch.setattr(espeak_module, "_load_library", missing)
    with pytest.raises(EngineUnavailableError, match="libespeak-ng"):
        EspeakEngine()
    assert espeak_module.espeak_available() is False


def test_importing_engines_does_not_import_gpl_piper() -> None:
    code = (
        "import sys, rxtts.server.engines as e; e.VoiceCatalogue.for_engine('piper'); "
        "e.build_engine('piper'); "
        "print(sorted(m for m in ('piper', 'onnxruntime', 'onnx', 'streaming_vits') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


# -- tone ------------------------------------------------------------------------------------


def test_tone_is_deterministic() -> None:
    engine = ToneEngine()
    first = collect(engine, SENTENCE, 1071)
    second = collect(engine, SENTENCE, 1071)
    assert np.array_equal(first, second)
    assert first.dtype == np.float32


def test_tone_length_is_proportional_to_text_and_speed() -> None:
    engine = ToneEngine(sample_rate=24000, ms_per_char=10.0)
    short = collect(engine, "a" * 10, 1071)
    long = collect(engine, "a" * 40, 1071)
    assert len(short) == 2400  # 10 chars x 10 ms at 24 kHz
    assert len(long) == 4 * len(short)
    fast = collect(engine, "a" * 40, 1071, speed=2.0)
    assert len(fast) == len(long) // 2
    assert list(engine.synthesize("   ", engine.voices()[0], SynthesisSettings(), CancelToken())) == []


def test_tone_blocks_are_short_and_start_without_silence() -> None:
    engine = ToneEngine()
    voice = engine.voices()[0]
    blocks = list(engine.synthesize(PARAGRAPH, voice, SynthesisSettings(), CancelToken()))
    assert len(blocks) > 10
    assert max(len(b) for b in blocks) <= engine.sample_rate // 10  # <= 100 ms
    first_loud = int(np.argmax(np.abs(blocks[0]) > 0.1))
    assert 0 < first_loud < engine.sample_rate * 0.005  # sound within the 5 ms fade-in
    assert abs(float(blocks[-1][-1])) < 0.01  # faded out
    assert float(np.max(np.abs(np.concatenate(blocks)))) <= 1.0


def test_tone_voices_differ_in_pitch() -> None:
    engine = ToneEngine()
    f0 = {vid: median_f0(collect(engine, PITCH_TEXT, vid), engine.sample_rate) for vid in (1071, 1072)}
    assert f0[1072] / f0[1071] == pytest.approx(1.26, rel=0.03)


def test_tone_cancel_before_start_yields_nothing() -> None:
    engine = ToneEngine()
    token = CancelToken()
    token.cancel()
    assert list(engine.synthesize(PARAGRAPH, engine.voices()[0], SynthesisSettings(), token)) == []


def test_tone_cancel_stops_mid_text() -> None:
    engine = ToneEngine()
    token = CancelToken()
    received = []
    for block in engine.synthesize(PARAGRAPH, engine.voices()[0], SynthesisSettings(), token):
        received.append(block)
        if len(received) == 3:
            token.cancel()
    assert len(received) == 3
    assert sum(map(len, received)) < engine.samples_for(PARAGRAPH)


def test_slow_tone_cancel_from_another_thread_returns_promptly() -> None:
    engine = ToneEngine(delay_per_block_s=0.05)
    token = CancelToken()
    blocks = engine.synthesize(PARAGRAPH, engine.voices()[1], SynthesisSettings(), token)
    count, after_cancel = consume_with_cancel_after(blocks, token, 0.12)
    full_blocks = -(-engine.samples_for(PARAGRAPH) // (engine.sample_rate // 10))
    assert count < full_blocks // 2
    assert after_cancel < 0.5 * full_blocks * 0.05  # far sooner than the uncancelled run


# -- piper helpers (no model) ---------------------------------------------------------------


def test_piper_scales_map_speed_temperature_and_pitch_factor() -> None:
    joe = (0.667, 1.0, 0.8)
    assert piper_scales(joe, SynthesisSettings()) == pytest.approx([0.667, 1.0, 0.8])
    assert piper_scales(joe, SynthesisSettings(temperature=0.5))[0] == pytest.approx(0.667)
    assert piper_scales(joe, SynthesisSettings(temperature=0.0))[0] == pytest.approx(0.3335)
    assert piper_scales(joe, SynthesisSettings(temperature=1.0))[0] == pytest.approx(1.0005)
    assert piper_scales(joe, SynthesisSettings(speed=1.25))[1] == pytest.approx(0.8)
    assert piper_scales(joe, SynthesisSettings(speed=0.8), 1.26)[1] == pytest.approx(1.575)
    assert piper_scales(joe, SynthesisSettings()).dtype == np.float32


def test_soft_limit_passes_quiet_audio_and_bounds_loud_audio() -> None:
    quiet = np.array([0.0, 0.5, -0.89], dtype=np.float32)
    assert np.array_equal(soft_limit(quiet), quiet)
    loud = soft_limit(np.array([0.95, -1.5, 3.0], dtype=np.float32))
    assert np.all(np.abs(loud) <= 1.0) and np.all(np.abs(loud) > 0.9)
    assert loud[1] < 0 < loud[0] < loud[2]


# -- piper (real model, loaded once) ------------------------------------------------------


@pytest.fixture(scope="session")
def piper() -> PiperEngine:
    engine = PiperEngine(threads=2)
    engine.warm_up()
    return engine


@pytest.mark.slow
def test_piper_speaks_a_sentence(piper: PiperEngine) -> None:
    audio = collect(piper, SENTENCE, 1071)
    assert audio.dtype == np.float32
    assert 0.5 < len(audio) / piper.sample_rate < 3.0
    assert rms(audio) > 0.03
    assert float(np.max(np.abs(audio))) <= 1.0
    assert list(piper.synthesize("  ", piper.voices()[0], SynthesisSettings(), CancelToken())) == []


@pytest.mark.slow
def test_piper_speaks_each_sentence_whole_and_streams_it_in_windows(piper: PiperEngine) -> None:
    """No clause splitting any more: one alignment (= one inference) per sentence, even
    for a long sentence with commas; the audio of each comes in several windows."""
    voice = piper.voices()[0]
    text = "One. Two is here. " + PARAGRAPH.split(". ")[2] + "."
    settings = SynthesisSettings(alignment=True)
    blocks = list(piper.synthesize_blocks(text, voice, settings, CancelToken()))
    starts = [i for i, b in enumerate(blocks) if b.alignment is not None]
    assert len(starts) == 3  # three sentences; the third has two commas and stays whole
    assert len(blocks) - starts[2] >= 3  # the long sentence arrives in windows
    assert all(rms(b.audio) > 0.005 for b in blocks)


@pytest.mark.slow
def test_piper_speed_changes_duration(piper: PiperEngine) -> None:
    slow = collect(piper, PITCH_TEXT, 1071, speed=0.8)
    fast = collect(piper, PITCH_TEXT, 1071, speed=1.2)
    # length_scale ratio 1.5, but VITS rounds each phoneme duration up to whole frames,
    # so short phonemes stretch less: about 1.28 measured (stochastic durations).
    assert 1.15 < len(slow) / len(fast) < 1.7


@pytest.mark.slow
def test_piper_bright_and_deep_voices_shift_pitch_not_duration(piper: PiperEngine) -> None:
    audio = {vid: collect(piper, PITCH_TEXT, vid, temperature=0.5) for vid in (1071, 1072, 1073)}
    f0 = {vid: median_f0(a, piper.sample_rate) for vid, a in audio.items()}
    assert 1.12 < f0[1072] / f0[1071] < 1.40  # pitch_factor 1.26
    assert 0.74 < f0[1073] / f0[1071] < 0.94  # pitch_factor 0.84
    for vid in (1072, 1073):
        assert len(audio[vid]) / len(audio[1071]) == pytest.approx(1.0, abs=0.2)


@pytest.mark.slow
def test_piper_cancel_from_another_thread_stops_within_one_inference(
    piper: PiperEngine,
) -> None:
    voice = piper.voices()[0]
    start = time.perf_counter()
    full = list(piper.synthesize(PARAGRAPH, voice, SynthesisSettings(), CancelToken()))
    full_seconds = time.perf_counter() - start

    token = CancelToken()
    blocks = piper.synthesize(PARAGRAPH, voice, SynthesisSettings(), token)
    count, after_cancel = consume_with_cancel_after(blocks, token, 0.02)
    assert count < len(full)
    assert after_cancel < 0.5 * full_seconds


@pytest.mark.slow
def test_piper_cancel_terminates_a_running_inference() -> None:
    """Whole-sentence decode of one long clause: only RunOptions.terminate can stop it."""
    whole = PiperEngine(threads=2, streaming=False)
    whole.warm_up()
    text = " ".join(["the quick brown fox jumps over the lazy dog"] * 6) + "."
    voice = whole.voices()[0]
    start = time.perf_counter()
    assert len(list(whole.synthesize(text, voice, SynthesisSettings(), CancelToken()))) == 1
    one_inference = time.perf_counter() - start

    token = CancelToken()
    threading.Timer(0.05, token.cancel).start()
    start = time.perf_counter()
    received = list(whole.synthesize(text, voice, SynthesisSettings(), token))
    elapsed = time.perf_counter() - start
    assert received == []
    assert elapsed < 0.5 * one_inference


@pytest.mark.slow
def test_piper_is_safe_for_concurrent_requests(piper: PiperEngine) -> None:
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def speak(vid: int) -> None:
        try:
            results[vid] = collect(piper, "Two voices at once. Both should work.", vid)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=speak, args=(vid,)) for vid in (1071, 1072)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert set(results) == {1071, 1072}
    assert all(rms(a) > 0.03 for a in results.values())


# -- espeak -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def espeak() -> EspeakEngine:
    return EspeakEngine()


def test_espeak_speaks_a_sentence(espeak: EspeakEngine) -> None:
    audio = collect(espeak, SENTENCE, 1071)
    assert espeak.sample_rate == 22050
    assert audio.dtype == np.float32
    assert 0.5 < len(audio) / espeak.sample_rate < 4.0
    assert rms(audio) > 0.03
    assert list(espeak.synthesize(" ", espeak.voices()[0], SynthesisSettings(), CancelToken())) == []


def test_espeak_voices_differ(espeak: EspeakEngine) -> None:
    male = collect(espeak, PITCH_TEXT, 1071)
    female = collect(espeak, PITCH_TEXT, 1072)
    deep = collect(espeak, PITCH_TEXT, 1073)
    f0_male = median_f0(male, espeak.sample_rate)
    assert median_f0(female, espeak.sample_rate) / f0_male > 1.3
    assert median_f0(deep, espeak.sample_rate) / f0_male < 0.95
    german = collect(espeak, PITCH_TEXT, 2003)
    assert len(german) != len(male) or not np.array_equal(german, male)


def test_espeak_language_setting_switches_language_keeping_variant(espeak: EspeakEngine) -> None:
    english = collect(espeak, "Guten Morgen, wie geht es dir?", 1071)
    german = collect(espeak, "Guten Morgen, wie geht es dir?", 1071, language="de")
    assert len(german) != len(english) or not np.array_equal(german, english)
    assert espeak_module._voice_name(VoiceCatalogue.for_engine("espeak").get(1072), "de") == "de+f3"
    with pytest.raises(ValueError, match="language"):
        espeak_module._voice_name(VoiceCatalogue.for_engine("espeak").get(1071), "x; rm")


def test_espeak_speed_changes_duration(espeak: EspeakEngine) -> None:
    slow = collect(espeak, PARAGRAPH, 1071, speed=0.8)
    fast = collect(espeak, PARAGRAPH, 1071, speed=1.2)
    assert 1.2 < len(slow) / len(fast) < 1.8


class _CancelOnNthCheck(CancelToken):
    """A token that cancels itself when ``cancelled`` is read for the n-th time."""

    __slots__ = ("_checks_left",)

    def __init__(self, n: int) -> None:
        super().__init__()
        self._checks_left = n

    @property
    def cancelled(self) -> bool:
        self._checks_left -= 1
        if self._checks_left <= 0:
            self.cancel()
        return super().cancelled


def test_espeak_cancel_stops_between_sentences(espeak: EspeakEngine) -> None:
    voice = espeak.voices()[0]
    full = list(espeak.synthesize(PARAGRAPH, voice, SynthesisSettings(), CancelToken()))
    assert len(full) == 5  # one block per sentence
    token = CancelToken()
    received = []
    for block in espeak.synthesize(PARAGRAPH, voice, SynthesisSettings(), token):
        received.append(block)
        token.cancel()
    assert len(received) == 1


def test_espeak_cancel_aborts_inside_a_sentence(espeak: EspeakEngine) -> None:
    """The synth callback sees the cancel (3rd check) and returns 1: espeak stops early."""
    sentence = PARAGRAPH.split(". ")[2] + "."
    library = espeak_module._library()
    with library.lock:
        whole = library.synth(sentence, "en-us", 175, 50, CancelToken())
        cut = library.synth(sentence, "en-us", 175, 50, _CancelOnNthCheck(3))
    assert len(whole) / espeak.sample_rate > 3.0
    assert 0 < len(cut) < len(whole) / 4
    voice = espeak.voices()[0]
    assert list(espeak.synthesize(sentence, voice, SynthesisSettings(), _CancelOnNthCheck(3))) == []
