"""Scale-out (issue 14): thread defaults, ``rxtts serve`` startup errors (issue 16),
``--worker-processes`` on one port, and a loopback cluster behind the real HAProxy.

Every process here is started by the test on 127.0.0.1 and stopped by its PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families
from test_deploy import haproxy_binary
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from rxtts.cli.serve import build_parser
from rxtts.deploy import Layout, render
from rxtts.server.workers import READY_MARK, plan_threads

VOICE = 1071
STREAM, MULTI = "/ws/tts/stream", "/ws/tts/multi"
LONG_TURN = "This turn is still being spoken while its worker is told to drain. " * 6  # ~4 s of tone


# -- helpers ---------------------------------------------------------------------------------


@dataclass
class Proc:
    popen: subprocess.Popen[str]
    line: str = ""
    lines: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(re.search(r"ws://127\.0\.0\.1:(\d+)", self.line).group(1))  # type: ignore[union-attr]

    @property
    def agent_port(self) -> int:
        return int(re.search(r"agent port (\d+)", self.line).group(1))  # type: ignore[union-attr]

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test started; whatever still runs is stopped by PID afterwards."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL if p.args[0].endswith("haproxy") else signal.SIGTERM)
    for p in started:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def serve_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "rxtts.cli", "serve", *args]


def start_serve(started: list[subprocess.Popen[str]], *args: str, timeout: float = 60.0) -> Proc:
    """``rxtts serve`` in a subprocess; returns once it printed its listening line."""
    popen = subprocess.Popen(serve_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started.append(popen)
    proc = Proc(popen)
    ready = threading.Event()

    def pump() -> None:
        assert popen.stdout is not None
        for line in popen.stdout:
            proc.lines.append(line)
            if line.startswith(READY_MARK) and not ready.is_set():
                proc.line = line
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(timeout):
        popen.kill()
        err = popen.stderr.read() if popen.stderr else ""
        pytest.fail(f"rxtts serve {args} did not start: {err}")
    return proc


def run_serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(serve_cmd(*args), capture_output=True, text=True, timeout=60)


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metrics(http: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = http_get(f"{http}/metrics")
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(body)
        for s in f.samples
    }


def gauge(http: str, name: str) -> float:
    return metrics(http)[(name, ())]


def sessions_total(http: str) -> float:
    return sum(v for (name, _), v in metrics(http).items() if name == "rxtts_sessions_total")


def agent(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        data = b""
        while chunk := s.recv(100):
            data += chunk
    return data.decode()


async def ws_open(base: str, path: str = STREAM) -> ClientConnection:
    return await websockets.connect(f"{base}{path}?api_key=k&sdk=python&sdk_version=2.7.0", open_timeout=5)


async def recv_until(ws: ClientConnection, key: str, timeout: float = 15.0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic())))
        out.append(frame)
        if frame.get(key):
            return out


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    with contextlib.suppress(FileNotFoundError):
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return False


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    err = result.stderr.strip()
    assert "Traceback" not in result.stderr, result.stderr
    assert len(err.splitlines()) == 1, result.stderr
    return err


# -- threads ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cores", "processes", "engine", "intra"),
    [(2, 1, 2, 1), (2, 2, 1, 1), (2, 3, 1, 1), (8, 1, 2, 4), (8, 2, 2, 2), (8, 4, 2, 1), (16, 3, 2, 2)],
)
def test_default_threads_never_oversubscribe(cores: int, processes: int, engine: int, intra: int):
    plan = plan_threads(processes, cores=cores)
    assert (plan.engine_threads, plan.intra_op_threads) == (engine, intra)
    assert plan.total <= max(cores, processes)  # at least one thread per process
    assert not plan.oversubscribed or processes > cores


def test_explicit_threads_are_kept_and_an_oversubscription_is_logged(caplog):
    with caplog.at_level("WARNING", logger="rxtts.server"):
        plan = plan_threads(2, engine_threads=2, intra_op=2, cores=2)
    assert (plan.engine_threads, plan.intra_op_threads, plan.total) == (2, 2, 8)
    assert plan.oversubscribed and "more threads than cores" in caplog.text


# -- rxtts serve: help and startup errors (issue 16) ----------------------------------------


def test_serve_help_shows_every_default():
    parser = build_parser()
    text = parser.format_help()
    actions = [a for a in parser._actions if a.help != "==SUPPRESS==" and a.dest != "help"]
    assert len(actions) >= 18
    for action in actions:
        opt = action.option_strings[0]
        start = text.index(f"  {opt}")
        nxt = re.search(r"^  -", text[start + 3 :], re.M)
        entry = text[start : start + 3 + nxt.start()] if nxt else text[start:]
        assert "(default:" in entry, f"{opt} does not show its default:\n{entry}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "99999"], "port must be in 0..65535, got 99999"),
        (["--port", "eighty"], "not a port number"),
        (["--worker-processes", "0"], "must be >= 1"),
        (["--max-sessions", "0"], "must be >= 1"),
        (["--engine", "nope"], "invalid choice"),
        (["--engine", "tone", "--log-level", "chatty"], "unknown --log-level"),
        (["--engine", "tone", "--drain-timeout", "-1"], "drain_timeout must be >= 0"),
    ],
)
def test_serve_usage_errors_are_one_line(args: list[str], message: str):
    result = run_serve(*args)
    assert result.returncode == 2
    err = one_line(result)
    assert err.startswith("rxtts serve: error: ") and message in err


def test_serve_busy_port_and_busy_agent_port_are_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run_serve("--engine", "tone", "--port", str(port))
        agent_busy = run_serve("--engine", "tone", "--port", "0", "--agent-port", str(port))
        workers_busy = run_serve("--engine", "tone", "--port", str(port), "--worker-processes", "2")
    for result in (busy, agent_busy, workers_busy):
        assert result.returncode == 1
        err = one_line(result)
        assert err.startswith("rxtts serve: error: cannot listen on ") and "in use" in err


# -- --worker-processes ----------------------------------------------------------------------


def ready_pid(http: str) -> int:
    status, body = http_get(f"{http}/ready")
    assert status == 200
    return int(json.loads(body)["pid"])


def probe_pids(http: str, n: int) -> set[int]:
    pids = set()
    for _ in range(n):
        with contextlib.suppress(OSError):
            pids.add(ready_pid(http))
    return pids


def test_worker_processes_share_one_port_restart_after_a_crash_and_drain_on_sigterm(procs):
    parent = start_serve(
        procs,
        "--engine",
        "tone",
        "--port",
        "0",
        "--worker-processes",
        "2",
        "--agent-port",
        "0",
        "--drain-timeout",
        "10",
    )
    printed = {int(p) for p in re.search(r"pids (\d+(?:,\d+)*)", parent.line).group(1).split(",")}  # type: ignore[union-attr]
    assert len(printed) == 2 and "2 process(es) x 1 engine thread(s) x 1 onnxruntime" in parent.line
    seen = {ready_pid(parent.http) for _ in range(40)}
    assert seen == printed  # the kernel spread 40 connections over both workers
    assert agent(parent.agent_port) == "ready up 100%\n"

    # A crashed worker is restarted on the same port.
    victim = sorted(printed)[0]
    os.kill(victim, signal.SIGKILL)
    # (Connections queued in the killed worker's backlog are reset: probe until it is back.)
    wait_for(lambda: len(probe_pids(parent.http, 20) - printed) == 1, 20, "a restarted worker")
    current = {ready_pid(parent.http) for _ in range(40)}
    assert victim not in current and len(current) == 2

    async def drain_during_a_turn() -> tuple[list[dict[str, Any]], int | None]:
        ws = await ws_open(f"ws://127.0.0.1:{parent.port}")
        await ws.send(json.dumps({"text": LONG_TURN, "flush": True, "voice_id": VOICE}))
        frames = await recv_until(ws, "audio")
        parent.popen.send_signal(signal.SIGTERM)
        frames += await recv_until(ws, "session_closed")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        return frames, ws.close_code

    frames, code = asyncio.run(drain_during_a_turn())
    audio = sum(f["samples"] / f["sr"] for f in frames if "audio" in f)
    assert audio == pytest.approx(len(LONG_TURN.strip()) * 0.01, rel=0.05)  # the whole turn was spoken
    assert frames[-2].get("final") and code == 1012
    assert parent.popen.wait(30) == 0
    assert not any(alive(pid) for pid in current)


# -- behind the real HAProxy -----------------------------------------------------------------


def free_run(n: int, avoid: set[int] = frozenset()) -> int:  # type: ignore[assignment]
    """A base port with ``n`` consecutive free ports on 127.0.0.1 (below the ephemeral range)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 30000)
        ports = range(base, base + n)
        if avoid & set(ports):
            continue
        socks = []
        try:
            for port in ports:
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port run")


@dataclass
class Cluster:
    workers: list[Proc]
    haproxy: subprocess.Popen[str]
    port: int
    admin: Path

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stat(self) -> dict[str, dict[str, str]]:
        """HAProxy's own view of each worker (``show stat`` on the admin socket)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.admin))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
        return {
            r["svname"]: r for r in rows if r["pxname"] == "rxtts_workers" and r["svname"].startswith("w")
        }

    def on_worker(self, name: str) -> Proc:
        return self.workers[int(name[1:]) - 1]


def start_cluster(
    procs: list[subprocess.Popen[str]],
    tmp_path: Path,
    extra: Sequence[Sequence[str]] = ((), ()),
    check: str = "200ms",
) -> Cluster:
    """``len(extra)`` tone workers (``extra[i]``: more flags of worker i) behind HAProxy."""
    binary = haproxy_binary()
    n = len(extra)
    base = free_run(n)
    agent_base = free_run(n, set(range(base, base + n)))
    front = free_run(1, set(range(base, base + n)) | set(range(agent_base, agent_base + n)))
    workers = [
        start_serve(
            procs,
            "--engine",
            "tone",
            "--port",
            str(base + i),
            "--agent-port",
            str(agent_base + i),
            "--drain-timeout",
            "10",
            "--capacity",
            "16",
            *extra[i],
        )
        for i in range(n)
    ]
    # The config exactly as `rxtts deploy haproxy` prints it, plus an admin socket.
    printed = subprocess.run(
        [
            sys.executable,
            "-m",
            "rxtts.cli",
            "deploy",
            "haproxy",
            "--workers",
            str(n),
            "--base-port",
            str(base),
            "--agent-port-base",
            str(agent_base),
            "--bind",
            f"127.0.0.1:{front}",
            "--check-interval",
            check,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert printed == render(
        "haproxy",
        Layout(n, base, agent_base, bind=f"127.0.0.1:{front}", check_interval=check),
        printed.splitlines()[1].split("rxtts deploy haproxy ", 1)[1],
    )
    (tmp_path / "haproxy.cfg").write_text(printed)
    admin = tmp_path / "admin.sock"
    (tmp_path / "admin.cfg").write_text(f"global\n    stats socket {admin} mode 600 level admin\n")
    log = (tmp_path / "haproxy.log").open("w")
    popen = subprocess.Popen(
        [binary, "-db", "-f", str(tmp_path / "haproxy.cfg"), "-f", str(tmp_path / "admin.cfg")],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    procs.append(popen)
    c = Cluster(workers, popen, front, admin)

    def started() -> bool:
        if popen.poll() is not None:
            pytest.fail(f"haproxy exited {popen.returncode}: {(tmp_path / 'haproxy.log').read_text()}")
        return admin.exists()

    wait_for(started, 10, "haproxy's admin socket")
    wait_for(lambda: all(r["status"] == "UP" for r in c.stat().values()) and len(c.stat()) == n, 10, "UP")
    return c


@pytest.fixture
def cluster(procs, tmp_path) -> Cluster:
    return start_cluster(procs, tmp_path)


def per_worker(c: Cluster, name: str) -> list[float]:
    return [gauge(w.http, name) for w in c.workers]


def test_sessions_spread_over_workers_through_haproxy(cluster):
    async def main() -> list[float]:
        sockets = [await ws_open(cluster.ws) for _ in range(6)]
        try:
            await asyncio.sleep(0.2)
            return await asyncio.to_thread(per_worker, cluster, "rxtts_active_sockets")
        finally:
            for ws in sockets:
                await ws.close()

    counts = asyncio.run(main())
    assert sum(counts) == 6 and min(counts) >= 2, counts


def test_agent_weight_counts_multi_contexts_so_leastconn_avoids_the_loaded_worker(cluster):
    async def main() -> tuple[int, dict[str, dict[str, str]], list[float]]:
        multi = await ws_open(cluster.ws, MULTI)
        for i in range(12):
            await multi.send(json.dumps({"text": "Held back", "context_id": f"c{i}", "voice_id": VOICE}))
        frames: list[dict[str, Any]] = []
        while sum(bool(f.get("context_created")) for f in frames) < 12:
            frames.append(json.loads(await asyncio.wait_for(multi.recv(), 5)))
        contexts = await asyncio.to_thread(per_worker, cluster, "rxtts_active_contexts")
        loaded = contexts.index(12)
        name = f"w{loaded + 1}"
        # HAProxy applies the agent's weight (12 of 16 voices: 25 %) within a few checks.
        await asyncio.to_thread(wait_for, lambda: cluster.stat()[name]["weight"] == "25", 5, "agent weight")
        state = await asyncio.to_thread(cluster.stat)
        streams = [await ws_open(cluster.ws) for _ in range(4)]
        try:
            await asyncio.sleep(0.2)
            sockets = await asyncio.to_thread(per_worker, cluster, "rxtts_active_sockets")
        finally:
            for ws in [*streams, multi]:
                await ws.close()
        return loaded, state, sockets

    loaded, state, sockets = asyncio.run(main())
    other = 1 - loaded
    assert state[f"w{loaded + 1}"]["weight"] == "25" and state[f"w{other + 1}"]["weight"] == "100"
    # Plain leastconn would see 1 connection vs 0 and split the next 4 about evenly; the
    # agent's weight sends all of them to the idle worker.
    assert sockets[loaded] == 1 and sockets[other] == 4, sockets


def test_official_sdk_streams_through_haproxy(cluster):
    from kugelaudio import KugelAudio

    before = sum(sessions_total(w.http) for w in cluster.workers)
    client = KugelAudio(api_key="k", api_url=f"http://127.0.0.1:{cluster.port}", telemetry=False)

    async def main() -> tuple[float, int]:
        audio, chunks = 0.0, 0
        async with client.tts.streaming_session(voice_id=VOICE) as s:
            for text in ("Hello through the balancer. ", "A second sentence."):
                async for chunk in s.send(text, flush=False):
                    audio += len(chunk.audio) // 2 / chunk.sample_rate
                    chunks += 1
            async for chunk in s.flush():
                audio += len(chunk.audio) // 2 / chunk.sample_rate
                chunks += 1
        return audio, chunks

    audio, chunks = asyncio.run(main())
    text = "Hello through the balancer. A second sentence."
    assert chunks > 0 and audio == pytest.approx(len(text.replace(" ", "")) * 0.01, rel=0.3)
    assert sum(sessions_total(w.http) for w in cluster.workers) == before + 1


def test_haproxy_retries_an_upgrade_a_full_worker_refuses_on_another(procs, tmp_path):
    # w1 takes one session; health and agent checks every 30 s cannot notice in time, so
    # only `retry-on 503` + `option redispatch` keep the clients from seeing the 503s.
    c = start_cluster(procs, tmp_path, extra=(("--max-sessions", "1"), ()), check="30s")

    async def main() -> int:
        sockets = [await ws_open(c.ws) for _ in range(6)]
        for ws in sockets:
            await ws.close()
        return len(sockets)

    assert asyncio.run(main()) == 6
    refused = metrics(c.workers[0].http)[
        ("rxtts_refusals_total", (("reason", "saturated"), ("response", "http_503")))
    ]
    assert refused >= 1  # HAProxy did send upgrades to the full worker, and retried them
    assert sessions_total(c.workers[0].http) == 1 and sessions_total(c.workers[1].http) == 5


def test_a_draining_worker_finishes_its_turn_and_gets_no_new_sessions(cluster):
    async def main() -> tuple[list[dict[str, Any]], int | None, dict[str, Any]]:
        ws = await ws_open(cluster.ws)
        await ws.send(json.dumps({"text": LONG_TURN, "flush": True, "voice_id": VOICE}))
        frames = await recv_until(ws, "audio")
        sockets = await asyncio.to_thread(per_worker, cluster, "rxtts_active_sockets")
        busy = sockets.index(1)
        victim, other = cluster.workers[busy], cluster.workers[1 - busy]
        name = f"w{busy + 1}"
        before_other = await asyncio.to_thread(sessions_total, other.http)
        before_victim = await asyncio.to_thread(sessions_total, victim.http)
        victim.popen.send_signal(signal.SIGTERM)
        seen: dict[str, Any] = {}
        await asyncio.to_thread(wait_for, lambda: cluster.stat()[name]["status"] != "UP", 3, "not UP")
        seen["state"] = (await asyncio.to_thread(cluster.stat))[name]["status"]
        seen["agent"] = await asyncio.to_thread(agent, victim.agent_port)
        seen["ready"] = (await asyncio.to_thread(http_get, f"{victim.http}/ready"))[0]
        news = [await ws_open(cluster.ws) for _ in range(4)]
        seen["other_new"] = await asyncio.to_thread(sessions_total, other.http) - before_other
        seen["victim_new"] = await asyncio.to_thread(sessions_total, victim.http) - before_victim
        frames += await recv_until(ws, "session_closed")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        for new in news:
            await new.close()
        seen["victim_exit"] = await asyncio.to_thread(victim.popen.wait, 20)
        return frames, ws.close_code, seen

    frames, code, seen = asyncio.run(main())
    assert seen["state"].split()[0] in ("DRAIN", "DOWN", "MAINT", "NOLB"), seen  # e.g. "DRAIN (agent)"
    assert seen["agent"] == "drain\n" and seen["ready"] == 503
    assert (seen["other_new"], seen["victim_new"]) == (4, 0)
    audio = sum(f["samples"] / f["sr"] for f in frames if "audio" in f)
    assert audio == pytest.approx(len(LONG_TURN.strip()) * 0.01, rel=0.05)  # the turn finished
    assert frames[-2].get("final") and code == 1012
    assert seen["victim_exit"] == 0


# -- the capacity benchmark ------------------------------------------------------------------


def test_workers_benchmark_measures_every_level(tmp_path, capsys):
    from rxtts.bench import workers as bench

    out = tmp_path / "workers.json"
    text = "Short turn. Another one."
    result = bench.run(out, engine="tone", workers=(1, 2), sessions=(1, 3), text=text)
    levels = [(lv["workers"], lv["sessions"]) for lv in result["levels"]]
    assert levels == [(1, 1), (1, 3), (2, 1), (2, 3)]
    for lv in result["levels"]:
        # tone: 10 ms per character of each sentence
        assert lv["audio_s_total"] == pytest.approx(lv["sessions"] * len(text) * 0.01, rel=0.1)
        assert lv["aggregate_x_rt"] > 1 and lv["ttfa_ms"]["n"] == lv["sessions"]
        assert lv["ttfa_ms"]["p50"] <= lv["ttfa_ms"]["p95"]
    assert "2 process(es)" in next(lv["threads"] for lv in result["levels"] if lv["workers"] == 2)
    assert result["real_time_streams_per_core"] == pytest.approx(
        result["best_aggregate_x_rt"] / result["cores"]
    )
    assert json.loads(out.read_text())["levels"] == result["levels"]
    table = capsys.readouterr().out
    assert "TTFA p95 ms" in table and "real-time streams per core" in table
