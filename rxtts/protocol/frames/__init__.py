"""Every wire frame of ``/ws/tts``, ``/ws/tts/stream`` and ``/ws/tts/multi``, both ways.

Sans-I/O: text in, frozen dataclasses out, and back. Decoding is strict: anything that
does not follow PROTOCOL.md raises :class:`~rxtts.errors.ProtocolError` (with
``error_code`` ``PROTOCOL_ERROR`` for shape and ``VALIDATION_ERROR`` for values), never
``KeyError``/``TypeError``/``ValueError``.

The codec is split by direction (:mod:`.client`, :mod:`.server`), with the shared
config keys (:mod:`.config`) and field readers (:mod:`._codec`); import from here.
"""

from rxtts.protocol.frames._codec import (
    MAX_FRAME_BYTES,
    Endpoint,
)
from rxtts.protocol.frames.client import (
    UPDATABLE_SETTINGS,
    CancelFrame,
    ClientFrame,
    CloseContextFrame,
    CloseFrame,
    CloseSocketFrame,
    FlushFrame,
    TextFrame,
    TtsRequest,
    UpdateSettingsFrame,
    decode_client_frame,
)
from rxtts.protocol.frames.config import (
    CONFIG_KEYS,
    WireConfig,
    parse_config,
    parse_voice_settings,
)
from rxtts.protocol.frames.server import (
    AudioFrame,
    ChunkCompleteFrame,
    ContextClosedFrame,
    ContextCreatedFrame,
    ContextTimeoutFrame,
    ErrorFrame,
    FinalFrame,
    Frame,
    GenerationStartedFrame,
    InterruptedFrame,
    ServerFrame,
    SessionClosedFrame,
    SessionStartedFrame,
    SettingsUpdatedFrame,
    WarningFrame,
    WordTimestampsFrame,
    decode_server_frames,
    encode,
    parse_usage,
)

__all__ = [
    "CONFIG_KEYS",
    "MAX_FRAME_BYTES",
    "UPDATABLE_SETTINGS",
    "AudioFrame",
    "CancelFrame",
    "ChunkCompleteFrame",
    "ClientFrame",
    "CloseContextFrame",
    "CloseFrame",
    "CloseSocketFrame",
    "ContextClosedFrame",
    "ContextCreatedFrame",
    "ContextTimeoutFrame",
    "Endpoint",
    "ErrorFrame",
    "FinalFrame",
    "FlushFrame",
    "Frame",
    "GenerationStartedFrame",
    "InterruptedFrame",
    "ServerFrame",
    "SessionClosedFrame",
    "SessionStartedFrame",
    "SettingsUpdatedFrame",
    "TextFrame",
    "TtsRequest",
    "UpdateSettingsFrame",
    "WarningFrame",
    "WireConfig",
    "WordTimestampsFrame",
    "decode_client_frame",
    "decode_server_frames",
    "encode",
    "parse_config",
    "parse_usage",
    "parse_voice_settings",
]
