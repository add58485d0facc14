"""Obligations of every endpoint (G-1..G-12), auth, REST, usage, bad input, CLI."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from rxtts.server.engines.tone import ToneEngine

VOICE = 1071
PATHS = ("/ws/tts", "/ws/tts/stream", "/ws/tts/multi")


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def speak(ws, path: str, text: str = "Hi there.", **extra: Any) -> list[dict[str, Any]]:
    """One utterance on any endpoint, until its terminal frame."""
    if path == "/ws/tts":
        await ws.send({"text": text, "voice_id": VOICE, **extra})
        return await ws.recv_until(lambda f: f.get("final") or f.get("error"))
    if path == "/ws/tts/stream":
        await ws.send({"text": text, "flush": True, "voice_id": VOICE, **extra})
        return await ws.recv_until(lambda f: f.get("session_closed") or f.get("error"))
    await ws.send(
        {"text": text, "flush": True, "context_id": "c", "voice_settings": {"voice_id": VOICE}, **extra}
    )
    return await ws.recv_until(lambda f: f.get("final") or f.get("error"))


@pytest.mark.parametrize("path", PATHS)
def test_G1_three_paths_accept_api_key_and_ignore_sdk_tags(tone_server, wire, path):
    async def main():
        async with wire.connect(tone_server, path, model_id="kugel-1-turbo", project="x") as ws:
            return await speak(ws, path)

    frames = wire.run(main())
    assert any("audio" in f for f in frames) and not any("error" in f for f in frames)


@pytest.mark.parametrize("param", ["api_key", "token", "master_key"])
def test_G1_G2_auth_params_accepted_and_bad_key_rejected_401(server_factory, wire, param):
    server = server_factory(api_key="s3cret")

    async def main():
        query = {"api_key": "s3cret"} if param == "api_key" else {"api_key": None, param: "s3cret"}
        async with wire.connect(server, "/ws/tts/stream", **query) as ws:
            ok = await speak(ws, "/ws/tts/stream")
        codes = []
        for key in ("wrong", None):
            with pytest.raises(InvalidStatus) as info:
                async with wire.connect(server, "/ws/tts/multi", api_key=key):
                    pass
            codes.append(info.value.response.status_code)
            body = json.loads(info.value.response.body)
            assert body["error_code"] == "UNAUTHORIZED" and "s3cret" not in json.dumps(body)
            assert info.value.response.headers["x-request-id"]
        return ok, codes

    ok, codes = wire.run(main())
    assert ok[-1]["session_closed"]
    assert codes == [401, 401]


@pytest.mark.parametrize("path", PATHS)
def test_G3_server_sends_nothing_before_the_first_frame(tone_server, wire, path):
    async def main():
        async with wire.connect(tone_server, path) as ws:
            return await ws.quiet(0.3)

    assert wire.run(main()) == []


@pytest.mark.parametrize("path", PATHS)
def test_G4_G8_only_text_json_frames_with_complete_audio_fields(tone_server, wire, path):
    async def main():
        async with wire.connect(tone_server, path) as ws:
            frames = await speak(ws, path, "Short one.", output_format="ulaw_8000")
            frames += await speak(ws, path, "A second, longer utterance to frame.")
            return ws.raw, frames

    raw, frames = wire.run(main())
    assert all(isinstance(m, str) and isinstance(json.loads(m), dict) for m in raw)
    audio = [f for f in frames if "audio" in f]
    # output_format is per request on tts, sticky per socket/context elsewhere (S-1, M-2).
    assert {f["enc"] for f in audio} == ({"mulaw", "pcm_s16le"} if path == "/ws/tts" else {"mulaw"})
    for f in audio:
        data = base64.b64decode(f["audio"], validate=True)
        assert data  # PROTOCOL G-8: never empty
        assert all(isinstance(f[k], int) and not isinstance(f[k], bool) for k in ("idx", "sr", "samples"))
        width = 2 if f["enc"] == "pcm_s16le" else 1
        assert len(data) == f["samples"] * width
        assert 0 < f["samples"] / f["sr"] <= 0.1  # frames of at most ~80-100 ms
        assert "error" not in f


@pytest.mark.parametrize("path", ["/ws/tts/stream", "/ws/tts/multi"])
def test_G5_a_100k_character_chunk_still_gives_frames_under_1mib(server_factory, wire, path):
    server = server_factory(ToneEngine(ms_per_char=0.01))
    long_text = "wö\x01" * 33_000  # one 99k-char word; escapes inflate the JSON

    async def main():
        async with wire.connect(server, path) as ws:
            frames = await speak(ws, path, long_text, max_buffer_length=1_000_000)
            return ws.raw, frames

    raw, frames = wire.run(main())
    started = [f for f in frames if f.get("generation_started")]
    # issue 11: the word is cut every 50 characters and chunks are capped at 500
    assert "".join(f["text"] for f in started).replace(" ", "") == long_text
    assert max(len(f["text"]) for f in started) <= 550
    assert max(len(m.encode()) for m in raw) < 1 << 20


def test_G5_oversized_client_frame_closes_1009_and_server_keeps_serving(tone_server, wire):
    async def main():
        async with wire.connect(tone_server, "/ws/tts/stream") as ws:
            await ws.send(json.dumps({"text": "x" * (1 << 20)}))
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            code = ws.ws.close_code
        async with wire.connect(tone_server, "/ws/tts/stream") as ws:
            return code, await speak(ws, "/ws/tts/stream")

    code, frames = wire.run(main())
    assert code == 1009
    assert frames[-1]["session_closed"]


def test_G6_pings_answered_promptly(tone_server, wire):
    async def main():
        async with wire.connect(tone_server, "/ws/tts/stream") as ws:
            t0 = time.perf_counter()
            await asyncio.wait_for(await ws.ws.ping(), 2)
            return time.perf_counter() - t0

    assert wire.run(main()) < 0.5


def test_G7_bad_input_gets_error_frames_and_the_socket_survives(tone_server, wire):
    bad = [
        b"\x00binary",
        "{not json",
        "[1, 2]",
        json.dumps({"text": 3}),
        json.dumps({"bogus": True}),
        json.dumps({"text": "x", "voice_id": VOICE, "sample_rate": 12345}),
        json.dumps({"text": "x", "voice_id": VOICE, "model_id": "gpt-4"}),
    ]

    async def main():
        async with wire.connect(tone_server, "/ws/tts/stream") as ws:
            errors = []
            for frame in bad:
                await ws.send(frame)
                errors.append(await ws.recv())
            return errors, await speak(ws, "/ws/tts/stream")

    errors, frames = wire.run(main())
    codes = [e["error_code"] for e in errors]
    assert codes == [
        "PROTOCOL_ERROR",
        "PROTOCOL_ERROR",
        "PROTOCOL_ERROR",
        "PROTOCOL_ERROR",
        "VALIDATION_ERROR",
        "VALIDATION_ERROR",
        "VALIDATION_ERROR",
    ]
    for e in errors:
        assert isinstance(e["error"], str) and e["error"] and e["code"] == 400
    assert "binary" in errors[0]["error"] and "gpt-4" in errors[-1]["error"]
    assert frames[-1]["session_closed"]
    # PROTOCOL G-7: no truthy `error` anywhere else.
    assert not any(f.get("error") for f in frames)


def test_G9_no_word_timestamps_unless_requested(tone_server, wire):
    async def main():
        out = {}
        for path in PATHS:
            async with wire.connect(tone_server, path) as ws:
                out[path] = await speak(ws, path, "Three words here.")
        return out

    for frames in wire.run(main()).values():
        assert not any("word_timestamps" in f for f in frames)


def test_G10_minimal_frames_use_defaults(tone_server, wire):
    async def main():
        async with wire.connect(tone_server, "/ws/tts") as ws:
            await ws.send({"text": "Defaults.", "voice_id": VOICE})
            return await ws.recv_until(lambda f: f.get("final"))

    frames = wire.run(main())
    audio = [f for f in frames if "audio" in f]
    assert {(f["enc"], f["sr"]) for f in audio} == {("pcm_s16le", 24000)}
    assert frames[-1]["usage"]["model_id"] == "kugel-3.5"


def test_G11_shutdown_closes_open_sockets_with_1001(server_factory, wire):
    server = server_factory()

    async def main():
        async with wire.connect(server, "/ws/tts/stream") as ws:
            await ws.send({"text": "Open turn", "flush": False, "voice_id": VOICE})
            await asyncio.get_running_loop().run_in_executor(None, server.stop)
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return ws.ws.close_code

    assert wire.run(main()) == 1001
    assert not server.running


def test_G12_client_vanishing_mid_turn_leaves_server_serving(server_factory, wire):
    server = server_factory(ToneEngine(delay_per_block_s=0.02))

    async def main():
        for path in PATHS:
            ws = await websockets.connect(f"{server.url}{path}?api_key=k")
            frame = {
                "text": "A long sentence that is being spoken right now. " * 3,
                "voice_id": VOICE,
                "flush": True,
                "context_id": "c",
            }
            if path == "/ws/tts":
                frame = {"text": frame["text"], "voice_id": VOICE}
            elif path == "/ws/tts/stream":
                del frame["context_id"]
            else:
                frame["voice_settings"] = {"voice_id": VOICE}
            await ws.send(json.dumps(frame))
            await ws.recv()
            ws.transport.abort()  # no close frame at all
        await asyncio.sleep(0.2)
        async with wire.connect(server, "/ws/tts/multi") as ws:
            return await speak(ws, "/ws/tts/multi")

    frames = wire.run(main())
    assert frames[-1]["final"]
    deadline = time.monotonic() + 2
    while server.app.sessions and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not server.app.sessions  # every vanished session was cleaned up


# -- usage and pricing ----------------------------------------------------------------------


@pytest.mark.parametrize(("price", "expect"), [(None, None), (0.0, 0.0), (6.0, 6.0 * 0.09 / 60)])
def test_usage_cost_follows_configured_price(server_factory, wire, price, expect):
    server = server_factory(price_cents_per_minute=price)

    async def main():
        async with wire.connect(server, "/ws/tts") as ws:
            return (await speak(ws, "/ws/tts", "Nine char"))[-1]["usage"]

    usage = wire.run(main())
    assert abs(usage["audio_seconds"] - 0.09) < 1e-3
    if expect is None:
        assert usage["cost_cents"] is None and usage["cost_unavailable"] is True
    else:
        assert usage["cost_cents"] == pytest.approx(expect, abs=1e-6)
        assert usage["currency"] == "eur" and "cost_unavailable" not in usage


# -- REST ---------------------------------------------------------------------------------------


def test_rest_models_voices_health(tone_server):
    base = tone_server.http_url
    status, models = http_get(f"{base}/v1/models")
    ids = [m["id"] for m in models["models"]]
    assert status == 200 and ids[0] == "rxtts-tone"
    assert {"kugel-3", "kugel-3.5", "kugel-1-turbo", "kugel-1"} <= set(ids)
    assert all(m["name"] for m in models["models"])
    status, voices = http_get(f"{base}/v1/voices?limit=2&offset=1&include_public=true")
    assert status == 200 and voices["total"] == 3 and voices["limit"] == 2 and voices["offset"] == 1
    assert [v["id"] for v in voices["voices"]] == [1072, 1073]
    status, voice = http_get(f"{base}/v1/voices/1071")
    assert status == 200 and voice["id"] == 1071 and voice["category"] == "premade"
    status, missing = http_get(f"{base}/v1/voices/5")
    assert status == 404 and missing["error_code"] == "NOT_FOUND"
    status, health = http_get(f"{base}/health")
    assert status == 200 and health == {"status": "ok", "engine": "tone"}
    status, _body = http_get(f"{base}/v1/sdk-diagnostics")
    assert status == 404


def test_rest_honours_bearer_and_x_api_key_when_a_key_is_configured(server_factory):
    server = server_factory(api_key="k3y")
    url = f"{server.http_url}/v1/voices"
    assert http_get(url)[0] == 401
    assert http_get(url, {"Authorization": "Bearer nope"})[0] == 401
    assert http_get(url, {"Authorization": "Bearer k3y"})[0] == 200
    assert http_get(url, {"X-API-Key": "k3y"})[0] == 200
    assert http_get(f"{server.http_url}/health")[0] == 200


# -- CLI ------------------------------------------------------------------------------------------


def test_cli_serve_prints_url_serves_and_exits_cleanly_on_sigterm(wire):
    env = {**os.environ, "RXTTS_API_KEY": "envkey"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rxtts.cli",
            "serve",
            "--engine",
            "tone",
            "--port",
            "0",
            "--price-cents-per-minute",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        match = re.search(r"ws://127\.0\.0\.1:(\d+)", line)
        assert match, line
        url = match.group(0)

        async def main():
            with pytest.raises(InvalidStatus):
                async with websockets.connect(f"{url}/ws/tts?api_key=wrong"):
                    pass
            async with websockets.connect(f"{url}/ws/tts/stream?api_key=envkey") as ws:
                await ws.send(json.dumps({"text": "Hi.", "flush": True, "voice_id": VOICE}))
                frames = []
                while not frames or not frames[-1].get("session_closed"):
                    frames.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
                proc.send_signal(signal.SIGTERM)
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
                return frames, ws.close_code

        frames, code = wire.run(main())
        assert frames[-1]["usage"]["cost_cents"] == 0.0
        assert code == 1012  # G-11: a drain closes with 1012, never 1001
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_cli_reports_unknown_engine_and_bad_port():
    out = subprocess.run(
        [sys.executable, "-m", "rxtts.cli", "serve", "--engine", "nope"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2 and "invalid choice" in out.stderr


# -- embedded ----------------------------------------------------------------------------------


def test_embedded_server_starts_inside_a_running_loop_and_stops_idempotently(wire):
    from rxtts.server.embedded import start_background_server

    async def main():
        # Like Jupyter: the caller's loop is running; the server gets its own.
        server = start_background_server("tone", warm_up=False)
        try:
            assert server.url.startswith("ws://127.0.0.1:") and server.http_url.startswith("http://")
            assert server.engine.name == "tone" and server.running
            async with wire.connect(server, "/ws/tts") as ws:
                frames = await speak(ws, "/ws/tts")
        finally:
            server.stop()
        return server, frames

    server, frames = wire.run(main())
    assert frames[-1]["final"]
    assert not server.running
    server.stop()  # idempotent


def test_embedded_server_port_in_use_raises_oserror(tone_server):
    from rxtts.server.embedded import start_background_server

    with pytest.raises(OSError):
        start_background_server("tone", port=tone_server.port, warm_up=False)


def test_admission_refuses_upgrades_beyond_max_sessions_with_503_retry_after(server_factory, wire):
    import websockets as ws_lib
    from websockets.exceptions import InvalidStatus

    server = server_factory(max_sessions=2)

    async def main():
        async with wire.connect(server, "/ws/tts/stream"), wire.connect(server, "/ws/tts"):
            try:
                async with ws_lib.connect(f"{server.url}/ws/tts/multi?api_key=k", open_timeout=5):
                    refused = None
            except InvalidStatus as exc:
                refused = exc.response
        # Both closed: a slot is free again once the server has seen the closes.
        while server.stats().connections:
            await asyncio.sleep(0.01)
        async with wire.connect(server, "/ws/tts/stream") as again:
            await again.send({"text": "Hi.", "flush": True, "voice_id": 1071})
            frames = await again.recv_until(lambda f: f.get("session_closed"))
        return refused, frames

    refused, frames = wire.run(main())
    assert refused is not None and refused.status_code == 503
    assert refused.headers.get("Retry-After") == "1"
    assert frames[-1]["session_closed"]


def test_serve_flags_engine_threads_with_hidden_workers_alias_drain_and_admission():
    from rxtts.cli.serve import build_parser

    parser = build_parser()
    assert parser.parse_args([]).engine_threads is None  # auto: rxtts.server.workers.plan_threads
    assert parser.parse_args(["--engine-threads", "4"]).engine_threads == 4
    assert parser.parse_args(["--workers", "3"]).engine_threads == 3  # the old name still works
    assert "--workers" not in parser.format_help()
    args = parser.parse_args(["--drain-timeout", "5", "--max-sessions", "8"])
    assert (args.drain_timeout, args.max_sessions) == (5.0, 8)
