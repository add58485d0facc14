"""Word alignment (issue 13): text words, phoneme -> word mapping, spans from durations."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from rxtts.engine import WordTiming
from rxtts.server.engines import CancelToken, PiperEngine, SynthesisSettings
from rxtts.server.engines.alignment import (
    ONSET_FRACTION,
    PhonemeTimes,
    TextWord,
    phoneme_ids,
    phoneme_labels,
    phoneme_times,
    sentence_word_timings,
    text_words,
)
from rxtts.server.engines.piper import PIPER_VOICES

SENTENCES = [
    "He came from the station at 10:30.",
    "Take it from the top, and go to the end of the line.",
    "I paid $25.50 for three books, don't you think that's a lot?",
    "Dr. Smith lives at 221B Baker St. in London.",
    "The U.S.A. has fifty states; it's big!",
    "Well... I'm not sure - maybe?",
    "On May 5th, 2024, we met 3 friends at 7 pm.",
    '"Hello," she said (quietly), "are you there?"',
    "It costs 99% less -- honestly!",
    "Supercalifragilisticexpialidocious is a long word, and a is short.",
    "Call me at 555-0123 or e-mail bob@example.com tomorrow.",
    "One. Two is here. Three!",
    "What a day it was: sunny, warm and bright.",
    "From the mountains to the sea, from the sea to the sky.",
]


# -- pure functions ----------------------------------------------------------------------


def test_text_words_trim_punctuation_and_index_the_text() -> None:
    text = '"Hello," she said - (quietly)... don\'t stop! 10:30 $5'
    words = text_words(text)
    assert [w.word for w in words] == ["Hello", "she", "said", "quietly", "don't", "stop", "10:30", "$5"]
    assert all(text[w.start : w.end] == w.word for w in words)
    assert words[0] == TextWord("Hello", 1, 6)
    assert text_words(" -- ... ") == []


def test_phoneme_ids_match_piper_and_name_their_phoneme() -> None:
    from piper.phoneme_ids import phonemes_to_ids

    config = json.loads(PiperEngine().config_path.read_text("utf-8"))
    id_map = config["phoneme_id_map"]
    phonemes = [*"həlˈoʊ, wˈɜːld.", "☃"]  # an unknown symbol is skipped, as piper does
    ids, owner = phoneme_ids(phonemes, id_map)
    assert ids == phonemes_to_ids(phonemes, id_map)
    assert len(owner) == len(ids) and owner[:2] == [-1, -1] and owner[-1] == len(phonemes)
    assert owner[2:4] == [0, 0]  # "h" and its pad
    assert len(phonemes) - 1 not in owner  # the unknown symbol got no ids


def test_phoneme_times_sum_durations_times_hop() -> None:
    owner = [-1, -1, 0, 0, 1, 1, 2]
    times = phoneme_times([1, 2, 3, 0, 1, 1, 4], owner, 2, 256)
    assert times == PhonemeTimes((3 * 256, 6 * 256), 12 * 256)


def test_merged_function_words_are_split_at_their_phonemes() -> None:
    # espeak speaks "from the" as one phoneme word, alone they are "fɹʌm" and "ðə".
    sentence = list("fɹʌmðə tˈɑːp.")
    labels = phoneme_labels([sentence], ["fɹʌm", "ðə", "tˈɑːp."])[0]
    assert labels == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2]  # the space and "." go left


def test_a_word_without_phonemes_shares_its_neighbours_span_inexactly() -> None:
    words = [TextWord("a", 0, 1), TextWord("b", 2, 3), TextWord("c", 4, 5)]
    sentence = list("xy")
    times = PhonemeTimes((100, 300), 500)
    timings, nxt = sentence_word_timings(words, sentence, [0, 2], times, 0, last_sentence=True)
    assert nxt == 3
    assert [(t.start_sample, t.end_sample, t.exact) for t in timings] == [
        (100, 200, False),
        (200, 300, False),
        (300, 500, True),
    ]
    scaled, _ = sentence_word_timings(
        words, sentence, [0, 2], times, 0, last_sentence=True, offset=10, scale=2.0
    )
    assert [(t.start_sample, t.end_sample) for t in scaled] == [(60, 110), (110, 160), (160, 260)]


def test_a_word_starts_halfway_through_its_onset_consonants() -> None:
    # "stop it": s t ˈ ɑ p, space, ɪ t; "stop" is heard from the middle of "st(ˈ)",
    # the vowel-initial "it" from its first phoneme.
    words = text_words("stop it")
    sentence = ["s", "t", "ˈ", "ɑ", "p", " ", "ɪ", "t"]
    times = PhonemeTimes((100, 200, 260, 300, 500, 600, 700, 800), 1000)
    timings, _ = sentence_word_timings(
        words, sentence, [0, 0, 0, 0, 0, 0, 1, 1], times, 0, last_sentence=True
    )
    assert ONSET_FRACTION == 0.5
    assert [(t.start_sample, t.end_sample) for t in timings] == [(200, 700), (700, 1000)]
    vowelless = sentence_word_timings(
        [TextWord("hmm", 0, 3)], ["h", "m"], [0, 0], PhonemeTimes((50, 90), 200), 0, last_sentence=True
    )[0]
    assert (vowelless[0].start_sample, vowelless[0].end_sample) == (50, 200)


def test_word_timing_rejects_reversed_spans() -> None:
    with pytest.raises(ValueError, match="sample span"):
        WordTiming("x", 0, 1, 10, 5)
    with pytest.raises(ValueError, match="char span"):
        WordTiming("x", 3, 1, 0, 5)


# -- real voice ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def piper() -> PiperEngine:
    engine = PiperEngine(threads=2)
    engine.warm_up()
    return engine


def aligned(engine: PiperEngine, text: str, voice_index: int = 0) -> tuple[list[WordTiming], int, int]:
    """(word timings of the whole call, audio samples, number of sentences aligned)."""
    timings, total, sentences = aligned_sentences(engine, text, voice_index)
    return timings, total, len(sentences)


def aligned_sentences(
    engine: PiperEngine, text: str, voice_index: int = 0
) -> tuple[list[WordTiming], int, list[tuple[WordTiming, ...]]]:
    """(word timings, audio samples, the words of each aligned sentence)."""
    blocks = list(
        engine.synthesize_blocks(
            text, PIPER_VOICES[voice_index], SynthesisSettings(alignment=True), CancelToken()
        )
    )
    alignments = [b.alignment for b in blocks if b.alignment is not None]
    assert all(a.sample_rate == engine.sample_rate for a in alignments)
    return [w for a in alignments for w in a.words], sum(map(len, blocks)), [a.words for a in alignments]


@pytest.mark.slow
@pytest.mark.parametrize("text", SENTENCES)
def test_every_word_gets_a_span_contiguous_inside_its_sentence(piper: PiperEngine, text: str) -> None:
    timings, total, sentences = aligned_sentences(piper, text)
    expected = text_words(text)
    assert [(t.word, t.char_start, t.char_end) for t in timings] == [
        (w.word, w.start, w.end) for w in expected
    ]
    assert all(text[t.char_start : t.char_end] == t.word for t in timings)  # offsets index the input
    assert timings[-1].end_sample == total  # the last word ends with the audio
    # the first word is heard after the lead (BOS padding, onset half), within 250 ms
    assert 0 < timings[0].start_sample < 0.25 * piper.sample_rate
    for sentence in sentences:
        for before, after in itertools.pairwise(sentence):
            assert before.end_sample == after.start_sample  # no overlap, no gap in a sentence
    for before, after in itertools.pairwise(sentences):
        assert (
            before[-1].end_sample <= after[0].start_sample < before[-1].end_sample + 0.4 * piper.sample_rate
        )
    assert all(t.end_sample - t.start_sample >= 256 for t in timings)  # each at least a frame
    # Measured: every word of these sentences is timed from its own phonemes.
    assert sum(not t.exact for t in timings) <= 1


def _acoustic_onsets(audio: np.ndarray, rate: int) -> list[float]:
    """Seconds where sound starts after >= 100 ms of quiet (5 ms RMS > 5 % of the peak)."""
    hop = rate // 200
    frames = audio[: audio.size // hop * hop].reshape(-1, hop).astype(np.float64)
    loud = np.sqrt(np.mean(frames**2, axis=1)) > 0.05 * float(np.abs(audio).max())
    return [i / 200 for i in range(20, loud.size) if loud[i] and not loud[i - 20 : i].any()]


@pytest.mark.slow
def test_words_after_a_pause_start_where_their_sound_starts(piper: PiperEngine) -> None:
    # Before issue 13's onset rule a word started at its first phoneme: ~50 ms before
    # it was audible (stop closures, weak fricatives).
    text = (
        "Tonight, she said, the boats come back. Then, quietly, everyone waits. "
        "Fishing, cooking, cleaning: the work goes on. Happily, nobody complained."
    )
    blocks = list(
        piper.synthesize_blocks(text, PIPER_VOICES[0], SynthesisSettings(alignment=True), CancelToken())
    )
    timings = [w for b in blocks if b.alignment is not None for w in b.alignment.words]
    audio = np.concatenate([np.asarray(b) for b in blocks])  # the same call: piper's noise differs per call
    rate = piper.sample_rate
    starts = [t.start_sample / rate for t in timings]
    errors = []
    for onset in _acoustic_onsets(audio, rate):
        nearest = min(starts, key=lambda s: abs(s - onset))
        if abs(nearest - onset) < 0.15:
            errors.append(nearest - onset)
    assert len(errors) >= 6
    assert abs(float(np.median(errors))) < 0.025, errors


@pytest.mark.slow
def test_spans_follow_what_is_said(piper: PiperEngine) -> None:
    timings, _, _ = aligned(piper, SENTENCES[9])
    length = {t.word: t.end_sample - t.start_sample for t in timings}
    assert length["Supercalifragilisticexpialidocious"] > 5 * length["is"]
    timings, _, _ = aligned(piper, "The number 2024 and the word it.")
    length = {t.word: t.end_sample - t.start_sample for t in timings}
    assert length["2024"] > 3 * length["it"]  # "two thousand twenty four" is long


@pytest.mark.slow
def test_merged_words_in_a_real_sentence_each_get_time(piper: PiperEngine) -> None:
    timings, _, sentences = aligned(piper, SENTENCES[13])
    assert sentences == 1
    spans = [(t.word, t.end_sample - t.start_sample) for t in timings]
    assert [w for w, _ in spans] == [
        "From", "the", "mountains", "to", "the", "sea", "from", "the", "sea", "to", "the", "sky",
    ]  # fmt: skip
    assert all(samples >= 512 for _, samples in spans)  # "from the" is one espeak word


@pytest.mark.slow
def test_durations_times_hop_equal_the_audio_of_each_sentence(piper: PiperEngine) -> None:
    text = "One. Two is here. Three!"
    blocks = list(
        piper.synthesize_blocks(text, PIPER_VOICES[0], SynthesisSettings(alignment=True), CancelToken())
    )
    starts = [i for i, b in enumerate(blocks) if b.alignment is not None]
    assert len(starts) == 3
    for i, j in zip(starts, [*starts[1:], len(blocks)], strict=True):
        words = blocks[i].alignment.words
        audio = sum(len(b) for b in blocks[:j])
        assert words[-1].end_sample == audio


@pytest.mark.slow
def test_alignment_off_by_default(piper: PiperEngine) -> None:
    blocks = list(
        piper.synthesize_blocks("Hello there.", PIPER_VOICES[0], SynthesisSettings(), CancelToken())
    )
    assert blocks and all(b.alignment is None for b in blocks)
    assert np.asarray(blocks[0]).dtype == np.float32
