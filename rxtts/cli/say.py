"""``rxtts say``: speak text streamed token by token, as an LLM would, and show the latency.

The text is cut into LLM-like tokens (:func:`rxtts.integrations.tokens.split_tokens`) and streamed at
``--tokens-per-second`` into one :meth:`~rxtts.client.session.StreamingSession.speak` turn. The
server chunks it at sentence boundaries (``--preset``) and streams audio back; the
command prints a per-chunk timeline, TTFB/TTFA, audio seconds and RTF, and can write a
WAV file (``-o``) and play the audio (``--play``)::

    rxtts say "Hello! This sentence is streamed token by token." -o hello.wav
    echo "Text from another tool." | rxtts say - --json

Without ``--url`` the server is chosen as :func:`rxtts.connect` does (``RXTTS_URL``,
``KUGELAUDIO_API_KEY``, else an embedded local server); ``--engine`` forces the
embedded server with that engine. Progress goes to stderr, results to stdout.

Exit status: 0 on success, 2 for usage errors, 1 for runtime errors (unreachable
server, missing engine, a server error), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from reactivex import Observable
from reactivex import operators as ops
from reactivex.scheduler.eventloop import AsyncIOScheduler

from rxtts.cli._progress import Progress, error, render_table, seconds, shorten
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
    read_text,
    resolve_target,
    write_output,
)
from rxtts.config import PRESETS, OutputFormat
from rxtts.events import (
    AudioChunk,
    ChunkComplete,
    GenerationStarted,
    SessionClosed,
    SessionUsage,
    TtsEvent,
    TurnMetrics,
)
from rxtts.integrations.tokens import DEFAULT_TOKENS_PER_SECOND, llm_tokens, split_tokens

if TYPE_CHECKING:
    from rxtts.audio.playback import Player
    from rxtts.client.session import StreamingSession

PROG = "rxtts say"
# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChunkRow:
    """One text chunk of the turn, as the timeline shows it (times from the first token)."""

    chunk_id: int
    """Chunk number within the turn."""
    text: str
    """Text the server synthesised for it."""
    t_start: float | None
    """Seconds until the server started generating it (``generation_started``)."""
    first_audio: float | None
    """Seconds until its first audio frame arrived."""
    audio_seconds: float | None
    """Seconds of audio in it (``chunk_complete``), ``None`` if it never completed."""
    gen_ms: float | None
    """Server generation time in ms (``chunk_complete``)."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (seconds rounded to the ms)."""
        return {
            "chunk_id": self.chunk_id,
            "text": self.text,
            "t_start": _round(self.t_start),
            "first_audio": _round(self.first_audio),
            "audio_seconds": _round(self.audio_seconds),
            "gen_ms": None if self.gen_ms is None else round(self.gen_ms, 1),
        }


@dataclass(frozen=True, slots=True)
class SayReport:
    """Everything ``rxtts say`` measured for one turn."""

    text: str
    """The text spoken."""
    server: str
    """Where it was spoken: ``embedded`` or the server's base URL (never the key)."""
    engine: str | None
    """Engine of the embedded server, ``None`` for a remote one."""
    voice_id: int
    """Voice used."""
    preset: str
    """Chunking preset."""
    tokens: int
    """Tokens streamed."""
    tokens_per_second: float
    """Pace of the simulated LLM."""
    tokens_seconds: float
    """Seconds from the first to the last token sent."""
    chunks: tuple[ChunkRow, ...]
    """The per-chunk timeline."""
    ttfb: float | None
    """Seconds from the first text sent to the first audio frame."""
    ttfa: float | None
    """Seconds from the first text sent to the first non-silent sample."""
    audio_seconds: float
    """Seconds of audio received."""
    frames: int
    """Audio frames received."""
    sample_rate: int | None
    """Rate of the audio (``None`` if there was none)."""
    gen_seconds: float
    """Sum of the server's generation times."""
    wall_seconds: float
    """Seconds from the first token to the end of the turn."""
    usage: SessionUsage | None
    """Usage the server reported."""
    output: str | None
    """WAV file written, if any."""

    @property
    def rtf(self) -> float | None:
        """Real-time factor of the server: generation seconds per audio second."""
        return self.gen_seconds / self.audio_seconds if self.audio_seconds > 0 else None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``--json`` prints)."""
        return {
            "text": self.text,
            "server": self.server,
            "engine": self.engine,
            "voice_id": self.voice_id,
            "preset": self.preset,
            "tokens": self.tokens,
            "tokens_per_second": self.tokens_per_second,
            "tokens_seconds": _round(self.tokens_seconds),
            "ttfb": _round(self.ttfb),
            "ttfa": _round(self.ttfa),
            "audio_seconds": _round(self.audio_seconds),
            "frames": self.frames,
            "sample_rate": self.sample_rate,
            "gen_seconds": _round(self.gen_seconds),
            "rtf": _round(self.rtf),
            "wall_seconds": _round(self.wall_seconds),
            "usage": None if self.usage is None else self.usage.to_json(),
            "output": self.output,
            "chunks": [c.to_json() for c in self.chunks],
        }


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def chunk_timeline(events: Sequence[TtsEvent], t0: float) -> tuple[ChunkRow, ...]:
    """The per-chunk timeline of one turn's events, times relative to ``t0``.

    Audio frames without a ``chunk_id`` count for the chunk generated last.
    """
    texts: dict[int, str] = {}
    starts: dict[int, float] = {}
    first: dict[int, float] = {}
    done: dict[int, ChunkComplete] = {}
    current: int | None = None
    for event in events:
        if isinstance(event, GenerationStarted):
            current = event.chunk_id
            texts.setdefault(event.chunk_id, event.text)
            starts.setdefault(event.chunk_id, event.at - t0)
        elif isinstance(event, AudioChunk):
            cid = event.chunk_id if event.chunk_id is not None else current
            if cid is not None:
                first.setdefault(cid, event.at - t0)
        elif isinstance(event, ChunkComplete):
            done[event.chunk_id] = event
    ids = sorted(set(texts) | set(first) | set(done))
    return tuple(
        ChunkRow(
            chunk_id=cid,
            text=texts.get(cid, ""),
            t_start=starts.get(cid),
            first_audio=first.get(cid),
            audio_seconds=done[cid].audio_seconds if cid in done else None,
            gen_ms=done[cid].gen_ms if cid in done else None,
        )
        for cid in ids
    )


def format_timeline(rows: Sequence[ChunkRow], width: int = 60) -> str:
    """The timeline as a text table."""
    headers = ["chunk", "t_start", "first audio", "audio", "gen ms", "text"]
    body = [
        [
            str(r.chunk_id),
            seconds(r.t_start),
            seconds(r.first_audio),
            seconds(r.audio_seconds, 2),
            "-" if r.gen_ms is None else f"{r.gen_ms:.0f}",
            shorten(r.text, width),
        ]
        for r in rows
    ]
    return render_table(headers, body, ">>>>><")


def format_summary(report: SayReport) -> str:
    """The human-readable result: timeline, latency line, output line."""
    rtf = "-" if report.rtf is None else f"{report.rtf:.2f}"
    lines = [
        format_timeline(report.chunks),
        "",
        f"TTFB {seconds(report.ttfb)}  TTFA {seconds(report.ttfa)}  "
        f"audio {report.audio_seconds:.2f} s in {_plural(report.frames, 'frame')}  "
        f"RTF {rtf} (server generation {report.gen_seconds:.2f} s)",
        f"{_plural(report.tokens, 'token')} at {report.tokens_per_second:g} tok/s "
        f"in {report.tokens_seconds:.2f} s; "
        f"turn done after {report.wall_seconds:.2f} s; voice {report.voice_id}, preset {report.preset}, "
        f"server {report.server}" + (f" ({report.engine})" if report.engine else ""),
    ]
    if report.output:
        rate = f", {report.sample_rate} Hz" if report.sample_rate else ""
        lines.append(f"wrote {report.output} ({report.audio_seconds:.2f} s{rate}, mono)")
    return "\n".join(lines)


# -- the turn ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SayOptions:
    """What to say and how (the parsed command line)."""

    text: str
    """Text to speak."""
    target: Target
    """Server to use."""
    voice_id: int
    """Voice id."""
    preset: str
    """Chunking preset name."""
    tokens_per_second: float
    """Pace of the simulated LLM."""
    output: str | None
    """WAV path."""
    output_format: OutputFormat | None
    """Audio format asked of the server."""
    play: bool
    """Play the audio live."""
    as_json: bool
    """Print JSON instead of the table."""
    quiet: bool
    """No progress messages."""


SPEECH_CHARS_PER_SECOND = 15.0
"""Rough speaking rate, for the expected audio length of the progress line only."""


def expected_audio_seconds(text: str) -> float:
    """A rough estimate of the audio ``text`` makes (progress display only)."""
    return max(len(" ".join(text.split())) / SPEECH_CHARS_PER_SECOND, 0.1)


async def speak_measured(
    session: StreamingSession,
    tokens: list[str],
    tokens_per_second: float,
    progress: Progress,
    *,
    player: Player | None = None,
    on_event: Callable[[TtsEvent], None] | None = None,
) -> tuple[list[TtsEvent], float, float]:
    """Stream ``tokens`` into one turn and collect its events.

    The progress line shows tokens sent and audio received against the expected length;
    "first audio" is the TTFA of the summary (first audible sample, from the first
    token). Returns the events, the monotonic time of the first token and of the last.
    """
    from rxtts.operators.metrics import MetricsAccumulator
    from rxtts.operators.sinks import play

    loop = asyncio.get_running_loop()
    sent = 0
    first_at = last_at = time.monotonic()
    audio = 0.0
    expected = expected_audio_seconds("".join(tokens))
    ttfa = MetricsAccumulator()

    def status() -> None:
        share = min(audio / expected, 1.0)
        bar = "#" * round(share * 20)
        progress.status(f"[{bar:<20}] {audio:.1f}/~{expected:.0f} s audio, {sent}/{len(tokens)} tokens sent")

    def on_token(_: str) -> None:
        nonlocal sent, first_at, last_at
        last_at = time.monotonic()
        if sent == 0:
            first_at = last_at
            ttfa.text_sent(first_at)
        sent += 1
        status()
        if sent == len(tokens):
            progress.done()
            progress.info(
                f"all {_plural(sent, 'token')} sent in {last_at - first_at:.2f} s; waiting for the audio"
            )

    def on_turn_event(event: TtsEvent) -> None:
        nonlocal audio
        if isinstance(event, AudioChunk):
            heard_before = ttfa.first_sound_at is not None
            ttfa.on_event(event)
            if not heard_before and ttfa.first_sound_at is not None:
                progress.done()
                progress.info(f"first audio (TTFA) after {ttfa.first_sound_at - first_at:.3f} s")
            audio += event.duration
            status()
        if on_event is not None:
            on_event(event)

    source: Observable[str] = llm_tokens(tokens, tokens_per_second, scheduler=AsyncIOScheduler(loop)).pipe(
        ops.do_action(on_token)
    )
    turn: Observable[TtsEvent] = session.speak(source)
    if player is not None:
        turn = turn.pipe(play(player))
    events: list[TtsEvent] = await turn.pipe(ops.do_action(on_turn_event), ops.to_list())
    progress.done()
    return events, first_at, last_at


def build_report(
    options: SayOptions, events: list[TtsEvent], t0: float, t_last: float, engine: str | None
) -> SayReport:
    """Summarise one turn's events."""
    from rxtts.operators.sinks import to_numpy

    frames = [e for e in events if isinstance(e, AudioChunk)]
    metrics = next((e for e in events if isinstance(e, TurnMetrics)), None)
    closed = next((e for e in reversed(events) if isinstance(e, SessionClosed)), None)
    end = max((e.at for e in events), default=t0)
    report = SayReport(
        text=options.text,
        server=options.target.describe(),
        engine=engine,
        voice_id=options.voice_id,
        preset=options.preset,
        tokens=len(split_tokens(options.text)),
        tokens_per_second=options.tokens_per_second,
        tokens_seconds=t_last - t0,
        chunks=chunk_timeline(events, t0),
        ttfb=metrics.ttfb if metrics else None,
        ttfa=metrics.ttfa if metrics else None,
        audio_seconds=sum(f.duration for f in frames),
        frames=len(frames),
        sample_rate=frames[0].sample_rate if frames else None,
        gen_seconds=sum(e.gen_ms for e in events if isinstance(e, ChunkComplete)) / 1000.0,
        wall_seconds=end - t0,
        usage=closed.usage if closed is not None else None,
        output=options.output,
    )
    if options.output and frames:
        write_output(options.output, to_numpy(events), report.sample_rate or 24000)
    return report


async def say(options: SayOptions, progress: Progress, out: TextIO) -> int:
    """The whole command: connect, speak, report. Returns the exit status.

    Writing a file without ``--play`` asks the server for unpaced audio (engine speed);
    Ctrl-C keeps the audio received so far in ``-o``.
    """
    player = new_player() if options.play else None  # fail before starting anything
    tts, engine = await open_client(options.target, options.voice_id, progress)
    received: list[TtsEvent] = []
    try:
        changes: dict[str, Any] = {"voice_id": options.voice_id, "preset": options.preset}
        if options.output_format is not None:
            changes["output_format"] = options.output_format
        session = tts.streaming_session(paced=player is not None or not options.output, **changes)
        await connect_session(session, options.target, progress)
        tokens = split_tokens(options.text)
        progress.info(
            f"streaming {_plural(len(tokens), 'token')} at {options.tokens_per_second:g} tok/s "
            f"(voice {options.voice_id}, preset {options.preset})"
        )
        events, t0, t_last = await speak_measured(
            session, tokens, options.tokens_per_second, progress, player=player, on_event=received.append
        )
        if player is not None:
            progress.info("playing the rest of the audio ...")
            await asyncio.get_running_loop().run_in_executor(None, player.wait, 60.0)
        report = build_report(options, events, t0, t_last, engine)
    except asyncio.CancelledError:  # Ctrl-C: asyncio.run cancels this task first
        _keep_partial(options.output, received, progress)
        raise
    finally:
        if player is not None:
            player.close()
        await tts.aclose()
    if report.frames == 0:
        error(PROG, "the server sent no audio (is the text only punctuation?); nothing written")
        return EXIT_RUNTIME
    if options.as_json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False), file=out)
    else:
        print(format_summary(report), file=out)
    return EXIT_OK


def _keep_partial(path: str | None, events: list[TtsEvent], progress: Progress) -> None:
    """Write the audio received before an interrupt (if any) to ``path``."""
    from rxtts.operators.sinks import to_numpy

    frames = [e for e in events if isinstance(e, AudioChunk)]
    if path is None or not frames:
        return
    write_output(path, to_numpy(events), frames[0].sample_rate)
    progress.done()
    progress.info(f"interrupted: kept the {sum(f.duration for f in frames):.2f} s received in {path}")


# -- command line ---------------------------------------------------------------------------------


def voice_list() -> str:
    """The local voices, for ``--help`` (no engine is loaded to list them)."""
    from rxtts.server.engines.espeak import ESPEAK_VOICES
    from rxtts.server.engines.piper import PIPER_VOICES

    lines = ["voices of the local server (--voice):"]
    lines += [f"  {v.id}  {v.name} (piper): {v.description}" for v in PIPER_VOICES]
    extra = [v for v in ESPEAK_VOICES if v.id >= 2000]
    lines += [f"  {v.id}  {v.name} (espeak, {v.language})" for v in extra]
    lines.append("  with --engine espeak, 1071-1073 are espeak voices too; a hosted server: GET /v1/voices")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``rxtts say`` argument parser."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Speak TEXT streamed token by token, as an LLM would; print TTFA and a chunk timeline.",
        epilog='examples:\n  rxtts say "Hello! This is streamed token by token." -o hello.wav\n'
        "  echo 'Text from another tool.' | rxtts say - --json\n"
        "  rxtts say 'Hi there.' --engine tone --tokens-per-second 100\n\n"
        + voice_list()
        + "\n\nexit status: 0 ok, 1 runtime error (server, engine), 2 usage error, 130 interrupted",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("text", nargs="?", help="text to speak; '-' (or nothing, with a pipe) reads stdin")
    p.add_argument("-o", "--output", metavar="WAV", help="write the audio to this WAV file")
    p.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        default="low-latency",
        help="chunk schedule (default low-latency: first chunk at the first sentence end)",
    )
    p.add_argument(
        "--tokens-per-second",
        type=float,
        default=DEFAULT_TOKENS_PER_SECOND,
        metavar="N",
        help=f"pace of the simulated LLM (default {DEFAULT_TOKENS_PER_SECOND:g}; 'inf': all at once)",
    )
    p.add_argument(
        "--format",
        dest="output_format",
        choices=[f.value for f in OutputFormat],
        help="audio format asked of the server (default pcm_24000)",
    )
    p.add_argument("--play", action="store_true", help="play the audio as it arrives (needs rxtts[play])")
    p.add_argument("--json", dest="as_json", action="store_true", help="print the results as JSON on stdout")
    add_connection_arguments(p)
    return p


def parse_options(argv: Sequence[str], stdin: TextIO) -> SayOptions:
    """Parse and validate the command line.

    Raises:
        SystemExit: argparse errors (status 2) and ``--help`` (status 0).
        UsageError: invalid combinations.
    """
    args = build_parser().parse_args(argv)
    if not args.tokens_per_second > 0:
        raise UsageError(f"--tokens-per-second must be > 0, got {args.tokens_per_second:g}")
    target = resolve_target(args.url, args.api_key, args.engine)
    check_output_path(args.output)
    return SayOptions(
        text=read_text(args.text, stdin),
        target=target,
        voice_id=args.voice,
        preset=args.preset,
        tokens_per_second=args.tokens_per_second,
        output=args.output,
        output_format=OutputFormat(args.output_format) if args.output_format else None,
        play=args.play,
        as_json=args.as_json,
        quiet=args.quiet,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``rxtts say``; returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    return cli_main(PROG, lambda: parse_options(args, sys.stdin), build_parser, say)


__all__ = [
    "ChunkRow",
    "SayOptions",
    "SayReport",
    "build_parser",
    "build_report",
    "chunk_timeline",
    "format_summary",
    "format_timeline",
    "main",
    "parse_options",
    "say",
    "speak_measured",
]


if __name__ == "__main__":
    raise SystemExit(main())
