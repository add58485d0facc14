"""The Rx and imperative APIs are one implementation; usage bills every character sent.

Both run against the real local server (tone engine) on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reactivex import operators as ops

from rxtts.client.callbacks import SessionCallbacks
from rxtts.client.session import StreamingSession
from rxtts.config import StreamConfig
from rxtts.events import AudioChunk, ChunkComplete, GenerationStarted, SessionClosed, TtsEvent
from rxtts.server.embedded import RunningServer

TOKENS = ["Hello ", "there. ", "This is ", "a second ", "sentence, ", "and a third one!"]


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def signature(events: list[TtsEvent]) -> list[tuple[Any, ...]]:
    """What the server said, without arrival times."""
    out: list[tuple[Any, ...]] = []
    for e in events:
        if isinstance(e, GenerationStarted):
            out.append(("start", e.chunk_id, e.text))
        elif isinstance(e, AudioChunk):
            out.append(("audio", e.index, e.chunk_id, e.audio))
        elif isinstance(e, ChunkComplete):
            out.append(("done", e.chunk_id, e.audio_seconds))
        elif isinstance(e, SessionClosed):
            usage = e.usage
            out.append(("closed", e.total_audio_chunks, usage.characters if usage else None))
    return out


def test_rx_and_imperative_apis_give_the_same_events(tone_server: RunningServer) -> None:
    url = f"{tone_server.url}/ws/tts/stream"

    async def rx_turn() -> list[TtsEvent]:
        async with StreamingSession(url, StreamConfig(voice_id=1071)) as session:
            events: list[TtsEvent] = await session.speak(TOKENS).pipe(ops.to_list())
            return events

    async def imperative_turn() -> list[TtsEvent]:
        events: list[TtsEvent] = []
        closed = asyncio.Event()
        session = StreamingSession(
            url,
            StreamConfig(voice_id=1071),
            callbacks=SessionCallbacks(on_session_closed=lambda _: closed.set()),
        )
        session.events.subscribe(events.append)
        await session.connect()
        for token in TOKENS:
            session.send(token)
        session.flush()
        await asyncio.wait_for(closed.wait(), 15)
        await session.close()
        return events

    rx_events = run(rx_turn())
    imperative_events = run(imperative_turn())
    assert signature(rx_events) == signature(imperative_events)
    assert signature(rx_events)[-1][0] == "closed"


words = st.text(
    alphabet=st.characters(whitelist_categories=("Lu", "Ll", "Nd"), max_codepoint=0x24F),
    min_size=1,
    max_size=8,
)
texts = st.lists(
    st.tuples(words, st.sampled_from([" ", ", ", ". ", "! ", "? ", "\n"])), min_size=1, max_size=12
).map(lambda parts: "".join(w + sep for w, sep in parts))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=texts, cuts=st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=40))
def test_usage_bills_exactly_the_characters_sent(
    tone_server: RunningServer, text: str, cuts: list[int]
) -> None:
    """Property (issue 5): for arbitrary text and tokenisation, nothing is lost."""
    tokens: list[str] = []
    rest = text
    for n in cuts:
        if not rest:
            break
        tokens.append(rest[:n])
        rest = rest[n:]
    if rest:
        tokens.append(rest)

    async def main() -> list[TtsEvent]:
        async with StreamingSession(f"{tone_server.url}/ws/tts/stream", StreamConfig(voice_id=1071)) as s:
            events: list[TtsEvent] = await s.speak(tokens).pipe(ops.to_list())
            return events

    events = run(main())
    closed = events[-1]
    assert isinstance(closed, SessionClosed) and closed.usage is not None
    assert closed.usage.characters == len(text)
    spoken = "".join(e.text for e in events if isinstance(e, GenerationStarted))
    assert spoken.split() == text.split()  # every word spoken, in order
