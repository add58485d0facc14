"""The client's WebSocket transport: the only client module that imports ``websockets``.

:func:`open_connection` opens one socket and returns a :class:`Connection`:

- ``connection.frames`` is a hot ``Observable[ServerFrame]``: every text message decoded
  once (:func:`~rxtts.protocol.frames.decode_server_frames`) and pushed on the event loop
  thread. It completes on a normal close (1000/1001) and errors with the typed exception
  of :func:`~rxtts.errors.error_from_close` otherwise (PROTOCOL 9).
- ``connection.sender`` is an ``Observer[ClientFrame]``: frames are encoded and written
  in order by one writer task; ``on_completed`` closes the socket with 1000.

Session logic (turns, replay after 1012/1013) lives in the session layers; this module
only knows sockets, URLs, keepalive and close codes, so the streaming, multi-context and
one-shot clients share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import reactivex
from reactivex import Observable
from reactivex.abc import ObserverBase
from reactivex.subject import Subject
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from rxtts.errors import (
    CloseCode,
    ConnectionClosedError,
    ProtocolError,
    RemoteProtocolError,
    RxTtsError,
    error_from_close,
    error_from_http,
)
from rxtts.protocol.frames import ClientFrame, Endpoint, ServerFrame, decode_server_frames, encode

log = logging.getLogger("rxtts.transport")
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
_KNOWN_MARKERS: Final = frozenset(
    {
        "error",
        "session_started",
        "context_created",
        "generation_started",
        "audio",
        "word_timestamps",
        "chunk_complete",
        "final",
        "session_closed",
        "context_closed",
        "context_timeout",
        "interrupted",
        "settings_updated",
        "warning",
    }
)


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


# -- options and close info ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransportOptions:
    """Socket settings; the defaults are the PY ``StreamingSession``'s (PROTOCOL 2.2)."""

    ping_interval: float | None = 15.0
    """Seconds between keepalive pings (``None``: no pings)."""
    ping_timeout: float | None = 15.0
    """Seconds to wait for a pong before the socket counts as dead (close 1011)."""
    close_timeout: float = 5.0
    """Seconds to wait for the closing handshake."""
    open_timeout: float = 10.0
    """Seconds allowed for TCP + TLS + upgrade."""
    max_size: int | None = 1 << 22
    """Largest inbound message in bytes (servers keep frames < 1 MiB, PROTOCOL G-5)."""
    compression: str | None = None
    """``"deflate"`` to offer permessage-deflate (PY multi does), ``None`` not to."""
    additional_headers: tuple[tuple[str, str], ...] = ()
    """Extra upgrade headers (none are needed: auth is the ``api_key`` parameter)."""


@dataclass(frozen=True, slots=True)
class CloseInfo:
    """How a connection ended."""

    code: int | None
    """Close code received (1006 when the TCP connection dropped without one)."""
    reason: str = ""
    """Close reason received."""
    error: RxTtsError | None = None
    """The typed error this close means; ``None`` for a normal close (PROTOCOL 9)."""
    local: bool = False
    """True when this side asked for the close."""


@dataclass(slots=True)
class _Stats:
    frames_in: int = 0
    frames_out: int = 0
    ignored: int = 0


# -- the connection ------------------------------------------------------------------------


class _Sender(ObserverBase[ClientFrame]):
    """Observer facade over :meth:`Connection.send`."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def on_next(self, value: ClientFrame) -> None:
        self._conn.send(value)

    def on_error(self, error: Exception) -> None:
        self._conn.close_soon(CloseCode.INTERNAL_ERROR, str(error)[:120])

    def on_completed(self) -> None:
        self._conn.close_soon()


class Connection:
    """One open WebSocket: decoded frames in (hot observable), frames out (observer).

    All methods run on the event loop that opened the connection; use
    ``loop.call_soon_threadsafe`` from other threads.
    """

    def __init__(self, ws: ClientConnection, url: str) -> None:
        self._ws = ws
        self.url: Final = url
        """The URL this connection was opened with."""
        self.loop: Final = asyncio.get_running_loop()
        """The event loop that owns the socket."""
        self._subject: Subject[ServerFrame] = Subject()
        self.frames: Final[Observable[ServerFrame]] = self._subject
        """Hot stream of decoded server frames; terminates when the socket closes."""
        self.sender: Final[ObserverBase[ClientFrame]] = _Sender(self)
        """Observer of outgoing frames."""
        self._out: asyncio.Queue[str | None] = asyncio.Queue()
        self._closing: tuple[int, str] | None = None
        self.closed: Final[asyncio.Future[CloseInfo]] = self.loop.create_future()
        """Resolves with the :class:`CloseInfo` once the socket is closed."""
        self.stats: Final = _Stats()
        """Frame counters (in, out, ignored unknown frames)."""
        self._reader = self.loop.create_task(self._read(), name="rxtts-ws-reader")
        self._writer = self.loop.create_task(self._write(), name="rxtts-ws-writer")

    @property
    def is_open(self) -> bool:
        """True until the socket starts closing."""
        return self._closing is None and not self.closed.done()

    @property
    def latency(self) -> float:
        """Round-trip time of the last keepalive ping in seconds (0 before the first pong)."""
        return float(self._ws.latency)

    def send(self, frame: ClientFrame) -> None:
        """Queue one frame; frames are written in call order (loop thread only)."""
        if not self.is_open:
            raise ConnectionClosedError(f"cannot send {type(frame).__name__}: the connection is closed")
        self._out.put_nowait(encode(frame))

    def close_soon(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close after the frames already queued are written."""
        if self._closing is None and not self.closed.done():
            self._closing = (code, reason)
            self._out.put_nowait(None)

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> CloseInfo:
        """Write queued frames, close with ``code`` and wait until the socket is closed."""
        self.close_soon(code, reason)
        return await asyncio.shield(self.closed)

    def abort(self) -> None:
        """Drop the TCP connection at once (tests, and loops that are shutting down)."""
        self._closing = self._closing or (CloseCode.ABNORMAL, "aborted")
        self._ws.transport.abort()

    # -- tasks ------------------------------------------------------------------------------

    async def _write(self) -> None:
        ws, out = self._ws, self._out
        try:
            while (data := await out.get()) is not None:
                await ws.send(data)
                self.stats.frames_out += 1
            code, reason = self._closing or (CloseCode.NORMAL, "")
            await ws.close(code, reason)
        except ConnectionClosed:
            pass  # the reader reports how the socket ended

    async def _read(self) -> None:
        error: RxTtsError | None = None
        try:
            async for message in self._ws:
                error = self._dispatch(message)
                if error is not None:
                    # A frame we cannot decode leaves the turn state unknown: fail loudly.
                    self._closing = (CloseCode.PROTOCOL_ERROR, "malformed frame")
                    self._out.put_nowait(None)
                    break
        except ConnectionClosed:
            pass
        except Exception as exc:  # pragma: no cover - defensive: never hang a subscriber
            log.exception("rxtts: reader failed")
            error = ConnectionClosedError(f"transport failure: {exc!r}")
        if error is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.wait_closed(), 5.0)
        self._finish(error)

    def _dispatch(self, message: str | bytes) -> RxTtsError | None:
        try:
            frames = decode_server_frames(message)
        except ProtocolError as exc:
            if _is_unknown_frame(message):
                self.stats.ignored += 1  # PROTOCOL 3.1: clients ignore unknown frames
                return None
            return RemoteProtocolError(f"malformed server frame: {exc.message}", error_code=exc.error_code)
        self.stats.frames_in += 1
        on_next = self._subject.on_next
        for frame in frames:
            try:
                on_next(frame)
            except Exception:
                log.exception("rxtts: a frame subscriber raised; the frame is skipped")
        return None

    def _finish(self, error: RxTtsError | None) -> None:
        ws = self._ws
        code = ws.close_code
        reason = ws.close_reason or ""
        local = self._closing is not None and error is None
        if error is None and not local:
            error = error_from_close(code, reason)
        info = CloseInfo(code, reason, error, local)
        self._writer.cancel()
        if not self.closed.done():
            self.closed.set_result(info)
        try:
            if error is None:
                self._subject.on_completed()
            else:
                self._subject.on_error(error)
        except Exception:
            log.exception("rxtts: a frame subscriber raised on close")


def _is_unknown_frame(message: str | bytes) -> bool:
    """True for a JSON object frame without any known marker: ignored (PROTOCOL 3.1)."""
    if not isinstance(message, str):
        return False
    try:
        obj = json.loads(message)
    except ValueError:
        return False
    return isinstance(obj, dict) and not any(obj.get(k) for k in _KNOWN_MARKERS)


async def open_connection(url: str, options: TransportOptions | None = None) -> Connection:
    """Open ``url`` and start reading; typed errors for every way this can fail.

    Raises:
        AuthenticationError, RateLimitError, ...: the upgrade was rejected (PROTOCOL 9).
        ConnectionClosedError: the server is unreachable or the handshake timed out.
    """
    opts = options or TransportOptions()
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        ws = await ws_connect(
            url,
            ping_interval=opts.ping_interval,
            ping_timeout=opts.ping_timeout,
            close_timeout=opts.close_timeout,
            open_timeout=opts.open_timeout,
            max_size=opts.max_size,
            compression=opts.compression,
            additional_headers=list(opts.additional_headers) or None,
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
    return Connection(ws, url)


def connect_observable(url: str, options: TransportOptions | None = None) -> Observable[Connection]:
    """Rx form of :func:`open_connection`: emits the connection once, then completes.

    Must be subscribed on a thread running an asyncio loop (the socket's loop)::

        connect_observable(url) -> ---c|
    """
    return reactivex.defer(
        lambda _: reactivex.from_future(asyncio.ensure_future(open_connection(url, options)))
    )


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """When a session may reconnect and replay a turn (PROTOCOL 10)."""

    retry_after: float = 1.0
    """Seconds to wait after a 1012/1013 close before reconnecting."""
    max_replays: int = 1
    """Replays allowed per turn; a turn that delivered audio is never replayed."""
    codes: frozenset[int] = field(
        default_factory=lambda: frozenset({CloseCode.SERVICE_RESTART, CloseCode.TRY_AGAIN_LATER})
    )
    """Close codes that allow a replay."""


__all__ = [
    "HOSTED_EU_URL",
    "HOSTED_URL",
    "KEY_PREFIXES",
    "SDK_NAME",
    "CloseInfo",
    "Connection",
    "ReconnectPolicy",
    "TransportOptions",
    "build_url",
    "connect_observable",
    "hosted_base_url",
    "key_region",
    "open_connection",
    "redact",
    "strip_key_prefix",
    "ws_base_url",
]
