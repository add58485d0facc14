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
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from websockets.asyncio.server import Server

from rxtts.engine import Engine
from rxtts.server.app import ServerOptions, ServerStats, TtsApp
from rxtts.server.engines.catalogue import best_available_engine, build_engine
from rxtts.server.metrics import start_agent

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
    _draining: asyncio.Event = field(repr=False)
    _drain_timeout: float = field(default=0.0, repr=False)
    agent_port: int | None = None
    """Port of the HAProxy agent-check listener, if one was asked for."""

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
            await asyncio.gather(*(s.sock.close(code, reason) for s in sessions))
            return len(sessions)

        if not self._thread.is_alive():
            raise RuntimeError("the server is not running")
        return asyncio.run_coroutine_threadsafe(close_all(), self._loop).result(timeout)

    def drain(self, timeout: float | None = None) -> None:
        """G-11: drain, then stop (a deploy restart); blocks until the thread ended.

        New upgrades get HTTP 503 + ``Retry-After``, idle sockets close 1012 at once,
        busy ones with 1012 after their current turn/context work, bounded by
        ``timeout`` (default ``ServerOptions.drain_timeout``); then 1012 anyway.
        """
        if not self._thread.is_alive():
            return
        limit = self.app.options.drain_timeout if timeout is None else timeout
        self._drain_timeout = limit
        with contextlib.suppress(RuntimeError):  # loop already closed
            self._loop.call_soon_threadsafe(self._draining.set)
        self._thread.join(limit + 10.0)

    def stop(self, timeout: float = 10.0) -> None:
        """Close every socket with 1001 at once, stop the engines, join the thread
        (idempotent). Not a deploy drain: use :meth:`drain` for that (G-11)."""
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


async def run_until_stopped(
    server: Server,
    app: TtsApp,
    stop: asyncio.Event,
    drain: asyncio.Event | None = None,
    drain_timeout: Callable[[], float] | None = None,
) -> None:
    """Serve until ``stop`` (close sockets with 1001) or ``drain`` (G-11) is set."""
    waits = [asyncio.ensure_future(stop.wait())]
    if drain is not None:
        waits.append(asyncio.ensure_future(drain.wait()))
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if drain is not None and drain.is_set():
            timeout = drain_timeout() if drain_timeout is not None else app.options.drain_timeout
            await drain_sessions(app, timeout)
    finally:
        for w in waits:
            w.cancel()
        server.close(close_connections=True)  # websockets: code 1001 (going away)
        await server.wait_closed()
        app.close()


async def drain_sessions(app: TtsApp, timeout: float) -> None:
    """G-11: refuse upgrades, close idle sockets 1012 now and busy ones after their work;
    after ``timeout`` seconds close the rest with 1012 too."""
    app.drain()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while app.sessions and loop.time() < deadline:
        await asyncio.sleep(0.02)
    if app.sessions:
        await app.close_remaining()
    while app.sessions and loop.time() < deadline + 5.0:
        await asyncio.sleep(0.02)


def start_background_server(
    engine: str | Engine = "best",
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    threads: int = 2,
    warm_up: bool = True,
    agent_port: int | None = None,
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
        agent_port: Also answer HAProxy ``agent-check`` on this port (0 picks one; see
            :attr:`RunningServer.agent_port`, :mod:`rxtts.server.metrics`).
        **options: :class:`~rxtts.server.app.ServerOptions` fields, e.g. ``api_key``,
            ``idle_flush_seconds``, ``inactivity_timeout``, ``engine_threads``.

    Raises:
        EngineUnavailableError: no such engine is installed.
        OSError: the address cannot be bound.
    """
    if "workers" in options:  # the old name of engine_threads (rxtts.bench passes it)
        options["engine_threads"] = options.pop("workers")
    server_options = ServerOptions(**options)
    instance = resolve_engine(engine, threads)
    if warm_up:
        instance.warm_up()
    app = TtsApp(instance, server_options)
    ready = threading.Event()
    result: dict[str, Any] = {}

    holder: list[RunningServer] = []

    def main() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        stop, draining = asyncio.Event(), asyncio.Event()
        result["loop"], result["stop"], result["drain"] = loop, stop, draining

        async def run() -> None:
            try:
                server = await app.serve(host, port)
            except BaseException as exc:
                result["error"] = exc
                ready.set()
                return
            result["port"] = server.sockets[0].getsockname()[1]
            agent = None
            if agent_port is not None:
                try:
                    agent = await start_agent(app.metrics.agent_reply, host, agent_port)
                except BaseException as exc:
                    server.close()
                    result["error"] = exc
                    ready.set()
                    return
                result["agent_port"] = agent.sockets[0].getsockname()[1]
            ready.set()
            try:
                await run_until_stopped(server, app, stop, draining, lambda: holder[0]._drain_timeout)
            finally:
                if agent is not None:
                    agent.close()

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
    running = RunningServer(
        host,
        result["port"],
        app,
        result["loop"],
        thread,
        result["stop"],
        result["drain"],
        agent_port=result.get("agent_port"),
    )
    holder.append(running)
    return running
