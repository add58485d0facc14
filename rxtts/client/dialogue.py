"""Render a multi-voice dialogue to one WAV: every speaker is a context of one session.

All lines go out at once, each speaker on its own context (its own voice), so the
server synthesises the speakers concurrently (pre-buffering the next speaker while the
current one would be playing). Every line is flushed, so each ``final`` of a context
closes that speaker's next line; the lines are then laid out in script order:

- ``"stereo"``: a ``(frames, 2)`` array, speakers panned from left to right (two
  speakers: one per channel), written as an interleaved stereo WAV;
- ``"interleaved"``: mono, the speakers' turns one after another.

In a notebook (top-level ``await``)::

    multi = MultiContextSession(server_url, default_voice_id=1071)
    audio = await render_dialogue(multi, [("alice", "Hi Bob!"), ("bob", "Hello Alice.")],
                                  voices={"alice": 1072, "bob": 1071})
    audio.write_wav("dialogue.wav")

From a shell: ``python -m rxtts.client.dialogue dialogue.wav --engine tone``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import numpy as np
from reactivex import GroupedObservable, Observable, from_iterable
from reactivex import operators as ops

from rxtts.audio.pcm import Int16Array
from rxtts.audio.wav import PathOrFile, wav_bytes, write_wav
from rxtts.events import AudioChunk, Final, SessionUsage, TtsEvent
from rxtts.operators.flush import FLUSH

if TYPE_CHECKING:
    from rxtts.client.multi import MultiContextSession
    from rxtts.client.multi_speak import KeyedText

Layout: TypeAlias = Literal["stereo", "interleaved"]
"""How the speakers share the output: panned stereo, or mono turn after turn."""

LAYOUTS: tuple[Layout, ...] = ("stereo", "interleaved")
"""Every layout :func:`mix_dialogue` accepts."""


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a script."""

    speaker: str
    """Who speaks it; also the context id of that speaker."""
    text: str
    """What is said."""


@dataclass(frozen=True, slots=True, eq=False)
class RenderedLine:
    """A line's audio and where it sits in the mix."""

    speaker: str
    """Who speaks it."""
    text: str
    """What is said."""
    samples: Int16Array
    """Mono int16 audio of the line."""
    start: int
    """Index of the line's first frame in the mix."""

    @property
    def end(self) -> int:
        """Index one past the line's last frame in the mix."""
        return self.start + len(self.samples)


@dataclass(frozen=True, slots=True, eq=False)
class DialogueAudio:
    """A rendered dialogue: the mix, the lines in it, and each speaker's usage."""

    samples: Int16Array
    """``(frames, 2)`` for stereo, 1-D for interleaved mono."""
    sample_rate: int
    """Rate of every line."""
    layout: Layout
    """How the speakers were laid out."""
    lines: tuple[RenderedLine, ...]
    """Lines in script order."""
    speakers: tuple[str, ...]
    """Speakers in order of first appearance (left to right in stereo)."""
    usage: Mapping[str, SessionUsage | None] = field(default_factory=dict)
    """Per-speaker (per-context) usage from ``context_closed``."""

    @property
    def duration(self) -> float:
        """Seconds of audio in the mix."""
        return len(self.samples) / self.sample_rate

    @property
    def channels(self) -> int:
        """2 for stereo, 1 for interleaved."""
        return 1 if self.samples.ndim == 1 else int(self.samples.shape[1])

    def write_wav(self, path_or_file: PathOrFile) -> None:
        """Write the mix as a 16-bit PCM WAV (stereo frames interleaved L, R)."""
        write_wav(path_or_file, self.samples, self.sample_rate)

    def wav_bytes(self) -> bytes:
        """The mix as a complete WAV file (e.g. for ``IPython.display.Audio``)."""
        return wav_bytes(self.samples, self.sample_rate)


# -- pure layout --------------------------------------------------------------------------


def pan_gains(position: float) -> tuple[float, float]:
    """Constant-power ``(left, right)`` gains for ``position`` in [0 (left), 1 (right)]."""
    if not 0.0 <= position <= 1.0:
        raise ValueError(f"position: must be in [0, 1], got {position}")
    angle = position * math.pi / 2
    left, right = math.cos(angle), math.sin(angle)
    return (left if left > 1e-12 else 0.0), (right if right > 1e-12 else 0.0)


def speaker_positions(speakers: Sequence[str]) -> dict[str, float]:
    """Pan positions spread evenly from left to right; one speaker sits in the centre."""
    if len(speakers) == 1:
        return {speakers[0]: 0.5}
    return {s: i / (len(speakers) - 1) for i, s in enumerate(speakers)}


def _speakers_of(segments: Sequence[tuple[str, Any]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(speaker for speaker, _ in segments))


def mix_dialogue(
    segments: Sequence[tuple[str, Int16Array]],
    sample_rate: int,
    *,
    layout: Layout = "stereo",
    gap: float = 0.25,
    speakers: Sequence[str] | None = None,
) -> tuple[Int16Array, list[int]]:
    """Lay out ``(speaker, mono samples)`` turns one after another, ``gap`` s apart.

    Returns the mix (``(frames, 2)`` for stereo, 1-D for interleaved) and the frame
    where each segment starts. ``speakers`` fixes the left-to-right order (default:
    order of first appearance).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout: {layout!r} is not one of {LAYOUTS}")
    if gap < 0 or sample_rate <= 0:
        raise ValueError("gap must be >= 0 and sample_rate > 0")
    order = tuple(speakers) if speakers is not None else _speakers_of(segments)
    missing = {s for s, _ in segments} - set(order)
    if missing:
        raise ValueError(f"speakers without a position: {sorted(missing)}")
    pause = round(gap * sample_rate)
    starts: list[int] = []
    at = 0
    for i, (_, samples) in enumerate(segments):
        at += pause if i else 0
        starts.append(at)
        at += len(samples)
    channels = 2 if layout == "stereo" else 1
    mix = np.zeros((at, channels), dtype=np.float64)
    positions = speaker_positions(order)
    for (speaker, samples), start in zip(segments, starts, strict=True):
        mono = np.asarray(samples, dtype=np.float64)
        gains = pan_gains(positions[speaker]) if channels == 2 else (1.0,)
        for ch, gain in enumerate(gains):
            mix[start : start + len(mono), ch] += gain * mono
    out = np.clip(np.rint(mix), -32768, 32767).astype(np.int16)
    return (out[:, 0].copy() if channels == 1 else out), starts


def split_lines(events: Iterable[TtsEvent]) -> tuple[list[Int16Array], int | None]:
    """One context's audio cut at each ``final`` (one per flushed line), and its rate.

    A trailing empty segment (the ``final`` of a graceful close) is dropped.

    Raises:
        ValueError: when frames of one context arrive at different rates.
    """
    lines: list[Int16Array] = []
    current: list[Int16Array] = []
    rate: int | None = None
    for event in events:
        if isinstance(event, AudioChunk):
            if rate is not None and event.sample_rate != rate:
                raise ValueError(f"mixed sample rates in one context: {rate} and {event.sample_rate}")
            rate = event.sample_rate
            current.append(np.asarray(event.samples, dtype=np.int16))
        elif isinstance(event, Final):
            lines.append(np.concatenate(current) if current else np.zeros(0, np.int16))
            current = []
    if current:
        lines.append(np.concatenate(current))
    return lines, rate


# -- rendering through a session ------------------------------------------------------------


def _script(lines: Iterable[Line | tuple[str, str]]) -> list[Line]:
    return [ln if isinstance(ln, Line) else Line(*ln) for ln in lines]


def dialogue_items(script: Sequence[Line]) -> list[KeyedText]:
    """The ``speak_keyed`` items of a script: each line, then a FLUSH of its speaker."""
    items: list[KeyedText] = []
    for line in script:
        items.append((line.speaker, line.text))
        items.append((line.speaker, FLUSH))
    return items


def _collect(
    groups: Observable[GroupedObservable[str, TtsEvent]],
) -> Observable[tuple[str, TtsEvent]]:
    def tag(group: GroupedObservable[str, TtsEvent]) -> Observable[tuple[str, TtsEvent]]:
        key = group.key
        return group.pipe(ops.map(lambda e: (key, e)))

    return groups.pipe(ops.flat_map(tag))


async def render_dialogue(
    session: MultiContextSession,
    script: Iterable[Line | tuple[str, str]],
    voices: Mapping[str, int] | None = None,
    *,
    layout: Layout = "stereo",
    gap: float = 0.25,
    timeout: float | None = 120.0,
) -> DialogueAudio:
    """Speak a script on ``session`` (one context per speaker) and mix it into one track.

    Must be awaited on the session's loop. Contexts named after the speakers are created
    with ``voices[speaker]`` (else the session's default voice) and closed at the end.

    Raises:
        TimeoutError: the dialogue did not finish within ``timeout`` seconds.
        RxTtsError: a context failed (e.g. an unknown voice).
    """
    lines = _script(script)
    if not lines:
        raise ValueError("the script has no lines")
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    by_speaker: dict[str, list[TtsEvent]] = {}

    def settle(error: Exception | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(None)

    def on_event(item: tuple[str, TtsEvent]) -> None:
        by_speaker.setdefault(item[0], []).append(item[1])

    dialogue = _collect(session.speak_keyed(from_iterable(dialogue_items(lines)), voices))

    def on_error(error: Exception) -> None:
        loop.call_soon_threadsafe(settle, error)

    def on_completed() -> None:
        loop.call_soon_threadsafe(settle, None)

    subscription = dialogue.subscribe(on_event, on_error, on_completed)
    try:
        await asyncio.wait_for(done, timeout)
    finally:
        subscription.dispose()
    return assemble_dialogue(lines, by_speaker, layout=layout, gap=gap, usage=_usage(session, lines))


def _usage(session: MultiContextSession, lines: Sequence[Line]) -> dict[str, SessionUsage | None]:
    return {s: session.usage_for(s) for s in dict.fromkeys(ln.speaker for ln in lines)}


def assemble_dialogue(
    script: Sequence[Line],
    events_by_speaker: Mapping[str, Sequence[TtsEvent]],
    *,
    layout: Layout = "stereo",
    gap: float = 0.25,
    usage: Mapping[str, SessionUsage | None] | None = None,
) -> DialogueAudio:
    """Cut each speaker's events into lines (:func:`split_lines`) and mix them in script order.

    Raises:
        ValueError: a speaker has fewer finished lines than the script gives it, or the
            speakers' rates differ.
    """
    per_speaker: dict[str, list[Int16Array]] = {}
    rates: set[int] = set()
    for speaker in dict.fromkeys(ln.speaker for ln in script):
        cut, rate = split_lines(events_by_speaker.get(speaker, ()))
        wanted = sum(1 for ln in script if ln.speaker == speaker)
        if len(cut) < wanted:
            raise ValueError(f"speaker {speaker!r}: {len(cut)} finished line(s), script has {wanted}")
        per_speaker[speaker] = cut[:wanted]
        if rate is not None:
            rates.add(rate)
    if len(rates) > 1:
        raise ValueError(f"speakers at different sample rates: {sorted(rates)}")
    sample_rate = rates.pop() if rates else 24000
    taken: dict[str, int] = {}
    segments: list[tuple[str, Int16Array]] = []
    for line in script:
        k = taken.get(line.speaker, 0)
        taken[line.speaker] = k + 1
        segments.append((line.speaker, per_speaker[line.speaker][k]))
    speakers = _speakers_of(segments)
    mix, starts = mix_dialogue(segments, sample_rate, layout=layout, gap=gap, speakers=speakers)
    rendered = tuple(
        RenderedLine(line.speaker, line.text, samples, start)
        for line, (_, samples), start in zip(script, segments, starts, strict=True)
    )
    return DialogueAudio(mix, sample_rate, layout, rendered, speakers, dict(usage or {}))


# -- example --------------------------------------------------------------------------------

DEMO_SCRIPT: tuple[Line, ...] = (
    Line("alice", "Did you hear that? Something moved in the garden."),
    Line("bob", "It was probably the cat. Go back to sleep."),
    Line("alice", "Cats do not carry flashlights, Bob."),
    Line("bob", "Fine. I will get my shoes."),
)
"""A short two-voice scene for the example and notebook 03."""

DEMO_VOICES: Mapping[str, int] = {"alice": 1072, "bob": 1071}
"""Voice ids of the demo speakers (present on every engine)."""


async def render_demo(
    url: str, layout: Layout = "stereo", gap: float = 0.25, api_key: str | None = None
) -> DialogueAudio:
    """Render :data:`DEMO_SCRIPT` against the server at ``url``."""
    from rxtts.client.multi import MultiContextSession

    async with MultiContextSession(url, api_key=api_key, language="en") as session:
        return await render_dialogue(session, DEMO_SCRIPT, DEMO_VOICES, layout=layout, gap=gap)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rxtts.client.dialogue OUT.wav``: render the demo scene with a local server."""
    parser = argparse.ArgumentParser(prog="python -m rxtts.client.dialogue", description=main.__doc__)
    parser.add_argument("out", help="WAV file to write")
    parser.add_argument("--engine", default="best", help="piper, espeak, tone or best (default)")
    parser.add_argument("--layout", choices=LAYOUTS, default="stereo")
    parser.add_argument("--gap", type=float, default=0.25, help="seconds between lines")
    args = parser.parse_args(argv)
    from rxtts.server.embedded import start_background_server

    with start_background_server(args.engine) as server:
        audio = asyncio.run(render_demo(server.url, args.layout, args.gap))
    audio.write_wav(args.out)
    for line in audio.lines:
        print(f"{line.start / audio.sample_rate:6.2f}s  {line.speaker:>6}: {line.text}")
    print(f"wrote {args.out}: {audio.duration:.2f} s, {audio.channels} channel(s), {audio.sample_rate} Hz")
    return 0


__all__ = [
    "DEMO_SCRIPT",
    "DEMO_VOICES",
    "LAYOUTS",
    "DialogueAudio",
    "Layout",
    "Line",
    "RenderedLine",
    "assemble_dialogue",
    "dialogue_items",
    "main",
    "mix_dialogue",
    "pan_gains",
    "render_demo",
    "render_dialogue",
    "speaker_positions",
    "split_lines",
]


if __name__ == "__main__":
    raise SystemExit(main())
