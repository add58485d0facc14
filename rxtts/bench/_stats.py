"""Shared helpers of the benchmarks: statistics, tables, machine description, servers.

- :func:`summarize` / :class:`Summary`: count, mean, p50/p95/p99, min, max of a sample
  (percentiles interpolate linearly between order statistics, as ``numpy.percentile``
  does; with 30 values p99 lies between the two largest).
- :func:`format_table`: a plain-text table (what ``rxtts bench`` prints and the README shows).
- :func:`machine_info`: CPU model (``/proc/cpuinfo``), cores, RAM, OS, Python and library
  versions, date and load average, stored beside every result.
- :class:`TimedEngine`: an engine wrapper that timestamps every ``synthesize`` call
  (start, first block, first non-silent block, end) with ``time.monotonic()``.
- :func:`spawn_server` / :class:`ServerProcess`: the local server in a child process
  (``python -m rxtts.bench._stats serve ...``), so that a benchmark can measure the
  server's memory or keep its CPU time out of a client's. The child prints its
  ``ws://`` URL on its first stdout line and stops when its stdin closes (so it never
  outlives the benchmark that started it). With ``timed=True`` its engine is a
  :class:`TimedEngine` that prints one JSON line per finished call; on Linux
  ``time.monotonic()`` is the system-wide ``CLOCK_MONOTONIC``, so those timestamps are
  comparable with the parent's.

Nothing here asserts a timing: benchmarks report, tests check structure only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from rxtts.audio.silence import first_non_silent_sample
from rxtts.engine import AudioBlock, CancelToken, Engine, SynthesisSettings, VoiceInfo

__all__ = [
    "CallLog",
    "EngineCall",
    "ServerProcess",
    "Summary",
    "TimedEngine",
    "describe_machine",
    "fmt",
    "format_table",
    "load_average",
    "machine_info",
    "percentile",
    "progress",
    "spawn_server",
    "start_server_process",
    "summarize",
]

_VERSIONED = (
    "rxtts",
    "numpy",
    "onnxruntime",
    "piper-tts",
    "websockets",
    "reactivex",
    "soxr",
    "kugelaudio",
    "pysbd",
    "psutil",
)
_STARTED = time.monotonic()


# -- statistics ---------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, linearly interpolated.

    Raises:
        ValueError: for an empty sample or ``q`` outside [0, 100].
    """
    if not values:
        raise ValueError("percentile of an empty sample")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be in [0, 100], got {q}")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True, slots=True)
class Summary:
    """Order statistics of one measured quantity."""

    n: int
    """Number of values."""
    mean: float
    """Arithmetic mean."""
    p50: float
    """Median."""
    p95: float
    """95th percentile."""
    p99: float
    """99th percentile."""
    min: float
    """Smallest value."""
    max: float
    """Largest value."""

    def to_json(self) -> dict[str, float | int]:
        """A plain dict (rounded to 0.001) for the JSON results."""
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def summarize(values: Iterable[float]) -> Summary:
    """Summary of ``values``; an empty sample gives ``n=0`` and NaN statistics."""
    data = [float(v) for v in values]
    if not data:
        nan = math.nan
        return Summary(0, nan, nan, nan, nan, nan, nan)
    return Summary(
        n=len(data),
        mean=sum(data) / len(data),
        p50=percentile(data, 50),
        p95=percentile(data, 95),
        p99=percentile(data, 99),
        min=min(data),
        max=max(data),
    )


def fmt(value: float | None, digits: int = 1) -> str:
    """A number for a table cell: fixed digits, ``-`` for ``None``/NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str = "") -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))]
        return "  ".join(parts).rstrip()

    out = [title] if title else []
    out.append(line(cells[0]))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(r) for r in cells[1:])
    return "\n".join(out)


def progress(message: str) -> None:
    """One progress line on stderr (never on stdout, which carries the tables)."""
    print(f"[bench {time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


# -- machine description ------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except (OSError, ValueError):
        pass
    return None


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


def _physical_cores() -> int | None:
    try:
        import psutil

        count = psutil.cpu_count(logical=False)
        return int(count) if count else None
    except ImportError:
        return None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def load_average() -> tuple[float, float, float] | None:
    """The 1/5/15-minute load average (``None`` where the OS has none)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return None
    return (round(one, 2), round(five, 2), round(fifteen, 2))


def machine_info() -> dict[str, Any]:
    """What the results were measured on (stored in ``results.json``)."""
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "ram_gb": _ram_gb(),
        "os": _os_name(),
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "versions": {name: _version(name) for name in _VERSIONED},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average": load_average(),
    }


def describe_machine(info: dict[str, Any]) -> str:
    """One line for the README, e.g. ``"AMD EPYC 7763, 2 cores, 7.8 GB RAM, Debian 12 ..."``."""
    v = info.get("versions", {})
    return (
        f"{info.get('cpu_model')}, {info.get('logical_cores')} logical cores, "
        f"{info.get('ram_gb')} GB RAM, {info.get('os')} (kernel {info.get('kernel')}), "
        f"{info.get('python')}, numpy {v.get('numpy')}, onnxruntime {v.get('onnxruntime')}, "
        f"piper-tts {v.get('piper-tts')}; load average {info.get('load_average')}; {info.get('date')}"
    )


# -- engine instrumentation ------------------------------------------------------------------


@dataclass(slots=True)
class EngineCall:
    """One ``synthesize`` call as seen by :class:`TimedEngine` (filled in by the worker)."""

    text: str
    """The chunk text handed to the engine."""
    start: float
    """``time.monotonic()`` when the server called ``synthesize``."""
    first_block: float | None = None
    """When the first block was yielded."""
    first_sound: float | None = None
    """When the first non-silent block was yielded, plus the sound's offset in it."""
    end: float | None = None
    """When the call returned (finished or cancelled)."""
    cancelled: bool = False
    """Whether it ended because of a cancel."""


class CallLog:
    """Thread-safe list of :class:`EngineCall` records with time queries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[EngineCall] = []

    def add(self, call: EngineCall) -> None:
        """Record a call."""
        with self._lock:
            self._calls.append(call)

    def calls_since(self, at: float) -> list[EngineCall]:
        """Calls that started at or after monotonic time ``at``, oldest first."""
        with self._lock:
            return sorted((c for c in self._calls if c.start >= at), key=lambda c: c.start)

    def busy_at(self, at: float) -> list[EngineCall]:
        """Calls running at monotonic time ``at``."""
        with self._lock:
            return [c for c in self._calls if c.start <= at and (c.end is None or c.end > at)]


class TimedEngine:
    """An :class:`~rxtts.engine.Engine` wrapper that timestamps every ``synthesize`` call."""

    def __init__(self, inner: Engine, on_end: Callable[[EngineCall], None] | None = None) -> None:
        self.inner = inner
        """The engine doing the work."""
        self.name = inner.name
        """Same name as the inner engine (the server's model id uses it)."""
        self.sample_rate = inner.sample_rate
        """Same native rate as the inner engine."""
        self.log = CallLog()
        """Every call so far."""
        self._on_end = on_end

    def voices(self) -> Sequence[VoiceInfo]:
        """The inner engine's voices."""
        return self.inner.voices()

    def warm_up(self) -> None:
        """Warm up the inner engine (not recorded)."""
        self.inner.warm_up()

    def synthesize(
        self, text: str, voice: VoiceInfo, settings: SynthesisSettings, cancel: CancelToken
    ) -> Iterator[AudioBlock]:
        """Delegate, recording the time of the first block and of the first sound."""
        call = EngineCall(text, time.monotonic())
        self.log.add(call)
        try:
            for block in self.inner.synthesize(text, voice, settings, cancel):
                now = time.monotonic()
                if call.first_block is None:
                    call.first_block = now
                if call.first_sound is None:
                    offset = first_non_silent_sample(block)
                    if offset is not None:
                        call.first_sound = now + offset / self.sample_rate
                yield block
        finally:
            call.end = time.monotonic()
            call.cancelled = cancel.cancelled
            if self._on_end is not None:
                self._on_end(call)


# -- the server in a child process ------------------------------------------------------------


class ServerProcess:
    """A local server running in a child process (see the module docstring)."""

    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        """The child; its stdin is the stop signal (closing it stops the server)."""
        self.url = url
        """WebSocket base URL, e.g. ``ws://127.0.0.1:40123``."""
        self.engine_calls = CallLog()
        """Engine calls the child reported (``timed=True``), once each call has ended."""
        self._reader = threading.Thread(target=self._read, name="bench-server-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    self.engine_calls.add(EngineCall(**json.loads(line)["engine_call"]))

    @property
    def pid(self) -> int:
        """Process id of the server."""
        return self.proc.pid

    @property
    def http_url(self) -> str:
        """HTTP base URL (``api_url`` of the kugelaudio SDK)."""
        return "http://" + self.url.removeprefix("ws://")

    def rss_bytes(self) -> int:
        """Resident set size of the server process (psutil)."""
        import psutil

        return int(psutil.Process(self.pid).memory_info().rss)

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far."""
        import psutil

        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)

    def stop(self, timeout: float = 15.0) -> None:
        """Close the child's stdin and wait; terminate it (by pid) if it does not exit."""
        if self.proc.poll() is not None:
            return
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def spawn_server(
    engine: str,
    *,
    threads: int = 2,
    workers: int = 2,
    max_lead_seconds: float | None = 1.0,
    timed: bool = False,
    startup_timeout: float = 120.0,
) -> ServerProcess:
    """Start ``python -m rxtts.bench._stats serve`` on 127.0.0.1, port 0; wait for its URL.

    Args:
        engine: ``"piper"``, ``"espeak"`` or ``"tone"``.
        threads: Piper's onnxruntime threads per inference.
        workers: Engine worker threads of the server.
        max_lead_seconds: Audio pacing (``ServerOptions.max_lead_seconds``); ``None`` sends
            audio as fast as it is made.
        timed: Wrap the engine in a :class:`TimedEngine` that reports every call
            (``ServerProcess.engine_calls``).
        startup_timeout: Seconds to wait for the URL line (model loading included).

    Raises:
        RuntimeError: the child exited or printed no URL in time.
    """
    lead = "none" if max_lead_seconds is None else repr(max_lead_seconds)
    cmd = [
        sys.executable,
        "-m",
        "rxtts.bench._stats",
        "serve",
        "--engine",
        engine,
        "--threads",
        str(threads),
        "--workers",
        str(workers),
        "--max-lead",
        lead,
    ]
    if timed:
        cmd.append("--timed")
    return start_server_process(cmd, startup_timeout, f"benchmark server ({engine})")


def start_server_process(cmd: Sequence[str], timeout: float, what: str) -> ServerProcess:
    """Run ``cmd`` (a server that prints its ``ws://`` URL on stdout) and wait for the URL."""
    proc = subprocess.Popen(list(cmd), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if line.startswith("ws://"):
                return ServerProcess(proc, line.strip())
            if not line:
                break
        elif proc.poll() is not None:
            break
    proc.terminate()
    proc.wait(10)
    raise RuntimeError(f"{what} did not start (exit code {proc.poll()})")


def _serve_main(argv: Sequence[str]) -> int:
    """The child side of :func:`spawn_server`."""
    p = argparse.ArgumentParser(prog="python -m rxtts.bench._stats serve")
    p.add_argument("--engine", default="tone")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--max-lead", default="1.0")
    p.add_argument("--timed", action="store_true")
    args = p.parse_args(argv)
    from rxtts.server.embedded import resolve_engine, start_background_server

    lead = None if args.max_lead == "none" else float(args.max_lead)
    engine: Engine = resolve_engine(args.engine, threads=args.threads)
    if args.timed:
        out_lock = threading.Lock()

        def report(call: EngineCall) -> None:
            with out_lock:
                print(json.dumps({"engine_call": asdict(call)}), flush=True)

        engine = TimedEngine(engine, report)
    server = start_background_server(
        engine, "127.0.0.1", 0, threads=args.threads, workers=args.workers, max_lead_seconds=lead
    )
    print(server.url, flush=True)
    try:
        sys.stdin.read()  # EOF: the parent closed our stdin (or died)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        raise SystemExit(_serve_main(sys.argv[2:]))
    raise SystemExit("usage: python -m rxtts.bench._stats serve [--engine E] [--max-lead S|none] [--timed]")
