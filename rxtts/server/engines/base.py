"""The engine contract, re-exported where the engines live (defined in :mod:`rxtts.engine`).

It lives at the top of the package so that :func:`rxtts.operators.synthesize` depends on
the contract only, never on the server (DESIGN section 2 layering).
"""

from rxtts.engine import (
    AligningEngine,
    Alignment,
    AudioBlock,
    CancelToken,
    Engine,
    EngineBlock,
    EngineUnavailableError,
    SynthesisSettings,
    UnknownVoiceError,
    VoiceInfo,
    WordTiming,
    engine_blocks,
)

__all__ = [
    "AligningEngine",
    "Alignment",
    "AudioBlock",
    "CancelToken",
    "Engine",
    "EngineBlock",
    "EngineUnavailableError",
    "SynthesisSettings",
    "UnknownVoiceError",
    "VoiceInfo",
    "WordTiming",
    "engine_blocks",
]
