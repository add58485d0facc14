"""``rxtts serve --worker-processes N``: N server processes on one port, one supervisor.

The model (README "Scaling out"):

* **One host, one port**: ``--worker-processes N`` starts N ``rxtts serve`` children
  that each bind the same ``HOST:PORT`` with ``SO_REUSEPORT``; the kernel spreads new
  TCP connections over them (a WebSocket stays on the process that accepted it). The
  parent only supervises: it restarts a child that crashes, forwards SIGTERM/SIGINT
  (= drain, PROTOCOL G-11) to every child and exits once all have drained.
* **One host, N ports behind HAProxy**: start N single-process servers on
  ``--port 8001..800N`` with ``--agent-port 9001..900N`` and print the balancer config
  with ``rxtts deploy haproxy --workers N``; HAProxy's ``leastconn`` plus the agent
  weight see each worker's load (a ``SO_REUSEPORT`` group is one server to HAProxy).
* **Many hosts**: the same per-process probes (``/health``, ``/ready``, ``/metrics``,
  the agent port) behind HAProxy or a Kubernetes Service (readiness = ``/ready``).

Threads: the engine runs ``engine_threads`` calls at once per process, each using
``intra_op_threads`` onnxruntime threads (Piper); :func:`plan_threads` keeps
``intra_op × engine × processes`` within ``os.cpu_count()`` unless told otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType
from typing import IO

__all__ = ["ThreadPlan", "plan_threads", "reserve_port", "run_workers"]

log = logging.getLogger("rxtts.server")

READY_MARK = "rxtts serve: listening on "
"""Start of the line a server prints once it accepts connections."""
_START_TIMEOUT_S = 120.0
_RESTARTS_PER_MINUTE = 5


@dataclass(frozen=True, slots=True)
class ThreadPlan:
    """Threads per process so that all processes together fit the cores."""

    cores: int
    processes: int
    engine_threads: int
    """Engine calls in parallel per process (``--engine-threads``)."""
    intra_op_threads: int
    """onnxruntime threads per engine call (``--threads``, Piper)."""

    @property
    def total(self) -> int:
        """Threads computing at full load over all processes."""
        return self.processes * self.engine_threads * self.intra_op_threads

    @property
    def oversubscribed(self) -> bool:
        """Whether the full load wants more threads than there are cores."""
        return self.total > self.cores

    def describe(self) -> str:
        """One line for the log."""
        return (
            f"threads: {self.cores} cores, {self.processes} process(es) x {self.engine_threads} engine "
            f"thread(s) x {self.intra_op_threads} onnxruntime thread(s) = {self.total}"
            + (" (oversubscribed)" if self.oversubscribed else "")
        )


def plan_threads(
    processes: int, engine_threads: int | None = None, intra_op: int | None = None, cores: int | None = None
) -> ThreadPlan:
    """Defaults for the unset values: ``engine = min(2, cores // processes)``,
    ``intra_op = cores // processes // engine`` (each at least 1)."""
    n = cores if cores is not None else (os.cpu_count() or 1)
    per_process = max(1, n // max(1, processes))
    engine = engine_threads if engine_threads is not None else max(1, min(2, per_process))
    intra = intra_op if intra_op is not None else max(1, per_process // engine)
    plan = ThreadPlan(n, processes, engine, intra)
    if plan.oversubscribed and (engine_threads is not None or intra_op is not None):
        log.warning("%s: more threads than cores, streams will compete", plan.describe())
    return plan


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, not listening ``SO_REUSEPORT`` socket that holds ``port`` (0 = pick one).

    The workers bind the same port; the kernel gives connections only to listening
    sockets, so this one only keeps the port number ours while workers restart.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass(eq=False, slots=True)
class _Child:
    index: int
    argv: list[str]
    proc: subprocess.Popen[str] | None = None
    ready: threading.Event | None = None
    restarts: list[float] | None = None

    def start(self) -> None:
        env = dict(os.environ, RXTTS_WORKER_INDEX=str(self.index))
        self.ready = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rxtts.cli", "serve", *self.argv],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,  # Ctrl-C reaches the parent only; it forwards SIGTERM
        )
        assert self.proc.stdout is not None
        threading.Thread(target=_pump, args=(self.proc.stdout, self.ready, self.index), daemon=True).start()


def _pump(stream: IO[str], ready: threading.Event, index: int) -> None:
    for line in stream:
        if line.startswith(READY_MARK):
            ready.set()
            log.info("worker %d: %s", index, line.rstrip())
        else:
            print(f"[worker {index}] {line}", end="", flush=True)


def _child_argv(
    argv: Sequence[str], port: int, agent_port: int | None, engine_threads: int, intra_op: int
) -> list[str]:
    out = [*argv, "--worker-processes", "1", "--port", str(port), "--reuse-port"]
    out += ["--engine-threads", str(engine_threads), "--threads", str(intra_op)]
    if agent_port is not None:
        out += ["--agent-port", str(agent_port)]
    return out


def run_workers(
    processes: int,
    argv: Sequence[str],
    host: str,
    port: int,
    agent_port: int | None,
    plan: ThreadPlan,
) -> int:
    """Start ``processes`` workers on ``host:port``, supervise them, drain on SIGTERM.

    ``argv`` are the parent's own ``rxtts serve`` arguments (later flags override them).
    Returns 0 once every worker drained, else the first non-zero status.
    """
    try:
        held = [reserve_port(host, port)]
        if agent_port is not None:
            held.append(reserve_port(host, agent_port))
    except OSError as exc:
        print(f"rxtts serve: error: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    bound = held[0].getsockname()[1]
    agent = held[1].getsockname()[1] if agent_port is not None else None
    child_argv = _child_argv(argv, bound, agent, plan.engine_threads, plan.intra_op_threads)
    children = [_Child(i, child_argv, restarts=[]) for i in range(processes)]
    draining = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        draining.set()
        for child in children:
            if child.proc is not None and child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for child in children:
            child.start()
        status = _await_ready(children, draining)
        if status is not None:
            on_signal(signal.SIGTERM, None)
            _wait_all(children)
            return status
        shown = f"[{host}]" if ":" in host else host
        pids = ",".join(str(c.proc.pid) for c in children if c.proc is not None)
        print(
            f"{READY_MARK}ws://{shown}:{bound} ({processes} worker processes, pids {pids}"
            + (f", agent port {agent}" if agent is not None else "")
            + f"; {plan.describe()})",
            flush=True,
        )
        return _supervise(children, draining)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for sock in held:
            sock.close()


def _await_ready(children: list[_Child], draining: threading.Event) -> int | None:
    """None once every worker listens; else the exit status to return."""
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if draining.is_set():
            return 0
        for child in children:
            assert child.proc is not None
            code = child.proc.poll()
            if code is not None:
                # It printed its own one-line error on the shared stderr.
                return code or 1
        if all(c.ready is not None and c.ready.is_set() for c in children):
            return None
        time.sleep(0.05)
    print("rxtts serve: error: workers did not start in time", file=sys.stderr)
    return 1


def _supervise(children: list[_Child], draining: threading.Event) -> int:
    while not draining.is_set():
        for child in children:
            assert child.proc is not None and child.restarts is not None
            code = child.proc.poll()
            if code is None or draining.is_set():
                continue
            now = time.monotonic()
            child.restarts[:] = [t for t in child.restarts if t > now - 60.0]
            if len(child.restarts) >= _RESTARTS_PER_MINUTE:
                print(
                    f"rxtts serve: error: worker {child.index} exited {code} "
                    f"{_RESTARTS_PER_MINUTE} times in a minute; stopping",
                    file=sys.stderr,
                )
                draining.set()
                for other in children:
                    if other.proc is not None and other.proc.poll() is None:
                        other.proc.send_signal(signal.SIGTERM)
                _wait_all(children)
                return 1
            child.restarts.append(now)
            print(f"rxtts serve: worker {child.index} exited {code}; restarting", file=sys.stderr, flush=True)
            child.start()
        time.sleep(0.1)
    return _wait_all(children)


def _wait_all(children: list[_Child]) -> int:
    status = 0
    for child in children:
        if child.proc is None:
            continue
        code = child.proc.wait()
        if code not in (0, -signal.SIGTERM) and status == 0:
            status = code if code > 0 else 1
    return status
