"""The engine contract: voices, per-request settings, cancellation, alignment, errors.

Every TTS engine of the local server implements :class:`Engine`. The server calls
``synthesize`` on a worker thread and consumes the blocks as they come; to cancel a turn
(barge-in, ``{"cancel": true}``) it calls :meth:`CancelToken.cancel` from another thread
and the engine returns promptly, mid-sentence where it can (DESIGN section 4).

Alignment (DESIGN section 4, issue 13): an engine that knows when each word is spoken
also implements :class:`AligningEngine`, whose ``synthesize_blocks`` yields
:class:`EngineBlock` (audio plus an optional :class:`Alignment`). Decisions:

- ``Engine.synthesize`` keeps yielding plain float32 arrays, so every existing engine,
  wrapper and consumer keeps working unchanged; consumers that want alignment call
  :func:`engine_blocks`, which uses ``synthesize_blocks`` when the engine has it and
  wraps plain arrays otherwise (``alignment=None``).
- An alignment travels with (or before) the audio it describes: the first block of a
  sentence carries the timings of every word of that sentence, because durations are
  known before the audio is decoded.
- Word times are samples at the engine's rate, counted from the first sample of the
  ``synthesize`` call (the chunk), so a consumer converts them to PROTOCOL 3.3
  ``start_ms``/``end_ms`` without tracking sentence offsets.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from rxtts.events import WordTimestamp

__all__ = [
    "AligningEngine",
    "Alignment",
    "AudioBlock",
    "CancelToken",
    "Engine",
    "EngineBlock",
    "EngineUnavailableError",
    "SynthesisSettings",
    "UnknownVoiceError",
    "VoiceInfo",
    "WordTiming",
    "engine_blocks",
]

AudioBlock = npt.NDArray[np.float32]
"""One block of mono float32 audio in [-1, 1] at the engine's native sample rate."""

MIN_SPEED = 0.25
MAX_SPEED = 4.0


class EngineUnavailableError(RuntimeError):
    """The requested TTS engine cannot run here (missing optional extra or native library).

    The message says what to install, e.g. ``pip install 'rxtts[piper]'``.
    """


class UnknownVoiceError(ValueError):
    """A voice id that the engine's voice catalogue does not contain.

    A ``ValueError`` (not a ``KeyError``) so its message is printed as written; the server
    maps it to an error frame for the request (PROTOCOL T-3).
    """

    def __init__(self, voice_id: int, known: Sequence[int] = ()) -> None:
        hint = f"; known voice ids: {', '.join(map(str, known))}" if known else ""
        super().__init__(f"unknown voice id {voice_id}{hint}")
        self.voice_id = voice_id


@dataclass(frozen=True, slots=True)
class VoiceInfo:
    """One entry of the voice catalogue: an integer id bound to an engine voice and params."""

    id: int
    """Public voice id, as sent in ``voice_id`` (PROTOCOL section 7)."""
    name: str
    """Display name, e.g. ``"Joe"``."""
    engine: str
    """Name of the engine that speaks it (``"piper"``, ``"espeak"``, ``"tone"``)."""
    language: str = "en"
    """Primary language, ISO 639-1; used when a request sets no ``language``."""
    sex: str = "male"
    """``"male"``, ``"female"`` or ``"neutral"`` (the PY SDK's enum)."""
    description: str = ""
    """One line for voice listings."""
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    """Engine-specific parameters (e.g. ``pitch_factor`` for piper, ``espeak_voice``)."""

    def to_json(self) -> dict[str, Any]:
        """Render as the PROTOCOL section 12 ``Voice`` object of ``GET /v1/voices``."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "category": "premade",  # PY enum value; others map to "cloned"
            "sex": self.sex,
            "age": "middle_aged",
            "quality": "mid",
            "supported_languages": [self.language],
            "sample_text": _SAMPLE_TEXT.get(self.language, _SAMPLE_TEXT["en"]),
            "is_public": True,
            "verified": True,
        }


_SAMPLE_TEXT: Mapping[str, str] = MappingProxyType(
    {
        "en": "Hello! This is how I sound.",
        "de": "Hallo! So klinge ich.",
        "fr": "Bonjour ! Voici ma voix.",
        "es": "¡Hola! Así suena mi voz.",
        "it": "Ciao! Questa è la mia voce.",
    }
)


@dataclass(frozen=True, slots=True)
class SynthesisSettings:
    """Per-request synthesis settings, taken from the client's session config."""

    speed: float = 1.0
    """Speaking rate factor; the protocol allows 0.8–1.2 (PROTOCOL section 7). Piper uses
    ``length_scale / speed``; espeak scales its words-per-minute rate."""
    temperature: float | None = None
    """Sampling temperature 0–1 (PROTOCOL section 7, default ≈ 0.5). Piper maps it to
    ``noise_scale = model_noise_scale * (0.5 + temperature)``: 0.5 gives the model's own
    value (0.667 for joe), 0 gives 0.333 (flatter), 1 gives 1.0 (livelier). ``None`` keeps
    the model's value. Engines without sampling ignore it."""
    language: str | None = None
    """ISO 639-1 language; ``None`` means the voice's own language. Single-language models
    (piper joe) ignore it; espeak switches its language, keeping the voice variant."""
    alignment: bool = False
    """Compute word timings (:class:`Alignment`) where the engine can, e.g. for PROTOCOL 3.3
    ``word_timestamps``. Off by default: it costs piper a word-by-word phonemisation and
    a match before the first audio (measured ~1 ms for 6 words, ~4 ms for 25, see
    ``rxtts.bench.engine``). Engines without alignment ignore it."""
    early_audio: bool = True
    """Decode for the earliest first sample (piper with streaming decode: in decoder
    windows, ~1.3x the compute of a whole-sentence decode); ``False``: the engine's most
    efficient decode (piper: one decoder run per sentence, the same samples to ~1e-5).
    :func:`~rxtts.operators.synthesize` sets it per chunk: ``True`` only while the
    listener may be waiting for this chunk (issue 12, capacity). Engines without such a
    choice ignore it."""

    def __post_init__(self) -> None:
        if not MIN_SPEED <= self.speed <= MAX_SPEED:
            raise ValueError(f"speed must be in [{MIN_SPEED}, {MAX_SPEED}], got {self.speed}")
        if self.temperature is not None and not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {self.temperature}")


@dataclass(frozen=True, slots=True)
class WordTiming:
    """When one word of the input text is spoken."""

    word: str
    """The word as written in the text (``text[char_start:char_end]``)."""
    char_start: int
    """Offset of the word's first character in the text passed to ``synthesize``."""
    char_end: int
    """Offset just past the word's last character (surrounding punctuation excluded)."""
    start_sample: int
    """First sample of the word, at the engine rate, from the start of the call's audio."""
    end_sample: int
    """Sample just past the word. Spans are monotonic and never overlap; inside a sentence
    they are contiguous (a pause belongs to the word before it), and the last word of a
    sentence ends with it. ``start_sample`` is where the word is heard to start (piper:
    halfway through its onset consonants, :mod:`rxtts.server.engines.alignment`), so the
    lead of a sentence belongs to no word."""
    exact: bool = True
    """``True`` when both ends come from the model's phoneme durations; ``False`` when a
    boundary was interpolated (a word whose phonemes could not be told apart)."""

    def __post_init__(self) -> None:
        if not 0 <= self.char_start <= self.char_end:
            raise ValueError(f"bad char span [{self.char_start}, {self.char_end})")
        if not 0 <= self.start_sample <= self.end_sample:
            raise ValueError(f"bad sample span [{self.start_sample}, {self.end_sample})")


@dataclass(frozen=True, slots=True)
class Alignment:
    """Word timings of (part of) one ``synthesize`` call, in call order."""

    words: tuple[WordTiming, ...]
    """The words, monotonic and non-overlapping."""
    sample_rate: int
    """Rate of the sample positions (the engine's native rate)."""
    source: str = "durations"
    """Where the times come from: ``"durations"`` (the model's duration predictor) or
    ``"estimate"`` (proportional to text length)."""

    def word_timestamps(self, inexact_score: float = 0.5) -> tuple[WordTimestamp, ...]:
        """As PROTOCOL 3.3 words: ms from the chunk's audio start, the same char offsets;
        ``score`` 1.0 for exact spans and ``inexact_score`` for interpolated ones."""
        rate = self.sample_rate
        return tuple(
            WordTimestamp(
                w.word,
                round(w.start_sample * 1000 / rate),
                round(w.end_sample * 1000 / rate),
                w.char_start,
                w.char_end,
                1.0 if w.exact and self.source == "durations" else inexact_score,
            )
            for w in self.words
        )

    def shifted(self, samples: int) -> Alignment:
        """The same words ``samples`` earlier (audio cut before them), clamped at 0."""
        if not samples:
            return self
        words = tuple(
            dataclasses.replace(
                w, start_sample=max(0, w.start_sample - samples), end_sample=max(0, w.end_sample - samples)
            )
            for w in self.words
        )
        return dataclasses.replace(self, words=words)


@dataclass(frozen=True, slots=True, eq=False)
class EngineBlock:
    """One block of engine audio, plus the alignment of the words it starts (if known).

    ``np.asarray(block)`` and ``len(block)`` give the samples, so code written for plain
    arrays can consume blocks too.
    """

    audio: AudioBlock = field(repr=False)
    """Mono float32 samples in [-1, 1] at the engine rate."""
    alignment: Alignment | None = None
    """Timings of the words that start in this block or later in its sentence; ``None``
    when the engine gives none (or the block continues a sentence already aligned)."""

    def __len__(self) -> int:
        return int(self.audio.size)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> AudioBlock:
        return self.audio if dtype is None else np.asarray(self.audio, dtype=dtype)


class CancelToken:
    """A thread-safe, one-way cancellation flag with hooks.

    Engines poll :attr:`cancelled` between blocks and register hooks that interrupt work in
    progress (piper: ``RunOptions.terminate = True`` stops ``session.run`` mid-inference).
    Hooks run once, on the thread that calls :meth:`cancel`; a hook added after
    cancellation runs at once.
    """

    __slots__ = ("_event", "_hooks", "_lock")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._hooks: list[Callable[[], None]] = []

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` has been called."""
        return self._event.is_set()

    def cancel(self) -> None:
        """Set the flag and run the registered hooks (idempotent)."""
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            hooks, self._hooks = self._hooks, []
        for hook in hooks:
            hook()

    def add_hook(self, hook: Callable[[], None]) -> Callable[[], None]:
        """Run ``hook`` on cancel; returns a function that unregisters it."""
        with self._lock:
            if not self._event.is_set():
                self._hooks.append(hook)
                return lambda: self._remove_hook(hook)
        hook()
        return lambda: None

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, waking early on cancel; returns :attr:`cancelled`."""
        return self._event.wait(timeout)

    def _remove_hook(self, hook: Callable[[], None]) -> None:
        with self._lock:
            if hook in self._hooks:
                self._hooks.remove(hook)


@runtime_checkable
class Engine(Protocol):
    """What the server needs from a TTS engine (DESIGN section 4)."""

    name: str
    """Engine name, as in ``rxtts serve --engine NAME``."""
    sample_rate: int
    """Native rate (Hz) of the audio ``synthesize`` yields."""

    def voices(self) -> Sequence[VoiceInfo]:
        """The voices this engine speaks, in id order."""
        ...

    def synthesize(
        self, text: str, voice: VoiceInfo, settings: SynthesisSettings, cancel: CancelToken
    ) -> Iterator[AudioBlock]:
        """Blocking and abandonable: yield float32 mono blocks at :attr:`sample_rate` as
        soon as each is ready; once ``cancel`` is set, return promptly without raising."""
        ...

    def warm_up(self) -> None:
        """Load models and run one tiny inference so the first real request is fast."""
        ...


@runtime_checkable
class AligningEngine(Engine, Protocol):
    """An engine that can also say when each word is spoken (piper)."""

    def synthesize_blocks(
        self, text: str, voice: VoiceInfo, settings: SynthesisSettings, cancel: CancelToken
    ) -> Iterator[EngineBlock]:
        """Like ``synthesize``, with alignment on the first block of each sentence when
        ``settings.alignment`` is set. ``synthesize`` must yield the same audio."""
        ...


def engine_blocks(
    engine: Engine, text: str, voice: VoiceInfo, settings: SynthesisSettings, cancel: CancelToken
) -> Iterator[EngineBlock]:
    """The blocks of ``engine`` for ``text``: ``synthesize_blocks`` when the engine has it,
    else its plain arrays wrapped without alignment (flattened float32)."""
    if isinstance(engine, AligningEngine):
        yield from engine.synthesize_blocks(text, voice, settings, cancel)
        return
    for block in engine.synthesize(text, voice, settings, cancel):
        yield EngineBlock(np.ascontiguousarray(block, dtype=np.float32).reshape(-1))
