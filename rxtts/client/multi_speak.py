"""The Rx side of a multi-context session: one small class per subscription.

:class:`KeyedSpeech` is one subscription of ``MultiContextSession.speak_keyed`` (one
group per context) and :class:`ContextSpeech` one of ``MultiContextSession.speak`` (one
context's events). Both hold their state in the instance (created at subscribe time,
so the observables stay cold and reusable), take one lock for everything they touch,
and follow the subscriber policy of :mod:`rxtts.client.connection`.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any, TypeAlias

from reactivex import GroupedObservable, Observable, abc
from reactivex.disposable import Disposable, SerialDisposable
from reactivex.subject import Subject

from rxtts.client.connection import deliver
from rxtts.config import VoiceSettings
from rxtts.errors import RxTtsError, ValidationError
from rxtts.events import ContextClosed, ContextError, ContextTimeout, Final, TtsEvent

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


__all__ = ["ENDS_CONTEXT", "ContextSpeech", "KeyedSpeech", "KeyedText", "fails_every_context"]
