"""Client overhead: rxtts vs the official ``kugelaudio==2.7.0`` SDK, same server, same run.

Run: ``rxtts bench client [--quick] [--engine piper|tone]``.

Setup: the server runs in its own process (``python -m rxtts.bench._stats serve``), and
so does each client (``python -m rxtts.bench.client_overhead client ...``), one after
the other, so a client's CPU time is its own: ``time.process_time()`` of the client
process around the measured turns (connecting and imports excluded). The SDK runs with
telemetry off (``KugelAudio(..., telemetry=False)`` and ``KUGELAUDIO_TELEMETRY=0``);
both clients use ``/ws/tts/stream`` without compression and touch every frame's samples
as int16 (``AudioChunk.samples`` / ``np.frombuffer(chunk.audio)``).

Each client runs in rounds of up to 5 turns (throughput: 2), the two alternating (and
alternating which goes first), so that a change of the machine's load hits both alike.

1. TTFA (server: ``--engine``, piper by default, unpaced). Both clients stream the same
   tokens (``ttfa.TEXT`` tokenised, Low latency preset, ``flush_timeout_ms`` 500 as the
   SDK always sends) on the same schedule, one token every 25 ms, and stop the turn at
   the first non-silent sample (rxtts: dispose; SDK: ``cancel_current()``). rxtts uses
   ``session.speak(async_tokens)``; the SDK its documented loop
   ``async for chunk in session.send(token)``, which reads for up to 50 ms after every
   token while no audio comes, so it falls behind a fast token stream: ``ref lag`` is how
   late the token that completes chunk 0 left, against its schedule. TTFA is measured
   from the first token (what the user waits for) and from that reference token's actual
   send. The server's engine is timed (``spawn_server(timed=True)``), so that TTFA is
   split into the engine's time to first sound for the turn's chunk 0 and the rest
   (client, protocol, server operators, transport): the rest is where the clients differ,
   the engine's time is noise for this comparison.
2. Throughput (server: tone, unpaced, 24 kHz PCM in 80 ms frames). One long text (about
   20,000 characters, 200 s of audio) sent as one flushed text; measured per turn: audio
   frames decoded per second of wall time, client CPU milliseconds per second of audio,
   and CPU utilisation of the client process (near 100 % means the client is the
   bottleneck, else the server is). When the server is the bottleneck, frames per
   second of wall time is the same for both clients; frames per CPU-second of the client
   (``frames / process_time``) is then the client's decode capacity.

The table prints the ratios rxtts / SDK (below 1 is better for TTFA and CPU, above 1 for
frames per second).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rxtts.audio.silence import first_non_silent_sample
from rxtts.bench._stats import CallLog, fmt, format_table, load_average, progress, spawn_server, summarize
from rxtts.bench.ttfa import TEXT, reference_index, speak_until_sound, tokenize
from rxtts.config import LOW_LATENCY

__all__ = ["format_result", "long_text", "run"]

VOICE = 1071
PACE_MS = 25.0
FLUSH_TIMEOUT_MS = 500  # the SDK always sends 500; rxtts sends the same here
_CHILD_TIMEOUT_S = 900.0


def long_text(chars: int) -> str:
    """About ``chars`` characters of plain sentences (``ttfa.TEXT`` repeated)."""
    reps = max(1, chars // (len(TEXT) + 1))
    return " ".join([TEXT] * reps)


# -- child: one client, one mode ----------------------------------------------------------------


async def _rx_ttfa(url: str, tokens: Sequence[str], turns: int, pace_s: float) -> list[dict[str, Any]]:
    from rxtts.client.tts import TTS

    tts = TTS(url)
    out: list[dict[str, Any]] = []
    try:
        session = tts.streaming_session(
            voice_id=VOICE, preset=LOW_LATENCY.name, language="en", flush_timeout_ms=FLUSH_TIMEOUT_MS
        )
        await session.connect()
        for _ in range(turns + 1):  # the first turn is a warm-up
            t = await speak_until_sound(session, tokens, pace_s)
            out.append({"sent": list(t.sent), "first_audio": t.first_audio, "first_sound": t.first_sound})
        await session.close()
    finally:
        await tts.aclose()
    return out[1:]


async def _sdk_ttfa(http_url: str, tokens: Sequence[str], turns: int, pace_s: float) -> list[dict[str, Any]]:
    from kugelaudio import KugelAudio

    client = KugelAudio(api_key="bench", api_url=http_url, telemetry=False)
    out: list[dict[str, Any]] = []
    session = client.tts.streaming_session(voice_id=VOICE, language="en")
    session.update_config(
        auto_mode=LOW_LATENCY.auto_mode, chunk_length_schedule=list(LOW_LATENCY.chunk_length_schedule)
    )
    async with session:
        for _ in range(turns + 1):
            sent: list[float] = []
            first_audio: float | None = None
            first_sound: float | None = None
            start = time.monotonic()
            for i, token in enumerate(tokens):
                delay = start + i * pace_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent.append(time.monotonic())
                chunks = session.send(token)  # an async generator: aclose() ends it early
                async for chunk in chunks:
                    now = time.monotonic()
                    if first_audio is None:
                        first_audio = now
                    offset = first_non_silent_sample(np.frombuffer(chunk.audio, dtype="<i2"))
                    if offset is not None:
                        first_sound = now + offset / chunk.sample_rate
                        break
                await chunks.aclose()  # type: ignore[attr-defined]
                if first_sound is not None:
                    break
            await session.cancel_current()
            out.append({"sent": sent, "first_audio": first_audio, "first_sound": first_sound})
    client.close()
    return out[1:]


async def _rx_throughput(url: str, text: str, repeats: int) -> list[dict[str, Any]]:
    from rxtts.client.tts import TTS
    from rxtts.events import AudioChunk, TtsEvent

    tts = TTS(url)
    out: list[dict[str, Any]] = []
    try:
        session = tts.streaming_session(voice_id=VOICE, language="en")
        await session.connect()
        for i in range(repeats + 1):  # the first turn is a short warm-up
            body = text if i else text[:500]
            loop = asyncio.get_running_loop()
            done: asyncio.Future[None] = loop.create_future()
            counts = {"frames": 0, "samples": 0.0}

            def on_next(event: TtsEvent, counts: dict[str, float] = counts) -> None:
                if isinstance(event, AudioChunk):
                    samples = event.samples
                    counts["frames"] += 1
                    counts["samples"] += samples.shape[0] / event.sample_rate

            def on_error(error: Exception, done: asyncio.Future[None] = done) -> None:
                if not done.done():
                    done.set_exception(error)

            def on_completed(done: asyncio.Future[None] = done) -> None:
                if not done.done():
                    done.set_result(None)

            cpu0, t0 = time.process_time(), time.monotonic()
            session.speak([body]).subscribe(on_next, on_error, on_completed)
            await done
            out.append(_throughput_record(counts["frames"], counts["samples"], cpu0, t0))
        await session.close()
    finally:
        await tts.aclose()
    return out[1:]


async def _sdk_throughput(http_url: str, text: str, repeats: int) -> list[dict[str, Any]]:
    from kugelaudio import KugelAudio

    client = KugelAudio(api_key="bench", api_url=http_url, telemetry=False)
    out: list[dict[str, Any]] = []
    async with client.tts.streaming_session(voice_id=VOICE, language="en") as session:
        for i in range(repeats + 1):
            body = text if i else text[:500]
            frames, seconds = 0, 0.0
            cpu0, t0 = time.process_time(), time.monotonic()
            async for chunk in session.send(body, flush=True):
                samples = np.frombuffer(chunk.audio, dtype="<i2")
                frames += 1
                seconds += samples.shape[0] / chunk.sample_rate
            out.append(_throughput_record(frames, seconds, cpu0, t0))
    client.close()
    return out[1:]


def _throughput_record(frames: float, seconds: float, cpu0: float, t0: float) -> dict[str, Any]:
    wall = time.monotonic() - t0
    cpu = time.process_time() - cpu0
    return {
        "frames": int(frames),
        "audio_seconds": seconds,
        "wall_s": wall,
        "cpu_s": cpu,
        "frames_per_s": frames / wall if wall > 0 else 0.0,
        "frames_per_cpu_s": frames / cpu if cpu > 0 else None,
        "cpu_ms_per_audio_s": 1000.0 * cpu / seconds if seconds else None,
        "cpu_utilisation": cpu / wall if wall > 0 else 0.0,
    }


def _child_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m rxtts.bench.client_overhead client")
    p.add_argument("--impl", choices=("rxtts", "sdk"), required=True)
    p.add_argument("--mode", choices=("ttfa", "throughput"), required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--turns", type=int, default=10)
    p.add_argument("--pace-ms", type=float, default=PACE_MS)
    p.add_argument("--chars", type=int, default=20_000)
    args = p.parse_args(argv)
    http_url = "http://" + args.url.removeprefix("ws://")
    result: list[dict[str, Any]]
    if args.mode == "ttfa":
        tokens = tokenize(TEXT)
        pace = args.pace_ms / 1000.0
        if args.impl == "rxtts":
            result = asyncio.run(_rx_ttfa(args.url, tokens, args.turns, pace))
        else:
            result = asyncio.run(_sdk_ttfa(http_url, tokens, args.turns, pace))
    else:
        text = long_text(args.chars)
        if args.impl == "rxtts":
            result = asyncio.run(_rx_throughput(args.url, text, args.turns))
        else:
            result = asyncio.run(_sdk_throughput(http_url, text, args.turns))
    print(json.dumps(result))
    return 0


# -- parent ---------------------------------------------------------------------------------------


def _client(impl: str, mode: str, url: str, turns: int, pace_ms: float, chars: int) -> list[dict[str, Any]]:
    cmd = [
        sys.executable,
        "-m",
        "rxtts.bench.client_overhead",
        "client",
        "--impl",
        impl,
        "--mode",
        mode,
        "--url",
        url,
        "--turns",
        str(turns),
        "--pace-ms",
        str(pace_ms),
        "--chars",
        str(chars),
    ]
    env = dict(os.environ, KUGELAUDIO_TELEMETRY="0")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=_CHILD_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{impl} {mode} client failed ({done.returncode}): {done.stderr[-2000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("[")]
    records: list[dict[str, Any]] = json.loads(lines[-1])
    return records


def _rounds(turns: int, per_round: int = 5) -> list[int]:
    """Split ``turns`` into rounds of at most ``per_round``."""
    full, rest = divmod(turns, per_round)
    return [per_round] * full + ([rest] if rest else [])


def _order(rnd: int) -> tuple[str, str]:
    return ("rxtts", "sdk") if rnd % 2 == 0 else ("sdk", "rxtts")


def _ms(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else (b - a) * 1000.0


def _ttfa_summary(turns: Sequence[dict[str, Any]], ref: int, pace_ms: float, log: CallLog) -> dict[str, Any]:
    rows: list[dict[str, float | None]] = []
    for t in turns:
        sent = t["sent"]
        ref_at = sent[ref] if len(sent) > ref else None
        calls = log.calls_since(sent[0]) if sent else []
        call = calls[0] if calls else None
        engine = _ms(call.start, call.first_sound) if call is not None else None
        ttfa_ref = _ms(ref_at, t["first_sound"])
        rows.append(
            {
                "ttfa_first_token_ms": _ms(sent[0], t["first_sound"]),
                "ttfa_ref_token_ms": ttfa_ref,
                "ttfb_first_token_ms": _ms(sent[0], t["first_audio"]),
                "ref_send_lag_ms": None if ref_at is None else (ref_at - sent[0]) * 1000.0 - ref * pace_ms,
                "engine_ms": engine,
                "rest_ms": None if ttfa_ref is None or engine is None else ttfa_ref - engine,
            }
        )
    keys = (
        "ttfa_first_token_ms",
        "ttfa_ref_token_ms",
        "ttfb_first_token_ms",
        "ref_send_lag_ms",
        "engine_ms",
        "rest_ms",
    )
    stats = {k: summarize(v for r in rows if (v := r[k]) is not None).to_json() for k in keys}
    return {"turns": rows, **stats}


def _throughput_summary(turns: Sequence[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float:
        return float(statistics.median(float(t[key]) for t in turns if t[key] is not None))

    return {
        "turns": list(turns),
        "frames_per_s": med("frames_per_s"),
        "frames_per_cpu_s": med("frames_per_cpu_s"),
        "cpu_ms_per_audio_s": med("cpu_ms_per_audio_s"),
        "cpu_utilisation": med("cpu_utilisation"),
        "frames": med("frames"),
        "audio_seconds": med("audio_seconds"),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b and not np.isnan(b) and not np.isnan(a) else None


def run(
    out_json: Path | None = None,
    *,
    engine: str = "piper",
    quick: bool = False,
    turns: int | None = None,
    chars: int | None = None,
    pace_ms: float = PACE_MS,
) -> dict[str, Any]:
    """Run both clients in both modes, print the table, return (and write) the results.

    Args:
        out_json: Where to write the JSON (``None``: don't).
        engine: Engine of the TTFA server (throughput always uses tone).
        quick: 3 TTFA turns, 2 throughput turns of 3,000 characters.
        turns: TTFA turns per client (default 15); throughput turns are a third of it.
        chars: Length of the throughput text (default 20,000).
        pace_ms: Milliseconds between tokens in the TTFA test.
    """
    n = turns if turns is not None else (3 if quick else 15)
    n_tp = max(2, n // 3) if turns is not None or not quick else 2
    length = chars if chars is not None else (3_000 if quick else 20_000)
    ref, _ = reference_index(tokenize(TEXT), LOW_LATENCY)
    load_before = load_average()
    progress(f"client: starting the {engine} server process (TTFA) and a tone server (throughput)")
    ttfa_server = spawn_server(engine, threads=2, workers=2, max_lead_seconds=None, timed=True)
    tone_server = ttfa_server if engine == "tone" else spawn_server("tone", max_lead_seconds=None)
    raw_ttfa: dict[str, list[dict[str, Any]]] = {"rxtts": [], "sdk": []}
    raw_tp: dict[str, list[dict[str, Any]]] = {"rxtts": [], "sdk": []}
    try:
        # Interleaved rounds, alternating which client goes first, so a drift of the
        # machine's load does not favour one of them.
        for rnd, size in enumerate(_rounds(n)):
            for impl in _order(rnd):
                progress(f"client: {impl} TTFA, round {rnd + 1}, {size} turns")
                raw_ttfa[impl] += _client(impl, "ttfa", ttfa_server.url, size, pace_ms, length)
        for rnd, size in enumerate(_rounds(n_tp, per_round=2)):
            for impl in _order(rnd):
                progress(f"client: {impl} throughput, round {rnd + 1}, {size} turns of {length} characters")
                raw_tp[impl] += _client(impl, "throughput", tone_server.url, size, pace_ms, length)
    finally:
        ttfa_server.stop()
        if tone_server is not ttfa_server:
            tone_server.stop()
    time.sleep(0.3)  # the server reports engine calls when they end
    calls = ttfa_server.engine_calls
    ttfa = {impl: _ttfa_summary(raw_ttfa[impl], ref, pace_ms, calls) for impl in raw_ttfa}
    throughput = {impl: _throughput_summary(raw_tp[impl]) for impl in raw_tp}
    ratios = {
        "ttfa_first_token_p50": _ratio(
            ttfa["rxtts"]["ttfa_first_token_ms"]["p50"], ttfa["sdk"]["ttfa_first_token_ms"]["p50"]
        ),
        "rest_p50": _ratio(ttfa["rxtts"]["rest_ms"]["p50"], ttfa["sdk"]["rest_ms"]["p50"]),
        "ttfa_ref_token_p50": _ratio(
            ttfa["rxtts"]["ttfa_ref_token_ms"]["p50"], ttfa["sdk"]["ttfa_ref_token_ms"]["p50"]
        ),
        "frames_per_s": _ratio(throughput["rxtts"]["frames_per_s"], throughput["sdk"]["frames_per_s"]),
        "frames_per_cpu_s": _ratio(
            throughput["rxtts"]["frames_per_cpu_s"], throughput["sdk"]["frames_per_cpu_s"]
        ),
        "cpu_ms_per_audio_s": _ratio(
            throughput["rxtts"]["cpu_ms_per_audio_s"], throughput["sdk"]["cpu_ms_per_audio_s"]
        ),
    }
    result: dict[str, Any] = {
        "benchmark": "client",
        "engine_ttfa": engine,
        "engine_throughput": "tone",
        "ttfa_turns": n,
        "throughput_turns": n_tp,
        "throughput_chars": length,
        "pace_ms": pace_ms,
        "reference_token_index": ref,
        "server": {"process": True, "max_lead_seconds": None, "threads": 2, "workers": 2},
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "ttfa": ttfa,
        "throughput": throughput,
        "ratios_rxtts_over_sdk": ratios,
    }
    print(format_result(result), flush=True)
    if out_json is not None:
        out_json.write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_result(result: dict[str, Any]) -> str:
    """The table of a :func:`run` result."""
    t, tp, r = result["ttfa"], result["throughput"], result["ratios_rxtts_over_sdk"]

    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}x"

    rows = [
        [
            "TTFA from 1st token p50 (ms)",
            fmt(t["rxtts"]["ttfa_first_token_ms"]["p50"]),
            fmt(t["sdk"]["ttfa_first_token_ms"]["p50"]),
            ratio(r["ttfa_first_token_p50"]),
        ],
        [
            "TTFA from 1st token p95 (ms)",
            fmt(t["rxtts"]["ttfa_first_token_ms"]["p95"]),
            fmt(t["sdk"]["ttfa_first_token_ms"]["p95"]),
            "",
        ],
        [
            "TTFA from ref token p50 (ms)",
            fmt(t["rxtts"]["ttfa_ref_token_ms"]["p50"]),
            fmt(t["sdk"]["ttfa_ref_token_ms"]["p50"]),
            ratio(r["ttfa_ref_token_p50"]),
        ],
        [
            "  of which engine p50 (ms)",
            fmt(t["rxtts"]["engine_ms"]["p50"]),
            fmt(t["sdk"]["engine_ms"]["p50"]),
            "",
        ],
        [
            "  rest = client+protocol p50 (ms)",
            fmt(t["rxtts"]["rest_ms"]["p50"]),
            fmt(t["sdk"]["rest_ms"]["p50"]),
            ratio(r["rest_p50"]),
        ],
        [
            "ref token send lag p50 (ms)",
            fmt(t["rxtts"]["ref_send_lag_ms"]["p50"]),
            fmt(t["sdk"]["ref_send_lag_ms"]["p50"]),
            "",
        ],
        [
            "frames decoded / s",
            fmt(tp["rxtts"]["frames_per_s"], 0),
            fmt(tp["sdk"]["frames_per_s"], 0),
            ratio(r["frames_per_s"]),
        ],
        [
            "frames decoded / client CPU-s",
            fmt(tp["rxtts"]["frames_per_cpu_s"], 0),
            fmt(tp["sdk"]["frames_per_cpu_s"], 0),
            ratio(r["frames_per_cpu_s"]),
        ],
        [
            "client CPU ms / audio s",
            fmt(tp["rxtts"]["cpu_ms_per_audio_s"], 2),
            fmt(tp["sdk"]["cpu_ms_per_audio_s"], 2),
            ratio(r["cpu_ms_per_audio_s"]),
        ],
        [
            "client CPU utilisation",
            f"{tp['rxtts']['cpu_utilisation']:.0%}",
            f"{tp['sdk']['cpu_utilisation']:.0%}",
            "",
        ],
    ]
    title = (
        f"Client overhead: rxtts vs kugelaudio 2.7.0 SDK (TTFA: {result['engine_ttfa']}, "
        f"{result['ttfa_turns']} turns, {result['pace_ms']:g} ms/token, low-latency; throughput: tone, "
        f"{result['throughput_turns']} turns of {result['throughput_chars']} chars, unpaced)"
    )
    return format_table(["metric", "rxtts", "SDK", "rxtts/SDK"], rows, title)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        raise SystemExit(_child_main(sys.argv[2:]))
    run()
