"""Client -> server frames and their strict decoder (PROTOCOL 4-6)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from rxtts.config import VoiceSettings
from rxtts.protocol.frames._codec import (
    Endpoint,
    _bad,
    _context_id,
    _get_bool,
    _get_str,
    _invalid,
    _load,
)
from rxtts.protocol.frames.config import (
    CONFIG_KEYS,
    WireConfig,
    parse_config,
    parse_voice_settings,
)

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
