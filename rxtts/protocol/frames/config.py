"""The session config keys client frames carry (PROTOCOL 7), parsed strictly."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rxtts import config as cfg
from rxtts.config import OutputFormat, VoiceSettings
from rxtts.protocol.frames._codec import (
    _bad,
    _int_list,
    _invalid,
    _is_int,
    _is_number,
    _validated,
)

# -- session config carried by client frames ------------------------------------------

MAX_NAME_CHARS = 128
"""Longest ``model_id``/``language`` accepted (real ones are under 20 characters); the
server echoes them, so they are bounded at decode (``VALIDATION_ERROR`` beyond)."""


@dataclass(frozen=True, slots=True)
class WireConfig:
    """Config keys a client frame may carry (PROTOCOL 7); ``None`` = absent.

    Sticky: the server merges each frame's config over the previous one (PROTOCOL S-1).
    """

    voice_id: int | None = None
    model_id: str | None = None
    cfg_scale: float | None = None
    temperature: float | None = None
    max_new_tokens: int | None = None
    sample_rate: int | None = None
    output_format: OutputFormat | None = None
    normalize: bool | None = None
    language: str | None = None
    word_timestamps: bool | None = None
    speed: float | None = None
    chunk_length_schedule: tuple[int, ...] | None = None
    auto_mode: bool | None = None
    flush_timeout_ms: int | None = None
    max_buffer_length: int | None = None
    project_id: int | None = None
    dictionary_ids: tuple[int, ...] | None = None
    inactivity_timeout: float | None = None

    def merged(self, newer: WireConfig) -> WireConfig:
        """This config with every key ``newer`` sets replaced."""
        changes = {f.name: v for f in dataclasses.fields(newer) if (v := getattr(newer, f.name)) is not None}
        return dataclasses.replace(self, **changes) if changes else self

    def is_empty(self) -> bool:
        """True when no key is set."""
        return all(getattr(self, f.name) is None for f in dataclasses.fields(self))

    def to_wire(self) -> dict[str, Any]:
        """Set keys as JSON values."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None:
                continue
            out[f.name] = v.value if isinstance(v, OutputFormat) else list(v) if isinstance(v, tuple) else v
        return out

    @property
    def effective_format(self) -> OutputFormat:
        """``output_format`` if set, else PCM at ``sample_rate`` (PROTOCOL 8: format wins)."""
        if self.output_format is not None:
            return self.output_format
        return OutputFormat.pcm(self.sample_rate or 24000)


def _parse_config_key(key: str, v: Any) -> Any:
    """Validate one config value; ``None`` values are treated as absent."""
    if v is None:
        return None
    if key in (
        "voice_id",
        "max_new_tokens",
        "sample_rate",
        "flush_timeout_ms",
        "max_buffer_length",
        "project_id",
    ):
        if not _is_int(v):
            raise _bad(f"{key}: expected an integer, got {type(v).__name__}")
        checks: dict[str, Callable[[], Any]] = {
            "max_new_tokens": lambda: cfg.check_max_new_tokens(v),
            "sample_rate": lambda: cfg.check_sample_rate(v),
            "flush_timeout_ms": lambda: cfg.check_positive(v, key),
            "max_buffer_length": lambda: cfg.check_positive(v, key),
        }
        return _validated(key, checks[key]) if key in checks else v
    if key in ("cfg_scale", "temperature", "speed", "inactivity_timeout"):
        if not _is_number(v):
            raise _bad(f"{key}: expected a number, got {type(v).__name__}")
        numeric: dict[str, Callable[[], float]] = {
            "cfg_scale": lambda: cfg.clamp_cfg_scale(v),
            "temperature": lambda: cfg.check_temperature(v),
            "speed": lambda: cfg.check_speed(v),
            "inactivity_timeout": lambda: cfg.check_positive(float(v), key),
        }
        return _validated(key, numeric[key])
    if key in ("normalize", "word_timestamps", "auto_mode"):
        if not isinstance(v, bool):
            raise _bad(f"{key}: expected a boolean, got {type(v).__name__}")
        return v
    if key in ("model_id", "language"):
        if not isinstance(v, str):
            raise _bad(f"{key}: expected a string, got {type(v).__name__}")
        if len(v) > MAX_NAME_CHARS:
            # Found by issue 11: a ~1 MB model_id was echoed until frames passed 1 MiB.
            raise _invalid(f"{key}: at most {MAX_NAME_CHARS} characters, got {len(v)}")
        return v
    if key == "output_format":
        if not isinstance(v, str):
            raise _bad(f"{key}: expected a string, got {type(v).__name__}")
        return _validated(key, lambda: OutputFormat.parse(v))
    if key == "chunk_length_schedule":
        return _validated(key, lambda: cfg.check_schedule(_int_list(key, v)))
    if key == "dictionary_ids":
        return _int_list(key, v)
    raise _bad(f"unknown key {key!r}")  # pragma: no cover - callers filter keys


CONFIG_KEYS = frozenset(f.name for f in dataclasses.fields(WireConfig))


def parse_config(d: Mapping[str, Any]) -> WireConfig:
    """The config keys of a frame, validated."""
    values = {k: _parse_config_key(k, d[k]) for k in CONFIG_KEYS if k in d}
    return WireConfig(**values)


_VOICE_SETTING_KEYS = {
    "voice_id": _is_int,
    "cfg_scale": _is_number,
    "max_new_tokens": _is_int,
    "stability": _is_number,
    "similarity_boost": _is_number,
    "style": _is_number,
    "use_speaker_boost": lambda v: isinstance(v, bool),
    "speed": _is_number,
}


def parse_voice_settings(v: object) -> VoiceSettings:
    """``voice_settings``: known keys validated, unknown keys ignored (PROTOCOL M-2)."""
    if not isinstance(v, dict):
        raise _bad("voice_settings: expected an object")
    values: dict[str, Any] = {}
    for key, ok in _VOICE_SETTING_KEYS.items():
        if v.get(key) is None:
            continue
        if not ok(v[key]):
            raise _bad(f"voice_settings.{key}: wrong type {type(v[key]).__name__}")
        values[key] = v[key]
    return _validated("voice_settings", lambda: VoiceSettings(**values))
