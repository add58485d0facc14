"""16-bit PCM WAV read/write with the stdlib ``wave`` module.

Mono audio is a 1-D array; multi-channel audio (e.g. the two-voice dialogue demo) is a
``(frames, channels)`` array, written interleaved as WAV requires.
"""

from __future__ import annotations

import io
import os
import wave
from typing import BinaryIO, TypeAlias

import numpy as np
import numpy.typing as npt

from rxtts.audio.pcm import Int16Array, as_pcm16, pcm16_view

PathOrFile: TypeAlias = str | os.PathLike[str] | BinaryIO
"""A filesystem path or an open binary file object."""


def _frames_and_channels(pcm: Int16Array) -> tuple[Int16Array, int]:
    if pcm.ndim == 1:
        return pcm, 1
    if pcm.ndim == 2 and pcm.shape[1] >= 1:
        return pcm, int(pcm.shape[1])
    raise ValueError(f"expected 1-D mono or (frames, channels) samples, got shape {pcm.shape}")


def _target(path_or_file: PathOrFile) -> str | BinaryIO:
    if isinstance(path_or_file, str | os.PathLike):
        return os.fspath(path_or_file)
    return path_or_file


def write_wav(path_or_file: PathOrFile, samples: npt.ArrayLike, sample_rate: int) -> None:
    """Write int16 (or float, converted) samples as a 16-bit PCM WAV file.

    A 1-D array is mono; a ``(frames, channels)`` array, e.g. ``(n, 2)``, is
    multi-channel and written interleaved.

    Raises:
        ValueError: for a non-positive rate or an array of another shape.
        TypeError: for samples that are neither int16 nor float.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    pcm, channels = _frames_and_channels(as_pcm16(samples))
    data = np.ascontiguousarray(pcm, dtype="<i2").tobytes()  # row-major == interleaved
    with wave.open(_target(path_or_file), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(data)


def read_wav(path_or_file: PathOrFile) -> tuple[Int16Array, int]:
    """Read a 16-bit PCM WAV file: ``(samples, sample_rate)``.

    Mono files give a 1-D array, multi-channel files a ``(frames, channels)`` array.

    Raises:
        ValueError: if the file is not 16-bit PCM.
    """
    with wave.open(_target(path_or_file), "rb") as w:
        width = w.getsampwidth()
        if width != 2:
            raise ValueError(f"only 16-bit PCM WAV is supported, got {8 * width}-bit samples")
        channels = w.getnchannels()
        rate = w.getframerate()
        data = w.readframes(w.getnframes())
    samples = pcm16_view(data).copy()  # own, writable memory
    if channels > 1:
        samples = samples.reshape(-1, channels)
    return samples, rate


def wav_bytes(samples: npt.ArrayLike, sample_rate: int) -> bytes:
    """Return a complete 16-bit PCM WAV file (header + data) as bytes."""
    buf = io.BytesIO()
    write_wav(buf, samples, sample_rate)
    return buf.getvalue()
