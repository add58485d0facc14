"""API keys on upgrades and REST (PROTOCOL G-1, G-2), HTTP replies, key redaction."""

from __future__ import annotations

import hmac
import http
import json
import logging
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from websockets.datastructures import Headers
from websockets.http11 import Response

__all__ = [
    "API_KEY_ENV",
    "api_key_from_env",
    "error_response",
    "header_key",
    "json_response",
    "key_matches",
    "query_key",
    "redact_keys",
]

API_KEY_ENV = "RXTTS_API_KEY"
"""Environment variable read by ``rxtts serve`` when ``--api-key`` is absent."""
_AUTH_PARAMS = ("api_key", "token", "master_key")
_SECRET_PARAM = re.compile(r"\b(api_key|token|master_key)=[^&\s#]*", re.IGNORECASE)
_SECRET_HEADER = re.compile(r"^([<>] (?:authorization|x-api-key):).*$", re.IGNORECASE | re.MULTILINE)


class _RedactKeys(logging.Filter):
    """Hides API keys in log records: at DEBUG, websockets logs every request line and
    header through this server's logger (``?api_key=``, ``Authorization``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler
            return True
        redacted = _SECRET_HEADER.sub(r"\1 ***", _SECRET_PARAM.sub(r"\1=***", message))
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def redact_keys(logger: logging.Logger) -> None:
    """DESIGN 4: the key itself is never logged."""
    logger.addFilter(_RedactKeys())


def api_key_from_env() -> str | None:
    """``RXTTS_API_KEY`` if set and non-empty."""
    return os.environ.get(API_KEY_ENV) or None


def json_response(status: int, body: Mapping[str, Any], extra: Iterable[tuple[str, str]] = ()) -> Response:
    """A JSON HTTP reply that closes the connection."""
    data = json.dumps(body, separators=(",", ":")).encode()
    headers = Headers(
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Connection", "close"),
            *extra,
        ]
    )
    return Response(status, http.HTTPStatus(status).phrase, headers, data)


def error_response(
    status: int, message: str, error_code: str, extra: Iterable[tuple[str, str]] = ()
) -> Response:
    """PROTOCOL 3.4 error body with a fresh ``x-request-id``."""
    request_id = uuid.uuid4().hex
    body = {"error": message, "error_code": error_code, "code": status, "request_id": request_id}
    return json_response(status, body, [("x-request-id", request_id), *extra])


def key_matches(expected: str, given: str | None) -> bool:
    """Constant-time compare; the key itself is never logged."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def query_key(query: Mapping[str, list[str]]) -> str | None:
    """PROTOCOL G-1: ``api_key=``, or JS's ``token=``/``master_key=``."""
    for name in _AUTH_PARAMS:
        if query.get(name):
            return query[name][0]
    return None


def header_key(headers: Headers) -> str | None:
    """REST: ``Authorization: Bearer`` or ``X-API-Key``."""
    auth = headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return headers.get("X-API-Key")
