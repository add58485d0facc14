"""One connection layer under every session kind (stream, multi, one-shot tts).

:class:`Link` owns a session's socket: it opens it over the injected
:class:`~rxtts.transport.base.Transport` (auth is the ``api_key`` in the URL, keepalive
and compression are :class:`~rxtts.transport.base.TransportOptions`), queues frames
written while it is (re)connecting, marshals calls onto the session's loop, and
classifies every end of a socket once (:class:`Loss`, PROTOCOL 9 and 10) so each
session only decides what its own protocol machine says about the turns it held.

Subscriber policy (one for every session kind, :func:`deliver`): a subscriber whose
``on_next`` raises is logged with the exception, unsubscribed (it gets nothing more:
no ``on_error``, no ``on_completed``, as RxJS does with a throwing observer), and, when
it was the only consumer of a ``speak()`` turn, that turn is cancelled on the server.
Other subscribers and later turns are unaffected.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import Disposable, SingleAssignmentDisposable

from rxtts.errors import ConnectionClosedError, RxTtsError, ServerRestartingError
from rxtts.protocol.frames import ClientFrame, ServerFrame
from rxtts.transport.base import (
    CloseInfo,
    Connection,
    ReconnectPolicy,
    Transport,
    TransportOptions,
    open_connection,
)

log = logging.getLogger("rxtts.client")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Loss:
    """How a session's socket ended, classified once (PROTOCOL 9 and 10)."""

    info: CloseInfo
    """Close code and reason as received."""
    error: RxTtsError
    """What work still in flight on the socket fails with."""
    local: bool
    """This side closed it (``close()``): nothing to report."""
    restart: bool
    """A deploy restart or try-later close (1012/1013): replay what had no audio."""


@dataclass(frozen=True, slots=True)
class AdmissionRetry:
    """Retry of an upgrade refused for load (HTTP 503/429 + ``Retry-After``): bounded
    exponential backoff with jitter, then the typed error of the last refusal
    (:class:`~rxtts.errors.ModelUnavailableError` for 503,
    :class:`~rxtts.errors.RateLimitError` for 429).

    Attempt ``k`` (1-based) that is refused waits ``max(Retry-After, base_delay * 2**(k-1))``
    times a random factor in ``[1, 1 + jitter]``; no wait goes past ``budget`` seconds
    after the first attempt (then the refusal is raised at once).
    """

    attempts: int = 3
    """Upgrade attempts in all (1 = no retry)."""
    budget: float = 5.0
    """Seconds from the first attempt after which no retry starts."""
    base_delay: float = 0.25
    """First backoff step (seconds) when the server sent no ``Retry-After``."""
    jitter: float = 0.5
    """Relative random extra wait, so refused clients do not come back in step."""
    statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 503}))
    """HTTP statuses of a refused upgrade that are retried."""

    def retries(self, error: BaseException) -> bool:
        """Whether ``error`` is an admission refusal worth retrying."""
        return isinstance(error, RxTtsError) and error.status in self.statuses

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random | None = None) -> float:
        """Seconds to wait after refused attempt ``attempt`` (1-based)."""
        step = max(retry_after or 0.0, self.base_delay * 2.0 ** (attempt - 1))
        draw: float = (rng or random).random()
        return step * (1.0 + self.jitter * draw)


class LinkOwner(Protocol):
    """What a session gives its :class:`Link`."""

    def on_frame(self, frame: ServerFrame) -> None:
        """One decoded server frame (loop thread)."""
        ...

    def on_open(self) -> None:
        """The socket is open and the queued frames are written."""
        ...

    def on_open_failed(self, error: RxTtsError) -> None:
        """A connect attempt failed; queued frames were dropped."""
        ...

    def on_lost(self, loss: Loss) -> None:
        """The open socket ended."""
        ...


class Link:
    """A session's socket: open, queue, write, reconnect, classify the close."""

    def __init__(
        self,
        url: str,
        loop: asyncio.AbstractEventLoop,
        owner: LinkOwner,
        *,
        options: TransportOptions | None = None,
        transport: Transport | None = None,
        policy: ReconnectPolicy | None = None,
        name: str = "rxtts",
        admission: AdmissionRetry | None = None,
    ) -> None:
        self.url = url
        self.loop = loop
        self.options = options or TransportOptions()
        self.transport = transport
        self.policy = policy or ReconnectPolicy()
        self.admission = admission or AdmissionRetry()
        """How upgrades refused for load (503/429) are retried."""
        self._owner = owner
        self._name = name
        self._conn: Connection | None = None
        self._connecting: asyncio.Task[Connection] | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._pending: list[ClientFrame] = []
        self.closing = False
        """True while :meth:`close` runs: the loss it causes is local."""
        self.last_close: CloseInfo | None = None
        """How the previous socket ended, if one did."""

    # -- state ------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        """Whether the socket is open."""
        return self._conn is not None and self._conn.is_open

    @property
    def active(self) -> bool:
        """Open, opening, waiting to reconnect, or holding frames to write."""
        return bool(self._conn or self._connecting or self._retry or self._pending)

    @property
    def connection(self) -> Connection | None:
        """The open connection, if any."""
        return self._conn

    # -- loop marshalling -------------------------------------------------------------

    def on_loop(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the session's loop: now if already there, else soon."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            fn(*args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    # -- writing ----------------------------------------------------------------------

    def send(self, frames: list[ClientFrame]) -> bool:
        """Write ``frames`` in order; queue them (and connect) if the socket is not open.

        Returns whether they went onto the open socket now.
        """
        conn = self._conn
        if conn is not None and conn.is_open:
            try:
                for frame in frames:
                    conn.send(frame)
            except ConnectionClosedError:
                return False  # the reader reports how the socket ended
            return True
        self._pending.extend(frames)
        self.ensure_connecting()
        return False

    def drop_pending(self) -> None:
        """Forget frames queued for the next socket."""
        self._pending.clear()

    # -- opening and closing ----------------------------------------------------------

    def ensure_connecting(self) -> None:
        """Start opening the socket unless it is open, opening or waiting to retry."""
        if self._conn is not None or self._connecting is not None or self._retry is not None:
            return
        self.closing = False
        task = self.loop.create_task(self._open(), name=f"{self._name}-connect")
        task.add_done_callback(_retrieve)
        self._connecting = task

    async def connect(self) -> Connection:
        """Open the socket now (or wait for the attempt in progress)."""
        if self._conn is not None and self._conn.is_open:
            return self._conn
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self.ensure_connecting()
        task = self._connecting
        assert task is not None
        return await asyncio.shield(task)

    def reconnect_after(self, delay: float) -> None:
        """Reconnect in ``delay`` seconds (PROTOCOL 10: ``retry_after`` of a 1012/1013)."""
        if self._retry is not None:
            self._retry.cancel()
        self._retry = self.loop.call_later(delay, self._retry_now)

    def abandon(self, reason: str) -> None:
        """Give up on the open socket whose state is unknown (e.g. an unacked cancel).

        The socket is closed without a report (the owner already settled its work);
        queued frames go out on the next socket.
        """
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close_soon(1000, reason[:120])

    async def close(self) -> None:
        """Close the socket (1000) and wait; the loss is reported as local."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._pending.clear()
        conn = self._conn
        if conn is None:
            task = self._connecting
            if task is None:
                return
            try:
                conn = await asyncio.shield(task)
            except Exception:
                return
        self.closing = True
        try:
            await conn.close()
        finally:
            self.closing = False

    def _retry_now(self) -> None:
        self._retry = None
        self.ensure_connecting()

    async def _open_admitted(self) -> Connection:
        """Open the socket, retrying admission refusals (:class:`AdmissionRetry`)."""
        retry = self.admission
        start = self.loop.time()
        attempt = 1
        while True:
            try:
                return await open_connection(self.url, self.options, self.transport)
            except RxTtsError as exc:
                if attempt >= retry.attempts or not retry.retries(exc):
                    raise
                delay = retry.delay(attempt, exc.retry_after)
                if self.loop.time() + delay - start > retry.budget:
                    raise
                log.info("rxtts: upgrade refused (%s); retry %d in %.2f s", exc.message, attempt, delay)
                await asyncio.sleep(delay)
                attempt += 1

    async def _open(self) -> Connection:
        try:
            conn = await self._open_admitted()
        except BaseException as exc:
            self._connecting = None
            self._pending.clear()
            err = exc if isinstance(exc, RxTtsError) else ConnectionClosedError(f"cannot connect: {exc!r}")
            self._owner.on_open_failed(err)
            raise
        self._connecting = None
        self._conn = conn
        conn.frames.subscribe(
            self._owner.on_frame,
            lambda e: self._closed(conn, e),
            lambda: self._closed(conn, None),
        )
        pending, self._pending = self._pending, []
        for frame in pending:
            conn.send(frame)
        self._owner.on_open()
        return conn

    def _closed(self, conn: Connection, error: Exception | None) -> None:
        if conn is not self._conn:
            return  # an abandoned socket: its end is nobody's business
        self._conn = None
        info = conn.closed.result() if conn.closed.done() else CloseInfo(None)
        self.last_close = info
        self._owner.on_lost(self.classify(info, error))

    def classify(self, info: CloseInfo, error: Exception | None) -> Loss:
        """The :class:`Loss` a close means (PROTOCOL 9, 10)."""
        local = info.local or self.closing
        restart = not local and info.code in self.policy.codes
        if local:
            err: RxTtsError = ConnectionClosedError("the session was closed")
        elif isinstance(error, RxTtsError):
            err = error
        elif restart:
            err = ServerRestartingError()
        else:
            err = ConnectionClosedError(f"connection closed (code {info.code}) with work in flight")
        return Loss(info, err, local, restart)


class LinkedSession:
    """What every session kind exposes about its :class:`Link` (a base class)."""

    _link: Link

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop that owns the socket and delivers events."""
        return self._link.loop

    @property
    def url(self) -> str:
        """The WebSocket URL (with the API key: do not log it)."""
        return self._link.url

    @property
    def is_connected(self) -> bool:
        """Whether the socket is open."""
        return self._link.is_connected

    @property
    def last_close(self) -> CloseInfo | None:
        """How the previous socket of this session ended, if one did."""
        return self._link.last_close

    def _on_loop(self, fn: Callable[..., None], *args: Any) -> None:
        self._link.on_loop(fn, *args)


# -- the subscriber policy ----------------------------------------------------------------


def deliver(observer: abc.ObserverBase[T], value: T, what: str) -> bool:
    """``observer.on_next(value)``; False (and logged) if the subscriber raised.

    The caller unsubscribes that observer (module docstring: the subscriber policy).
    """
    try:
        observer.on_next(value)
    except Exception:
        log.exception("rxtts: a %s subscriber raised; it is unsubscribed", what)
        return False
    return True


def finish(observer: abc.ObserverBase[Any], error: Exception | None, what: str) -> None:
    """``on_completed``/``on_error`` with the same isolation as :func:`deliver`."""
    try:
        if error is None:
            observer.on_completed()
        else:
            observer.on_error(error)
    except Exception:
        log.exception("rxtts: a %s subscriber raised on termination", what)


class _Isolated(abc.ObserverBase[T]):
    __slots__ = ("_disposable", "_done", "_observer", "_what")

    def __init__(self, observer: abc.ObserverBase[T], what: str) -> None:
        self._observer = observer
        self._what = what
        self._done = False
        self._disposable = SingleAssignmentDisposable()

    def on_next(self, value: T) -> None:
        if not self._done and not deliver(self._observer, value, self._what):
            self._done = True
            self._disposable.dispose()

    def on_error(self, error: Exception) -> None:
        if not self._done:
            self._done = True
            finish(self._observer, error, self._what)

    def on_completed(self) -> None:
        if not self._done:
            self._done = True
            finish(self._observer, None, self._what)


def isolated(source: Observable[T], what: str) -> Observable[T]:
    """``source`` where each subscriber that raises is unsubscribed alone (the policy)."""

    def subscribe(
        observer: abc.ObserverBase[T], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        guard = _Isolated(observer, what)
        guard._disposable.disposable = source.subscribe(guard, scheduler=scheduler)
        return Disposable(guard._disposable.dispose)

    return Observable(subscribe)


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # reported to the owner; keep asyncio quiet


__all__ = ["AdmissionRetry", "Link", "LinkOwner", "LinkedSession", "Loss", "deliver", "finish", "isolated"]
