"""The ``speak()`` turns of a streaming session: queueing, tokens, endings.

A mixin of :class:`~rxtts.client.session.StreamingSession` (the state it uses is
declared below): each ``speak()`` subscription is a :class:`_SpeakTurn`, queued until
the previous turn is closed on the wire (turns are sequential on one socket), fed by a
:class:`_TokenObserver` that hops every token onto the session's loop, and ended by
``session_closed`` (completion), a dispose (barge-in: cancel), a token error or a
subscriber that raises (the policy of :mod:`rxtts.client.connection`).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Any

from reactivex import Observable, abc

from rxtts.client.connection import deliver, finish
from rxtts.errors import LocalProtocolError
from rxtts.events import SessionClosed, TtsEvent
from rxtts.operators.metrics import MetricsAccumulator
from rxtts.protocol.client import StreamClient
from rxtts.protocol.frames import ClientFrame


class _Phase(Enum):
    QUEUED = auto()
    ACTIVE = auto()
    DONE = auto()


@dataclass(eq=False, slots=True)
class _SpeakTurn:
    """One ``speak()`` subscription."""

    observer: abc.ObserverBase[TtsEvent]
    phase: _Phase = _Phase.QUEUED
    buffer: list[str] = field(default_factory=list)
    input_done: bool = False
    tokens_sub: abc.DisposableBase | None = None
    record: _Record | None = None
    early_closes: int = 0


@dataclass(eq=False, slots=True)
class _Record:
    """One turn on the wire (a ``StreamClient`` turn id)."""

    id: int
    speak: _SpeakTurn | None
    metrics: MetricsAccumulator = field(default_factory=MetricsAccumulator)
    replays: int = 0


class _TokenObserver(abc.ObserverBase[Any]):
    """Receives a turn's tokens on any thread and hands them to the loop."""

    __slots__ = ("_session", "_turn")

    def __init__(self, session: SpeakTurns, turn: _SpeakTurn) -> None:
        self._session = session
        self._turn = turn

    def on_next(self, value: Any) -> None:
        self._session._on_loop(self._session._token, self._turn, value)

    def on_error(self, error: Exception) -> None:
        self._session._on_loop(self._session._tokens_failed, self._turn, error)

    def on_completed(self) -> None:
        self._session._on_loop(self._session._tokens_done, self._turn)


# -- the session --------------------------------------------------------------------------


class SpeakTurns:
    """The ``speak()`` side of a streaming session (a mixin; see the module docstring)."""

    _client: StreamClient
    _records: dict[int, _Record]
    _queue: deque[_SpeakTurn]
    _active: _SpeakTurn | None

    def _on_loop(self, fn: Callable[..., None], *args: Any) -> None:
        raise NotImplementedError

    def _send(self, frames: list[ClientFrame], rec: _Record | None = None) -> None:
        raise NotImplementedError

    def _ensure_link(self) -> None:
        raise NotImplementedError

    def _cancel_all(self, exclude: _Record | None = None) -> int:
        raise NotImplementedError

    def _settle_idle(self) -> None:
        raise NotImplementedError

    # -- outbound: turns ----------------------------------------------------------------

    def _enqueue(self, turn: _SpeakTurn, source: Observable[Any]) -> None:
        self._queue.append(turn)
        self._pump()
        sub = source.subscribe(_TokenObserver(self, turn))
        if turn.phase is _Phase.DONE:
            sub.dispose()
        else:
            turn.tokens_sub = sub

    def _pump(self) -> None:
        # Turns are sequential on one socket: start the next when nothing is in flight.
        while self._active is None and self._queue and not self._client.turns:
            turn = self._queue.popleft()
            turn.phase = _Phase.ACTIVE
            self._active = turn
            self._ensure_link()
            buffered, turn.buffer = turn.buffer, []
            for token in buffered:
                if turn.phase is not _Phase.ACTIVE:
                    break
                self._speak_text(turn, token)
            if turn.input_done and turn.phase is _Phase.ACTIVE:
                self._speak_end(turn)

    def _token(self, turn: _SpeakTurn, token: Any) -> None:
        if turn.phase is _Phase.DONE:
            return
        if not isinstance(token, str):
            if getattr(token, "name", None) == "FLUSH":
                return  # one flush per turn, sent when tokens complete
            self._tokens_failed(turn, LocalProtocolError(f"tokens must be str, got {type(token).__name__}"))
            return
        if not token:
            return
        if turn.phase is _Phase.QUEUED:
            turn.buffer.append(token)  # waits for the previous turn
        else:
            self._speak_text(turn, token)

    def _speak_text(self, turn: _SpeakTurn, text: str, flush: bool = False) -> None:
        frames = self._client.send_text(text, flush)
        rec = turn.record
        if rec is None:
            rec = _Record(self._client.turns[-1].id, turn)
            turn.record = rec
            self._records[rec.id] = rec
        self._send(frames, rec)

    def _speak_end(self, turn: _SpeakTurn) -> None:
        if turn.record is None and turn.early_closes:
            # Text sent while the server auto-flushed may sit in a new server turn: an
            # empty flushing text ends it, or gets an empty session_closed (PROTOCOL S-4).
            self._speak_text(turn, "", flush=True)
            return
        if turn.record is None:
            # Nothing was sent: an empty turn ends locally, without traffic.
            metrics = MetricsAccumulator().result()
            self._safe_next(turn, metrics)
            self._safe_next(turn, SessionClosed())
            self._complete_turn(turn)
            self._pump()
            return
        self._send(self._client.flush())

    def _tokens_done(self, turn: _SpeakTurn) -> None:
        if turn.phase is _Phase.DONE or turn.input_done:
            return
        turn.input_done = True
        if turn.phase is _Phase.ACTIVE:
            self._speak_end(turn)

    def _tokens_failed(self, turn: _SpeakTurn, error: Exception) -> None:
        if turn.phase is _Phase.DONE:
            return
        rec = turn.record
        if rec is not None and rec.id in self._records:
            self._cancel_all(exclude=rec)
            self._records.pop(rec.id, None)
        self._fail_turn(turn, error)
        self._pump()

    def _dispose_turn(self, turn: _SpeakTurn) -> None:
        if turn.phase is _Phase.DONE:
            return
        active = turn.phase is _Phase.ACTIVE
        rec = turn.record
        self._finish_turn(turn)
        if active and rec is not None and rec.id in self._records:
            self._cancel_all(exclude=rec)  # PROTOCOL 5.6: barge-in
            self._records.pop(rec.id, None)
        self._settle_idle()
        self._pump()

    # -- turn endings -------------------------------------------------------------------

    def _finish_turn(self, turn: _SpeakTurn) -> None:
        turn.phase = _Phase.DONE
        if self._active is turn:
            self._active = None
        with contextlib.suppress(ValueError):
            self._queue.remove(turn)
        sub, turn.tokens_sub = turn.tokens_sub, None
        if sub is not None:
            sub.dispose()

    def _safe_next(self, turn: _SpeakTurn, event: TtsEvent) -> None:
        # The subscriber policy (rxtts.client.connection): a raising subscriber is
        # unsubscribed and its turn is cancelled on the server, as a dispose would.
        if turn.phase is not _Phase.DONE and not deliver(turn.observer, event, "speak()"):
            self._dispose_turn(turn)

    def _complete_turn(self, turn: _SpeakTurn) -> None:
        if turn.phase is _Phase.DONE:
            return
        self._finish_turn(turn)
        finish(turn.observer, None, "speak()")

    def _fail_turn(self, turn: _SpeakTurn, err: Exception) -> None:
        if turn.phase is _Phase.DONE:
            return
        self._finish_turn(turn)
        finish(turn.observer, err, "speak()")

    def _fail_record(self, rec: _Record, err: Exception) -> None:
        self._records.pop(rec.id, None)
        turn = rec.speak
        if turn is not None and turn.record is rec:
            self._fail_turn(turn, err)


__all__ = ["SpeakTurns"]
