"""Server scale: concurrent streaming sessions faster than real time, and connections.

Run: ``rxtts bench scale [--quick] [--engine piper|tone]``.

1. Streaming sessions (``--engine``, piper by default). The server runs in a child
   process with piper at 1 onnxruntime thread per inference and 2 engine workers
   (``threads=1, workers=2``), unpaced (``max_lead_seconds=None``: audio leaves as fast
   as it is made, so throughput is visible). For N = 1, 2, 4, 8, 12, 16, 24, 32 (1, 2
   with ``--quick``) this process opens N rxtts streaming sessions and every session
   speaks ``ttfa.TEXT`` (about 18 s of speech) at the same moment, all tokens at once.
   Per session: speed = audio seconds received / wall seconds from its first token to
   its last audio frame (> 1 = faster than real time), time to first frame, and the
   stall a player starting at the first frame would suffer (sum of the gaps where the
   next frame arrived after the previous audio ran out). A level passes when every
   session is faster than real time; the sweep stops after the first failing level.
   Also reported: the server's CPU use (cores, from psutil) and its RSS. The clients
   share the 2 cores with the server, as they would in a single-box test.
2. Connections (tone engine, default pacing). For N = 50, 100, 200 (5, 10 with
   ``--quick``), a fresh server process; after one warm-up turn its RSS is the
   baseline; then N rxtts streaming sessions connect (RSS idle), and each speaks one
   short sentence at the same time (RSS after the turn, time to first frame of those
   concurrent turns). Memory per connection = (RSS - baseline) / N.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rxtts.bench._stats import (
    ServerProcess,
    fmt,
    format_table,
    load_average,
    progress,
    spawn_server,
    summarize,
)
from rxtts.bench.ttfa import TEXT, tokenize
from rxtts.client.session import StreamingSession
from rxtts.events import AudioChunk, TtsEvent

__all__ = ["format_result", "run"]

VOICE = 1071
STREAM_LEVELS = (1, 2, 4, 8, 12, 16, 24, 32)
QUICK_STREAM_LEVELS = (1, 2)
CONNECTION_LEVELS = (50, 100, 200)
QUICK_CONNECTION_LEVELS = (5, 10)
SHORT_TURN = "Hello there, this is one short turn."
_TURN_TIMEOUT_S = 600.0


@dataclass(slots=True)
class _Turn:
    """Arrival times and durations of one session's audio frames."""

    start: float
    frames: list[tuple[float, float]] = field(default_factory=list)


async def _speak(session: StreamingSession, tokens: Sequence[str]) -> _Turn:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    turn = _Turn(time.monotonic())

    def on_next(event: TtsEvent) -> None:
        if isinstance(event, AudioChunk):
            turn.frames.append((time.monotonic(), event.num_samples / event.sample_rate))

    def on_error(error: Exception) -> None:
        if not done.done():
            done.set_exception(error)

    def on_completed() -> None:
        if not done.done():
            done.set_result(None)

    sub = session.speak(list(tokens)).subscribe(on_next, on_error, on_completed)
    try:
        await asyncio.wait_for(done, _TURN_TIMEOUT_S)
    finally:
        sub.dispose()
    return turn


def stall_seconds(start_play: float, frames: Sequence[tuple[float, float]]) -> float:
    """Total playback gap of a player that starts at ``start_play`` and plays frames in order.

    ``frames`` are ``(arrival, duration)``; a frame arriving after the audio before it ran
    out pauses playback until it arrives.
    """
    clock = start_play
    stall = 0.0
    for arrival, duration in frames:
        if arrival > clock:
            stall += arrival - clock
            clock = arrival
        clock += duration
    return stall


def _session_record(turn: _Turn) -> dict[str, Any]:
    if not turn.frames:
        return {"audio_s": 0.0, "wall_s": None, "speed": 0.0, "first_frame_ms": None, "stall_ms": None}
    audio = sum(d for _, d in turn.frames)
    first, last = turn.frames[0][0], turn.frames[-1][0]
    wall = last - turn.start
    return {
        "audio_s": audio,
        "wall_s": wall,
        "speed": audio / wall if wall > 0 else float("inf"),
        "first_frame_ms": (first - turn.start) * 1000.0,
        "stall_ms": stall_seconds(first, turn.frames) * 1000.0,
    }


async def _sessions(url: str, n: int) -> tuple[Any, list[StreamingSession]]:
    from rxtts.client.tts import TTS

    tts = TTS(url)
    sessions = [tts.streaming_session(voice_id=VOICE, language="en") for _ in range(n)]
    await asyncio.gather(*(s.connect() for s in sessions))
    return tts, sessions


async def _close(tts: Any, sessions: Sequence[StreamingSession]) -> None:
    await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
    await tts.aclose()


async def _stream_level(server: ServerProcess, n: int, tokens: Sequence[str]) -> dict[str, Any]:
    tts, sessions = await _sessions(server.url, n)
    try:
        cpu0, t0 = server.cpu_seconds(), time.monotonic()
        turns = await asyncio.gather(*(_speak(s, tokens) for s in sessions))
        wall = time.monotonic() - t0
        cpu = server.cpu_seconds() - cpu0
        rss = server.rss_bytes()
    finally:
        await _close(tts, sessions)
    records = [_session_record(t) for t in turns]
    speeds = [r["speed"] for r in records]
    return {
        "sessions": n,
        "wall_s": wall,
        "audio_s_total": sum(r["audio_s"] for r in records),
        "speed": summarize(speeds).to_json(),
        "first_frame_ms": summarize(
            r["first_frame_ms"] for r in records if r["first_frame_ms"] is not None
        ).to_json(),
        "stall_ms": summarize(r["stall_ms"] for r in records if r["stall_ms"] is not None).to_json(),
        "all_faster_than_real_time": min(speeds) > 1.0,
        "server_cpu_cores": cpu / wall if wall > 0 else None,
        "server_rss_mb": rss / 1e6,
        "per_session": records,
    }


def _streaming(engine: str, levels: Sequence[int]) -> dict[str, Any]:
    tokens = tokenize(TEXT)
    progress(f"scale: starting the {engine} server process (threads=1, workers=2, unpaced)")
    server = spawn_server(engine, threads=1, workers=2, max_lead_seconds=None)
    out: list[dict[str, Any]] = []
    try:
        asyncio.run(_stream_level(server, 1, tokens[:10]))  # warm-up
        for n in levels:
            level = asyncio.run(_stream_level(server, n, tokens))
            out.append(level)
            progress(
                f"scale: {n} sessions: min speed {level['speed']['min']:.2f}x real time, "
                f"server {level['server_cpu_cores']:.2f} cores"
            )
            if not level["all_faster_than_real_time"]:
                break
    finally:
        server.stop()
    passing = [lv["sessions"] for lv in out if lv["all_faster_than_real_time"]]
    return {
        "engine": engine,
        "server": {"process": True, "threads": 1, "workers": 2, "max_lead_seconds": None},
        "text_chars": len(TEXT),
        "levels": out,
        "max_sessions_faster_than_real_time": max(passing, default=0),
        "stopped_at_first_failure": bool(out) and not out[-1]["all_faster_than_real_time"],
    }


async def _connection_level(server: ServerProcess, n: int) -> dict[str, Any]:
    tts, warm = await _sessions(server.url, 1)
    await _speak(warm[0], [SHORT_TURN])
    await _close(tts, warm)
    await asyncio.sleep(0.3)
    base = server.rss_bytes()
    tts, sessions = await _sessions(server.url, n)
    try:
        await asyncio.sleep(0.5)
        idle = server.rss_bytes()
        t0 = time.monotonic()
        turns = await asyncio.gather(*(_speak(s, [SHORT_TURN]) for s in sessions), return_exceptions=True)
        wall = time.monotonic() - t0
        await asyncio.sleep(0.3)
        after = server.rss_bytes()
    finally:
        await _close(tts, sessions)
    ok = [t for t in turns if isinstance(t, _Turn) and t.frames]
    first = [(t.frames[0][0] - t.start) * 1000.0 for t in ok]
    return {
        "connections": n,
        "turns_ok": len(ok),
        "rss_base_mb": base / 1e6,
        "rss_idle_mb": idle / 1e6,
        "rss_after_turn_mb": after / 1e6,
        "kib_per_connection_idle": (idle - base) / n / 1024,
        "kib_per_connection_after_turn": (after - base) / n / 1024,
        "concurrent_turns_wall_s": wall,
        "first_frame_ms": summarize(first).to_json(),
    }


def _connections(levels: Sequence[int]) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    for n in levels:
        progress(f"scale: {n} tone connections (fresh server process)")
        with spawn_server("tone", threads=1, workers=2) as server:
            out.append(asyncio.run(_connection_level(server, n)))
    return {
        "engine": "tone",
        "server": {"process": True, "workers": 2, "max_lead_seconds": 1.0},
        "levels": out,
    }


def run(
    out_json: Path | None = None,
    *,
    engine: str = "piper",
    quick: bool = False,
    stream_levels: Sequence[int] | None = None,
    connection_levels: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Run both parts, print the tables, return (and optionally write) the results.

    Args:
        out_json: Where to write the JSON (``None``: don't).
        engine: Engine of the streaming part (the connection part always uses tone).
        quick: Small levels (1, 2 sessions; 5, 10 connections).
        stream_levels: Explicit session counts for part 1.
        connection_levels: Explicit connection counts for part 2.
    """
    s_levels = stream_levels or (QUICK_STREAM_LEVELS if quick else STREAM_LEVELS)
    c_levels = connection_levels or (QUICK_CONNECTION_LEVELS if quick else CONNECTION_LEVELS)
    load_before = load_average()
    streaming = _streaming(engine, s_levels)
    connections = _connections(c_levels)
    result: dict[str, Any] = {
        "benchmark": "scale",
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "streaming": streaming,
        "connections": connections,
    }
    print(format_result(result), flush=True)
    if out_json is not None:
        out_json.write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_result(result: dict[str, Any]) -> str:
    """The tables of a :func:`run` result."""
    st = result["streaming"]
    rows = [
        [
            lv["sessions"],
            fmt(lv["speed"]["min"], 2),
            fmt(lv["speed"]["p50"], 2),
            fmt(lv["first_frame_ms"]["p50"], 0),
            fmt(lv["first_frame_ms"]["max"], 0),
            fmt(lv["stall_ms"]["max"], 0),
            fmt(lv["server_cpu_cores"], 2),
            fmt(lv["server_rss_mb"], 0),
            "yes" if lv["all_faster_than_real_time"] else "NO",
        ]
        for lv in st["levels"]
    ]
    one = format_table(
        [
            "sessions",
            "speed min (x RT)",
            "speed p50",
            "1st frame p50 ms",
            "1st frame max ms",
            "stall max ms",
            "server cores",
            "server RSS MB",
            "all > RT",
        ],
        rows,
        f"Concurrent streaming sessions ({st['engine']}, server process threads=1 workers=2, unpaced; "
        f"each speaks {st['text_chars']} chars at once)",
    )
    one += f"\nmax sessions all faster than real time: {st['max_sessions_faster_than_real_time']}"
    if not st["stopped_at_first_failure"]:
        one += " (no level failed: the real maximum may be higher)"
    co = result["connections"]
    rows2 = [
        [
            lv["connections"],
            f"{lv['turns_ok']}/{lv['connections']}",
            fmt(lv["rss_base_mb"], 1),
            fmt(lv["rss_idle_mb"], 1),
            fmt(lv["rss_after_turn_mb"], 1),
            fmt(lv["kib_per_connection_idle"], 0),
            fmt(lv["kib_per_connection_after_turn"], 0),
            fmt(lv["first_frame_ms"]["p50"], 0),
            fmt(lv["first_frame_ms"]["p95"], 0),
        ]
        for lv in co["levels"]
    ]
    two = format_table(
        [
            "connections",
            "turns ok",
            "RSS base MB",
            "idle MB",
            "after turn MB",
            "KiB/conn idle",
            "KiB/conn after turn",
            "1st frame p50 ms",
            "p95",
        ],
        rows2,
        "Concurrent connections (tone engine, fresh server process per row; one short turn each, "
        "all at once)",
    )
    return one + "\n\n" + two


if __name__ == "__main__":
    run()
