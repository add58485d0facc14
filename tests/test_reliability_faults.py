"""Reliability under faults (issue 8): a killed server, a 1012 restart, a vanished client,
a client that stops reading.

Loopback only, every wait bounded. Server internals are observed read-only through
``RunningServer.stats()`` (connections, pipelines, engine jobs in flight, send queues).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import psutil
import pytest
import reactivex
import websockets
from reactivex import operators as ops
from websockets.asyncio.client import ClientConnection

from rxtts.client.callbacks import SessionCallbacks
from rxtts.client.session import StreamingSession
from rxtts.client.tts import TTS
from rxtts.config import StreamConfig
from rxtts.engine import AudioBlock, CancelToken, SynthesisSettings, VoiceInfo
from rxtts.errors import ConnectionClosedError, ServerRestartingError
from rxtts.events import AudioChunk, GenerationStarted, SessionClosed, TtsEvent
from rxtts.server.app import ServerStats
from rxtts.server.embedded import RunningServer
from rxtts.server.engines.tone import ToneEngine
from rxtts.transport import ReconnectPolicy

T = TypeVar("T")
VOICE = 1071
RATE = 24000
PATHS = ("/ws/tts", "/ws/tts/stream", "/ws/tts/multi")
LONG = " ".join(f"Sentence number {i} of a long answer that keeps the engine busy." for i in range(40))


# -- helpers ---------------------------------------------------------------------------------


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run a coroutine on a fresh loop with a hard timeout."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def until_stats(
    server: RunningServer, predicate: Callable[[ServerStats], bool], timeout: float = 5.0
) -> ServerStats:
    """Poll the server's introspection until ``predicate`` holds (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        stats = server.stats()
        if predicate(stats):
            return stats
        if time.monotonic() > deadline:
            raise AssertionError(f"server state not reached within {timeout} s: {stats}")
        await asyncio.sleep(0.02)


async def until_settled(
    server: RunningServer, predicate: Callable[[ServerStats], bool], timeout: float = 10.0
) -> ServerStats:
    """Wait until ``predicate`` holds and the stats stay unchanged over 5 polls (bounded)."""
    deadline = time.monotonic() + timeout
    seen: list[tuple[int, ...]] = []
    while True:
        stats = server.stats()
        state = (stats.queued_bytes, stats.synthesis_jobs, stats.pipelines)
        seen = [*seen[-4:], state] if predicate(stats) and (not seen or seen[-1] == state) else [state]
        if len(seen) == 5 and predicate(stats):
            return stats
        if time.monotonic() > deadline:
            raise AssertionError(f"server did not settle within {timeout} s: {stats}")
        await asyncio.sleep(0.03)


async def close_server_sockets(server: RunningServer, code: int, reason: str) -> int:
    """Close every open server-side WebSocket with ``code`` (a deploy restart, PROTOCOL G-11)."""

    return await asyncio.to_thread(server.close_connections, code, reason)


async def turn_events(obs: reactivex.Observable[TtsEvent], timeout: float = 15.0) -> list[TtsEvent]:
    """All events of one turn (raises the turn's error)."""
    return await asyncio.wait_for(obs.pipe(ops.to_list()), timeout)


def samples_of(events: list[TtsEvent]) -> int:
    return sum(len(e.samples) for e in events if isinstance(e, AudioChunk))


class StallingTone(ToneEngine):
    """A tone engine whose first ``stall_calls`` chunks yield ``blocks_first`` blocks and then
    block until cancelled (a model that hangs mid-inference until the client goes away)."""

    def __init__(self, stall_calls: int, blocks_first: int = 0) -> None:
        super().__init__()
        self.stall_calls = stall_calls
        self.blocks_first = blocks_first
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def synthesize(
        self, text: str, voice: VoiceInfo, settings: SynthesisSettings, cancel: CancelToken
    ) -> Iterator[AudioBlock]:
        with self._lock:
            stall = len(self.calls) < self.stall_calls
            self.calls.append(text)
        blocks = super().synthesize(text, voice, settings, cancel)
        if not stall:
            yield from blocks
            return
        for _ in range(self.blocks_first):
            yield next(blocks)
        cancel.wait(30.0)  # returns as soon as the pipeline is disposed


# -- server killed mid-turn ------------------------------------------------------------------


def start_cli_server() -> tuple[subprocess.Popen[str], str]:
    """``rxtts serve --engine tone --port 0`` as a child process; its ws:// URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rxtts.cli", "serve", "--engine", "tone", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=60):
            proc.kill()
            raise AssertionError("rxtts serve printed nothing within 60 s")
    line = proc.stdout.readline()
    match = re.search(r"ws://127\.0\.0\.1:\d+", line)
    assert match, line
    return proc, match.group(0)


def test_server_killed_mid_turn_surfaces_connection_closed_error_without_hanging():
    proc, url = start_cli_server()

    async def main() -> dict[str, Any]:
        tts = TTS(url, default_config=StreamConfig(voice_id=VOICE))
        session = tts.streaming_session()
        multi = tts.multi_context_session(default_voice_id=VOICE)
        heard = {"stream": asyncio.Event(), "multi": asyncio.Event()}

        def mark(name: str) -> Callable[[TtsEvent], None]:
            return lambda e: heard[name].set() if isinstance(e, AudioChunk) else None

        # Paced at real time, these ~90 s turns are in flight when the server dies.
        stream_turn = asyncio.ensure_future(
            turn_events(session.speak(LONG).pipe(ops.do_action(mark("stream"))), 60)
        )
        multi_turn = asyncio.ensure_future(
            turn_events(multi.speak("ctx", LONG).pipe(ops.do_action(mark("multi"))), 60)
        )
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in heard.values())), 15)
        os.kill(proc.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        results = await asyncio.gather(stream_turn, multi_turn, return_exceptions=True)
        surfaced_after = time.monotonic() - killed_at
        # Nothing listens any more: the next turn fails fast too, it does not hang.
        t0 = time.monotonic()
        with pytest.raises(ConnectionClosedError):
            await turn_events(session.speak("Anyone there?"), 15)
        retry_after = time.monotonic() - t0
        await tts.aclose()
        return {"results": results, "surfaced_after": surfaced_after, "retry_after": retry_after}

    try:
        out = run(main(), timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()
    for result in out["results"]:
        assert isinstance(result, ConnectionClosedError), repr(result)
        assert not isinstance(result, ServerRestartingError)  # 1006, not a restart: no replay
    assert out["surfaced_after"] < 10.0  # bounded, far below the ~90 s the turns would last
    assert out["retry_after"] < 10.0


# -- server restart with 1012 ------------------------------------------------------------------


def restart_session(server: RunningServer, errors: list[Exception]) -> StreamingSession:
    return StreamingSession(
        f"{server.url}/ws/tts/stream",
        StreamConfig(voice_id=VOICE),
        reconnect=ReconnectPolicy(retry_after=0.2),
        callbacks=SessionCallbacks(on_error=errors.append),
    )


def test_1012_before_any_audio_replays_the_unspoken_turn_once(server_factory):
    engine = StallingTone(stall_calls=1)
    server = server_factory(engine)
    text = "Replay me exactly once."
    tokens = ["Replay ", "me ", "exactly ", "once."]

    async def main() -> tuple[list[TtsEvent], int, list[Exception]]:
        errors: list[Exception] = []
        session = restart_session(server, errors)
        turn = asyncio.ensure_future(turn_events(session.speak(tokens)))
        # The engine is stuck on the chunk: no audio can have left yet.
        await until_stats(server, lambda s: s.synthesis_jobs == 1)
        closed = await close_server_sockets(server, 1012, "service restart")
        events = await turn
        await session.close()
        return events, closed, errors

    events, closed, errors = run(main())
    assert closed == 1
    assert isinstance(events[-1], SessionClosed) and errors == []
    assert engine.calls == [text, text]  # the same turn, spoken once more, not twice more
    # generation_started of the first attempt may have arrived before the restart.
    assert {e.text for e in events if isinstance(e, GenerationStarted)} == {text}
    assert samples_of(events) == engine.samples_for(text)  # nothing lost, nothing doubled
    usage = events[-1].usage
    assert usage is not None and usage.characters == len(text)


def test_1012_twice_before_audio_gives_up_after_one_replay(server_factory):
    engine = StallingTone(stall_calls=2)
    server = server_factory(engine)

    async def main() -> tuple[BaseException | None, int]:
        session = restart_session(server, [])
        turn = asyncio.ensure_future(turn_events(session.speak("Unlucky twice.")))
        await until_stats(server, lambda s: s.synthesis_jobs == 1)
        await close_server_sockets(server, 1012, "service restart")
        await until_stats(server, lambda s: s.synthesis_jobs == 1 and len(engine.calls) == 2)
        await close_server_sockets(server, 1012, "service restart")
        error = await asyncio.wait_for(asyncio.gather(turn, return_exceptions=True), 10)
        await session.close()
        return error[0], len(engine.calls)

    error, calls = run(main())
    assert isinstance(error, ServerRestartingError) and error.retry_after == 1.0
    assert calls == 2


def test_1012_after_audio_surfaces_server_restarting_error_and_is_not_replayed(server_factory):
    engine = StallingTone(stall_calls=1, blocks_first=1)
    server = server_factory(engine)

    async def main() -> tuple[BaseException | None, list[TtsEvent], list[TtsEvent], int]:
        session = restart_session(server, [])
        got: list[TtsEvent] = []
        heard = asyncio.Event()

        def on_event(e: TtsEvent) -> None:
            got.append(e)
            if isinstance(e, AudioChunk):
                heard.set()

        turn = asyncio.ensure_future(turn_events(session.speak("Half heard.").pipe(ops.do_action(on_event))))
        await asyncio.wait_for(heard.wait(), 10)
        await close_server_sockets(server, 1012, "service restart")
        error = (await asyncio.wait_for(asyncio.gather(turn, return_exceptions=True), 10))[0]
        await asyncio.sleep(0.6)  # 3x retry_after: a (wrong) replay would have reached the engine
        calls = len(engine.calls)
        after = await turn_events(session.speak("Back again."))  # the session itself recovers
        await session.close()
        return error, got, after, calls

    error, got, after, calls = run(main())
    assert isinstance(error, ServerRestartingError)
    assert calls == 1  # audio already reached the listener: never replayed (PROTOCOL 10)
    assert sum(isinstance(e, AudioChunk) for e in got) >= 1
    assert isinstance(after[-1], SessionClosed)
    assert after[-1].usage is not None and after[-1].usage.characters == len("Back again.")


# -- client vanishing mid-turn -------------------------------------------------------------------


def first_frame(path: str, text: str) -> dict[str, Any]:
    if path == "/ws/tts":
        return {"text": text, "voice_id": VOICE}
    if path == "/ws/tts/stream":
        return {"text": text, "voice_id": VOICE, "flush": True}
    return {"text": text, "context_id": "c", "voice_settings": {"voice_id": VOICE}, "flush": True}


async def abort_after_first_audio(server: RunningServer, path: str, text: str) -> ServerStats:
    """Start a long utterance, wait for its first audio, drop TCP; the stats just before."""
    ws = await websockets.connect(f"{server.url}{path}?api_key=k")
    await ws.send(json.dumps(first_frame(path, text)))
    while "audio" not in json.loads(await asyncio.wait_for(ws.recv(), 15)):
        pass
    busy = server.stats()
    ws.transport.abort()  # no close frame, no FIN handshake: the client is just gone
    return busy


async def speak_once(server: RunningServer, path: str, text: str) -> list[dict[str, Any]]:
    async with websockets.connect(f"{server.url}{path}?api_key=k") as ws:
        await ws.send(json.dumps(first_frame(path, text)))
        frames = []
        while not frames or not (frames[-1].get("final") or frames[-1].get("error")):
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 15)))
        return frames


@pytest.mark.parametrize("path", PATHS)
def test_client_vanishing_mid_turn_frees_the_synthesis_work(server_factory, path):
    # 0.25 s per 100 ms block: slower than real time, so the engine is always busy, and
    # this text would keep it busy for over a minute if nobody stopped it.
    engine = ToneEngine(delay_per_block_s=0.25)
    server = server_factory(engine)

    async def main() -> tuple[ServerStats, ServerStats, float, list[dict[str, Any]]]:
        busy = await abort_after_first_audio(server, path, LONG)
        t0 = time.monotonic()
        idle = await until_stats(
            server, lambda s: s.synthesis_jobs == 0 and s.pipelines == 0 and s.connections == 0, 10
        )
        freed_after = time.monotonic() - t0
        return busy, idle, freed_after, await speak_once(server, path, "Still serving.")

    busy, idle, freed_after, frames = run(main())
    assert busy.connections == 1 and busy.pipelines == 1 and busy.synthesis_jobs == 1
    assert idle.queued_frames == 0 and idle.contexts == 0
    remaining = engine.samples_for(LONG) / RATE * 2.5  # seconds the engine would still need
    assert remaining > 30 and freed_after < 3.0
    assert frames[-1].get("final") and not any(f.get("error") for f in frames)


@pytest.mark.slow
def test_client_vanishing_mid_turn_stops_piper_mid_inference(piper_server):
    async def main() -> tuple[ServerStats, ServerStats]:
        busy = await abort_after_first_audio(piper_server, "/ws/tts/stream", LONG)
        idle = await until_stats(
            piper_server, lambda s: s.synthesis_jobs == 0 and s.pipelines == 0 and s.connections == 0, 10
        )
        return busy, idle

    busy, idle = run(main())
    assert busy.pipelines == 1 and busy.connections == 1
    assert idle.queued_frames == 0


# -- slow consumer: bounded memory (backpressure policy in rxtts/server/app.py) ---------------------


async def raw_connect(server: RunningServer, path: str, rcvbuf: int | None = None) -> ClientConnection:
    """A raw client; ``rcvbuf`` shrinks its kernel receive buffer so backlogs show up sooner."""
    sock = None
    if rcvbuf is not None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    # No permessage-deflate: a sine tone compresses so well the kernel would hide the backlog.
    url = f"{server.url}{path}?api_key=k"
    return await websockets.connect(url, sock=sock, max_size=None, compression=None)


def test_a_client_that_stops_reading_cannot_grow_server_memory(server_factory):
    # Default options (1 s pacing, 4 MiB send-queue gate, 100k-character text budget).
    server = server_factory()
    limit = server.app.options.max_queued_bytes
    turn = "Word " * 1000  # 10 s of audio per frame; 400 frames would be 1.3 GB of base64
    process = psutil.Process()

    async def main() -> tuple[int, int, ServerStats, list[dict[str, Any]], ServerStats]:
        rss_before = process.memory_info().rss
        ws = await raw_connect(server, "/ws/tts/stream")
        ws.transport.pause_reading()  # a consumer that stopped reading
        peak = 0
        for i in range(400):
            await asyncio.wait_for(ws.send(json.dumps({"text": turn, "voice_id": VOICE, "flush": True})), 10)
            if i % 20 == 0:
                peak = max(peak, server.stats().queued_bytes)
                await asyncio.sleep(0)
        # The gate closes once the queue is full: the engine only refills what the
        # (paced) writer manages to hand to the kernel.
        stalled = await until_stats(server, lambda s: s.queued_bytes >= limit, 15)
        for _ in range(20):
            peak = max(peak, server.stats().queued_bytes)
            await asyncio.sleep(0.05)
        rss_growth = process.memory_info().rss - rss_before
        # Everyone else is still served meanwhile.
        other = await speak_once(server, "/ws/tts/stream", "Another client is fine.")
        ws.transport.abort()
        idle = await until_stats(server, lambda s: s.connections == 0 and s.pipelines == 0, 10)
        return peak, rss_growth, stalled, other, idle

    peak, rss_growth, stalled, other, idle = run(main(), timeout=60)
    assert limit <= peak <= limit + (512 << 10)  # gate + one chunk's audio + refusal errors
    assert stalled.pipelines > 0  # accepted turns wait for the reader; the rest was refused
    assert rss_growth < 150 << 20
    assert other[-1].get("session_closed") or other[-1].get("final")
    assert idle.queued_bytes == 0 and idle.synthesis_jobs == 0


def test_slow_consumer_gets_every_accepted_turn_and_a_refusal_for_the_rest(server_factory):
    server = server_factory(max_queued_bytes=64 << 10, max_buffered_chars=30_000, max_lead_seconds=None)
    limit = 64 << 10
    text = " ".join(["Slow consumers get everything they were promised."] * 20)  # 1019 chars
    sent = 40

    async def main() -> tuple[ServerStats, list[dict[str, Any]]]:
        ws = await raw_connect(server, "/ws/tts/stream", rcvbuf=4096)
        ws.transport.pause_reading()
        for _ in range(sent):
            await asyncio.wait_for(ws.send(json.dumps({"text": text, "voice_id": VOICE, "flush": True})), 10)
        stalled = await until_settled(server, lambda s: s.synthesis_jobs == 0 and s.queued_bytes >= limit, 15)
        ws.transport.resume_reading()
        frames: list[dict[str, Any]] = []
        answered = 0
        while answered < sent:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            answered += bool(frames[-1].get("session_closed") or frames[-1].get("error"))
        await ws.close()
        return stalled, frames

    stalled, frames = run(main(), timeout=90)
    # One chunk (up to ~300 characters, ~3.3 s of 24 kHz audio, ~270 KiB as base64 frames)
    # may start after the gate closed; two would exceed this bound.
    assert limit <= stalled.queued_bytes <= limit + (320 << 10)
    errors = [f for f in frames if f.get("error")]
    closes = [f for f in frames if f.get("session_closed")]
    assert errors and closes and len(errors) + len(closes) == sent  # every frame answered
    for e in errors:
        assert e["error_code"] == "VALIDATION_ERROR" and "refused" in e["error"]
    # Split the stream into turns: every accepted turn is complete, nothing lost or doubled.
    turn: list[dict[str, Any]] = []
    for f in frames:
        if f.get("error"):
            continue
        turn.append(f)
        if f.get("session_closed"):
            spoken = " ".join(g["text"] for g in turn if g.get("generation_started"))
            samples = sum(g["samples"] for g in turn if "audio" in g)
            assert spoken.split() == text.split()
            assert samples == sum(ToneEngine().samples_for(g["text"]) for g in turn if g.get("text"))
            assert f["usage"]["characters"] == len(text)
            turn = []


def test_replies_to_a_client_that_does_not_read_push_back_instead_of_piling_up(server_factory):
    limit = 16 << 10
    server = server_factory(max_queued_bytes=limit)
    bad = json.dumps({"k" * 1000: 1})  # each is refused with a ~1 KB error naming the key

    async def main() -> tuple[bool, int, int, list[dict[str, Any]], list[dict[str, Any]]]:
        ws = await raw_connect(server, "/ws/tts/stream", rcvbuf=4096)
        ws.transport.pause_reading()
        sent, peak, paused = 0, 0, False

        async def send_some(count: int) -> None:
            nonlocal sent, peak, paused
            for _ in range(count):
                try:
                    await asyncio.wait_for(ws.send(bad), 1.0)
                except TimeoutError:
                    return  # TCP pushed back (the frame is still on its way)
                finally:
                    sent += 1
                if sent % 200 == 0:
                    stats = server.stats()
                    peak = max(peak, stats.queued_bytes)
                    paused = paused or stats.queued_bytes >= 2 * limit

        # Replies fill the kernel buffers first, then the send queue, until reading pauses.
        while not paused and sent < 40_000:
            await send_some(200)
        await send_some(2000)  # these wait in TCP: they must not add to the queue
        for _ in range(10):
            peak = max(peak, server.stats().queued_bytes)
            await asyncio.sleep(0.02)
        ws.transport.resume_reading()
        errors = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(sent)]
        await ws.send(json.dumps({"text": "Still here.", "voice_id": VOICE, "flush": True}))
        tail: list[dict[str, Any]] = []
        while not tail or not tail[-1].get("session_closed"):
            tail.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        await ws.close()
        return paused, peak, sent, errors, tail

    paused, peak, sent, errors, tail = run(main(), timeout=90)
    assert paused
    frame = len(errors[0]["error"]) + 200
    assert 2 * limit <= peak <= 2 * limit + frame  # reading paused at twice the gate
    assert len(errors) == sent  # every refused frame was answered, none dropped
    assert all(e["error_code"] == "VALIDATION_ERROR" and "unknown key" in e["error"] for e in errors)
    assert not any(f.get("error") for f in tail) and tail[-1]["usage"]["characters"] == 11


def test_a_client_that_reads_nothing_is_dropped_after_send_timeout(server_factory):
    server = server_factory(send_timeout=2.0, max_lead_seconds=None)
    limit = server.app.options.max_queued_bytes

    async def main() -> tuple[ServerStats, ServerStats, float, int, int | None]:
        stalled = await raw_connect(server, "/ws/tts/stream")
        stalled.transport.pause_reading()
        for _ in range(40):
            await stalled.send(json.dumps({"text": "Word " * 1000, "voice_id": VOICE, "flush": True}))
        full = await until_settled(server, lambda s: s.queued_bytes >= limit and s.synthesis_jobs == 0)
        t0 = time.monotonic()
        # A client that keeps reading is never dropped, however long it stays.
        async with websockets.connect(f"{server.url}/ws/tts/stream?api_key=k") as reader:
            turns = 0
            while server.stats().connections > 1 or time.monotonic() - t0 < 2.5:
                assert time.monotonic() - t0 < 10, "the stalled client was never dropped"
                text = f"Reader turn {turns}."
                await reader.send(json.dumps({"text": text, "voice_id": VOICE, "flush": True}))
                while not json.loads(await asyncio.wait_for(reader.recv(), 10)).get("session_closed"):
                    pass
                turns += 1
            dropped_after = time.monotonic() - t0
            idle = await until_stats(server, lambda s: s.connections == 1 and s.pipelines == 0, 10)
            code = reader.close_code
        stalled.transport.abort()
        return full, idle, dropped_after, turns, code

    full, idle, dropped_after, turns, code = run(main())
    assert full.connections == 1  # stalled: gate closed, engine idle
    assert dropped_after < 10 and turns > 1
    assert code is None  # the reading client was still connected
    assert idle.queued_bytes == 0 and idle.synthesis_jobs == 0
