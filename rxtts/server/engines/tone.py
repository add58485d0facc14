"""A deterministic, instant test engine: a sine tone whose length is proportional to text.

Duration = ``ms_per_char`` (default 10 ms) per character of the stripped text, divided by
``speed``; pitch = the voice's ``frequency_hz`` param; 5 ms raised-cosine fades at both ends
of the utterance, no leading silence; blocks of at most ``block_ms`` (default 100 ms).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from types import MappingProxyType

import numpy as np

from rxtts.engine import AudioBlock, CancelToken, SynthesisSettings, VoiceInfo

__all__ = ["TONE_VOICES", "ToneEngine"]

_FADE_S = 0.005
_AMPLITUDE = 0.5


def _tone_voice(voice_id: int, name: str, sex: str, hz: float, what: str) -> VoiceInfo:
    return VoiceInfo(
        id=voice_id,
        name=name,
        engine="tone",
        language="en",
        sex=sex,
        description=f"Test tone at {hz:g} Hz ({what}); not speech.",
        params=MappingProxyType({"frequency_hz": hz}),
    )


TONE_VOICES: tuple[VoiceInfo, ...] = (
    _tone_voice(1071, "Tone 200 Hz", "male", 200.0, "stands in for Joe"),
    _tone_voice(1072, "Tone 252 Hz", "female", 252.0, "stands in for Jo (bright)"),
    _tone_voice(1073, "Tone 168 Hz", "male", 168.0, "stands in for Joe (deep)"),
)
"""Same ids as the piper and espeak catalogues, so tests and demos can use any engine."""


def voice_frequency(voice: VoiceInfo) -> float:
    """The tone pitch of ``voice``: its ``frequency_hz`` param, else derived from its id."""
    hz = voice.params.get("frequency_hz")
    return float(hz) if hz is not None else 110.0 + 10.0 * (voice.id % 40)


class ToneEngine:
    """Sine-tone engine for tests: deterministic, instant (or slow, if asked)."""

    name: str = "tone"
    sample_rate: int

    def __init__(
        self,
        sample_rate: int = 24000,
        ms_per_char: float = 10.0,
        block_ms: float = 100.0,
        delay_per_block_s: float = 0.0,
    ) -> None:
        """``delay_per_block_s`` sleeps before each block (woken by cancel) to mimic a slow
        engine in cancel tests."""
        if sample_rate <= 0 or ms_per_char <= 0 or not 0 < block_ms <= 100:
            raise ValueError("sample_rate, ms_per_char > 0 and 0 < block_ms <= 100 required")
        self.sample_rate = sample_rate
        self.ms_per_char = ms_per_char
        self.block_ms = block_ms
        self.delay_per_block_s = delay_per_block_s

    def voices(self) -> Sequence[VoiceInfo]:
        """The three test voices 1071–1073."""
        return TONE_VOICES

    def warm_up(self) -> None:
        """Nothing to load."""

    def samples_for(self, text: str, speed: float = 1.0) -> int:
        """Number of samples ``synthesize`` yields for ``text`` at ``speed``."""
        seconds = len(text.strip()) * self.ms_per_char / 1000.0 / speed
        return round(seconds * self.sample_rate)

    def synthesize(
        self, text: str, voice: VoiceInfo, settings: SynthesisSettings, cancel: CancelToken
    ) -> Iterator[AudioBlock]:
        """Yield the tone in blocks of at most ``block_ms``, checking ``cancel`` before each."""
        total = self.samples_for(text, settings.speed)
        block = max(1, int(self.sample_rate * self.block_ms / 1000.0))
        omega = 2.0 * np.pi * voice_frequency(voice) / self.sample_rate
        for start in range(0, total, block):
            if self.delay_per_block_s > 0 and cancel.wait(self.delay_per_block_s):
                return
            if cancel.cancelled:
                return
            idx = np.arange(start, min(start + block, total), dtype=np.float64)
            wave = _AMPLITUDE * np.sin(omega * idx) * self._envelope(idx, total)
            yield wave.astype(np.float32)

    def _envelope(self, idx: np.ndarray, total: int) -> np.ndarray:
        fade = max(1, int(_FADE_S * self.sample_rate))
        ramp_in = np.clip((idx + 1) / fade, 0.0, 1.0)
        ramp_out = np.clip((total - idx) / fade, 0.0, 1.0)
        ramp = np.minimum(ramp_in, ramp_out)
        return np.asarray(0.5 - 0.5 * np.cos(np.pi * ramp))
