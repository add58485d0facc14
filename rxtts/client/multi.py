"""``MultiContextSession``: up to 20 keyed contexts (voices) on one ``/ws/tts/multi`` socket.

Multi-speaker dialogue, pre-buffering one stream while another plays, interleaved
characters (PROTOCOL 6). Two front ends share one implementation:

- Rx: :attr:`~MultiContextSession.events` is one hot observable of every event of the
  session; its ``group_by(lambda e: e.context_id)`` groups are the contexts.
  :meth:`~MultiContextSession.speak_keyed` turns ``(context_id, text)`` pairs into one
  group per context, each completing when its context closes;
  :meth:`~MultiContextSession.speak` speaks one token stream on one context, and
  disposing it closes only that context (barge-in for one speaker, the others keep
  talking)::

      dialogue = multi.speak_keyed(lines)          # Observable[GroupedObservable[str, TtsEvent]]
      dialogue.pipe(ops.flat_map(lambda g: g.pipe(ops.map(lambda e: (g.key, e)))))

- Imperative (seed ``MultiContextSession``, snake_case): ``connect(callbacks)``,
  ``create_context``, ``send``, ``flush``, ``close_context``, ``keep_alive``, ``close``,
  ``usage_for``, ``context_usage``, ``session_id``, ``active_contexts``,
  ``is_connected``; the callbacks are one more subscriber of :attr:`events`.

Admission control (PROTOCOL M-9): a 21st open context never reaches the wire. By default
``create_context`` (or a ``send`` that creates implicitly) raises
:class:`~rxtts.errors.TooManyContextsError` naming the limit; with ``wait_for_slot=True``
the creation and every later intent for that context are queued until a context closes
or times out. Re-creating an id whose close is still in flight is queued the same way,
so an id can be reused right after ``close_context``.

Errors are events: a context-scoped error is a :class:`~rxtts.events.ContextError` with
that ``context_id`` (the socket lives on, PROTOCOL M-12); a session-wide failure (socket
lost, bad key...) is a ``ContextError`` with ``context_id=None``. :attr:`events` itself
never terminates, so it survives reconnects.

Threading: the socket lives on one asyncio loop and every event is delivered on it.
Intents may be called from any thread: the protocol state is guarded by a lock (so
admission errors are raised to the caller), and frames are written on the loop
(``loop.call_soon_threadsafe``) in call order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from reactivex import Observable, abc
from reactivex.scheduler.eventloop import AsyncIOThreadSafeScheduler
from reactivex.subject import Subject

from rxtts.client.callbacks import MultiCallbackObserver, MultiContextCallbacks, session_stats
from rxtts.client.connection import Link, LinkedSession, Loss, isolated
from rxtts.client.multi_speak import (
    KeyedText,
    MultiSpeech,
    fails_every_context,
)
from rxtts.config import MultiContextConfig, VoiceSettings
from rxtts.errors import (
    ConnectionClosedError,
    LocalProtocolError,
    RxTtsError,
)
from rxtts.events import (
    ContextClosed,
    ContextError,
    SessionUsage,
    TtsEvent,
)
from rxtts.operators.flush import Flush
from rxtts.operators.keep_alive import KeepAlivePolicy
from rxtts.protocol.client import Output
from rxtts.protocol.frames import ClientFrame, Endpoint, ServerFrame
from rxtts.protocol.multi_client import ContextState, MultiClient
from rxtts.transport import ReconnectPolicy, Transport, TransportOptions, build_url

if TYPE_CHECKING:
    pass

log = logging.getLogger("rxtts.client.multi")


_Intent: TypeAlias = Callable[[], list[ClientFrame]]
_CLOSING = (ContextState.CLOSING, ContextState.CLOSING_IMMEDIATE)

DEFAULT_CLOSE_TIMEOUT = 30.0
"""``close()`` waits this long for ``session_closed`` (PY ``close()`` reads 30 s)."""
MULTI_TRANSPORT = TransportOptions(compression="deflate")
"""Socket settings of the PY multi session: permessage-deflate offered (PROTOCOL 2.2)."""


class _HasUrls(Protocol):
    """What the session needs of a :class:`rxtts.client.TTS`."""

    loop: asyncio.AbstractEventLoop
    options: TransportOptions
    transport: Transport | None
    reconnect: ReconnectPolicy

    def url_for(self, endpoint: Endpoint | str) -> str: ...


def _as_event(out: Output) -> TtsEvent:
    if isinstance(out, RxTtsError):
        return ContextError(out, context_id=out.context_id)
    return out


# -- the session --------------------------------------------------------------------------


class MultiContextSession(LinkedSession, MultiSpeech):
    """A multi-context TTS session on ``/ws/tts/multi`` (see the module docstring).

    Create it with ``tts.multi_context_session(default_voice_id=1071, language="en")``
    or directly from a server URL (``MultiContextSession("ws://127.0.0.1:8000",
    default_voice_id=1071)``) inside a running loop, or pass ``loop=`` when that loop
    runs in another thread.

    Args:
        target: a :class:`rxtts.client.TTS` (URL, key, loop and socket settings are taken
            from it) or a server base URL (``http(s)://`` or ``ws(s)://``).
        config: the session config; ``settings`` override its fields (seed defaults:
            ``sample_rate=24000``, ``cfg_scale=2.0``, ``temperature=0.5``,
            ``max_new_tokens=2048``, ``normalize=True``, ``inactivity_timeout=20.0``).
        api_key: key for a URL target (ignored for a ``TTS``, which has its own).
        callbacks: seed-style callbacks (also settable by ``connect(callbacks)``).
        wait_for_slot: queue creations beyond the 20-context limit until a slot frees,
            instead of raising :class:`~rxtts.errors.TooManyContextsError`.
        keep_alive: keep every open context alive while idle (a
            :class:`~rxtts.operators.keep_alive.KeepAlivePolicy`); ``None``: contexts
            time out after ``inactivity_timeout`` unless :meth:`hold` is used.
        transport: socket settings; default: permessage-deflate offered, as PY does.
        loop: the loop owning the socket (default: the ``TTS``'s or the running loop).
        scheduler: timer scheduler of keep-alive holds (default: the loop's).
    """

    def __init__(
        self,
        target: _HasUrls | str,
        config: MultiContextConfig | None = None,
        *,
        api_key: str | None = None,
        callbacks: MultiContextCallbacks | None = None,
        wait_for_slot: bool = False,
        keep_alive: KeepAlivePolicy | None = None,
        options: TransportOptions | None = None,
        transport: Transport | None = None,
        reconnect: ReconnectPolicy | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        scheduler: abc.SchedulerBase | None = None,
        **settings: Any,
    ) -> None:
        cfg = config or MultiContextConfig()
        if settings:
            unknown = set(settings) - {f.name for f in dataclasses.fields(cfg)}
            if unknown:
                raise TypeError(f"unknown MultiContextConfig field(s): {', '.join(sorted(unknown))}")
            cfg = dataclasses.replace(cfg, **settings)
        if isinstance(target, str):
            self._url = build_url(target, Endpoint.MULTI, api_key)
            default_options = MULTI_TRANSPORT
        else:
            self._url = target.url_for(Endpoint.MULTI)
            loop = loop or target.loop
            default_options = dataclasses.replace(target.options, compression="deflate")
            transport = transport or target.transport
            reconnect = reconnect or target.reconnect
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError(
                    "create the session inside a running asyncio loop, or pass loop= "
                    "(e.g. the loop of rxtts.connect_sync())"
                ) from None
        self._loop = loop
        self._link = Link(
            self._url,
            loop,
            self,
            options=options or default_options,
            transport=transport,
            policy=reconnect,
            name="rxtts-multi",
        )
        self._replayed: set[str] = set()
        self._scheduler = scheduler or AsyncIOThreadSafeScheduler(loop)
        self.wait_for_slot = wait_for_slot
        """Default admission policy: queue (``True``) or raise (``False``) past the limit."""
        self.keep_alive_policy = keep_alive
        """Keep-alive applied to every context created from now on (``None``: off)."""
        self._lock = threading.RLock()
        self._client = MultiClient(cfg)
        self._outbox: list[ClientFrame] = []
        self._waiting: dict[str, list[_Intent]] = {}
        self._subject: Subject[TtsEvent] = Subject()
        self._activity: Subject[str] = Subject()
        self._callbacks_sub: abc.DisposableBase | None = None
        if callbacks is not None:
            self._set_callbacks(callbacks)

    # -- properties ---------------------------------------------------------------------

    @property
    def events(self) -> Observable[TtsEvent]:
        """Hot stream of every event of the session; never terminates.

        ``events.pipe(ops.group_by(lambda e: e.context_id))`` gives one group per context
        (key ``None``: session events such as ``SessionClosed`` and session-wide errors).
        """
        return isolated(self._subject, "events")

    @property
    def config(self) -> MultiContextConfig:
        """The session config (sent on the first creating frame, PROTOCOL 6.3)."""
        return self._client.config

    @property
    def session_id(self) -> str | None:
        """Server-assigned session id (``None``: the server sent no ``session_started``)."""
        return self._client.session_id

    @property
    def active_contexts(self) -> list[str]:
        """Ids of contexts holding a slot (created, open or closing), in creation order."""
        with self._lock:
            return self._client.active_contexts

    @property
    def waiting_contexts(self) -> list[str]:
        """Ids queued for a slot (``wait_for_slot``) or for their previous close."""
        with self._lock:
            return list(self._waiting)

    @property
    def context_usage(self) -> dict[str, SessionUsage]:
        """Usage of every context closed so far, by id (seed ``contextUsage``)."""
        with self._lock:
            return dict(self._client.usage)

    def usage_for(self, context_id: str) -> SessionUsage | None:
        """Usage (audio seconds + amount charged) of a closed context; ``None`` until then."""
        with self._lock:
            return self._client.usage.get(context_id)

    # -- connection ---------------------------------------------------------------------

    async def connect(self, callbacks: MultiContextCallbacks | None = None) -> None:
        """Open the socket; ``callbacks`` replace any given before (seed ``connect``).

        Optional: intents open the socket in the background when needed.

        Raises:
            AuthenticationError, ConnectionClosedError, ...: the socket could not open.
            LocalProtocolError: the session was closed.
        """
        if callbacks is not None:
            self._set_callbacks(callbacks)
        if not self._on_own_loop():
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.connect(), self._loop))
            return
        if self._client.closed:
            raise LocalProtocolError("the multi-context session is closed")
        await self._link.connect()

    async def close(self, timeout: float = DEFAULT_CLOSE_TIMEOUT) -> None:
        """Close every context gracefully, then the socket (PROTOCOL M-8).

        Sends ``close_socket`` and waits up to ``timeout`` seconds for the server to
        finish the contexts (``context_closed`` each), send ``session_closed`` and close.
        Contexts still waiting for a slot fail with :class:`ConnectionClosedError`.
        """
        if not self._on_own_loop():
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.close(timeout), self._loop))
            return
        with self._lock:
            frames = self._client.close()
            self._outbox.extend(frames)
            waiting = list(self._waiting)
            self._waiting.clear()
        for cid in waiting:
            self._publish(ContextError(ConnectionClosedError("the session was closed"), context_id=cid))
        self._link.closing = True
        conn = self._link.connection
        if conn is None and self._link.active:
            with contextlib.suppress(Exception):
                conn = await self._link.connect()
        if conn is None or not conn.is_open:
            with self._lock:
                self._outbox.clear()
            self._activity.on_completed()
            return
        self._write()
        try:
            await asyncio.wait_for(asyncio.shield(conn.closed), timeout)
        except TimeoutError:
            log.warning("rxtts: no session_closed within %.1f s; closing the socket", timeout)
        await conn.close()
        self._activity.on_completed()

    async def __aenter__(self) -> MultiContextSession:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- imperative intents -------------------------------------------------------------

    def create_context(
        self,
        context_id: str,
        voice_id: int | None = None,
        voice_settings: VoiceSettings | None = None,
        *,
        wait_for_slot: bool | None = None,
    ) -> None:
        """Create a context, optionally with its own voice (PROTOCOL 6.3); known ids: no-op.

        Never waits for ``context_created`` (JS semantics): ``send`` may follow at once.

        Raises:
            TooManyContextsError: 20 contexts are open and ``wait_for_slot`` is off.
            LocalProtocolError: an empty id, or the session is closed.
        """
        wait = self.wait_for_slot if wait_for_slot is None else wait_for_slot
        with self._lock:
            created = self._create_locked(context_id, voice_id, voice_settings, wait)
        self._after_intent(context_id, created)

    def send(self, context_id: str, text: str, flush: bool = False) -> None:
        """Send text to a context, creating it first if unknown (PROTOCOL M-1).

        ``flush`` speaks the context's buffer, then ``final`` follows (PROTOCOL M-6).

        Raises:
            TooManyContextsError: creating the context would exceed the limit.
            LocalProtocolError: ``text`` is not a string, or the session is closed.
        """
        if not isinstance(text, str):
            raise LocalProtocolError(f"text must be a string, got {type(text).__name__}")
        client = self._client
        self._context_intent(context_id, lambda: client.send(context_id, text, flush), create=True)

    def flush(self, context_id: str) -> None:
        """Speak a context's buffer; ``final`` follows (PROTOCOL M-6).

        Raises:
            LocalProtocolError: unknown or closing context.
        """
        client = self._client
        self._context_intent(context_id, lambda: client.flush(context_id), create=False)

    def close_context(self, context_id: str, immediate: bool = False) -> None:
        """Close a context; ``immediate`` barges in: no more audio, buffer dropped (PROTOCOL M-7).

        Unknown ids are ignored. Other contexts are not affected.
        """
        client = self._client
        dropped = False
        with self._lock:
            if context_id in self._waiting:
                if immediate:
                    del self._waiting[context_id]  # never reached the wire
                    dropped = True
                else:
                    self._waiting[context_id].append(lambda: client.close_context(context_id))
            else:
                self._outbox.extend(client.close_context(context_id, immediate))
        if dropped:
            self._publish(ContextClosed(None, context_id=context_id))
        self._after_intent(None, False)

    def keep_alive(self, context_id: str) -> None:
        """Reset a context's inactivity timer without audio (``text: ""``, PROTOCOL M-4).

        No-op for unknown, closing or waiting contexts.
        """
        with self._lock:
            state = self._client.contexts.get(context_id)
            if state is None or state in _CLOSING or self._client.closed:
                return
            self._outbox.extend(self._client.keep_alive(context_id))
        self._after_intent(context_id, False)

    def update_settings(self, **settings: Any) -> None:
        """``update_settings`` for contexts created later (PROTOCOL M-11).

        The answer arrives on :attr:`events` (``SettingsUpdated``, or a ``ContextError``
        with ``context_id=None`` carrying a :class:`~rxtts.errors.ValidationError`).

        Raises:
            LocalProtocolError: an empty update or a non-updatable key.
        """
        with self._lock:
            self._outbox.extend(self._client.update_settings(**settings))
        self._after_intent(None, False)

    # -- internals: intents ---------------------------------------------------------------

    def _speak_item(self, context_id: str, item: Any) -> None:
        """One text-stream item for a context: text, ``""`` keep-alive, or FLUSH."""
        if isinstance(item, Flush):
            self.flush(context_id)
        elif not isinstance(item, str):
            raise LocalProtocolError(f"text must be a string or FLUSH, got {type(item).__name__}")
        elif item:
            self.send(context_id, item)
        else:
            self.keep_alive(context_id)

    def _create_locked(
        self,
        context_id: str,
        voice_id: int | None,
        voice_settings: VoiceSettings | None,
        wait: bool,
    ) -> bool:
        """Create now, queue, or raise; True when a creating frame was queued to send."""
        client = self._client
        if context_id in self._waiting:
            return False
        state = client.contexts.get(context_id) if isinstance(context_id, str) else None
        reuse = state in _CLOSING  # its context_closed is still in flight
        full = state is None and client.free_slots <= 0 and not client.closed
        if reuse or (full and wait):
            if not context_id:
                raise LocalProtocolError("context_id must be a non-empty string")
            self._waiting[context_id] = [lambda: client.create_context(context_id, voice_id, voice_settings)]
            return False
        frames = client.create_context(context_id, voice_id, voice_settings)  # admission (M-9)
        self._outbox.extend(frames)
        return bool(frames)

    def _context_intent(self, context_id: str, make: _Intent, create: bool) -> None:
        created = False
        with self._lock:
            state = self._client.contexts.get(context_id)
            if create and context_id not in self._waiting and (state is None or state in _CLOSING):
                created = self._create_locked(context_id, None, None, self.wait_for_slot)
            if context_id in self._waiting:
                self._waiting[context_id].append(make)
            else:
                self._outbox.extend(make())
        self._after_intent(context_id, created)

    def _after_intent(self, context_id: str | None, created: bool) -> None:
        if created and context_id is not None and self.keep_alive_policy is not None:
            self.hold(context_id, self.keep_alive_policy)
        if context_id is not None:
            self._activity.on_next(context_id)
        self._on_loop(self._write)

    def _admit_locked(self) -> tuple[list[str], list[TtsEvent]]:
        """Admit waiting contexts in order while slots are free (PROTOCOL M-9)."""
        client = self._client
        admitted: list[str] = []
        errors: list[TtsEvent] = []
        for cid in list(self._waiting):
            state = client.contexts.get(cid)
            if state in _CLOSING:
                continue  # reuse: wait for this id's own context_closed
            if state is None and client.free_slots <= 0:
                break
            intents = self._waiting.pop(cid)
            admitted.append(cid)
            for make in intents:
                try:
                    self._outbox.extend(make())
                except RxTtsError as exc:
                    errors.append(ContextError(exc, context_id=cid))
                    break
        return admitted, errors

    # -- internals: loop side -------------------------------------------------------------

    def _on_own_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def _set_callbacks(self, callbacks: MultiContextCallbacks) -> None:
        if self._callbacks_sub is not None:
            self._callbacks_sub.dispose()
        self._callbacks_sub = self._subject.subscribe(MultiCallbackObserver(callbacks))

    # -- the link (rxtts.client.connection) ----------------------------------------------

    def _write(self) -> None:
        """Write queued frames in order (loop thread); open the socket if needed."""
        with self._lock:
            frames, self._outbox = self._outbox, []
        if frames and not (self._client.closed and not self._link.active):
            self._link.send(frames)

    def on_open(self) -> None:
        self._write()

    def on_open_failed(self, error: RxTtsError) -> None:
        self._connection_gone(error)

    def on_frame(self, frame: ServerFrame) -> None:
        with self._lock:
            outputs = self._client.receive(frame)
            follow_up = self._client.take_frames()
            self._outbox.extend(follow_up)
        if follow_up:
            self._write()
        for out in outputs:
            self._publish(_as_event(out))
        if self._waiting:
            # Slots freed by context_closed / context_timeout / a refused creation.
            with self._lock:
                admitted, errors = self._admit_locked()
            for event in errors:
                self._publish(event)
            for cid in admitted:
                self._after_intent(cid, created=cid in self._client.contexts)

    def on_lost(self, loss: Loss) -> None:
        if loss.local:
            self._connection_gone(loss.error, report_idle=False)
        elif loss.restart and not self._client.closed:
            self._recover(loss)
        else:
            self._connection_gone(loss.error, report_idle=not isinstance(loss.error, ConnectionClosedError))

    def _recover(self, loss: Loss) -> None:
        """PROTOCOL 10: re-create contexts without audio in creation order, replay once.

        Contexts that already spoke (or were replayed before) fail with the typed error.
        """
        with self._lock:
            held = self._client.lost_contexts()
            replay = [(cid, f) for cid, f in self._client.connection_lost() if cid not in self._replayed]
            frames: list[ClientFrame] = []
            for cid, sent in replay:
                self._replayed.add(cid)
                frames.extend(self._client.replay(cid, sent))
            self._outbox[:0] = frames
        replayed = {cid for cid, _ in replay}
        for cid in held:
            if cid not in replayed:
                self._publish(ContextError(loss.error, context_id=cid))
        log.info("rxtts: server restarting; replaying %d context(s)", len(replayed))
        self._link.drop_pending()  # the outbox holds the replay, then later intents
        self._link.reconnect_after(self._link.policy.retry_after)

    def _connection_gone(self, err: RxTtsError, report_idle: bool = True) -> None:
        """The socket is gone: forget every context; report unless nothing was lost.

        PY multi raises and clears its state (PROTOCOL 10); the next intent reconnects.
        """
        with self._lock:
            lost = self._client.lost_contexts()
            self._client.connection_lost()
            waiting = list(self._waiting)
            self._waiting.clear()
            self._outbox.clear()
        if lost or waiting or report_idle:
            self._publish(ContextError(err, context_id=None))

    def _publish(self, event: TtsEvent) -> None:
        try:
            self._subject.on_next(event)
        except Exception:
            log.exception("rxtts: an events subscriber raised")


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "MULTI_TRANSPORT",
    "KeyedText",
    "MultiContextCallbacks",
    "MultiContextSession",
    "fails_every_context",
    "session_stats",
]
