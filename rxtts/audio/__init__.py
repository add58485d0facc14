"""Audio utilities (numpy only): PCM16 <-> float32, G.711, resampling, WAV, silence.

Real-time playback lives in :mod:`rxtts.audio.playback` (optional ``rxtts[play]``);
``Player`` and ``SampleQueue`` are re-exported lazily so importing this package never
imports ``reactivex`` or ``sounddevice``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from rxtts.audio.g711 import (
    ENCODINGS,
    Encoding,
    decode_alaw,
    decode_samples,
    decode_ulaw,
    encode_alaw,
    encode_samples,
    encode_ulaw,
)
from rxtts.audio.pcm import (
    FULL_SCALE,
    Float32Array,
    Int16Array,
    as_pcm16,
    float32_to_pcm16,
    pcm16_to_float32,
    pcm16_view,
    to_bytes,
)
from rxtts.audio.resample import StreamResampler, resample
from rxtts.audio.silence import first_non_silent_sample, is_silent, rms_dbfs
from rxtts.audio.wav import read_wav, wav_bytes, write_wav

if TYPE_CHECKING:
    from rxtts.audio.playback import Player, SampleQueue

__all__ = [
    "ENCODINGS",
    "FULL_SCALE",
    "Encoding",
    "Float32Array",
    "Int16Array",
    "Player",
    "SampleQueue",
    "StreamResampler",
    "as_pcm16",
    "decode_alaw",
    "decode_samples",
    "decode_ulaw",
    "encode_alaw",
    "encode_samples",
    "encode_ulaw",
    "first_non_silent_sample",
    "float32_to_pcm16",
    "is_silent",
    "pcm16_to_float32",
    "pcm16_view",
    "read_wav",
    "resample",
    "rms_dbfs",
    "to_bytes",
    "wav_bytes",
    "write_wav",
]

_LAZY = frozenset({"Player", "SampleQueue"})


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module("rxtts.audio.playback"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
