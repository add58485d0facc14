"""The seed's flows (speak, barge-in, session reuse, multi-context, the 21st context),
each run twice with the same assertions: over the in-memory transport straight into the
real server logic (``TtsApp.serve_socket``, no sockets) and over real WebSockets on
127.0.0.1 (issue 17: the transport seam)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import reactivex as rx
from reactivex import operators as ops

import rxtts
from rxtts.errors import TooManyContextsError
from rxtts.events import (
    AudioChunk,
    ContextClosed,
    Final,
    GenerationStarted,
    SessionClosed,
    TtsEvent,
    TurnMetrics,
)
from rxtts.server.app import TtsApp
from rxtts.server.embedded import RunningServer
from rxtts.server.engines.tone import ToneEngine
from rxtts.server.options import ServerOptions
from rxtts.transport import MemoryTransport

KINDS = ("memory", "websocket")
ANSWER = (
    "Sure, I can help you plan the trip to Lisbon, and the good news is that late October "
    "is one of the nicest times to go. The weather is mild and the crowds are gone. "
)


def tokens_of(text: str, size: int = 4) -> list[str]:
    """LLM-like tokens, split mid-word."""
    return [text[i : i + size] for i in range(0, len(text), size)]


@contextlib.asynccontextmanager
async def client(kind: str, tone_server: RunningServer) -> AsyncIterator[rxtts.TTS]:
    if kind == "websocket":
        async with rxtts.connect(tone_server.url, voice_id=1071) as tts:
            yield tts
        return
    app = TtsApp(ToneEngine(), ServerOptions())
    memory = MemoryTransport(app.serve_socket)
    try:
        async with rxtts.connect("ws://memory", voice_id=1071, transport=memory) as tts:
            yield tts
    finally:
        await memory.aclose()
        app.close()
    assert memory.opened >= 1  # it really went through the memory transport


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


def audio_of(events: list[TtsEvent]) -> int:
    return sum(len(e.samples) for e in events if isinstance(e, AudioChunk))


@pytest.mark.parametrize("kind", KINDS)
def test_speak_a_streamed_answer(kind: str, tone_server: RunningServer) -> None:
    async def main() -> list[TtsEvent]:
        async with client(kind, tone_server) as tts:
            session = tts.streaming_session(preset="low-latency")
            events: list[TtsEvent] = await session.speak(tokens_of(ANSWER)).pipe(ops.to_list())
            await session.close()
            return events

    events = run(main())
    kinds = [type(e).__name__ for e in events]
    assert kinds.index("GenerationStarted") < kinds.index("AudioChunk") < kinds.index("Final")
    assert isinstance(events[-1], SessionClosed) and isinstance(events[-2], TurnMetrics)
    spoken = " ".join(e.text for e in events if isinstance(e, GenerationStarted))
    assert spoken.split() == ANSWER.split()
    assert audio_of(events) > 0
    assert events[-1].usage is not None and events[-1].usage.characters == len(ANSWER)
    assert {e.turn for e in events} == {0}  # turn identity


@pytest.mark.parametrize("kind", KINDS)
def test_barge_in_late_in_the_turn_then_the_next_turn_on_the_same_socket(
    kind: str, tone_server: RunningServer
) -> None:
    async def main() -> tuple[list[TtsEvent], list[TtsEvent], list[TtsEvent], bool]:
        async with client(kind, tone_server) as tts:
            session = tts.streaming_session(preset="low-latency")
            seen: list[TtsEvent] = []
            session.events.subscribe(seen.append)
            long_answer = ANSWER * 4  # ~8 s of tone audio, paced by the server
            first: list[TtsEvent] = await session.speak(tokens_of(long_answer)).pipe(
                ops.take_until(rx.timer(1.5)), ops.to_list()
            )
            conn = session._link.connection
            second: list[TtsEvent] = await session.speak("Sure, go ahead.").pipe(ops.to_list())
            same = conn is not None and conn is session._link.connection
            await session.close()
            return first, second, seen, same

    first, second, seen, same_socket = run(main())
    assert audio_of(first) > 0 and not any(isinstance(e, SessionClosed | Final) for e in first)
    assert isinstance(second[-1], SessionClosed) and audio_of(second) > 0
    assert {e.turn for e in first} == {0} and {e.turn for e in second} == {1}
    after = seen[[type(e).__name__ for e in seen].index("Interrupted") :]
    assert not [e for e in after if e.turn == 0]  # nothing of the cancelled turn after the ack
    assert same_socket


@pytest.mark.parametrize("kind", KINDS)
def test_session_reuse_three_turns_one_socket(kind: str, tone_server: RunningServer) -> None:
    async def main() -> tuple[list[list[TtsEvent]], int]:
        async with client(kind, tone_server) as tts:
            session = tts.streaming_session()
            turns = []
            conns = set()
            for text in ("First question answered.", "Second one, also fine.", "And a third."):
                turns.append(await session.speak(tokens_of(text)).pipe(ops.to_list()))
                conns.add(id(session._link.connection))
            await session.close()
            return turns, len(conns)

    turns, connections = run(main())
    assert connections == 1
    for index, events in enumerate(turns):
        assert isinstance(events[-1], SessionClosed) and audio_of(events) > 0
        assert {e.turn for e in events} == {index}


@pytest.mark.parametrize("kind", KINDS)
def test_multi_context_two_voices_keyed_groups(kind: str, tone_server: RunningServer) -> None:
    async def main() -> dict[str, list[TtsEvent]]:
        async with client(kind, tone_server) as tts:
            multi = tts.multi_context_session(default_voice_id=1071)
            lines = rx.of(
                ("narrator", "The story begins on a cold night in the harbour town."),
                ("character", "Hello there, is anyone awake at this hour?"),
                ("narrator", "Nobody answered."),
            )
            by_context: dict[str, list[TtsEvent]] = {}

            def collect(group: Any) -> Any:
                by_context[group.key] = []
                return group.pipe(ops.do_action(by_context[group.key].append))

            await multi.speak_keyed(lines, voices={"narrator": 1071, "character": 1072}).pipe(
                ops.flat_map(collect), ops.to_list()
            )
            await multi.close()
            return by_context

    groups = run(main())
    assert set(groups) == {"narrator", "character"}
    for cid, events in groups.items():
        assert all(e.context_id == cid for e in events)
        assert isinstance(events[-1], ContextClosed) and audio_of(events) > 0
        assert {e.turn for e in events if isinstance(e, AudioChunk)} <= {0, 1}
    narrator = groups["narrator"]
    first_final = next(i for i, e in enumerate(narrator) if isinstance(e, Final))
    assert all(e.turn == 0 for e in narrator[:first_final] if isinstance(e, AudioChunk))


@pytest.mark.parametrize("kind", KINDS)
def test_the_twenty_first_context_is_refused_locally(kind: str, tone_server: RunningServer) -> None:
    async def main() -> tuple[int, str | None]:
        async with client(kind, tone_server) as tts:
            multi = tts.multi_context_session(default_voice_id=1071)
            await multi.connect()
            for i in range(20):
                multi.create_context(f"c{i}")
            refused: str | None = None
            try:
                multi.create_context("c20")
            except TooManyContextsError as exc:
                refused = exc.context_id
            open_now = len(multi.active_contexts)
            await multi.close()
            return open_now, refused

    open_now, refused = run(main())
    assert open_now == 20 and refused == "c20"
