"""G.711 mu-law and A-law codecs, vectorised with lookup tables.

The ``ulaw_8000`` / ``alaw_8000`` output formats carry one G.711 byte per sample with
``enc`` ``"mulaw"`` / ``"alaw"`` (PROTOCOL §8). The tables below are computed once at
import from the classic Sun/CCITT reference algorithm (the one CPython's ``audioop`` uses),
so :func:`encode_ulaw` / :func:`decode_ulaw` / :func:`encode_alaw` / :func:`decode_alaw`
are bit-exact with ``audioop.lin2ulaw`` / ``ulaw2lin`` / ``lin2alaw`` / ``alaw2lin`` at
width 2. Encoding is a single table lookup over all 65536 int16 values.
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias, cast

import numpy as np
import numpy.typing as npt

from rxtts.audio.pcm import Int16Array, as_pcm16, pcm16_view, to_bytes

Uint8Array: TypeAlias = npt.NDArray[np.uint8]
"""An array of G.711 code bytes."""

Encoding: TypeAlias = Literal["pcm_s16le", "mulaw", "alaw"]
"""The ``enc`` values of an audio frame (PROTOCOL §8)."""

ENCODINGS: Final[tuple[Encoding, ...]] = ("pcm_s16le", "mulaw", "alaw")
"""Every valid ``enc`` value."""

_ULAW_BIAS: Final = 0x84
_ULAW_SEG_END: Final = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEG_END: Final = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _all_int16() -> npt.NDArray[np.int64]:
    """Every int16 value, ordered by its uint16 bit pattern (the table index)."""
    return np.arange(65536, dtype=np.int64).astype(np.uint16).view(np.int16).astype(np.int64)


def _build_ulaw_encode() -> Uint8Array:
    # Reference works on 14-bit magnitudes: audioop passes (sample << 16) >> 18.
    pcm = _all_int16() >> 2
    negative = pcm < 0
    mag = np.where(negative, -pcm, pcm) + (_ULAW_BIAS >> 2)
    mask = np.where(negative, 0x7F, 0xFF)
    seg = np.searchsorted(_ULAW_SEG_END, mag, side="left")
    seg_c = np.minimum(seg, 7)
    code = (seg_c << 4) | ((mag >> (seg_c + 1)) & 0xF)
    code = np.where(seg >= 8, 0x7F, code)  # out of range: maximum magnitude
    return ((code ^ mask) & 0xFF).astype(np.uint8)


def _build_ulaw_decode() -> Int16Array:
    u = ~np.arange(256, dtype=np.int64) & 0xFF
    t = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype(np.int16)


def _build_alaw_encode() -> Uint8Array:
    # Reference works on 13-bit values: audioop passes (sample << 16) >> 19.
    pcm = _all_int16() >> 3
    negative = pcm < 0
    mag = np.where(negative, -pcm - 1, pcm)
    mask = np.where(negative, 0x55, 0xD5)
    seg = np.searchsorted(_ALAW_SEG_END, mag, side="left")
    seg_c = np.minimum(seg, 7)
    quant = np.where(seg_c < 2, mag >> 1, mag >> seg_c) & 0x0F
    code = (seg_c << 4) | quant
    code = np.where(seg >= 8, 0x7F, code)  # out of range: maximum magnitude
    return ((code ^ mask) & 0xFF).astype(np.uint8)


def _build_alaw_decode() -> Int16Array:
    a = np.arange(256, dtype=np.int64) ^ 0x55
    quant = a & 0x0F
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, (quant << 4) + 8, (quant << 4) + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype(np.int16)


_ULAW_ENC: Final = _build_ulaw_encode()
_ULAW_DEC: Final = _build_ulaw_decode()
_ALAW_ENC: Final = _build_alaw_encode()
_ALAW_DEC: Final = _build_alaw_decode()
for _table in (_ULAW_ENC, _ULAW_DEC, _ALAW_ENC, _ALAW_DEC):
    _table.flags.writeable = False


def _codes(data: bytes | bytearray | memoryview | npt.ArrayLike) -> Uint8Array:
    if isinstance(data, bytes | bytearray | memoryview):
        return np.frombuffer(data, dtype=np.uint8)
    arr = np.asarray(data)
    if arr.dtype != np.uint8:
        raise TypeError(f"expected G.711 bytes or a uint8 array, got dtype {arr.dtype}")
    return cast(Uint8Array, arr)


def _table_index(samples: npt.ArrayLike) -> npt.NDArray[np.uint16]:
    pcm = as_pcm16(samples)
    return pcm.astype(np.int16, copy=False).view(np.uint16)


def encode_ulaw(samples: npt.ArrayLike) -> Uint8Array:
    """Encode int16 (or float, converted) samples to G.711 mu-law codes, one byte each."""
    return _ULAW_ENC[_table_index(samples)]


def decode_ulaw(data: bytes | bytearray | memoryview | npt.ArrayLike) -> Int16Array:
    """Decode G.711 mu-law codes (bytes or uint8 array) to int16 samples."""
    return _ULAW_DEC[_codes(data)]


def encode_alaw(samples: npt.ArrayLike) -> Uint8Array:
    """Encode int16 (or float, converted) samples to G.711 A-law codes, one byte each."""
    return _ALAW_ENC[_table_index(samples)]


def decode_alaw(data: bytes | bytearray | memoryview | npt.ArrayLike) -> Int16Array:
    """Decode G.711 A-law codes (bytes or uint8 array) to int16 samples."""
    return _ALAW_DEC[_codes(data)]


def encode_samples(samples: npt.ArrayLike, encoding: Encoding) -> bytes:
    """Serialise mono samples for a frame's ``audio`` field in ``encoding`` (PROTOCOL §8).

    Raises:
        ValueError: for an unknown encoding.
    """
    if encoding == "pcm_s16le":
        return to_bytes(samples)
    if encoding == "mulaw":
        return encode_ulaw(samples).tobytes()
    if encoding == "alaw":
        return encode_alaw(samples).tobytes()
    raise ValueError(f"unknown audio encoding {encoding!r}; expected one of {ENCODINGS}")


def decode_samples(data: bytes | bytearray | memoryview, encoding: Encoding) -> Int16Array:
    """Decode a frame's raw ``audio`` bytes in ``encoding`` to int16 (PROTOCOL §8).

    ``pcm_s16le`` returns a zero-copy read-only view; G.711 returns a new array.

    Raises:
        ValueError: for an unknown encoding or an odd-length PCM16 buffer.
    """
    if encoding == "pcm_s16le":
        return pcm16_view(data)
    if encoding == "mulaw":
        return decode_ulaw(data)
    if encoding == "alaw":
        return decode_alaw(data)
    raise ValueError(f"unknown audio encoding {encoding!r}; expected one of {ENCODINGS}")
