"""Client state machines: intents in, frames out; server frames in, typed events out.

Sans-I/O in the h11 style. The session layer calls an intent (``send_text``,
``cancel``...) and writes the returned frames to the socket; it feeds every decoded
server frame to ``receive`` and delivers the returned events. Illegal intents raise
:class:`~rxtts.errors.LocalProtocolError`.

Stream turn states (PROTOCOL 5)::

    transitions            IDLE        STREAMING    FLUSHING     CANCELLING
    send_text              STREAMING   STREAMING    +next turn   STREAMING (after ack)
    flush / end_turn       IDLE (noop) FLUSHING     FLUSHING     -
    cancel                 CANCELLING  CANCELLING   CANCELLING   CANCELLING
    session_closed (recv)  IDLE        -            IDLE / next  dropped
    interrupted (recv)     IDLE        -            -            IDLE

While CANCELLING every frame but ``interrupted`` and errors is dropped, so late audio
of a cancelled turn never reaches a subscriber (PROTOCOL S-5, S-6).
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import TypeAlias

from rxtts.config import MultiContextConfig, StreamConfig, VoiceSettings
from rxtts.errors import LocalProtocolError, RxTtsError, TooManyContextsError, classify
from rxtts.events import (
    AudioChunk,
    ChunkComplete,
    ContextClosed,
    ContextCreated,
    ContextTimeout,
    Final,
    GenerationStarted,
    Interrupted,
    ServerWarning,
    SessionClosed,
    SessionStarted,
    SessionUsage,
    SettingsUpdated,
    TtsEvent,
    WordTimestamps,
)
from rxtts.protocol.frames import (
    UPDATABLE_SETTINGS,
    AudioFrame,
    CancelFrame,
    ChunkCompleteFrame,
    ClientFrame,
    CloseContextFrame,
    CloseFrame,
    CloseSocketFrame,
    ContextClosedFrame,
    ContextCreatedFrame,
    ContextTimeoutFrame,
    ErrorFrame,
    FinalFrame,
    FlushFrame,
    GenerationStartedFrame,
    InterruptedFrame,
    ServerFrame,
    SessionClosedFrame,
    SessionStartedFrame,
    SettingsUpdatedFrame,
    TextFrame,
    TtsRequest,
    UpdateSettingsFrame,
    WarningFrame,
    WireConfig,
    WordTimestampsFrame,
    parse_config,
)

Output: TypeAlias = TtsEvent | RxTtsError
"""What ``receive`` yields: an event, or a typed error to raise/deliver."""


def error_from_frame(frame: ErrorFrame) -> RxTtsError:
    """The typed error an error frame means (PROTOCOL 9)."""
    return classify(
        frame.error,
        error_code=frame.error_code,
        status=frame.code,
        retry_after=frame.retry_after,
        request_id=frame.request_id,
        context_id=frame.context_id,
    )


def _usage_of(frame: SessionClosedFrame) -> SessionUsage | None:
    # PROTOCOL 3.5: without `usage`, derive it from total_audio_seconds (cost unknown).
    if frame.usage is not None:
        return frame.usage
    if frame.total_audio_seconds is None:
        return None
    return SessionUsage(frame.total_audio_seconds, cost_cents=None)


def to_event(frame: ServerFrame) -> Output:
    """The event (or error) a server frame means, with no state involved."""
    match frame:
        case AudioFrame():
            return AudioChunk(
                frame.audio, frame.sr, frame.enc, frame.idx, frame.chunk_id, context_id=frame.context_id
            )
        case GenerationStartedFrame():
            return GenerationStarted(frame.chunk_id, frame.text, context_id=frame.context_id)
        case WordTimestampsFrame():
            return WordTimestamps(frame.words, frame.chunk_id, context_id=frame.context_id)
        case ChunkCompleteFrame():
            return ChunkComplete(
                frame.chunk_id, frame.audio_seconds, frame.gen_ms, context_id=frame.context_id
            )
        case FinalFrame():
            return Final(
                frame.total_audio_seconds,
                frame.total_text_chunks,
                frame.total_audio_chunks,
                frame.stats,
                frame.usage,
                context_id=frame.context_id,
            )
        case SessionClosedFrame():
            return SessionClosed(
                frame.total_audio_seconds or 0.0,
                frame.total_text_chunks or 0,
                frame.total_audio_chunks or 0,
                _usage_of(frame),
            )
        case InterruptedFrame():
            return Interrupted()
        case SettingsUpdatedFrame():
            return SettingsUpdated(frame.settings)
        case WarningFrame():
            return ServerWarning(frame.message)
        case SessionStartedFrame():
            return SessionStarted(frame.session_id)
        case ContextCreatedFrame():
            return ContextCreated(context_id=frame.context_id)
        case ContextClosedFrame():
            return ContextClosed(frame.usage, context_id=frame.context_id)
        case ContextTimeoutFrame():
            return ContextTimeout(context_id=frame.context_id)
        case ErrorFrame():
            return error_from_frame(frame)


def settings_update(**settings: object) -> UpdateSettingsFrame:
    """An ``update_settings`` frame; only the six updatable keys (PROTOCOL 5.7)."""
    if not settings:
        raise LocalProtocolError("update_settings: empty update")
    fixed = sorted(set(settings) - set(UPDATABLE_SETTINGS))
    if fixed:
        raise LocalProtocolError(f"update_settings: not updatable: {', '.join(fixed)}")
    try:
        return UpdateSettingsFrame(parse_config(settings))
    except RxTtsError as exc:
        raise LocalProtocolError(exc.message, error_code="VALIDATION_ERROR") from None


def wire_config(config: StreamConfig) -> WireConfig:
    """A :class:`StreamConfig` as the keys of a turn's first frame (PROTOCOL 5.3)."""
    return parse_config(config.to_wire())


# -- /ws/tts/stream --------------------------------------------------------------------


class TurnState(Enum):
    """State of the client's side of the stream endpoint."""

    IDLE = auto()
    STREAMING = auto()
    FLUSHING = auto()
    CANCELLING = auto()


@dataclass(slots=True)
class _Turn:
    id: int
    flushed: bool = False
    frames: list[ClientFrame] = field(default_factory=list)
    audio_frames: int = 0


@dataclass(slots=True)
class StreamClient:
    """The client half of ``/ws/tts/stream``: turns, config epochs, barge-in.

    Turns are numbered from 0. ``receive`` returns ``(turn_id, output)`` pairs; the turn
    id is ``None`` for frames that belong to no turn (an ``interrupted`` ack, an empty
    ``session_closed``).
    """

    config: StreamConfig = field(default_factory=StreamConfig)
    turns: deque[_Turn] = field(default_factory=deque)
    cancelling: int = 0
    config_dirty: bool = True
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def state(self) -> TurnState:
        """The state of the newest turn (see the table in the module docstring)."""
        if self.cancelling:
            return TurnState.CANCELLING
        if not self.turns:
            return TurnState.IDLE
        return TurnState.FLUSHING if self.turns[-1].flushed else TurnState.STREAMING

    @property
    def current_turn(self) -> int | None:
        """Id of the turn that is accepting text, if any."""
        if self.turns and not self.turns[-1].flushed:
            return self.turns[-1].id
        return None

    def _open(self) -> _Turn:
        if self.turns and not self.turns[-1].flushed:
            return self.turns[-1]
        turn = _Turn(next(self._ids))
        self.turns.append(turn)
        return turn

    def _config(self) -> WireConfig:
        # PROTOCOL 5.3: config rides on the first frame after connect, cancel,
        # update_config or reconnect; the server keeps it sticky otherwise.
        if not self.config_dirty:
            return WireConfig()
        self.config_dirty = False
        return wire_config(self.config)

    def begin_turn(self) -> int:
        """Open a turn without sending anything yet; returns its id."""
        return self._open().id

    def send_text(self, text: str, flush: bool = False) -> list[ClientFrame]:
        """Append text to the open turn (opening one); ``flush`` ends it (PROTOCOL 5.2)."""
        if not isinstance(text, str):
            raise LocalProtocolError(f"text must be a string, got {type(text).__name__}")
        turn = self._open()
        frame = TextFrame(text, flush, None, self._config())
        turn.frames.append(frame)
        turn.flushed = flush
        return [frame]

    def flush(self) -> list[ClientFrame]:
        """End the open turn, speaking its buffer; nothing if no turn is open."""
        if self.current_turn is None:
            return []
        turn = self.turns[-1]
        frame: ClientFrame = FlushFrame(None, self._config())
        turn.frames.append(frame)
        turn.flushed = True
        return [frame]

    def end_turn(self) -> list[ClientFrame]:
        """``close`` the open turn (PROTOCOL S-4); nothing when none is open."""
        if self.current_turn is None:
            return []
        turn = self.turns[-1]
        turn.frames.append(CloseFrame())
        turn.flushed = True
        return [CloseFrame()]

    def cancel(self) -> tuple[list[ClientFrame], list[int]]:
        """Barge-in: cancel every turn not yet closed (PROTOCOL 5.6).

        Returns the frames to send and the ids of the cancelled turns.
        """
        cancelled = [t.id for t in self.turns]
        self.turns.clear()
        self.cancelling += 1
        self.config_dirty = True
        return [CancelFrame()], cancelled

    def update_config(self, config: StreamConfig) -> None:
        """Use ``config`` from the next turn on (local only)."""
        self.config = config
        self.config_dirty = True

    def update_settings(self, **settings: object) -> list[ClientFrame]:
        """``update_settings`` for the next turn (PROTOCOL 5.7)."""
        return [settings_update(**settings)]

    def connection_lost(self) -> list[tuple[int, list[ClientFrame]]]:
        """The socket is gone: turns with no audio yet, with their frames for replay.

        PROTOCOL 10: a turn is replayed only if none of its audio was delivered. Turns
        that had audio are dropped. The next frame re-sends config.
        """
        replayable = [(t.id, list(t.frames)) for t in self.turns if t.audio_frames == 0]
        self.turns.clear()
        self.cancelling = 0
        self.config_dirty = True
        return replayable

    def replay(self, turn_id: int, frames: list[ClientFrame]) -> list[ClientFrame]:
        """Re-open a turn on a new socket, config on its first frame (PROTOCOL 10)."""
        turn = _Turn(turn_id)
        self.turns.append(turn)
        out: list[ClientFrame] = []
        for frame in frames:
            if isinstance(frame, TextFrame) and not out:
                frame = TextFrame(frame.text, frame.flush, None, self._config())
            out.append(frame)
            turn.frames.append(frame)
            turn.flushed = (
                turn.flushed
                or isinstance(frame, FlushFrame | CloseFrame)
                or bool(isinstance(frame, TextFrame) and frame.flush)
            )
        return out

    def receive(self, frame: ServerFrame) -> list[tuple[int | None, Output]]:
        """Events for one server frame, tagged with the turn they belong to."""
        if self.cancelling:
            # PROTOCOL S-5/S-6: only `interrupted` ends a cancel; late frames are dropped.
            if isinstance(frame, InterruptedFrame):
                self.cancelling -= 1
                return [(None, Interrupted())]
            if isinstance(frame, ErrorFrame):
                return [(None, error_from_frame(frame))]
            if isinstance(frame, SettingsUpdatedFrame):
                return [(None, to_event(frame))]  # PROTOCOL S-7: an ack, not a turn frame
            return []
        turn = self.turns[0] if self.turns else None
        out = to_event(frame)
        if isinstance(frame, AudioFrame) and turn is not None:
            turn.audio_frames += 1
        if isinstance(frame, SessionClosedFrame) and turn is not None:
            self.turns.popleft()
        return [(turn.id if turn else None, out)]


# -- /ws/tts/multi ----------------------------------------------------------------------


class ContextState(Enum):
    """Client view of one context (PROTOCOL 6)."""

    CREATING = auto()
    OPEN = auto()
    CLOSING = auto()
    CLOSING_IMMEDIATE = auto()


@dataclass(slots=True)
class MultiClient:
    """The client half of ``/ws/tts/multi`` with admission control (PROTOCOL M-9)."""

    config: MultiContextConfig = field(default_factory=MultiContextConfig)
    contexts: dict[str, ContextState] = field(default_factory=dict)
    voices: dict[str, int | None] = field(default_factory=dict)
    usage: dict[str, SessionUsage] = field(default_factory=dict)
    session_id: str | None = None
    session_config_sent: bool = False
    closed: bool = False

    @property
    def active_contexts(self) -> list[str]:
        """Ids holding a slot, in creation order."""
        return list(self.contexts)

    @property
    def free_slots(self) -> int:
        """Contexts that can still be created without exceeding the limit."""
        return self.config.max_contexts - len(self.contexts)

    def _check_open(self) -> None:
        if self.closed:
            raise LocalProtocolError("the multi-context session is closed")

    def create_context(
        self,
        context_id: str,
        voice_id: int | None = None,
        voice_settings: VoiceSettings | None = None,
    ) -> list[ClientFrame]:
        """Create a context without speaking (PROTOCOL 6.3); known ids send nothing."""
        self._check_open()
        if not isinstance(context_id, str) or not context_id:
            raise LocalProtocolError("context_id must be a non-empty string")
        if context_id in self.contexts:
            if self.contexts[context_id] in (ContextState.CLOSING, ContextState.CLOSING_IMMEDIATE):
                raise LocalProtocolError(f"context {context_id!r} is closing; wait for context_closed")
            return []
        if self.free_slots <= 0:
            # Admission control: never put a 21st context on the wire (PROTOCOL M-9).
            raise TooManyContextsError(
                f"at most {self.config.max_contexts} open contexts per session; "
                f"close one or pass wait_for_slot=True",
                error_code="TOO_MANY_CONTEXTS",
                context_id=context_id,
            )
        vs = voice_settings or VoiceSettings()
        voice = vs.voice_id if vs.voice_id is not None else voice_id
        voice = voice if voice is not None else self.config.default_voice_id
        bound = VoiceSettings(
            voice_id=voice,
            cfg_scale=vs.cfg_scale if vs.cfg_scale is not None else self.config.cfg_scale,
            max_new_tokens=vs.max_new_tokens or self.config.max_new_tokens,
            stability=vs.stability,
            similarity_boost=vs.similarity_boost,
            style=vs.style,
            use_speaker_boost=vs.use_speaker_boost,
        )
        config = WireConfig()
        if not self.session_config_sent:
            config = parse_config(self.config.session_wire())
            self.session_config_sent = True
        self.contexts[context_id] = ContextState.CREATING
        self.voices[context_id] = voice
        self.usage.pop(context_id, None)
        return [TextFrame(" ", None, context_id, config, bound)]

    def send(self, context_id: str, text: str, flush: bool = False) -> list[ClientFrame]:
        """Text for a context, creating it first if unknown (PROTOCOL M-1)."""
        if not isinstance(text, str):
            raise LocalProtocolError(f"text must be a string, got {type(text).__name__}")
        frames = self.create_context(context_id) if context_id not in self.contexts else []
        self._writable(context_id)
        return [*frames, TextFrame(text, flush, context_id)]

    def _writable(self, context_id: str) -> None:
        self._check_open()
        state = self.contexts.get(context_id)
        if state is None:
            raise LocalProtocolError(f"unknown context {context_id!r}")
        if state in (ContextState.CLOSING, ContextState.CLOSING_IMMEDIATE):
            raise LocalProtocolError(f"context {context_id!r} is closing")

    def flush(self, context_id: str) -> list[ClientFrame]:
        """Speak a context's buffer; ``final`` follows (PROTOCOL M-6)."""
        self._writable(context_id)
        return [FlushFrame(context_id)]

    def keep_alive(self, context_id: str) -> list[ClientFrame]:
        """Reset a context's inactivity timer without audio (PROTOCOL M-4)."""
        self._writable(context_id)
        return [TextFrame("", None, context_id)]

    def close_context(self, context_id: str, immediate: bool = False) -> list[ClientFrame]:
        """Close a context; ``immediate`` drops its text and late audio (PROTOCOL M-7)."""
        self._check_open()
        state = self.contexts.get(context_id)
        if state is None or state is ContextState.CLOSING_IMMEDIATE:
            return []
        if state is ContextState.CLOSING and not immediate:
            return []
        self.contexts[context_id] = ContextState.CLOSING_IMMEDIATE if immediate else ContextState.CLOSING
        return [CloseContextFrame(context_id, immediate)]

    def close(self) -> list[ClientFrame]:
        """``close_socket`` (PROTOCOL M-8)."""
        if self.closed:
            return []
        self.closed = True
        return [CloseSocketFrame()]

    def update_settings(self, **settings: object) -> list[ClientFrame]:
        """``update_settings`` for later contexts (PROTOCOL M-11)."""
        self._check_open()  # nothing may follow close_socket (PROTOCOL M-8)
        return [settings_update(**settings)]

    def connection_lost(self) -> list[str]:
        """Forget every context; returns the ids that were open."""
        lost = list(self.contexts)
        self.contexts.clear()
        self.session_config_sent = False
        return lost

    def receive(self, frame: ServerFrame) -> list[Output]:
        """Events for one server frame; frames of dropped contexts are discarded."""
        cid = getattr(frame, "context_id", None)
        state = self.contexts.get(cid) if cid is not None else None
        match frame:
            case ContextCreatedFrame():
                if state is ContextState.CREATING:
                    self.contexts[frame.context_id] = ContextState.OPEN
                return [to_event(frame)] if state is not None else []
            case ContextClosedFrame():
                self.contexts.pop(frame.context_id, None)
                if frame.usage is not None:
                    self.usage[frame.context_id] = frame.usage
                return [to_event(frame)] if state is not None else []
            case ContextTimeoutFrame():
                self.contexts.pop(frame.context_id, None)  # the slot is free again
                return [to_event(frame)] if state is not None else []
            case SessionStartedFrame():
                self.session_id = frame.session_id
                self.session_config_sent = True
                return [to_event(frame)]
            case SessionClosedFrame():
                self.contexts.clear()
                return [to_event(frame)]
            case ErrorFrame():
                if frame.error_code == "TOO_MANY_CONTEXTS" and state is ContextState.CREATING:
                    assert cid is not None
                    del self.contexts[cid]
                return [error_from_frame(frame)]
        if cid is not None and state in (None, ContextState.CLOSING_IMMEDIATE):
            return []  # barge-in safe: late frames of a dropped context (PROTOCOL 6.5)
        return [to_event(frame)]


# -- /ws/tts ------------------------------------------------------------------------------


@dataclass(slots=True)
class TtsClient:
    """The client half of ``/ws/tts``: requests answered in order (PROTOCOL T-2)."""

    pending: deque[int] = field(default_factory=deque)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def request(self, text: str, config: StreamConfig) -> tuple[int, list[ClientFrame]]:
        """A request id and its frame."""
        wire = wire_config(config)
        keep = {k: v for k, v in wire.to_wire().items() if k not in _STREAM_ONLY}
        rid = next(self._ids)
        self.pending.append(rid)
        return rid, [TtsRequest(text, parse_config(keep))]

    def receive(self, frame: ServerFrame) -> list[tuple[int | None, Output]]:
        """Events for the oldest pending request; ``final`` or an error ends it."""
        rid = self.pending[0] if self.pending else None
        out = to_event(frame)
        if isinstance(frame, FinalFrame | ErrorFrame) and self.pending:
            self.pending.popleft()
        return [(rid, out)]


_STREAM_ONLY = frozenset({"chunk_length_schedule", "auto_mode", "flush_timeout_ms", "max_buffer_length"})

__all__ = [
    "ContextState",
    "MultiClient",
    "Output",
    "StreamClient",
    "TtsClient",
    "TurnState",
    "error_from_frame",
    "settings_update",
    "to_event",
    "wire_config",
]
