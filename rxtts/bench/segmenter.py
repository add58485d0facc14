"""Benchmark of the text operators: per-token cost and segmentation accuracy.

``run()`` measures

* the cost of ``sentences() + chunk_schedule()`` end to end through Rx (a
  ``Subject`` feeds LLM-like tokens one by one; each ``on_next`` is timed):
  median and p99 microseconds per token, and tokens per second;
* the accuracy of the streaming segmenter on the corpus
  (``tests/data/segmentation_corpus.json``: exact match of the segment list per
  case, and boundary precision/recall/F1) side by side with ``pysbd`` run on
  the joined text of each case (not streaming: the accuracy anchor);
* the added delay: how many tokens arrive between the token that completes a
  sentence and the token at which ``sentences()`` emits it;
* the same per-token cost for the server's one-stage form,
  ``chunk_schedule(segment=True, auto_mode=True)`` (segmentation built in,
  phrase-aware first chunk);
* the worst case: the cost of one-character tokens pushed after a 100k run of
  ``.``, digits, ``#`` or backticks (each token used to rescan the run).

It prints a table and returns (and optionally writes) the figures as JSON.
"""

from __future__ import annotations

import gc
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reactivex.subject import Subject

from rxtts.operators import SentenceSegmenter, chunk_schedule, sentences
from rxtts.operators.flush import TextItem

__all__ = ["CorpusCase", "default_corpus_path", "load_corpus", "run"]

_PYSBD_LANGUAGES = frozenset(
    [
        "en",
        "hi",
        "mr",
        "zh",
        "es",
        "am",
        "ar",
        "el",
        "ru",
        "da",
        "it",
        "hy",
        "fa",
        "ur",
        "pl",
        "my",
        "nl",
        "fr",
        "bg",
        "de",
        "kk",
        "sk",
        "ja",
    ]
)


@dataclass(frozen=True, slots=True)
class CorpusCase:
    """One streaming segmentation case of the corpus."""

    id: str
    """Unique name, e.g. ``"abbr-us-end"``."""
    phenomenon: str
    """What the case exercises (``"abbreviation"``, ``"url"``, ...)."""
    language: str
    """ISO code of the text's language (used to pick pysbd's rules)."""
    tokens: tuple[str, ...]
    """The text as an LLM would stream it (split anywhere)."""
    expected: tuple[str, ...]
    """The expected segments, stripped."""


@dataclass(frozen=True, slots=True)
class Accuracy:
    """Accuracy of one segmenter on the corpus."""

    exact_match: float
    """Fraction of cases whose segment list matches exactly (inner spacing collapsed)."""
    precision: float
    """Predicted boundaries that are expected, over predicted boundaries."""
    recall: float
    """Expected boundaries that are predicted, over expected boundaries."""
    f1: float
    """Harmonic mean of precision and recall."""
    failed: tuple[str, ...]
    """Ids of the cases that did not match exactly."""


def default_corpus_path() -> Path:
    """The corpus in a source checkout: ``<repo>/tests/data/segmentation_corpus.json``."""
    return Path(__file__).resolve().parents[2] / "tests" / "data" / "segmentation_corpus.json"


def load_corpus(path: Path | None = None) -> list[CorpusCase]:
    """Load the corpus (a JSON list of ``{id, phenomenon, language, tokens, expected}``)."""
    raw = json.loads((path or default_corpus_path()).read_text(encoding="utf-8"))
    return [
        CorpusCase(
            id=c["id"],
            phenomenon=c["phenomenon"],
            language=c.get("language", "en"),
            tokens=tuple(c["tokens"]),
            expected=tuple(c["expected"]),
        )
        for c in raw
    ]


def stream_segments(tokens: Sequence[str]) -> list[str]:
    """Segment ``tokens`` with :class:`SentenceSegmenter`, as ``sentences()`` does."""
    seg = SentenceSegmenter()
    out: list[str] = []
    for token in tokens:
        out.extend(seg.push(token))
    out.extend(seg.flush())
    return out


def _norm(segments: Sequence[str]) -> list[str]:
    return [" ".join(s.split()) for s in segments if s.strip()]


def _boundaries(segments: Sequence[str]) -> set[int]:
    """Boundary positions, counted in non-whitespace characters (robust to spacing)."""
    pos = 0
    out: set[int] = set()
    for s in segments[:-1]:
        pos += len("".join(s.split()))
        out.add(pos)
    return out


def _accuracy(cases: Sequence[CorpusCase], predict: Callable[[CorpusCase], list[str]]) -> Accuracy:
    exact = 0
    tp = fp = fn = 0
    failed: list[str] = []
    for case in cases:
        got = _norm(predict(case))
        want = _norm(case.expected)
        if got == want:
            exact += 1
        else:
            failed.append(case.id)
        g, w = _boundaries(got), _boundaries(want)
        tp += len(g & w)
        fp += len(g - w)
        fn += len(w - g)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Accuracy(exact / len(cases), precision, recall, f1, tuple(failed))


def _pysbd_predictor() -> Callable[[CorpusCase], list[str]] | None:
    try:
        import pysbd  # dev dependency: the accuracy anchor
    except ImportError:
        return None
    segmenters: dict[str, Any] = {}

    def predict(case: CorpusCase) -> list[str]:
        lang = case.language if case.language in _PYSBD_LANGUAGES else "en"
        if lang not in segmenters:
            segmenters[lang] = pysbd.Segmenter(language=lang, clean=False)
        return [str(s) for s in segmenters[lang].segment("".join(case.tokens))]

    return predict


def _delays(cases: Sequence[CorpusCase]) -> dict[str, float]:
    """Tokens between the token completing a segment and the one emitting it."""
    delays: list[int] = []
    at_flush = 0
    for case in cases:
        seg = SentenceSegmenter()
        cum: list[int] = []  # non-space characters received after each token
        total = 0
        emitted = 0  # non-space characters emitted so far
        for t, token in enumerate(case.tokens):
            total += len("".join(token.split()))
            cum.append(total)
            for s in seg.push(token):
                emitted += len("".join(s.split()))
                completed_at = next(i for i, c in enumerate(cum) if c >= emitted)
                delays.append(t - completed_at)
        at_flush += len(seg.flush())
    return {
        "segments_emitted_early": len(delays),
        "segments_emitted_at_flush": at_flush,
        "mean_delay_tokens": statistics.fmean(delays) if delays else 0.0,
        "max_delay_tokens": max(delays, default=0),
        "share_delay_le_1": sum(d <= 1 for d in delays) / len(delays) if delays else 1.0,
    }


def _stream(cases: Sequence[CorpusCase], min_tokens: int) -> list[str]:
    tokens: list[str] = []
    while len(tokens) < min_tokens:
        for case in cases:
            tokens.extend(case.tokens)
            tokens.append("\n\n" if case.phenomenon in ("list", "heading", "code") else " ")
    return tokens


def _pipeline(subject: Subject[TextItem], fused: bool, sink: list[TextItem]) -> None:
    if fused:
        subject.pipe(chunk_schedule(auto_mode=True, segment=True)).subscribe(sink.append)
    else:
        subject.pipe(sentences(), chunk_schedule()).subscribe(sink.append)


def _timed_pass(tokens: Sequence[str], fused: bool = False) -> tuple[list[int], int]:
    """One pass through a fresh pipeline: per-token ns (sorted) and untimed total ns."""
    clock = time.perf_counter_ns
    sink: list[TextItem] = []
    subject: Subject[TextItem] = Subject()
    _pipeline(subject, fused, sink)
    per_token: list[int] = []
    gc.collect()
    for token in tokens:
        t0 = clock()
        subject.on_next(token)
        per_token.append(clock() - t0)
    per_token.sort()
    # Throughput without the per-token clock calls.
    subject2: Subject[TextItem] = Subject()
    _pipeline(subject2, fused, sink)
    t0 = clock()
    for token in tokens:
        subject2.on_next(token)
    return per_token, clock() - t0


def _timing(tokens: Sequence[str], repeats: int = 3) -> dict[str, Any]:
    """Per-token cost of ``sentences() + chunk_schedule()`` through Rx.

    The source is a ``Subject`` (as in the server); its own cost is included.
    ``repeats`` passes run on fresh pipelines; the pass with the lowest median is
    reported (as ``timeit`` reports its best run: other load only adds time).
    """
    _timed_pass(tokens[:5000])  # warm-up
    passes = [_timed_pass(tokens) for _ in range(repeats)]
    per_token, elapsed = min(passes, key=lambda p: p[0][len(p[0]) // 2])
    fused = min((_timed_pass(tokens, fused=True) for _ in range(repeats)), key=lambda p: p[0][len(p[0]) // 2])
    clock = time.perf_counter_ns
    overhead = [-(clock() - clock()) for _ in range(10_000)]
    seg = SentenceSegmenter()
    t1 = clock()
    for token in tokens:
        seg.push(token)
    pure = clock() - t1
    return {
        "tokens": len(tokens),
        "median_us_per_token": per_token[len(per_token) // 2] / 1000,
        "p99_us_per_token": per_token[int(len(per_token) * 0.99)] / 1000,
        "mean_us_per_token": elapsed / len(tokens) / 1000,
        "tokens_per_second": len(tokens) / (elapsed / 1e9),
        "median_us_per_pass": [p[0][len(p[0]) // 2] / 1000 for p in passes],
        "pure_segmenter_mean_us_per_token": pure / len(tokens) / 1000,
        "fused_median_us_per_token": fused[0][len(fused[0]) // 2] / 1000,
        "fused_p99_us_per_token": fused[0][int(len(fused[0]) * 0.99)] / 1000,
        "fused_mean_us_per_token": fused[1] / len(tokens) / 1000,
        "clock_overhead_us": statistics.median(overhead) / 1000,
    }


_RUNS = {".": "Wait ", "7": "The number is ", "#": "Intro\n", "`": "Code:\n"}


def _pathological(run_length: int = 100_000, tokens: int = 1_500) -> dict[str, float]:
    """Mean microseconds per one-character token pushed after a long run, per run kind."""
    out: dict[str, float] = {}
    for char, prefix in _RUNS.items():
        seg = SentenceSegmenter()
        seg.push(prefix + char * run_length)
        t0 = time.perf_counter_ns()
        for _ in range(tokens):
            seg.push(char)
        out[char] = (time.perf_counter_ns() - t0) / tokens / 1000
    return out


def run(out_json: Path | None = None, corpus: Path | None = None) -> dict[str, Any]:
    """Run the benchmark, print a table, return the figures (and write them as JSON)."""
    cases = load_corpus(corpus)
    ours = _accuracy(cases, lambda c: stream_segments(c.tokens))
    predictor = _pysbd_predictor()
    anchor = _accuracy(cases, predictor) if predictor is not None else None
    delay = _delays(cases)
    timing = _timing(_stream(cases, 100_000))
    timing["after_100k_run_us_per_token"] = _pathological()
    per_phenomenon: dict[str, dict[str, int]] = {}
    for case in cases:
        row = per_phenomenon.setdefault(case.phenomenon, {"cases": 0, "rxtts": 0, "pysbd": 0})
        row["cases"] += 1
        row["rxtts"] += case.id not in ours.failed
        row["pysbd"] += anchor is not None and case.id not in anchor.failed
    result: dict[str, Any] = {
        "corpus_cases": len(cases),
        "exact_matches_per_phenomenon": per_phenomenon,
        "timing": timing,
        "delay": delay,
        "accuracy": {"rxtts_streaming": asdict(ours)},
    }
    if anchor is not None:
        result["accuracy"]["pysbd"] = asdict(anchor)
    _print(result)
    if out_json is not None:
        out_json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return result


def _print(r: dict[str, Any]) -> None:
    t, d = r["timing"], r["delay"]
    print(f"sentences() + chunk_schedule() through Rx, {t['tokens']} tokens")
    print(f"  median {t['median_us_per_token']:.2f} us/token   p99 {t['p99_us_per_token']:.2f}")
    print(f"  mean {t['mean_us_per_token']:.2f} us/token   {t['tokens_per_second']:,.0f} tokens/s")
    print(f"  pure SentenceSegmenter: {t['pure_segmenter_mean_us_per_token']:.2f} us/token")
    print(
        f"chunk_schedule(segment=True, auto_mode=True): median {t['fused_median_us_per_token']:.2f}"
        f" us/token   p99 {t['fused_p99_us_per_token']:.2f}   mean {t['fused_mean_us_per_token']:.2f}"
    )
    runs = ", ".join(f"{k!r} {v:.2f}" for k, v in t["after_100k_run_us_per_token"].items())
    print(f"  one-char tokens after a 100k run (us/token): {runs}")
    print(
        f"added delay: mean {d['mean_delay_tokens']:.2f} tokens, max {d['max_delay_tokens']}, "
        f"<=1 token for {d['share_delay_le_1']:.0%} of {d['segments_emitted_early']} segments"
    )
    print(f"accuracy on {r['corpus_cases']} cases       exact   precision  recall   F1")
    for name, a in r["accuracy"].items():
        print(f"  {name:<24} {a['exact_match']:7.1%} {a['precision']:9.1%} {a['recall']:8.1%} {a['f1']:6.1%}")
    print("exact matches per phenomenon (rxtts / pysbd / cases):")
    table = r["exact_matches_per_phenomenon"]
    rows = [f"{k} {v['rxtts']}/{v['pysbd']}/{v['cases']}" for k, v in table.items()]
    for i in range(0, len(rows), 5):
        print("  " + ", ".join(rows[i : i + 5]))
    for name, a in r["accuracy"].items():
        print(f"  {name} missed: {', '.join(a['failed']) or '-'}")


if __name__ == "__main__":
    run()
