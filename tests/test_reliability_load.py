"""Load (issue 8): 50 concurrent streaming sessions and one 20-context multi session against
the tone engine, all at once on one server.

Every turn completes, every turn's usage counts exactly the characters sent, and afterwards
nothing is left behind: no server connections, pipelines, contexts, engine jobs or queued
frames, no extra asyncio tasks on either side.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
import reactivex
import websockets
from reactivex import operators as ops

from rxtts.client.tts import TTS
from rxtts.config import StreamConfig
from rxtts.events import AudioChunk, ContextClosed, Final, GenerationStarted, SessionClosed, TtsEvent
from rxtts.operators import normalize_text
from rxtts.server.app import ServerStats
from rxtts.server.embedded import RunningServer
from rxtts.server.engines.tone import ToneEngine

SESSIONS = 50
TURNS = 2
CONTEXTS = 20
TONE = ToneEngine()


def tokens_for(who: str, turn: int, sentences: int = 1) -> list[str]:
    """An LLM-like token stream: words with their spaces, a few sentences."""
    extra = " It goes on for a while, so that it is still speaking when the others start." * sentences
    text = f"{who} turn {turn} says hello.{extra} It streams a few tokens, then it stops. Done now."
    return re.findall(r"\S+\s*", text)


async def events_of(obs: reactivex.Observable[TtsEvent], timeout: float = 60.0) -> list[TtsEvent]:
    return await asyncio.wait_for(obs.pipe(ops.to_list()), timeout)


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def check_turn(events: list[TtsEvent], tokens: list[str], last: type[Any]) -> None:
    """A complete turn: nothing lost, audio and usage match the text that was sent."""
    sent = "".join(tokens)
    end = events[-1]
    assert isinstance(end, last), [type(e).__name__ for e in events[-3:]]
    assert end.usage is not None and end.usage.characters == len(sent)
    chunks = [e.text for e in events if isinstance(e, GenerationStarted)]
    assert squash("".join(chunks)) == squash(sent)
    samples = sum(len(e.samples) for e in events if isinstance(e, AudioChunk))
    # The server speaks each chunk normalised (normalize defaults to true): "12" -> "twelve".
    assert samples == sum(TONE.samples_for(normalize_text(c).text) for c in chunks)
    assert end.usage.audio_seconds == pytest.approx(samples / 24000, abs=1e-4)


async def wait_for_server(
    server: RunningServer, predicate: Callable[[ServerStats], bool], timeout: float = 10.0
) -> ServerStats:
    deadline = time.monotonic() + timeout
    while not predicate(stats := server.stats()):
        assert time.monotonic() < deadline, f"server not idle within {timeout} s: {stats}"
        await asyncio.sleep(0.05)
    return stats


def test_fifty_streaming_sessions_and_twenty_contexts_at_once(server_factory):
    server = server_factory(engine_threads=2)
    baseline = server.stats()

    async def main() -> dict[str, Any]:
        client_tasks = len(asyncio.all_tasks())
        tts = TTS(server.url, default_config=StreamConfig(voice_id=1071))
        sessions = [tts.streaming_session() for _ in range(SESSIONS)]
        multi = tts.multi_context_session(default_voice_id=1072)

        async def talk(i: int) -> list[tuple[list[TtsEvent], list[str]]]:
            done = []
            for turn in range(TURNS):
                tokens = tokens_for(f"Session {i}", turn)
                done.append((await events_of(sessions[i].speak(tokens)), tokens))
            return done

        async def speak_context(i: int) -> tuple[list[TtsEvent], list[str]]:
            tokens = tokens_for(f"Context {i}", 0, sentences=3)  # ~3 s of paced audio
            return await events_of(multi.speak(f"ctx-{i}", tokens)), tokens

        peak: list[ServerStats] = []

        async def watch() -> None:
            while True:
                peak.append(server.stats())
                await asyncio.sleep(0.05)

        watcher = asyncio.ensure_future(watch())
        t0 = time.monotonic()
        results = await asyncio.gather(
            asyncio.gather(*(talk(i) for i in range(SESSIONS))),
            asyncio.gather(*(speak_context(i) for i in range(CONTEXTS))),
        )
        elapsed = time.monotonic() - t0
        watcher.cancel()
        usage = dict(multi.context_usage)
        active = multi.active_contexts
        await tts.aclose()
        await asyncio.sleep(0)
        idle = await wait_for_server(
            server, lambda s: s.connections == 0 and s.pipelines == 0 and s.tasks <= baseline.tasks
        )
        leftover = [t for t in asyncio.all_tasks() if not t.done()]
        return {
            "streams": results[0],
            "contexts": results[1],
            "usage": usage,
            "active": active,
            "idle": idle,
            "client_tasks": (client_tasks, len(leftover), [t.get_name() for t in leftover]),
            "peak": peak,
            "elapsed": elapsed,
        }

    out = asyncio.run(asyncio.wait_for(main(), 120))

    # Every turn of every session completed with exact usage.
    assert len(out["streams"]) == SESSIONS
    for turns in out["streams"]:
        assert len(turns) == TURNS
        for events, tokens in turns:
            check_turn(events, tokens, SessionClosed)
    # Every context completed; its usage (also kept by the session) is exact.
    assert len(out["contexts"]) == CONTEXTS
    for i, (events, tokens) in enumerate(out["contexts"]):
        check_turn(events, tokens, ContextClosed)
        assert all(e.context_id == f"ctx-{i}" for e in events)
        assert out["usage"][f"ctx-{i}"] == events[-1].usage
    assert out["active"] == []
    # The contexts really played side by side: each one's first audio came before any
    # context had finished (one context's paced audio never holds another back).
    first_audio = [min(e.at for e in ev if isinstance(e, AudioChunk)) for ev, _ in out["contexts"]]
    finals = [min(e.at for e in ev if isinstance(e, Final)) for ev, _ in out["contexts"]]
    assert max(first_audio) < min(finals)
    # The load really was concurrent: the server held them all at the same time.
    assert max(s.connections for s in out["peak"]) >= SESSIONS // 2
    assert max(s.contexts for s in out["peak"]) >= CONTEXTS // 2
    # Nothing leaked, on either side.
    idle = out["idle"]
    assert (idle.connections, idle.pipelines, idle.contexts, idle.synthesis_jobs) == (0, 0, 0, 0)
    assert idle.queued_frames == 0 and idle.tasks <= baseline.tasks
    before, after, names = out["client_tasks"]
    assert after <= before, names


def test_a_paced_context_never_holds_back_another(tone_server):
    long_text = "Long " * 100  # 5 s of audio, paced: it leaves over ~4 s
    voice = {"voice_settings": {"voice_id": 1071}, "flush": True}

    async def main() -> tuple[float, bool]:
        async with websockets.connect(f"{tone_server.url}/ws/tts/multi?api_key=k") as ws:
            await ws.send(json.dumps({"text": long_text, "context_id": "a", **voice}))
            while "audio" not in json.loads(await asyncio.wait_for(ws.recv(), 10)):
                pass
            # All of a is synthesised; what is not sent yet waits for a's playback clock.
            await wait_for_server(tone_server, lambda s: s.queued_frames > 10 and s.synthesis_jobs == 0)
            sent_b = time.monotonic()
            await ws.send(json.dumps({"text": "Meanwhile, me.", "context_id": "b", **voice}))
            a_done = False
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                a_done = a_done or bool(frame.get("final") and frame["context_id"] == "a")
                if "audio" in frame and frame["context_id"] == "b":
                    return time.monotonic() - sent_b, a_done

    b_waited, a_done = asyncio.run(asyncio.wait_for(main(), 30))
    assert not a_done  # context a was still playing ...
    assert b_waited < 1.5  # ... and b was not queued behind it (PROTOCOL 6.1, M-5)
