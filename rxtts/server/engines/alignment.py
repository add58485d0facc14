"""Word alignment from phoneme durations: which samples of a sentence speak which word.

Pure functions (no piper import); :mod:`rxtts.server.engines.piper` feeds them the
duration predictor's output. Decisions:

- Words are the whitespace-separated tokens of the text with leading and trailing
  punctuation trimmed (``"Hello,"`` -> ``Hello`` at [0, 5), as in PROTOCOL 3.3); a token
  that is only punctuation (``-``, ``...``) is not a word.
- espeak phonemises a sentence as a whole: it merges function words (``from the`` ->
  ``fɹʌmðə``, ``Well... I'm`` -> ``wˈɛlaɪm``), uses weak forms and expands numbers into
  several phoneme words, so sentence phoneme words do not map 1:1 to text words. Each text
  word is therefore phonemised alone (about 0.1 ms a word), the results are concatenated
  with word labels, and this reference is matched against the sentence's phonemes with
  :class:`difflib.SequenceMatcher` (stress marks, spaces and punctuation ignored on both
  sides). A sentence phoneme takes the label of the reference phoneme it matches
  (proportionally inside a replaced run), and labels are forced to be monotonic.
- The audio is synthesised from the sentence's own phonemes, so alignment never changes
  what is heard; it only costs the word-by-word phonemisation and the match.
- A word starts where it is heard to start: halfway through its onset, i.e. between its
  first phoneme and its first vowel (:data:`ONSET_FRACTION`); a vowel-initial word starts
  at its first phoneme. A stop's closure is silent and a fricative's or an /h/'s start is
  weak, so listeners (and ASR word times) place such a word's start later than its first
  phoneme. Measured on joe against Whisper tiny.en word starts over 236 words (two text
  sets, ``rxtts.bench.words``): median error 63/65 ms and bias -38/-44 ms at the first
  phoneme, 41/49 ms and -1/-1 ms at the midpoint, 51/67 ms and +31/+45 ms at the vowel.
  The phoneme times themselves match the audio (the high-band energy of /s ʃ z/ peaks
  within one frame of their predicted spans), so this is where a word is heard, not a
  correction of the model.
- A word ends where the next word starts (spans inside a sentence are contiguous: a
  pause, and the first half of the next word's onset, belong to the word before); the
  last word of a sentence ends with the sentence. A sentence's lead (BOS padding and the
  first word's onset half) belongs to no word. A word left without phonemes shares its
  neighbour's span equally (``exact=False``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

from rxtts.engine import WordTiming

__all__ = [
    "ONSET_FRACTION",
    "PhonemeTimes",
    "TextWord",
    "phoneme_ids",
    "phoneme_labels",
    "phoneme_times",
    "sentence_word_timings",
    "text_words",
]

BOS, EOS, PAD = "^", "$", "_"
"""piper's sentence markers and the pad id put after every phoneme (piper.const)."""

_TOKEN = re.compile(r"\S+")
_TRIM = "\"'`([{<«‹“‘„¿¡*_~-–—…,.;:!?)]}>»›”’"
_STRESS = frozenset("ˈˌ")
_PUNCTUATION = frozenset(" \t\n" + ",.;:!?¡¿—–-…\"'()")
_IGNORED = _STRESS | _PUNCTUATION
_VOWELS = frozenset("aeiouyæɐɑɒɔəɘɚɛɜɝɞɤɨɪɯɵɶʉʊʌʏøœᵻ")

ONSET_FRACTION = 0.5
"""Where in its onset (first phoneme .. first vowel) a word is heard to start (module doc)."""


@dataclass(frozen=True, slots=True)
class TextWord:
    """One word of the input text."""

    word: str
    """The word, ``text[start:end]``."""
    start: int
    """Offset of its first character."""
    end: int
    """Offset just past its last character."""


def text_words(text: str) -> list[TextWord]:
    """The words of ``text`` with their char offsets (punctuation-only tokens skipped)."""
    words: list[TextWord] = []
    for match in _TOKEN.finditer(text):
        token = match.group()
        stripped = token.lstrip(_TRIM)
        start = match.start() + len(token) - len(stripped)
        stripped = stripped.rstrip(_TRIM)
        if stripped:
            words.append(TextWord(stripped, start, start + len(stripped)))
    return words


def phoneme_ids(phonemes: Sequence[str], id_map: Mapping[str, Sequence[int]]) -> tuple[list[int], list[int]]:
    """piper's ids for one sentence, and for each id the phoneme it belongs to.

    Same ids as ``piper.phoneme_ids.phonemes_to_ids`` (BOS, PAD, each phoneme then PAD,
    EOS; unknown phonemes are skipped). The owner of the BOS group is -1, of phoneme
    ``p`` and its PAD ``p``, of EOS ``len(phonemes)``.
    """
    ids = [*id_map[BOS], *id_map[PAD]]
    owner = [-1] * len(ids)
    pad = list(id_map[PAD])
    for index, phoneme in enumerate(phonemes):
        if phoneme not in id_map:
            continue
        group = [*id_map[phoneme], *pad]
        ids.extend(group)
        owner.extend([index] * len(group))
    ids.extend(id_map[EOS])
    owner.extend([len(phonemes)] * len(id_map[EOS]))
    return ids, owner


@dataclass(frozen=True, slots=True)
class PhonemeTimes:
    """Where each phoneme of one sentence starts, in model samples from the sentence start."""

    starts: tuple[int, ...]
    """Start sample of each phoneme (after the BOS group)."""
    total: int
    """Samples in the sentence: sum of all durations times the hop length."""


def phoneme_times(
    durations: Sequence[float], owner: Sequence[int], n_phonemes: int, hop: int
) -> PhonemeTimes:
    """Per-phoneme start samples from per-id durations in frames (the model's ``Ceil``)."""
    if len(durations) != len(owner):
        raise ValueError(f"{len(durations)} durations for {len(owner)} phoneme ids")
    per_phoneme = [0] * (n_phonemes + 2)  # BOS group, phonemes, EOS
    for frames, who in zip(durations, owner, strict=True):
        per_phoneme[who + 1] += round(frames) * hop
    starts: list[int] = []
    position = per_phoneme[0]
    for samples in per_phoneme[1:-1]:
        starts.append(position)
        position += samples
    return PhonemeTimes(tuple(starts), position + per_phoneme[-1])


def phoneme_labels(sentences: Sequence[Sequence[str]], word_phonemes: Sequence[str]) -> list[list[int]]:
    """For each phoneme of each sentence, the index of the text word it belongs to.

    ``word_phonemes[j]`` is word j phonemised alone. Labels never decrease across the
    sentences; stress marks go with the next sound, spaces and punctuation with the one
    before them.
    """
    ref: list[str] = []
    ref_word: list[int] = []
    for j, phonemes in enumerate(word_phonemes):
        for char in phonemes:
            if char not in _IGNORED:
                ref.append(char)
                ref_word.append(j)
    hyp: list[str] = []
    hyp_at: list[tuple[int, int]] = []
    for k, sentence in enumerate(sentences):
        for p, phoneme in enumerate(sentence):
            for char in phoneme:
                if char not in _IGNORED:
                    hyp.append(char)
                    hyp_at.append((k, p))
    hyp_word = _match_labels(hyp, ref, ref_word)
    key: list[dict[int, int]] = [{} for _ in sentences]
    for (k, p), word in zip(hyp_at, hyp_word, strict=True):
        key[k].setdefault(p, word)
    return [_spread(sentence, key[k]) for k, sentence in enumerate(sentences)]


def _match_labels(hyp: list[str], ref: list[str], ref_word: list[int]) -> list[int]:
    """Word label of each hypothesis char: matched, proportional in replaced runs, else the
    previous label; then made monotonic."""
    labels = [-1] * len(hyp)
    matcher = SequenceMatcher(None, hyp, ref, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for d in range(i2 - i1):
                labels[i1 + d] = ref_word[j1 + d]
        elif tag == "replace":
            for d in range(i2 - i1):
                labels[i1 + d] = ref_word[j1 + d * (j2 - j1) // (i2 - i1)]
    current = 0
    for i, label in enumerate(labels):
        current = max(current, label)
        labels[i] = current
    return labels


def _spread(sentence: Sequence[str], key: Mapping[int, int]) -> list[int]:
    """Labels of all phonemes from those of the key phonemes (index -> word): spaces and
    punctuation go with the sound before them, stress marks with the sound after them."""
    n = len(sentence)
    if not key:
        return [0] * n
    before: list[int] = []
    current = min(key.values())
    for p in range(n):
        current = key.get(p, current)
        before.append(current)
    after = [0] * n
    current = max(key.values())
    for p in range(n - 1, -1, -1):
        current = key.get(p, current)
        after[p] = current
    return [key[p] if p in key else before[p] if _is_pause(sentence[p]) else after[p] for p in range(n)]


def _is_pause(phoneme: str) -> bool:
    return all(char in _PUNCTUATION for char in phoneme)


def sentence_word_timings(
    words: Sequence[TextWord],
    sentence: Sequence[str],
    labels: Sequence[int],
    times: PhonemeTimes,
    first_word: int,
    *,
    last_sentence: bool,
    offset: int = 0,
    scale: float = 1.0,
) -> tuple[list[WordTiming], int]:
    """The timings of the words that start in this sentence, and the next word's index.

    ``first_word`` is the first word not yet timed; words up to the highest label (to the
    last word for the ``last_sentence``) start here. Model samples are divided by
    ``scale`` (a derived voice's pitch factor: its audio is resampled by 1/f) and shifted
    by ``offset`` (the sentence's first sample in the call's audio).
    """
    last = len(words) - 1 if last_sentence else max(labels, default=first_word - 1)
    if last < first_word:
        return [], first_word
    onsets: dict[int, int] = {}
    nuclei: dict[int, int] = {}
    for p, word in enumerate(labels):
        if first_word <= word <= last and word not in onsets and not _is_pause(sentence[p]):
            onsets[word] = times.starts[p]
        if word in onsets and word not in nuclei and _VOWELS.intersection(sentence[p]):
            nuclei[word] = times.starts[p]
    anchors = {j: at + round(ONSET_FRACTION * (nuclei.get(j, at) - at)) for j, at in onsets.items()}
    starts, exact = _fill_anchors(anchors, first_word, last, times.total)

    def at(sample: float) -> int:
        return offset + round(sample / scale)

    timings = []
    for j in range(first_word, last + 1):
        end = starts[j + 1 - first_word] if j < last else times.total
        text_word, i = words[j], j - first_word
        timings.append(
            WordTiming(text_word.word, text_word.start, text_word.end, at(starts[i]), at(end), exact[i])
        )
    return timings, last + 1


def _fill_anchors(
    anchors: Mapping[int, int], first: int, last: int, total: int
) -> tuple[list[float], list[bool]]:
    """Start of each word ``first..last``: its anchor, or an equal share of the span of the
    word before it when it has none. The first word starts at its anchor, without one at
    0 (the sentence's first sample)."""
    count = last - first + 1
    starts = [0.0] * count
    exact = [True] * count
    exact[0] = first in anchors
    bounds = [0, *(j - first for j in sorted(anchors) if j > first), count]
    for a, b in itertools.pairwise(bounds):
        begin = float(anchors.get(a + first, 0))
        end = float(total) if b == count else float(anchors[b + first])
        share = (end - begin) / (b - a)
        for i in range(a, b):
            starts[i] = begin + share * (i - a)
            exact[i] = exact[i] and b - a == 1
    return starts, exact
