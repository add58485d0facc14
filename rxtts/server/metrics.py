"""Capacity signals of one server process: ``/ready``, ``/metrics`` and the HAProxy agent.

Three consumers, one source (:class:`ServerMetrics`, owned by a :class:`TtsApp`):

* ``GET /ready``: 200 while the process takes new sessions, 503 + ``Retry-After`` while
  draining (G-11) or saturated (``max_sessions``). ``/health`` stays liveness.
* ``GET /metrics``: Prometheus text from a per-app ``CollectorRegistry`` (never the
  global one, so several apps in one process do not mix): live gauges read from the app
  at scrape time, a server-side TTFA histogram (first text of a turn or context, to its
  first audio frame handed to the socket) and refusals by reason.
* the agent port (``--agent-port``): HAProxy's ``agent-check`` connects, reads one line
  and disconnects. ``ready up 75%`` = weight from active voices (stream turns, tts
  requests, multi contexts; an idle socket counts one) against ``capacity``, so a multi
  socket carrying 20 voices weighs 20 and ``leastconn`` stops treating it as one
  connection; ``drain`` while draining or saturated (no new sessions, existing ones
  continue); ``maint`` once the app stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rxtts.server.options import CountingExecutor
from rxtts.server.socket import ServerSocket

if TYPE_CHECKING:
    from rxtts.server.app import TtsApp

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_CAPACITY",
    "TTFA_BUCKETS",
    "MeteredSocket",
    "ServerMetrics",
    "TimedExecutor",
    "agent_reply",
    "start_agent",
]

_P = ParamSpec("_P")
_T = TypeVar("_T")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""Content type of the Prometheus text exposition format."""
DEFAULT_CAPACITY = 16
"""Voices one worker carries at 100 % agent weight when neither ``capacity`` nor
``max_sessions`` is set."""
TTFA_BUCKETS = (0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
"""Histogram buckets (seconds) of the server-side TTFA."""
REFUSALS = (
    ("draining", "http_503"),
    ("draining", "close_1012"),
    ("saturated", "http_503"),
    ("saturated", "close_1013"),
    ("unauthorized", "http_401"),
)
"""Every (reason, response) pair a refusal is counted under."""
BUSY_WINDOW_S = 10.0
"""Window of the engine busy ratio."""


class TimedExecutor(CountingExecutor):
    """The engine pool, also timing jobs: busy seconds in total and over a window."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.workers = workers
        self._time_lock = threading.Lock()
        self._running: dict[int, float] = {}
        self._finished: deque[tuple[float, float]] = deque()  # (start, end), recent
        self.busy_seconds = 0.0
        """Engine-thread seconds spent in finished jobs."""

    def _put(self, owner: object, urgency: int, job: Callable[[], _T]) -> Future[_T]:
        # Every job passes here, whether submitted directly or through a fair lane.
        def timed() -> _T:
            start = time.monotonic()
            token = id(threading.current_thread())
            with self._time_lock:
                self._running[token] = start
            try:
                return job()
            finally:
                end = time.monotonic()
                with self._time_lock:
                    del self._running[token]
                    self.busy_seconds += end - start
                    self._finished.append((start, end))
                    while self._finished and self._finished[0][1] < end - BUSY_WINDOW_S:
                        self._finished.popleft()

        return super()._put(owner, urgency, timed)

    def busy_ratio(self, window: float = BUSY_WINDOW_S) -> float:
        """Fraction of the pool's thread time spent in engine calls over the last ``window`` s."""
        now = time.monotonic()
        since = now - window
        with self._time_lock:
            spans = [(s, e) for s, e in self._finished if e > since]
            spans += [(s, now) for s in self._running.values()]
        busy = sum(e - max(s, since) for s, e in spans)
        return min(1.0, max(0.0, busy / (window * self.workers)))


class _Live(Collector):
    """Gauges read from the app at scrape time (call on the server's loop thread)."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        m = self._metrics
        app = m.app
        stats = app.stats()
        queued_audio = sum(o.seconds for s in list(app.sessions) for o in s.queued())
        gauges: list[tuple[str, str, float]] = [
            ("rxtts_active_sockets", "Open WebSocket sessions.", stats.connections),
            (
                "rxtts_active_turns",
                "Synthesis pipelines: stream turns, tts requests, multi contexts.",
                stats.pipelines,
            ),
            ("rxtts_active_contexts", "Open multi contexts over all /ws/tts/multi sockets.", stats.contexts),
            (
                "rxtts_active_voices",
                "Agent load units: pipelines, an idle socket counting one.",
                m.load_units(),
            ),
            ("rxtts_capacity_voices", "Voices at 100% agent weight.", m.capacity),
            ("rxtts_queued_audio_seconds", "Audio seconds waiting in the send queues.", queued_audio),
            ("rxtts_engine_jobs_in_flight", "Engine calls submitted and not finished.", stats.synthesis_jobs),
            ("rxtts_engine_threads", "Engine worker threads.", app.options.engine_threads),
            (
                "rxtts_engine_busy_ratio",
                f"Engine thread time busy over the last {BUSY_WINDOW_S:g} s.",
                m.executor.busy_ratio(),
            ),
            ("rxtts_draining", "1 while draining (G-11).", 1.0 if app.draining else 0.0),
            (
                "rxtts_ready",
                "1 while new sessions are admitted (GET /ready 200).",
                1.0 if m.ready_state() == "ready" else 0.0,
            ),
        ]
        for name, doc, value in gauges:
            yield GaugeMetricFamily(name, doc, value=float(value))
        busy = CounterMetricFamily(
            "rxtts_engine_busy_seconds", "Engine-thread seconds spent in finished engine calls."
        )
        busy.add_metric([], m.executor.busy_seconds)
        yield busy


class ServerMetrics:
    """The Prometheus registry of one app, its TTFA tracking and refusal counts."""

    def __init__(self, app: TtsApp, executor: TimedExecutor) -> None:
        self.app = app
        self.executor = executor
        self.registry = CollectorRegistry()
        """Per-app registry (``/metrics`` renders only this one)."""
        self.ttfa = Histogram(
            "rxtts_ttfa_seconds",
            "Server-side time to first audio: first text of a turn/context to its first audio frame "
            "handed to the socket.",
            ["endpoint"],
            buckets=TTFA_BUCKETS,
            registry=self.registry,
        )
        self.refusals = Counter(
            "rxtts_refusals",
            "Sessions refused: reason = draining|saturated|unauthorized; response = how.",
            ["reason", "response"],
            registry=self.registry,
        )
        self.sessions = Counter(
            "rxtts_sessions", "WebSocket sessions admitted.", ["endpoint"], registry=self.registry
        )
        self.registry.register(_Live(self))
        for reason, response in REFUSALS:
            self.refusals.labels(reason=reason, response=response)  # exported as 0 from the start

    @property
    def capacity(self) -> int:
        """Voices at 100 % weight: ``capacity``, else ``max_sessions``, else 16."""
        opts = self.app.options
        return opts.capacity or opts.max_sessions or DEFAULT_CAPACITY

    def load_units(self) -> int:
        """Active voices: each socket's pipelines, an idle socket counting one."""
        return sum(max(1, len(s.runners)) for s in list(self.app.sessions))

    def ready_state(self) -> str:
        """``ready``, ``draining`` or ``saturated``."""
        if self.app.draining:
            return "draining"
        if self.app.saturated():
            return "saturated"
        return "ready"

    def refused(self, reason: str, response: str) -> None:
        """Count one refused session."""
        self.refusals.labels(reason=reason, response=response).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of this app (call on the server's loop)."""
        return generate_latest(self.registry)

    def agent_reply(self, stopped: bool = False) -> str:
        """The HAProxy agent-check line for the current load (module docstring)."""
        return agent_reply(self.ready_state(), self.load_units(), self.capacity, stopped)

    def wrap(self, sock: ServerSocket) -> MeteredSocket:
        """``sock`` with TTFA measured on its frames."""
        self.sessions.labels(endpoint=sock.path).inc()
        return MeteredSocket(sock, self.ttfa.labels(endpoint=sock.path).observe)


def agent_reply(state: str, units: int, capacity: int, stopped: bool = False) -> str:
    """``maint`` (stopped), ``drain`` (draining or saturated), else ``ready up N%``.

    N is the free share of ``capacity`` (at least 1 %: a full worker still takes a
    session when every worker is full; ``max_sessions`` refuses beyond the hard limit).
    """
    if stopped:
        return "maint\n"
    if state != "ready":
        return "drain\n"
    free = 1.0 - units / capacity
    return f"ready up {max(1, min(100, round(100 * free)))}%\n"


# -- TTFA ------------------------------------------------------------------------------------

_END_KEYS = ('"final"', '"interrupted"', '"context_closed"', '"context_timeout"', '"error"')


def _key(data: Mapping[str, object]) -> str:
    context = data.get("context_id")
    return context if isinstance(context, str) else ""


class MeteredSocket:
    """A :class:`ServerSocket` that times first text → first audio per turn/context.

    A turn (stream/tts) or context (multi, by ``context_id``) starts with its first
    non-empty ``text`` frame; its TTFA is taken when its first audio frame is handed to
    the socket; it ends with ``final``, ``interrupted``, ``context_closed``,
    ``context_timeout`` or ``error`` (the next text starts a new measurement).
    """

    __slots__ = ("_multi", "_observe", "_sock", "_speaking", "_started")

    def __init__(self, sock: ServerSocket, observe: Callable[[float], None]) -> None:
        self._sock = sock
        self._multi = sock.path == "/ws/tts/multi"
        self._observe = observe
        self._started: dict[str, float] = {}
        self._speaking: set[str] = set()

    @property
    def path(self) -> str:
        return self._sock.path

    @property
    def query(self) -> Mapping[str, list[str]]:
        return self._sock.query

    async def recv(self) -> str | bytes:
        message = await self._sock.recv()
        if '"text"' in (message if isinstance(message, str) else ""):
            with contextlib.suppress(ValueError):
                data = json.loads(message)
                if isinstance(data, dict) and isinstance(data.get("text"), str) and data["text"].strip():
                    key = _key(data)
                    if key not in self._started and key not in self._speaking:
                        self._started[key] = time.monotonic()
        return message

    async def send(self, text: str) -> None:
        await self._sock.send(text)
        if text.startswith('{"audio"'):
            if self._started:
                key = _key(json.loads(text)) if self._multi else ""
                start = self._started.pop(key, None)
                if start is not None:
                    self._observe(time.monotonic() - start)
                    self._speaking.add(key)
        elif any(marker in text for marker in _END_KEYS):
            with contextlib.suppress(ValueError):
                data = json.loads(text)
                if isinstance(data, dict):
                    key = _key(data)
                    self._speaking.discard(key)
                    self._started.pop(key, None)

    async def close(self, code: int, reason: str) -> None:
        await self._sock.close(code, reason)

    def abort(self) -> None:
        abort = getattr(self._sock, "abort", None)
        if abort is not None:
            abort()


# -- the agent port --------------------------------------------------------------------------


async def start_agent(
    reply: Callable[[], str], host: str, port: int, *, reuse_port: bool = False
) -> asyncio.Server:
    """Listen for HAProxy ``agent-check`` on ``host:port``: one line per connection.

    ``reply`` runs on this loop (the server's), so it may read the app's state.
    """

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(reply().encode("ascii"))
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    return await asyncio.start_server(answer, host, port, reuse_port=reuse_port or None)
