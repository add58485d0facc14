"""Server tunables, statistics and the engine worker pool."""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from rxtts.config import MAX_CONTEXTS

__all__ = ["CountingExecutor", "ServerOptions", "ServerStats"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """Tunables of the local server (CLI flags and ``start_background_server`` kwargs)."""

    api_key: str | None = None
    """Required ``api_key`` (or ``token``/``master_key``) on every upgrade; ``None`` = open.
    An empty or blank key is refused (``ValueError``): it must never mean "no auth"."""
    price_cents_per_minute: float | None = 0.0
    """EUR cents per minute of audio; 0 by default (the local server is free, DESIGN 4);
    ``None`` reports ``cost_cents: null`` with ``cost_unavailable`` (PROTOCOL 3.5)."""
    idle_flush_seconds: float = 5.0
    """Unflushed stream turns end this long after their last text (PROTOCOL S-8)."""
    inactivity_timeout: float = 20.0
    """Idle multi contexts close after this many seconds unless the client sets one (M-10)."""
    max_buffered_chars: int = 100_000
    """Unspoken characters a turn/context may hold; more is refused with an error (DESIGN 7)."""
    engine_threads: int = 2
    """Engine worker threads shared by all connections (``--engine-threads``)."""
    frame_ms: int = 80
    """Audio frame length in ms (first frame of a chunk may be shorter)."""
    max_contexts: int = MAX_CONTEXTS
    """Open contexts per multi socket (PROTOCOL M-9)."""
    ping_interval: float | None = 20.0
    """Server keepalive pings; clients need not ping (PROTOCOL G-6)."""
    ping_timeout: float | None = 20.0
    """Close a connection whose pong is this late."""
    close_timeout: float = 2.0
    """Seconds to wait for a client's close frame before dropping TCP (fast shutdown)."""
    max_lead_seconds: float | None = 1.0
    """Stream/multi audio is sent at most this far ahead of real-time playback, so a
    cancel leaves little audio in flight (PROTOCOL S-5, M-7); ``None`` = no pacing."""
    max_queued_bytes: int = 4 << 20
    """Per-connection send queue size at which engine work pauses (output backpressure);
    reading from the client pauses at twice this size (:mod:`rxtts.server.output`)."""
    send_timeout: float | None = 60.0
    """Seconds one frame may wait for a client that reads nothing before the connection
    is dropped; ``None`` = wait forever."""
    drain_timeout: float = 30.0
    """G-11: seconds a drain waits for busy sockets to finish before closing them 1012."""
    max_chunk_chars: int = 500
    """Characters per engine chunk at most: client ``max_buffer_length`` and
    ``chunk_length_schedule`` values are clamped to it (engine memory grows with the
    chunk: piper ~1.25 MB per character, issue 11)."""
    max_sessions: int | None = None
    """Admission: open WebSockets at most; more get HTTP 503 + ``Retry-After`` (or close
    1013 when they raced past the check); ``None`` = unlimited."""
    capacity: int | None = None
    """Voices (stream turns, tts requests, multi contexts) at which the HAProxy agent
    reports 1 % weight; ``None`` = ``max_sessions``, else 16 (:mod:`rxtts.server.metrics`)."""
    reuse_port: bool = False
    """Bind with ``SO_REUSEPORT`` so several worker processes share one port
    (``rxtts serve --worker-processes``, :mod:`rxtts.server.workers`)."""

    def __post_init__(self) -> None:
        if self.api_key is not None and not self.api_key.strip():
            # An empty RXTTS_API_KEY / --api-key '' used to turn auth off silently.
            raise ValueError("empty API key: set a real key, or pass --no-auth to run an open server")
        if self.idle_flush_seconds <= 0 or self.inactivity_timeout <= 0:
            raise ValueError("idle_flush_seconds and inactivity_timeout must be > 0")
        if self.max_chunk_chars < 1:
            raise ValueError("max_chunk_chars must be >= 1")
        if self.max_buffered_chars <= 0 or self.engine_threads <= 0 or self.max_queued_bytes <= 0:
            raise ValueError("max_buffered_chars, max_queued_bytes and engine_threads must be > 0")
        if self.send_timeout is not None and self.send_timeout <= 0:
            raise ValueError("send_timeout must be > 0 or None")
        if not 1 <= self.max_contexts <= MAX_CONTEXTS:
            raise ValueError(f"max_contexts must be in [1, {MAX_CONTEXTS}]")
        if self.price_cents_per_minute is not None and self.price_cents_per_minute < 0:
            raise ValueError("price_cents_per_minute must be >= 0")
        if self.drain_timeout < 0:
            raise ValueError("drain_timeout must be >= 0")
        if self.max_sessions is not None and self.max_sessions < 1:
            raise ValueError("max_sessions must be >= 1 or None")
        if self.capacity is not None and self.capacity < 1:
            raise ValueError("capacity must be >= 1 or None")


@dataclass(frozen=True, slots=True)
class ServerStats:
    """A read-only snapshot of the server's live work (:meth:`TtsApp.stats`)."""

    connections: int
    """Open WebSocket sessions."""
    pipelines: int
    """Synthesis pipelines not yet disposed (stream turns, tts requests, multi contexts)."""
    contexts: int
    """Open multi contexts over all ``/ws/tts/multi`` sockets."""
    synthesis_jobs: int
    """Engine calls submitted to the worker pool and not yet finished."""
    queued_frames: int
    """Outgoing frames waiting in the per-connection send queues."""
    queued_bytes: int
    """Characters of those frames (their size on the wire)."""
    tasks: int
    """Unfinished asyncio tasks of the server loop (0 when not called on it)."""


class CountingExecutor(Executor):
    """The engine worker pool: fair between connections, counting jobs for :class:`ServerStats`.

    A plain ``ThreadPoolExecutor`` runs jobs first come, first served, so four sockets that
    queue big words ahead of a tiny turn make it wait for all of them (issue 11: 20.5 s).
    Jobs here are submitted through a :meth:`lane` (one per pipeline, grouped by owner,
    i.e. connection) and taken:

    1. the first job of a pipeline (the first chunk of a turn, request or context) before
       any later job of any pipeline: time to first audio never waits behind bulk work;
    2. within each class, round-robin between owners: one job of each in turn.

    Jobs submitted straight to :meth:`submit` share one anonymous owner.
    """

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._cv = threading.Condition()
        # per class (0 = first jobs, 1 = later ones): owner -> its jobs, oldest first; the
        # dict order is the round-robin order (an owner served moves to the end).
        self._queues: tuple[dict[object, deque[_Job]], ...] = ({}, {})
        self._threads: list[threading.Thread] = []
        self._shutdown = False
        self._count_lock = threading.Lock()
        self.in_flight = 0
        """Jobs submitted and not yet finished (or cancelled)."""

    def lane(self, owner: object) -> Executor:
        """An executor for one pipeline of ``owner``: its first job is urgent."""
        return _Lane(self, owner)

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        return self._put(None, 1, functools.partial(fn, *args, **kwargs))

    def _put(self, owner: object, urgency: int, job: Callable[[], _T]) -> Future[_T]:
        future: Future[_T] = Future()
        with self._cv:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            with self._count_lock:
                self.in_flight += 1
            future.add_done_callback(self._done)
            self._queues[urgency].setdefault(owner, deque()).append((future, job))
            if len(self._threads) < self._workers:
                thread = threading.Thread(
                    target=self._work, name=f"rxtts-engine_{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            self._cv.notify()
        return future

    def _done(self, _: object = None) -> None:
        with self._count_lock:
            self.in_flight -= 1

    def _take(self) -> _Job | None:
        """The next job (caller holds the condition), or ``None`` when none waits."""
        for queue in self._queues:
            for owner in queue:
                jobs = queue.pop(owner)
                job = jobs.popleft()
                if jobs:
                    queue[owner] = jobs  # back of the round-robin
                return job
        return None

    def _work(self) -> None:
        while True:
            with self._cv:
                while (job := self._take()) is None:
                    if self._shutdown:
                        return
                    self._cv.wait()
            future, fn = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn()
            except BaseException as exc:  # handed to the future, like ThreadPoolExecutor
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._cv:
            self._shutdown = True
            dropped: list[_Job] = []
            if cancel_futures:
                for queue in self._queues:
                    for jobs in queue.values():
                        dropped.extend(jobs)
                    queue.clear()
            self._cv.notify_all()
            threads = list(self._threads)
        for future, _ in dropped:
            future.cancel()
        if wait:
            for thread in threads:
                thread.join()


_Job = tuple["Future[Any]", "Callable[[], Any]"]


class _Lane(Executor):
    """One pipeline's view of :class:`CountingExecutor`: first job urgent, then normal."""

    def __init__(self, pool: CountingExecutor, owner: object) -> None:
        self._pool = pool
        self._owner = owner
        self._first = True

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        urgency = 0 if self._first else 1
        self._first = False
        return self._pool._put(self._owner, urgency, functools.partial(fn, *args, **kwargs))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """The pool is shared: nothing to stop."""
