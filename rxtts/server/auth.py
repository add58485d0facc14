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
from urllib.parse import unquote

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
    "raw_query",
    "redact_keys",
    "redact_text",
]

API_KEY_ENV = "RXTTS_API_KEY"
"""Environment variable read by ``rxtts serve`` when ``--api-key`` is absent."""
_AUTH_PARAMS = ("api_key", "token", "master_key")
_QUERY_PARAM = re.compile(r"(?<![\w%])([\w%.~-]+)=([^&\s#\"']*)")
_SECRET_HEADER = re.compile(r"^([<>] (?:authorization|x-api-key):).*$", re.IGNORECASE | re.MULTILINE)


class _RedactKeys(logging.Filter):
    """Hides API keys in log records: at DEBUG, websockets logs every request line and
    header through this server's logger (``?api_key=``, ``Authorization``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler
            return True
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info and not record.exc_text:
            # A traceback's frames and messages may hold a URL with the key (any level).
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def _hide_param(match: re.Match[str]) -> str:
    name = match.group(1)
    return f"{name}=***" if unquote(name).lower() in _AUTH_PARAMS else match.group(0)


def redact_text(text: str) -> str:
    """``text`` with auth query values (also percent-encoded names such as ``api%5Fkey``)
    and ``Authorization``/``X-API-Key`` header values replaced by ``***``."""
    return _SECRET_HEADER.sub(r"\1 ***", _QUERY_PARAM.sub(_hide_param, text))


def redact_keys(logger: logging.Logger) -> None:
    """DESIGN 4: the key itself is never logged."""
    logger.addFilter(_RedactKeys())


def api_key_from_env() -> str | None:
    """``RXTTS_API_KEY`` if set (``None`` if unset).

    An empty value is returned as ``""``, which :class:`ServerOptions` refuses: an
    empty key must not silently turn auth off (``rxtts serve --no-auth`` does that).
    """
    return os.environ.get(API_KEY_ENV)


def raw_query(query: str) -> dict[str, list[str]]:
    """Query parameters as the SDKs send keys: raw, so ``+`` stays ``+``.

    ``parse_qs`` decodes ``+`` to a space (form encoding); the official SDKs put the key
    into the URL unencoded, so a key with ``+``, ``/`` or ``=`` must survive as is. Names
    and values are percent-decoded (``api%5Fkey``, ``%2B``); a value keeps every ``=``
    after the first one.
    """
    out: dict[str, list[str]] = {}
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        out.setdefault(unquote(name), []).append(unquote(value))
    return out


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
