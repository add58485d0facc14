"""Server tunables, statistics and the engine worker pool."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from rxtts.config import MAX_CONTEXTS

__all__ = ["CountingExecutor", "ServerOptions", "ServerStats"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """Tunables of the local server (CLI flags and ``start_background_server`` kwargs)."""

    api_key: str | None = None
    """Required ``api_key`` (or ``token``/``master_key``) on every upgrade; ``None`` = open."""
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
        if self.idle_flush_seconds <= 0 or self.inactivity_timeout <= 0:
            raise ValueError("idle_flush_seconds and inactivity_timeout must be > 0")
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


class CountingExecutor(ThreadPoolExecutor):
    """The engine worker pool, counting jobs in flight for :class:`ServerStats`."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers, thread_name_prefix="rxtts-engine")
        self._count_lock = threading.Lock()
        self.in_flight = 0
        """Jobs submitted and not yet finished (or cancelled)."""

    def _done(self, _: object = None) -> None:
        with self._count_lock:
            self.in_flight -= 1

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        with self._count_lock:
            self.in_flight += 1
        try:
            future = super().submit(fn, *args, **kwargs)
        except BaseException:
            self._done()
            raise
        future.add_done_callback(self._done)
        return future
