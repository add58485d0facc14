"""The socket seam: ``TtsApp.serve_socket`` drives the real server logic without sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from rxtts.server.app import TtsApp
from rxtts.server.engines.tone import ToneEngine
from rxtts.server.options import ServerOptions
from rxtts.server.socket import ServerSocket, SocketClosed

VOICE = 1071


class FakeSocket:
    """An in-memory :class:`ServerSocket`: the test writes frames in, reads frames out."""

    def __init__(self, path: str) -> None:
        self._path = path
        self.inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed: tuple[int, str] | None = None

    @property
    def path(self) -> str:
        return self._path

    @property
    def query(self) -> Mapping[str, list[str]]:
        return {}

    async def recv(self) -> str | bytes:
        item = await self.inbox.get()
        if item is None or self.closed is not None:
            raise SocketClosed(*(self.closed or (1000, "")))
        return item

    async def send(self, text: str) -> None:
        if self.closed is not None:
            raise SocketClosed(*self.closed)
        await self.sent.put(json.loads(text))

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self.inbox.put_nowait(None)


async def _stream_turn() -> tuple[list[dict[str, Any]], tuple[int, str] | None]:
    app = TtsApp(ToneEngine(), ServerOptions(max_lead_seconds=None))
    sock = FakeSocket("/ws/tts/stream")
    assert isinstance(sock, ServerSocket)
    served = asyncio.ensure_future(app.serve_socket(sock))
    for token in ("Hello ", "there. ", "How are ", "you?"):
        frame: dict[str, Any] = {"text": token, "flush": False}
        if token == "Hello ":
            frame["voice_id"] = VOICE
        sock.inbox.put_nowait(json.dumps(frame))
    sock.inbox.put_nowait(json.dumps({"flush": True}))
    frames: list[dict[str, Any]] = []
    while not frames or not frames[-1].get("session_closed"):
        frames.append(await asyncio.wait_for(sock.sent.get(), 5))
    sock.inbox.put_nowait(json.dumps({"close_socket": True}))
    frames.append(await asyncio.wait_for(sock.sent.get(), 5))  # its empty session_closed
    await asyncio.wait_for(served, 5)
    app.close()
    return frames, sock.closed


def test_serve_socket_runs_a_stream_turn_end_to_end_over_a_fake_socket() -> None:
    frames, closed = asyncio.run(_stream_turn())
    kinds = [next(k for k in f if k not in ("chunk_id", "context_id")) for f in frames]
    assert kinds[0] == "generation_started" and "audio" in kinds
    assert kinds[-3:] == ["final", "session_closed", "session_closed"]
    spoken = " ".join(f["text"] for f in frames if f.get("generation_started"))
    assert spoken.split() == ["Hello", "there.", "How", "are", "you?"]
    assert frames[-2]["usage"]["characters"] == len("Hello there. How are you?")
    assert closed == (1000, "")  # S-10: close_socket closes 1000 after the last frame


def test_serve_socket_closes_an_unknown_path_with_1008() -> None:
    async def main() -> tuple[int, str] | None:
        app = TtsApp(ToneEngine())
        sock = FakeSocket("/nope")
        await asyncio.wait_for(app.serve_socket(sock), 5)
        app.close()
        return sock.closed

    closed = asyncio.run(main())
    assert closed is not None and closed[0] == 1008


def test_admission_closes_a_socket_beyond_max_sessions_with_1013() -> None:
    async def main() -> tuple[tuple[int, str] | None, tuple[int, str] | None]:
        app = TtsApp(ToneEngine(), ServerOptions(max_sessions=1))
        first, second = FakeSocket("/ws/tts/stream"), FakeSocket("/ws/tts/stream")
        served = asyncio.ensure_future(app.serve_socket(first))
        await asyncio.sleep(0.05)
        await asyncio.wait_for(app.serve_socket(second), 5)
        await first.close(1000, "")
        await asyncio.wait_for(served, 5)
        app.close()
        return first.closed, second.closed

    first, second = asyncio.run(main())
    assert second is not None and second[0] == 1013  # PROTOCOL 9: try again later
    assert first == (1000, "")  # the admitted one was served until it closed
