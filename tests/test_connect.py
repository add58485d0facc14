"""rxtts.connect(): server resolution, the embedded default, one-shot tts.stream/generate.

Servers: the real local server (conftest fixtures, 127.0.0.1:0) and, where the wire
must be inspected or must misbehave, a scripted ``/ws/tts`` server on 127.0.0.1:0.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.parse
from collections.abc import Coroutine
from typing import Any, TypeVar

import numpy as np
import pytest
import reactivex
from reactivex import operators as ops
from websockets.asyncio.server import ServerConnection, serve

import rxtts
from rxtts.client.connector import DEFAULT_LOCAL_VOICE, ENV_API_KEY, ENV_URL, connect, connect_sync, resolve
from rxtts.client.tts import TTS, GeneratedAudio
from rxtts.config import StreamConfig
from rxtts.engine import EngineUnavailableError
from rxtts.errors import ConnectionClosedError, MissingVoiceError, ServerRestartingError
from rxtts.events import AudioChunk, Final, SessionClosed, TtsEvent
from rxtts.protocol.frames import Endpoint
from rxtts.server.embedded import RunningServer
from rxtts.transport import HOSTED_EU_URL, HOSTED_URL, ReconnectPolicy

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv(ENV_URL, raising=False)
    monkeypatch.delenv(ENV_API_KEY, raising=False)
    return monkeypatch


# -- resolution rules --------------------------------------------------------------------------


def test_explicit_url_wins_and_takes_the_env_key() -> None:
    env = {ENV_URL: "http://env:1", ENV_API_KEY: "envkey"}
    res = resolve("http://arg:2", None, environ=env)
    assert (res.source, res.url, res.api_key) == ("argument", "http://arg:2", "envkey")
    assert resolve("http://arg:2", "k", environ=env).api_key == "k"


def test_env_url_comes_before_the_hosted_service() -> None:
    res = resolve(environ={ENV_URL: "ws://127.0.0.1:9", ENV_API_KEY: "eu-k"})
    assert (res.source, res.url, res.api_key) == ("environment", "ws://127.0.0.1:9", "eu-k")


def test_a_key_alone_means_the_hosted_service_with_its_region() -> None:
    assert resolve(api_key="k", environ={}).url == HOSTED_URL
    assert resolve(api_key="eu-k", environ={}).url == HOSTED_EU_URL
    assert resolve(api_key="k", region="eu", environ={}).url == HOSTED_EU_URL
    res = resolve(environ={ENV_API_KEY: "us-k"})
    assert (res.source, res.url, res.api_key) == ("hosted", HOSTED_URL, "us-k")


def test_nothing_configured_means_embedded() -> None:
    res = resolve(environ={})
    assert (res.source, res.url, res.api_key) == ("embedded", None, None)


def test_hosted_client_builds_urls_without_connecting(clean_env: pytest.MonkeyPatch) -> None:
    async def main() -> TTS:
        async with connect(api_key="eu-secret") as tts:
            return tts

    tts = run(main())
    url = tts.url_for(Endpoint.STREAM)
    parts = urllib.parse.urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "wss://api.eu.kugelaudio.com/ws/tts/stream"
    assert urllib.parse.parse_qs(parts.query)["api_key"] == ["secret"]
    assert not tts.is_local and tts.default_config.voice_id is None


# -- connect() against servers -------------------------------------------------------------------


def test_connect_with_url_and_generate(tone_server: RunningServer, clean_env: pytest.MonkeyPatch) -> None:
    async def main() -> tuple[GeneratedAudio, GeneratedAudio]:
        async with connect(tone_server.http_url, voice_id=1071) as tts:
            first = await tts.generate("Hello world.")
            ulaw = await tts.generate("Hi there.", output_format="ulaw_8000")
            return first, ulaw

    first, ulaw = run(main())
    assert first.samples.dtype == np.int16 and first.sample_rate == 24000
    assert first.duration > 0.1 and np.abs(first.samples).max() > 0
    assert first.usage is not None and first.usage.characters == len("Hello world.")
    assert first.stats["total_samples"] > 0 and first.frames >= 1
    assert first.ttfb is not None and first.ttfb >= 0
    assert ulaw.sample_rate == 8000 and ulaw.samples.dtype == np.int16 and len(ulaw.samples) > 0


def test_rxtts_url_from_the_environment(tone_server: RunningServer, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(ENV_URL, tone_server.url)

    async def main() -> tuple[TTS, GeneratedAudio]:
        async with rxtts.connect(voice_id=1071) as tts:
            return tts, await tts.generate("From the environment.")

    tts, audio = run(main())
    assert tts.base_url == tone_server.url and not tts.is_local
    assert audio.duration > 0


def test_embedded_server_when_nothing_is_configured(clean_env: pytest.MonkeyPatch) -> None:
    async def main() -> tuple[TTS, RunningServer, list[TtsEvent]]:
        async with connect(engine="tone") as tts:
            assert tts.server is not None
            server = tts.server
            events = await tts.streaming_session().speak("Embedded.").pipe(ops.to_list())
            return tts, server, events

    tts, server, events = run(main())
    assert server.host == "127.0.0.1" and server.port > 0
    assert tts.default_config.voice_id == DEFAULT_LOCAL_VOICE
    assert isinstance(events[-1], SessionClosed)
    assert any(isinstance(e, AudioChunk) for e in events)
    assert not server.running and tts.server is None  # stopped on exit


def test_no_engine_installed_says_what_to_install(clean_env: pytest.MonkeyPatch) -> None:
    import rxtts.server.engines.catalogue as catalogue

    def unavailable() -> str:
        raise EngineUnavailableError("no speech engine installed: pip install 'rxtts[piper]'")

    clean_env.setattr(catalogue, "best_available_engine", unavailable)

    async def main() -> None:
        async with connect():
            pass

    with pytest.raises(EngineUnavailableError, match=r"pip install 'rxtts\[piper\]'") as info:
        run(main())
    assert ENV_URL in str(info.value) and ENV_API_KEY in str(info.value)


def test_connect_is_awaitable_too(tone_server: RunningServer) -> None:
    async def main() -> GeneratedAudio:
        tts = await connect(tone_server.url, voice_id=1071)
        try:
            return await tts.generate("Awaited.")
        finally:
            await tts.aclose()

    assert run(main()).duration > 0


def test_connect_sync_runs_the_client_on_a_background_loop(
    tone_server: RunningServer, clean_env: pytest.MonkeyPatch
) -> None:
    client = connect_sync(tone_server.url, voice_id=1071)
    try:
        session = client.tts.streaming_session()
        events = session.speak(["Blocking ", "call."]).pipe(ops.to_list()).run()
        audio = client.run(client.tts.generate("Also blocking."))
    finally:
        client.close()
    assert isinstance(events[-1], SessionClosed)
    assert isinstance(audio, GeneratedAudio) and audio.duration > 0
    assert not client.thread.is_alive()


# -- one-shot requests on the pooled /ws/tts socket ------------------------------------------------


def test_stream_is_an_async_iterator_of_audio_and_an_observable(tone_server: RunningServer) -> None:
    async def main() -> tuple[list[AudioChunk], list[TtsEvent]]:
        async with connect(tone_server.url, voice_id=1071) as tts:
            chunks = [c async for c in tts.stream("Iterate over me.")]
            events = await tts.stream("Observe me.").pipe(ops.to_list())
            return chunks, events

    chunks, events = run(main())
    assert chunks and all(isinstance(c, AudioChunk) for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert isinstance(events[-1], Final) and events[-1].usage is not None


def test_one_shot_errors_are_typed(tone_server: RunningServer) -> None:
    async def main() -> None:
        async with connect(tone_server.url) as tts:  # no voice
            with pytest.raises(MissingVoiceError):
                await tts.generate("Who speaks?")
            assert (await tts.generate("Now with a voice.", voice_id=1071)).duration > 0

    run(main())


class FakeTts:
    """A scripted ``/ws/tts`` server: ``frames`` audio frames then ``final`` per request."""

    def __init__(self, frames: int = 2, restart_first: bool = False) -> None:
        self.frames = frames
        self.restart_first = restart_first
        self.requests: list[list[dict[str, Any]]] = []

    async def __aenter__(self) -> FakeTts:
        self.server = await serve(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, ws: ServerConnection) -> None:
        log: list[dict[str, Any]] = []
        self.requests.append(log)
        async for message in ws:
            req = json.loads(message)
            log.append(req)
            if self.restart_first and len(self.requests) == 1:
                await ws.close(1012)
                return
            n = int(req.get("voice_id", 1))
            for i in range(self.frames):
                pcm = np.full(100, n * 100 + i, "<i2").tobytes()
                frame = {"audio": base64.b64encode(pcm).decode(), "idx": i, "sr": 16000, "samples": 100}
                await ws.send(json.dumps(frame))
                await asyncio.sleep(0.01)
            await ws.send(
                json.dumps({"final": True, "chunks": self.frames, "total_samples": 100 * self.frames})
            )


def test_requests_share_one_socket_and_are_answered_in_order() -> None:
    async def main() -> tuple[FakeTts, list[GeneratedAudio]]:
        async with FakeTts() as srv, connect(srv.url, "eu-key") as tts:
            results = await asyncio.gather(*(tts.generate(f"Request {i}.", voice_id=i + 1) for i in range(3)))
            return srv, list(results)

    srv, results = run(main())
    assert len(srv.requests) == 1 and len(srv.requests[0]) == 3  # pooled (PROTOCOL 10)
    for i, audio in enumerate(results):
        assert audio.sample_rate == 16000 and audio.frames == 2
        assert set(audio.samples.tolist()) == {(i + 1) * 100, (i + 1) * 100 + 1}  # each its own audio
    assert srv.requests[0][0]["text"] == "Request 0." and "chunk_length_schedule" not in srv.requests[0][0]


def test_a_disposed_request_does_not_leak_into_the_next() -> None:
    async def main() -> GeneratedAudio:
        async with FakeTts(frames=5) as srv, connect(srv.url) as tts:
            first_audio = asyncio.get_running_loop().create_future()
            sub = tts.stream("Abandoned.", voice_id=1).subscribe(
                lambda e: first_audio.done() or first_audio.set_result(e)
            )
            await first_audio
            sub.dispose()
            return await tts.generate("Kept.", voice_id=2)

    audio = run(main())
    assert set(audio.samples.tolist()) == {200, 201, 202, 203, 204}


def test_one_shot_request_is_reissued_once_after_1012() -> None:
    async def main() -> tuple[FakeTts, GeneratedAudio]:
        async with FakeTts(restart_first=True) as srv:
            tts = TTS(srv.url, reconnect=ReconnectPolicy(retry_after=0.05))
            try:
                return srv, await tts.generate("Again.", StreamConfig(voice_id=3))
            finally:
                await tts.aclose()

    srv, audio = run(main())
    assert len(srv.requests) == 2 and srv.requests[1][0]["text"] == "Again."
    assert audio.frames == 2


def test_one_shot_connection_errors_are_typed() -> None:
    async def main() -> None:
        async with FakeTts() as srv:
            url = srv.url
        tts = TTS(url)
        with pytest.raises(ConnectionClosedError):
            await tts.generate("Nobody home.", StreamConfig(voice_id=1))
        await tts.aclose()

    run(main())


def test_server_restarting_error_when_audio_was_already_received() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        frame = {"audio": base64.b64encode(bytes(20)).decode(), "idx": 0, "sr": 16000, "samples": 10}
        await ws.send(json.dumps(frame))
        await ws.close(1012)

    async def main() -> None:
        server = await serve(handler, "127.0.0.1", 0)
        tts = TTS(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        try:
            with pytest.raises(ServerRestartingError):
                await tts.generate("Half.", StreamConfig(voice_id=1))
        finally:
            await tts.aclose()
            server.close()
            await server.wait_closed()

    run(main())


def test_streaming_session_factory_applies_presets_and_callbacks(tone_server: RunningServer) -> None:
    async def main() -> tuple[StreamConfig, list[float]]:
        closed: list[float] = []
        async with connect(tone_server.url, voice_id=1071) as tts:
            session = tts.streaming_session(preset="low-latency", on_session_closed=closed.append, speed=1.1)
            await session.speak(reactivex.of("Preset ", "turn.")).pipe(ops.to_list())
            return session.config, closed

    config, closed = run(main())
    assert config.auto_mode is True and config.chunk_length_schedule == (50, 100, 150, 250)
    assert config.speed == 1.1 and config.voice_id == 1071
    assert len(closed) == 1 and closed[0] > 0


def test_multi_context_session_uses_the_clients_url_and_loop(tone_server: RunningServer) -> None:
    async def main() -> tuple[str, bool, str]:
        async with connect(tone_server.url, "k") as tts:
            multi = tts.multi_context_session(default_voice_id=1071)
            return type(multi).__name__, multi.loop is tts.loop, tts.url_for(Endpoint.MULTI)

    name, same_loop, url = run(main())
    assert name == "MultiContextSession" and same_loop
    assert urllib.parse.urlsplit(url).path == "/ws/tts/multi"
