"""End-to-end time to first audio (TTFA) per chunking preset, split into engine and rest.

Run: ``rxtts bench ttfa [--quick] [--engine piper|tone]``.

Setup: the local server runs in this process (``start_background_server``, as
``rxtts.connect()`` does with no URL) with piper (2 onnxruntime threads, 2 workers,
default pacing); the client is rxtts's ``StreamingSession.speak`` on one socket per
preset. Each turn streams the same paragraph (:data:`TEXT`) as LLM-like tokens (words
and punctuation, :func:`tokenize`) at a fixed pace (25 ms per token, 40 tokens/s),
emitted by an async generator on the client's loop.

Reference point (what "TTFA" is measured from): the **token after which the server's
``chunk_schedule`` emits chunk 0**. It is found by replaying the token list through the
same public operators the server uses (``sentences() + chunk_schedule(schedule,
auto_mode)``, :func:`reference_index`). Because ``sentences()`` confirms a boundary only
when it sees the next non-space character, that token is the one *after* the sentence
end: for "... with that." + " The" it is " The" (low-latency, auto mode) and its send
time is the reference. For Balanced/High quality it is the token after the first
sentence end at which the buffer holds >= 80/120 characters. TTFA ends at the first
non-silent sample at the client: delivery time (``time.monotonic()`` in the turn's
``on_next``) of the first audio frame with a sample above -50 dBFS, plus that sample's
offset in the frame (engines lead with a little silence). Also reported: time to the
first audio frame (TTFB) and TTFA from the turn's first token (the preset trade-off).

Decomposition: the server's engine is wrapped by :class:`TimedEngine`, which records
when each ``synthesize`` call starts and when its first non-silent block is yielded
(plus the same in-block offset) on the same monotonic clock. For each turn's chunk 0:

- ``engine`` = engine call start -> first non-silent block (the neural model's time);
- ``pre`` = reference token -> engine call (client send, WebSocket, frame decoding,
  protocol machine, ``sentences``/``chunk_schedule``, hop to the worker thread);
- ``post`` = first non-silent block -> client delivery (``encode_audio``: resampling to
  24 kHz and PCM, framing, pacing queue, WebSocket, client decoding, Rx delivery);
- ``rest`` = TTFA - engine = pre + post: everything but the engine (goal: < 10 ms p50).

As a cross-check the engine's time to first non-silent block for each preset's chunk-0
text is also measured directly, in-process, with the same engine instance and no
server (``isolated engine``); in situ it can be slower because client, server loop and
engine share the cores (and, in this process, the GIL).

Each turn is ended by disposing it right after the first sound (barge-in), waiting for
the ``interrupted`` ack, so turns are short and independent; one warm-up turn per
preset is not counted. Client and server share one process and the machine: the
numbers include that contention, as with the embedded server of ``rxtts.connect()``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reactivex import operators as ops
from reactivex.subject import Subject

from rxtts.audio.silence import first_non_silent_sample
from rxtts.bench._stats import (
    CallLog,
    EngineCall,
    TimedEngine,
    fmt,
    format_table,
    load_average,
    progress,
    spawn_server,
    summarize,
)
from rxtts.client.session import StreamingSession
from rxtts.config import PRESETS, ChunkingPreset
from rxtts.engine import CancelToken, Engine, SynthesisSettings
from rxtts.events import AudioChunk, Interrupted, TtsEvent
from rxtts.operators import chunk_schedule, sentences
from rxtts.operators.flush import TextItem

__all__ = [
    "TEXT",
    "TurnTiming",
    "format_result",
    "reference_index",
    "run",
    "speak_until_sound",
    "tokenize",
]

TEXT = (
    "Sure, I can help with that. The forecast for Berlin is mild today, with light clouds in "
    "the morning. Expect sunshine later on and a high of eighteen degrees. If you plan to go "
    "outside this evening, a light jacket should be enough. Tomorrow looks similar, so it is "
    "a good week for a long walk in the park."
)
"""The assistant answer every TTFA turn streams (chunk 0 differs per preset)."""

VOICE = 1071
"""A voice every engine has."""
PACE_MS = 25.0
"""Milliseconds between tokens (an LLM producing 40 tokens per second)."""
GOAL_REST_MS = 10.0
"""Goal of issue 8: everything but the engine under 10 ms at p50."""

_TOKEN = re.compile(r"\s*[\w'’-]+|\s*[^\w\s]")


def tokenize(text: str) -> list[str]:
    """LLM-like tokens: each word and each punctuation mark with its leading space."""
    tokens = _TOKEN.findall(text)
    assert "".join(tokens) == text.rstrip(), "tokenize must not lose characters"
    return tokens


def reference_index(tokens: Sequence[str], preset: ChunkingPreset) -> tuple[int, str]:
    """Index of the token after which the server's operators emit chunk 0, and chunk 0.

    Replays ``tokens`` one by one through ``sentences() + chunk_schedule(...)`` exactly
    as the server pipeline is built for this preset (no flush timer).

    Raises:
        ValueError: if chunk 0 would only come out at the flush.
    """
    subject: Subject[TextItem] = Subject()
    out: list[str] = []
    pipeline = subject.pipe(
        sentences(),
        chunk_schedule(schedule=preset.chunk_length_schedule, auto_mode=preset.auto_mode),
    )
    pipeline.subscribe(lambda item: out.append(item) if isinstance(item, str) else None)
    for i, token in enumerate(tokens):
        subject.on_next(token)
        if out:
            return i, out[0]
    raise ValueError(f"preset {preset.name}: chunk 0 of the text needs a flush")


# -- one turn ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TurnTiming:
    """Client-side timestamps of one turn (``time.monotonic()``)."""

    sent: tuple[float, ...]
    """Emission time of each token that was sent."""
    first_audio: float | None
    """Delivery of the first audio frame to the subscriber."""
    first_sound: float | None
    """Delivery of the first frame with sound, plus the sound's offset in that frame."""
    acked: float | None = None
    """When the ``interrupted`` ack of the closing barge-in arrived (``None``: none needed)."""
    frames: int = 0
    """Audio frames delivered to the subscriber."""


@dataclass(slots=True)
class _TurnState:
    """What the observers of one turn have seen so far (mutated on the client's loop)."""

    sent: list[float] = field(default_factory=list)
    first_audio: float | None = None
    first_sound: float | None = None
    frames: int = 0
    completed: bool = False


async def _paced(tokens: Sequence[str], pace_s: float, sent: list[float]) -> AsyncIterator[str]:
    start = time.monotonic()
    for i, token in enumerate(tokens):
        delay = start + i * pace_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sent.append(time.monotonic())
        yield token


async def speak_until_sound(
    session: StreamingSession, tokens: Sequence[str], pace_s: float, timeout: float = 30.0
) -> TurnTiming:
    """Stream ``tokens`` at ``pace_s`` with ``session.speak``; dispose at the first sound.

    Waits for the ``interrupted`` ack of that barge-in (unless the turn had already
    completed) so the next turn starts on an idle server.

    Raises:
        TimeoutError: no sound within ``timeout`` seconds.
    """
    loop = asyncio.get_running_loop()
    state = _TurnState()
    sounded: asyncio.Future[None] = loop.create_future()
    acked: asyncio.Future[float] = loop.create_future()

    def on_next(event: TtsEvent) -> None:
        if not isinstance(event, AudioChunk):
            return
        now = time.monotonic()
        state.frames += 1
        if state.first_audio is None:
            state.first_audio = now
        if state.first_sound is None:
            offset = first_non_silent_sample(event.samples)
            if offset is not None:
                state.first_sound = now + offset / event.sample_rate
                if not sounded.done():
                    sounded.set_result(None)

    def on_error(error: Exception) -> None:
        if not sounded.done():
            sounded.set_exception(error)

    def on_completed() -> None:
        state.completed = True
        if not sounded.done():
            sounded.set_result(None)

    def on_ack(_: TtsEvent) -> None:
        if not acked.done():
            acked.set_result(time.monotonic())

    ack_sub = session.events.pipe(ops.filter(lambda e: isinstance(e, Interrupted)), ops.take(1)).subscribe(
        on_ack
    )
    turn = session.speak(_paced(tokens, pace_s, state.sent)).subscribe(on_next, on_error, on_completed)
    acked_at: float | None = None
    try:
        await asyncio.wait_for(sounded, timeout)
    finally:
        completed = state.completed
        turn.dispose()  # barge-in: ends the turn at once (no-op if it completed)
        if not completed:
            try:
                acked_at = await asyncio.wait_for(acked, 10.0)
            except TimeoutError:
                acked_at = None
        ack_sub.dispose()
    return TurnTiming(tuple(state.sent), state.first_audio, state.first_sound, acked_at, state.frames)


# -- the benchmark -------------------------------------------------------------------------


def _ms(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else (b - a) * 1000.0


def _turn_record(timing: TurnTiming, ref: int, call: EngineCall | None) -> dict[str, Any]:
    ref_at = timing.sent[ref] if len(timing.sent) > ref else None
    ttfa = _ms(ref_at, timing.first_sound)
    engine = _ms(call.start, call.first_sound) if call else None
    pre = _ms(ref_at, call.start) if call else None
    post = _ms(call.first_sound, timing.first_sound) if call else None
    return {
        "ttfa_ms": ttfa,
        "ttfb_ms": _ms(ref_at, timing.first_audio),
        "ttfa_from_first_token_ms": _ms(timing.sent[0] if timing.sent else None, timing.first_sound),
        "engine_ms": engine,
        "pre_engine_ms": pre,
        "post_engine_ms": post,
        "rest_ms": None if ttfa is None or engine is None else ttfa - engine,
        "engine_text": call.text if call else None,
    }


def _isolated_engine_ms(engine: Engine, text: str, repeats: int) -> list[float]:
    voice = next(v for v in engine.voices() if v.id == VOICE)
    out: list[float] = []
    for _ in range(repeats):
        start = time.monotonic()
        for block in engine.synthesize(text, voice, SynthesisSettings(), CancelToken()):
            offset = first_non_silent_sample(block)
            if offset is not None:
                out.append((time.monotonic() - start + offset / engine.sample_rate) * 1000.0)
                break
    return out


def _summary(records: Sequence[dict[str, Any]], key: str) -> dict[str, Any]:
    return summarize(r[key] for r in records if r[key] is not None).to_json()


async def _chunk0_call(log: CallLog, since: float, wait: float = 2.0) -> EngineCall | None:
    """The turn's first engine call (a server process reports calls when they end)."""
    deadline = time.monotonic() + wait
    while True:
        calls = log.calls_since(since)
        if calls and calls[0].first_sound is not None:
            return calls[0]
        if time.monotonic() > deadline:
            return calls[0] if calls else None
        await asyncio.sleep(0.02)


async def _measure(
    url: str, log: CallLog, tokens: Sequence[str], turns: int, pace_s: float
) -> dict[str, Any]:
    from rxtts.client.tts import TTS

    tts = TTS(url)
    presets: dict[str, Any] = {}
    try:
        for preset in PRESETS.values():
            ref, chunk0 = reference_index(tokens, preset)
            progress(f"ttfa: {preset.name}: {turns} turns, reference token #{ref} {tokens[ref]!r}")
            session = tts.streaming_session(voice_id=VOICE, preset=preset.name, language="en")
            await session.connect()
            await speak_until_sound(session, tokens, pace_s)  # warm-up, not counted
            records: list[dict[str, Any]] = []
            for _ in range(turns):
                timing = await speak_until_sound(session, tokens, pace_s)
                call = await _chunk0_call(log, timing.sent[0]) if timing.sent else None
                records.append(_turn_record(timing, ref, call))
                await asyncio.sleep(0.05)  # let the cancelled engine call wind down
            await session.close()
            presets[preset.name] = {
                "schedule": list(preset.chunk_length_schedule),
                "auto_mode": preset.auto_mode,
                "reference_token_index": ref,
                "reference_token": tokens[ref],
                "chunk0_text": chunk0,
                "chunk0_chars": len(chunk0),
                "chunk0_matches_engine_text": all(
                    (r["engine_text"] or "").strip() == chunk0.strip() for r in records
                ),
                "turns": records,
            }
    finally:
        await tts.aclose()
    return presets


_KEYS = (
    "ttfa_ms",
    "ttfb_ms",
    "ttfa_from_first_token_ms",
    "engine_ms",
    "pre_engine_ms",
    "post_engine_ms",
    "rest_ms",
)


def _summarize_presets(presets: dict[str, Any], isolated: dict[str, list[float]]) -> None:
    for name, p in presets.items():
        records = p["turns"]
        p["summary"] = {key: _summary(records, key) for key in _KEYS}
        p["summary"]["isolated_engine_ms"] = summarize(isolated[name]).to_json()
        ttfa50 = p["summary"]["ttfa_ms"]["p50"]
        engine50 = p["summary"]["engine_ms"]["p50"]
        p["engine_share_p50"] = engine50 / ttfa50 if ttfa50 and ttfa50 > 0 else None
        p["rest_goal_met"] = bool(p["summary"]["rest_ms"]["p50"] < GOAL_REST_MS)


def _run_mode(mode: str, engine: str, tokens: Sequence[str], turns: int, pace_s: float) -> dict[str, Any]:
    """Measure every preset against a server in a child process or in this process."""
    from rxtts.server.embedded import resolve_engine, start_background_server

    progress(f"ttfa: starting the {engine} server ({mode})")
    if mode == "process":
        child = spawn_server(engine, threads=2, workers=2, timed=True)
        try:
            return asyncio.run(_measure(child.url, child.engine_calls, tokens, turns, pace_s))
        finally:
            child.stop()
    timed = TimedEngine(resolve_engine(engine, threads=2))
    server = start_background_server(timed, threads=2, workers=2)
    try:
        return asyncio.run(_measure(server.url, timed.log, tokens, turns, pace_s))
    finally:
        server.stop()


MODES = ("process", "in-process")
"""Where the server runs: a child process (like ``rxtts serve``) or a thread of this
process (like the embedded server of ``rxtts.connect()``; client and server then share
the GIL, whose 5 ms switch interval shows up in ``post``)."""


def run(
    out_json: Path | None = None,
    *,
    engine: str = "piper",
    quick: bool = False,
    turns: int | None = None,
    pace_ms: float | None = None,
    text: str = TEXT,
    modes: Sequence[str] = MODES,
) -> dict[str, Any]:
    """Run the benchmark, print its table, return (and optionally write) the results.

    Args:
        out_json: Where to write the JSON (``None``: don't).
        engine: Engine of the server (``"piper"``, ``"espeak"``, ``"tone"``).
        quick: 3 turns per preset instead of 20, 10 ms per token instead of 25.
        turns: Explicit number of measured turns per preset.
        pace_ms: Milliseconds between tokens (default :data:`PACE_MS`).
        text: The paragraph to stream.
        modes: Server placements to measure (see :data:`MODES`).
    """
    from rxtts.server.embedded import resolve_engine

    n = turns if turns is not None else (3 if quick else 20)
    pace_ms = pace_ms if pace_ms is not None else (10.0 if quick else PACE_MS)
    load_before = load_average()
    tokens = tokenize(text)
    results = {mode: _run_mode(mode, engine, tokens, n, pace_ms / 1000.0) for mode in modes}
    # The engine alone, same chunk-0 texts, no server: the cross-check of "engine".
    progress("ttfa: isolated engine timing")
    solo = resolve_engine(engine, threads=2)
    solo.warm_up()
    chunk0 = {name: p["chunk0_text"] for mode in results.values() for name, p in mode.items()}
    isolated = {name: _isolated_engine_ms(solo, text0, 3 if quick else 10) for name, text0 in chunk0.items()}
    for presets in results.values():
        _summarize_presets(presets, isolated)
    result: dict[str, Any] = {
        "benchmark": "ttfa",
        "engine": engine,
        "turns_per_preset": n,
        "pace_ms": pace_ms,
        "text": text,
        "tokens": len(tokens),
        "goal_rest_p50_ms": GOAL_REST_MS,
        "server": {"threads": 2, "workers": 2, "max_lead_seconds": 1.0},
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "modes": results,
    }
    print(format_result(result), flush=True)
    if out_json is not None:
        out_json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return result


def format_result(result: dict[str, Any]) -> str:
    """The table of a :func:`run` result."""
    rows = []
    for mode, presets in result["modes"].items():
        for name, p in presets.items():
            s = p["summary"]
            share = p["engine_share_p50"]
            rows.append(
                [
                    f"{name} ({mode})",
                    p["chunk0_chars"],
                    fmt(s["ttfa_ms"]["p50"]),
                    fmt(s["ttfa_ms"]["p95"]),
                    fmt(s["engine_ms"]["p50"]),
                    fmt(s["engine_ms"]["p95"]),
                    fmt(s["rest_ms"]["p50"]),
                    fmt(s["rest_ms"]["p95"]),
                    fmt(s["pre_engine_ms"]["p50"]),
                    fmt(s["post_engine_ms"]["p50"]),
                    fmt(100 * share, 0) + " %" if share is not None else "-",
                    fmt(s["isolated_engine_ms"]["p50"]),
                    fmt(s["ttfa_from_first_token_ms"]["p50"]),
                ]
            )
    title = (
        f"TTFA per preset ({result['engine']}, {result['turns_per_preset']} turns, "
        f"{result['pace_ms']:g} ms/token; ms from the token that completes chunk 0 to the first "
        f"non-silent sample at the client)"
    )
    headers = [
        "preset (server)",
        "chunk0 chars",
        "TTFA p50",
        "p95",
        "engine p50",
        "p95",
        "rest p50",
        "p95",
        "pre p50",
        "post p50",
        "engine share",
        "engine alone p50",
        "from 1st token p50",
    ]
    verdicts = [
        f"{mode}: {'met' if all(p['rest_goal_met'] for p in presets.values()) else 'NOT met'}"
        for mode, presets in result["modes"].items()
    ]
    footer = (
        f"goal: everything but the engine (rest = TTFA - engine) < {result['goal_rest_p50_ms']:g} ms p50 "
        f"-> {'; '.join(verdicts)}"
    )
    return format_table(headers, rows, title) + "\n" + footer


if __name__ == "__main__":
    run()
