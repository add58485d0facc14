"""The Rx side of a multi-context session: one small class per subscription.

:class:`KeyedSpeech` is one subscription of ``MultiContextSession.speak_keyed`` (one
group per context) and :class:`ContextSpeech` one of ``MultiContextSession.speak`` (one
context's events). Both hold their state in the instance (created at subscribe time,
so the observables stay cold and reusable), take one lock for everything they touch,
and follow the subscriber policy of :mod:`rxtts.client.connection`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import reactivex
from reactivex import GroupedObservable, Observable, abc
from reactivex import operators as ops
from reactivex.disposable import Disposable, SerialDisposable
from reactivex.subject import Subject

from rxtts.client.connection import deliver
from rxtts.client.tokens import Tokens, as_token_observable
from rxtts.config import MultiContextConfig, VoiceSettings
from rxtts.errors import RxTtsError, ValidationError
from rxtts.events import ContextClosed, ContextError, ContextTimeout, Final, TtsEvent
from rxtts.operators.keep_alive import KeepAlivePolicy, idle_ticks
from rxtts.operators.keep_alive import keep_alive as keep_alive_operator

if TYPE_CHECKING:
    from collections.abc import Mapping

    from rxtts.client.multi import MultiContextSession
    from rxtts.operators.flush import Flush

KeyedText: TypeAlias = "tuple[str, str | Flush]"
"""One item of :meth:`MultiContextSession.speak_keyed`: ``(context_id, text or FLUSH)``."""

ENDS_CONTEXT = (ContextClosed, ContextTimeout)
"""Events after which a context has no more events (its slot is free)."""


def fails_every_context(error: Exception) -> bool:
    """True for a session-wide error that ends every context (PROTOCOL 6.6).

    A context-less ``VALIDATION_ERROR`` only rejects an ``update_settings`` (PROTOCOL
    5.7); anything else without a ``context_id`` (socket lost, credits, model) fails all.
    """
    return not isinstance(error, ValidationError)


class KeyedSpeech:
    """One ``speak_keyed`` subscription: ``(context_id, text)`` in, groups out."""

    def __init__(
        self,
        session: MultiContextSession,
        observer: abc.ObserverBase[GroupedObservable[str, TtsEvent]],
        voices: Mapping[str, int] | None,
    ) -> None:
        self._session = session
        self._observer = observer
        self._voices = voices
        self._lock = threading.RLock()
        self._groups: dict[str, Subject[TtsEvent]] = {}
        self._source_done = False
        self._stopped = False
        self._source_sub = SerialDisposable()
        self._events_sub = SerialDisposable()

    def start(self, source: Observable[KeyedText], scheduler: abc.SchedulerBase | None) -> abc.DisposableBase:
        """Subscribe to the session's events, then to ``source``."""
        self._events_sub.disposable = self._session._subject.subscribe(self._on_event)
        self._source_sub.disposable = source.subscribe(
            self._on_item, self._on_source_error, self._on_source_completed, scheduler=scheduler
        )
        return Disposable(self._dispose)

    def _stop(self) -> list[str]:
        self._stopped = True
        open_ids = list(self._groups)
        self._groups.clear()
        self._source_sub.dispose()
        self._events_sub.dispose()
        return open_ids

    def _finish_if_done(self) -> None:
        if self._source_done and not self._groups and not self._stopped:
            self._stop()
            self._observer.on_completed()

    def _fail(self, error: Exception) -> None:
        failed = list(self._groups.values())
        for cid in self._stop():
            with contextlib.suppress(RxTtsError):
                self._session.close_context(cid, immediate=True)
        for group in failed:
            group.on_error(error)
        self._observer.on_error(error)

    def _on_event(self, event: TtsEvent) -> None:
        with self._lock:
            if not self._stopped:
                self._route(event)

    def _route(self, event: TtsEvent) -> None:
        cid = event.context_id
        if isinstance(event, ContextError) and cid is None:
            if fails_every_context(event.error):
                self._fail(event.error)
            return
        group = self._groups.get(cid) if cid is not None else None
        if group is None or cid is None:
            return
        if isinstance(event, ContextError):
            del self._groups[cid]
            group.on_error(event.error)
            self._finish_if_done()
            return
        if not deliver(group, event, "speak_keyed() group"):
            return
        if isinstance(event, ENDS_CONTEXT):
            del self._groups[cid]
            group.on_completed()
            self._finish_if_done()

    def _on_item(self, item: KeyedText) -> None:
        with self._lock:
            if self._stopped:
                return
            try:
                cid, text = item
                if cid not in self._groups:
                    self._session.create_context(cid, self._voices.get(cid) if self._voices else None)
                    self._groups[cid] = Subject()
                    self._observer.on_next(GroupedObservable(cid, self._groups[cid]))
                self._session._speak_item(cid, text)
            except Exception as exc:
                self._fail(exc)

    def _on_source_error(self, error: Exception) -> None:
        with self._lock:
            if not self._stopped:
                self._fail(error)

    def _on_source_completed(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._source_done = True
            for cid in list(self._groups):
                with contextlib.suppress(RxTtsError):
                    self._session.close_context(cid)
            self._finish_if_done()

    def _dispose(self) -> None:
        with self._lock:
            if self._stopped:
                return
            open_ids = self._stop()
        for cid in open_ids:
            with contextlib.suppress(RxTtsError):
                self._session.close_context(cid, immediate=True)


class ContextSpeech:
    """One ``speak(context_id, tokens)`` subscription: one context's events."""

    def __init__(
        self,
        session: MultiContextSession,
        observer: abc.ObserverBase[TtsEvent],
        context_id: str,
        voice_id: int | None,
        voice_settings: VoiceSettings | None,
    ) -> None:
        self._session = session
        self._observer = observer
        self._cid = context_id
        self._voice_id = voice_id
        self._voice_settings = voice_settings
        self._lock = threading.RLock()
        self._done = False
        self._flushed = False
        self._closing = False
        self._spoke = False
        self._tokens_sub = SerialDisposable()
        self._events_sub = SerialDisposable()

    def start(self, tokens: Observable[Any], scheduler: abc.SchedulerBase | None) -> abc.DisposableBase:
        """Create the context, then send ``tokens`` as they arrive."""
        self._events_sub.disposable = self._session._subject.subscribe(self._on_event)
        with self._lock:
            try:
                self._session.create_context(self._cid, self._voice_id, self._voice_settings)
            except Exception as exc:
                self._end()
                self._observer.on_error(exc)
                return Disposable()
        self._tokens_sub.disposable = tokens.subscribe(
            self._on_token, self._on_tokens_error, self._on_tokens_done, scheduler=scheduler
        )
        return Disposable(self._dispose)

    def _end(self) -> None:
        self._done = True
        self._tokens_sub.dispose()
        self._events_sub.dispose()

    def _fail(self, error: Exception, close: bool) -> None:
        self._end()
        if close:
            with contextlib.suppress(RxTtsError):
                self._session.close_context(self._cid, immediate=True)
        self._observer.on_error(error)

    def _on_event(self, event: TtsEvent) -> None:
        with self._lock:
            if not self._done:
                self._route(event)

    def _route(self, event: TtsEvent) -> None:
        if isinstance(event, ContextError):
            if event.context_id == self._cid:
                self._fail(event.error, close=False)
            elif event.context_id is None and fails_every_context(event.error):
                self._fail(event.error, close=True)
            return
        if event.context_id != self._cid:
            return
        if not deliver(self._observer, event, "speak()"):
            self._dispose_locked()  # the subscriber policy: like a dispose (barge-in)
            return
        if isinstance(event, ENDS_CONTEXT):
            self._end()
            self._observer.on_completed()
        elif isinstance(event, Final) and self._flushed and not self._closing:
            self._closing = True
            with contextlib.suppress(RxTtsError):
                self._session.close_context(self._cid)

    def _on_token(self, token: Any) -> None:
        with self._lock:
            if self._done:
                return
            try:
                if isinstance(token, str) and token:
                    self._spoke = True
                self._session._speak_item(self._cid, token)
            except Exception as exc:
                self._fail(exc, close=True)

    def _on_tokens_error(self, error: Exception) -> None:
        with self._lock:
            if not self._done:
                self._fail(error, close=True)

    def _on_tokens_done(self) -> None:
        with self._lock:
            if self._done:
                return
            self._flushed = True
            try:
                if self._spoke:
                    self._session.flush(self._cid)
                else:
                    self._closing = True  # nothing to speak: no final to wait for
                    self._session.close_context(self._cid)
            except Exception as exc:
                self._fail(exc, close=True)

    def _dispose(self) -> None:
        with self._lock:
            self._dispose_locked()

    def _dispose_locked(self) -> None:
        if self._done:
            return
        self._end()
        with contextlib.suppress(RxTtsError):
            self._session.close_context(self._cid, immediate=True)


class MultiSpeech:
    """The Rx API of :class:`~rxtts.client.multi.MultiContextSession` (a mixin)."""

    _subject: Subject[TtsEvent]
    _activity: Subject[str]
    _loop: asyncio.AbstractEventLoop
    _scheduler: abc.SchedulerBase
    keep_alive_policy: KeepAlivePolicy | None

    @property
    def config(self) -> MultiContextConfig:
        raise NotImplementedError

    def keep_alive(self, context_id: str) -> None:
        raise NotImplementedError

    def speak_keyed(
        self,
        source: Observable[KeyedText],
        voices: Mapping[str, int] | None = None,
    ) -> Observable[GroupedObservable[str, TtsEvent]]:
        """Speak ``(context_id, text)`` pairs; one group of events per context.

        Each pair is sent to its context as it arrives (``FLUSH`` as text flushes the
        context, ``""`` keeps it alive); a context is created when its id first appears,
        with ``voices[id]`` if given (else the default voice or a voice it already has).
        When ``source`` completes every context of this subscription is closed
        gracefully; a group completes with its ``ContextClosed`` (or
        ``ContextTimeout``) and errors on a ``ContextError`` of its context; the result
        completes when ``source`` and all groups have::

            source:  -(a,"Hi.")-(b,"Yo.")-(a,F)--|
            result:  -A---------B-----------------------|
            A:        ---c--g--x--x--f---f--C|       (c created, g generation_started,
            B:                  ---c--g--x--f--C|    x audio, f final, C ContextClosed)

        Groups are hot, like ``group_by``'s: subscribe to each when it is emitted.
        Disposing closes this subscription's open contexts with ``immediate=True``.
        A local admission error (:class:`~rxtts.errors.TooManyContextsError`) errors
        the result.
        """

        def subscribe(
            observer: abc.ObserverBase[GroupedObservable[str, TtsEvent]],
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            return KeyedSpeech(cast("MultiContextSession", self), observer, voices).start(source, scheduler)

        return Observable(subscribe)

    def speak(
        self,
        context_id: str,
        tokens: Tokens,
        *,
        voice_id: int | None = None,
        voice_settings: VoiceSettings | None = None,
        keep_alive_every: float | None = None,
    ) -> Observable[TtsEvent]:
        """Speak a token stream on one context; the events of that context.

        Subscribing creates the context (with ``voice_id``/``voice_settings``); each token
        is sent as it arrives (``FLUSH`` flushes); completion of ``tokens`` sends a flush,
        the ``final`` that answers it closes the context gracefully, and the result
        completes with ``ContextClosed`` (or ``ContextTimeout``)::

            tokens:  -"Hi "-"there."--|
            wire:    -{text}-{text}---{flush}---------{close_context}
            result:  -c-----------g--x--x--f-----------f--C|

        Disposing before ``C`` sends ``close_context`` with ``immediate=True``: this
        speaker stops, the other contexts keep talking (barge-in for one speaker).
        ``keep_alive_every`` inserts keep-alives while ``tokens`` is silent that long
        (see :func:`~rxtts.operators.keep_alive.keep_alive`).
        """
        source = as_token_observable(tokens, self._loop)
        if keep_alive_every is not None:
            source = source.pipe(keep_alive_operator(keep_alive_every))

        def subscribe(
            observer: abc.ObserverBase[TtsEvent], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            speech = ContextSpeech(
                cast("MultiContextSession", self), observer, context_id, voice_id, voice_settings
            )
            return speech.start(source, scheduler)

        return Observable(subscribe)

    def hold(
        self,
        context_id: str,
        policy: KeepAlivePolicy | None = None,
        *,
        until: Observable[Any] | None = None,
    ) -> abc.DisposableBase:
        """Keep an idle context alive until the returned disposable is disposed.

        Whenever nothing was sent to the context for ``policy.interval`` seconds, a
        keep-alive (``text: ""``) is sent (PROTOCOL M-4). Stops by itself when the
        context closes, times out or fails, or when ``until`` emits.
        Default policy: the session's, else half of ``inactivity_timeout``.
        """
        chosen = (
            policy or self.keep_alive_policy or KeepAlivePolicy.for_timeout(self.config.inactivity_timeout)
        )

        def ends(event: TtsEvent) -> bool:
            if isinstance(event, ContextError):
                return event.context_id == context_id or (
                    event.context_id is None and fails_every_context(event.error)
                )
            return event.context_id == context_id and isinstance(event, ENDS_CONTEXT)

        ended: Observable[Any] = self._subject.pipe(ops.filter(ends))
        stop = ended if until is None else reactivex.merge(ended, until)
        ticks = self._activity.pipe(
            ops.filter(lambda cid: cid == context_id),
            idle_ticks(chosen.interval),
            ops.take_until(stop),
        )
        return ticks.subscribe(lambda _: self.keep_alive(context_id), scheduler=self._scheduler)


__all__ = ["ENDS_CONTEXT", "ContextSpeech", "KeyedSpeech", "KeyedText", "MultiSpeech", "fails_every_context"]
