"""Shared pieces of the frame codec: limits, endpoints, strict typed field readers, JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, TypeVar

from rxtts.errors import ProtocolError
from rxtts.events import Encoding

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
