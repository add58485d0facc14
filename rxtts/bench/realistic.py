"""Realistic assistant answers: TTFA, dead air, engine, intelligibility, capacity, barge-in.

Run: ``rxtts bench realistic [--quick] [--engine piper|tone]`` (issue 12).

Corpus (:data:`CORPUS`): 22 assistant answers of 2-5 sentences, first sentences of
60-150 characters, with numbers, times, money and ordinals (the server normalises them),
lists, and 4 answers with a tool call: the LLM's tokens stop for :data:`STALL_S` (1.5 s)
mid-answer (marked ``⏸`` in the source, after the first sentence).

Token stream: each answer is cut with :func:`rxtts.integrations.tokens.split_tokens`
(words of more than 5 letters in 4-letter pieces: tokens end mid-word) and sent at 40
tokens/s with jitter: the gap before each token is 25 ms x U(0.5, 1.5), seeded per
answer (:func:`schedule`), so every variant sees the same stream.

Setup: the embedded server (``start_background_server``, what ``rxtts.connect()`` starts
with no URL, in this process) with piper, 2 onnxruntime threads, 2 workers, default
pacing (1 s lead); its engine is wrapped in a ``TimedEngine`` (engine-call timestamps on
the same clock). Two such servers run side by side for the whole run, one with
``PiperEngine(streaming=True)`` (the default: decoder windows) and one with
``streaming=False`` (whole-sentence decode). Variants, alternating answer by answer
after one uncounted warm-up turn each:

- ``stream``: low-latency preset (phrase-aware chunk 0) on the streaming server;
- ``whole``: low-latency preset on the whole-sentence server (piper only);
- ``balanced``: balanced preset (chunk 0 = the first sentence(s) up to 80 characters) on
  the streaming server, for reference; this turn is disposed at its first sound;
- what-ifs (:data:`WHAT_IFS`, not the shipped defaults): as ``stream``, with other
  ``chunk_schedule`` arguments (patched in :mod:`rxtts.server.pipeline` for these turns
  only): ``max_words=12`` (the first shipped phrase cut; the shipped 6 is the TTFA
  goal's price, paid or not in dead air and WER), ``urgent_after_ms=None`` (no urgency
  after a stall: the dead air it saves).

Measured per turn (``stream`` and ``whole`` play the whole answer):

- TTFA: first token sent -> first non-silent sample at the client (delivery time of the
  first frame with a sample above -50 dBFS plus that sample's offset). Goals: p50 <= 300
  ms, p90 <= 450 ms. Its profile: ``wait`` = first token -> the server's engine call for
  chunk 0 (the tokens chunk 0 needs, at 40 tokens/s, plus transport and scheduling),
  ``engine`` = that call -> its first block, ``post`` = that block -> the first audible
  sample at the client (the lead silence kept, resampling, framing, WebSocket, Rx).
- Dead air: a simulated real-time player starts at the first audio frame and plays each
  frame for its duration; every moment it has nothing to play before the last frame is
  dead air (:func:`rxtts.bench.scale.stall_seconds`). Goal: <= 150 ms per answer, the
  tool-call answers included (the LLM is silent for 1.5 s there; what the listener
  hears in that time is the server's doing); they are also reported apart.
- Intelligibility (full runs with piper and the ``bench`` extra): each turn's audio is
  transcribed by faster-whisper tiny.en (:mod:`rxtts.bench.whisper`) after the servers
  stopped; WER against ``normalize_text(answer).text`` (what the voice should read).
  Goal: ``stream`` no worse than ``whole``.

Also (piper only):

- Engine time to first audio for the 6- and 25-word sentences of
  :mod:`rxtts.bench.engine`, streaming vs whole, alternating call by call (p50; goal
  <= 80 ms), and the longest gap between two blocks of one streaming call (the decode of
  one window: the bound of a cancel's engine stop).
- Barge-in mid-sentence on the streaming server: each answer's tokens at once, dispose
  100-400 ms after the first audio (``rxtts.bench.bargein``'s turn): ``interrupted`` ack
  (goal <= 50 ms p99) and the engine stop (cancel -> return of the running call).
- Capacity: concurrent streams faster than real time on 2 cores, streaming decode on vs
  off: two server processes (``python -m rxtts.bench.realistic_sections serve [--whole]``, piper
  1 thread, 2 workers, unpaced), ``rxtts.bench.scale``'s level (N sessions each speak
  ``ttfa.TEXT`` at once); N = 1, 2, 4, 8, 12, 16, 24, 32, on and off alternating per level, until
  both fail.

``--quick`` (the tone engine, what ``tests/test_bench.py`` runs): 2 answers, no
``whole`` variant, no Whisper, no engine or capacity section, 3 barge-in turns, 0.3 s
stalls. Nothing here asserts a timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import reactivex

from rxtts.audio.silence import first_non_silent_sample
from rxtts.bench import realistic_sections as sections
from rxtts.bench._stats import (
    CallLog,
    TimedEngine,
    fmt,
    load_average,
    percentile,
    progress,
    summarize,
)
from rxtts.bench.realistic_corpus import (
    CORPUS,
    GOAL_ACK_P99_MS,
    GOAL_DEAD_AIR_MS,
    GOAL_ENGINE_FIRST_MS,
    GOAL_TTFA_P50_MS,
    GOAL_TTFA_P90_MS,
    VOICE,
    Answer,
)
from rxtts.bench.realistic_report import format_result, summary
from rxtts.client.session import StreamingSession
from rxtts.events import AudioChunk, Interrupted, TtsEvent
from rxtts.integrations.tokens import split_tokens
from rxtts.operators import sentences

__all__ = [
    "CORPUS",
    "Answer",
    "dead_air_seconds",
    "first_sentence",
    "format_result",
    "run",
    "schedule",
    "split_sentences",
]

PACE_S = 0.025
"""Mean gap between tokens (40 tokens/s)."""
JITTER = 0.5
"""Each gap is ``PACE_S * U(1 - JITTER, 1 + JITTER)``."""
STALL_S = 1.5
"""Length of a tool-call stall."""
SEED = 12
CAPACITY_LEVELS = (1, 2, 4, 8, 12, 16, 24, 32)
WHAT_IFS: dict[str, dict[str, Any]] = {
    "stream, max_words=12": {"max_words": 12},
    "stream, no urgency": {"urgent_after_ms": None},
}
"""What-if variants: ``chunk_schedule`` arguments instead of the shipped ones, so each
trade-off stays measured side by side (module doc)."""
_TURN_TIMEOUT_S = 120.0


"""The assistant answers every variant streams."""


def split_sentences(text: str) -> list[str]:
    """``text`` cut by rxtts's own sentence segmenter (``sentences()``)."""
    out: list[str] = []
    reactivex.from_iterable(split_tokens(text)).pipe(sentences()).subscribe(
        lambda s: out.append(s) if isinstance(s, str) else None
    )
    return out


def first_sentence(text: str) -> str:
    """The first sentence of ``text`` (see :func:`split_sentences`)."""
    return split_sentences(text)[0]


def schedule(
    answer: Answer, seed: int, pace_s: float = PACE_S, stall_s: float = STALL_S
) -> list[tuple[float, str]]:
    """(send offset in seconds, token) for ``answer``: jittered 40 tokens/s plus its stall."""
    rng = random.Random(seed)
    out: list[tuple[float, str]] = []
    at = 0.0
    pos = 0
    stalled = False
    for i, token in enumerate(split_tokens(answer.text)):
        if i:
            at += pace_s * rng.uniform(1.0 - JITTER, 1.0 + JITTER)
        if answer.stall_at is not None and not stalled and pos >= answer.stall_at:
            at += stall_s
            stalled = True
        out.append((at, token))
        pos += len(token)
    return out


def dead_air_seconds(frames: Sequence[tuple[float, float]]) -> float:
    """Dead air of a real-time player that starts at the first frame's arrival.

    ``frames`` are ``(arrival, duration)`` in order; see :func:`rxtts.bench.scale.stall_seconds`.
    """
    from rxtts.bench.scale import stall_seconds

    return stall_seconds(frames[0][0], frames) if frames else 0.0


# -- one turn --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Turn:
    """What the client saw of one turn (``time.monotonic()``)."""

    sent: list[float] = field(default_factory=list)
    frames: list[tuple[float, float]] = field(default_factory=list)
    audio: list[np.ndarray] = field(default_factory=list)
    chunk_ids: list[int | None] = field(default_factory=list)
    sample_rate: int = 0
    first_sound: float | None = None
    completed: bool = False


async def _paced(plan: Sequence[tuple[float, str]], sent: list[float]) -> AsyncIterator[str]:
    start = time.monotonic()
    for offset, token in plan:
        delay = start + offset - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sent.append(time.monotonic())
        yield token


async def _speak(
    session: StreamingSession, plan: Sequence[tuple[float, str]], *, full: bool, keep_audio: bool
) -> _Turn:
    """One turn: play it to the end (``full``) or dispose at the first sound (barge-in)."""
    loop = asyncio.get_running_loop()
    turn = _Turn()
    done: asyncio.Future[None] = loop.create_future()
    acked: asyncio.Future[None] = loop.create_future()

    def on_next(event: TtsEvent) -> None:
        if not isinstance(event, AudioChunk):
            return
        now = time.monotonic()
        turn.frames.append((now, event.duration))
        turn.chunk_ids.append(event.chunk_id)
        turn.sample_rate = event.sample_rate
        samples = event.samples
        if keep_audio:
            turn.audio.append(np.array(samples, dtype=np.int16))
        if turn.first_sound is None:
            offset = first_non_silent_sample(samples)
            if offset is not None:
                turn.first_sound = now + offset / event.sample_rate
                if not full and not done.done():
                    done.set_result(None)

    def on_error(error: Exception) -> None:
        if not done.done():
            done.set_exception(error)

    def on_completed() -> None:
        turn.completed = True
        if not done.done():
            done.set_result(None)

    def on_ack(event: TtsEvent) -> None:
        if isinstance(event, Interrupted) and not acked.done():
            acked.set_result(None)

    ack_sub = session.events.subscribe(on_ack)
    sub = session.speak(_paced(plan, turn.sent)).subscribe(on_next, on_error, on_completed)
    try:
        await asyncio.wait_for(done, _TURN_TIMEOUT_S)
    finally:
        completed = turn.completed
        sub.dispose()
        if not completed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(acked, 10.0)
        ack_sub.dispose()
    return turn


def _ms(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else (b - a) * 1000.0


async def _settled(log: CallLog, since: float, wait: float = 2.0) -> None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        calls = log.calls_since(since)
        if calls and calls[0].first_sound is not None:
            return
        await asyncio.sleep(0.01)


def _record(answer: Answer, turn: _Turn, log: CallLog, full: bool) -> dict[str, Any]:
    first = turn.sent[0] if turn.sent else None
    calls = log.calls_since(first) if first is not None else []
    call = calls[0] if calls else None
    rec: dict[str, Any] = {
        "answer": answer.name,
        "tool_call": answer.stall_at is not None,
        "ttfa_ms": _ms(first, turn.first_sound),
        "ttfb_ms": _ms(first, turn.frames[0][0] if turn.frames else None),
        "wait_ms": _ms(first, call.start) if call else None,
        "engine_ms": _ms(call.start, call.first_block) if call else None,
        "post_ms": _ms(call.first_block, turn.first_sound) if call else None,
        "chunk0_text": call.text if call else None,
        "chunk0_chars": len(call.text) if call else None,
        "tokens_before_chunk0": sum(1 for t in turn.sent if call and t <= call.start),
        "frames": len(turn.frames),
        "completed": turn.completed,
    }
    if full:
        rec["audio_s"] = sum(d for _, d in turn.frames)
        rec["dead_air_ms"] = dead_air_seconds(turn.frames) * 1000.0
        rec["gaps"] = _gaps(turn)
        rec["engine_calls"] = len(calls)
    return rec


def _gaps(turn: _Turn, at_least_s: float = 0.005) -> list[dict[str, Any]]:
    """Where the simulated player starved: ms after the first frame, ms long, frame, chunk."""
    out: list[dict[str, Any]] = []
    if not turn.frames:
        return out
    start = clock = turn.frames[0][0]
    for i, (arrival, duration) in enumerate(turn.frames):
        if arrival - clock >= at_least_s:
            out.append(
                {
                    "at_ms": (clock - start) * 1000.0,
                    "ms": (arrival - clock) * 1000.0,
                    "frame": i,
                    "chunk": turn.chunk_ids[i],
                }
            )
        clock = max(clock, arrival) + duration
    return out


# -- servers ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Variant:
    name: str
    preset: str
    server: str
    full: bool
    what_if: dict[str, Any] | None = None
    """What-if: the server's ``chunk_schedule(**what_if)`` for this variant's turns."""
    config: dict[str, Any] = field(default_factory=dict)
    """Further :class:`~rxtts.config.StreamConfig` fields of the session."""
    session: StreamingSession | None = None
    turns: list[dict[str, Any]] = field(default_factory=list)
    audio: dict[str, tuple[np.ndarray, int]] = field(default_factory=dict)


async def _turns(
    urls: dict[str, str],
    logs: dict[str, CallLog],
    variants: Sequence[_Variant],
    answers: Sequence[Answer],
    stall_s: float,
    keep_audio: bool,
) -> None:
    from rxtts.client.tts import TTS

    tts = {name: TTS(url) for name, url in urls.items()}
    try:
        for v in variants:
            v.session = tts[v.server].streaming_session(
                voice_id=VOICE, preset=v.preset, language="en", **v.config
            )
            await v.session.connect()
            await _speak(v.session, schedule(answers[0], SEED), full=False, keep_audio=False)  # warm-up
        for i, answer in enumerate(answers):
            plan = schedule(answer, SEED + i, stall_s=stall_s)
            for v in variants:
                assert v.session is not None
                with _what_if(v.what_if):
                    turn = await _speak(v.session, plan, full=v.full, keep_audio=keep_audio and v.full)
                await _settled(logs[v.server], turn.sent[0])
                v.turns.append(_record(answer, turn, logs[v.server], v.full))
                if keep_audio and v.full and turn.audio:
                    v.audio[answer.name] = (np.concatenate(turn.audio), turn.sample_rate)
                await asyncio.sleep(0.1)  # let a cancelled engine call wind down
            last = {v.name: fmt(v.turns[-1]["ttfa_ms"], 0) for v in variants}
            progress(f"realistic: {i + 1}/{len(answers)} {answer.name}: TTFA ms {last}")
    finally:
        for v in variants:
            if v.session is not None:
                await v.session.close()
        for client in tts.values():
            await client.aclose()


@contextlib.contextmanager
def _what_if(kwargs: dict[str, Any] | None) -> Iterator[None]:
    """What-if: the server pipeline builds ``chunk_schedule(..., **kwargs)``.

    Patches the name ``chunk_schedule`` in :mod:`rxtts.server.pipeline` for one turn
    (turns run one at a time; the server builds its pipeline when the turn's first text
    arrives). ``None``: the shipped defaults, nothing patched.
    """
    if kwargs is None:
        yield
        return
    from rxtts.operators import chunk_schedule
    from rxtts.server import pipeline

    setattr(pipeline, "chunk_schedule", functools.partial(chunk_schedule, **kwargs))  # noqa: B010
    try:
        yield
    finally:
        setattr(pipeline, "chunk_schedule", chunk_schedule)  # noqa: B010


async def _bargein(url: str, log: CallLog, answers: Sequence[Answer], n: int) -> list[dict[str, Any]]:
    from rxtts.bench.bargein import _rx_turn
    from rxtts.client.tts import TTS

    rng = random.Random(SEED)
    tts = TTS(url)
    out: list[dict[str, Any]] = []
    try:
        session = tts.streaming_session(voice_id=VOICE, preset="low-latency", language="en")
        await session.connect()
        for i in range(n):
            answer = answers[i % len(answers)]
            record = await _rx_turn(session, split_tokens(answer.text), rng.uniform(0.1, 0.4), log)
            record["answer"] = answer.name
            out.append(record)
            await asyncio.sleep(0.1)
        await session.close()
    finally:
        await tts.aclose()
    return out


# -- the benchmark ---------------------------------------------------------------------------------


def run(
    out_json: Path | None = None,
    *,
    engine: str = "piper",
    quick: bool = False,
    answers: Sequence[Answer] | None = None,
    capacity: bool | None = None,
    intelligibility: bool | None = None,
    what_ifs: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run the benchmark, print its table, return (and optionally write) the results.

    Args:
        out_json: Where to write the JSON (``None``: don't).
        engine: ``"piper"`` (every section) or ``"tone"``/``"espeak"`` (no ``whole``
            variant, no engine, capacity or Whisper section).
        quick: 2 answers, 0.3 s stalls, 3 barge-in turns, no Whisper, no capacity.
        answers: The corpus (default :data:`CORPUS`; quick: 2 of them, one a tool call).
        capacity: Force the capacity section on/off (default: piper and not quick).
        intelligibility: Force the Whisper section on/off (default: piper, not quick).
        what_ifs: Extra ``stream`` variants by name: ``chunk_schedule`` arguments of
            their server pipelines (default :data:`WHAT_IFS`; see :func:`_what_if`).
    """
    from rxtts.bench import whisper
    from rxtts.server.embedded import start_background_server

    piper = engine == "piper"
    chosen = list(answers) if answers is not None else ([CORPUS[0], CORPUS[2]] if quick else list(CORPUS))
    stall_s = 0.3 if quick else STALL_S
    do_capacity = (piper and not quick) if capacity is None else capacity
    whisper_missing = whisper.missing()
    if intelligibility is None:
        intelligibility = piper and not quick
    skipped: dict[str, str] = {}
    if not intelligibility:
        skipped["intelligibility"] = "skipped (--quick or not piper)"
    elif whisper_missing:
        skipped["intelligibility"] = whisper_missing
        intelligibility = False
    load_before = load_average()

    progress(f"realistic: starting the embedded {engine} servers")
    engines = {"streaming": TimedEngine(sections.make_engine(engine, True, 2))}
    if piper:
        engines["whole"] = TimedEngine(sections.make_engine(engine, False, 2))
    servers = {name: start_background_server(e, threads=2, workers=2) for name, e in engines.items()}
    variants = [_Variant("stream", "low-latency", "streaming", True)]
    if piper:
        variants.append(_Variant("whole", "low-latency", "whole", True))
    else:
        skipped["whole"] = "needs piper (whole-sentence decode is a PiperEngine mode)"
    variants.append(_Variant("balanced", "balanced", "streaming", False))
    for name, kwargs in (WHAT_IFS if what_ifs is None else what_ifs).items():
        variants.append(_Variant(name, "low-latency", "streaming", True, what_if=kwargs))
    logs = {name: e.log for name, e in engines.items()}
    try:
        asyncio.run(
            _turns(
                {n: s.url for n, s in servers.items()},
                logs,
                variants,
                chosen,
                stall_s,
                keep_audio=intelligibility,
            )
        )
        progress("realistic: barge-in mid-sentence")
        barge = asyncio.run(_bargein(servers["streaming"].url, logs["streaming"], chosen, 3 if quick else 20))
    finally:
        for server in servers.values():
            server.stop()
    engine_part: dict[str, Any] | None = None
    if piper:
        progress("realistic: engine time to first audio (streaming vs whole)")
        engine_part = sections.engine_section(
            engines["streaming"].inner, engines["whole"].inner, 3 if quick else 9
        )
    else:
        skipped["engine"] = "needs piper"
    capacity_part = sections.capacity((1, 2) if quick else CAPACITY_LEVELS) if do_capacity else None
    if capacity_part is None:
        skipped["capacity"] = "skipped (--quick or not piper)"
    words = sections.intelligibility({v.name: v.audio for v in variants}, chosen) if intelligibility else None

    ack = [float(r["ack_ms"]) for r in barge]
    stops = [float(r["engine_stop_ms"]) for r in barge if r["engine_stop_ms"] is not None]
    result: dict[str, Any] = {
        "benchmark": "realistic",
        "engine": engine,
        "answers": len(chosen),
        "tool_call_answers": sum(1 for a in chosen if a.stall_at is not None),
        "tokens_per_second": 1.0 / PACE_S,
        "jitter": JITTER,
        "stall_s": stall_s,
        "seed": SEED,
        "server": {"embedded": True, "threads": 2, "workers": 2, "max_lead_seconds": 1.0},
        "goals": {
            "ttfa_p50_ms": GOAL_TTFA_P50_MS,
            "ttfa_p90_ms": GOAL_TTFA_P90_MS,
            "dead_air_ms": GOAL_DEAD_AIR_MS,
            "engine_first_audio_p50_ms": GOAL_ENGINE_FIRST_MS,
            "ack_p99_ms": GOAL_ACK_P99_MS,
        },
        "variants": {
            v.name: {
                "preset": v.preset,
                "server": v.server,
                "what_if": v.what_if,
                "full_turns": v.full,
                "summary": summary(v.turns, v.full),
                "turns": v.turns,
            }
            for v in variants
        },
        "bargein": {
            "turns": barge,
            "ack_ms": summarize(ack).to_json(),
            "engine_stop_ms": summarize(stops).to_json(),
            "ack_goal_met": bool(ack) and percentile(ack, 99) <= GOAL_ACK_P99_MS,
        },
        "engine_section": engine_part,
        "capacity": capacity_part,
        "intelligibility": words,
        "skipped": skipped,
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    print(format_result(result), flush=True)
    if out_json is not None:
        out_json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return result


if __name__ == "__main__":
    run()
