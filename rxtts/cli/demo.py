"""``rxtts demo``: a voice-agent turn with a simulated barge-in, then the next turn.

A scripted LLM answer is streamed token by token into a
:meth:`~rxtts.client.session.StreamingSession.speak` turn at a realistic pace. A few seconds
into the audio (``--barge-in-after``, or after ``--barge-in-tokens`` tokens) a simulated
VAD fires a :class:`~reactivex.subject.Subject`; the turn is piped through
``take_until`` that subject, so the user speaking *is* the disposal::

    session.speak(tokens).pipe(ops.take_until(user_speaks))

The demo prints what the user heard, what was cut off and what was never spoken, the
barge-in latency (dispose -> the server's ``interrupted`` ack, frames after the dispose),
then answers the user on the same session (same socket: no reconnect). ``-o`` writes
what the user heard as a WAV file.

Playback is simulated unless ``--play`` is given: each frame plays in real time as soon
as it has arrived and the previous one has finished (:func:`playback_starts`), so what
was heard is what such a player had played when the user spoke.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
from reactivex import Observable
from reactivex import operators as ops
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.subject import Subject

from rxtts.cli._progress import Progress, error, seconds
from rxtts.cli.common import (
    EXIT_OK,
    EXIT_RUNTIME,
    Target,
    UsageError,
    add_connection_arguments,
    check_output_path,
    cli_main,
    connect_session,
    new_player,
    open_client,
    resolve_target,
    write_output,
)
from rxtts.cli.say import speak_measured
from rxtts.config import PRESETS
from rxtts.events import AudioChunk, ChunkComplete, GenerationStarted, Interrupted, TtsEvent, TurnMetrics
from rxtts.integrations.tokens import llm_tokens, split_tokens

if TYPE_CHECKING:
    from rxtts.audio.playback import Player
    from rxtts.client.session import StreamingSession

PROG = "rxtts demo"
QUESTION = "How do I make a really good cup of coffee at home?"
"""What the simulated user asks first."""
ANSWER = (
    "Great question! Start with freshly roasted beans, and grind them just before you brew. "
    "Use about sixty grams of coffee for every litre of water, heated to around ninety-four degrees. "
    "Pour a little water first and let the grounds bloom for thirty seconds. "
    "Then pour the rest slowly, in small circles, and let it steep for about four minutes. "
    "Finally, taste it and adjust the grind: go finer if it is sour, and coarser if it is bitter."
)
"""The scripted LLM answer the user interrupts."""
FOLLOW_UP = "Wait, I only have instant coffee."
"""What the user says over the answer."""
REPLY = "No problem! Use one heaped teaspoon per cup, add water just off the boil, and stir well."
"""The assistant's answer to the interruption (second turn, same session)."""
ACK_TIMEOUT = 5.0
"""Seconds to wait for the server's ``interrupted`` acknowledgement."""
GAP_SECONDS = 0.4
"""Silence between the two turns in the ``-o`` WAV."""


# -- results ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeardChunk:
    """One text chunk of the interrupted turn, and how much of it the user heard."""

    chunk_id: int
    """Chunk number within the turn."""
    text: str
    """Its text."""
    received_seconds: float
    """Seconds of its audio that arrived before the barge-in."""
    heard_seconds: float
    """Seconds of it that played before the user spoke."""
    complete: bool
    """Whether all of its audio arrived (``chunk_complete`` seen)."""

    @property
    def status(self) -> str:
        """``spoken`` (heard in full), ``cut off`` (heard in part) or ``not heard``."""
        if self.complete and self.heard_seconds >= self.received_seconds - 1e-3 and self.heard_seconds > 0:
            return "spoken"
        return "cut off" if self.heard_seconds > 0 else "not heard"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "chunk_id": self.chunk_id,
            "text": self.text,
            "status": self.status,
            "received_seconds": round(self.received_seconds, 3),
            "heard_seconds": round(self.heard_seconds, 3),
            "complete": self.complete,
        }


@dataclass(frozen=True, slots=True)
class BargeIn:
    """Timing of the interruption, in seconds from the first token of the turn."""

    user_spoke_at: float
    """When the simulated VAD fired."""
    disposed_at: float
    """When ``take_until`` disposed the turn (playback stops here)."""
    ack_latency: float | None
    """Seconds from the dispose to the server's ``interrupted`` ack (``None``: none came)."""
    last_frame_at: float | None
    """When the last audio frame of the turn was delivered."""
    frames_after_dispose: int
    """Audio frames anyone saw after the dispose (the protocol core drops them: 0)."""
    dropped_seconds: float
    """Received audio that never played (dropped from the playback buffer)."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "user_spoke_at": round(self.user_spoke_at, 3),
            "disposed_at": round(self.disposed_at, 3),
            "stop_latency_ms": round((self.disposed_at - self.user_spoke_at) * 1000, 3),
            "ack_latency_ms": None if self.ack_latency is None else round(self.ack_latency * 1000, 1),
            "last_frame_at": None if self.last_frame_at is None else round(self.last_frame_at, 3),
            "frames_after_dispose": self.frames_after_dispose,
            "dropped_seconds": round(self.dropped_seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class DemoReport:
    """What ``rxtts demo`` observed."""

    chunks: tuple[HeardChunk, ...]
    """Chunks of the first answer, with what was heard of each."""
    spoken_text: str
    """Text of the chunks heard in full."""
    cut_text: str
    """Text of the chunk the user talked over ("" if none)."""
    unspoken_text: str
    """Text of the answer the user never heard (cancelled)."""
    barge_in: BargeIn | None
    """The interruption; ``None`` if the answer finished first."""
    reply_ttfa: float | None
    """TTFA of the second turn."""
    reply_audio_seconds: float
    """Audio seconds of the second turn."""
    same_socket: bool
    """True if both turns ran on one WebSocket (no reconnect)."""
    heard_seconds: float
    """Seconds of the first answer the user heard."""
    output: str | None = None
    """WAV written, if any."""
    engine: str | None = None
    """Engine of the embedded server."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Settings of the run (pace, preset, trigger)."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``--json`` prints)."""
        return {
            "question": QUESTION,
            "answer": ANSWER,
            "chunks": [c.to_json() for c in self.chunks],
            "spoken": self.spoken_text,
            "cut_off": self.cut_text,
            "cancelled": self.unspoken_text,
            "heard_seconds": round(self.heard_seconds, 3),
            "barge_in": None if self.barge_in is None else self.barge_in.to_json(),
            "follow_up": FOLLOW_UP,
            "reply": REPLY,
            "reply_ttfa": None if self.reply_ttfa is None else round(self.reply_ttfa, 3),
            "reply_audio_seconds": round(self.reply_audio_seconds, 3),
            "same_socket": self.same_socket,
            "output": self.output,
            "engine": self.engine,
            **self.extra,
        }


# -- pure accounting ------------------------------------------------------------------------------


def heard_chunks(events: Sequence[TtsEvent], heard_seconds: float) -> tuple[HeardChunk, ...]:
    """Split the first ``heard_seconds`` of a turn's audio over its text chunks.

    Audio frames without a ``chunk_id`` count for the chunk generated last.
    """
    order: list[int] = []
    texts: dict[int, str] = {}
    received: dict[int, float] = {}
    complete: set[int] = set()
    current: int | None = None
    for event in events:
        if isinstance(event, GenerationStarted):
            current = event.chunk_id
            if event.chunk_id not in texts:
                order.append(event.chunk_id)
                texts[event.chunk_id] = event.text
        elif isinstance(event, AudioChunk):
            cid = event.chunk_id if event.chunk_id is not None else current
            if cid is None:
                continue
            if cid not in texts:
                order.append(cid)
                texts[cid] = ""
            received[cid] = received.get(cid, 0.0) + event.duration
        elif isinstance(event, ChunkComplete):
            complete.add(event.chunk_id)
    out: list[HeardChunk] = []
    offset = 0.0
    for cid in order:
        got = received.get(cid, 0.0)
        heard = min(got, max(0.0, heard_seconds - offset))
        out.append(HeardChunk(cid, texts[cid], got, heard, cid in complete))
        offset += got
    return tuple(out)


def playback_starts(events: Sequence[TtsEvent]) -> list[tuple[float, float]]:
    """``(start, duration)`` of every audio frame on a simulated real-time player.

    A frame starts playing when it arrives or when the previous frame ends, whichever
    is later (an underrun leaves a gap); times are the frames' monotonic clock.
    """
    out: list[tuple[float, float]] = []
    end = -np.inf
    for event in events:
        if isinstance(event, AudioChunk):
            start = max(event.at, end)
            out.append((start, event.duration))
            end = start + event.duration
    return out


def simulated_heard_seconds(events: Sequence[TtsEvent], until: float) -> float:
    """Seconds of audio a real-time player has played by monotonic time ``until``."""
    return sum(min(max(0.0, until - start), duration) for start, duration in playback_starts(events))


def split_answer(answer: str, chunks: Sequence[HeardChunk]) -> tuple[str, str, str]:
    """``(spoken, cut off, never spoken)`` parts of ``answer`` given what was heard.

    Chunk texts are located in ``answer`` in order (the server may trim whitespace).
    """
    cursor = 0
    spoken: list[str] = []
    cut = ""
    for chunk in chunks:
        if chunk.status == "not heard":
            break
        text = chunk.text.strip()
        at = answer.find(text, cursor) if text else -1
        if at < 0:
            break
        cursor = at + len(text)
        if chunk.status == "cut off":
            cut = text
            break
        spoken.append(text)
    return " ".join(spoken), cut, answer[cursor:].strip()


# -- the demo -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """The parsed command line."""

    target: Target
    """Server to use."""
    voice_id: int
    """Voice id."""
    preset: str
    """Chunking preset."""
    tokens_per_second: float
    """Pace of the simulated LLM."""
    barge_in_after: float
    """Seconds of playback before the user talks."""
    barge_in_tokens: int | None
    """Talk after this many tokens instead (``None``: use ``barge_in_after``)."""
    output: str | None
    """WAV of what was heard."""
    play: bool
    """Play the audio live."""
    as_json: bool
    """Print JSON instead of the story."""
    quiet: bool
    """No progress messages."""


class _Story:
    """Prints the live timeline of the first turn (unless ``--json``)."""

    def __init__(self, out: TextIO, enabled: bool) -> None:
        self.out = out
        self.enabled = enabled
        self.t0 = time.monotonic()

    def line(self, text: str = "") -> None:
        if self.enabled:
            print(text, file=self.out, flush=True)

    def at(self, when: float, text: str) -> None:
        self.line(f"  {'+' + seconds(when - self.t0):>10}  {text}")


async def _interrupted_turn(
    session: StreamingSession,
    options: DemoOptions,
    story: _Story,
    player: Player | None,
) -> tuple[list[TtsEvent], dict[str, float], int, float | None]:
    """Speak the answer until the simulated user talks; returns the events, the marks,
    the frames seen after the dispose and the ack time."""
    from rxtts.operators.sinks import play

    loop = asyncio.get_running_loop()
    user_speaks: Subject[str] = Subject()
    marks: dict[str, float] = {}
    events: list[TtsEvent] = []
    seen_chunks: set[int] = set()
    sent = 0
    timer: asyncio.TimerHandle | None = None

    def user_talks() -> None:
        if "user" in marks or "done" in marks:
            return
        marks["user"] = time.monotonic()
        story.at(marks["user"], f'user starts talking (simulated VAD): "{FOLLOW_UP}"')
        user_speaks.on_next(FOLLOW_UP)  # take_until disposes the turn right here

    def on_token(_: str) -> None:
        nonlocal sent
        if sent == 0:
            story.t0 = marks["t0"] = time.monotonic()
            story.at(story.t0, "LLM starts streaming")
        sent += 1
        if options.barge_in_tokens is not None and sent == options.barge_in_tokens:
            loop.call_soon(user_talks)

    def on_event(event: TtsEvent) -> None:
        nonlocal timer
        events.append(event)
        if isinstance(event, AudioChunk):
            marks["last_frame"] = event.at
            if "first_audio" not in marks:
                marks["first_audio"] = event.at
                if options.barge_in_tokens is None:
                    timer = loop.call_later(options.barge_in_after, user_talks)
            cid = event.chunk_id
            if cid is not None and cid not in seen_chunks:
                seen_chunks.add(cid)
                text = next(
                    (e.text for e in events if isinstance(e, GenerationStarted) and e.chunk_id == cid), ""
                )
                story.at(event.at, f'chunk {cid} audio starts: "{text.strip()}"')

    def on_stop() -> None:
        marks.setdefault("disposed", time.monotonic())

    late_frames = 0
    ack: asyncio.Future[float] = loop.create_future()

    def watch(event: TtsEvent) -> None:  # the session's hot stream: every event, any turn
        nonlocal late_frames
        if isinstance(event, AudioChunk) and "disposed" in marks:
            late_frames += 1
        elif isinstance(event, Interrupted) and not ack.done():
            ack.set_result(event.at)

    watcher = session.events.subscribe(watch)
    tokens = llm_tokens(ANSWER, options.tokens_per_second, scheduler=AsyncIOScheduler(loop))
    turn: Observable[TtsEvent] = session.speak(tokens.pipe(ops.do_action(on_token)))
    if player is not None:
        turn = turn.pipe(play(player))
    turn = turn.pipe(ops.do_action(on_event), ops.finally_action(on_stop), ops.take_until(user_speaks))
    try:
        await turn.pipe(ops.to_list())
        if "user" not in marks:
            marks["done"] = time.monotonic()  # the answer finished before the user spoke
        if timer is not None:
            timer.cancel()
        acked: float | None = None
        if "user" in marks:
            try:
                acked = await asyncio.wait_for(asyncio.shield(ack), ACK_TIMEOUT)
            except TimeoutError:
                acked = None
            else:
                story.at(acked, "server acknowledged the cancel (interrupted)")
            await asyncio.sleep(0.2)  # let late frames, if any were leaking, show up
    finally:
        watcher.dispose()
    return events, marks, late_frames, acked


def _heard_seconds(
    events: Sequence[TtsEvent], marks: dict[str, float], received: float, player: Player | None
) -> float:
    if player is not None:
        return min(received, player.played_seconds)
    if "user" not in marks:
        return received
    return simulated_heard_seconds(events, marks["user"])


def _samples(events: Sequence[TtsEvent]) -> tuple[np.ndarray, int | None]:
    from rxtts.operators.sinks import to_numpy

    rate = next((e.sample_rate for e in events if isinstance(e, AudioChunk)), None)
    return to_numpy(events), rate


def _write_heard(path: str, first: Sequence[TtsEvent], heard: float, second: Sequence[TtsEvent]) -> float:
    """Write what the user heard: the heard part of the answer, a pause, the reply."""
    a, rate_a = _samples(first)
    b, rate_b = _samples(second)
    rate = rate_a or rate_b or 24000
    if rate_b is not None and rate_b != rate:
        raise ValueError(f"the two turns came at different rates ({rate} and {rate_b} Hz)")
    heard_part = a[: round(heard * rate)]
    gap = np.zeros(round(GAP_SECONDS * rate), np.int16)
    mix = np.concatenate([heard_part, gap, b]).astype(np.int16)
    write_output(path, mix, rate)
    return len(mix) / rate


async def demo(options: DemoOptions, progress: Progress, out: TextIO) -> int:
    """The whole command. Returns the exit status."""
    player = new_player() if options.play else None
    story = _Story(out, enabled=not options.as_json)
    tts, engine = await open_client(options.target, options.voice_id, progress)
    try:
        session = tts.streaming_session(voice_id=options.voice_id, preset=options.preset)
        await connect_session(session, options.target, progress)
        trigger = (
            f"after {options.barge_in_tokens} tokens"
            if options.barge_in_tokens is not None
            else f"{options.barge_in_after:g} s into the audio"
        )
        story.line(f"user:       {QUESTION}")
        story.line(
            f"assistant:  (an LLM answer of {len(split_tokens(ANSWER))} tokens streamed at "
            f"{options.tokens_per_second:g} tok/s, preset {options.preset}; the user talks {trigger})"
        )
        first, marks, late, acked = await _interrupted_turn(session, options, story, player)
        received = sum(e.duration for e in first if isinstance(e, AudioChunk))
        heard = _heard_seconds(first, marks, received, player)
        chunks = heard_chunks(first, heard)
        spoken, cut, unspoken = split_answer(ANSWER, chunks)
        barge = _barge_in(marks, late, acked, received - heard)

        story.line()
        story.line(f"spoken:       {spoken or '(nothing)'}")
        if cut:
            part = next(c for c in chunks if c.status == "cut off")
            story.line(f"cut off:      {cut}  ({part.heard_seconds:.2f} s heard)")
        story.line(f"never spoken: {unspoken or '(nothing: the answer finished first)'}")
        story.line(_barge_line(barge))

        story.line()
        story.line(f"user:       {FOLLOW_UP}")
        reply, _, _ = await speak_measured(
            session, split_tokens(REPLY), options.tokens_per_second, progress, player=player
        )
        metrics = next((e for e in reply if isinstance(e, TurnMetrics)), None)
        reply_audio = sum(e.duration for e in reply if isinstance(e, AudioChunk))
        same_socket = session.is_connected and session.last_close is None
        story.line(f"assistant:  {REPLY}")
        story.line(
            f"            TTFA {seconds(metrics.ttfa if metrics else None)}, {reply_audio:.2f} s audio, "
            + ("same WebSocket as the first turn (no reconnect)" if same_socket else "after a reconnect")
        )
        if player is not None:
            await asyncio.get_running_loop().run_in_executor(None, player.wait, 30.0)
        written = None
        if options.output:
            duration = _write_heard(options.output, first, heard, reply)
            written = options.output
            story.line(f"wrote {options.output} ({duration:.2f} s: what the user heard)")
    finally:
        if player is not None:
            player.close()
        await tts.aclose()
    report = DemoReport(
        chunks=chunks,
        spoken_text=spoken,
        cut_text=cut,
        unspoken_text=unspoken,
        barge_in=barge,
        reply_ttfa=metrics.ttfa if metrics else None,
        reply_audio_seconds=reply_audio,
        same_socket=same_socket,
        heard_seconds=heard,
        output=written,
        engine=engine,
        extra={
            "tokens_per_second": options.tokens_per_second,
            "preset": options.preset,
            "voice_id": options.voice_id,
            "barge_in_after": options.barge_in_after,
            "barge_in_tokens": options.barge_in_tokens,
        },
    )
    if options.as_json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False), file=out)
    if reply_audio <= 0:
        error(PROG, "the second turn produced no audio")
        return EXIT_RUNTIME
    return EXIT_OK


def _barge_in(marks: dict[str, float], late: int, acked: float | None, dropped: float) -> BargeIn | None:
    if "user" not in marks:
        return None
    t0 = marks.get("t0", marks["user"])
    disposed = marks.get("disposed", marks["user"])
    last = marks.get("last_frame")
    return BargeIn(
        user_spoke_at=marks["user"] - t0,
        disposed_at=disposed - t0,
        ack_latency=None if acked is None else acked - disposed,
        last_frame_at=None if last is None else last - t0,
        frames_after_dispose=late,
        dropped_seconds=max(0.0, dropped),
    )


def _barge_line(barge: BargeIn | None) -> str:
    if barge is None:
        return "barge-in:     none (the answer finished before the user spoke)"
    stop_ms = (barge.disposed_at - barge.user_spoke_at) * 1000
    ack = (
        "no ack (nothing was in flight)"
        if barge.ack_latency is None
        else f"{barge.ack_latency * 1000:.0f} ms"
    )
    return (
        f"barge-in:     audio stopped {stop_ms:.1f} ms after the user spoke; server ack {ack} after the "
        f"dispose; {barge.frames_after_dispose} frames after the dispose; "
        f"{barge.dropped_seconds:.2f} s of received audio dropped unplayed"
    )


# -- command line ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``rxtts demo`` argument parser."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="A scripted LLM answer streamed into speech; a simulated user barges in "
        "(take_until a VAD subject); the session then answers the user on the same socket.",
        epilog="examples:\n  rxtts demo\n  rxtts demo --barge-in-after 3 -o heard.wav\n"
        "  rxtts demo --engine tone --barge-in-tokens 40 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--barge-in-after",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help="the user talks this many seconds after the answer's audio started (default 3)",
    )
    p.add_argument(
        "--barge-in-tokens",
        type=int,
        metavar="N",
        help="instead: the user talks once N tokens were streamed",
    )
    p.add_argument("--tokens-per-second", type=float, default=30.0, metavar="N", help="LLM pace (default 30)")
    p.add_argument("--preset", choices=tuple(PRESETS), default="low-latency", help="chunk schedule")
    p.add_argument("-o", "--output", metavar="WAV", help="write what the user heard to this WAV file")
    p.add_argument("--play", action="store_true", help="play the audio live (needs rxtts[play])")
    p.add_argument("--json", dest="as_json", action="store_true", help="print the results as JSON on stdout")
    add_connection_arguments(p)
    return p


def parse_options(argv: Sequence[str]) -> DemoOptions:
    """Parse and validate the command line.

    Raises:
        SystemExit: argparse errors (status 2) and ``--help`` (status 0).
        UsageError: invalid values or combinations.
    """
    args = build_parser().parse_args(argv)
    if not args.tokens_per_second > 0:
        raise UsageError(f"--tokens-per-second must be > 0, got {args.tokens_per_second:g}")
    if args.barge_in_after < 0:
        raise UsageError(f"--barge-in-after must be >= 0, got {args.barge_in_after:g}")
    if args.barge_in_tokens is not None and args.barge_in_tokens < 1:
        raise UsageError(f"--barge-in-tokens must be >= 1, got {args.barge_in_tokens}")
    check_output_path(args.output)
    return DemoOptions(
        target=resolve_target(args.url, args.api_key, args.engine),
        voice_id=args.voice,
        preset=args.preset,
        tokens_per_second=args.tokens_per_second,
        barge_in_after=args.barge_in_after,
        barge_in_tokens=args.barge_in_tokens,
        output=args.output,
        play=args.play,
        as_json=args.as_json,
        quiet=args.quiet,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``rxtts demo``; returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    return cli_main(PROG, lambda: parse_options(args), build_parser, demo)


__all__ = [
    "ANSWER",
    "FOLLOW_UP",
    "QUESTION",
    "REPLY",
    "BargeIn",
    "DemoOptions",
    "DemoReport",
    "HeardChunk",
    "build_parser",
    "demo",
    "heard_chunks",
    "main",
    "parse_options",
    "playback_starts",
    "simulated_heard_seconds",
    "split_answer",
]


if __name__ == "__main__":
    raise SystemExit(main())
