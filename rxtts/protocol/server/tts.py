"""The ``/ws/tts`` machine and its table (PROTOCOL 4, T-1..T-3)."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum, auto

from rxtts.config import DEFAULT_SCHEDULE
from rxtts.errors import ProtocolError
from rxtts.events import Encoding
from rxtts.protocol.frames import (
    AudioFrame,
    ClientFrame,
    ErrorFrame,
    FinalFrame,
    ServerFrame,
    TtsRequest,
    WireConfig,
    WordTimestampsFrame,
)
from rxtts.protocol.server._core import (
    AppendText,
    CancelPipeline,
    Command,
    Flush,
    OpenPipeline,
    Table,
    _Machine,
    _Pipeline,
    _row,
    _send,
    _Step,
    missing_voice_error,
    protocol_error,
)

# -- /ws/tts -----------------------------------------------------------------------------


class TtsState(Enum):
    """A ``/ws/tts`` socket."""

    IDLE = auto()
    """No request pending."""
    BUSY = auto()
    """Requests pending; the first one speaks."""


class TtsEvent(Enum):
    """Requests, refusals and pipeline events."""

    REQUEST = auto()
    REFUSAL = auto()
    """An invalid request (T-3) or a refusal of the I/O layer (unknown voice, limits)."""
    DONE = auto()
    LAST_DONE = auto()
    """The only pending request is spoken."""
    ERROR = auto()
    LAST_ERROR = auto()


class TtsEffect(Enum):
    """What a tts transition does."""

    ENQUEUE = auto()
    """The whole text as one flushed pipeline, started after the ones before (T-2)."""
    REPLY = auto()
    """T-2: the refusal now, or owed right after the last pending request's answer."""
    FINAL = auto()
    """T-1: ``final`` with statistics and usage."""
    FAIL = auto()
    """An error frame instead of ``final`` (4.2)."""
    PAY_OWED = auto()
    """Refusals owed behind this request; then start the next request."""


_TTS, _TTE, _TTF = TtsState, TtsEvent, TtsEffect
TTS_TABLE: Table[TtsState, TtsEvent, TtsEffect] = {
    **_row([_TTS.IDLE, _TTS.BUSY], _TTE.REQUEST, _TTS.BUSY, _TTF.ENQUEUE, rule="T-1, T-2"),
    **_row([_TTS.IDLE, _TTS.BUSY], _TTE.REFUSAL, None, _TTF.REPLY, rule="T-2, T-3"),
    **_row([_TTS.BUSY], _TTE.DONE, None, _TTF.FINAL, _TTF.PAY_OWED, rule="T-1"),
    **_row([_TTS.BUSY], _TTE.LAST_DONE, _TTS.IDLE, _TTF.FINAL, _TTF.PAY_OWED, rule="T-1"),
    **_row([_TTS.BUSY], _TTE.ERROR, None, _TTF.FAIL, _TTF.PAY_OWED, rule="4.2"),
    **_row([_TTS.BUSY], _TTE.LAST_ERROR, _TTS.IDLE, _TTF.FAIL, _TTF.PAY_OWED, rule="4.2"),
}
"""Executed by :meth:`TtsServer.receive`, ``refuse``, ``flush_done`` and ``error``."""


@dataclass(slots=True)
class _TtsStep(_Step):
    reply: ServerFrame | None = None
    native_samples: int = 0


@dataclass(slots=True)
class TtsServer(_Machine):
    """The ``/ws/tts`` machine: one request at a time, in arrival order (PROTOCOL T-1..3)."""

    state: TtsState = TtsState.IDLE
    queue: list[str] = field(default_factory=list)
    _counter: itertools.count[int] = field(default_factory=itertools.count)
    gen_ms: dict[str, float] = field(default_factory=dict)
    owed: dict[str, list[ServerFrame]] = field(default_factory=dict)
    """Error replies queued behind a pending request, sent after its answer (T-2)."""

    def receive(self, frame: ClientFrame, now: float = 0.0) -> list[Command]:
        """Commands for one request."""
        if not isinstance(frame, TtsRequest):
            return self.refuse(protocol_error(f"{type(frame).__name__} is not allowed on /ws/tts"))
        if frame.config.voice_id is None:
            return self.refuse(missing_voice_error())  # PROTOCOL T-3
        if not frame.text.strip():
            return self.refuse(ErrorFrame("text must not be empty", "VALIDATION_ERROR", 400))
        return self._run(TtsEvent.REQUEST, _TtsStep(frame, now=now))

    def refuse(self, frame: ServerFrame) -> list[Command]:
        """An answer that is not audio, in arrival order (T-2: never inside another's)."""
        return self._run(TtsEvent.REFUSAL, _TtsStep(reply=frame))

    def _run(self, event: TtsEvent, step: _TtsStep) -> list[Command]:
        row = TTS_TABLE.get((self.state, event))
        if row is None:
            return []
        for effect in row.effects:
            _TTS_EFFECTS[effect](self, step)
        self.state = row.next
        return step.cmds

    def _enqueue(self, step: _TtsStep) -> None:
        frame = step.frame
        assert isinstance(frame, TtsRequest)
        key = f"req-{next(self._counter)}"
        start = not self.queue
        self.pipelines[key] = _Pipeline(key, frame.config, characters=len(frame.text), text=frame.text)
        self.pipelines[key].started = start
        self.queue.append(key)
        resolved = frame.config.merged(WireConfig(chunk_length_schedule=DEFAULT_SCHEDULE))
        step.cmds += [OpenPipeline(key, resolved, start=start), AppendText(key, frame.text), Flush(key)]

    def _reply(self, step: _TtsStep) -> None:
        assert step.reply is not None
        if self.queue:
            self.owed.setdefault(self.queue[-1], []).append(step.reply)
        else:
            step.cmds.append(_send(step.reply))

    def _final(self, step: _TtsStep) -> None:
        assert step.key is not None
        p = self.pipelines.pop(step.key)
        gen_ms = self.gen_ms.pop(step.key, 0.0)
        dur_ms = p.audio_seconds * 1000.0
        stats: Mapping[str, float | int] = {
            "chunks": p.next_idx,
            "total_samples": step.native_samples,
            "dur_ms": round(dur_ms, 2),
            "gen_ms": round(gen_ms, 2),
            "rtf": round(gen_ms / dur_ms, 4) if dur_ms else 0.0,
        }
        step.frames.append(FinalFrame(stats=stats, usage=self._usage(p)))

    def _fail(self, step: _TtsStep) -> None:
        assert step.key is not None and step.exc is not None
        del self.pipelines[step.key]
        self.gen_ms.pop(step.key, None)
        exc = step.exc
        step.cmds.append(CancelPipeline(step.key))
        step.frames.append(ErrorFrame(exc.message, exc.error_code or "INTERNAL_ERROR", exc.status or 500))

    def _pay_owed(self, step: _TtsStep) -> None:
        assert step.key is not None
        self.queue.remove(step.key)
        step.cmds.append(_send(*step.frames, *self.owed.pop(step.key, [])))
        step.cmds += self._start_next(self.queue)

    def chunk_started(self, key: str, text: str) -> list[ServerFrame]:
        """tts has no chunk frames; only count the chunk."""
        super(TtsServer, self).chunk_started(key, text)
        return []

    def audio(
        self, key: str, data: bytes, enc: Encoding, sample_rate: int, samples: int
    ) -> list[ServerFrame]:
        """Audio without ``chunk_id`` (PROTOCOL 3.2: ``chunk_id`` is stream/multi only)."""
        frames = super(TtsServer, self).audio(key, data, enc, sample_rate, samples)
        return [dataclasses.replace(f, chunk_id=None) for f in frames if isinstance(f, AudioFrame)]

    def word_timestamps(self, key: str, frame: WordTimestampsFrame) -> list[ServerFrame]:
        """Alignment without ``chunk_id`` (PROTOCOL 4.3), over the whole request."""
        frames = super(TtsServer, self).word_timestamps(key, frame)
        return [WordTimestampsFrame(f.words) for f in frames if isinstance(f, WordTimestampsFrame)]

    def chunk_done(self, key: str, audio_seconds: float, gen_ms: float) -> list[ServerFrame]:
        """Accumulate generation time for the request's ``final``."""
        if self._live(key) is not None:
            self.gen_ms[key] = self.gen_ms.get(key, 0.0) + gen_ms
        super(TtsServer, self).chunk_done(key, audio_seconds, gen_ms)
        return []

    def timer_fired(self, key: str, now: float = math.inf) -> list[Command]:
        """``/ws/tts`` arms no timers."""
        return []

    def _last(self, key: str) -> bool:
        return self.queue == [key]

    def flush_done(self, key: str, native_samples: int = 0) -> list[Command]:
        """The request is spoken: one ``final`` with statistics (PROTOCOL T-1)."""
        if self._live(key) is None:
            return []
        event = TtsEvent.LAST_DONE if self._last(key) else TtsEvent.DONE
        return self._run(event, _TtsStep(key=key, native_samples=native_samples))

    def error(self, key: str, exc: ProtocolError) -> list[Command]:
        """The request failed: an error frame instead of ``final`` (PROTOCOL 4.2)."""
        if self._live(key) is None:
            return []
        event = TtsEvent.LAST_ERROR if self._last(key) else TtsEvent.ERROR
        return self._run(event, _TtsStep(key=key, exc=exc))


_TTS_EFFECTS: Mapping[TtsEffect, Callable[[TtsServer, _TtsStep], None]] = {
    fx: getattr(TtsServer, f"_{fx.name.lower()}") for fx in TtsEffect
}
