"""Linear PCM helpers: signed 16-bit little-endian <-> float32.

The wire format of every ``pcm_*`` output is mono s16le (PROTOCOL §8). Inside rxtts audio is
carried as ``int16`` arrays; engines and DSP code may prefer ``float32`` in ``[-1, 1)``.
The scale is ``32768`` both ways, so ``int16 -> float32 -> int16`` is lossless.
"""

from __future__ import annotations

from typing import Any, Final, TypeAlias, cast

import numpy as np
import numpy.typing as npt

Int16Array: TypeAlias = npt.NDArray[np.int16]
"""An array of signed 16-bit samples (1-D mono, or ``(frames, channels)``)."""

Float32Array: TypeAlias = npt.NDArray[np.float32]
"""An array of float samples in ``[-1, 1)`` (1-D mono, or ``(frames, channels)``)."""

FULL_SCALE: Final = 32768.0
"""Magnitude of int16 full scale: ``int16 / FULL_SCALE`` lies in ``[-1, 1)``."""

_S16LE: Final = np.dtype("<i2")


def pcm16_view(data: bytes | bytearray | memoryview) -> Int16Array:
    """Zero-copy, read-only int16 view of s16le bytes (PROTOCOL §8: mono s16le).

    Raises:
        ValueError: if the buffer holds an odd number of bytes (a torn sample).
    """
    size = memoryview(data).nbytes
    if size % 2:
        raise ValueError(f"PCM16 data must have an even number of bytes, got {size}")
    view = np.frombuffer(data, dtype=_S16LE)
    view.flags.writeable = False
    return view


def _as_int16(data: bytes | bytearray | memoryview | npt.ArrayLike) -> Int16Array:
    if isinstance(data, bytes | bytearray | memoryview):
        return pcm16_view(data)
    arr = np.asarray(data)
    if arr.dtype != np.int16:
        raise TypeError(f"expected int16 samples or s16le bytes, got dtype {arr.dtype}")
    return cast(Int16Array, arr)


def pcm16_to_float32(data: bytes | bytearray | memoryview | npt.ArrayLike) -> Float32Array:
    """Convert s16le bytes or an int16 array to float32 in ``[-1, 1)`` (``x / 32768``)."""
    samples = _as_int16(data)
    out = samples.astype(np.float32)
    out *= np.float32(1.0 / FULL_SCALE)
    return out


def float32_to_pcm16(x: npt.ArrayLike) -> Int16Array:
    """Convert float samples (nominally ``[-1, 1]``) to int16: scale by 32768, round, clip.

    Rounding is to nearest, ties to even; values beyond full scale saturate at
    ``-32768`` / ``32767`` instead of wrapping around. NaN becomes 0.
    """
    arr = np.asarray(x, dtype=np.float64)
    scaled = np.rint(np.nan_to_num(arr, nan=0.0) * FULL_SCALE)
    np.clip(scaled, -FULL_SCALE, FULL_SCALE - 1.0, out=scaled)
    return scaled.astype(np.int16)


def as_pcm16(samples: npt.ArrayLike) -> Int16Array:
    """Return int16 samples unchanged, convert float samples with :func:`float32_to_pcm16`.

    Raises:
        TypeError: for any other dtype (e.g. G.711 ``uint8`` codes, which need decoding).
    """
    arr: np.ndarray[Any, Any] = np.asarray(samples)
    if arr.dtype == np.int16:
        return cast(Int16Array, arr)
    if np.issubdtype(arr.dtype, np.floating):
        return float32_to_pcm16(arr)
    raise TypeError(f"expected int16 or float samples, got dtype {arr.dtype}")


def to_bytes(samples: npt.ArrayLike) -> bytes:
    """Serialise int16 (or float, converted) samples as s16le bytes (PROTOCOL §8)."""
    pcm = as_pcm16(samples)
    return pcm.astype(_S16LE, copy=False).tobytes()
