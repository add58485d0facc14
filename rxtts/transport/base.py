"""The transport seam (httpx's ``BaseTransport`` is the model) and the connection on top.

A :class:`Transport` opens a :class:`Socket`: an ordered, message-based, closable pipe of
text frames. Two implementations exist:

- :class:`~rxtts.transport.websocket.WebSocketTransport` (the default): real sockets via
  ``websockets``, the only module of the client that imports it;
- :class:`~rxtts.transport.memory.MemoryTransport`: an in-memory pipe to a handler in the
  same loop (the real server's ``serve_socket`` or a scripted peer), for client tests
  without sockets.

:class:`Connection` sits on a socket and is what the sessions use: decoded frames in as a
hot ``Observable[ServerFrame]``, frames out in call order, and a :class:`CloseInfo` with
the typed error each close code means (PROTOCOL 9).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Final, Protocol, runtime_checkable

from reactivex import Observable
from reactivex.abc import ObserverBase
from reactivex.subject import Subject

from rxtts.errors import (
    CloseCode,
    ConnectionClosedError,
    ProtocolError,
    RemoteProtocolError,
    RxTtsError,
    error_from_close,
)
from rxtts.protocol.frames import ClientFrame, ServerFrame, decode_server_frames, encode

log = logging.getLogger("rxtts.transport")

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


# -- options, close info, replay policy ----------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """When a session may reconnect and replay a turn (PROTOCOL 10)."""

    retry_after: float = 1.0
    """Seconds to wait after a 1012/1013 close before reconnecting."""
    max_replays: int = 1
    """Replays allowed per turn or context; one that delivered audio is never replayed."""
    codes: frozenset[int] = field(
        default_factory=lambda: frozenset({CloseCode.SERVICE_RESTART, CloseCode.TRY_AGAIN_LATER})
    )
    """Close codes that allow a replay."""


# -- the seam ------------------------------------------------------------------------------


class SocketClosed(Exception):
    """Raised by :meth:`Socket.recv` once the socket is closed (after every queued message)."""

    def __init__(self, code: int | None = 1006, reason: str = "") -> None:
        super().__init__(f"socket closed ({code}) {reason}".rstrip())
        self.code = code
        self.reason = reason


@runtime_checkable
class Socket(Protocol):
    """One open message socket: what a :class:`Connection` needs from a transport."""

    async def send(self, message: str) -> None:
        """Write one text frame (raises :class:`SocketClosed` when closed)."""
        ...

    async def recv(self) -> str | bytes:
        """The next message; :class:`SocketClosed` once the socket is closed."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Start the closing handshake and wait until the socket is closed."""
        ...

    def abort(self) -> None:
        """Drop the connection at once, without a closing handshake."""
        ...

    @property
    def close_code(self) -> int | None:
        """The close code received, once closed (1006 for a dropped connection)."""
        ...

    @property
    def close_reason(self) -> str:
        """The close reason received, once closed."""
        ...

    @property
    def latency(self) -> float:
        """Round-trip time of the last keepalive ping in seconds (0 if unknown)."""
        ...


@runtime_checkable
class Transport(Protocol):
    """Opens sockets; raise the typed errors of PROTOCOL 9 for refused upgrades."""

    async def open(self, url: str, options: TransportOptions) -> Socket:
        """Open ``url``; ``AuthenticationError`` etc. for rejected upgrades,
        :class:`~rxtts.errors.ConnectionClosedError` when unreachable."""
        ...


# -- the connection ------------------------------------------------------------------------


@dataclass(slots=True)
class _Stats:
    frames_in: int = 0
    frames_out: int = 0
    ignored: int = 0


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
    """One open socket: decoded frames in (hot observable), frames out (observer).

    All methods run on the event loop that opened the connection; use
    ``loop.call_soon_threadsafe`` from other threads.
    """

    def __init__(self, sock: Socket, url: str) -> None:
        self._sock = sock
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
        self._reader = self.loop.create_task(self._read(), name="rxtts-reader")
        self._writer = self.loop.create_task(self._write(), name="rxtts-writer")

    @property
    def is_open(self) -> bool:
        """True until the socket starts closing."""
        return self._closing is None and not self.closed.done()

    @property
    def latency(self) -> float:
        """Round-trip time of the last keepalive ping in seconds (0 before the first pong)."""
        return float(self._sock.latency)

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
        """Drop the connection at once (tests, and loops that are shutting down)."""
        self._closing = self._closing or (CloseCode.ABNORMAL, "aborted")
        self._sock.abort()

    # -- tasks ------------------------------------------------------------------------------

    async def _write(self) -> None:
        sock, out = self._sock, self._out
        try:
            while (data := await out.get()) is not None:
                await sock.send(data)
                self.stats.frames_out += 1
            code, reason = self._closing or (CloseCode.NORMAL, "")
            await sock.close(code, reason)
        except SocketClosed:
            pass  # the reader reports how the socket ended

    async def _read(self) -> None:
        error: RxTtsError | None = None
        try:
            while True:
                error = self._dispatch(await self._sock.recv())
                if error is not None:
                    # A frame we cannot decode leaves the turn state unknown: fail loudly.
                    self._closing = (CloseCode.PROTOCOL_ERROR, "malformed frame")
                    self._out.put_nowait(None)
                    break
        except SocketClosed:
            pass
        except Exception as exc:  # pragma: no cover - defensive: never hang a subscriber
            log.exception("rxtts: reader failed")
            error = ConnectionClosedError(f"transport failure: {exc!r}")
        if error is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._drain(), 5.0)
        self._finish(error)

    async def _drain(self) -> None:
        with contextlib.suppress(SocketClosed):
            while True:
                await self._sock.recv()

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
        code = self._sock.close_code
        reason = self._sock.close_reason or ""
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


async def open_connection(
    url: str, options: TransportOptions | None = None, transport: Transport | None = None
) -> Connection:
    """Open ``url`` over ``transport`` (default: real WebSockets) and start reading.

    Raises:
        AuthenticationError, RateLimitError, ...: the upgrade was rejected (PROTOCOL 9).
        ConnectionClosedError: the server is unreachable or the handshake timed out.
    """
    if transport is None:
        from rxtts.transport.websocket import WebSocketTransport

        transport = WebSocketTransport()
    sock = await transport.open(url, options or TransportOptions())
    return Connection(sock, url)


__all__ = [
    "CloseInfo",
    "Connection",
    "ReconnectPolicy",
    "Socket",
    "SocketClosed",
    "Transport",
    "TransportOptions",
    "open_connection",
]
