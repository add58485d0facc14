"""Real WebSockets: the only client module that imports ``websockets``.

:class:`WebSocketTransport` is the default :class:`~rxtts.transport.base.Transport`
(keepalive pings, compression offer, upgrade errors mapped to typed exceptions,
PROTOCOL 2.2 and 9); this module also holds the URL and key rules of PROTOCOL 2.1.
Connections, close codes and replay policy live in :mod:`rxtts.transport.base`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import urllib.parse
from collections.abc import Mapping
from typing import Final

import reactivex
from reactivex import Observable
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from rxtts.errors import ConnectionClosedError, error_from_http
from rxtts.protocol.frames import Endpoint
from rxtts.transport.base import Connection, Socket, SocketClosed, TransportOptions, open_connection

_ws_log = logging.getLogger("rxtts.transport.websockets")
"""websockets' own logger; at DEBUG it logs the request line, i.e. the ``api_key``."""

SDK_NAME: Final = "rxtts"
"""Value of the ``sdk`` query parameter (PROTOCOL 2.1: servers ignore it)."""
HOSTED_URL: Final = "https://api.kugelaudio.com"
"""Base URL of the hosted KugelAudio service."""
HOSTED_EU_URL: Final = "https://api.eu.kugelaudio.com"
"""Base URL of the hosted service's EU region."""
KEY_PREFIXES: Final = ("eu-", "us-", "global-")
"""Region prefixes stripped from API keys before sending (PROTOCOL 2.1)."""
_LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def _sdk_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rxtts")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


# -- URLs and keys (PROTOCOL 2.1) --------------------------------------------------------


def key_region(api_key: str | None) -> str | None:
    """The region named by a key prefix (``"eu"``, ``"us"``, ``"global"``), if any."""
    if api_key:
        for prefix in KEY_PREFIXES:
            if api_key.startswith(prefix):
                return prefix[:-1]
    return None


def strip_key_prefix(api_key: str) -> str:
    """The key without its region prefix (PROTOCOL 2.1: ``eu-test-key`` -> ``test-key``)."""
    region = key_region(api_key)
    return api_key[len(region) + 1 :] if region else api_key


def hosted_base_url(api_key: str | None = None, region: str | None = None) -> str:
    """The hosted service's base URL: only the ``eu`` region changes it (PROTOCOL 2.1)."""
    return HOSTED_EU_URL if (region or key_region(api_key)) == "eu" else HOSTED_URL


def ws_base_url(url: str) -> str:
    """``http(s)://`` -> ``ws(s)://`` by string replacement, no trailing ``/`` (PROTOCOL 2.1)."""
    url = url.strip().rstrip("/")
    if url.startswith("https://"):
        return "wss://" + url[len("https://") :]
    if url.startswith("http://"):
        return "ws://" + url[len("http://") :]
    if url.startswith(("ws://", "wss://")):
        return url
    raise ValueError(f"unsupported URL scheme in {url!r}: use http(s):// or ws(s)://")


def build_url(
    base_url: str,
    endpoint: Endpoint | str,
    api_key: str | None = None,
    query: Mapping[str, str] | None = None,
) -> str:
    """The WebSocket URL of ``endpoint`` with ``api_key=`` auth and the SDK tag.

    A base that already ends with a ``/ws/...`` path keeps that path.
    """
    base = ws_base_url(base_url)
    path = str(endpoint)
    if not urllib.parse.urlsplit(base).path.startswith("/ws/"):
        base += path
    params: dict[str, str] = {}
    if api_key:
        params["api_key"] = strip_key_prefix(api_key)  # PROTOCOL 2.1: prefixes stripped
    params.update(query or {})
    params.update({"sdk": SDK_NAME, "sdk_version": _sdk_version()})
    return f"{base}?{urllib.parse.urlencode(params)}"


def redact(url: str) -> str:
    """``url`` with the API key hidden, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    query = [(k, "***" if k == "api_key" else v) for k, v in urllib.parse.parse_qsl(parts.query)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


_KEY_PARAM = re.compile(r"api_key=[^&\s#]*")


class _RedactKeys(logging.Filter):
    """Hides the ``api_key`` of request lines websockets logs at DEBUG (see :func:`redact`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler
            return True
        if "api_key=" in message:
            record.msg, record.args = _KEY_PARAM.sub("api_key=***", message), ()
        return True


_ws_log.addFilter(_RedactKeys())


# -- the websockets transport -------------------------------------------------------------


class _WsSocket:
    """A ``websockets`` client connection as a :class:`~rxtts.transport.base.Socket`."""

    __slots__ = ("_ws",)

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws

    async def send(self, message: str) -> None:
        try:
            await self._ws.send(message)
        except ConnectionClosed as exc:
            raise SocketClosed(self._ws.close_code, self._ws.close_reason or "") from exc

    async def recv(self) -> str | bytes:
        try:
            return await self._ws.recv()
        except ConnectionClosed as exc:
            raise SocketClosed(self._ws.close_code, self._ws.close_reason or "") from exc

    async def close(self, code: int, reason: str) -> None:
        await self._ws.close(code, reason)

    def abort(self) -> None:
        self._ws.transport.abort()

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    @property
    def close_reason(self) -> str:
        return self._ws.close_reason or ""

    @property
    def latency(self) -> float:
        return float(self._ws.latency)


class WebSocketTransport:
    """Real WebSockets (``websockets`` >= 15), the default :class:`Transport`."""

    async def open(self, url: str, options: TransportOptions) -> Socket:
        """Open ``url``; typed errors for every way this can fail (PROTOCOL 9)."""
        host = urllib.parse.urlsplit(url).hostname or ""
        try:
            ws = await ws_connect(
                url,
                ping_interval=options.ping_interval,
                ping_timeout=options.ping_timeout,
                close_timeout=options.close_timeout,
                open_timeout=options.open_timeout,
                max_size=options.max_size,
                compression=options.compression,
                additional_headers=list(options.additional_headers) or None,
                proxy=None if host in _LOOPBACK else True,
                logger=_ws_log,  # never log the key (DESIGN 4)
            )
        except InvalidStatus as exc:
            response = exc.response
            body = response.body.decode("utf-8", "replace") if response.body else ""
            raise error_from_http(response.status_code, dict(response.headers.raw_items()), body) from exc
        except InvalidURI as exc:
            raise ValueError(f"invalid WebSocket URL {redact(url)!r}: {exc}") from exc
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise ConnectionClosedError(f"cannot connect to {redact(url)}: {exc}") from exc
        return _WsSocket(ws)


def connect_observable(url: str, options: TransportOptions | None = None) -> Observable[Connection]:
    """Rx form of :func:`open_connection`: emits the connection once, then completes.

    Must be subscribed on a thread running an asyncio loop (the socket's loop)::

        connect_observable(url) -> ---c|
    """
    return reactivex.defer(
        lambda _: reactivex.from_future(asyncio.ensure_future(open_connection(url, options)))
    )


__all__ = [
    "HOSTED_EU_URL",
    "HOSTED_URL",
    "KEY_PREFIXES",
    "SDK_NAME",
    "WebSocketTransport",
    "build_url",
    "connect_observable",
    "hosted_base_url",
    "key_region",
    "redact",
    "strip_key_prefix",
    "ws_base_url",
]
