"""The send queue of one connection: order, lanes, pacing, purge, backpressure.

One writer task takes frames off the queue in the order the machine produced them
(within a lane) and writes them to the :class:`~rxtts.server.socket.ServerSocket`.

- Pacing: audio of a pipeline leaves at most ``max_lead`` seconds ahead of real-time
  playback, estimated by a virtual clock per pace key (stream: one per socket, multi: one
  per context), so a cancel leaves little audio in flight (PROTOCOL S-5, M-7).
- Lanes: a frame held back by pacing holds back the rest of its lane only (multi: one lane
  per context, PROTOCOL 6.1, M-5); frames without a lane overtake nothing.
- Purge: unsent frames tagged with a pipeline key are dropped on cancel (S-5, M-7a).
- Backpressure: :meth:`OutputQueue.output_open` is False while the queue holds
  ``max_queued_bytes`` (engine jobs wait), :attr:`OutputQueue.reading` clears at twice
  that (the reader pauses), and a client that reads nothing for ``send_timeout`` seconds
  while a frame waits is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from rxtts.server.socket import Abortable, ServerSocket, SocketClosed

__all__ = ["OutputQueue", "QueuedFrame"]

log = logging.getLogger("rxtts.server")


@dataclass(frozen=True, slots=True)
class QueuedFrame:
    """One queued outgoing text frame."""

    text: str
    """The encoded frame."""
    key: str | None = None
    """Pipeline whose purge drops this frame if still unsent."""
    seconds: float = 0.0
    """Audio duration carried (paced frames only)."""
    lane: str | None = ""
    """Ordering lane: frames leave in order within a lane and may overtake a paced frame
    of another lane (multi: one lane per context); ``None`` = keeps its place among all."""


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    reason: str


class OutputQueue:
    """The ordered, paced writer of one connection."""

    def __init__(
        self,
        sock: ServerSocket,
        *,
        max_lead: float | None,
        interleaved: bool,
        pace_key: Callable[[str], str],
        max_queued_bytes: int,
        send_timeout: float | None,
        on_sent: Callable[[QueuedFrame], None],
        on_gate_open: Callable[[], None],
        on_close: Callable[[], None],
    ) -> None:
        self._sock = sock
        self._max_lead = max_lead
        self._interleaved = interleaved
        self._pace_key = pace_key
        self._limit = max_queued_bytes
        self._send_timeout = send_timeout
        self._on_sent = on_sent
        self._on_gate_open = on_gate_open
        self._on_close = on_close
        self._loop = asyncio.get_running_loop()
        self._out: deque[QueuedFrame | _Close] = deque()
        self._per_key: Counter[str] = Counter()
        self._play_end: dict[str, float] = {}
        self._wakeup = asyncio.Event()
        self._queued_bytes = 0
        self._gate_closed = False
        self.reading = asyncio.Event()
        """Set while the reader may take the next client frame (backpressure)."""
        self.reading.set()
        self.closing = False
        """Whether a close is queued or done."""

    # -- queue ---------------------------------------------------------------------------

    def put(self, item: QueuedFrame) -> None:
        """Queue a frame."""
        self._out.append(item)
        if item.key is not None:
            self._per_key[item.key] += 1
        self._queued_bytes += len(item.text)
        self._flow()
        self._wakeup.set()

    def close_after(self, code: int, reason: str = "") -> None:
        """Close the socket once everything queued before is sent."""
        self.closing = True
        self._out.append(_Close(code, reason))
        self._wakeup.set()

    def queued(self) -> list[QueuedFrame]:
        """Frames waiting to be written."""
        return [o for o in self._out if isinstance(o, QueuedFrame)]

    def pending(self, key: str) -> bool:
        """Whether a frame of pipeline ``key`` waits to be written."""
        return self._per_key[key] > 0

    def has_pipeline_frames(self) -> bool:
        """Whether any pipeline frame waits to be written."""
        return any(n > 0 for n in self._per_key.values())

    def purge(self, keys: frozenset[str] | None) -> None:
        """Drop unsent frames of these pipelines (``None``: all pipeline frames) (S-5, M-7a)."""

        def drop(o: QueuedFrame | _Close) -> bool:
            return isinstance(o, QueuedFrame) and o.key is not None and (keys is None or o.key in keys)

        if any(drop(o) for o in self._out):
            self._out = deque(o for o in self._out if not drop(o))
            self._per_key = Counter(o.key for o in self._out if isinstance(o, QueuedFrame) and o.key)
            self._queued_bytes = sum(len(o.text) for o in self._out if isinstance(o, QueuedFrame))
            self._wakeup.set()
            self._flow()
        # The client stops playback on barge-in: its buffer is empty again.
        if keys is None:
            self._play_end.clear()
        else:
            for key in keys:
                self._play_end.pop(self._pace_key(key), None)

    def output_open(self) -> bool:
        """Whether the queue has room for more engine output (backpressure)."""
        return self._queued_bytes < self._limit

    def _flow(self) -> None:
        if self._queued_bytes >= self._limit:
            self._gate_closed = True
        elif self._gate_closed:
            self._gate_closed = False
            self._on_gate_open()
        if self._queued_bytes >= 2 * self._limit:
            self.reading.clear()
        else:
            self.reading.set()

    # -- writer ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Write until the socket closes or a queued close is done."""
        try:
            await self._write_queue()
        finally:
            self.reading.set()  # the reader must see the close, never wait for room

    async def _write_queue(self) -> None:
        while True:
            if not self._out:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            index, wait = self._next_ready()
            if index < 0:
                self._wakeup.clear()  # a new frame, a cancel or a purge wakes us up early
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), wait)
                continue
            item = self._out[index]
            del self._out[index]
            if isinstance(item, _Close):
                self._on_close()
                with contextlib.suppress(SocketClosed):
                    await self._sock.close(item.code, item.reason)
                return
            self._advance_clock(item)
            if item.key is not None:
                self._per_key[item.key] -= 1
            self._queued_bytes -= len(item.text)
            self._flow()
            # Handed to the socket now: billed (M-7a) and no longer pending (S-8a) even
            # if a cancel arrives while the write waits; TCP delivers it before any
            # later frame.
            self._on_sent(item)
            if not await self._write(item):
                return

    async def _write(self, item: QueuedFrame) -> bool:
        try:
            async with asyncio.timeout(self._send_timeout):
                await self._sock.send(item.text)
        except SocketClosed:
            return False
        except TimeoutError:
            # A client that reads nothing at all is gone; keepalive cannot tell, its ping
            # waits behind the same full buffer.
            log.info("dropping a connection that read nothing for %s s", self._send_timeout)
            if isinstance(self._sock, Abortable):
                self._sock.abort()
            else:
                with contextlib.suppress(SocketClosed):
                    await self._sock.close(1011, "send timeout")
            return False
        return True

    def _next_ready(self) -> tuple[int, float]:
        """Index of the first frame that may leave now, else ``(-1, seconds to wait)``."""
        blocked: set[str] = set()
        wait = 0.0
        for index, item in enumerate(self._out):
            lane = item.lane if isinstance(item, QueuedFrame) else None
            if lane is None and index > 0:
                break
            if lane is not None and lane in blocked:
                continue
            delay = self._pace(item) if isinstance(item, QueuedFrame) else 0.0
            if delay <= 0:
                return index, 0.0
            wait = delay if not blocked else min(wait, delay)
            if lane is None or not self._interleaved:
                break
            blocked.add(lane)
        return -1, wait

    def _pace(self, item: QueuedFrame) -> float:
        """Seconds to hold ``item`` back; 0 = it may be sent now."""
        lead = self._max_lead
        if lead is None or item.key is None or not item.seconds:
            return 0.0
        now = self._loop.time()
        end = max(self._play_end.get(self._pace_key(item.key), now), now)
        return end - now - lead if end - now > lead else 0.0

    def _advance_clock(self, item: QueuedFrame) -> None:
        """``item`` leaves now: its audio extends its playback clock."""
        if self._max_lead is None or item.key is None or not item.seconds:
            return
        clock = self._pace_key(item.key)
        now = self._loop.time()
        self._play_end[clock] = max(self._play_end.get(clock, now), now) + item.seconds

    def expire_clocks(self) -> None:
        """Forget playback clocks whose client buffer has drained."""
        now = self._loop.time()
        for clock in [c for c, end in self._play_end.items() if end < now]:
            del self._play_end[clock]
