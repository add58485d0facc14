"""The socket seam of the server: what one connection needs from its WebSocket.

:class:`SocketClosed` is the client transport's (:mod:`rxtts.transport.base`): one
exception for "the peer closed" on both sides, so the in-memory transport
(:class:`~rxtts.transport.memory.MemorySocket`) serves as either end.

The per-connection code (:mod:`rxtts.server.connection`) runs over :class:`ServerSocket`,
never over ``websockets`` directly, so an in-memory transport can drive the real server
logic without sockets (:meth:`rxtts.server.app.TtsApp.serve_socket`).
:class:`WebsocketsSocket` adapts a ``websockets.asyncio.server.ServerConnection``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from rxtts.transport.base import SocketClosed

__all__ = ["Abortable", "ServerSocket", "SocketClosed", "WebsocketsSocket"]


@runtime_checkable
class ServerSocket(Protocol):
    """One accepted WebSocket, already upgraded and authorised.

    Pings/pongs are the transport's business (PROTOCOL G-6): they never reach
    :meth:`recv`.
    """

    @property
    def path(self) -> str:
        """The request path without the query, e.g. ``/ws/tts/stream``."""
        ...

    @property
    def query(self) -> Mapping[str, list[str]]:
        """The parsed query string (``api_key`` was checked before the upgrade)."""
        ...

    async def recv(self) -> str | bytes:
        """The next message; raises :class:`SocketClosed` once the peer closed."""
        ...

    async def send(self, text: str) -> None:
        """Write one text frame; waits while the transport's buffer is full.

        Raises :class:`SocketClosed` when the socket is closed.
        """
        ...

    async def close(self, code: int, reason: str) -> None:
        """Start the closing handshake and wait for it (bounded by the transport)."""
        ...


@runtime_checkable
class Abortable(Protocol):
    """Optional: a socket that can drop its connection at once.

    Used for a client that reads nothing (:mod:`rxtts.server.output`): a close frame
    would wait behind the same full buffer. Sockets without it get ``close(1011)``.
    """

    def abort(self) -> None:
        """Drop the connection without a closing handshake."""
        ...


@dataclass(eq=False, slots=True)
class WebsocketsSocket:
    """:class:`ServerSocket` over a ``websockets`` server connection."""

    ws: ServerConnection

    @property
    def path(self) -> str:
        return urlsplit(self.ws.request.path if self.ws.request else "").path

    @property
    def query(self) -> Mapping[str, list[str]]:
        return parse_qs(urlsplit(self.ws.request.path if self.ws.request else "").query)

    async def recv(self) -> str | bytes:
        try:
            return await self.ws.recv()
        except ConnectionClosed as exc:
            raise _closed(exc) from None

    async def send(self, text: str) -> None:
        try:
            await self.ws.send(text)
        except ConnectionClosed as exc:
            raise _closed(exc) from None

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code, reason)

    def abort(self) -> None:
        self.ws.transport.abort()


def _closed(exc: ConnectionClosed) -> SocketClosed:
    frame = exc.rcvd
    return SocketClosed(frame.code, frame.reason) if frame is not None else SocketClosed()
