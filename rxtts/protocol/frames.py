"""Every wire frame of ``/ws/tts``, ``/ws/tts/stream`` and ``/ws/tts/multi``, both ways.

Sans-I/O: text in, frozen dataclasses out, and back. Decoding is strict: anything that
does not follow PROTOCOL.md raises :class:`~rxtts.errors.ProtocolError` (with
``error_code`` ``PROTOCOL_ERROR`` for shape and ``VALIDATION_ERROR`` for values), never
``KeyError``/``TypeError``/``ValueError``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeAlias, TypeVar

from rxtts import config as cfg
from rxtts.config import OutputFormat, VoiceSettings
from rxtts.errors import ProtocolError
from rxtts.events import Encoding, SessionUsage, WordTimestamp

MAX_FRAME_BYTES = 1 << 20
"""Frames must stay under 1 MiB (PROTOCOL G-5, the PY client's inbound limit)."""
MAX_CONTEXT_ID_LENGTH = 256
_ENCODING_BY_NAME: Mapping[str, Encoding] = {
    "pcm_s16le": "pcm_s16le",
    "mulaw": "mulaw",
    "alaw": "alaw",
}


class Endpoint(StrEnum):
    """The three WebSocket paths (PROTOCOL 1.1)."""

    TTS = "/ws/tts"
    STREAM = "/ws/tts/stream"
    MULTI = "/ws/tts/multi"


def _bad(message: str) -> ProtocolError:
    return ProtocolError(message, error_code="PROTOCOL_ERROR")


def _invalid(message: str) -> ProtocolError:
    return ProtocolError(message, error_code="VALIDATION_ERROR")


# -- typed field readers ------------------------------------------------------------

T = TypeVar("T")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    if not (_is_int(v) or isinstance(v, float)):
        return False
    try:
        return math.isfinite(v)  # type: ignore[arg-type]
    except OverflowError:  # an integer too large for a float
        return False


def _get_int(d: Mapping[str, Any], key: str) -> int | None:
    v = d.get(key)
    if v is None:
        return None
    if _is_int(v):
        return int(v)
    raise _bad(f"{key}: expected an integer, got {type(v).__name__}")


def _need_int(d: Mapping[str, Any], key: str) -> int:
    v = _get_int(d, key)
    if v is None:
        raise _bad(f"{key}: missing")
    return v


def _get_number(d: Mapping[str, Any], key: str) -> float | None:
    v = d.get(key)
    if v is None:
        return None
    if _is_number(v):
        return float(v)
    raise _bad(f"{key}: expected a number, got {type(v).__name__}")


def _get_str(d: Mapping[str, Any], key: str) -> str | None:
    v = d.get(key)
    if v is None or isinstance(v, str):
        return v
    raise _bad(f"{key}: expected a string, got {type(v).__name__}")


def _get_bool(d: Mapping[str, Any], key: str) -> bool | None:
    v = d.get(key)
    if v is None or isinstance(v, bool):
        return v
    raise _bad(f"{key}: expected a boolean, got {type(v).__name__}")


def _int_list(key: str, v: object) -> tuple[int, ...]:
    if not isinstance(v, list) or not all(_is_int(x) for x in v):
        raise _bad(f"{key}: expected a list of integers")
    return tuple(v)


def _validated(key: str, check: Callable[[], T]) -> T:
    try:
        return check()
    except ValueError as exc:
        raise _invalid(str(exc)) from None


def _context_id(d: Mapping[str, Any], required: bool) -> str | None:
    cid = _get_str(d, "context_id")
    if cid is None:
        if required:
            raise _bad("context_id: missing")
        return None
    if not cid or len(cid) > MAX_CONTEXT_ID_LENGTH:
        raise _invalid(f"context_id: must be 1..{MAX_CONTEXT_ID_LENGTH} characters")
    return cid


def _load(data: str | bytes) -> dict[str, Any]:
    # PROTOCOL G-4: JSON objects in text frames only.
    if not isinstance(data, str):
        raise _bad("binary frames are not supported; send JSON text frames")
    # PROTOCOL G-5: frames stay under 1 MiB of UTF-8 (characters are cheaper to count).
    if len(data) > MAX_FRAME_BYTES // 4 and len(data.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
        raise _bad(f"frame exceeds {MAX_FRAME_BYTES} bytes")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        raise _bad("frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise _bad("frame must be a JSON object")
    if "\\u" in data and not _utf8_safe(obj):
        raise _bad("frame contains a lone UTF-16 surrogate")
    return obj


def _utf8_safe(obj: object) -> bool:
    """False if an escaped lone surrogate made a string that cannot be sent as UTF-8."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, RecursionError):
        return False
    return True


def _dump(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


# -- session config carried by client frames ------------------------------------------


@dataclass(frozen=True, slots=True)
class WireConfig:
    """Config keys a client frame may carry (PROTOCOL 7); ``None`` = absent.

    Sticky: the server merges each frame's config over the previous one (PROTOCOL S-1).
    """

    voice_id: int | None = None
    model_id: str | None = None
    cfg_scale: float | None = None
    temperature: float | None = None
    max_new_tokens: int | None = None
    sample_rate: int | None = None
    output_format: OutputFormat | None = None
    normalize: bool | None = None
    language: str | None = None
    word_timestamps: bool | None = None
    speed: float | None = None
    chunk_length_schedule: tuple[int, ...] | None = None
    auto_mode: bool | None = None
    flush_timeout_ms: int | None = None
    max_buffer_length: int | None = None
    project_id: int | None = None
    dictionary_ids: tuple[int, ...] | None = None
    inactivity_timeout: float | None = None

    def merged(self, newer: WireConfig) -> WireConfig:
        """This config with every key ``newer`` sets replaced."""
        changes = {f.name: v for f in dataclasses.fields(newer) if (v := getattr(newer, f.name)) is not None}
        return dataclasses.replace(self, **changes) if changes else self

    def is_empty(self) -> bool:
        """True when no key is set."""
        return all(getattr(self, f.name) is None for f in dataclasses.fields(self))

    def to_wire(self) -> dict[str, Any]:
        """Set keys as JSON values."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None:
                continue
            out[f.name] = v.value if isinstance(v, OutputFormat) else list(v) if isinstance(v, tuple) else v
        return out

    @property
    def effective_format(self) -> OutputFormat:
        """``output_format`` if set, else PCM at ``sample_rate`` (PROTOCOL 8: format wins)."""
        if self.output_format is not None:
            return self.output_format
        return OutputFormat.pcm(self.sample_rate or 24000)


def _parse_config_key(key: str, v: Any) -> Any:
    """Validate one config value; ``None`` values are treated as absent."""
    if v is None:
        return None
    if key in (
        "voice_id",
        "max_new_tokens",
        "sample_rate",
        "flush_timeout_ms",
        "max_buffer_length",
        "project_id",
    ):
        if not _is_int(v):
            raise _bad(f"{key}: expected an integer, got {type(v).__name__}")
        checks: dict[str, Callable[[], Any]] = {
            "max_new_tokens": lambda: cfg.check_max_new_tokens(v),
            "sample_rate": lambda: cfg.check_sample_rate(v),
            "flush_timeout_ms": lambda: cfg.check_positive(v, key),
            "max_buffer_length": lambda: cfg.check_positive(v, key),
        }
        return _validated(key, checks[key]) if key in checks else v
    if key in ("cfg_scale", "temperature", "speed", "inactivity_timeout"):
        if not _is_number(v):
            raise _bad(f"{key}: expected a number, got {type(v).__name__}")
        numeric: dict[str, Callable[[], float]] = {
            "cfg_scale": lambda: cfg.clamp_cfg_scale(v),
            "temperature": lambda: cfg.check_temperature(v),
            "speed": lambda: cfg.check_speed(v),
            "inactivity_timeout": lambda: cfg.check_positive(float(v), key),
        }
        return _validated(key, numeric[key])
    if key in ("normalize", "word_timestamps", "auto_mode"):
        if not isinstance(v, bool):
            raise _bad(f"{key}: expected a boolean, got {type(v).__name__}")
        return v
    if key in ("model_id", "language"):
        if not isinstance(v, str):
            raise _bad(f"{key}: expected a string, got {type(v).__name__}")
        return v
    if key == "output_format":
        if not isinstance(v, str):
            raise _bad(f"{key}: expected a string, got {type(v).__name__}")
        return _validated(key, lambda: OutputFormat.parse(v))
    if key == "chunk_length_schedule":
        return _validated(key, lambda: cfg.check_schedule(_int_list(key, v)))
    if key == "dictionary_ids":
        return _int_list(key, v)
    raise _bad(f"unknown key {key!r}")  # pragma: no cover - callers filter keys


CONFIG_KEYS = frozenset(f.name for f in dataclasses.fields(WireConfig))


def parse_config(d: Mapping[str, Any]) -> WireConfig:
    """The config keys of a frame, validated."""
    values = {k: _parse_config_key(k, d[k]) for k in CONFIG_KEYS if k in d}
    return WireConfig(**values)


_VOICE_SETTING_KEYS = {
    "voice_id": _is_int,
    "cfg_scale": _is_number,
    "max_new_tokens": _is_int,
    "stability": _is_number,
    "similarity_boost": _is_number,
    "style": _is_number,
    "use_speaker_boost": lambda v: isinstance(v, bool),
    "speed": _is_number,
}


def parse_voice_settings(v: object) -> VoiceSettings:
    """``voice_settings``: known keys validated, unknown keys ignored (PROTOCOL M-2)."""
    if not isinstance(v, dict):
        raise _bad("voice_settings: expected an object")
    values: dict[str, Any] = {}
    for key, ok in _VOICE_SETTING_KEYS.items():
        if v.get(key) is None:
            continue
        if not ok(v[key]):
            raise _bad(f"voice_settings.{key}: wrong type {type(v[key]).__name__}")
        values[key] = v[key]
    return _validated("voice_settings", lambda: VoiceSettings(**values))


# -- client -> server frames ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TtsRequest:
    """The only client frame of ``/ws/tts``: one text to speak (PROTOCOL 4.1)."""

    text: str
    """Text to synthesise."""
    config: WireConfig = field(default_factory=WireConfig)
    """Request options."""

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, **self.config.to_wire()}


@dataclass(frozen=True, slots=True)
class TextFrame:
    """Text for the open turn or a context; ``flush`` ends the turn (PROTOCOL 5.2, 6.2)."""

    text: str
    """Text to append; ``""`` is a keep-alive on multi."""
    flush: bool | None = None
    """Speak the buffer after appending; ``None`` = key absent."""
    context_id: str | None = None
    """Target context (multi only)."""
    config: WireConfig = field(default_factory=WireConfig)
    """Config riding on this frame."""
    voice_settings: VoiceSettings | None = None
    """Voice of a context being created (multi only)."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"text": self.text}
        if self.context_id is not None:
            out["context_id"] = self.context_id
        if self.flush is not None:
            out["flush"] = self.flush
        out.update(self.config.to_wire())
        if self.voice_settings is not None:
            out["voice_settings"] = self.voice_settings.to_wire()
        return out


@dataclass(frozen=True, slots=True)
class FlushFrame:
    """A bare ``{"flush": true}``: speak the buffer (PROTOCOL 5.2, 6.2)."""

    context_id: str | None = None
    """Target context (multi only)."""
    config: WireConfig = field(default_factory=WireConfig)
    """Config riding on this frame (PY's bare flush may carry it, PROTOCOL S-1)."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"flush": True}
        if self.context_id is not None:
            out["context_id"] = self.context_id
        out.update(self.config.to_wire())
        return out


@dataclass(frozen=True, slots=True)
class CloseFrame:
    """``{"close": true}`` (or its alias ``end_session``): end the turn gracefully."""

    alias: bool = False
    """Sent as ``end_session`` (PROTOCOL S-10)."""

    def to_json(self) -> dict[str, Any]:
        return {"end_session": True} if self.alias else {"close": True}


@dataclass(frozen=True, slots=True)
class CancelFrame:
    """``{"cancel": true}``: barge-in (PROTOCOL 5.6)."""

    def to_json(self) -> dict[str, Any]:
        return {"cancel": True}


UPDATABLE_SETTINGS = (
    "cfg_scale",
    "temperature",
    "speed",
    "max_new_tokens",
    "language",
    "normalize",
)


@dataclass(frozen=True, slots=True)
class UpdateSettingsFrame:
    """``{"update_settings": {...}}``; applies from the next turn/context (PROTOCOL 5.7)."""

    settings: WireConfig
    """Only the six updatable keys may be set."""

    def to_json(self) -> dict[str, Any]:
        return {"update_settings": self.settings.to_wire()}


@dataclass(frozen=True, slots=True)
class CloseContextFrame:
    """Close one context, gracefully or at once (PROTOCOL 6.2)."""

    context_id: str
    """The context."""
    immediate: bool = False
    """Barge-in: drop buffered text and stop generation."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"close_context": True, "context_id": self.context_id}
        if self.immediate:
            out["immediate"] = True
        return out


@dataclass(frozen=True, slots=True)
class CloseSocketFrame:
    """``{"close_socket": true}``: close everything, then the socket (PROTOCOL M-8, S-10)."""

    def to_json(self) -> dict[str, Any]:
        return {"close_socket": True}


ClientFrame: TypeAlias = (
    TtsRequest
    | TextFrame
    | FlushFrame
    | CloseFrame
    | CancelFrame
    | UpdateSettingsFrame
    | CloseContextFrame
    | CloseSocketFrame
)

_MARKERS = frozenset(
    {
        "text",
        "flush",
        "close",
        "end_session",
        "cancel",
        "update_settings",
        "close_context",
        "immediate",
        "close_socket",
        "context_id",
        "voice_settings",
    }
)


def _check_keys(d: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise _invalid(f"unknown key(s): {', '.join(unknown)}")


def _decode_update(d: Mapping[str, Any]) -> UpdateSettingsFrame:
    body = d["update_settings"]
    if not isinstance(body, dict):
        raise _bad("update_settings: expected an object")
    if not body:
        raise _invalid("update_settings: empty update")
    fixed = sorted(set(body) - set(UPDATABLE_SETTINGS))
    if fixed:
        raise _invalid(f"Invalid settings update: not updatable: {', '.join(fixed)}")
    settings = parse_config(body)
    if settings.is_empty():
        raise _invalid("update_settings: no value to update")
    return UpdateSettingsFrame(settings)


def _decode_tts(d: Mapping[str, Any]) -> ClientFrame:
    _check_keys(d, CONFIG_KEYS | {"text"})
    text = _get_str(d, "text")
    if text is None:
        raise _bad("text: missing")
    return TtsRequest(text, parse_config(d))


def _decode_stream(d: Mapping[str, Any]) -> ClientFrame:
    if d.get("cancel") is True:
        _check_keys(d, frozenset({"cancel"}))
        return CancelFrame()
    for key in ("close", "end_session"):
        if d.get(key) is True:
            _check_keys(d, frozenset({key}))
            return CloseFrame(alias=key == "end_session")
    if d.get("close_socket") is True:
        _check_keys(d, frozenset({"close_socket"}))
        return CloseSocketFrame()
    if "update_settings" in d:
        _check_keys(d, frozenset({"update_settings"}))
        return _decode_update(d)
    _check_keys(d, CONFIG_KEYS | {"text", "flush"})
    flush = _get_bool(d, "flush")
    if "text" in d:
        text = _get_str(d, "text")
        if text is None:
            raise _bad("text: must be a string")
        return TextFrame(text, flush, None, parse_config(d))
    if flush:
        return FlushFrame(None, parse_config(d))
    raise _bad("frame has no marker key (text, flush, close, cancel, update_settings)")


def _decode_multi(d: Mapping[str, Any]) -> ClientFrame:
    if d.get("close_socket") is True:
        _check_keys(d, frozenset({"close_socket"}))
        return CloseSocketFrame()
    if d.get("close_context") is True:
        _check_keys(d, frozenset({"close_context", "context_id", "immediate"}))
        return CloseContextFrame(_context_id(d, True) or "", bool(_get_bool(d, "immediate")))
    if "update_settings" in d:
        _check_keys(d, frozenset({"update_settings"}))
        return _decode_update(d)
    _check_keys(d, CONFIG_KEYS | {"text", "flush", "context_id", "voice_settings"})
    flush = _get_bool(d, "flush")
    vs = parse_voice_settings(d["voice_settings"]) if d.get("voice_settings") is not None else None
    if "text" in d:
        text = _get_str(d, "text")
        if text is None:
            raise _bad("text: must be a string")
        # PROTOCOL M-3: a context-less {"text": "", "voice_id", "model_id"} is legal.
        return TextFrame(text, flush, _context_id(d, False), parse_config(d), vs)
    if flush:
        return FlushFrame(_context_id(d, True), parse_config(d))
    raise _bad("frame has no marker key (text, flush, close_context, close_socket, update_settings)")


_CLIENT_DECODERS: Mapping[Endpoint, Callable[[Mapping[str, Any]], ClientFrame]] = {
    Endpoint.TTS: _decode_tts,
    Endpoint.STREAM: _decode_stream,
    Endpoint.MULTI: _decode_multi,
}


def decode_client_frame(data: str | bytes, endpoint: Endpoint) -> ClientFrame:
    """Parse a frame a client sent to ``endpoint``; ``ProtocolError`` if malformed."""
    return _CLIENT_DECODERS[endpoint](_load(data))


# -- server -> client frames ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """One frame of audio (PROTOCOL 3.2, G-8)."""

    audio: bytes
    """Raw bytes (s16le or G.711); base64 on the wire."""
    enc: Encoding
    """Encoding of ``audio``."""
    idx: int
    """0-based frame index within the turn/request/context."""
    sr: int
    """Sample rate."""
    samples: int
    """Samples in this frame."""
    chunk_id: int | None = None
    """Text chunk (stream/multi)."""
    context_id: str | None = None
    """Context (multi)."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "audio": base64.b64encode(self.audio).decode("ascii"),
            "enc": self.enc,
            "idx": self.idx,
            "sr": self.sr,
            "samples": self.samples,
        }
        if self.chunk_id is not None:
            out["chunk_id"] = self.chunk_id
        if self.context_id is not None:
            out["context_id"] = self.context_id
        return out


def _with_context(out: dict[str, Any], context_id: str | None) -> dict[str, Any]:
    if context_id is not None:
        out["context_id"] = context_id
    return out


@dataclass(frozen=True, slots=True)
class WordTimestampsFrame:
    """Word alignment of a chunk (PROTOCOL 3.3)."""

    words: tuple[WordTimestamp, ...]
    chunk_id: int | None = None
    context_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        words = [dataclasses.asdict(w) for w in self.words]
        out: dict[str, Any] = {"word_timestamps": words}
        if self.chunk_id is not None:
            out["chunk_id"] = self.chunk_id
        return _with_context(out, self.context_id)


@dataclass(frozen=True, slots=True)
class GenerationStartedFrame:
    """Synthesis of a chunk started (PROTOCOL 5.4)."""

    chunk_id: int
    text: str
    context_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"generation_started": True, "chunk_id": self.chunk_id, "text": self.text}
        return _with_context(out, self.context_id)


@dataclass(frozen=True, slots=True)
class ChunkCompleteFrame:
    """All audio of a chunk was sent (PROTOCOL 5.4)."""

    chunk_id: int
    audio_seconds: float
    gen_ms: float
    context_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {
            "chunk_complete": True,
            "chunk_id": self.chunk_id,
            "audio_seconds": round(self.audio_seconds, 4) + 0.0,  # never -0.0
            "gen_ms": round(self.gen_ms, 2) + 0.0,
        }
        return _with_context(out, self.context_id)


@dataclass(frozen=True, slots=True)
class FinalFrame:
    """End of the audio admitted before a flush (PROTOCOL 4.2, 5.4, 6.4)."""

    context_id: str | None = None
    total_audio_seconds: float | None = None
    total_text_chunks: int | None = None
    total_audio_chunks: int | None = None
    stats: Mapping[str, Any] = field(default_factory=dict)
    """tts statistics: ``chunks``, ``total_samples``, ``dur_ms``, ``gen_ms``, ``rtf``."""
    usage: SessionUsage | None = None
    """tts only (PROTOCOL U-19: never on stream ``final``)."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"final": True}
        totals = {
            "total_audio_seconds": self.total_audio_seconds,
            "total_text_chunks": self.total_text_chunks,
            "total_audio_chunks": self.total_audio_chunks,
        }
        out.update({k: v for k, v in totals.items() if v is not None})
        out.update(self.stats)
        if self.usage is not None:
            out["usage"] = self.usage.to_json()
        return _with_context(out, self.context_id)


@dataclass(frozen=True, slots=True)
class SessionClosedFrame:
    """Terminal frame of a turn, or of a multi socket (PROTOCOL 5.4, M-8)."""

    total_audio_seconds: float | None = None
    total_text_chunks: int | None = None
    total_audio_chunks: int | None = None
    usage: SessionUsage | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"session_closed": True}
        totals = {
            "total_audio_seconds": self.total_audio_seconds,
            "total_text_chunks": self.total_text_chunks,
            "total_audio_chunks": self.total_audio_chunks,
        }
        out.update({k: v for k, v in totals.items() if v is not None})
        if self.usage is not None:
            out["usage"] = self.usage.to_json()
        return out


@dataclass(frozen=True, slots=True)
class InterruptedFrame:
    """Ack of a cancel (PROTOCOL S-5)."""

    def to_json(self) -> dict[str, Any]:
        return {"interrupted": True}


@dataclass(frozen=True, slots=True)
class SettingsUpdatedFrame:
    """Ack of ``update_settings`` with all six settings (PROTOCOL S-7, U-24)."""

    settings: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"settings_updated": True, "settings": dict(self.settings)}


@dataclass(frozen=True, slots=True)
class WarningFrame:
    """A notice such as the idle auto-flush (PROTOCOL U-3)."""

    message: str

    def to_json(self) -> dict[str, Any]:
        return {"warning": self.message}


@dataclass(frozen=True, slots=True)
class SessionStartedFrame:
    """Optional multi greeting (PROTOCOL 2.2)."""

    session_id: str

    def to_json(self) -> dict[str, Any]:
        return {"session_started": True, "session_id": self.session_id}


@dataclass(frozen=True, slots=True)
class ContextCreatedFrame:
    """A context exists (PROTOCOL M-1)."""

    context_id: str

    def to_json(self) -> dict[str, Any]:
        return {"context_created": True, "context_id": self.context_id}


@dataclass(frozen=True, slots=True)
class ContextClosedFrame:
    """A context ended, with its usage (PROTOCOL M-7)."""

    context_id: str
    usage: SessionUsage | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"context_closed": True, "context_id": self.context_id}
        if self.usage is not None:
            out["usage"] = self.usage.to_json()
        return out


@dataclass(frozen=True, slots=True)
class ContextTimeoutFrame:
    """An idle context was closed (PROTOCOL M-10, U-7)."""

    context_id: str

    def to_json(self) -> dict[str, Any]:
        return {"context_timeout": True, "context_id": self.context_id}


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    """An error (PROTOCOL 3.4, G-7)."""

    error: str
    error_code: str | None = None
    code: int | None = None
    retry_after: int | None = None
    request_id: str | None = None
    context_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.error or "error"}
        optional = {
            "error_code": self.error_code,
            "code": self.code,
            "retry_after": self.retry_after,
            "request_id": self.request_id,
            "context_id": self.context_id,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        return out


ServerFrame: TypeAlias = (
    AudioFrame
    | WordTimestampsFrame
    | GenerationStartedFrame
    | ChunkCompleteFrame
    | FinalFrame
    | SessionClosedFrame
    | InterruptedFrame
    | SettingsUpdatedFrame
    | WarningFrame
    | SessionStartedFrame
    | ContextCreatedFrame
    | ContextClosedFrame
    | ContextTimeoutFrame
    | ErrorFrame
)
Frame: TypeAlias = ClientFrame | ServerFrame


def encode(frame: Frame) -> str:
    """The JSON text of a frame (PROTOCOL G-4: one object per text frame)."""
    return _dump(frame.to_json())


def parse_usage(v: object) -> SessionUsage | None:
    """``usage`` object (PROTOCOL 3.5), or ``None`` when absent."""
    if v is None:
        return None
    if not isinstance(v, dict):
        raise _bad("usage: expected an object")
    seconds = _get_number(v, "audio_seconds")
    return SessionUsage(
        audio_seconds=seconds or 0.0,
        characters=_get_int(v, "characters"),
        cost_cents=_get_number(v, "cost_cents"),
        currency=_get_str(v, "currency"),
        model_id=_get_str(v, "model_id"),
        cost_unavailable=bool(_get_bool(v, "cost_unavailable")),
    )


def _parse_word(w: object) -> WordTimestamp:
    if not isinstance(w, dict):
        raise _bad("word_timestamps: expected objects")
    word = _get_str(w, "word")
    if word is None:
        raise _bad("word_timestamps: word missing")
    score = _get_number(w, "score")
    return WordTimestamp(
        word,
        _need_int(w, "start_ms"),
        _need_int(w, "end_ms"),
        _need_int(w, "char_start"),
        _need_int(w, "char_end"),
        1.0 if score is None else score,
    )


def _decode_audio(d: Mapping[str, Any]) -> AudioFrame:
    b64 = _get_str(d, "audio") or ""
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise _bad("audio: invalid base64") from None
    enc_name = _get_str(d, "enc") or "pcm_s16le"
    enc = _ENCODING_BY_NAME.get(enc_name)
    if enc is None:
        raise _bad(f"enc: unknown encoding {enc_name!r}")
    return AudioFrame(
        raw,
        enc,
        _need_int(d, "idx"),
        _need_int(d, "sr"),
        _need_int(d, "samples"),
        _get_int(d, "chunk_id"),
        _get_str(d, "context_id"),
    )


_TTS_STATS = ("chunks", "total_samples", "dur_ms", "gen_ms", "rtf", "ttfa_ms")


def _decode_final(d: Mapping[str, Any]) -> FinalFrame:
    for k in _TTS_STATS:
        _get_number(d, k)  # PROTOCOL 4.2: statistics are numbers when present
    stats = {k: d[k] for k in _TTS_STATS if d.get(k) is not None}
    return FinalFrame(
        _get_str(d, "context_id"),
        _get_number(d, "total_audio_seconds"),
        _get_int(d, "total_text_chunks"),
        _get_int(d, "total_audio_chunks"),
        stats,
        parse_usage(d.get("usage")),
    )


def _decode_error(d: Mapping[str, Any]) -> ErrorFrame:
    retry = _get_number(d, "retry_after")
    return ErrorFrame(
        str(d["error"]),
        _get_str(d, "error_code"),
        _get_int(d, "code"),
        None if retry is None else int(retry),
        _get_str(d, "request_id"),
        _get_str(d, "context_id"),
    )


def _server_frames(d: Mapping[str, Any]) -> list[ServerFrame]:
    # PROTOCOL 3.1: dispatch on truthy markers in the clients' order; error first.
    if d.get("error"):
        return [_decode_error(d)]
    cid = _get_str(d, "context_id")
    if d.get("session_started"):
        return [SessionStartedFrame(_get_str(d, "session_id") or "")]
    if d.get("context_created"):
        return [ContextCreatedFrame(_context_id(d, True) or "")]
    if d.get("generation_started"):
        return [GenerationStartedFrame(_get_int(d, "chunk_id") or 0, _get_str(d, "text") or "", cid)]
    out: list[ServerFrame] = []
    if "audio" in d:
        out.append(_decode_audio(d))
    if d.get("word_timestamps"):
        words = d["word_timestamps"]
        if not isinstance(words, list):
            raise _bad("word_timestamps: expected a list")
        out.append(WordTimestampsFrame(tuple(map(_parse_word, words)), _get_int(d, "chunk_id"), cid))
    if out:
        return out
    if d.get("chunk_complete"):
        return [
            ChunkCompleteFrame(
                _get_int(d, "chunk_id") or 0,
                _get_number(d, "audio_seconds") or 0.0,
                _get_number(d, "gen_ms") or 0.0,
                cid,
            )
        ]
    if d.get("final"):
        return [_decode_final(d)]
    if d.get("session_closed"):
        return [
            SessionClosedFrame(
                _get_number(d, "total_audio_seconds"),
                _get_int(d, "total_text_chunks"),
                _get_int(d, "total_audio_chunks"),
                parse_usage(d.get("usage")),
            )
        ]
    if d.get("context_closed"):
        return [ContextClosedFrame(_context_id(d, True) or "", parse_usage(d.get("usage")))]
    if d.get("context_timeout"):
        return [ContextTimeoutFrame(_context_id(d, True) or "")]
    if d.get("interrupted"):
        return [InterruptedFrame()]
    if d.get("settings_updated"):
        settings = d.get("settings")
        return [SettingsUpdatedFrame(settings if isinstance(settings, dict) else {})]
    if "warning" in d:
        return [WarningFrame(str(d["warning"]))]
    raise _bad("frame has no known marker key")


def decode_server_frames(data: str | bytes) -> list[ServerFrame]:
    """Parse one server frame; a frame may carry audio and word timestamps together."""
    return _server_frames(_load(data))


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
