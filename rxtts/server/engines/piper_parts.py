"""Pure pieces of the piper engine (no piper import): per-call caps, decoder windows,
silence edges, the limiter and the model's scales (split out of :mod:`.piper`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from rxtts.engine import AudioBlock, SynthesisSettings

__all__ = [
    "DEFAULT_MARGINS",
    "DEFAULT_WINDOWS",
    "LEAD_SILENCE_S",
    "MAX_AUDIO_SECONDS",
    "MAX_PHONEMES",
    "TAIL_SILENCE_DEFAULT_S",
    "TAIL_SILENCE_S",
    "piper_scales",
    "silent_edges",
    "soft_limit",
    "split_phonemes",
    "tail_silence_seconds",
    "window_bounds",
]

_LIMIT_KNEE = 0.9

DEFAULT_WINDOWS: tuple[int, ...] = (16, 48, 144, 432)
"""Decoder window sizes in frames; the last repeats. The first is small for early audio
(16 frames = 186 ms of joe); each next one is 3x, so it is decoded well before the audio
already yielded has played (decoder RTF ~0.05 per frame on 2 threads)."""
DEFAULT_MARGINS: tuple[int, int] = (48, 40)
"""Frames of context (before, after) decoded around each window and dropped: the
streaming-vits defaults; measured on joe, (32, 24) leaves up to 2e-4 and (24, 16) up to
2e-1 of difference from the whole decode, (48, 40) ~1e-5."""

MAX_PHONEMES = 400
"""Phonemes per inference at most; a longer sentence is split at a word gap (memory grows
~1.25 MB per character of one inference)."""
MAX_AUDIO_SECONDS = 120.0
"""Audio per ``synthesize`` call at most (a chunk is <= 500 characters, ~40 s of speech)."""
LEAD_SILENCE_S = 0.15
"""Leading engine silence of a chunk kept at most."""
TAIL_SILENCE_S = {".": 0.35, "!": 0.35, "?": 0.35, ",": 0.2, ";": 0.2, ":": 0.2}
"""Trailing engine silence kept after a chunk ending in this mark; other endings keep
:data:`TAIL_SILENCE_DEFAULT_S`. Measured on joe at speed 1 (-50/-60 dBFS): leads 23-64 ms,
tails 107-308 ms (after a comma <= 186 ms); at speed 0.5 both double, and a chunk seam
reached ~0.65 s (issue 11). The caps sit just above natural speech, so they cut only such
overlong pauses: the seam between two chunks is at most tail + lead. When a tail is cut,
the last word's ``end_sample`` (the pause belongs to it) may pass the audio by the cut."""
TAIL_SILENCE_DEFAULT_S = 0.15
_SILENCE_DBFS = -50.0


def split_phonemes(sentence: list[str], limit: int = MAX_PHONEMES) -> list[list[str]]:
    """``sentence`` in pieces of at most ``limit`` phonemes, cut after a word gap if any."""
    out: list[list[str]] = []
    while len(sentence) > limit:
        gaps = [i for i in range(limit // 2, limit) if sentence[i] == " "]
        cut = gaps[-1] + 1 if gaps else limit
        out.append(sentence[:cut])
        sentence = sentence[cut:]
    return [*out, sentence] if sentence else out


def tail_silence_seconds(text: str) -> float:
    """The pause a chunk's text ends with: longer after a sentence end than after a comma."""
    end = text.rstrip().rstrip("\"')]}\u201d\u2019*_")
    return TAIL_SILENCE_S.get(end[-1:], TAIL_SILENCE_DEFAULT_S)


def window_bounds(
    frames: int, windows: Sequence[int], margins: tuple[int, int]
) -> Iterator[tuple[int, int, int, int]]:
    """``(a, b, lo, hi)`` per decoder window: output frames ``[a, b)``, decoded frames
    ``[lo, hi)`` (the margins clipped to the sentence). A remainder shorter than half the
    next window joins the current one: a short tail would pay full margins for little
    audio (6 words, 126 frames: windows 16 + 110, 1.4x the frames of one decode instead
    of 2.4x with 16 + 48 + 62). With 3x growth a window is then at most 2.5x its nominal
    size; the worst case, window 2 (<= 120 + 88 frames, ~115 ms on 2 threads), is still
    decoded before the 186 ms of window 1 have played."""
    left, right = margins
    a = index = 0
    while a < frames:
        b = min(a + windows[min(index, len(windows) - 1)], frames)
        if frames - b < windows[min(index + 1, len(windows) - 1)] // 2:
            b = frames
        yield a, b, max(0, a - left), min(frames, b + right)
        a, index = b, index + 1


def _loud(audio: np.ndarray, window: int) -> np.ndarray:
    """Per ``window`` samples: whether the window is above the silence threshold."""
    full = audio.size // window * window
    power = np.square(audio[:full].astype(np.float64)).reshape(-1, window).mean(axis=1)
    limit = 10.0 ** (_SILENCE_DBFS / 10.0)
    loud = power > limit
    if full < audio.size:
        loud = np.append(loud, float(np.mean(np.square(audio[full:].astype(np.float64)))) > limit)
    return np.asarray(loud, dtype=bool)


def silent_edges(audio: np.ndarray, window: int = 64) -> tuple[int, int]:
    """Samples of silence at the start and at the end of ``audio`` (all of it if silent)."""
    loud = np.flatnonzero(_loud(audio, window)) if audio.size else np.zeros(0, np.int64)
    if not loud.size:
        return audio.size, audio.size
    return int(loud[0]) * window, max(0, audio.size - (int(loud[-1]) + 1) * window)


def piper_scales(
    defaults: tuple[float, float, float], settings: SynthesisSettings, pitch_factor: float = 1.0
) -> np.ndarray:
    """The model's ``scales`` input ``[noise_scale, length_scale, noise_w]``.

    ``defaults`` are the model's own three values. Temperature t maps to
    ``noise_scale * (0.5 + t)`` (0.5 -> unchanged); ``length_scale`` is multiplied by the
    pitch factor (undone by resampling) and divided by the speed.
    """
    noise, length, noise_w = defaults
    if settings.temperature is not None:
        noise *= 0.5 + settings.temperature
    length = length * pitch_factor / settings.speed
    return np.array([noise, length, noise_w], dtype=np.float32)


def soft_limit(audio: np.ndarray) -> AudioBlock:
    """Pass samples below 0.9 unchanged; compress the rest smoothly into (0.9, 1.0)."""
    magnitude = np.abs(audio)
    over = magnitude > _LIMIT_KNEE
    if np.any(over):
        headroom = 1.0 - _LIMIT_KNEE
        squashed = _LIMIT_KNEE + headroom * np.tanh((magnitude[over] - _LIMIT_KNEE) / headroom)
        audio = audio.copy()
        audio[over] = np.sign(audio[over]) * squashed
    return np.asarray(audio, dtype=np.float32)
