"""Engine benchmark: piper streaming decode vs whole-sentence decode, and alignment cost.

``python -m rxtts.bench.engine [--repeats N] [--threads T]`` prints a table and the
machine; :func:`run` returns the numbers as a dict. Measured in one process, side by
side: the two modes alternate call by call, so machine load hits both alike.

- Time to first audio: from the ``synthesize`` call to its first block (engine only: no
  server, no resampling to the wire rate). Total: to the last block.
- Sentences of 6 and 25 words (one sentence each, as the engine now never splits a
  sentence) and a 60-word sentence with commas (the case ``split_clauses`` used to cut).
- ``max_abs_diff``: windowed vs one-call decode of the same sampled prior
  (:func:`~rxtts.server.engines.piper.windowed_decode_error`).
- Alignment overhead: streaming synthesis with ``SynthesisSettings(alignment=True)`` vs
  without, same sentence, alternating (``on - off``: noisy under load), and the alignment
  step alone (``mapping``: word-by-word phonemisation and matching, before first audio).

p50 over ``repeats`` runs after ``warmup`` discarded runs. Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

from rxtts.bench._stats import describe_machine, fmt, format_table, load_average, machine_info, summarize
from rxtts.engine import CancelToken, SynthesisSettings

__all__ = ["SENTENCES", "main", "run"]

SENTENCES: dict[str, str] = {
    "6 words": "The weather is nice today.",
    "25 words": (
        "When the morning train finally arrived at the small station the very tired travellers "
        "gathered their bags and walked slowly toward the old wooden bridge."
    ),
    "60 words": (
        "After a long and difficult winter, the people of the small mountain village gathered "
        "in the square to celebrate the first warm day of spring, bringing bread, cheese, "
        "fresh fruit and old songs, while the children ran between the tables, the dogs "
        "barked at the pigeons, and the oldest woman in the village told everyone again how "
        "the river had flooded the valley when she was a girl."
    ),
}
"""One sentence each; the word counts are their names."""


def _timed(call: Callable[[], Any]) -> tuple[float, float, int]:
    """(ms to first block, ms to last block, blocks) of one engine call."""
    start = time.perf_counter()
    first: float | None = None
    blocks = 0
    for _ in call():
        blocks += 1
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    return ((first or end) - start) * 1000.0, (end - start) * 1000.0, blocks


def _alternate(calls: dict[str, Callable[[], Any]], repeats: int, warmup: int) -> dict[str, dict[str, Any]]:
    """Run the calls round-robin; p50 of first-block and total ms per call name."""
    samples: dict[str, list[tuple[float, float, int]]] = {name: [] for name in calls}
    for round_index in range(warmup + repeats):
        for name, call in calls.items():
            result = _timed(call)
            if round_index >= warmup:
                samples[name].append(result)
    out: dict[str, dict[str, Any]] = {}
    for name, values in samples.items():
        out[name] = {
            "first_ms": summarize(v[0] for v in values).p50,
            "total_ms": summarize(v[1] for v in values).p50,
            "blocks": values[-1][2],
            "n": len(values),
        }
    return out


def _mapping_ms(engine: Any, text: str, repeats: int) -> float:
    """p50 ms of the alignment step alone: word-by-word phonemisation and phoneme -> word
    matching (the engine's private ``_Aligner.build``; durations come free with decoding)."""
    from rxtts.server.engines.piper import _PHONEMIZE_LOCK, _Aligner

    model = engine._load()
    with _PHONEMIZE_LOCK:
        sentences = model.voice.phonemize(text)
    values = []
    for _ in range(repeats):
        start = time.perf_counter()
        _Aligner.build(model, text, sentences, 1.0, engine.sample_rate)
        values.append((time.perf_counter() - start) * 1000.0)
    return summarize(values).p50


def run(repeats: int = 7, threads: int = 2, warmup: int = 2) -> dict[str, Any]:
    """Measure streaming vs whole-sentence decode and the alignment overhead (see module)."""
    from rxtts.server.engines.piper import PIPER_VOICES, PiperEngine, windowed_decode_error

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    streaming = PiperEngine(threads=threads, streaming=True)
    whole = PiperEngine(threads=threads, streaming=False)
    streaming.warm_up()
    whole.warm_up()
    voice = PIPER_VOICES[0]
    plain, aligned = SynthesisSettings(), SynthesisSettings(alignment=True)
    load_before = load_average()

    def call(engine: PiperEngine, text: str, settings: SynthesisSettings) -> Callable[[], Any]:
        return lambda: engine.synthesize_blocks(text, voice, settings, CancelToken())

    decode: list[dict[str, Any]] = []
    for label, text in SENTENCES.items():
        timings = _alternate(
            {"streaming": call(streaming, text, plain), "whole": call(whole, text, plain)}, repeats, warmup
        )
        error, windowed_len, whole_len = windowed_decode_error(streaming, text)
        decode.append(
            {
                "sentence": label,
                "streaming": timings["streaming"],
                "whole": timings["whole"],
                "compute_ratio": timings["streaming"]["total_ms"] / timings["whole"]["total_ms"],
                "max_abs_diff": error,
                "length_diff_samples": windowed_len - whole_len,
            }
        )
    alignment: list[dict[str, Any]] = []
    for label in SENTENCES:
        text = SENTENCES[label]
        timings = _alternate(
            {"off": call(streaming, text, plain), "on": call(streaming, text, aligned)}, repeats, warmup
        )
        alignment.append(
            {
                "sentence": label,
                "off": timings["off"],
                "on": timings["on"],
                "overhead_ms": timings["on"]["total_ms"] - timings["off"]["total_ms"],
                "mapping_ms": _mapping_ms(streaming, text, repeats),
            }
        )
    return {
        "threads": threads,
        "repeats": repeats,
        "windows": list(streaming.windows),
        "margins": list(streaming.margins),
        "decode": decode,
        "alignment": alignment,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "machine": machine_info(),
    }


def format_results(results: dict[str, Any]) -> str:
    """The tables ``main`` prints."""
    decode_rows = [
        [
            row["sentence"],
            fmt(row["streaming"]["first_ms"]),
            fmt(row["whole"]["first_ms"]),
            fmt(row["streaming"]["total_ms"]),
            fmt(row["whole"]["total_ms"]),
            fmt(row["compute_ratio"], 2),
            row["streaming"]["blocks"],
            f"{row['max_abs_diff']:.1e}",
            row["length_diff_samples"],
        ]
        for row in results["decode"]
    ]
    decode = format_table(
        [
            "sentence",
            "first ms (stream)",
            "first ms (whole)",
            "total ms (stream)",
            "total ms (whole)",
            "ratio",
            "windows",
            "max |diff|",
            "len diff",
        ],
        decode_rows,
        title=f"piper joe, {results['threads']} threads, p50 of {results['repeats']} runs "
        f"(windows {results['windows']}, margins {results['margins']})",
    )
    align_rows = [
        [
            row["sentence"],
            fmt(row["off"]["first_ms"]),
            fmt(row["on"]["first_ms"]),
            fmt(row["off"]["total_ms"]),
            fmt(row["on"]["total_ms"]),
            fmt(row["overhead_ms"]),
            fmt(row["mapping_ms"], 2),
        ]
        for row in results["alignment"]
    ]
    align = format_table(
        [
            "sentence",
            "first ms (off)",
            "first ms (on)",
            "total ms (off)",
            "total ms (on)",
            "on - off ms",
            "mapping ms",
        ],
        align_rows,
        title="word alignment (streaming), p50",
    )
    machine = describe_machine(results["machine"])
    loads = f"load average before {results['load_average_before']}, after {results['load_average_after']}"
    return f"{decode}\n\n{align}\n\n{machine}\n{loads}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its tables."""
    parser = argparse.ArgumentParser(prog="python -m rxtts.bench.engine", description=__doc__)
    parser.add_argument("--repeats", type=int, default=7, help="measured runs per case (default 7)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (default 2)")
    parser.add_argument("--warmup", type=int, default=2, help="discarded runs per case (default 2)")
    args = parser.parse_args(argv)
    print(format_results(run(args.repeats, args.threads, args.warmup)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
