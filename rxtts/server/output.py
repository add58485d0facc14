"""The send queue of one connection: order, lanes, pacing, purge, backpressure.

One writer task takes frames off the queue in the order the machine produced them
(within a lane) and writes them to the :class:`~rxtts.server.socket.ServerSocket`.

- Pacing: the public :func:`rxtts.operators.pace` operator, one per lane (stream: one
  per socket, multi: one per context), on the connection's scheduler: audio of a
  pipeline leaves at most ``max_lead`` seconds ahead of real-time playback, so a cancel
  leaves little audio in flight (PROTOCOL S-5, M-7). A purge disposes the lane's pacer,
  which drops its held frames at once (barge-in) and restarts its clock.
- Lanes: a frame held back by pacing holds back the rest of its lane only (multi: one lane
  per context, PROTOCOL 6.1, M-5); frames without a lane overtake nothing: they, and
  everything after them, wait until every pacer is empty.
- Purge: unsent frames tagged with a pipeline key are dropped on cancel (S-5, M-7a).
- Backpressure: :meth:`OutputQueue.output_open` is False while the queue holds
  ``max_queued_bytes`` (engine jobs wait), :attr:`OutputQueue.reading` clears at twice
  that (the reader pauses), and a client that reads nothing for ``send_timeout`` seconds
  while a frame waits is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from reactivex import abc
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.subject import Subject

from rxtts.operators.pace import pace
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


class _Lane:
    """One pacer: frames go in through ``subject``; ``inside`` mirrors what it holds."""

    def __init__(self) -> None:
        self.subject: Subject[QueuedFrame] = Subject()
        self.inside: deque[QueuedFrame] = deque()
        self.subscription: abc.DisposableBase | None = None
        self.audio_end = 0.0
        """When the audio sent so far ends playing (loop time), to forget idle lanes."""


def _paced_seconds(item: QueuedFrame) -> float:
    return item.seconds if item.key is not None else 0.0


@dataclass(slots=True)
class _Held:
    items: deque[QueuedFrame | _Close] = field(default_factory=deque)


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
        scheduler: abc.SchedulerBase | None = None,
    ) -> None:
        """``scheduler`` runs the pacers' timers (default: the running loop; a
        ``TestScheduler`` gives virtual time)."""
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
        self._scheduler = scheduler or AsyncIOScheduler(self._loop)
        self._out: deque[QueuedFrame | _Close] = deque()
        """Ready to write, in order."""
        self._lanes: dict[str, _Lane] = {}
        self._held = _Held()
        """Frames behind a lane-less frame (a barrier) that waits for every pacer."""
        self._per_key: Counter[str] = Counter()
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
        if item.key is not None:
            self._per_key[item.key] += 1
        self._queued_bytes += len(item.text)
        self._route(item)
        self._flow()

    def close_after(self, code: int, reason: str = "") -> None:
        """Close the socket once everything queued before is sent."""
        self.closing = True
        self._route(_Close(code, reason))

    def held_back(self) -> int:
        """Frames waiting for pacing (in a pacer or behind a barrier)."""
        return sum(len(lane.inside) for lane in self._lanes.values()) + len(self._held.items)

    def queued(self) -> list[QueuedFrame]:
        """Frames waiting to be written."""
        items = [*self._out, *(f for lane in self._lanes.values() for f in lane.inside), *self._held.items]
        return [o for o in items if isinstance(o, QueuedFrame)]

    def pending(self, key: str) -> bool:
        """Whether a frame of pipeline ``key`` waits to be written."""
        return self._per_key[key] > 0

    def has_pipeline_frames(self) -> bool:
        """Whether any pipeline frame waits to be written."""
        return any(n > 0 for n in self._per_key.values())

    def purge(self, keys: frozenset[str] | None) -> None:
        """Drop unsent frames of these pipelines (``None``: all pipeline frames) (S-5, M-7a).

        The pacers of those pipelines are disposed (their held audio goes at once) and
        restarted with a fresh clock: the client stops playback on barge-in, its buffer
        is empty again. Frames of other pipelines they held are queued again in order.
        """

        def drop(o: QueuedFrame | _Close) -> bool:
            return isinstance(o, QueuedFrame) and o.key is not None and (keys is None or o.key in keys)

        names = set(self._lanes) if keys is None else {self._lane_of_key(k) for k in keys}
        names |= {n for n, lane in self._lanes.items() if any(drop(f) for f in lane.inside)}
        survivors: dict[str, list[QueuedFrame]] = {}
        for name in names & set(self._lanes):
            lane = self._lanes.pop(name)
            if lane.subscription is not None:
                lane.subscription.dispose()  # pace drops what it holds at once
            survivors[name] = [f for f in lane.inside if not drop(f)]
        self._out = deque(o for o in self._out if not drop(o))
        held = [o for o in self._held.items if not drop(o)]
        self._held.items.clear()
        for frames in survivors.values():
            for frame in frames:
                self._into_lane(frame)
        for o in held:
            self._route(o)
        self._per_key = Counter(o.key for o in self.queued() if o.key)
        self._queued_bytes = sum(len(o.text) for o in self.queued())
        self._wakeup.set()
        self._flow()

    def output_open(self) -> bool:
        """Whether the queue has room for more engine output (backpressure)."""
        return self._queued_bytes < self._limit

    def expire_clocks(self) -> None:
        """Forget pacers that hold nothing and whose client buffer has drained."""
        now = self._loop.time()
        for name in [n for n, lane in self._lanes.items() if not lane.inside and lane.audio_end < now]:
            lane = self._lanes.pop(name)
            if lane.subscription is not None:
                lane.subscription.dispose()

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

    # -- pacing --------------------------------------------------------------------------

    def _lane_of_key(self, key: str) -> str:
        return self._pace_key(key) if self._interleaved else ""

    def _route(self, item: QueuedFrame | _Close) -> None:
        """Into its lane's pacer, behind a barrier, or straight out."""
        if self._max_lead is None:
            self._ready(item)
        elif self._held.items:
            self._held.items.append(item)  # behind a lane-less frame: keeps its place
        elif isinstance(item, _Close) or item.lane is None:
            if any(lane.inside for lane in self._lanes.values()):
                self._held.items.append(item)
            else:
                self._ready(item)
        else:
            self._into_lane(item)

    def _into_lane(self, item: QueuedFrame) -> None:
        name = item.lane if self._interleaved and item.lane is not None else ""
        lane = self._lanes.get(name)
        if lane is None:
            lane = self._lanes[name] = _Lane()
            paced = lane.subject.pipe(
                pace(self._max_lead, duration=_paced_seconds, scheduler=self._scheduler)
            )
            lane.subscription = paced.subscribe(functools.partial(self._left_pacer, lane))
        lane.inside.append(item)
        lane.subject.on_next(item)

    def _left_pacer(self, lane: _Lane, item: QueuedFrame) -> None:
        if lane.inside and lane.inside[0] is item:
            lane.inside.popleft()
        if seconds := _paced_seconds(item):
            now = self._loop.time()
            lane.audio_end = max(lane.audio_end, now) + seconds
        self._ready(item)
        if self._held.items and not any(ln.inside for ln in self._lanes.values()):
            held = list(self._held.items)
            self._held.items.clear()
            for o in held:
                self._route(o)

    def _ready(self, item: QueuedFrame | _Close) -> None:
        self._out.append(item)
        self._wakeup.set()

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
            item = self._out.popleft()
            if isinstance(item, _Close):
                self._on_close()
                with contextlib.suppress(SocketClosed):
                    await self._sock.close(item.code, item.reason)
                return
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
