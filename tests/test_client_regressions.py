"""Issue 17's client regressions, each reproduced first against the code before the fix.

They use public names only (``rxtts.StreamingSession``, ``rxtts.MultiContextSession``)
and real sockets on 127.0.0.1, so the same file runs against the old layout too.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import reactivex
from reactivex import operators as ops
from reactivex.subject import Subject

import rxtts
from rxtts.events import AudioChunk, ContextCreated, Final, SessionClosed, TtsEvent
from rxtts.server.embedded import RunningServer
from tests.test_session import FakeStream, kinds, run, session_for


def _collect(obs: reactivex.Observable[TtsEvent]) -> asyncio.Future[list[TtsEvent]]:
    fut: asyncio.Future[list[TtsEvent]] = asyncio.get_running_loop().create_future()
    obs.pipe(ops.to_list()).subscribe(
        lambda v: fut.done() or fut.set_result(v), lambda e: fut.done() or fut.set_exception(e)
    )
    return fut


def test_an_unacknowledged_cancel_does_not_wedge_the_next_turn() -> None:
    """(2) Today every frame after a never-acked cancel is dropped and the next speak()
    hangs forever. Now the socket whose turn state is unknown is abandoned after
    ``cancel_timeout`` quiet seconds and the next turn is replayed on a new one."""

    async def main() -> tuple[list[TtsEvent], int, list[str]]:
        async with FakeStream(frames=40, frame_delay=0.02, ack_cancel=False) as srv:
            session = session_for(srv.url, cancel_timeout=0.3)
            tokens: Subject[str] = Subject()
            first: list[TtsEvent] = []
            sub = session.speak(tokens).subscribe(first.append)
            tokens.on_next("Well, the first answer is a long one that goes on and on. ")
            tokens.on_completed()
            while not any(isinstance(e, AudioChunk) for e in first):
                await asyncio.sleep(0.01)
            sub.dispose()  # barge-in; this server never sends `interrupted`
            second = await asyncio.wait_for(_collect(session.speak("And here is the second turn.")), 8.0)
            await session.close()
            return second, len(srv.logs), kinds(first)

    second, connections, first = run(main(), timeout=20.0)
    assert "AudioChunk" in first and "SessionClosed" not in first
    assert isinstance(second[-1], SessionClosed) and any(isinstance(e, AudioChunk) for e in second)
    assert connections == 2  # the wedged socket was abandoned, the turn replayed


def test_a_raising_speak_subscriber_cancels_its_turn_as_documented(caplog: pytest.LogCaptureFixture) -> None:
    """(4) Today the log says "the turn is cancelled" but nothing is sent and the turn
    keeps streaming to a broken subscriber. Policy: logged, unsubscribed (nothing
    more reaches it), the turn cancelled on the server; the next turn is unaffected."""

    class Boom(Exception):
        pass

    async def main() -> tuple[list[Any], list[dict[str, Any]], list[TtsEvent]]:
        async with FakeStream(frames=30, frame_delay=0.02) as srv:
            session = session_for(srv.url)
            seen: list[Any] = []

            def on_next(event: TtsEvent) -> None:
                seen.append(event)
                if isinstance(event, AudioChunk):
                    raise Boom("player crashed")

            session.speak("A sentence that produces many frames of audio.").subscribe(
                on_next, lambda e: seen.append(("error", e)), lambda: seen.append("completed")
            )
            await asyncio.sleep(1.2)
            nxt = await asyncio.wait_for(_collect(session.speak("The next turn works.")), 8.0)
            await session.close()
            return seen, srv.frames_in, nxt

    with caplog.at_level(logging.ERROR, logger="rxtts"):
        seen, frames_in, nxt = run(main())
    assert sum(isinstance(e, AudioChunk) for e in seen) == 1  # unsubscribed after raising
    assert "completed" not in seen and not any(isinstance(e, tuple) for e in seen)
    assert {"cancel": True} in frames_in  # the turn was cancelled on the server
    assert any("unsubscribed" in r.getMessage() for r in caplog.records)
    assert isinstance(nxt[-1], SessionClosed)


def test_contexts_refused_by_the_server_free_their_client_slots(tone_server: RunningServer) -> None:
    """(1) Today 20 contexts refused by the server (unknown voice) keep their client
    slots, so a valid 21st context fails locally while the server holds none."""

    async def main() -> tuple[int, list[TtsEvent], list[str]]:
        multi = rxtts.MultiContextSession(tone_server.url, default_voice_id=1071)
        errors: list[Exception] = []
        events: list[TtsEvent] = []
        multi.events.subscribe(events.append)
        await multi.connect(rxtts.MultiContextCallbacks(on_error=lambda e, c: errors.append(e)))
        for i in range(20):
            multi.create_context(f"bad{i}", voice_id=424242)  # not in the catalogue
            multi.send(f"bad{i}", "This voice does not exist.", flush=True)
        for _ in range(500):  # every refusal answered and every slot released
            if len({e.context_id for e in errors}) >= 20 and not multi.active_contexts:
                break
            await asyncio.sleep(0.02)
        refused = len({e.context_id for e in errors if isinstance(e, rxtts.RxTtsError)})
        multi.create_context("good", voice_id=1071)
        multi.send("good", "A valid voice still gets a slot.", flush=True)
        for _ in range(300):
            if any(isinstance(e, Final) and e.context_id == "good" for e in events):
                break
            await asyncio.sleep(0.02)
        active = list(multi.active_contexts)
        await multi.close()
        return refused, events, active

    refused, events, active = run(main())
    assert refused == 20
    assert any(isinstance(e, ContextCreated) and e.context_id == "good" for e in events)
    assert any(isinstance(e, Final) and e.context_id == "good" for e in events)
    assert not [c for c in active if c.startswith("bad")]
