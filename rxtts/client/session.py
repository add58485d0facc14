"""``StreamingSession``: turns as observables, plus the imperative API of the seed docs.

One socket to ``/ws/tts/stream``, many turns (PROTOCOL 5). Two front ends share one
implementation:

- Rx: ``speak(tokens) -> Observable[TtsEvent]``. Subscribing starts a turn; each token is
  sent as it arrives; completion of ``tokens`` sends one ``{"flush": true}``; the
  observable emits this turn's events, a :class:`~rxtts.events.TurnMetrics`, the
  :class:`~rxtts.events.SessionClosed`, and completes. Disposing it earlier sends
  ``{"cancel": true}`` (barge-in); the protocol core drops every late frame of the turn
  and the next turn starts at once::

      session.speak(tokens).pipe(ops.take_until(user_speaks)).subscribe(player)

- Imperative (seed ``StreamingSession``): ``connect``, ``send``, ``cancel_current``,
  ``end_session``, ``update_config``, ``close``, ``is_connected``, ``last_usage`` and the
  ``on_*`` callbacks, which are subscribers of the same event stream (:attr:`events`).

Threading: every socket operation and every event delivery happens on the session's
asyncio loop. ``speak`` may be subscribed, tokens may arrive and turns may be disposed
from any thread: calls are marshalled with ``loop.call_soon_threadsafe``. When the loop
runs in another thread (e.g. :func:`rxtts.connect_sync`), blocking helpers such as
``session.speak(tokens).run()`` work; never block the loop's own thread that way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import Disposable
from reactivex.subject import Subject

from rxtts.client.callbacks import SessionCallbacks, StreamCallbackObserver
from rxtts.client.connection import Link, LinkedSession, Loss, isolated
from rxtts.client.speak_turns import SpeakTurns, _Phase, _Record, _SpeakTurn
from rxtts.client.tokens import Tokens, as_token_observable
from rxtts.config import StreamConfig
from rxtts.errors import (
    ConnectionClosedError,
    LocalProtocolError,
    MissingVoiceError,
    RxTtsError,
    ValidationError,
)
from rxtts.events import (
    Interrupted,
    SessionClosed,
    SessionUsage,
    SettingsUpdated,
    TtsEvent,
    TurnMetrics,
)
from rxtts.protocol.client import StreamClient
from rxtts.protocol.frames import ClientFrame, ServerFrame
from rxtts.transport import ReconnectPolicy, Transport, TransportOptions

log = logging.getLogger("rxtts.client.session")


DEFAULT_CANCEL_TIMEOUT = 5.0
"""``cancel_current`` gives up after this many quiet seconds (JS ``cancelCurrent``)."""
DEFAULT_END_TIMEOUT = 15.0
"""``end_session``/``update_settings`` give up after this many quiet seconds (JS)."""


class StreamingSession(LinkedSession, SpeakTurns):
    """A streaming TTS session on ``/ws/tts/stream`` (see the module docstring).

    Create it with ``tts.streaming_session(...)`` (or directly with the full stream URL)
    inside a running loop, or pass ``loop=`` when that loop runs in another thread.
    """

    def __init__(
        self,
        url: str,
        config: StreamConfig | None = None,
        *,
        callbacks: SessionCallbacks | None = None,
        options: TransportOptions | None = None,
        transport: Transport | None = None,
        reconnect: ReconnectPolicy | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        cancel_timeout: float = DEFAULT_CANCEL_TIMEOUT,
        end_timeout: float = DEFAULT_END_TIMEOUT,
    ) -> None:
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError(
                    "create the session inside a running asyncio loop, or pass loop= "
                    "(e.g. the loop of rxtts.connect_sync())"
                ) from None
        self._loop = loop
        self._url = url
        self._link = Link(
            url, loop, self, options=options, transport=transport, policy=reconnect, name="rxtts-stream"
        )
        self.cancel_timeout = cancel_timeout
        """Quiet seconds after which ``cancel_current`` resolves without an ack."""
        self.end_timeout = end_timeout
        """Quiet seconds after which ``end_session`` stops waiting."""
        self._client = StreamClient(config or StreamConfig())
        self._ack_deadline: asyncio.TimerHandle | None = None
        self._records: dict[int, _Record] = {}
        self._queue: deque[_SpeakTurn] = deque()
        self._active: _SpeakTurn | None = None
        self._subject: Subject[TtsEvent] = Subject()
        self._callbacks = callbacks or SessionCallbacks()
        self._cb_observer = StreamCallbackObserver(self._callbacks)
        self._subject.subscribe(self._cb_observer)
        self._cancels_sent = 0
        self._acks = 0
        self._ack_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._settings_waiters: deque[asyncio.Future[Mapping[str, Any]]] = deque()
        self._last_activity = time.monotonic()
        self._last_usage: SessionUsage | None = None
        self._last_metrics: TurnMetrics | None = None

    # -- public properties --------------------------------------------------------------

    @property
    def events(self) -> Observable[TtsEvent]:
        """Hot stream of every event of every turn (what the callbacks see).

        It never terminates (errors go to ``on_error`` and the turn observers), so it
        survives reconnects. Late frames of a cancelled turn never appear here either.
        A subscriber that raises is unsubscribed (:mod:`rxtts.client.connection`).
        """
        return isolated(self._subject, "events")

    @property
    def config(self) -> StreamConfig:
        """The config of the next turn."""
        return self._client.config

    @property
    def last_usage(self) -> SessionUsage | None:
        """Usage of the most recently closed turn; ``None`` before the first one."""
        return self._last_usage

    @property
    def last_metrics(self) -> TurnMetrics | None:
        """Client-side metrics of the most recently closed turn."""
        return self._last_metrics

    @property
    def busy(self) -> bool:
        """True while a turn is in flight or a ``speak`` turn is running or queued."""
        return bool(self._records or self._active or self._queue)

    # -- Rx API -------------------------------------------------------------------------

    def speak(self, tokens: Tokens) -> Observable[TtsEvent]:
        """One turn: send ``tokens`` as they arrive, flush at completion, emit its events.

        Cold: every subscription is its own turn; turns run one after another::

            tokens:  -"Hel"--"lo."----|
            wire:    -{text}-{text}---{flush}
            result:  -------------g--a--a--c--f--M--S|
                     (g generation_started, a audio, c chunk_complete, f final,
                      M TurnMetrics, S SessionClosed)

        Disposing before ``S`` sends ``{"cancel": true}``: no later frame of the turn
        reaches anyone, and the next turn starts at once. A ``tokens`` error cancels
        the turn and is forwarded; server errors arrive as typed exceptions.
        """
        source = as_token_observable(tokens, self._loop)

        def subscribe(
            observer: abc.ObserverBase[TtsEvent], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            turn = _SpeakTurn(observer)
            self._on_loop(self._enqueue, turn, source)
            return Disposable(lambda: self._on_loop(self._dispose_turn, turn))

        return Observable(subscribe)

    # -- imperative API -----------------------------------------------------------------

    async def connect(self) -> None:
        """Open the socket (PROTOCOL 2.2: the server stays silent until the first text)."""
        await self._link.connect()

    def send(self, text: str, flush: bool = False) -> None:
        """Append ``text`` to the current turn (opening one); ``flush`` ends the turn.

        Never waits: the socket opens in the background if needed (JS ``send``).

        Raises:
            LocalProtocolError: while a ``speak()`` turn owns the session.
        """
        if not isinstance(text, str):
            raise LocalProtocolError(f"text must be a string, got {type(text).__name__}")
        if self._active is not None:
            raise LocalProtocolError("a speak() turn is running on this session; wait for it or dispose it")
        self._on_loop(self._send_imperative, text, flush)

    def flush(self) -> None:
        """End the current turn: the server speaks the rest, then ``final`` and ``session_closed``."""
        self._on_loop(self._flush_imperative)

    async def cancel_current(self, timeout: float | None = None) -> None:
        """Barge-in: drop the current turn and its buffered text, keep the socket.

        Resolves on the server's ``interrupted`` ack, or after ``timeout`` (default
        :attr:`cancel_timeout`) seconds without any frame. Running ``speak()`` turns
        emit :class:`~rxtts.events.Interrupted` and complete.
        """
        if not self._link.active:
            return  # not connected: nothing can be playing
        target = self._cancel_all()
        await self._wait_acked(target, self.cancel_timeout if timeout is None else timeout)

    async def end_session(self, timeout: float | None = None) -> SessionUsage | None:
        """End the current turn gracefully (``close``) and wait for its ``session_closed``.

        Keeps the socket for the next turn. With no turn in flight it sends nothing
        (PROTOCOL 5.5). Returns :attr:`last_usage`.
        """
        tid = self._client.current_turn
        rec = self._records.get(tid) if tid is not None else None
        if rec is not None and rec.speak is None:
            self._send(self._client.end_turn())
        await self._wait_idle(self.end_timeout if timeout is None else timeout)
        return self._last_usage

    def update_config(self, config: StreamConfig | None = None, **changes: Any) -> None:
        """Use ``config`` and/or ``changes`` from the next turn on (local; PROTOCOL 5.3).

        Raises:
            ValueError: for unknown fields or invalid values.
        """
        new = (
            (config or self._client.config).replace(**changes) if changes else (config or self._client.config)
        )
        self._on_loop(self._client.update_config, new)

    async def update_settings(self, timeout: float | None = None, **settings: Any) -> Mapping[str, Any]:
        """``update_settings`` (PROTOCOL 5.7): waits for ``settings_updated``, returns its settings.

        Raises:
            LocalProtocolError: for an empty update or a non-updatable key.
            ValidationError: when the server rejects a value.
        """
        frames = self._client.update_settings(**settings)
        fut: asyncio.Future[Mapping[str, Any]] = self._loop.create_future()
        self._settings_waiters.append(fut)
        self._send(frames)
        done = await self._quiet_wait(fut, self.end_timeout if timeout is None else timeout)
        if not done:
            with contextlib.suppress(ValueError):
                self._settings_waiters.remove(fut)
            raise RxTtsError("update_settings: no settings_updated from the server")
        return fut.result()

    async def close(self) -> None:
        """End the current turn, then close the socket (1000). Queued ``speak`` turns fail.

        The session may be used again: the next turn reconnects.
        """
        for turn in list(self._queue):
            self._fail_turn(turn, ConnectionClosedError("the session was closed"))
        if self._link.active:
            with contextlib.suppress(Exception):
                await self.end_session()
        await self._link.close()
        closed = ConnectionClosedError("the session was closed")
        self._fail_all(closed, report=False)
        if self._active is not None:
            self._fail_turn(self._active, closed)  # a speak() turn that sent nothing yet

    async def __aenter__(self) -> StreamingSession:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- the link (rxtts.client.connection) ----------------------------------------------

    def _ensure_link(self) -> None:
        self._link.ensure_connecting()

    def _send(self, frames: list[ClientFrame], rec: _Record | None = None) -> None:
        if self._link.send(frames) and rec is not None:
            rec.metrics.text_sent()

    def on_open(self) -> None:
        for rec in self._records.values():
            rec.metrics.text_sent()  # the turn's first text is on the wire now

    def on_open_failed(self, error: RxTtsError) -> None:
        self._fail_all(error, fail_unsent=True)

    def on_lost(self, loss: Loss) -> None:
        if loss.local:
            self._fail_all(loss.error, report=False)
        elif loss.restart and self._records:
            self._recover(loss.error, self._client.connection_lost(), self._link.policy.retry_after)
        else:
            self._fail_all(loss.error)

    def _recover(
        self, err: RxTtsError, replayable: list[tuple[int, list[ClientFrame]]], delay: float
    ) -> None:
        """PROTOCOL 10: replay turns without audio once, after ``delay``."""
        frames_of = dict(replayable)
        self._link.drop_pending()
        self._settle_cancels()
        keep: list[int] = []
        failed: list[_Record] = []
        for tid, rec in list(self._records.items()):
            if tid in frames_of and rec.replays < self._link.policy.max_replays:
                rec.replays += 1
                keep.append(tid)
            else:
                del self._records[tid]
                failed.append(rec)
        if keep:
            log.info("rxtts: replaying %d turn(s) in %.1f s", len(keep), delay)
            self._link.reconnect_after(delay)  # first, so the replay waits for it
        for tid in keep:
            self._link.send(self._client.replay(tid, frames_of[tid]))
        for rec in failed:
            self._fail_record(rec, err)
        if failed:
            self._report(err)
        self._settle_idle()
        self._pump()

    def _fail_all(self, err: RxTtsError, report: bool = True, fail_unsent: bool = False) -> None:
        """The socket is gone: every in-flight turn fails with ``err``.

        ``fail_unsent`` (a connect attempt failed) also fails the running ``speak`` turn
        that has sent nothing yet; otherwise it reconnects with its first token.
        """
        self._link.drop_pending()
        self._client.connection_lost()
        self._cancel_deadline()
        records = list(self._records.values())
        self._records.clear()
        active = self._active
        for rec in records:
            self._fail_record(rec, err)
        if fail_unsent and active is not None and active.phase is _Phase.ACTIVE and active.record is None:
            self._fail_turn(active, err)  # its socket could not be opened
        self._settle_cancels()
        while self._settings_waiters:
            fut = self._settings_waiters.popleft()
            if not fut.done():
                fut.set_exception(err)
        if report and records:
            self._report(err)
        self._settle_idle()
        self._pump()

    # -- inbound ------------------------------------------------------------------------

    def on_frame(self, frame: ServerFrame) -> None:
        self._last_activity = time.monotonic()
        if self._ack_deadline is not None:
            self._arm_deadline()  # quiet timeout: the server is still talking
        for tid, out in self._client.receive(frame):
            if isinstance(out, Exception):
                self._on_server_error(tid, out)
            else:
                self._on_event(tid, out)

    def _on_event(self, tid: int | None, event: TtsEvent) -> None:
        rec = self._records.get(tid) if tid is not None else None
        if isinstance(event, SettingsUpdated):
            if self._settings_waiters:
                fut = self._settings_waiters.popleft()
                if not fut.done():
                    fut.set_result(event.settings)
            self._publish(event)
            return
        if isinstance(event, Interrupted):
            self._acks += 1
            self._settle_cancels()
        if rec is None:
            if isinstance(event, SessionClosed) and event.usage is not None:
                self._last_usage = event.usage
            self._publish(event)
            return
        rec.metrics.on_event(event)
        if isinstance(event, SessionClosed):
            self._turn_closed(rec, event)
            return
        self._deliver(rec, event)
        self._publish(event)

    def _turn_closed(self, rec: _Record, event: SessionClosed) -> None:
        del self._records[rec.id]
        metrics = rec.metrics.result(turn=rec.id)
        self._last_metrics = metrics
        if event.usage is not None:
            self._last_usage = event.usage
        self._deliver(rec, metrics)
        self._publish(metrics)
        self._deliver(rec, event)
        self._publish(event)
        turn = rec.speak
        if turn is not None and turn.record is rec:
            turn.record = None
            if turn.input_done:
                self._complete_turn(turn)
            else:
                # The server ended the turn early (idle auto-flush, PROTOCOL S-8); the
                # next token opens a new server turn within the same speak() turn.
                turn.early_closes += 1
        self._settle_idle()
        self._pump()

    def _deliver(self, rec: _Record, event: TtsEvent) -> None:
        turn = rec.speak
        if turn is not None and turn.phase is _Phase.ACTIVE:
            self._safe_next(turn, event)

    def _on_server_error(self, tid: int | None, err: Exception) -> None:
        if (
            self._settings_waiters
            and isinstance(err, ValidationError)
            and not isinstance(err, MissingVoiceError)
        ):
            # PROTOCOL 5.7: a rejected update_settings; the turn itself is unaffected.
            fut = self._settings_waiters.popleft()
            if not fut.done():
                fut.set_exception(err)
            return
        rec = self._records.get(tid) if tid is not None else None
        if rec is not None:
            # Cancel what the server may still hold of the turn, so the state machine
            # stays in step whatever the server sends next (PROTOCOL S-5).
            self._cancel_all(exclude=rec)
            self._fail_record(rec, err)
        self._report(err)
        self._settle_idle()
        self._pump()

    def _publish(self, event: TtsEvent) -> None:
        try:
            self._subject.on_next(event)
        except Exception:
            log.exception("rxtts: an events subscriber raised")

    def _report(self, err: Exception) -> None:
        self._cb_observer.on_error(err)

    def _cancel_all(self, exclude: _Record | None = None) -> int:
        """Send ``cancel`` for every in-flight turn; returns the ack number to wait for."""
        frames, cancelled = self._client.cancel()
        self._cancels_sent += 1
        for tid in cancelled:
            rec = self._records.pop(tid, None)
            if rec is None or rec is exclude:
                continue
            turn = rec.speak
            if turn is not None and turn.record is rec and turn.phase is _Phase.ACTIVE:
                self._safe_next(turn, Interrupted())
                self._complete_turn(turn)
        self._send(frames)
        self._arm_deadline()
        self._settle_idle()
        return self._cancels_sent

    def _arm_deadline(self) -> None:
        # PROTOCOL S-5: a cancel must be acknowledged; without `interrupted` within
        # cancel_timeout quiet seconds the socket's turn state is unknown.
        self._cancel_deadline()
        self._ack_deadline = self._loop.call_later(self.cancel_timeout, self._ack_overdue)

    def _cancel_deadline(self) -> None:
        if self._ack_deadline is not None:
            self._ack_deadline.cancel()
            self._ack_deadline = None

    def _ack_overdue(self) -> None:
        """No ack: abandon the socket and replay later turns on a new one (S-5, PROTOCOL 10)."""
        self._ack_deadline = None
        if not self._client.cancelling:
            return
        log.warning("rxtts: cancel not acknowledged in %.1f s; reconnecting", self.cancel_timeout)
        replay = self._client.ack_timeout()
        self._link.abandon("cancel not acknowledged")
        self._recover(ConnectionClosedError("cancel not acknowledged by the server"), replay, 0.0)

    def _send_imperative(self, text: str, flush: bool) -> None:
        if self._active is not None:
            self._report(LocalProtocolError("a speak() turn is running on this session"))
            return
        frames = self._client.send_text(text, flush)
        tid = self._client.turns[-1].id
        rec = self._records.get(tid)
        if rec is None:
            rec = self._records[tid] = _Record(tid, None)
        self._send(frames, rec)

    def _flush_imperative(self) -> None:
        tid = self._client.current_turn
        rec = self._records.get(tid) if tid is not None else None
        if rec is not None and rec.speak is None:
            self._send(self._client.flush())

    # -- waiting ------------------------------------------------------------------------

    def _settle_cancels(self) -> None:
        if self._client.cancelling == 0:
            self._acks = self._cancels_sent  # nothing outstanding (e.g. after a reconnect)
            self._cancel_deadline()
        keep = []
        for target, fut in self._ack_waiters:
            if target <= self._acks:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((target, fut))
        self._ack_waiters = keep

    def _settle_idle(self) -> None:
        if self._records or self._active is not None:
            return
        waiters, self._idle_waiters = self._idle_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def _wait_acked(self, target: int, timeout: float) -> None:
        if target <= self._acks:
            return
        fut: asyncio.Future[None] = self._loop.create_future()
        self._ack_waiters.append((target, fut))
        await self._quiet_wait(fut, timeout)

    async def _wait_idle(self, timeout: float) -> None:
        if not self._records and self._active is None:
            return
        fut: asyncio.Future[None] = self._loop.create_future()
        self._idle_waiters.append(fut)
        await self._quiet_wait(fut, timeout)

    async def _quiet_wait(self, fut: asyncio.Future[Any], timeout: float) -> bool:
        """Wait for ``fut`` until ``timeout`` seconds pass without any frame (JS semantics)."""
        start = time.monotonic()
        while not fut.done():
            remaining = max(start, self._last_activity) + timeout - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(fut), remaining)
        return True


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # reported to the turns; keep asyncio quiet


__all__ = [
    "DEFAULT_CANCEL_TIMEOUT",
    "DEFAULT_END_TIMEOUT",
    "SessionCallbacks",
    "StreamingSession",
    "Tokens",
    "as_token_observable",
]
