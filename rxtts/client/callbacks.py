"""The seed's callbacks, snake_case, as subscribers of a session's event stream.

Every callback is optional and runs on the session's loop thread; one that raises is
logged with its name and the session goes on (the callbacks are application code, the
session must survive them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reactivex import abc

from rxtts.events import (
    AudioChunk,
    ChunkComplete,
    ContextClosed,
    ContextCreated,
    ContextError,
    ContextTimeout,
    Final,
    Interrupted,
    SessionClosed,
    SessionStarted,
    SessionUsage,
    TtsEvent,
    TurnMetrics,
    WordTimestamp,
    WordTimestamps,
)

log = logging.getLogger("rxtts.client")


# -- streaming session ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionCallbacks:
    """The seed's ``StreamingSessionCallbacks``, snake_case; every one optional."""

    on_chunk: Callable[[AudioChunk], None] | None = None
    """Every audio frame."""
    on_chunk_complete: Callable[[int, float, float], None] | None = None
    """``(chunk_id, audio_seconds, gen_ms)`` when a text chunk's audio is complete."""
    on_final: Callable[[Final], None] | None = None
    """All audio of a turn was delivered (``final``)."""
    on_session_closed: Callable[[float], None] | None = None
    """A turn ended; the argument is its total audio seconds (usage: ``last_usage``)."""
    on_interrupted: Callable[[], None] | None = None
    """The server acknowledged a cancel."""
    on_error: Callable[[Exception], None] | None = None
    """A typed error (:mod:`rxtts.errors`)."""
    on_word_timestamps: Callable[[tuple[WordTimestamp, ...]], None] | None = None
    """Word alignment of a chunk (when ``word_timestamps=True``)."""
    on_metrics: Callable[[TurnMetrics], None] | None = None
    """Client-side metrics of a finished turn (TTFB, TTFA, ...)."""


def _guard(name: str, fn: Callable[..., object], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("rxtts: callback %s raised", name)


class StreamCallbackObserver(abc.ObserverBase[TtsEvent]):
    """Routes the session's event stream to the seed-style callbacks."""

    __slots__ = ("_cb",)

    def __init__(self, callbacks: SessionCallbacks) -> None:
        self._cb = callbacks

    def on_next(self, value: TtsEvent) -> None:
        cb = self._cb
        match value:
            case AudioChunk():
                if cb.on_chunk:
                    _guard("on_chunk", cb.on_chunk, value)
            case ChunkComplete():
                if cb.on_chunk_complete:
                    _guard(
                        "on_chunk_complete",
                        cb.on_chunk_complete,
                        value.chunk_id,
                        value.audio_seconds,
                        value.gen_ms,
                    )
            case Final():
                if cb.on_final:
                    _guard("on_final", cb.on_final, value)
            case SessionClosed():
                if cb.on_session_closed:
                    _guard("on_session_closed", cb.on_session_closed, value.total_audio_seconds)
            case Interrupted():
                if cb.on_interrupted:
                    _guard("on_interrupted", cb.on_interrupted)
            case WordTimestamps():
                if cb.on_word_timestamps:
                    _guard("on_word_timestamps", cb.on_word_timestamps, value.words)
            case TurnMetrics():
                if cb.on_metrics:
                    _guard("on_metrics", cb.on_metrics, value)
            case _:
                pass

    def on_error(self, error: Exception) -> None:
        if self._cb.on_error:
            _guard("on_error", self._cb.on_error, error)

    def on_completed(self) -> None:
        pass


# -- multi-context session -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MultiContextCallbacks:
    """The seed's ``MultiContextCallbacks``, snake_case; every one optional.

    Called on the session's loop thread; an exception raised by a callback is logged.
    """

    on_session_started: Callable[[str], object] | None = None
    """``(session_id)`` when the server announces a session (optional on the wire)."""
    on_context_created: Callable[[str], object] | None = None
    """``(context_id)`` once the server created a context."""
    on_chunk: Callable[[AudioChunk], object] | None = None
    """Every audio frame; ``chunk.context_id`` names its context."""
    on_final: Callable[[str], object] | None = None
    """``(context_id)``: all audio admitted before a flush was delivered; also fires
    before a graceful ``on_context_closed``."""
    on_context_closed: Callable[[str, SessionUsage | None], object] | None = None
    """``(context_id, usage)``: the context ended; its usage is also in ``usage_for``."""
    on_context_timeout: Callable[[str], object] | None = None
    """``(context_id)``: the server closed an idle context (its slot is free)."""
    on_session_closed: Callable[[Mapping[str, Any]], object] | None = None
    """``(stats)`` after ``close()``: ``total_audio_seconds`` etc. as the server sent them."""
    on_error: Callable[[Exception, str | None], object] | None = None
    """``(error, context_id)``: a typed error; ``context_id`` is ``None`` when the whole
    session failed."""


def session_stats(event: SessionClosed) -> dict[str, Any]:
    """The ``on_session_closed`` argument for a :class:`SessionClosed` event."""
    stats: dict[str, Any] = {
        "total_audio_seconds": event.total_audio_seconds,
        "total_text_chunks": event.total_text_chunks,
        "total_audio_chunks": event.total_audio_chunks,
    }
    if event.usage is not None:
        stats["usage"] = event.usage
    return stats


class MultiCallbackObserver(abc.ObserverBase[TtsEvent]):
    """Routes the session's event stream to the seed-style callbacks."""

    __slots__ = ("_cb",)

    def __init__(self, callbacks: MultiContextCallbacks) -> None:
        self._cb = callbacks

    def on_next(self, value: TtsEvent) -> None:
        cb, cid = self._cb, value.context_id
        match value:
            case AudioChunk():
                if cb.on_chunk:
                    _guard("on_chunk", cb.on_chunk, value)
            case Final():
                if cb.on_final and cid is not None:
                    _guard("on_final", cb.on_final, cid)
            case ContextCreated():
                if cb.on_context_created and cid is not None:
                    _guard("on_context_created", cb.on_context_created, cid)
            case ContextClosed():
                if cb.on_context_closed and cid is not None:
                    _guard("on_context_closed", cb.on_context_closed, cid, value.usage)
            case ContextTimeout():
                if cb.on_context_timeout and cid is not None:
                    _guard("on_context_timeout", cb.on_context_timeout, cid)
            case SessionStarted():
                if cb.on_session_started:
                    _guard("on_session_started", cb.on_session_started, value.session_id)
            case SessionClosed():
                if cb.on_session_closed:
                    _guard("on_session_closed", cb.on_session_closed, session_stats(value))
            case ContextError():
                if cb.on_error:
                    _guard("on_error", cb.on_error, value.error, cid)
            case _:
                pass

    def on_error(self, error: Exception) -> None:  # pragma: no cover - events never errors
        if self._cb.on_error:
            _guard("on_error", self._cb.on_error, error, None)

    def on_completed(self) -> None:
        pass


__all__ = [
    "MultiCallbackObserver",
    "MultiContextCallbacks",
    "SessionCallbacks",
    "StreamCallbackObserver",
    "session_stats",
]
