"""An in-memory :class:`~rxtts.transport.base.Transport` (httpx's ``MockTransport``).

``MemoryTransport(handler)`` hands the far end of every socket it opens to ``handler``,
an ``async`` function running in the same loop: the real server logic
(``TtsApp.serve_socket``) or a scripted peer written in the test::

    async def peer(sock: MemorySocket) -> None:
        first = json.loads(await sock.recv())
        await sock.send(json.dumps({"interrupted": True}))

    tts = rxtts.TTS("ws://memory", transport=MemoryTransport(peer))

Semantics follow a WebSocket: messages arrive in order; ``close(code, reason)`` on either
end makes the other end's ``recv`` raise :class:`SocketClosed` with that code after the
messages already sent; ``abort`` is a dropped connection (1006). A handler that returns
closes with 1000, one that raises closes with 1011 (and the error is logged).
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from rxtts.errors import CloseCode, RxTtsError
from rxtts.transport.base import Socket, SocketClosed, TransportOptions

log = logging.getLogger("rxtts.transport.memory")

Handler = Callable[["MemorySocket"], Awaitable[None]]
"""The far end of a memory socket: runs until the conversation is over."""
Refuse = Callable[[str], RxTtsError | None]
"""Decides an upgrade: ``None`` accepts, an error is raised by ``open`` (e.g. 401)."""


class _Closed:
    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason


class MemorySocket:
    """One end of an in-memory socket pair (both ends are :class:`Socket`\\ s)."""

    def __init__(self, url: str) -> None:
        self.url: Final = url
        """The URL the client opened."""
        parts = urllib.parse.urlsplit(url)
        self.path: Final = parts.path or "/"
        """The request path, e.g. ``/ws/tts/stream``."""
        self.query: Final[Mapping[str, list[str]]] = urllib.parse.parse_qs(
            parts.query, keep_blank_values=True
        )
        """The decoded query parameters."""
        self.raw_query: Final = parts.query
        """The query string as sent (keys are not URL-encoded by the SDKs)."""
        self._inbox: asyncio.Queue[str | bytes | _Closed] = asyncio.Queue()
        self._peer: MemorySocket | None = None
        self._closed: _Closed | None = None
        self.sent: int = 0
        """Messages written by this end."""

    @staticmethod
    def pair(url: str) -> tuple[MemorySocket, MemorySocket]:
        """A connected ``(client_end, server_end)`` pair."""
        a, b = MemorySocket(url), MemorySocket(url)
        a._peer, b._peer = b, a
        return a, b

    async def send(self, message: str | bytes) -> None:
        """Deliver ``message`` to the other end (raises :class:`SocketClosed` once closed)."""
        if self._closed is not None:
            raise SocketClosed(self._closed.code, self._closed.reason)
        assert self._peer is not None
        self._peer._inbox.put_nowait(message)
        self.sent += 1

    async def recv(self) -> str | bytes:
        """The next message; :class:`SocketClosed` after the close."""
        item = await self._inbox.get()
        if isinstance(item, _Closed):
            self._inbox.put_nowait(item)  # every later recv raises too
            self._closed = self._closed or item
            raise SocketClosed(item.code, item.reason)
        return item

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close both ends with ``code``; messages already sent are still received."""
        self._terminate(_Closed(code, reason))

    def abort(self) -> None:
        """A dropped connection: both ends see 1006."""
        self._terminate(_Closed(CloseCode.ABNORMAL, ""))

    def _terminate(self, closed: _Closed) -> None:
        if self._closed is not None:
            return
        self._closed = closed
        self._inbox.put_nowait(closed)
        peer = self._peer
        if peer is not None and peer._closed is None:
            peer._closed = closed
            peer._inbox.put_nowait(closed)

    @property
    def closed(self) -> bool:
        """Whether either end closed the pair."""
        return self._closed is not None

    @property
    def close_code(self) -> int | None:
        return None if self._closed is None else self._closed.code

    @property
    def close_reason(self) -> str:
        return "" if self._closed is None else self._closed.reason

    @property
    def latency(self) -> float:
        return 0.0


class MemoryTransport:
    """Opens in-memory sockets whose far end is served by ``handler`` (see module doc)."""

    def __init__(self, handler: Handler, refuse: Refuse | None = None) -> None:
        self._handler = handler
        self._refuse = refuse
        self._tasks: set[asyncio.Task[None]] = set()
        self.opened: int = 0
        """Sockets opened so far (reconnects count)."""
        self.urls: list[str] = []
        """Every URL opened, in order."""

    async def open(self, url: str, options: TransportOptions) -> Socket:
        """A new socket pair; the server end runs ``handler`` in a task of this loop."""
        refusal = self._refuse(url) if self._refuse is not None else None
        if refusal is not None:
            raise refusal
        client, server = MemorySocket.pair(url)
        self.opened += 1
        self.urls.append(url)
        task = asyncio.get_running_loop().create_task(self._serve(server), name="rxtts-memory-peer")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return client

    async def _serve(self, sock: MemorySocket) -> None:
        try:
            await self._handler(sock)
        except SocketClosed:
            pass
        except asyncio.CancelledError:
            sock.abort()
            raise
        except Exception:
            log.exception("rxtts: memory peer raised; closing with 1011")
            await sock.close(CloseCode.INTERNAL_ERROR, "peer failed")
            return
        await sock.close(CloseCode.NORMAL, "")

    async def aclose(self) -> None:
        """Stop every peer still running (their sockets see 1006)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["Handler", "MemorySocket", "MemoryTransport", "Refuse"]
