"""Security (issue 8): API-key auth, constant-time compare, no key in logs, loopback bind,
frame size and buffer limits.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import json
import logging
import re
import selectors
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from rxtts.cli.serve import build_parser
from rxtts.client.multi import MultiContextSession
from rxtts.client.tts import TTS
from rxtts.config import StreamConfig
from rxtts.engine import AudioBlock, CancelToken, SynthesisSettings, VoiceInfo
from rxtts.errors import AuthenticationError, ValidationError
from rxtts.protocol.frames import MAX_FRAME_BYTES
from rxtts.server.app import TtsApp
from rxtts.server.embedded import RunningServer, start_background_server
from rxtts.server.engines.tone import ToneEngine

VOICE = 1071
PATHS = ("/ws/tts", "/ws/tts/stream", "/ws/tts/multi")
KEY = "sk-live-7f3a9c1e5b2d4a6f"
OTHER_KEY = "sk-live-0000wrong1111key"
RAW_LOG = logging.getLogger("tests.raw_client")
RAW_LOG.setLevel(logging.WARNING)  # the raw test client is not under test: keep it quiet


def run(coro: Any, timeout: float = 30.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def utterance(path: str, text: str = "Hi there.", cid: str = "c") -> dict[str, Any]:
    if path == "/ws/tts":
        return {"text": text, "voice_id": VOICE}
    if path == "/ws/tts/stream":
        return {"text": text, "voice_id": VOICE, "flush": True}
    return {"text": text, "context_id": cid, "voice_settings": {"voice_id": VOICE}, "flush": True}


def done(path: str, frame: dict[str, Any]) -> bool:
    end = "session_closed" if path == "/ws/tts/stream" else "final"
    return bool(frame.get(end) or frame.get("error"))


async def speak_raw(url: str, path: str, text: str = "Hi there.") -> list[dict[str, Any]]:
    async with websockets.connect(url, logger=RAW_LOG) as ws:
        await ws.send(json.dumps(utterance(path, text)))
        frames = [json.loads(await asyncio.wait_for(ws.recv(), 10))]
        while not done(path, frames[-1]):
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        return frames


async def rejected_status(url: str) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with websockets.connect(url, logger=RAW_LOG):
            pass
    return info.value.response.status_code


def http_status(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


# -- API-key auth ------------------------------------------------------------------------------


@pytest.fixture
def keyed_server(server_factory) -> RunningServer:
    return server_factory(api_key=KEY)


@pytest.mark.parametrize("path", PATHS)
def test_a_configured_key_is_required_on_every_endpoint(keyed_server, path):
    base = f"{keyed_server.url}{path}"

    async def main() -> tuple[list[int], list[dict[str, Any]]]:
        statuses = [
            await rejected_status(base),
            await rejected_status(f"{base}?api_key={OTHER_KEY}"),
            await rejected_status(f"{base}?api_key="),
            await rejected_status(f"{base}?api_key={KEY}x"),  # a longer key is not a match
            await rejected_status(f"{base}?api_key={KEY[:-1]}"),  # nor a prefix of it
        ]
        return statuses, await speak_raw(f"{base}?api_key={KEY}", path)

    statuses, frames = run(main())
    assert statuses == [401] * 5
    assert done(path, frames[-1]) and not frames[-1].get("error")


def test_the_client_library_surfaces_a_bad_key_as_authentication_error(keyed_server):
    async def main() -> list[Exception]:
        bad = TTS(keyed_server.url, OTHER_KEY, default_config=StreamConfig(voice_id=VOICE))
        errors: list[Exception] = []
        for attempt in (
            bad.streaming_session().connect(),
            bad.generate("Hi."),
            MultiContextSession(keyed_server.url, api_key=OTHER_KEY, default_voice_id=VOICE).connect(),
        ):
            with pytest.raises(AuthenticationError) as info:
                await attempt
            errors.append(info.value)
        await bad.aclose()
        good = TTS(keyed_server.url, f"eu-{KEY}", default_config=StreamConfig(voice_id=VOICE))
        audio = await good.generate("Region prefixes are stripped.")
        await good.aclose()
        assert audio.duration > 0
        return errors

    errors = run(main())
    assert [e.status for e in errors] == [401, 401, 401]
    assert all(KEY not in str(e) and OTHER_KEY not in str(e) for e in errors)


def test_rest_needs_the_key_too_except_health(keyed_server):
    url = f"{keyed_server.http_url}/v1/voices"
    assert http_status(url) == 401
    assert http_status(url, {"Authorization": f"Bearer {OTHER_KEY}"}) == 401
    assert http_status(url, {"X-API-Key": OTHER_KEY}) == 401
    assert http_status(url, {"Authorization": f"Bearer {KEY}"}) == 200
    assert http_status(f"{url}?api_key={KEY}") == 200
    assert http_status(f"{keyed_server.http_url}/health") == 200


def test_without_a_configured_key_the_server_is_open(tone_server):
    frames = run(speak_raw(f"{tone_server.url}/ws/tts/stream", "/ws/tts/stream"))
    assert frames[-1]["session_closed"]


def test_keys_are_compared_in_constant_time(keyed_server, monkeypatch):
    calls: list[tuple[bytes, bytes]] = []
    verdict: dict[str, bool | None] = {"force": None}
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        forced = verdict["force"]
        return real(a, b) if forced is None else forced

    monkeypatch.setattr(hmac, "compare_digest", spy)
    base = f"{keyed_server.url}/ws/tts/stream"

    async def main() -> list[Any]:
        out: list[Any] = [await rejected_status(f"{base}?api_key={OTHER_KEY}")]
        out.append((await speak_raw(f"{base}?api_key={KEY}", "/ws/tts/stream"))[-1])
        verdict["force"] = False  # the compare alone decides: even the right key is refused
        out.append(await rejected_status(f"{base}?api_key={KEY}"))
        return out

    rejected, accepted, forced = run(main())
    assert rejected == 401 and accepted["session_closed"] and forced == 401
    right, wrong = KEY.encode(), OTHER_KEY.encode()
    assert calls == [(wrong, right), (right, right), (right, right)]
    verdict["force"] = None
    assert http_status(f"{keyed_server.http_url}/v1/models", {"X-API-Key": OTHER_KEY}) == 401
    assert calls[-1] == (OTHER_KEY.encode(), KEY.encode())  # REST uses the same compare


# -- no key in logs ------------------------------------------------------------------------------


@pytest.fixture
def debug_log() -> Iterator[list[str]]:
    """Every log line of every logger at DEBUG, formatted with tracebacks, from any thread."""
    lines: list[str] = []
    lock = threading.Lock()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            with lock:
                lines.append(self.format(record))

    handler = Collect(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def test_the_key_never_reaches_the_logs(server_factory, debug_log):
    # The server is created after DEBUG is on: websockets decides per connection.
    server = server_factory(api_key=KEY)

    async def main() -> None:
        await rejected_status(f"{server.url}/ws/tts/stream?api_key={OTHER_KEY}")
        await speak_raw(f"{server.url}/ws/tts/stream?api_key={KEY}&sdk=python", "/ws/tts/stream")
        await speak_raw(f"{server.url}/ws/tts/multi?token={KEY}", "/ws/tts/multi")
        tts = TTS(server.url, KEY, default_config=StreamConfig(voice_id=VOICE))
        await tts.generate("Through the client library.")
        with pytest.raises(ValidationError):
            await tts.generate("An unknown voice is logged nowhere with a key.", voice_id=5)
        await tts.aclose()
        bad = TTS(server.url, OTHER_KEY, default_config=StreamConfig(voice_id=VOICE))
        with pytest.raises(AuthenticationError):
            await bad.generate("Refused.")
        await bad.aclose()

    run(main())
    assert http_status(f"{server.http_url}/v1/voices", {"Authorization": f"Bearer {KEY}"}) == 200
    assert http_status(f"{server.http_url}/v1/voices", {"X-API-Key": OTHER_KEY}) == 401
    text = "\n".join(debug_log)
    # DEBUG capture really saw the handshakes (else this test would prove nothing) ...
    assert re.search(r"rxtts\.server DEBUG < GET /ws/tts/stream\?api_key=\*\*\*", text)
    assert "rxtts.server DEBUG < Authorization: ***" in text
    assert re.search(r"rxtts\.transport\.websockets DEBUG > GET /ws/tts\?api_key=\*\*\*", text)
    # ... and no key, right or wrong, in any of it.
    assert KEY not in text and OTHER_KEY not in text


# -- loopback bind by default ------------------------------------------------------------------------


def test_loopback_is_the_default_bind_everywhere(server_factory):
    assert build_parser().parse_args([]).host == "127.0.0.1"
    assert inspect.signature(start_background_server).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(TtsApp.serve).parameters["host"].default == "127.0.0.1"
    with start_background_server("tone", warm_up=False) as server:  # no host given
        listening = [
            c.laddr
            for c in psutil.Process().net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == server.port
        ]
    assert [addr.ip for addr in listening] == ["127.0.0.1"]


def test_rxtts_serve_binds_loopback_unless_told_otherwise():
    proc = subprocess.Popen(
        [sys.executable, "-m", "rxtts.cli", "serve", "--engine", "tone", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(timeout=60), "rxtts serve printed nothing within 60 s"
        line = proc.stdout.readline()  # printed once the socket listens
        assert re.search(r"listening on ws://127\.0\.0\.1:\d+ ", line), line
        listening = [
            c.laddr for c in psutil.Process(proc.pid).net_connections(kind="inet") if c.status == "LISTEN"
        ]
        assert [addr.ip for addr in listening] == ["127.0.0.1"]
    finally:
        proc.terminate()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


# -- frame size and buffer limits ---------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_frames_over_1_mib_close_1009_and_just_under_is_answered(tone_server, path):
    url = f"{tone_server.url}{path}"
    big = {**utterance(path), "text": "x" * MAX_FRAME_BYTES}
    under = {**utterance(path), "text": "y " * ((MAX_FRAME_BYTES - 200) // 2)}

    async def main() -> tuple[int | None, int | None, dict[str, Any], list[dict[str, Any]]]:
        codes = []
        for message, compression in ((json.dumps(big), None), (json.dumps(big), "deflate")):
            # deflate: a 1 MiB frame compresses to ~1 KB; the limit is on the inflated size.
            async with websockets.connect(url, compression=compression, max_size=None) as ws:
                await ws.send(message)
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10)
                codes.append(ws.close_code)
        async with websockets.connect(url) as ws:
            message = json.dumps(under)
            assert len(message.encode()) < MAX_FRAME_BYTES
            await ws.send(message)
            answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
        return codes[0], codes[1], answer, await speak_raw(url, path)

    plain, deflated, answer, frames = run(main())
    assert plain == deflated == 1009
    # Accepted by the socket, refused by the text budget (100k characters by default).
    assert answer["error_code"] == "VALIDATION_ERROR" and "refused" in answer["error"]
    assert done(path, frames[-1]) and not frames[-1].get("error")  # the server serves on


def test_text_over_the_buffer_limit_is_refused_and_reported_per_stream_socket(server_factory):
    server = server_factory(max_buffered_chars=100)

    async def main() -> list[dict[str, Any]]:
        async with websockets.connect(f"{server.url}/ws/tts/stream") as ws:
            await ws.send(json.dumps({"text": "a" * 80 + " ", "voice_id": VOICE}))
            await ws.send(json.dumps({"text": "b" * 30}))  # 80 + 30 > 100: refused
            await ws.send(json.dumps({"text": "c" * 15, "flush": True}))  # 95: fits
            frames = [json.loads(await asyncio.wait_for(ws.recv(), 10))]
            while not frames[-1].get("session_closed"):
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            return frames

    frames = run(main())
    assert frames[0]["error_code"] == "VALIDATION_ERROR" and frames[0]["code"] == 400
    assert "refused" in frames[0]["error"] and "100" in frames[0]["error"]
    spoken = " ".join(f["text"] for f in frames if f.get("generation_started"))
    # the refused text is not spoken, the rest is (words over 50 characters are cut, issue 11)
    assert "".join(spoken.split()) == "a" * 80 + "c" * 15
    assert frames[-1]["usage"]["characters"] == 96


def test_the_text_budget_is_per_context_on_multi(server_factory):
    server = server_factory(max_buffered_chars=100)

    async def main() -> list[dict[str, Any]]:
        async with websockets.connect(f"{server.url}/ws/tts/multi") as ws:
            voice = {"voice_settings": {"voice_id": VOICE}}
            await ws.send(json.dumps({"text": "a" * 80 + " ", "context_id": "a", **voice}))
            await ws.send(json.dumps({"text": "b" * 80 + " ", "context_id": "b", **voice}))
            await ws.send(json.dumps({"text": "x" * 30, "context_id": "a"}))  # refused for a
            for cid in ("a", "b"):
                await ws.send(json.dumps({"close_context": True, "context_id": cid}))
            frames: list[dict[str, Any]] = []
            while sum(bool(f.get("context_closed")) for f in frames) < 2:
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            return frames

    frames = run(main())
    errors = [f for f in frames if f.get("error")]
    assert len(errors) == 1 and errors[0]["context_id"] == "a"  # PROTOCOL M-12
    assert errors[0]["error_code"] == "VALIDATION_ERROR" and "refused" in errors[0]["error"]
    usage = {f["context_id"]: f["usage"]["characters"] for f in frames if f.get("context_closed")}
    assert usage == {"a": 81, "b": 81}


class HeldTone(ToneEngine):
    """Tone engine whose first chunk waits until ``release`` is set (or it is cancelled)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self._first = True

    def synthesize(
        self, text: str, voice: VoiceInfo, settings: SynthesisSettings, cancel: CancelToken
    ) -> Iterator[AudioBlock]:
        if self._first:
            self._first = False
            while not self.release.wait(0.02):
                if cancel.cancelled:
                    return
        yield from super().synthesize(text, voice, settings, cancel)


def test_the_text_budget_covers_every_queued_tts_request_and_answers_stay_in_order(server_factory):
    engine = HeldTone()
    server = server_factory(engine, max_buffered_chars=100)
    one, two, three, four = "First one.", "w" * 50, "z" * 60, "Fourth fits."

    async def main() -> list[dict[str, Any]]:
        async with websockets.connect(f"{server.url}/ws/tts") as ws:
            for text in (one, two, three, four):
                await ws.send(json.dumps({"text": text, "voice_id": VOICE}))
            # Request one is being spoken (held), two waits (50), three would make 110;
            # release the engine only once all four were read (three pipelines: 1, 2, 4).
            deadline = asyncio.get_running_loop().time() + 5
            while (stats := server.stats()).synthesis_jobs != 1 or stats.pipelines < 3:
                assert asyncio.get_running_loop().time() < deadline, f"requests not read: {stats}"
                await asyncio.sleep(0.01)
            engine.release.set()
            frames: list[dict[str, Any]] = []
            while sum(bool(f.get("final") or f.get("error")) for f in frames) < 4:
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            return frames

    frames = run(main())
    answers = [f for f in frames if f.get("final") or f.get("error")]
    # PROTOCOL T-2: one answer per request, in arrival order, the refusal included.
    assert [bool(a.get("final")) for a in answers] == [True, True, False, True]
    assert answers[2]["error_code"] == "VALIDATION_ERROR" and "refused" in answers[2]["error"]
    assert [a["usage"]["characters"] for a in answers if a.get("final")] == [len(one), len(two), len(four)]
