"""Silence detection, used to measure time to first audio (TTFA).

TTFA is the time of the first *non-silent* sample, not of the first audio frame: engines
often lead with a few milliseconds of digital silence. Levels are RMS in dBFS relative to
full scale (int16: 32768, float: 1.0), so a full-scale sine measures about -3 dBFS.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from rxtts.audio.pcm import FULL_SCALE

DEFAULT_THRESHOLD_DBFS: Final = -50.0
"""RMS level above which a window counts as sound."""

DEFAULT_WINDOW: Final = 64
"""Window length in samples (about 3 ms at 22050 Hz)."""

_BLOCK_WINDOWS: Final = 4096  # windows scanned per vectorised step (early exit between)


def _normalised_power(samples: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Per-frame power relative to full scale (mean over channels for 2-D input)."""
    arr: np.ndarray[Any, Any] = np.asarray(samples)
    if arr.dtype == np.int16:
        x = arr.astype(np.float64) / FULL_SCALE
    elif np.issubdtype(arr.dtype, np.floating):
        x = arr.astype(np.float64)
    else:
        raise TypeError(f"expected int16 or float samples, got dtype {arr.dtype}")
    if x.ndim == 2:
        return np.asarray(np.mean(x * x, axis=1), dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"expected 1-D or (frames, channels) samples, got shape {x.shape}")
    return x * x


def rms_dbfs(samples: npt.ArrayLike) -> float:
    """RMS level of ``samples`` in dBFS; ``-inf`` for empty or all-zero input."""
    power = _normalised_power(samples)
    if power.size == 0:
        return -math.inf
    mean = float(np.mean(power))
    return 10.0 * math.log10(mean) if mean > 0.0 else -math.inf


def first_non_silent_sample(
    samples: npt.ArrayLike,
    threshold_dbfs: float = DEFAULT_THRESHOLD_DBFS,
    window: int = DEFAULT_WINDOW,
) -> int | None:
    """Index of the first sample of the first window whose RMS exceeds ``threshold_dbfs``.

    Windows are consecutive, non-overlapping, aligned at 0 (``[k*window, (k+1)*window)``);
    a shorter last window is measured over the samples it has. Returns ``None`` when every
    window is silent. Works for int16 and float input, 1-D or ``(frames, channels)``.

    Raises:
        ValueError: if ``window < 1``.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    power = _normalised_power(samples)
    limit = 10.0 ** (threshold_dbfs / 10.0)  # compare mean power, no sqrt/log per window
    step = window * _BLOCK_WINDOWS
    for start in range(0, power.size, step):
        block = power[start : start + step]
        full = block.size // window
        means = block[: full * window].reshape(full, window).mean(axis=1)
        if block.size % window:
            means = np.append(means, block[full * window :].mean())
        loud = np.flatnonzero(means > limit)
        if loud.size:
            return start + int(loud[0]) * window
    return None


def is_silent(
    samples: npt.ArrayLike,
    threshold_dbfs: float = DEFAULT_THRESHOLD_DBFS,
    window: int = DEFAULT_WINDOW,
) -> bool:
    """True when no window of ``samples`` exceeds ``threshold_dbfs`` (empty input is silent)."""
    return first_non_silent_sample(samples, threshold_dbfs, window) is None
