"""The multi-context scenarios of test_multi.py driven through the official SDK.

``kugelaudio==2.7.0``'s ``client.tts.multi_context_session`` must get the same server
behaviour as rxtts's ``MultiContextSession``: routing per context, immediate close of
one context only, the 20-context cap with the socket kept, slots freed by timeouts,
keep-alives, per-context usage, id reuse. The SDK reads one context at a time and drops
frames of the others (PROTOCOL 6.5), so each scenario is written the way the SDK is
meant to be used: ``send(..., flush=True)`` returns at that context's ``final``.

The SDK derives its WebSocket URL from ``api_url`` (``http://`` -> ``ws://`` +
``/ws/tts/multi?api_key=...``); telemetry (POST ``<api_url>/v1/sdk-diagnostics``) is off
via ``telemetry=False`` and ``KUGELAUDIO_TELEMETRY=0``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import numpy as np
import pytest

kugelaudio = pytest.importorskip("kugelaudio")
from kugelaudio.exceptions import RateLimitError  # noqa: E402

from rxtts.client.multi import MultiContextSession  # noqa: E402
from rxtts.events import AudioChunk, ContextClosed, Final  # noqa: E402
from rxtts.server.embedded import RunningServer  # noqa: E402
from rxtts.server.engines.tone import ToneEngine  # noqa: E402

RATE = 24000
HZ = {1071: 200.0, 1072: 252.0}
TONE = ToneEngine()


@pytest.fixture(autouse=True)
def _no_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUGELAUDIO_TELEMETRY", "0")


@pytest.fixture
def sdk() -> Iterator[Callable[[RunningServer], Any]]:
    """Build ``kugelaudio.KugelAudio`` clients for a server; closed after the test."""
    clients: list[Any] = []

    def make(server: RunningServer) -> Any:
        client = kugelaudio.KugelAudio(api_key="test-key", api_url=server.http_url, telemetry=False)
        assert client._diagnostics is not None and not client._diagnostics._config.enabled
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def run(coro: Awaitable[Any], timeout: float = 30.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))  # type: ignore[arg-type]


def pcm(chunks: list[Any]) -> np.ndarray:
    data = b"".join(c.audio for c in chunks)
    return np.frombuffer(data, dtype="<i2")


def dominant_hz(samples: np.ndarray, rate: int = RATE) -> float:
    x = samples.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1.0 / rate)[int(np.argmax(spectrum))])


def tone_samples(text: str) -> int:
    """Samples the server produces for a short flushed ``text`` (one chunk, < 80 chars)."""
    assert len(text) < 80
    return TONE.samples_for(text)


async def collect(agen: Any) -> list[Any]:
    return [chunk async for chunk in agen]


SCRIPT = [
    ("narrator", "The story begins."),
    ("alice", "Where are we going?"),
    ("bob", "Just follow me."),
    ("narrator", "Night fell on the town."),
    ("alice", "I do not like this place."),
    ("bob", "Trust me on this one."),
]
VOICES = {"narrator": 1071, "alice": 1072, "bob": 1071}


def test_sdk_three_contexts_two_voices_interleaved(tone_server: RunningServer, sdk: Any) -> None:
    async def main() -> tuple[dict[str, list[Any]], dict[str, Any]]:
        audio: dict[str, list[Any]] = {cid: [] for cid in VOICES}
        async with sdk(tone_server).tts.multi_context_session(language="en") as session:
            for cid, voice in VOICES.items():
                await session.create_context(cid, voice_id=voice)
            for cid, text in SCRIPT:
                audio[cid] += await collect(session.send(cid, text, flush=True))
            for cid in VOICES:
                assert await collect(session.close_context(cid)) == []  # everything was flushed
            return audio, session.context_usage

    audio, usage = run(main())
    for cid, voice in VOICES.items():
        samples = pcm(audio[cid])
        assert [c.index for c in audio[cid]] == list(range(len(audio[cid])))  # in order, per context
        assert len(samples) == sum(tone_samples(t) for c, t in SCRIPT if c == cid)
        assert dominant_hz(samples) == pytest.approx(HZ[voice], abs=6)
        assert usage[cid].audio_seconds == pytest.approx(len(samples) / RATE, abs=1e-3)


def test_sdk_immediate_close_of_one_context_only(server_factory: Any, sdk: Any) -> None:
    server = server_factory(ToneEngine(delay_per_block_s=0.15))  # 100 ms of audio per 150 ms
    sentence = "Counting slowly now: one, two, three, four, five, six, seven, eight, nine, ten, eleven. "
    assert len(sentence.strip()) >= 80  # the first chunk threshold of the default schedule
    text = sentence + "Then"  # the next word makes the sentence end certain: generation starts

    async def main() -> tuple[Any, Any, int]:
        async with sdk(server).tts.multi_context_session(default_voice_id=1071, language="en") as session:
            await session.create_context("a")
            await session.create_context("b", voice_id=1072)
            await collect(session.send("b", text))  # b starts speaking; returns at a pause
            first_a = await collect(session.send("a", text))
            await collect(session.close_context("a", immediate=True))  # barge in on a only
            await collect(session.flush("b"))
            await collect(session.close_context("b"))
            return session.usage_for("a"), session.usage_for("b"), len(pcm(first_a))

    usage_a, usage_b, heard_a = run(main())
    full = (TONE.samples_for(sentence) + TONE.samples_for("Then")) / RATE
    assert heard_a > 0
    assert usage_b.audio_seconds == pytest.approx(full, abs=1e-3)  # b finished undisturbed
    assert usage_a.audio_seconds < TONE.samples_for(sentence) / RATE - 0.2  # a stopped early


def test_sdk_twenty_contexts_and_the_twenty_first_refused(tone_server: RunningServer, sdk: Any) -> None:
    async def main() -> None:
        async with sdk(tone_server).tts.multi_context_session(
            default_voice_id=1071, language="en"
        ) as session:
            for i in range(20):
                await session.create_context(f"c{i}")
            with pytest.raises(RateLimitError):
                await session.create_context("c20")
            assert session.is_alive  # the socket survives the 429 (PROTOCOL M-9)
            for i in (0, 19):
                assert len(pcm(await collect(session.send(f"c{i}", "Still working.", flush=True)))) > 0
            await collect(session.close_context("c0"))
            await session.create_context("c20")  # the closed context's slot is free
            assert len(pcm(await collect(session.send("c20", "Room at last.", flush=True)))) > 0

    run(main())


def test_sdk_inactivity_timeout_frees_slots(server_factory: Any, sdk: Any) -> None:
    server = server_factory(inactivity_timeout=0.4)  # the SDK never sends inactivity_timeout

    async def main() -> None:
        async with sdk(server).tts.multi_context_session(default_voice_id=1071, language="en") as session:
            for i in range(20):
                await session.create_context(f"old{i}")
            with pytest.raises(RateLimitError):
                await session.create_context("new0")
            await asyncio.sleep(1.0)
            for i in range(20):  # every old context timed out: 20 free slots
                await session.create_context(f"new{i}")
            samples = pcm(await collect(session.send("new7", "Fresh start.", flush=True)))
            assert len(samples) == tone_samples("Fresh start.")

    run(main())


def test_sdk_keep_alive_prevents_the_timeout(server_factory: Any, sdk: Any) -> None:
    server = server_factory(inactivity_timeout=0.5)

    async def main() -> None:
        async with sdk(server).tts.multi_context_session(default_voice_id=1071, language="en") as session:
            await session.create_context("kept")
            await session.create_context("idle")
            for _ in range(8):  # 1.2 s
                await asyncio.sleep(0.15)
                await session.keep_alive("kept")
            # "idle" timed out, "kept" still holds its slot: 19 more fit, not 20.
            for i in range(19):
                await session.create_context(f"x{i}")
            with pytest.raises(RateLimitError):
                await session.create_context("x19")

    run(main())


def test_sdk_usage_and_id_reuse_match_rxtts(tone_server: RunningServer, sdk: Any) -> None:
    """The same two-life script through both clients: identical per-context usage."""
    lives = [("hero", 1071, "First life. It was short."), ("hero", 1072, "Second life, other voice.")]

    async def with_sdk() -> list[tuple[float, int, float]]:
        out = []
        async with sdk(tone_server).tts.multi_context_session(language="en") as session:
            for cid, voice, text in lives:
                await session.create_context(cid, voice_id=voice)
                samples = pcm(await collect(session.send(cid, text, flush=True)))
                await collect(session.close_context(cid))
                usage = session.usage_for(cid)
                out.append((usage.audio_seconds, len(samples), dominant_hz(samples)))
        return out

    async def with_rxtts() -> list[tuple[float, int, float]]:
        out = []
        async with MultiContextSession(tone_server.url, language="en") as multi:
            for cid, voice, text in lives:
                multi.create_context(cid, voice_id=voice)
                events: list[Any] = []
                sub = multi.events.subscribe(events.append)
                multi.send(cid, text, flush=True)
                while not any(isinstance(e, Final) for e in events):
                    await asyncio.sleep(0.01)
                multi.close_context(cid)
                while not any(isinstance(e, ContextClosed) for e in events):
                    await asyncio.sleep(0.01)
                sub.dispose()
                samples = np.concatenate([e.samples for e in events if isinstance(e, AudioChunk)])
                usage = multi.usage_for(cid)
                assert usage is not None
                out.append((usage.audio_seconds, len(samples), dominant_hz(samples)))
        return out

    theirs, ours = run(with_sdk()), run(with_rxtts())
    assert theirs == ours
    assert [round(hz) for _, _, hz in ours] == [200, 252]  # reused id, new voice
    for (seconds, samples, _), (_, _, text) in zip(ours, lives, strict=True):
        assert samples == tone_samples(text) and seconds == pytest.approx(samples / RATE, abs=1e-3)


def test_sdk_multi_recreates_its_contexts_after_a_drain(sdk: Any) -> None:
    """PROTOCOL 10, G-11: an idle multi socket gets 1012 at once when the server drains;
    the PY multi session reconnects on its next send, re-creates its contexts (same
    voice) on the server that replaced it and speaks there."""
    import threading

    from rxtts.server.embedded import start_background_server

    first = start_background_server(ToneEngine(), "127.0.0.1", 0, warm_up=False)
    second: list[RunningServer] = []
    text = "Spoken after the restart."

    async def main() -> tuple[list[Any], float, float]:
        async with sdk(first).tts.multi_context_session(language="en") as session:
            await session.create_context("a", voice_id=1072)
            started = time.monotonic()
            drainer = threading.Thread(target=first.drain, args=(30.0,), daemon=True)
            drainer.start()
            await asyncio.to_thread(drainer.join, 15)
            drained = time.monotonic() - started
            assert not first.running
            second.append(start_background_server(ToneEngine(), "127.0.0.1", first.port, warm_up=False))
            started = time.monotonic()
            chunks = await collect(session.send("a", text, flush=True))
            return chunks, drained, time.monotonic() - started

    try:
        chunks, drained, elapsed = run(main())
    finally:
        first.stop()
        for server in second:
            server.stop()
    assert drained < 5  # idle: closed at once, not after the 30 s drain timeout
    assert len(pcm(chunks)) == TONE.samples_for(text)
    assert abs(dominant_hz(pcm(chunks)) - HZ[1072]) < 8  # the re-created context kept its voice
    assert elapsed < 10
