"""TTS engines of the local server: piper (neural, optional GPL extra), espeak, tone (tests).

Importing this package never imports ``piper`` or ``onnxruntime``; a :class:`PiperEngine`
loads them when its model is first used.
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
from rxtts.server.engines.catalogue import (
    ENGINE_NAMES,
    VoiceCatalogue,
    best_available_engine,
    build_engine,
)
from rxtts.server.engines.espeak import EspeakEngine
from rxtts.server.engines.piper import PiperEngine
from rxtts.server.engines.tone import ToneEngine

__all__ = [
    "ENGINE_NAMES",
    "AudioBlock",
    "CancelToken",
    "Engine",
    "EngineUnavailableError",
    "EspeakEngine",
    "PiperEngine",
    "SynthesisSettings",
    "ToneEngine",
    "UnknownVoiceError",
    "VoiceCatalogue",
    "VoiceInfo",
    "best_available_engine",
    "build_engine",
]
