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

What was heard is read off a playback clock by :func:`rxtts.operators.heard` (the same
operator an agent uses to commit only the heard words to its LLM history): the real
device with ``--play``, else a :class:`~rxtts.audio.clock.SimulatedClock` (a 1x real-time
player that starts each frame when it has arrived and the previous one has finished).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO, cast

import numpy as np
from reactivex import Observable
from reactivex import operators as ops
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.subject import Subject

from rxtts.audio.clock import PlaybackClock, SimulatedClock
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
from rxtts.events import AudioChunk, GenerationStarted, Heard, Interrupted, TtsEvent, TurnMetrics
from rxtts.integrations.tokens import llm_tokens, split_tokens
from rxtts.operators.sinks import AudioSink

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

    heard: Heard
    """What the listener heard of the first answer (:func:`rxtts.operators.heard`)."""
    barge_in: BargeIn | None
    """The interruption; ``None`` if the answer finished first."""
    reply_ttfa: float | None
    """TTFA of the second turn."""
    reply_audio_seconds: float
    """Audio seconds of the second turn."""
    same_socket: bool
    """True if both turns ran on one WebSocket (no reconnect)."""
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
            "spoken": self.heard.heard_text.strip(),
            "cut_off": self.heard.cut_word or "",
            "cancelled": _after_cut(self.heard).strip(),
            "heard_seconds": round(self.heard.heard_seconds, 3),
            "words_heard": self.heard.words_heard,
            "word_times": "estimated" if self.heard.estimated else "engine",
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


def _after_cut(h: Heard) -> str:
    """The answer after the word being spoken at the cut (or after what was heard)."""
    return h.text[h.cut_char_end :] if h.cut_word else h.unheard_text


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
) -> tuple[list[TtsEvent], dict[str, float], int, float | None, Heard]:
    """Speak the answer until the simulated user talks; returns the events, the marks,
    the frames seen after the dispose, the ack time and what was heard."""
    from rxtts.operators.heard import heard
    from rxtts.operators.sinks import play

    loop = asyncio.get_running_loop()
    clock: PlaybackClock = player if player is not None else SimulatedClock(AsyncIOScheduler(loop))
    results: list[Heard] = []
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
    sink: AudioSink = player if player is not None else cast(SimulatedClock, clock)
    spoken: Observable[TtsEvent] = session.speak(tokens.pipe(ops.do_action(on_token))).pipe(play(sink))
    with_heard: Observable[Any] = spoken.pipe(
        heard(clock, ANSWER, on_heard=results.append, scheduler=AsyncIOScheduler(loop))
    )
    turn: Observable[Any] = with_heard.pipe(
        ops.filter(lambda e: not isinstance(e, Heard)),
        ops.do_action(on_event),
        ops.finally_action(on_stop),
        ops.take_until(user_speaks),
    )
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
    for _ in range(100):  # on_heard runs as the turn is disposed, or after its playout
        if results:
            break
        await asyncio.sleep(0.02)
    return events, marks, late_frames, acked, results[0]


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
        first, marks, late, acked, h = await _interrupted_turn(session, options, story, player)
        heard = h.heard_seconds
        barge = _barge_in(marks, late, acked, h.received_seconds - heard)

        story.line()
        story.line(f"spoken:       {h.heard_text.strip() or '(nothing)'}")
        if h.cut_word:
            story.line(f"cut off:      {h.cut_word}  (the word playing at the barge-in)")
        rest = _after_cut(h).strip()
        story.line(f"never spoken: {rest or '(nothing: the answer finished first)'}")
        times = "estimated" if h.estimated else "from the engine"
        story.line(f"              (heard {heard:.2f} s; word times {times})")
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
        heard=h,
        barge_in=barge,
        reply_ttfa=metrics.ttfa if metrics else None,
        reply_audio_seconds=reply_audio,
        same_socket=same_socket,
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
    "build_parser",
    "demo",
    "main",
    "parse_options",
]


if __name__ == "__main__":
    raise SystemExit(main())
