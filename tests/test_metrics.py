"""Capacity signals (issue 14): /ready, Prometheus /metrics, the HAProxy agent port,
admission refusals counted by reason, and the client's retry of refused upgrades."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rxtts import connect
from rxtts.client.connection import AdmissionRetry
from rxtts.errors import AuthenticationError, ConnectionClosedError, ModelUnavailableError, RateLimitError
from rxtts.server.app import TtsApp
from rxtts.server.embedded import RunningServer
from rxtts.server.engines.tone import ToneEngine
from rxtts.server.metrics import TimedExecutor, agent_reply
from rxtts.server.options import ServerOptions
from rxtts.transport.base import SocketClosed

VOICE = 1071
STREAM, MULTI, TTS = "/ws/tts/stream", "/ws/tts/multi", "/ws/tts"


def http_get(url: str) -> tuple[int, dict[str, str], str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def scrape(server: RunningServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``, parsed by prometheus_client's own parser."""
    status, headers, body = http_get(f"{server.http_url}/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def sample(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def agent(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        data = b""
        while chunk := s.recv(100):
            data += chunk
    return data.decode()


async def async_get(url: str) -> tuple[int, dict[str, str], str]:
    return await asyncio.to_thread(http_get, url)


def test_metrics_parse_and_follow_a_turn_and_multi_contexts(server_factory, wire):
    server = server_factory(ToneEngine(ms_per_char=20.0), max_lead_seconds=0.3)

    async def main() -> tuple[dict[Any, float], dict[Any, float], float]:
        async with wire.connect(server, MULTI) as multi, wire.connect(server, STREAM) as ws:
            for i in range(3):
                await multi.send({"text": "Held back, no flush", "context_id": f"c{i}", "voice_id": VOICE})
            await multi.recv_until(lambda f: f.get("context_id") == "c2" and f.get("context_created"))
            started = time.perf_counter()
            await ws.send({"text": "A turn that takes a while to say.", "flush": True, "voice_id": VOICE})
            await ws.recv_until(lambda f: "audio" in f)
            ttfa_client = time.perf_counter() - started
            during = await asyncio.to_thread(scrape, server)
            await ws.recv_until(lambda f: f.get("final"))
        while server.stats().connections:
            await asyncio.sleep(0.01)
        return during, await asyncio.to_thread(scrape, server), ttfa_client

    during, after, ttfa_client = wire.run(main())
    assert sample(during, "rxtts_active_sockets") == 2
    assert sample(during, "rxtts_active_contexts") == 3
    assert sample(during, "rxtts_active_turns") == 4  # 3 contexts + the stream turn
    assert sample(during, "rxtts_active_voices") == 4
    assert sample(during, "rxtts_queued_audio_seconds") >= 0
    assert sample(during, "rxtts_ready") == 1 and sample(during, "rxtts_draining") == 0
    assert 0 < sample(during, "rxtts_engine_busy_ratio") <= 1
    # TTFA: one observation for the stream turn, none for multi (no audio yet), and the
    # server-side value is below what the client saw.
    assert sample(after, "rxtts_ttfa_seconds_count", endpoint=STREAM) == 1
    ttfa = sample(after, "rxtts_ttfa_seconds_sum", endpoint=STREAM)
    assert 0 < ttfa <= ttfa_client
    assert sample(after, "rxtts_ttfa_seconds_count", endpoint=MULTI) == 0
    assert sample(after, "rxtts_sessions_total", endpoint=STREAM) == 1
    assert sample(after, "rxtts_sessions_total", endpoint=MULTI) == 1
    assert sample(after, "rxtts_active_sockets") == 0
    assert sample(after, "rxtts_engine_busy_seconds_total") > 0


def test_ttfa_counts_each_turn_and_each_multi_context_once(server_factory, wire):
    server = server_factory(max_lead_seconds=None)

    async def main() -> None:
        async with wire.connect(server, STREAM) as ws:
            for text in ("First turn. More text in it.", "Second turn."):
                await ws.send({"text": text, "voice_id": VOICE})
                await ws.send({"text": " And the rest.", "flush": True})
                await ws.recv_until(lambda f: f.get("final"))
        async with wire.connect(server, MULTI) as ws:
            for ctx in ("a", "b"):
                await ws.send({"text": "Hello there.", "context_id": ctx, "voice_id": VOICE, "flush": True})
            finals = 0
            while finals < 2:
                finals += bool((await ws.recv()).get("final"))

    wire.run(main())
    samples = scrape(server)
    assert sample(samples, "rxtts_ttfa_seconds_count", endpoint=STREAM) == 2
    assert sample(samples, "rxtts_ttfa_seconds_count", endpoint=MULTI) == 2


def test_ready_is_503_while_saturated_or_draining_and_refusals_are_counted(server_factory, wire):
    server = server_factory(max_sessions=1, drain_timeout=5.0)

    async def main() -> list[tuple[int, dict[str, str], str]]:
        seen = [await async_get(f"{server.http_url}/ready")]
        async with wire.connect(server, STREAM):
            seen.append(await async_get(f"{server.http_url}/ready"))
            seen.append(await async_get(f"{server.http_url}/health"))
            for path in (STREAM, TTS):  # every endpoint is refused alike
                with pytest.raises(Exception, match="503"):
                    async with wire.connect(server, path):
                        pass
        while server.stats().connections:
            await asyncio.sleep(0.01)
        seen.append(await async_get(f"{server.http_url}/ready"))
        return seen

    (s0, _, b0), (s1, h1, b1), (health, _, _), (s2, _, _) = wire.run(main())
    assert (s0, json.loads(b0)["status"]) == (200, "ready")
    assert (s1, json.loads(b1)["status"], h1["Retry-After"]) == (503, "saturated", "1")
    assert health == 200  # liveness is not readiness
    assert s2 == 200
    samples = scrape(server)
    assert sample(samples, "rxtts_refusals_total", reason="saturated", response="http_503") == 2
    assert sample(samples, "rxtts_refusals_total", reason="draining", response="http_503") == 0

    drainer = threading.Thread(target=server.drain, args=(5.0,), daemon=True)

    async def during_drain() -> tuple[int, str, dict[Any, float]]:
        async with wire.connect(server, STREAM) as ws:
            await ws.send({"text": "Busy while the drain starts. " * 4, "voice_id": VOICE, "flush": True})
            await ws.recv_until(lambda f: "audio" in f)
            drainer.start()
            while not server.app.draining:
                await asyncio.sleep(0.01)
            status, _, body = await async_get(f"{server.http_url}/ready")
            with pytest.raises(Exception, match="503"):
                async with wire.connect(server, MULTI):
                    pass
            samples = await asyncio.to_thread(scrape, server)
            await ws.recv_until(lambda f: f.get("session_closed"), timeout=8)
            return status, json.loads(body)["status"], samples

    status, state, samples = wire.run(during_drain())
    drainer.join(10)
    assert (status, state) == (503, "draining")
    assert sample(samples, "rxtts_draining") == 1 and sample(samples, "rxtts_ready") == 0
    assert sample(samples, "rxtts_refusals_total", reason="draining", response="http_503") == 1


def test_unauthorized_upgrades_are_counted(server_factory, wire):
    server = server_factory(api_key="right")

    async def main() -> None:
        with pytest.raises(Exception, match="401"):
            async with wire.connect(server, STREAM, api_key="wrong"):
                pass

    wire.run(main())
    assert http_get(f"{server.http_url}/ready")[0] == 200  # probes need no key
    samples = scrape(server)
    assert sample(samples, "rxtts_refusals_total", reason="unauthorized", response="http_401") == 1


class _HeldSocket:
    """A ServerSocket that reads nothing until released and records its close."""

    def __init__(self, path: str = STREAM) -> None:
        self.path = path
        self.query: dict[str, list[str]] = {}
        self.closed: tuple[int, str] | None = None
        self.release = asyncio.Event()

    async def recv(self) -> str:
        await self.release.wait()
        raise SocketClosed(1000)

    async def send(self, text: str) -> None:
        pass

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self.release.set()


def test_a_socket_that_raced_past_the_upgrade_check_is_closed_1013_and_counted():
    app = TtsApp(ToneEngine(), ServerOptions(max_sessions=1))

    async def main() -> tuple[tuple[int, str] | None, tuple[int, str] | None]:
        first, second = _HeldSocket(), _HeldSocket(MULTI)
        held = asyncio.ensure_future(app.serve_socket(first))
        await asyncio.sleep(0.05)
        await app.serve_socket(second)  # admitted by process_request, then the limit hit
        first.release.set()
        await held
        return first.closed, second.closed

    try:
        first, second = asyncio.run(main())
    finally:
        app.close()
    assert first is None
    assert second is not None and second[0] == 1013
    text = app.metrics.render().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert sample(samples, "rxtts_refusals_total", reason="saturated", response="close_1013") == 1


def test_agent_reports_weight_from_voices_and_drain(server_factory, wire):
    server = server_factory(capacity=4, agent_port=0, drain_timeout=3.0)
    assert server.agent_port is not None and server.agent_port != server.port

    async def main() -> tuple[str, str, str]:
        idle = await asyncio.to_thread(agent, server.agent_port)
        async with wire.connect(server, MULTI) as multi:
            for ctx in ("a", "b", "c"):
                await multi.send({"text": "No flush yet", "context_id": ctx, "voice_id": VOICE})
            await multi.recv_until(lambda f: f.get("context_id") == "c" and f.get("context_created"))
            loaded = await asyncio.to_thread(agent, server.agent_port)
            threading.Thread(target=server.drain, args=(3.0,), daemon=True).start()
            while not server.app.draining:
                await asyncio.sleep(0.01)
            draining = await asyncio.to_thread(agent, server.agent_port)
        return idle, loaded, draining

    idle, loaded, draining = wire.run(main())
    assert idle == "ready up 100%\n"
    assert loaded == "ready up 25%\n"  # 3 contexts on one socket weigh 3 of 4
    assert draining == "drain\n"


@pytest.mark.parametrize(
    ("state", "units", "capacity", "stopped", "reply"),
    [
        ("ready", 0, 16, False, "ready up 100%\n"),
        ("ready", 4, 16, False, "ready up 75%\n"),
        ("ready", 16, 16, False, "ready up 1%\n"),
        ("ready", 40, 16, False, "ready up 1%\n"),
        ("saturated", 3, 16, False, "drain\n"),
        ("draining", 0, 16, False, "drain\n"),
        ("ready", 0, 16, True, "maint\n"),
    ],
)
def test_agent_reply_lines(state: str, units: int, capacity: int, stopped: bool, reply: str):
    assert agent_reply(state, units, capacity, stopped) == reply


def test_engine_busy_ratio_measures_thread_time():
    pool = TimedExecutor(2)
    try:
        pool.submit(time.sleep, 0.4).result()
        ratio = pool.busy_ratio(window=1.0)
        assert pool.busy_seconds >= 0.4
        assert 0.15 <= ratio <= 0.3  # 0.4 s of 2 threads x 1 s
        running = pool.submit(time.sleep, 0.5)
        time.sleep(0.25)
        assert pool.busy_ratio(window=1.0) > ratio  # a job in flight counts too
        running.result()
    finally:
        pool.shutdown()


# -- the client's retry of admission refusals ------------------------------------------------


def test_admission_retry_delays_grow_honour_retry_after_and_stay_in_budget():
    retry = AdmissionRetry()
    rng = random.Random(7)
    no_hint = [retry.delay(k, None, rng) for k in (1, 2, 3)]
    assert 0.25 <= no_hint[0] <= 0.375 and 0.5 <= no_hint[1] <= 0.75 and 1.0 <= no_hint[2] <= 1.5
    hinted = [retry.delay(k, 1.0, rng) for k in (1, 2)]
    assert all(1.0 <= d <= 1.5 for d in hinted)
    assert len({round(retry.delay(1, 1.0, rng), 6) for _ in range(20)}) > 1  # jittered
    assert retry.retries(ModelUnavailableError("busy", status=503))
    assert retry.retries(RateLimitError("slow down", status=429))
    assert not retry.retries(AuthenticationError("no", status=401))
    assert not retry.retries(ConnectionClosedError("cannot connect"))  # no server: fail fast


def test_rxtts_client_retries_a_refused_upgrade_then_raises_the_typed_error(server_factory, wire):
    server = server_factory(max_sessions=1)

    async def main() -> tuple[BaseException | None, float]:
        async with wire.connect(server, STREAM), connect(server.http_url, voice_id=VOICE) as tts:
            started = time.perf_counter()
            try:
                await tts.generate("Refused for load.")
            except ModelUnavailableError as exc:
                return exc, time.perf_counter() - started
            return None, time.perf_counter() - started

    error, took = wire.run(main())
    assert isinstance(error, ModelUnavailableError)
    assert error.status == 503 and error.retry_after == 1.0
    assert 2.0 <= took <= 5.5  # two waits of Retry-After (1 s) plus jitter, inside the 5 s budget
    samples = scrape(server)
    assert sample(samples, "rxtts_refusals_total", reason="saturated", response="http_503") == 3


def test_rxtts_client_gets_in_once_a_slot_frees_during_its_backoff(server_factory, wire):
    server = server_factory(max_sessions=1)

    async def main() -> float:
        async with connect(server.http_url, voice_id=VOICE) as tts:
            async with wire.connect(server, STREAM):
                pending = asyncio.ensure_future(tts.generate("Admitted on a retry."))
                await asyncio.sleep(0.4)
            audio = await pending
            return audio.duration

    assert wire.run(main()) > 0
    samples = scrape(server)
    assert sample(samples, "rxtts_refusals_total", reason="saturated", response="http_503") >= 1


def test_official_sdk_gets_its_typed_error_when_saturated(server_factory, wire):
    from kugelaudio import KugelAudio
    from kugelaudio.exceptions import ConnectionError as KugelConnectionError

    server = server_factory(max_sessions=1)
    client = KugelAudio(api_key="k", api_url=server.http_url, telemetry=False)

    async def main() -> BaseException | None:
        async with wire.connect(server, STREAM):
            try:
                async with client.tts.streaming_session(voice_id=VOICE) as s:
                    async for _ in s.send("Refused.", flush=True):
                        pass
            except Exception as exc:
                return exc
        return None

    error = wire.run(main())
    assert isinstance(error, KugelConnectionError), repr(error)
    assert error.status_code == 503
