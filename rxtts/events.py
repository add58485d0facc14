"""Everything a session can emit: a closed union of frozen dataclasses.

Every event carries its identity: ``context_id`` (``None`` outside multi-context
sessions) and ``turn`` (which turn of the session, or which utterance of the context,
it belongs to: stream turns are numbered from 0 per session, a context's utterances
from 0 per context, one per ``flush``; ``None`` for events that belong to no turn,
e.g. an ``interrupted`` ack or ``settings_updated``), so consumers never rely on order
alone; and ``at``, the :func:`time.monotonic` instant the event was produced here.
Events are values: they are compared by content, never mutated, and safe to share
across threads and subscribers.

Vocabulary (one meaning per word in rxtts's code; wire keys and the seed's public names
stay as they are):

- **turn**: one utterance of a stream session, from its first text to its
  ``session_closed`` or ``interrupted`` (the wire calls it a "session", hence
  ``session_closed``); in a multi-context session, one flush of a context.
- **chunk**: a piece of a turn's *text* that is synthesised at once (``chunk_id``,
  :class:`GenerationStarted`, :class:`ChunkComplete`).
- **block**: a piece of *engine audio* of a chunk (``rxtts.operators.synthesize``).
- **frame**: one WebSocket message; an audio frame is an :class:`AudioChunk` (the seed's
  name), whose ``index`` is the frame index.
- **connection**: one socket (client: :class:`rxtts.client.connection.Link`; server:
  :class:`rxtts.server.connection.Connection`); **session**: the client objects
  ``StreamingSession``/``MultiContextSession`` that own one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import numpy as np

Encoding: TypeAlias = Literal["pcm_s16le", "mulaw", "alaw"]
"""Wire encodings of audio frames (PROTOCOL 3.2 ``enc``)."""


@dataclass(frozen=True, slots=True)
class SessionUsage:
    """Billing of one turn or context (PROTOCOL 3.5)."""

    audio_seconds: float
    """Seconds of audio produced: the billed unit."""
    characters: int | None = None
    """Characters of text admitted."""
    cost_cents: float | None = None
    """Cost in EUR cents, or ``None`` when unknown (never a fake 0)."""
    currency: str | None = None
    """Currency of ``cost_cents`` (``"eur"``)."""
    model_id: str | None = None
    """Model that produced the audio."""
    cost_unavailable: bool = False
    """True when the server could not price the audio (``cost_cents`` is ``None``)."""

    def to_json(self) -> dict[str, Any]:
        """The wire shape of ``usage``."""
        out: dict[str, Any] = {"audio_seconds": self.audio_seconds}
        if self.characters is not None:
            out["characters"] = self.characters
        out["cost_cents"] = self.cost_cents
        if self.currency is not None:
            out["currency"] = self.currency
        if self.model_id is not None:
            out["model_id"] = self.model_id
        if self.cost_unavailable:
            out["cost_unavailable"] = True
        return out


@dataclass(frozen=True, slots=True)
class WordTimestamp:
    """One aligned word (PROTOCOL 3.3)."""

    word: str
    """The word as it appears in the submitted text."""
    start_ms: int
    """Start, in ms from the chunk's audio start."""
    end_ms: int
    """End, in ms from the chunk's audio start."""
    char_start: int
    """Offset of the first character in the chunk text."""
    char_end: int
    """Offset one past the last character in the chunk text."""
    score: float = 1.0
    """Alignment confidence in [0, 1]. The rxtts server sends: 1.0 from the engine's
    phoneme durations (piper's duration predictor); 0.8 from the engine's durations
    with a boundary interpolated (the word's phonemes could not be told apart from a
    neighbour's); 0.5 estimated from word length over the chunk's audio (engines without
    alignment: tone, espeak). Other servers may send any value (PY SDK default 1.0)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Event:
    context_id: str | None = None
    """Context this event belongs to (multi-context sessions), else ``None``."""
    turn: int | None = field(default=None, compare=False)
    """Turn (stream) or utterance of the context (multi) this event belongs to; like
    ``at`` it is identity, not content, so it does not take part in ``==``."""
    at: float = field(default_factory=time.monotonic, compare=False)
    """Monotonic time the event was produced on this side."""


@dataclass(frozen=True, slots=True)
class SessionStarted(_Event):
    """The multi-context server announced a session (optional on the wire)."""

    session_id: str
    """Server-assigned session id."""


@dataclass(frozen=True, slots=True)
class ContextCreated(_Event):
    """A multi-context context exists on the server."""


@dataclass(frozen=True, slots=True)
class GenerationStarted(_Event):
    """The server started synthesising one text chunk."""

    chunk_id: int
    """0-based chunk number within the turn or context."""
    text: str
    """The text of the chunk as the server segmented it."""


@dataclass(frozen=True, slots=True)
class AudioChunk(_Event):
    """One frame of audio.

    ``audio`` holds the bytes exactly as they came off the wire; ``samples`` is an
    int16 view of them for PCM (zero-copy) and a decoded int16 array for G.711.
    """

    audio: bytes
    """Raw audio bytes (s16le PCM, or 1 byte/sample G.711)."""
    sample_rate: int
    """Actual sample rate of this frame (``sr``)."""
    encoding: Encoding
    """How ``audio`` is encoded."""
    index: int
    """0-based frame index within the turn, request or context (``idx``)."""
    chunk_id: int | None = None
    """Text chunk this audio belongs to, when the server says."""

    @property
    def samples(self) -> np.ndarray:
        """Mono int16 samples: a read-only view for PCM, decoded for G.711."""
        if self.encoding == "pcm_s16le":
            return np.frombuffer(self.audio, dtype="<i2")
        from rxtts.audio.g711 import decode_alaw, decode_ulaw

        decode = decode_ulaw if self.encoding == "mulaw" else decode_alaw
        samples: np.ndarray = decode(self.audio)
        return samples

    @property
    def num_samples(self) -> int:
        """Number of samples in the frame."""
        return len(self.audio) // 2 if self.encoding == "pcm_s16le" else len(self.audio)

    @property
    def duration(self) -> float:
        """Seconds of audio in the frame."""
        return self.num_samples / self.sample_rate


@dataclass(frozen=True, slots=True)
class WordTimestamps(_Event):
    """Word alignment for the audio of one chunk (only when requested)."""

    words: tuple[WordTimestamp, ...]
    """Aligned words in order."""
    chunk_id: int | None = None
    """Chunk the words belong to."""


@dataclass(frozen=True, slots=True)
class ChunkComplete(_Event):
    """All audio of one text chunk was sent."""

    chunk_id: int
    """The completed chunk."""
    audio_seconds: float
    """Seconds of audio in the chunk."""
    gen_ms: float
    """Server time spent generating it."""


@dataclass(frozen=True, slots=True)
class Final(_Event):
    """All audio admitted before a flush has been delivered."""

    total_audio_seconds: float | None = None
    """Audio seconds of the turn (stream) or request (tts)."""
    total_text_chunks: int | None = None
    """Text chunks of the turn (stream)."""
    total_audio_chunks: int | None = None
    """Audio frames of the turn or request."""
    stats: Mapping[str, Any] = field(default_factory=dict)
    """Further statistics as sent (tts: ``total_samples``, ``dur_ms``, ``gen_ms``, ``rtf``)."""
    usage: SessionUsage | None = None
    """Usage (tts ``final`` only)."""


@dataclass(frozen=True, slots=True)
class SessionClosed(_Event):
    """Terminal event of a turn (stream) or of the whole socket (multi)."""

    total_audio_seconds: float = 0.0
    """Audio seconds of the turn."""
    total_text_chunks: int = 0
    """Text chunks of the turn."""
    total_audio_chunks: int = 0
    """Audio frames of the turn."""
    usage: SessionUsage | None = None
    """Usage of the turn, when the server reported it."""


@dataclass(frozen=True, slots=True)
class Interrupted(_Event):
    """The server acknowledged a cancel: nothing more of that turn will come."""


@dataclass(frozen=True, slots=True)
class ContextClosed(_Event):
    """A context ended; its slot is free and its id reusable."""

    usage: SessionUsage | None = None
    """Usage of the context."""


@dataclass(frozen=True, slots=True)
class ContextTimeout(_Event):
    """The server closed an idle context (inactivity timeout)."""


@dataclass(frozen=True, slots=True)
class SettingsUpdated(_Event):
    """The server accepted an ``update_settings``."""

    settings: Mapping[str, Any] = field(default_factory=dict)
    """The six updatable settings as the server now holds them (``None`` if unset)."""


@dataclass(frozen=True, slots=True)
class ServerWarning(_Event):
    """A non-fatal notice, e.g. a turn auto-flushed after inactivity."""

    message: str
    """Human-readable text from the server."""


@dataclass(frozen=True, slots=True)
class ContextError(_Event):
    """A context-scoped error in a multi-context session; the socket lives on."""

    error: Exception
    """The typed exception (see :mod:`rxtts.errors`)."""


@dataclass(frozen=True, slots=True)
class TurnMetrics(_Event):
    """Client-side latency metrics of one finished turn, emitted before ``SessionClosed``."""

    ttfb: float | None
    """Seconds from the turn's first sent text to the first audio frame."""
    ttfa: float | None
    """Seconds from the turn's first sent text to the first non-silent sample."""
    audio_seconds: float
    """Seconds of audio received."""
    chunk_count: int
    """Text chunks completed by the server."""
    frame_count: int
    """Audio frames received."""


TtsEvent: TypeAlias = (
    SessionStarted
    | ContextCreated
    | GenerationStarted
    | AudioChunk
    | WordTimestamps
    | ChunkComplete
    | Final
    | SessionClosed
    | Interrupted
    | ContextClosed
    | ContextTimeout
    | SettingsUpdated
    | ServerWarning
    | ContextError
    | TurnMetrics
)
"""Every event a session emits."""

__all__ = [
    "AudioChunk",
    "ChunkComplete",
    "ContextClosed",
    "ContextCreated",
    "ContextError",
    "ContextTimeout",
    "Encoding",
    "Final",
    "GenerationStarted",
    "Heard",
    "HeardReason",
    "Interrupted",
    "ServerWarning",
    "SessionClosed",
    "SessionStarted",
    "SessionUsage",
    "SettingsUpdated",
    "TtsEvent",
    "TurnMetrics",
    "WordTimestamp",
    "WordTimestamps",
]


HeardReason: TypeAlias = Literal["completed", "stopped", "interrupted", "cut_short", "error", "disposed"]
"""Why a :class:`Heard` was computed (see :func:`rxtts.operators.heard`)."""


@dataclass(frozen=True, slots=True)
class Heard(_Event):
    """What the listener actually heard of one turn (:func:`rxtts.operators.heard`).

    Offsets index :attr:`text`, the turn's text as the client sent it (the concatenated
    tokens), so ``heard_text + unheard_text == text`` and ``heard_text`` is a prefix of
    it ending on a word boundary. A word is *heard* when its end time is at or before
    the playback position at the cut; the *cut word* is the one playing at that moment.
    """

    text: str
    """The turn's text: the sent tokens concatenated (or the chunk texts, if not given)."""
    heard_text: str
    """``text[:char_end]``: every word heard in full (what to commit to LLM history)."""
    unheard_text: str
    """``text[char_end:]``: the rest, starting with the cut word if there is one."""
    char_end: int
    """End of the heard part in :attr:`text` (0 if nothing was heard)."""
    cut_word: str | None
    """The word being spoken at the cut, heard in part; ``None`` between words."""
    cut_char_start: int | None
    """Offset of the cut word in :attr:`text`."""
    cut_char_end: int | None
    """Offset one past the cut word in :attr:`text`."""
    heard_seconds: float
    """Seconds of the turn's audio played at the cut."""
    received_seconds: float
    """Seconds of the turn's audio received."""
    words_heard: int
    """Number of words heard in full."""
    estimated: bool
    """True when a word time that decided the result was estimated (no alignment, or
    ``WordTimestamp.score <= 0.5``: the local server's estimates carry 0.5)."""
    reason: HeardReason
    """``completed`` (played out), ``stopped`` (the clock stopped the turn while it
    played out, e.g. ``Player.stop()``), ``interrupted`` (an ``Interrupted`` event),
    ``cut_short`` (the stream ended without a terminal event, e.g. ``take_until``
    upstream), ``error`` or ``disposed`` (barge-in by disposal)."""

    @property
    def complete(self) -> bool:
        """Whether every word of :attr:`text` was heard."""
        return not self.unheard_text.strip()

    def history_text(self, include_cut_word: bool = False) -> str:
        """The text to commit to the LLM history for this turn.

        Default: the words heard in full (:attr:`heard_text`), the conservative policy
        (a word the user heard only the start of is not assumed understood). With
        ``include_cut_word`` the cut word is added (``text[:cut_char_end]``).
        """
        if include_cut_word and self.cut_char_end is not None:
            return self.text[: self.cut_char_end]
        return self.heard_text
