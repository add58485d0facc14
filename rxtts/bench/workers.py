"""Capacity per worker and per core: ``rxtts serve --worker-processes W`` under load.

Run: ``python -m rxtts.bench.workers [--engine piper|tone] [--workers 1,2]
[--sessions 1,2,4,8,16]``.

For each worker count W, one ``rxtts serve --worker-processes W --max-lead-seconds 0``
process tree (the CLI's default threads: ``plan_threads``, so W x engine threads x
onnxruntime threads fits the cores; unpaced so throughput shows). For each level N this
process opens N rxtts streaming sessions that speak ``ttfa.TEXT`` (~18 s of speech, all
tokens at once) at the same moment. Per level:

* speed per session = its audio seconds / wall seconds from its first token to its last
  frame (> 1 = the stream keeps up with playback); ``all > RT`` when every one does;
* aggregate = all audio seconds / the level's wall time: real-time streams the box
  sustains at that load (a stream needs 1.0);
* TTFA = first token to first audio frame, p50/p95 over the N sessions (client side,
  so it includes the loopback and the client's own work on the same cores).

Capacity per core = the best aggregate / ``os.cpu_count()``; the clients share the cores
with the servers, as in a single-box test, so the figure is a lower bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rxtts.bench._stats import fmt, format_table, load_average, progress, summarize
from rxtts.bench.scale import _close, _session_record, _sessions, _speak
from rxtts.bench.ttfa import TEXT, tokenize

__all__ = ["format_result", "main", "run"]

WORKER_LEVELS = (1, 2)
SESSION_LEVELS = (1, 2, 4, 8, 16)
_READY = re.compile(r"^rxtts serve: listening on (ws://\S+?)[ ,(]")


class _Cluster:
    """``rxtts serve --worker-processes W`` in a child process tree."""

    def __init__(self, engine: str, workers: int) -> None:
        cmd = [sys.executable, "-m", "rxtts.cli", "serve", "--engine", engine, "--port", "0"]
        cmd += ["--worker-processes", str(workers), "--max-lead-seconds", "0", "--log-level", "WARNING"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        self.url = ""
        self.line = ""
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                match = _READY.match(line)
                if match and not ready.is_set():
                    self.url, self.line = match.group(1), line.strip()
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(180):
            self.stop()
            raise RuntimeError(f"rxtts serve --worker-processes {workers} did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def _level(url: str, n: int, tokens: Sequence[str]) -> dict[str, Any]:
    tts, sessions = await _sessions(url, n)
    try:
        t0 = time.monotonic()
        turns = await asyncio.gather(*(_speak(s, tokens) for s in sessions))
        wall = time.monotonic() - t0
    finally:
        await _close(tts, sessions)
    records = [_session_record(t) for t in turns]
    speeds = [r["speed"] for r in records]
    ttfa = summarize(r["first_frame_ms"] for r in records if r["first_frame_ms"] is not None)
    audio = sum(r["audio_s"] for r in records)
    return {
        "sessions": n,
        "wall_s": wall,
        "audio_s_total": audio,
        "aggregate_x_rt": audio / wall if wall > 0 else None,
        "speed": summarize(speeds).to_json(),
        "ttfa_ms": ttfa.to_json(),
        "all_faster_than_real_time": min(speeds) > 1.0,
    }


def run(
    out_json: Path | None = None,
    *,
    engine: str = "piper",
    workers: Sequence[int] = WORKER_LEVELS,
    sessions: Sequence[int] = SESSION_LEVELS,
    text: str = TEXT,
) -> dict[str, Any]:
    """Run every (workers, sessions) level; print the table; return (and write) the result."""
    tokens = tokenize(text)
    cores = os.cpu_count() or 1
    out: list[dict[str, Any]] = []
    load_before = load_average()
    for w in workers:
        progress(f"workers: starting rxtts serve --worker-processes {w} ({engine})")
        cluster = _Cluster(engine, w)
        try:
            asyncio.run(_level(cluster.url, w, tokens[:10]))  # warm every worker a little
            for n in sessions:
                level = asyncio.run(_level(cluster.url, n, tokens))
                level["workers"] = w
                out.append(level)
                progress(
                    f"workers: W={w} N={n}: aggregate {level['aggregate_x_rt']:.2f}x RT, "
                    f"min speed {level['speed']['min']:.2f}, TTFA p95 {level['ttfa_ms']['p95']:.0f} ms"
                )
        finally:
            threads = cluster.line.split("threads: ", 1)[-1].rstrip(")") if cluster.line else ""
            cluster.stop()
        for level in out:
            if level["workers"] == w:
                level["threads"] = threads
    best = max((lv["aggregate_x_rt"] or 0.0 for lv in out), default=0.0)
    result: dict[str, Any] = {
        "benchmark": "workers",
        "engine": engine,
        "cores": cores,
        "text_chars": len(text),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "levels": out,
        "best_aggregate_x_rt": best,
        "real_time_streams_per_core": best / cores,
        "max_sessions_all_real_time": {
            str(w): max(
                (lv["sessions"] for lv in out if lv["workers"] == w and lv["all_faster_than_real_time"]),
                default=0,
            )
            for w in workers
        },
    }
    print(format_result(result), flush=True)
    if out_json is not None:
        out_json.write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_result(result: dict[str, Any]) -> str:
    """The table of a :func:`run` result."""
    rows = [
        [
            lv["workers"],
            lv["sessions"],
            fmt(lv["aggregate_x_rt"], 2),
            fmt(lv["aggregate_x_rt"] / lv["workers"] if lv["aggregate_x_rt"] else None, 2),
            fmt(lv["speed"]["min"], 2),
            fmt(lv["speed"]["p50"], 2),
            "yes" if lv["all_faster_than_real_time"] else "NO",
            fmt(lv["ttfa_ms"]["p50"], 0),
            fmt(lv["ttfa_ms"]["p95"], 0),
        ]
        for lv in result["levels"]
    ]
    table = format_table(
        [
            "workers",
            "sessions",
            "aggregate x RT",
            "x RT / worker",
            "speed min",
            "speed p50",
            "all > RT",
            "TTFA p50 ms",
            "TTFA p95 ms",
        ],
        rows,
        f"rxtts serve --worker-processes W ({result['engine']}, unpaced, default threads; each session "
        f"speaks {result['text_chars']} chars at once; {result['cores']} cores shared with the clients)",
    )
    lines = [table, ""]
    for w, n in result["max_sessions_all_real_time"].items():
        lines.append(f"W={w}: up to {n} concurrent sessions all faster than real time")
    lines.append(
        f"best aggregate {result['best_aggregate_x_rt']:.2f}x real time = "
        f"{result['real_time_streams_per_core']:.2f} real-time streams per core"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rxtts.bench.workers``."""
    p = argparse.ArgumentParser(prog="python -m rxtts.bench.workers", description=__doc__.splitlines()[0])
    p.add_argument("--engine", default="piper", choices=("piper", "espeak", "tone"))
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p.add_argument("--sessions", default="1,2,4,8,16", help="comma-separated session counts")
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = p.parse_args(argv)
    run(
        args.json,
        engine=args.engine,
        workers=[int(x) for x in args.workers.split(",")],
        sessions=[int(x) for x in args.sessions.split(",")],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
