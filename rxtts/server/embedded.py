"""Run the local server in a background thread, on its own event loop.

``start_background_server()`` is what ``rxtts.connect()`` uses when no URL is given: the
engine and the server never block the caller's loop (so it also works inside Jupyter,
whose loop is already running), and it returns only once the socket accepts connections.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from websockets.asyncio.server import Server

from rxtts.server.app import ServerOptions, ServerStats, TtsApp
from rxtts.server.engines.base import Engine
from rxtts.server.engines.catalogue import best_available_engine, build_engine

__all__ = ["RunningServer", "resolve_engine", "start_background_server"]

_START_TIMEOUT_S = 120.0


def resolve_engine(engine: str | Engine = "best", threads: int = 2) -> Engine:
    """An engine instance: given, built by name, or the best installed one (``"best"``)."""
    if not isinstance(engine, str):
        return engine
    name = best_available_engine() if engine == "best" else engine
    return build_engine(name, threads=threads)


@dataclass(slots=True, eq=False)
class RunningServer:
    """A server running in a daemon thread; stop it with :meth:`stop` or ``with``."""

    host: str
    """Bound address."""
    port: int
    """Bound port (the real one when 0 was asked)."""
    app: TtsApp
    """The application (engine, options, sessions)."""
    _loop: asyncio.AbstractEventLoop = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _stop: asyncio.Event = field(repr=False)

    @property
    def url(self) -> str:
        """WebSocket base URL, e.g. ``ws://127.0.0.1:8123``."""
        return f"ws://{_url_host(self.host)}:{self.port}"

    @property
    def http_url(self) -> str:
        """HTTP base URL (REST, and ``api_url`` of the kugelaudio SDK)."""
        return f"http://{_url_host(self.host)}:{self.port}"

    @property
    def engine(self) -> Engine:
        """The engine serving every request."""
        return self.app.engine

    @property
    def running(self) -> bool:
        """Whether the server thread is alive."""
        return self._thread.is_alive()

    def stats(self, timeout: float = 5.0) -> ServerStats:
        """:meth:`TtsApp.stats`, taken on the server's loop thread (read-only).

        Raises:
            RuntimeError: the server is not running.
            TimeoutError: the loop did not answer within ``timeout`` seconds.
        """
        result: concurrent.futures.Future[ServerStats] = concurrent.futures.Future()

        def take() -> None:
            try:
                result.set_result(self.app.stats())
            except BaseException as exc:  # pragma: no cover - stats() only reads
                result.set_exception(exc)

        if not self._thread.is_alive():
            raise RuntimeError("the server is not running")
        self._loop.call_soon_threadsafe(take)
        return result.result(timeout)

    def close_connections(
        self, code: int = 1012, reason: str = "service restart", timeout: float = 5.0
    ) -> int:
        """Close every open WebSocket with ``code``; returns how many were closed.

        A deploy restart (PROTOCOL G-11: 1012, or 1013 while draining): clients replay a
        turn that had no audio yet. The server itself keeps accepting connections.
        """

        async def close_all() -> int:
            sessions = list(self.app.sessions)
            await asyncio.gather(*(s.ws.close(code, reason) for s in sessions))
            return len(sessions)

        if not self._thread.is_alive():
            raise RuntimeError("the server is not running")
        return asyncio.run_coroutine_threadsafe(close_all(), self._loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Close every socket with 1001, stop the engines, join the thread (idempotent)."""
        if self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def run_until_stopped(server: Server, app: TtsApp, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set, then close sockets with 1001 and stop the engines."""
    try:
        await stop.wait()
    finally:
        server.close(close_connections=True)  # websockets: code 1001 (going away)
        await server.wait_closed()
        app.close()


def start_background_server(
    engine: str | Engine = "best",
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    threads: int = 2,
    warm_up: bool = True,
    **options: Any,
) -> RunningServer:
    """Start the local server in a daemon thread and return once it accepts connections.

    Args:
        engine: An engine, an engine name (``"piper"``, ``"espeak"``, ``"tone"``) or
            ``"best"`` (piper if installed, else espeak).
        host: Address to bind; loopback by default.
        port: Port; 0 picks a free one (see :attr:`RunningServer.port`).
        threads: Piper's onnxruntime threads when the engine is built here.
        warm_up: Load the model before accepting connections (first request is fast).
        **options: :class:`~rxtts.server.app.ServerOptions` fields, e.g. ``api_key``,
            ``idle_flush_seconds``, ``inactivity_timeout``, ``workers``.

    Raises:
        EngineUnavailableError: no such engine is installed.
        OSError: the address cannot be bound.
    """
    server_options = ServerOptions(**options)
    instance = resolve_engine(engine, threads)
    if warm_up:
        instance.warm_up()
    app = TtsApp(instance, server_options)
    ready = threading.Event()
    result: dict[str, Any] = {}

    def main() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        stop = asyncio.Event()
        result["loop"], result["stop"] = loop, stop

        async def run() -> None:
            try:
                server = await app.serve(host, port)
            except BaseException as exc:
                result["error"] = exc
                ready.set()
                return
            result["port"] = server.sockets[0].getsockname()[1]
            ready.set()
            await run_until_stopped(server, app, stop)

        try:
            loop.run_until_complete(run())
        finally:
            loop.close()

    thread = threading.Thread(target=main, name="rxtts-server", daemon=True)
    thread.start()
    if not ready.wait(_START_TIMEOUT_S):
        raise TimeoutError("the local TTS server did not start in time")
    if "error" in result:
        thread.join()
        raise result["error"]
    return RunningServer(host, result["port"], app, result["loop"], thread, result["stop"])
