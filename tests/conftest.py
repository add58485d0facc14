"""Shared fixtures: local servers on 127.0.0.1 (port 0 only) and a raw WebSocket client.

- ``tone_server``: session-wide server with the instant tone engine and short timers
  (idle auto-flush 0.5 s; context inactivity 20 s as in production).
- ``server_factory(engine="tone", **options)``: a dedicated server per test (stopped
  after it), e.g. ``server_factory(inactivity_timeout=0.3)`` or a slow tone engine.
- ``piper_engine`` / ``piper_server``: the real neural voice, loaded once per session.
- ``wire``: :class:`Wire`, helpers for raw ``websockets`` clients (``wire.run(coro)``,
  ``async with wire.connect(server, "/ws/tts/stream") as ws``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, TypeVar
from urllib.parse import urlencode

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from rxtts.engine import Engine
from rxtts.server.embedded import RunningServer, start_background_server

T = TypeVar("T")

VOICE = 1071
"""A voice id every engine has."""


class WireClient:
    """A raw WebSocket client that speaks JSON frames and records what it received."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.received: list[dict[str, Any]] = []
        self.raw: list[str | bytes] = []

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        """Send a dict as JSON, or a str/bytes frame as is."""
        await self.ws.send(json.dumps(frame) if isinstance(frame, dict) else frame)

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next frame, decoded; ``TimeoutError`` if none comes in time."""
        message = await asyncio.wait_for(self.ws.recv(), timeout)
        self.raw.append(message)
        assert isinstance(message, str), "server sent a binary frame (PROTOCOL G-4)"
        frame = json.loads(message)
        assert isinstance(frame, dict)
        self.received.append(frame)
        return frame

    async def recv_until(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> list[dict[str, Any]]:
        """Frames up to and including the first matching ``predicate``."""
        deadline = time.monotonic() + timeout
        out: list[dict[str, Any]] = []
        while True:
            frame = await self.recv(max(0.01, deadline - time.monotonic()))
            out.append(frame)
            if predicate(frame):
                return out

    async def quiet(self, seconds: float) -> list[dict[str, Any]]:
        """Every frame that arrives within ``seconds`` (expected: none)."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                out.append(await self.recv(left))
            except TimeoutError:
                break
        return out


class Wire:
    """Helpers for raw-socket tests (a namespace; use via the ``wire`` fixture)."""

    @staticmethod
    def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine to completion on a fresh loop."""
        return asyncio.run(asyncio.wait_for(coro, timeout))

    @staticmethod
    @contextlib.asynccontextmanager
    async def connect(
        server: RunningServer, path: str, api_key: str | None = "test-key", **query: Any
    ) -> AsyncIterator[WireClient]:
        """Open ``path`` like the PY SDK does (``api_key``, ``sdk`` tags)."""
        params = {"sdk": "python", "sdk_version": "2.7.0", **query}
        if api_key is not None:
            params = {"api_key": api_key, **params}
        url = f"{server.url}{path}?{urlencode(params)}"
        async with websockets.connect(url, open_timeout=5, close_timeout=2) as ws:
            yield WireClient(ws)

    @staticmethod
    def audio_bytes(frame: dict[str, Any]) -> bytes:
        """Decoded ``audio`` of a frame."""
        return base64.b64decode(frame["audio"])

    @staticmethod
    def kinds(frames: list[dict[str, Any]]) -> list[str]:
        """The marker key of each frame (``audio``, ``final``, ...)."""
        markers = (
            "error",
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
        )
        return [next((m for m in markers if f.get(m)), "?") for f in frames]


@pytest.fixture(scope="session")
def wire() -> type[Wire]:
    """The raw client helpers."""
    return Wire


@pytest.fixture(scope="session")
def tone_server() -> Iterator[RunningServer]:
    """A tone-engine server shared by the session (idle auto-flush after 0.5 s)."""
    with start_background_server("tone", idle_flush_seconds=0.5, warm_up=False) as server:
        yield server


@pytest.fixture
def server_factory() -> Iterator[Callable[..., RunningServer]]:
    """Start dedicated servers (``engine="tone"`` by default); all stop after the test."""
    started: list[RunningServer] = []

    def factory(engine: str | Engine = "tone", **options: Any) -> RunningServer:
        options.setdefault("warm_up", False)
        server = start_background_server(engine, "127.0.0.1", 0, **options)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def piper_engine() -> Engine:
    """The piper engine (joe), loaded and warmed once per session."""
    from rxtts.server.engines.piper import PiperEngine

    engine = PiperEngine(threads=2)
    engine.warm_up()
    return engine


@pytest.fixture(scope="session")
def piper_server(piper_engine: Engine) -> Iterator[RunningServer]:
    """A server speaking with piper, shared by the session."""
    with start_background_server(piper_engine, warm_up=False) as server:
        yield server
