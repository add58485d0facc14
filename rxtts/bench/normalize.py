"""Benchmark of text normalisation: per-chunk cost, and espeak-ng's reading before/after.

``run()`` measures

* the cost of :func:`rxtts.operators.normalize_text` on chunks of 50-250 characters
  built from the corpus (``tests/data/normalize_corpus.json``: case inputs joined
  until the chunk reaches a random target length, seeded), one ``perf_counter_ns``
  per call, after a warm-up. "warm" keeps num2words' word cache (a server speaking
  for a while), "cold" clears it before every chunk (the first chunk of a fresh
  process): p50/p99 microseconds per chunk and per character;
* how espeak-ng (through piper's phonemiser, the one the Piper voice uses) reads
  one example per category, raw and normalised: the phonemes, the number of
  sentences espeak sees (``"Dr."`` ends one), and whether the two differ.

Nothing here asserts: ``tests/test_normalize.py`` checks the espeak comparison.
"""

from __future__ import annotations

import gc
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rxtts.bench._stats import describe_machine, machine_info
from rxtts.operators import normalize_text
from rxtts.operators._normalize import words

__all__ = ["ESPEAK_EXAMPLES", "build_chunks", "espeak_comparison", "phonemize", "run", "timing"]

_CORPUS = Path(__file__).resolve().parents[2] / "tests" / "data" / "normalize_corpus.json"

ESPEAK_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("currency", "It costs $3.50."),
    ("number", "We have 1,234 users."),
    ("year", "In 1990 it rained."),
    ("decade", "Music of the 1990s."),
    ("ordinal", "Our 103rd show."),
    ("date", "Due 3/4/2024."),
    ("time", "The train leaves at 14:05."),
    ("percent", "A 3.5% rate."),
    ("unit", "It weighs 10kg."),
    ("abbreviation", "Dr. Smith will see you."),
    ("phone", "Call 555-123-4567 now."),
    ("email", "Ask bob_smith+news@mail.example.org today."),
    ("url", "See https://www.example.com/docs for more."),
    ("range", "Pages 10-20."),
    ("fraction", "Add 1/2 cup."),
    ("symbol", "We are #1."),
    ("roman", "World War II ended."),
)
"""One sentence per category, as an LLM would write it, that espeak-ng misreads.

espeak-ng already reads some forms right ("3:30 pm", "9am", "jane.doe@example.com"):
normalisation then gives the same phonemes, so those are not the examples here."""


def _corpus_inputs(path: Path = _CORPUS, category: str | None = None) -> list[str]:
    cases = json.loads(path.read_text(encoding="utf-8"))
    return [c["input"] for c in cases if category is None or c["category"] == category]


def build_chunks(
    n: int, seed: int = 7, low: int = 50, high: int = 250, category: str | None = None
) -> list[str]:
    """``n`` chunks of ``low``-``high`` characters made of corpus inputs (seeded).

    With ``category="plain"`` the chunks hold nothing to rewrite (ordinary prose).
    """
    rng = random.Random(seed)
    inputs = _corpus_inputs(category=category)
    chunks: list[str] = []
    while len(chunks) < n:
        target = rng.randint(low, high)
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < target:
            parts.append(rng.choice(inputs))
        chunks.append(" ".join(parts)[:high])
    return chunks


def _clear_caches() -> None:
    for fn in (words.cardinal, words.ordinal, words.year):
        fn.cache_clear()


def timing(chunks: list[str], cold: bool) -> dict[str, float]:
    """µs per chunk (p50, p99, mean) and ns per character of ``normalize_text`` on ``chunks``."""
    for chunk in chunks[:50]:
        normalize_text(chunk)  # warm-up: imports, regex caches
    samples: list[float] = []
    chars = 0
    gc.disable()
    try:
        for chunk in chunks:
            if cold:
                _clear_caches()
            t0 = time.perf_counter_ns()
            normalize_text(chunk)
            samples.append((time.perf_counter_ns() - t0) / 1000)
            chars += len(chunk)
    finally:
        gc.enable()
    samples.sort()
    p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
    return {
        "chunks": len(samples),
        "mean_chars": chars / len(samples),
        "p50_us": statistics.median(samples),
        "p99_us": p99,
        "mean_us": statistics.fmean(samples),
        "ns_per_char": sum(samples) * 1000 / chars,
    }


def phonemize(text: str) -> list[str]:
    """espeak-ng (en-us) phonemes of ``text``, one string per sentence espeak sees."""
    from piper.phonemize_espeak import EspeakPhonemizer

    from rxtts.server.engines.piper import _PHONEMIZE_LOCK

    with _PHONEMIZE_LOCK:
        return ["".join(s) for s in EspeakPhonemizer().phonemize("en-us", text)]


def espeak_comparison() -> list[dict[str, Any]]:
    """For each of :data:`ESPEAK_EXAMPLES`: raw vs normalised text and espeak's phonemes."""
    rows = []
    for category, raw in ESPEAK_EXAMPLES:
        spoken = normalize_text(raw).text
        before, after = phonemize(raw), phonemize(spoken)
        rows.append(
            {
                "category": category,
                "raw": raw,
                "normalized": spoken,
                "raw_phonemes": " | ".join(before),
                "normalized_phonemes": " | ".join(after),
                "raw_sentences": len(before),
                "normalized_sentences": len(after),
                "differs": before != after,
            }
        )
    return rows


def run(n_chunks: int = 2000, espeak: bool = True) -> dict[str, Any]:
    """Timing (corpus chunks with warm and cold caches, plain prose) and the espeak-ng comparison.

    The corpus chunks are dense (every case has something to rewrite, about one
    rewrite per 20 characters): an upper bound for LLM prose, which "plain" bounds
    from below.
    """
    chunks = build_chunks(n_chunks)
    result: dict[str, Any] = {
        "machine": describe_machine(machine_info()),
        "warm": timing(chunks, cold=False),
        "cold": timing(chunks[: max(1, n_chunks // 4)], cold=True),
        "plain": timing(build_chunks(n_chunks, category="plain"), cold=False),
    }
    if espeak:
        result["espeak"] = espeak_comparison()
    return result


def format_result(result: dict[str, Any]) -> str:
    """The timing lines and the espeak-ng before/after comparison, as text."""
    lines = [result["machine"]]
    for name in ("warm", "cold", "plain"):
        t = result[name]
        what = "plain prose" if name == "plain" else f"corpus, {name} cache"
        lines.append(
            f"normalize_text, {what}: {t['chunks']} chunks of {t['mean_chars']:.0f} chars on average:"
            f" p50 {t['p50_us']:.1f} µs, p99 {t['p99_us']:.1f} µs, mean {t['mean_us']:.1f} µs,"
            f" {t['ns_per_char']:.0f} ns/char"
        )
    for row in result.get("espeak", []):
        lines.append(f"\n[{row['category']}] {row['raw']!r} -> {row['normalized']!r}")
        lines.append(f"  espeak raw ({row['raw_sentences']} sentence(s)): {row['raw_phonemes']}")
        lines.append(f"  espeak normalised ({row['normalized_sentences']}): {row['normalized_phonemes']}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(format_result(run(espeak="--no-espeak" not in sys.argv[1:])))
