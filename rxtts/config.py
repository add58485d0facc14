"""Session configuration: what a client may ask of the server (PROTOCOL 7, 8).

All classes are frozen and validate on construction: a bad value raises ``ValueError``
naming the field, except ``cfg_scale``, which is clamped to [1.2, 2.5] as the official
SDKs do. The validators are shared with the wire decoder (:mod:`rxtts.protocol.frames`).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

CFG_SCALE_RANGE = (1.2, 2.5)
SPEED_RANGE = (0.8, 1.2)
MAX_NEW_TOKENS_RANGE = (1, 2048)
SAMPLE_RATES = (8000, 16000, 22050, 24000)
MAX_CONTEXTS = 20
"""Open contexts allowed on one multi-context socket (PROTOCOL M-9)."""


class OutputFormat(StrEnum):
    """Codec and rate of the audio the server sends (PROTOCOL 8)."""

    PCM_8000 = "pcm_8000"
    PCM_16000 = "pcm_16000"
    PCM_22050 = "pcm_22050"
    PCM_24000 = "pcm_24000"
    ULAW_8000 = "ulaw_8000"
    ALAW_8000 = "alaw_8000"

    @property
    def codec(self) -> str:
        """``pcm``, ``ulaw`` or ``alaw``."""
        return self.value.split("_", 1)[0]

    @property
    def sample_rate(self) -> int:
        """Sample rate in Hz."""
        return int(self.value.rsplit("_", 1)[1])

    @property
    def encoding(self) -> str:
        """The ``enc`` value of audio frames in this format."""
        return {"pcm": "pcm_s16le", "ulaw": "mulaw", "alaw": "alaw"}[self.codec]

    @classmethod
    def parse(cls, value: str | OutputFormat, field_name: str = "output_format") -> OutputFormat:
        """The format named by ``value``; ``ValueError`` naming the field otherwise."""
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(f.value for f in cls)
            raise ValueError(f"{field_name}: unknown format {value!r} (one of {names})") from None

    @classmethod
    def pcm(cls, sample_rate: int) -> OutputFormat:
        """Legacy PCM at ``sample_rate`` (used when no ``output_format`` is given)."""
        return cls.parse(f"pcm_{check_sample_rate(sample_rate)}", "sample_rate")


@dataclass(frozen=True, slots=True)
class ChunkingPreset:
    """A named chunk schedule (seed: 'Chunking presets')."""

    name: str
    """Preset name as the CLI spells it."""
    chunk_length_schedule: tuple[int, ...]
    """Minimum buffered characters before chunk i; the last value repeats."""
    auto_mode: bool
    """Emit chunk 0 at the first sentence boundary, whatever its length."""

    @property
    def first_chunk(self) -> str:
        """How the server cuts chunk 0: ``"phrase"`` with ``auto_mode``, else ``"sentence"``.

        Derived, not a field, because the wire carries only ``auto_mode``
        (PROTOCOL 7): ``chunk_schedule(segment=True, auto_mode=True)`` cuts chunk 0
        at the first clause/phrase boundary after a few words (LOW_LATENCY), before
        its sentence ends; see :func:`rxtts.operators.chunk_schedule`.
        """
        return "phrase" if self.auto_mode else "sentence"


LOW_LATENCY = ChunkingPreset("low-latency", (50, 100, 150, 250), auto_mode=True)
BALANCED = ChunkingPreset("balanced", (80, 150, 250), auto_mode=False)
HIGH_QUALITY = ChunkingPreset("high-quality", (120, 200, 300), auto_mode=False)
PRESETS = {p.name: p for p in (LOW_LATENCY, BALANCED, HIGH_QUALITY)}
DEFAULT_SCHEDULE = BALANCED.chunk_length_schedule
"""The server's schedule when the client sends none (PROTOCOL G-10: Balanced)."""


# -- validators shared with the wire decoder ------------------------------------------


def clamp_cfg_scale(value: float) -> float:
    """``cfg_scale`` clamped to [1.2, 2.5] as the SDKs do (PROTOCOL 7)."""
    lo, hi = CFG_SCALE_RANGE
    return min(max(float(value), lo), hi)


def check_temperature(value: float, field_name: str = "temperature") -> float:
    """Temperature in [0, 1] (PROTOCOL 7: out of range rejected)."""
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{field_name}: {value} is outside [0.0, 1.0]")
    return float(value)


def check_speed(value: float, field_name: str = "speed") -> float:
    """Speed in [0.8, 1.2] (PROTOCOL 7: out of range rejected)."""
    lo, hi = SPEED_RANGE
    if not lo <= float(value) <= hi:
        raise ValueError(f"{field_name}: {value} is outside [{lo}, {hi}]")
    return float(value)


def check_max_new_tokens(value: int, field_name: str = "max_new_tokens") -> int:
    """``max_new_tokens`` in [1, 2048]."""
    lo, hi = MAX_NEW_TOKENS_RANGE
    if not lo <= value <= hi:
        raise ValueError(f"{field_name}: {value} is outside [{lo}, {hi}]")
    return value


def check_sample_rate(value: int, field_name: str = "sample_rate") -> int:
    """One of the supported sample rates."""
    if value not in SAMPLE_RATES:
        raise ValueError(f"{field_name}: {value} is not one of {SAMPLE_RATES}")
    return value


def check_schedule(values: Sequence[int], field_name: str = "chunk_length_schedule") -> tuple[int, ...]:
    """A non-empty, strictly increasing schedule of positive character counts."""
    schedule = tuple(values)
    if not schedule:
        raise ValueError(f"{field_name}: must not be empty")
    if any(not isinstance(v, int) or isinstance(v, bool) or v <= 0 for v in schedule):
        raise ValueError(f"{field_name}: values must be positive integers, got {schedule}")
    if any(b <= a for a, b in itertools.pairwise(schedule)):
        raise ValueError(f"{field_name}: must be strictly increasing, got {schedule}")
    return schedule


def check_positive(value: float, field_name: str) -> float:
    """A strictly positive number."""
    if value <= 0:
        raise ValueError(f"{field_name}: must be > 0, got {value}")
    return value


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


@dataclass(frozen=True, slots=True)
class VoiceSettings:
    """Per-context voice settings of a multi-context session (seed: ContextVoiceSettings)."""

    voice_id: int | None = None
    """Voice of the context; bound at creation (PROTOCOL 6.1)."""
    cfg_scale: float | None = None
    """Guidance scale, clamped to [1.2, 2.5]."""
    max_new_tokens: int | None = None
    """Generation cap per chunk."""
    stability: float | None = None
    """Accepted for ElevenLabs-style callers; ignored by the local server."""
    similarity_boost: float | None = None
    """Accepted for ElevenLabs-style callers; ignored by the local server."""
    style: float | None = None
    """Accepted for ElevenLabs-style callers; ignored by the local server."""
    use_speaker_boost: bool | None = None
    """Accepted for ElevenLabs-style callers; ignored by the local server."""
    speed: float | None = None
    """Sent for JS parity; the server drops it here (PROTOCOL U-20): use top-level speed."""

    def __post_init__(self) -> None:
        if self.cfg_scale is not None:
            _set(self, "cfg_scale", clamp_cfg_scale(self.cfg_scale))
        if self.max_new_tokens is not None:
            check_max_new_tokens(self.max_new_tokens, "voice_settings.max_new_tokens")

    def to_wire(self) -> dict[str, Any]:
        """The ``voice_settings`` object, set keys only."""
        return {f.name: v for f in dataclasses.fields(self) if (v := getattr(self, f.name)) is not None}


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """Configuration of a streaming session (``/ws/tts/stream``); sticky across turns.

    ``None`` means "not sent": the server default applies. ``auto_mode`` and
    ``chunk_length_schedule`` default to the Balanced preset on our server.
    """

    voice_id: int | None = None
    """Voice to speak with; required by the server before the first text."""
    model_id: str | None = None
    """Model id (``kugel-3``...); the local server accepts and ignores it."""
    cfg_scale: float = 2.0
    """Guidance scale, clamped to [1.2, 2.5]."""
    temperature: float | None = None
    """Sampling variance in [0, 1]."""
    max_new_tokens: int = 2048
    """Generation cap per chunk."""
    sample_rate: int = 24000
    """Output rate when no ``output_format`` is given."""
    output_format: OutputFormat | None = None
    """Codec and rate; wins over ``sample_rate`` (PROTOCOL 8)."""
    normalize: bool = True
    """Text normalisation (numbers, dates)."""
    language: str | None = None
    """ISO 639-1 language code."""
    word_timestamps: bool = False
    """Ask for word alignment frames."""
    speed: float = 1.0
    """Speaking rate in [0.8, 1.2]."""
    chunk_length_schedule: tuple[int, ...] | None = None
    """Characters buffered before chunk i (last repeats); ``None``: server default."""
    auto_mode: bool | None = None
    """First chunk at the first sentence boundary."""
    flush_timeout_ms: int | None = None
    """Force-chunk buffered text after this much input silence within a turn."""
    max_buffer_length: int | None = None
    """Characters buffered before a chunk is forced."""
    project_id: int | None = None
    """Project for dictionaries."""
    dictionary_ids: tuple[int, ...] | None = None
    """Pronunciation dictionaries."""

    def __post_init__(self) -> None:
        _set(self, "cfg_scale", clamp_cfg_scale(self.cfg_scale))
        if self.temperature is not None:
            check_temperature(self.temperature)
        check_max_new_tokens(self.max_new_tokens)
        check_sample_rate(self.sample_rate)
        if self.output_format is not None:
            _set(self, "output_format", OutputFormat.parse(self.output_format))
        check_speed(self.speed)
        if self.chunk_length_schedule is not None:
            _set(self, "chunk_length_schedule", check_schedule(self.chunk_length_schedule))
        if self.flush_timeout_ms is not None:
            check_positive(self.flush_timeout_ms, "flush_timeout_ms")
        if self.max_buffer_length is not None:
            check_positive(self.max_buffer_length, "max_buffer_length")
        if self.dictionary_ids is not None:
            _set(self, "dictionary_ids", tuple(self.dictionary_ids))

    @classmethod
    def from_preset(cls, preset: ChunkingPreset | str, **kw: Any) -> StreamConfig:
        """A config using a chunking preset (object or CLI name)."""
        p = PRESETS[preset] if isinstance(preset, str) else preset
        return cls(chunk_length_schedule=p.chunk_length_schedule, auto_mode=p.auto_mode, **kw)

    def replace(self, **changes: Any) -> StreamConfig:
        """A validated copy with ``changes`` applied; unknown names raise ``ValueError``."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown StreamConfig field(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_wire(self) -> dict[str, Any]:
        """Config keys for the first frame of a turn (PROTOCOL 5.3), set keys only."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, OutputFormat):
                value = value.value
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


@dataclass(frozen=True, slots=True)
class MultiContextConfig:
    """Configuration of a multi-context session (seed: MultiContextConfig defaults)."""

    default_voice_id: int | None = None
    """Voice for contexts that do not name one."""
    sample_rate: int = 24000
    """Output rate when no ``output_format`` is given."""
    output_format: OutputFormat | None = None
    """Codec and rate; wins over ``sample_rate``."""
    cfg_scale: float = 2.0
    """Guidance scale, clamped to [1.2, 2.5]."""
    temperature: float = 0.5
    """Sampling variance in [0, 1]."""
    max_new_tokens: int = 2048
    """Generation cap per chunk."""
    normalize: bool = True
    """Text normalisation."""
    language: str | None = None
    """ISO 639-1 normalisation language."""
    inactivity_timeout: float = 20.0
    """Seconds before an idle context auto-closes."""
    word_timestamps: bool = False
    """Ask for word alignment frames."""
    model_id: str | None = None
    """Model id; the local server accepts and ignores it."""
    speed: float | None = None
    """Top-level speed in [0.8, 1.2] for every context."""
    max_contexts: int = field(default=MAX_CONTEXTS)
    """Client-side admission limit; at most 20 (PROTOCOL M-9)."""

    def __post_init__(self) -> None:
        check_sample_rate(self.sample_rate)
        if self.output_format is not None:
            _set(self, "output_format", OutputFormat.parse(self.output_format))
        _set(self, "cfg_scale", clamp_cfg_scale(self.cfg_scale))
        check_temperature(self.temperature)
        check_max_new_tokens(self.max_new_tokens)
        check_positive(self.inactivity_timeout, "inactivity_timeout")
        if self.speed is not None:
            check_speed(self.speed)
        if not 1 <= self.max_contexts <= MAX_CONTEXTS:
            raise ValueError(f"max_contexts: {self.max_contexts} is outside [1, {MAX_CONTEXTS}]")

    def session_wire(self) -> dict[str, Any]:
        """Session keys that ride on the first creating frame (PROTOCOL 6.3)."""
        out: dict[str, Any] = {
            "sample_rate": self.sample_rate,
            "normalize": self.normalize,
            "word_timestamps": self.word_timestamps,
            "temperature": self.temperature,
            "inactivity_timeout": self.inactivity_timeout,
        }
        optional = {
            "output_format": self.output_format.value if self.output_format else None,
            "language": self.language,
            "model_id": self.model_id,
            "speed": self.speed,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        return out


__all__ = [
    "BALANCED",
    "DEFAULT_SCHEDULE",
    "HIGH_QUALITY",
    "LOW_LATENCY",
    "MAX_CONTEXTS",
    "PRESETS",
    "ChunkingPreset",
    "MultiContextConfig",
    "OutputFormat",
    "StreamConfig",
    "VoiceSettings",
]
