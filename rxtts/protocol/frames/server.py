"""Server -> client frames, their encoder and strict decoder (PROTOCOL 3-6)."""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from rxtts.events import Encoding, SessionUsage, WordTimestamp
from rxtts.protocol.frames._codec import (
    _ENCODING_BY_NAME,
    _bad,
    _context_id,
    _dump,
    _get_bool,
    _get_int,
    _get_number,
    _get_str,
    _load,
    _need_int,
)
from rxtts.protocol.frames.client import (
    ClientFrame,
)

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
