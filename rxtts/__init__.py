"""rxtts: reactive streaming text-to-speech.

LLM tokens in, speech out, over the KugelAudio WebSocket protocol, as ReactiveX
observables (``reactivex``)::

    import rxtts
    from reactivex import operators as ops

    async with rxtts.connect() as tts:            # no URL/key: embedded local server
        session = tts.streaming_session(voice_id=1071, preset="low-latency")
        turn = session.speak(tokens)              # Observable[TtsEvent]; subscribe = start
        turn.pipe(rxtts.play(player), ops.take_until(user_speaks)).subscribe()

Every name below is imported lazily on first use, so ``import rxtts`` stays cheap and
never loads an optional (GPL) engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Bound eagerly (the module is light), so `rxtts.connect` is always the function.
from rxtts.client.connector import connect, connect_sync

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # connecting
    "SyncClient": "rxtts.client.connector",
    "TTS": "rxtts.client.tts",
    "AudioStream": "rxtts.client.tts",
    "GeneratedAudio": "rxtts.client.tts",
    "StreamingSession": "rxtts.client.session",
    "SessionCallbacks": "rxtts.client.callbacks",
    "MultiContextSession": "rxtts.client.multi",
    "MultiContextCallbacks": "rxtts.client.callbacks",
    "KeepAlivePolicy": "rxtts.operators.keep_alive",
    "keep_alive": "rxtts.operators.keep_alive",
    "render_dialogue": "rxtts.client.dialogue",
    "from_llm": "rxtts.integrations.llm",
    "strip_markdown": "rxtts.operators.markdown",
    "normalize_text": "rxtts.operators.normalize",
    "heard": "rxtts.operators.heard",
    "playout": "rxtts.operators.playout",
    "SimulatedClock": "rxtts.audio.clock",
    "PlaybackClock": "rxtts.audio.clock",
    "Heard": "rxtts.events",
    "NormalizedText": "rxtts.operators.normalize",
    # configuration
    "StreamConfig": "rxtts.config",
    "MultiContextConfig": "rxtts.config",
    "VoiceSettings": "rxtts.config",
    "OutputFormat": "rxtts.config",
    "ChunkingPreset": "rxtts.config",
    "LOW_LATENCY": "rxtts.config",
    "BALANCED": "rxtts.config",
    "HIGH_QUALITY": "rxtts.config",
    "PRESETS": "rxtts.config",
    # events
    "TtsEvent": "rxtts.events",
    "AudioChunk": "rxtts.events",
    "GenerationStarted": "rxtts.events",
    "WordTimestamp": "rxtts.events",
    "WordTimestamps": "rxtts.events",
    "ChunkComplete": "rxtts.events",
    "Final": "rxtts.events",
    "SessionClosed": "rxtts.events",
    "SessionUsage": "rxtts.events",
    "Interrupted": "rxtts.events",
    "SettingsUpdated": "rxtts.events",
    "ServerWarning": "rxtts.events",
    "TurnMetrics": "rxtts.events",
    "ContextCreated": "rxtts.events",
    "ContextClosed": "rxtts.events",
    "ContextTimeout": "rxtts.events",
    "ContextError": "rxtts.events",
    "SessionStarted": "rxtts.events",
    # errors
    "RxTtsError": "rxtts.errors",
    "AuthenticationError": "rxtts.errors",
    "InsufficientCreditsError": "rxtts.errors",
    "RateLimitError": "rxtts.errors",
    "TooManyContextsError": "rxtts.errors",
    "ValidationError": "rxtts.errors",
    "MissingVoiceError": "rxtts.errors",
    "NotFoundError": "rxtts.errors",
    "ConnectionClosedError": "rxtts.errors",
    "ModelUnavailableError": "rxtts.errors",
    "ServerRestartingError": "rxtts.errors",
    "ServerError": "rxtts.errors",
    "ProtocolError": "rxtts.errors",
    "LocalProtocolError": "rxtts.errors",
    "RemoteProtocolError": "rxtts.errors",
    # operators
    "FLUSH": "rxtts.operators.flush",
    "Flush": "rxtts.operators.flush",
    "sentences": "rxtts.operators.sentences",
    "chunk_schedule": "rxtts.operators.chunk_schedule",
    "turn_metrics": "rxtts.operators.metrics",
    "collect_audio": "rxtts.operators.sinks",
    "to_numpy": "rxtts.operators.sinks",
    "write_wav": "rxtts.operators.sinks",
    "play": "rxtts.operators.sinks",
}

__all__ = [
    "BALANCED",
    "FLUSH",
    "HIGH_QUALITY",
    "LOW_LATENCY",
    "PRESETS",
    "TTS",
    "AudioChunk",
    "AudioStream",
    "AuthenticationError",
    "ChunkComplete",
    "ChunkingPreset",
    "ConnectionClosedError",
    "ContextClosed",
    "ContextCreated",
    "ContextError",
    "ContextTimeout",
    "Final",
    "Flush",
    "GeneratedAudio",
    "GenerationStarted",
    "Heard",
    "InsufficientCreditsError",
    "Interrupted",
    "KeepAlivePolicy",
    "LocalProtocolError",
    "MissingVoiceError",
    "ModelUnavailableError",
    "MultiContextCallbacks",
    "MultiContextConfig",
    "MultiContextSession",
    "NormalizedText",
    "NotFoundError",
    "OutputFormat",
    "PlaybackClock",
    "ProtocolError",
    "RateLimitError",
    "RemoteProtocolError",
    "RxTtsError",
    "ServerError",
    "ServerRestartingError",
    "ServerWarning",
    "SessionCallbacks",
    "SessionClosed",
    "SessionStarted",
    "SessionUsage",
    "SettingsUpdated",
    "SimulatedClock",
    "StreamConfig",
    "StreamingSession",
    "SyncClient",
    "TooManyContextsError",
    "TtsEvent",
    "TurnMetrics",
    "ValidationError",
    "VoiceSettings",
    "WordTimestamp",
    "WordTimestamps",
    "chunk_schedule",
    "collect_audio",
    "connect",
    "connect_sync",
    "from_llm",
    "heard",
    "keep_alive",
    "normalize_text",
    "play",
    "playout",
    "render_dialogue",
    "sentences",
    "strip_markdown",
    "to_numpy",
    "turn_metrics",
    "write_wav",
]

if TYPE_CHECKING:
    from rxtts.audio.clock import PlaybackClock, SimulatedClock
    from rxtts.client.callbacks import MultiContextCallbacks, SessionCallbacks
    from rxtts.client.connector import SyncClient
    from rxtts.client.dialogue import render_dialogue
    from rxtts.client.session import StreamingSession
    from rxtts.client.tts import TTS, AudioStream, GeneratedAudio
    from rxtts.config import (
        BALANCED,
        HIGH_QUALITY,
        LOW_LATENCY,
        PRESETS,
        ChunkingPreset,
        MultiContextConfig,
        OutputFormat,
        StreamConfig,
        VoiceSettings,
    )
    from rxtts.errors import (
        AuthenticationError,
        ConnectionClosedError,
        InsufficientCreditsError,
        LocalProtocolError,
        MissingVoiceError,
        ModelUnavailableError,
        NotFoundError,
        ProtocolError,
        RateLimitError,
        RemoteProtocolError,
        RxTtsError,
        ServerError,
        ServerRestartingError,
        TooManyContextsError,
        ValidationError,
    )
    from rxtts.events import (
        AudioChunk,
        ChunkComplete,
        ContextClosed,
        ContextCreated,
        ContextError,
        ContextTimeout,
        Final,
        GenerationStarted,
        Heard,
        Interrupted,
        ServerWarning,
        SessionClosed,
        SessionStarted,
        SessionUsage,
        SettingsUpdated,
        TtsEvent,
        TurnMetrics,
        WordTimestamp,
        WordTimestamps,
    )
    from rxtts.integrations.llm import from_llm
    from rxtts.operators.chunk_schedule import chunk_schedule
    from rxtts.operators.flush import FLUSH, Flush
    from rxtts.operators.heard import heard
    from rxtts.operators.keep_alive import KeepAlivePolicy, keep_alive
    from rxtts.operators.markdown import strip_markdown
    from rxtts.operators.metrics import turn_metrics
    from rxtts.operators.normalize import NormalizedText, normalize_text
    from rxtts.operators.playout import playout
    from rxtts.operators.sentences import sentences
    from rxtts.operators.sinks import collect_audio, play, to_numpy, write_wav


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rxtts' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
