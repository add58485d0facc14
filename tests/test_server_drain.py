"""G-11 drain (PROTOCOL 9, 10, 11) with real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import websockets
from kugelaudio import KugelAudio
from websockets.exceptions import ConnectionClosed, InvalidStatus

from rxtts.server.embedded import RunningServer, start_background_server
from rxtts.server.engines.tone import ToneEngine

VOICE = 1071
STREAM = "/ws/tts/stream"


def drain_in_background(server: RunningServer, timeout: float) -> threading.Thread:
    """``RunningServer.drain`` blocks until the server exited: run it on a thread."""
    thread = threading.Thread(target=server.drain, args=(timeout,), daemon=True)
    thread.start()
    return thread


async def wait_draining(server: RunningServer) -> None:
    while not server.app.draining:
        await asyncio.sleep(0.01)


def test_drain_lets_a_busy_turn_finish_then_closes_1012_and_refuses_upgrades(server_factory, wire):
    server = server_factory(ToneEngine(ms_per_char=40.0), max_lead_seconds=0.3)
    text = "A turn that is still being spoken when the deploy starts draining."  # ~2.6 s

    async def main() -> tuple[list[dict[str, Any]], int | None, float, int, str | None]:
        async with wire.connect(server, STREAM) as ws:
            await ws.send({"text": text, "flush": True, "voice_id": VOICE})
            frames = [await ws.recv()]
            drain_in_background(server, 10.0)
            await wait_draining(server)
            started = time.perf_counter()
            # A new upgrade while draining: HTTP 503 + Retry-After (G-11, PROTOCOL 9).
            with pytest.raises(InvalidStatus) as refused:
                async with websockets.connect(f"{server.url}{STREAM}?api_key=k", open_timeout=5):
                    pass
            frames += await ws.recv_until(lambda f: f.get("session_closed"), timeout=8)
            with pytest.raises(ConnectionClosed):
                await ws.recv(timeout=5)
            response = refused.value.response
            return (
                frames,
                ws.ws.close_code,
                time.perf_counter() - started,
                response.status_code,
                response.headers.get("Retry-After"),
            )

    frames, code, waited, status, retry = wire.run(main())
    kinds = wire.kinds(frames)
    assert kinds[-2:] == ["final", "session_closed"]  # the turn finished gracefully
    assert sum(f["samples"] / f["sr"] for f in frames if "audio" in f) == pytest.approx(
        len(text) * 0.04, abs=0.1
    )
    assert waited > 1.0  # it waited for the paced turn rather than cutting it
    assert code == 1012  # G-11: never 1001 for a socket with a turn in flight
    assert (status, retry) == (503, "1")


def test_drain_closes_an_idle_socket_with_1012_at_once(server_factory, wire):
    server = server_factory()

    async def main() -> tuple[int | None, float]:
        async with wire.connect(server, STREAM) as ws:
            await ws.send({"text": "Done.", "flush": True, "voice_id": VOICE})
            await ws.recv_until(lambda f: f.get("session_closed"))
            started = time.perf_counter()
            drain_in_background(server, 30.0)
            with pytest.raises(ConnectionClosed):
                await ws.recv(timeout=5)
            return ws.ws.close_code, time.perf_counter() - started

    code, elapsed = wire.run(main())
    assert code == 1012 and elapsed < 1.0  # not after the 30 s drain timeout


def test_drain_timeout_closes_a_turn_that_never_ends_with_1012(server_factory, wire):
    server = server_factory()

    async def main() -> tuple[int | None, float]:
        async with wire.connect(server, STREAM) as ws:
            await ws.send(
                {"text": "An unfinished turn with no sentence end", "flush": False, "voice_id": VOICE}
            )
            await asyncio.sleep(0.1)
            started = time.perf_counter()
            drain_in_background(server, 0.5)
            with pytest.raises(ConnectionClosed):
                await ws.recv(timeout=5)
            return ws.ws.close_code, time.perf_counter() - started

    code, elapsed = wire.run(main())
    assert code == 1012 and 0.4 < elapsed < 3.0


def test_py_sdk_replays_an_audio_less_turn_after_a_drain_on_the_next_server():
    """PROTOCOL 10: a 1012 before any audio of the turn: the SDK reconnects after ~1 s
    and resends the turn's frames (config first) to the server that replaced this one."""
    first = start_background_server(ToneEngine(), "127.0.0.1", 0, warm_up=False)
    port = first.port
    second: list[RunningServer] = []
    client = KugelAudio(api_key="k", api_url=first.http_url, telemetry=False)

    async def main() -> tuple[float, float, Any]:
        async with client.tts.streaming_session(voice_id=VOICE) as s:
            async for _ in s.send("Hello there, how are", flush=False):
                pass  # no sentence end: no audio yet
            drainer = drain_in_background(first, 0.3)
            await asyncio.to_thread(drainer.join, 15)
            assert not first.running
            # The deploy's replacement comes up on the same address.
            second.append(start_background_server(ToneEngine(), "127.0.0.1", port, warm_up=False))
            started = time.perf_counter()
            audio = 0.0
            async for chunk in s.flush():
                audio += len(chunk.audio) // 2 / chunk.sample_rate
            return audio, time.perf_counter() - started, s.last_final

    try:
        audio, elapsed, final = asyncio.run(asyncio.wait_for(main(), 30))
    finally:
        client.close()
        first.stop()
        for server in second:
            server.stop()
    assert audio == pytest.approx(len("Hello there, how are") * 0.010, abs=0.02)  # the whole turn
    assert final is not None and final["total_text_chunks"] == 1
    assert 0.9 < elapsed < 10  # the SDK waited its ~1 s restart delay, then replayed


def test_drain_waits_for_a_speaking_context_not_for_idle_ones(server_factory, wire):
    """G-11 on multi: contexts live long; only their work (text, chunks, flushes, unsent
    audio) holds the 1012 back, an open idle context does not."""
    server = server_factory(ToneEngine(ms_per_char=40.0), max_lead_seconds=0.3)
    vs = {"voice_id": VOICE}

    async def main() -> tuple[list[dict[str, Any]], int | None, float]:
        async with wire.connect(server, "/ws/tts/multi") as ws:
            await ws.send({"text": " ", "context_id": "idle", "voice_settings": vs})
            await ws.send(
                {"text": "Spoken while the server drains.", "context_id": "busy", "voice_settings": vs}
            )
            await ws.send({"flush": True, "context_id": "busy"})
            frames = [await ws.recv() for _ in range(3)]
            started = time.perf_counter()
            drain_in_background(server, 10.0)
            frames += await ws.recv_until(
                lambda f: f.get("final") and f.get("context_id") == "busy", timeout=8
            )
            with pytest.raises(ConnectionClosed):
                await ws.recv(timeout=5)
            return frames, ws.ws.close_code, time.perf_counter() - started

    frames, code, waited = wire.run(main())
    busy_audio = sum(f["samples"] / f["sr"] for f in frames if "audio" in f and f["context_id"] == "busy")
    assert busy_audio == pytest.approx(len("Spoken while the server drains.") * 0.04, abs=0.1)
    assert code == 1012 and 0.5 < waited < 5
