"""The engine contract, re-exported where the engines live (defined in :mod:`rxtts.engine`).

It lives at the top of the package so that :func:`rxtts.operators.synthesize` depends on
the contract only, never on the server (DESIGN section 2 layering).
"""

from rxtts.engine import (
    AudioBlock,
    CancelToken,
    Engine,
    EngineUnavailableError,
    SynthesisSettings,
    UnknownVoiceError,
    VoiceInfo,
)

__all__ = [
    "AudioBlock",
    "CancelToken",
    "Engine",
    "EngineUnavailableError",
    "SynthesisSettings",
    "UnknownVoiceError",
    "VoiceInfo",
]
