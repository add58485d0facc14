"""Sample-rate conversion with libsoxr (``soxr``), one-shot and streaming.

The server converts the engine's native rate (Piper: 22050 Hz) to the requested
``output_format`` rate (PROTOCOL §8: 8000/16000/22050/24000) with a real band-limited
resampler. Streaming turns use :class:`StreamResampler`, which keeps the filter state
between chunks so chunk boundaries add neither gaps nor clicks.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias, cast

import numpy as np
import numpy.typing as npt
import soxr

from rxtts.audio.pcm import float32_to_pcm16, pcm16_to_float32

Quality: TypeAlias = Literal["QQ", "LQ", "MQ", "HQ", "VHQ"]
"""libsoxr quality recipe: quick, low, medium, high (default), very high."""

_SUPPORTED = (np.dtype(np.int16), np.dtype(np.float32))


def _check_rates(from_rate: int, to_rate: int) -> None:
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")


def _check_dtype(dtype: np.dtype[Any]) -> None:
    if dtype not in _SUPPORTED:
        raise TypeError(f"resampling supports int16 and float32 samples, got dtype {dtype}")


def resample(
    x: npt.NDArray[Any], from_rate: int, to_rate: int, *, quality: Quality = "HQ"
) -> npt.NDArray[Any]:
    """Resample int16 or float32 samples (1-D or ``(frames, channels)``) keeping the dtype.

    Equal rates return ``x`` itself (no copy). Output length is
    ``round(len(x) * to_rate / from_rate)`` as computed by libsoxr.

    Raises:
        ValueError: for a non-positive rate.
        TypeError: for a dtype other than int16 / float32.
    """
    _check_rates(from_rate, to_rate)
    _check_dtype(x.dtype)
    if from_rate == to_rate:
        return x
    if x.shape[0] == 0:
        return x.copy()
    out = soxr.resample(np.ascontiguousarray(x), from_rate, to_rate, quality=quality)
    return cast(npt.NDArray[Any], out)


class StreamResampler:
    """Chunked resampler: ``feed`` each chunk, ``flush()`` once at the end.

    Keeps libsoxr's filter state between chunks, so the concatenated output matches the
    one-shot :func:`resample` of the concatenated input (up to float rounding). Chunks
    of the other supported dtype are converted to the stream's dtype first. With equal
    rates chunks pass through untouched. Not thread-safe: one stream per producer.
    """

    def __init__(
        self,
        from_rate: int,
        to_rate: int,
        *,
        channels: int = 1,
        dtype: npt.DTypeLike = np.int16,
        quality: Quality = "HQ",
    ) -> None:
        _check_rates(from_rate, to_rate)
        self._dtype: np.dtype[Any] = np.dtype(dtype)
        _check_dtype(self._dtype)
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.from_rate = from_rate
        """Input sample rate in Hz."""
        self.to_rate = to_rate
        """Output sample rate in Hz."""
        self.channels = channels
        """Number of interleaved channels (1 = 1-D mono chunks)."""
        self._quality: Quality = quality
        self._flushed = False
        self._stream: soxr.ResampleStream | None = self._new_stream()

    def _new_stream(self) -> soxr.ResampleStream | None:
        if self.from_rate == self.to_rate:
            return None
        return soxr.ResampleStream(
            self.from_rate,
            self.to_rate,
            self.channels,
            dtype=self._dtype.name,
            quality=self._quality,
        )

    @property
    def dtype(self) -> np.dtype[Any]:
        """The sample dtype of the output (and of the libsoxr stream)."""
        return self._dtype

    @property
    def passthrough(self) -> bool:
        """True when the rates are equal and chunks are returned untouched."""
        return self._stream is None

    def _convert(self, chunk: npt.NDArray[Any]) -> npt.NDArray[Any]:
        if chunk.dtype == self._dtype:
            return chunk
        _check_dtype(chunk.dtype)
        if self._dtype == np.int16:
            return float32_to_pcm16(chunk)
        return pcm16_to_float32(chunk)

    def feed(self, chunk: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Resample one chunk; returns what is ready now (possibly fewer samples, or none).

        Raises:
            RuntimeError: after :meth:`flush` (call :meth:`reset` to start a new stream).
        """
        if self._flushed:
            raise RuntimeError("StreamResampler already flushed; call reset() first")
        data = self._convert(chunk)
        if self._stream is None:
            return data
        out = self._stream.resample_chunk(np.ascontiguousarray(data), last=False)
        return cast(npt.NDArray[Any], out)

    def flush(self) -> npt.NDArray[Any]:
        """End the stream and return the samples still held in the filter."""
        shape = (0,) if self.channels == 1 else (0, self.channels)
        empty = np.zeros(shape, dtype=self._dtype)
        if self._flushed or self._stream is None:
            self._flushed = True
            return empty
        self._flushed = True
        return cast(npt.NDArray[Any], self._stream.resample_chunk(empty, last=True))

    def reset(self) -> None:
        """Drop all filter state (e.g. after a barge-in) and accept a new stream."""
        self._stream = self._new_stream()
        self._flushed = False

    @property
    def delay(self) -> float:
        """Samples (at the output rate) currently held inside the filter."""
        return 0.0 if self._stream is None else float(self._stream.delay())
