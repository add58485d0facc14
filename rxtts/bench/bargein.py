"""Barge-in latency: from cancel to the ``interrupted`` ack and to the last audio frame.

Run: ``rxtts bench bargein [--quick] [--engine piper|tone]``.

Setup: the local server in a child process (piper, 2 threads, 2 workers, default pacing
``max_lead_seconds=1.0``), its engine wrapped by ``TimedEngine`` so every synthesis call
is timestamped. Each turn speaks :data:`PARAGRAPH` (long sentences, Low latency preset:
chunk 0 is the first sentence, later chunks are longer), sent as word tokens at once and
flushed. After the first audio frame arrives the client waits a random 100-400 ms
(seeded, the same delays for both variants) and cancels, so piper is usually in the
middle of a later chunk (reported as ``engine busy at cancel``). N = 30 turns (5 with
``--quick``) per variant:

- ``rxtts``: ``session.speak(tokens)`` disposed (the Rx barge-in). Measured: dispose ->
  :class:`~rxtts.events.Interrupted` on ``session.events``, and audio frames delivered to
  the subscriber or to ``session.events`` after the dispose (the protocol core drops the
  cancelled turn's late frames, so this should be 0).
- ``wire``: a raw ``websockets`` client sending the same frames and ``{"cancel": true}``,
  recording every frame's arrival. Measured: cancel -> ``interrupted``; cancel -> last
  audio frame that arrived after the cancel (0 when none), how many audio frames and how
  much audio were still in flight, and two protocol checks that must stay 0: audio
  after the ack, and ``final``/``session_closed`` of a cancelled turn (PROTOCOL S-5).

Also reported: engine stop latency, cancel -> the return of the engine call that was
running (piper: ``RunOptions.terminate`` stops the inference mid-chunk). Goal of issue 8:
ack under 50 ms at p99.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from rxtts.bench._stats import (
    CallLog,
    fmt,
    format_table,
    load_average,
    progress,
    spawn_server,
    summarize,
)
from rxtts.bench.ttfa import tokenize
from rxtts.client.session import StreamingSession
from rxtts.config import LOW_LATENCY, StreamConfig
from rxtts.events import AudioChunk, Interrupted, TtsEvent

__all__ = ["PARAGRAPH", "format_result", "run"]

PARAGRAPH = (
    "Let me walk you through the whole process step by step. First, open the settings page "
    "and scroll down to the section called network, where you will find a list of every "
    "connection this device has used during the last thirty days, including the ones that "
    "failed. Next, select the connection you want to change, press the edit button in the "
    "upper right corner, and enter the new address exactly as your provider wrote it in the "
    "letter, paying attention to the dots and the numbers. Finally, save your changes, "
    "restart the device, and wait about two minutes before you try to connect again, "
    "because the router needs a little time to pick up the new configuration."
)
"""A long answer that is still being spoken when the user barges in."""

VOICE = 1071
GOAL_ACK_P99_MS = 50.0
"""Goal of issue 8: the ``interrupted`` ack within 50 ms at p99."""
_QUIET_S = 0.3  # after the ack: late frames would show up here
_SEED = 8


def _delays(n: int) -> list[float]:
    rng = random.Random(_SEED)
    return [rng.uniform(0.1, 0.4) for _ in range(n)]


def _engine_stop(log: CallLog, at: float) -> tuple[bool, float | None]:
    """Whether the engine was running at ``at``, and ms until that call returned."""
    busy = log.busy_at(at)
    if not busy:
        return False, None
    ends = [c.end for c in busy if c.end is not None]
    return True, (max(ends) - at) * 1000.0 if ends else None


async def _engine_calls_settled(log: CallLog, at: float, wait: float = 2.0) -> None:
    """Wait until the call running at ``at`` has been reported as ended (process server)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        busy = log.busy_at(at)
        if not busy or all(c.end is not None for c in busy):
            return
        await asyncio.sleep(0.02)


# -- rxtts variant ------------------------------------------------------------------------------


@dataclass(slots=True)
class _RxTurn:
    """One rxtts barge-in turn: futures for the first audio and the ack, late frames."""

    first_audio: asyncio.Future[float]
    acked: asyncio.Future[float]
    disposed_at: float | None = None
    late_user: list[float] = field(default_factory=list)
    late_events: list[float] = field(default_factory=list)


async def _rx_turn(
    session: StreamingSession, tokens: Sequence[str], delay: float, log: CallLog
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    st = _RxTurn(loop.create_future(), loop.create_future())

    def on_next(event: TtsEvent) -> None:
        if not isinstance(event, AudioChunk):
            return
        now = time.monotonic()
        if st.disposed_at is not None:
            st.late_user.append(now)
        elif not st.first_audio.done():
            st.first_audio.set_result(now)

    def on_event(event: TtsEvent) -> None:
        if st.disposed_at is None:
            return
        if isinstance(event, Interrupted) and not st.acked.done():
            st.acked.set_result(time.monotonic())
        elif isinstance(event, AudioChunk):
            st.late_events.append(time.monotonic())

    def on_error(error: Exception) -> None:
        if not st.first_audio.done():
            st.first_audio.set_exception(error)

    events = session.events.subscribe(on_event)
    turn = session.speak(list(tokens)).subscribe(on_next, on_error)
    try:
        await asyncio.wait_for(st.first_audio, 60.0)
        await asyncio.sleep(delay)
        st.disposed_at = time.monotonic()
        turn.dispose()  # the barge-in
        acked = await asyncio.wait_for(st.acked, 10.0)
        await asyncio.sleep(_QUIET_S)
    finally:
        turn.dispose()
        events.dispose()
    await _engine_calls_settled(log, st.disposed_at)
    busy, stop_ms = _engine_stop(log, st.disposed_at)
    late = st.late_user + st.late_events
    return {
        "delay_ms": delay * 1000.0,
        "ack_ms": (acked - st.disposed_at) * 1000.0,
        "frames_delivered_after_dispose": len(late),
        "last_delivered_after_dispose_ms": (max(late) - st.disposed_at) * 1000.0 if late else 0.0,
        "engine_busy_at_cancel": busy,
        "engine_stop_ms": stop_ms,
    }


async def _rx_variant(
    url: str, log: CallLog, tokens: Sequence[str], delays: Sequence[float]
) -> list[dict[str, Any]]:
    from rxtts.client.tts import TTS

    tts = TTS(url)
    try:
        session = tts.streaming_session(voice_id=VOICE, preset=LOW_LATENCY.name, language="en")
        await session.connect()
        await _rx_turn(session, tokens, 0.1, log)  # warm-up
        out = []
        for i, delay in enumerate(delays):
            out.append(await _rx_turn(session, tokens, delay, log))
            progress(f"bargein rxtts {i + 1}/{len(delays)}: ack {out[-1]['ack_ms']:.1f} ms")
        await session.close()
        return out
    finally:
        await tts.aclose()


# -- raw wire variant ---------------------------------------------------------------------------


async def _reader(ws: ClientConnection, queue: asyncio.Queue[tuple[float, dict[str, Any]]]) -> None:
    with contextlib.suppress(Exception):
        async for message in ws:
            queue.put_nowait((time.monotonic(), json.loads(message)))


async def _next(
    queue: asyncio.Queue[tuple[float, dict[str, Any]]], timeout: float
) -> tuple[float, dict[str, Any]]:
    return await asyncio.wait_for(queue.get(), timeout)


def _audio_seconds(frame: dict[str, Any]) -> float:
    return float(frame.get("samples", 0)) / float(frame.get("sr", 1) or 1)


async def _wire_turn(
    ws: ClientConnection,
    queue: asyncio.Queue[tuple[float, dict[str, Any]]],
    tokens: Sequence[str],
    delay: float,
    log: CallLog,
) -> dict[str, Any]:
    config = StreamConfig.from_preset(LOW_LATENCY, voice_id=VOICE, language="en").to_wire()
    await ws.send(json.dumps({"text": tokens[0], "flush": False, **config}))
    for token in tokens[1:]:
        await ws.send(json.dumps({"text": token, "flush": False}))
    await ws.send(json.dumps({"flush": True}))
    while True:
        _, frame = await _next(queue, 60.0)
        if frame.get("error"):
            raise RuntimeError(f"server error: {frame}")
        if frame.get("audio"):
            break
    await asyncio.sleep(delay)
    cancel_at = time.monotonic()
    await ws.send(json.dumps({"cancel": True}))
    after: list[tuple[float, float]] = []  # (arrival, audio seconds) of audio after the cancel
    ended = 0  # final/session_closed after the cancel: must stay 0 (PROTOCOL S-5)
    while True:
        at, frame = await _next(queue, 10.0)
        if at >= cancel_at and frame.get("audio"):
            after.append((at, _audio_seconds(frame)))
        if at >= cancel_at and (frame.get("final") or frame.get("session_closed")):
            ended += 1
        if frame.get("interrupted"):
            ack_at = at
            break
    late_after_ack = 0
    deadline = time.monotonic() + _QUIET_S
    while (left := deadline - time.monotonic()) > 0:
        try:
            _, frame = await _next(queue, left)
        except TimeoutError:
            break
        late_after_ack += bool(frame.get("audio"))
        ended += bool(frame.get("final") or frame.get("session_closed"))
    await _engine_calls_settled(log, cancel_at)
    busy, stop_ms = _engine_stop(log, cancel_at)
    return {
        "delay_ms": delay * 1000.0,
        "ack_ms": (ack_at - cancel_at) * 1000.0,
        "last_audio_ms": (max(a for a, _ in after) - cancel_at) * 1000.0 if after else 0.0,
        "frames_after_cancel": len(after),
        "audio_after_cancel_ms": sum(s for _, s in after) * 1000.0,
        "audio_frames_after_ack": late_after_ack,
        "final_or_closed_after_cancel": ended,
        "engine_busy_at_cancel": busy,
        "engine_stop_ms": stop_ms,
    }


async def _wire_variant(
    url: str, log: CallLog, tokens: Sequence[str], delays: Sequence[float]
) -> list[dict[str, Any]]:
    queue: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
    async with connect(f"{url}/ws/tts/stream", compression=None, max_size=1 << 22) as ws:
        reader = asyncio.create_task(_reader(ws, queue))
        try:
            await _wire_turn(ws, queue, tokens, 0.1, log)  # warm-up
            out = []
            for i, delay in enumerate(delays):
                out.append(await _wire_turn(ws, queue, tokens, delay, log))
                progress(f"bargein wire {i + 1}/{len(delays)}: ack {out[-1]['ack_ms']:.1f} ms")
            return out
        finally:
            reader.cancel()


# -- the benchmark ------------------------------------------------------------------------------


def _summ(turns: Sequence[dict[str, Any]], key: str) -> dict[str, Any]:
    return summarize(t[key] for t in turns if t[key] is not None).to_json()


def _variant_summary(turns: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {key: _summ(turns, key) for key in keys}
    out["engine_busy_at_cancel_share"] = sum(bool(t["engine_busy_at_cancel"]) for t in turns) / len(turns)
    return out


def run(
    out_json: Path | None = None,
    *,
    engine: str = "piper",
    quick: bool = False,
    turns: int | None = None,
) -> dict[str, Any]:
    """Run both variants, print the table, return (and optionally write) the results.

    Args:
        out_json: Where to write the JSON (``None``: don't).
        engine: Engine of the server process.
        quick: 5 turns per variant instead of 30.
        turns: Explicit number of turns per variant.
    """
    n = turns if turns is not None else (5 if quick else 30)
    delays = _delays(n)
    tokens = tokenize(PARAGRAPH)
    load_before = load_average()
    progress(f"bargein: starting the {engine} server process")
    server = spawn_server(engine, threads=2, workers=2, timed=True)
    try:
        rx = asyncio.run(_rx_variant(server.url, server.engine_calls, tokens, delays))
        wire = asyncio.run(_wire_variant(server.url, server.engine_calls, tokens, delays))
    finally:
        server.stop()
    result: dict[str, Any] = {
        "benchmark": "bargein",
        "engine": engine,
        "turns": n,
        "delay_after_first_audio_ms": [100, 400],
        "seed": _SEED,
        "goal_ack_p99_ms": GOAL_ACK_P99_MS,
        "server": {"process": True, "threads": 2, "workers": 2, "max_lead_seconds": 1.0},
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "rxtts": {
            "turns": rx,
            "summary": _variant_summary(
                rx,
                (
                    "ack_ms",
                    "frames_delivered_after_dispose",
                    "last_delivered_after_dispose_ms",
                    "engine_stop_ms",
                ),
            ),
        },
        "wire": {
            "turns": wire,
            "summary": _variant_summary(
                wire,
                (
                    "ack_ms",
                    "last_audio_ms",
                    "frames_after_cancel",
                    "audio_after_cancel_ms",
                    "audio_frames_after_ack",
                    "final_or_closed_after_cancel",
                    "engine_stop_ms",
                ),
            ),
        },
    }
    result["ack_goal_met"] = bool(
        max(result["rxtts"]["summary"]["ack_ms"]["p99"], result["wire"]["summary"]["ack_ms"]["p99"])
        < GOAL_ACK_P99_MS
    )
    print(format_result(result), flush=True)
    if out_json is not None:
        out_json.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _mean_max(s: dict[str, Any]) -> str:
    return f"{fmt(s['mean'], 2)} / {fmt(s['max'], 0)}"


def format_result(result: dict[str, Any]) -> str:
    """The table of a :func:`run` result."""
    rx, wire = result["rxtts"]["summary"], result["wire"]["summary"]
    rows = [
        [
            "rxtts speak() dispose",
            fmt(rx["ack_ms"]["p50"]),
            fmt(rx["ack_ms"]["p99"]),
            fmt(rx["last_delivered_after_dispose_ms"]["p50"]),
            fmt(rx["last_delivered_after_dispose_ms"]["p99"]),
            _mean_max(rx["frames_delivered_after_dispose"]),
            "-",
            f"{rx['engine_busy_at_cancel_share']:.0%}",
            fmt(rx["engine_stop_ms"]["p50"]),
        ],
        [
            "wire {cancel} (raw websockets)",
            fmt(wire["ack_ms"]["p50"]),
            fmt(wire["ack_ms"]["p99"]),
            fmt(wire["last_audio_ms"]["p50"]),
            fmt(wire["last_audio_ms"]["p99"]),
            _mean_max(wire["frames_after_cancel"]),
            fmt(wire["audio_after_cancel_ms"]["p50"]),
            f"{wire['engine_busy_at_cancel_share']:.0%}",
            fmt(wire["engine_stop_ms"]["p50"]),
        ],
    ]
    headers = [
        "variant",
        "ack p50",
        "ack p99",
        "last audio p50",
        "last audio p99",
        "late frames mean/max",
        "late audio ms p50",
        "engine busy",
        "engine stop p50",
    ]
    title = (
        f"Barge-in ({result['engine']}, {result['turns']} turns per variant, cancel 100-400 ms after the "
        f"first audio frame; ms from dispose/cancel)"
    )
    checks = (
        f"protocol checks (must be 0): audio after the ack {wire['audio_frames_after_ack']['max']:.0f}, "
        f"final/session_closed after cancel {wire['final_or_closed_after_cancel']['max']:.0f}"
    )
    verdict = "met" if result["ack_goal_met"] else "NOT met"
    goal = f"goal: ack < {result['goal_ack_p99_ms']:g} ms p99 -> {verdict}"
    return format_table(headers, rows, title) + "\n" + checks + "\n" + goal


if __name__ == "__main__":
    run()
