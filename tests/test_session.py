"""StreamingSession: speak() turns, barge-in, the imperative API, replay, errors.

Two kinds of servers: ``FakeStream``, a scripted ``/ws/tts/stream`` server on
127.0.0.1:0 whose wire traffic the tests inspect (and which can misbehave: restart with
1012, send late frames after a cancel, never ack), and the real local server
(``tone_server`` / ``server_factory`` / ``piper_server`` from conftest).
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import numpy as np
import pytest
import reactivex
from reactivex import operators as ops
from reactivex.subject import Subject
from websockets.asyncio.server import ServerConnection, serve

from rxtts.client.callbacks import SessionCallbacks
from rxtts.client.session import StreamingSession
from rxtts.config import StreamConfig
from rxtts.errors import (
    AuthenticationError,
    ConnectionClosedError,
    LocalProtocolError,
    MissingVoiceError,
    ServerRestartingError,
    ValidationError,
)
from rxtts.events import (
    AudioChunk,
    ChunkComplete,
    Final,
    GenerationStarted,
    Interrupted,
    ServerWarning,
    SessionClosed,
    SettingsUpdated,
    TtsEvent,
    TurnMetrics,
)
from rxtts.protocol.frames import Endpoint
from rxtts.server.embedded import RunningServer
from rxtts.transport import ReconnectPolicy, build_url

T = TypeVar("T")
VOICE = 1071
SR = 24000


def run(coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def tone(n: int, amp: int = 6000) -> bytes:
    t = np.arange(n)
    return (amp * np.sin(2 * np.pi * 440 * t / SR)).astype("<i2").tobytes()


def audio(idx: int, n: int = 480, chunk_id: int = 0, silent: bool = False) -> str:
    data = bytes(2 * n) if silent else tone(n)
    return json.dumps(
        {
            "audio": base64.b64encode(data).decode(),
            "enc": "pcm_s16le",
            "idx": idx,
            "sr": SR,
            "samples": n,
            "chunk_id": chunk_id,
        }
    )


Script = Callable[[ServerConnection, int, list[dict[str, Any]]], Awaitable[bool]]


class FakeStream:
    """A scripted ``/ws/tts/stream`` server: one chunk per turn, ``frames`` audio frames.

    ``script(ws, connection_index, log)`` runs first on each connection; returning True
    ends the connection there. ``late_frames`` audio frames follow a cancel before the
    ``interrupted`` ack (in-flight audio); ``ack_cancel=False`` never acks.
    """

    def __init__(
        self,
        frames: int = 3,
        frame_delay: float = 0.0,
        late_frames: int = 0,
        ack_cancel: bool = True,
        leading_silence: int = 0,
        error_first_text: dict[str, Any] | None = None,
        script: Script | None = None,
    ) -> None:
        self.frames = frames
        self.frame_delay = frame_delay
        self.late_frames = late_frames
        self.ack_cancel = ack_cancel
        self.leading_silence = leading_silence
        self.error_first_text = error_first_text
        self.script = script
        self.logs: list[list[dict[str, Any]]] = []
        self.sent_turn_end: list[float] = []  # monotonic times session_closed was sent
        self.first_text_at: list[float] = []

    @property
    def frames_in(self) -> list[dict[str, Any]]:
        return [f for log in self.logs for f in log]

    async def __aenter__(self) -> FakeStream:
        self.server = await serve(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = build_url(f"http://127.0.0.1:{port}", Endpoint.STREAM, "eu-test-key")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, ws: ServerConnection) -> None:
        log: list[dict[str, Any]] = []
        self.logs.append(log)
        if self.script is not None and await self.script(ws, len(self.logs) - 1, log):
            return
        queue: asyncio.Queue[str] = asyncio.Queue()
        worker = asyncio.create_task(self._worker(ws, queue))
        text = ""
        errored = False
        try:
            async for message in ws:
                frame = json.loads(message)
                log.append(frame)
                if frame.get("cancel"):
                    worker.cancel()
                    for i in range(self.late_frames):
                        await ws.send(audio(900 + i))
                    if self.ack_cancel:
                        await ws.send(json.dumps({"interrupted": True}))
                    text, queue = "", asyncio.Queue()
                    worker = asyncio.create_task(self._worker(ws, queue))
                    continue
                if "update_settings" in frame:
                    body = frame["update_settings"]
                    if body.get("language") == "xx":
                        await ws.send(
                            json.dumps(
                                {"error": "speed out of range", "error_code": "VALIDATION_ERROR", "code": 400}
                            )
                        )
                    else:
                        await ws.send(json.dumps({"settings_updated": True, "settings": body}))
                    continue
                if "text" in frame:
                    if not text:
                        self.first_text_at.append(time.monotonic())
                    if self.error_first_text is not None and not errored:
                        errored = True
                        await ws.send(json.dumps(self.error_first_text))
                        continue
                    text += frame["text"]
                if frame.get("flush") or frame.get("close"):
                    queue.put_nowait(text)
                    text = ""
        finally:
            worker.cancel()

    async def _worker(self, ws: ServerConnection, queue: asyncio.Queue[str]) -> None:
        while True:
            text = await queue.get()
            if not text.strip():
                await ws.send(json.dumps({"session_closed": True, "total_audio_seconds": 0.0}))
                self.sent_turn_end.append(time.monotonic())
                continue
            await ws.send(json.dumps({"generation_started": True, "chunk_id": 0, "text": text}))
            for i in range(self.frames):
                if self.frame_delay:
                    await asyncio.sleep(self.frame_delay)
                await ws.send(audio(i, silent=i < self.leading_silence))
            secs = self.frames * 480 / SR
            await ws.send(
                json.dumps({"chunk_complete": True, "chunk_id": 0, "audio_seconds": secs, "gen_ms": 5})
            )
            await ws.send(json.dumps({"final": True, "total_audio_seconds": secs}))
            usage = {"audio_seconds": secs, "characters": len(text), "cost_cents": None}
            await ws.send(json.dumps({"session_closed": True, "total_audio_seconds": secs, "usage": usage}))
            self.sent_turn_end.append(time.monotonic())


async def events_of(obs: reactivex.Observable[TtsEvent]) -> list[TtsEvent]:
    out: list[TtsEvent] = await obs.pipe(ops.to_list())
    return out


def kinds(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def session_for(url: str, **kw: Any) -> StreamingSession:
    kw.setdefault("reconnect", ReconnectPolicy(retry_after=0.05))
    return StreamingSession(url, StreamConfig(voice_id=VOICE), **kw)


# -- turn lifecycle through speak() ---------------------------------------------------------


def test_speak_sends_each_token_then_one_flush_and_completes_after_session_closed() -> None:
    async def main() -> tuple[list[TtsEvent], FakeStream]:
        async with FakeStream(frames=3) as srv:
            session = session_for(srv.url)
            events = await events_of(session.speak(reactivex.from_iterable(["Hel", "lo ", "", "world."])))
            await session.close()
            return events, srv

    events, srv = run(main())
    assert kinds(events) == [
        "GenerationStarted",
        "AudioChunk",
        "AudioChunk",
        "AudioChunk",
        "ChunkComplete",
        "Final",
        "TurnMetrics",
        "SessionClosed",
    ]
    wire = srv.frames_in
    assert [f.get("text") for f in wire[:3]] == ["Hel", "lo ", "world."]  # empty token not sent
    assert wire[0]["voice_id"] == VOICE and "voice_id" not in wire[1]  # config on the first frame only
    assert wire[3] == {"flush": True}  # one bare flush at completion
    assert len(wire) == 4
    closed = events[-1]
    assert isinstance(closed, SessionClosed) and closed.usage is not None
    assert closed.usage.characters == len("Hello world.")
    metrics = events[-2]
    assert isinstance(metrics, TurnMetrics)
    assert metrics.frame_count == 3 and metrics.chunk_count == 1
    assert metrics.audio_seconds == pytest.approx(3 * 480 / SR)
    assert metrics.ttfb is not None and 0 <= metrics.ttfb < 1


def test_ttfa_skips_leading_silence() -> None:
    async def main() -> TurnMetrics | None:
        async with FakeStream(frames=4, frame_delay=0.03, leading_silence=2) as srv:
            session = session_for(srv.url)
            await session.connect()
            await events_of(session.speak("Hello."))
            await session.close()
            return session.last_metrics

    metrics = run(main())
    assert metrics is not None and metrics.ttfb is not None and metrics.ttfa is not None
    assert metrics.ttfa - metrics.ttfb >= 0.05  # two silent frames, 30 ms apart each


def test_speak_accepts_strings_iterables_and_async_iterators() -> None:
    async def tokens() -> Any:
        for t in ["One ", "two."]:
            await asyncio.sleep(0.01)
            yield t

    async def main() -> FakeStream:
        async with FakeStream() as srv:
            session = session_for(srv.url)
            await events_of(session.speak("Whole text."))
            await events_of(session.speak(["A ", "b."]))
            await events_of(session.speak(tokens()))
            await session.close()
            return srv

    srv = run(main())
    texts = [f["text"] for f in srv.frames_in if "text" in f]
    assert texts == ["Whole text.", "A ", "b.", "One ", "two."]
    assert sum(1 for f in srv.frames_in if f == {"flush": True}) == 3


def test_empty_token_stream_ends_locally_without_traffic() -> None:
    async def main() -> tuple[list[TtsEvent], FakeStream]:
        async with FakeStream() as srv:
            session = session_for(srv.url)
            await session.connect()
            events = await events_of(session.speak(reactivex.empty()))
            await session.close()
            return events, srv

    events, srv = run(main())
    assert kinds(events) == ["TurnMetrics", "SessionClosed"]
    assert srv.frames_in == []


def test_a_second_speak_waits_for_the_first_turn() -> None:
    async def main() -> tuple[list[TtsEvent], list[TtsEvent], FakeStream, float]:
        async with FakeStream(frames=4, frame_delay=0.02) as srv:
            session = session_for(srv.url)
            first, second = await asyncio.gather(
                events_of(session.speak("First turn.")), events_of(session.speak("Second turn."))
            )
            await session.close()
            return first, second, srv, srv.first_text_at[1] if len(srv.first_text_at) > 1 else 0.0

    first, second, srv, second_text_at = run(main())
    assert kinds(first)[-1] == "SessionClosed" and kinds(second)[-1] == "SessionClosed"
    assert [f["text"] for f in srv.frames_in if "text" in f] == ["First turn.", "Second turn."]
    assert second_text_at >= srv.sent_turn_end[0]  # sent only after the first turn closed


def test_tokens_from_another_thread_and_subscription_from_another_thread() -> None:
    async def main() -> tuple[list[TtsEvent], set[int], FakeStream]:
        async with FakeStream() as srv:
            session = session_for(srv.url)
            await session.connect()
            loop_thread = threading.get_ident()
            subject: Subject[str] = Subject()
            result: list[TtsEvent] = []
            threads: set[int] = set()

            def blocking_consumer() -> None:
                def on_next(e: TtsEvent) -> None:
                    threads.add(threading.get_ident())
                    result.append(e)

                session.speak(subject).pipe(ops.do_action(on_next)).run()

            consumer = threading.Thread(target=blocking_consumer)
            consumer.start()
            await asyncio.sleep(0.1)

            def producer() -> None:
                for t in ["From ", "a ", "thread."]:
                    subject.on_next(t)
                subject.on_completed()

            await asyncio.to_thread(producer)
            await asyncio.to_thread(consumer.join, 10)
            await session.close()
            assert threads == {loop_thread}
            return result, threads, srv

    events, _, srv = run(main())
    assert kinds(events)[-1] == "SessionClosed"
    assert [f["text"] for f in srv.frames_in if "text" in f] == ["From ", "a ", "thread."]


# -- barge-in ----------------------------------------------------------------------------------


def test_take_until_disposes_the_turn_sends_cancel_and_drops_late_audio() -> None:
    async def main() -> tuple[list[TtsEvent], list[TtsEvent], list[TtsEvent], FakeStream, bool]:
        async with FakeStream(frames=40, frame_delay=0.01, late_frames=3) as srv:
            session = session_for(srv.url)
            await session.connect()
            everything: list[TtsEvent] = []
            session.events.subscribe(everything.append)
            user_speaks: Subject[bool] = Subject()
            got: list[TtsEvent] = []
            done = asyncio.get_running_loop().create_future()

            def on_next(e: TtsEvent) -> None:
                got.append(e)
                if sum(isinstance(x, AudioChunk) for x in got) == 2:
                    user_speaks.on_next(True)  # the user talks over the agent

            session.speak(["A long answer. ", "More words."]).pipe(ops.take_until(user_speaks)).subscribe(
                on_next, done.set_exception, lambda: done.set_result(None)
            )
            await done
            n_before = len(got)
            # the next turn starts at once, before the server's `interrupted` arrives
            nxt = await events_of(session.speak("Sure, what instead?"))
            await asyncio.sleep(0.05)
            busy = session.busy
            await session.close()
            assert len(got) == n_before  # nothing reached the disposed subscriber
            return got, nxt, everything, srv, busy

    got, nxt, everything, srv, busy = run(main())
    assert sum(isinstance(e, AudioChunk) for e in got) == 2
    wire = srv.frames_in
    cancel_at = wire.index({"cancel": True})
    assert [f.get("text") for f in wire[cancel_at + 1 :] if "text" in f] == ["Sure, what instead?"]
    assert wire[cancel_at + 1]["voice_id"] == VOICE  # config re-sent after a cancel (PROTOCOL 5.3)
    assert kinds(nxt)[0] == "GenerationStarted" and kinds(nxt)[-1] == "SessionClosed"
    assert sum(isinstance(e, AudioChunk) for e in nxt) == 40
    late = [e for e in everything if isinstance(e, AudioChunk) and e.index >= 900]
    assert late == []  # in-flight frames after the cancel reached nobody
    assert any(isinstance(e, Interrupted) for e in everything)
    assert not busy


def test_disposing_a_queued_turn_sends_nothing() -> None:
    async def main() -> FakeStream:
        async with FakeStream(frames=5, frame_delay=0.01) as srv:
            session = session_for(srv.url)
            first = asyncio.get_running_loop().create_future()
            session.speak("First.").subscribe(
                on_error=first.set_exception, on_completed=lambda: first.set_result(1)
            )
            sub = session.speak("Never spoken.").subscribe()
            await asyncio.sleep(0.01)
            assert session.busy
            sub.dispose()
            await first
            await asyncio.sleep(0.05)
            await session.close()
            return srv

    srv = run(main())
    assert [f["text"] for f in srv.frames_in if "text" in f] == ["First."]
    assert {"cancel": True} not in srv.frames_in


def test_token_error_cancels_the_turn_and_is_forwarded() -> None:
    async def main() -> tuple[Exception, FakeStream]:
        async with FakeStream(frames=3) as srv:
            session = session_for(srv.url)
            await session.connect()
            tokens = reactivex.concat(reactivex.of("Half a "), reactivex.throw(RuntimeError("llm failed")))
            with pytest.raises(RuntimeError) as info:
                await events_of(session.speak(tokens))
            await asyncio.sleep(0.05)
            after = await events_of(session.speak("Still works."))
            assert kinds(after)[-1] == "SessionClosed"
            await session.close()
            return info.value, srv

    error, srv = run(main())
    assert str(error) == "llm failed"
    wire = srv.frames_in
    assert wire[:2] == [{**wire[0], "text": "Half a ", "flush": False}, {"cancel": True}]
    assert wire[-1] == {"flush": True}


# -- errors ------------------------------------------------------------------------------------


def test_server_error_frame_is_a_typed_error_and_the_session_recovers() -> None:
    err = {"error": "voice_id is required", "error_code": "MISSING_VOICE_ID", "code": 400}

    async def main() -> tuple[Exception, list[TtsEvent], list[Exception]]:
        async with FakeStream(error_first_text=err) as srv:
            reported: list[Exception] = []
            session = session_for(srv.url, callbacks=SessionCallbacks(on_error=reported.append))
            with pytest.raises(MissingVoiceError) as info:
                await events_of(session.speak("No voice."))
            after = await events_of(session.speak("Now it works."))
            await session.close()
            return info.value, after, reported

    error, after, reported = run(main())
    assert error.status == 400 and error.error_code == "MISSING_VOICE_ID"
    assert kinds(after)[-1] == "SessionClosed"
    assert reported and isinstance(reported[0], MissingVoiceError)


@pytest.mark.parametrize(
    ("code", "expected"),
    [(4001, AuthenticationError), (1011, ConnectionClosedError), (1000, ConnectionClosedError)],
)
def test_close_mid_turn_errors_the_turn_never_hangs(code: int, expected: type[Exception]) -> None:
    async def close_after_text(ws: ServerConnection, index: int, log: list[dict[str, Any]]) -> bool:
        if index > 0:
            return False
        log.append(json.loads(await ws.recv()))
        await ws.send(audio(0))
        await ws.close(code, "bye")
        return True

    async def main() -> tuple[Exception, list[TtsEvent]]:
        async with FakeStream(script=close_after_text) as srv:
            session = session_for(srv.url)
            got: list[TtsEvent] = []
            with pytest.raises(Exception) as info:
                tokens = reactivex.concat(reactivex.of("Hello "), reactivex.never())
                await events_of(session.speak(tokens).pipe(ops.do_action(got.append)))
            after = await events_of(session.speak("Reconnected."))  # lazily reconnects
            await session.close()
            assert isinstance(got[0], AudioChunk)
            return info.value, after

    error, after = run(main())
    assert type(error) is expected
    assert kinds(after)[-1] == "SessionClosed"


def test_rejected_upgrade_fails_the_turn_with_authentication_error() -> None:
    async def main() -> Exception:
        async def reject(ws: Any, request: Any) -> Any:
            return ws.respond(403, "bad key")

        server = await serve(lambda ws: asyncio.sleep(0), "127.0.0.1", 0, process_request=reject)
        port = server.sockets[0].getsockname()[1]
        session = session_for(build_url(f"ws://127.0.0.1:{port}", Endpoint.STREAM, "bad"))
        try:
            with pytest.raises(AuthenticationError) as info:
                await events_of(session.speak("Hi."))
            with pytest.raises(AuthenticationError):
                await session.connect()
        finally:
            server.close()
            await server.wait_closed()
        return info.value

    assert run(main()).status == 403


# -- reconnect and replay (PROTOCOL 10) --------------------------------------------------------


def restart_once(after_audio: bool = False, times: int = 1) -> Script:
    async def script(ws: ServerConnection, index: int, log: list[dict[str, Any]]) -> bool:
        if index >= times:
            return False
        while True:
            frame = json.loads(await ws.recv())
            log.append(frame)
            if frame.get("flush"):
                break
        if after_audio:
            await ws.send(json.dumps({"generation_started": True, "chunk_id": 0, "text": "x"}))
            await ws.send(audio(0))
        await ws.close(1012, "restart")
        return True

    return script


def test_1012_before_audio_reconnects_and_replays_the_turn_once() -> None:
    async def main() -> tuple[list[TtsEvent], FakeStream, float]:
        async with FakeStream(script=restart_once()) as srv:
            session = StreamingSession(
                srv.url, StreamConfig(voice_id=VOICE), reconnect=ReconnectPolicy(retry_after=0.3)
            )
            t0 = time.monotonic()
            events = await events_of(session.speak(["Replay ", "me."]))
            elapsed = time.monotonic() - t0
            await session.close()
            return events, srv, elapsed

    events, srv, elapsed = run(main())
    assert kinds(events)[-1] == "SessionClosed"
    assert len(srv.logs) == 2
    first, second = srv.logs
    assert second == first  # identical frames, config on the first (PROTOCOL 10, verified)
    assert second[0]["voice_id"] == VOICE and second[-1] == {"flush": True}
    assert elapsed >= 0.3  # waited retry_after


def test_1012_twice_surfaces_server_restarting_error() -> None:
    async def main() -> tuple[Exception, int]:
        async with FakeStream(script=restart_once(times=2)) as srv:
            session = session_for(srv.url)
            with pytest.raises(ServerRestartingError) as info:
                await events_of(session.speak("Unlucky."))
            return info.value, len(srv.logs)

    error, connections = run(main())
    assert connections == 2  # replayed once, not more
    assert error.retry_after == 1.0


def test_1012_after_audio_is_not_replayed() -> None:
    async def main() -> tuple[Exception, list[TtsEvent], int]:
        async with FakeStream(script=restart_once(after_audio=True)) as srv:
            session = session_for(srv.url)
            got: list[TtsEvent] = []
            with pytest.raises(ServerRestartingError) as info:
                await events_of(session.speak("Half heard.").pipe(ops.do_action(got.append)))
            await asyncio.sleep(0.2)
            return info.value, got, len(srv.logs)

    error, got, connections = run(main())
    assert isinstance(error, ServerRestartingError)
    assert connections == 1  # never replay audio already delivered
    assert sum(isinstance(e, AudioChunk) for e in got) == 1


# -- the imperative API (seed examples) --------------------------------------------------------


def test_seed_session_reuse_example() -> None:
    async def main() -> tuple[FakeStream, dict[str, list[Any]], Any]:
        async with FakeStream(frames=2) as srv:
            seen: dict[str, list[Any]] = {"chunks": [], "complete": [], "closed": [], "final": []}
            session = StreamingSession(
                srv.url,
                StreamConfig(voice_id=1071),
                callbacks=SessionCallbacks(
                    on_chunk=seen["chunks"].append,
                    on_chunk_complete=lambda c, a, g: seen["complete"].append((c, a, g)),
                    on_session_closed=seen["closed"].append,
                    on_final=seen["final"].append,
                ),
            )
            await session.connect()
            assert session.is_connected
            session.send("Hello from voice one.")
            usage = await session.end_session()  # keeps the WebSocket open
            assert session.is_connected and usage is not None
            session.update_config(voice_id=1072)
            session.send("Hello from voice two.")
            await session.close()
            assert not session.is_connected
            return srv, seen, session.last_usage

    srv, seen, usage = run(main())
    assert len(srv.logs) == 1  # one socket for both turns
    wire = srv.frames_in
    assert wire[0]["voice_id"] == 1071 and wire[0]["text"] == "Hello from voice one."
    assert wire[1] == {"close": True}
    assert wire[2]["voice_id"] == 1072 and wire[2]["text"] == "Hello from voice two."
    assert wire[3] == {"close": True}
    assert len(seen["chunks"]) == 4 and all(isinstance(c, AudioChunk) for c in seen["chunks"])
    assert seen["complete"] == [(0, pytest.approx(2 * 480 / SR), 5.0)] * 2
    assert seen["closed"] == [pytest.approx(2 * 480 / SR)] * 2
    assert len(seen["final"]) == 2 and isinstance(seen["final"][0], Final)
    assert usage is not None and usage.characters == len("Hello from voice two.")


def test_seed_barge_in_example() -> None:
    async def main() -> tuple[FakeStream, list[str], int, float]:
        async with FakeStream(frames=30, frame_delay=0.01, late_frames=2) as srv:
            calls: list[str] = []
            session = StreamingSession(
                srv.url,
                StreamConfig(voice_id=1071),
                callbacks=SessionCallbacks(
                    on_chunk=lambda c: calls.append(f"chunk{c.index}"),
                    on_interrupted=lambda: calls.append("interrupted"),
                ),
            )
            await session.connect()
            session.send("This is a very long answer the user talks over.", True)
            while not any(c.startswith("chunk") for c in calls):
                await asyncio.sleep(0.005)
            t0 = time.monotonic()
            await session.cancel_current()
            waited = time.monotonic() - t0
            cut = len(calls)
            session.send("Sure, what would you like instead?", True)
            await session.end_session()
            await session.close()
            return srv, calls, cut, waited

    srv, calls, cut, waited = run(main())
    assert waited < 1.0  # resolved by the ack, not the 5 s quiet timeout
    assert calls[cut - 1] == "interrupted"  # on_interrupted fired before cancel_current returned
    assert calls[cut:] == [f"chunk{i}" for i in range(30)]  # the next turn, complete
    assert "chunk900" not in calls and "chunk901" not in calls  # in-flight frames were dropped
    wire = srv.frames_in
    assert wire[1] == {"cancel": True}
    assert wire[2]["voice_id"] == 1071  # config re-sent after cancel


def test_cancel_current_resolves_after_a_quiet_timeout_without_ack() -> None:
    async def main() -> float:
        async with FakeStream(ack_cancel=False) as srv:
            session = session_for(srv.url, cancel_timeout=0.2)
            await session.connect()
            session.send("Never acknowledged.")
            t0 = time.monotonic()
            await session.cancel_current()
            return time.monotonic() - t0

    assert 0.18 <= run(main()) < 2.0


def test_send_during_a_speak_turn_is_refused() -> None:
    async def main() -> None:
        async with FakeStream(frames=5, frame_delay=0.02) as srv:
            session = session_for(srv.url)
            tokens = reactivex.concat(
                reactivex.of("Busy "), reactivex.timer(0.1).pipe(ops.map(lambda _: "turn."))
            )
            turn = asyncio.ensure_future(events_of(session.speak(tokens)))
            await asyncio.sleep(0.02)
            with pytest.raises(LocalProtocolError):
                session.send("Interleaved?")
            await turn
            await session.close()

    run(main())


def test_update_settings_ack_and_rejection() -> None:
    async def main() -> tuple[Any, Exception, list[TtsEvent]]:
        async with FakeStream() as srv:
            session = session_for(srv.url)
            events: list[TtsEvent] = []
            session.events.subscribe(events.append)
            settings = await session.update_settings(speed=1.1)
            with pytest.raises(ValidationError) as info:
                await session.update_settings(language="xx")
            with pytest.raises(LocalProtocolError):
                await session.update_settings(voice_id=3)
            await session.close()
            return settings, info.value, events

    settings, error, events = run(main())
    assert settings == {"speed": 1.1}
    assert error.error_code == "VALIDATION_ERROR"
    assert any(isinstance(e, SettingsUpdated) for e in events)


# -- against the real local server -------------------------------------------------------------


def test_speak_against_the_tone_server(tone_server: RunningServer) -> None:
    async def main() -> list[TtsEvent]:
        session = StreamingSession(f"{tone_server.url}/ws/tts/stream", StreamConfig(voice_id=VOICE))
        async with session:
            return await events_of(session.speak(["Hello ", "there. ", "How are ", "you today?"]))

    events = run(main())
    chunks = [e for e in events if isinstance(e, AudioChunk)]
    closed = events[-1]
    assert isinstance(events[0], GenerationStarted)
    assert isinstance(closed, SessionClosed) and isinstance(events[-2], TurnMetrics)
    assert chunks and closed.total_audio_chunks == len(chunks)
    assert closed.total_audio_seconds == pytest.approx(sum(c.duration for c in chunks), abs=1e-3)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert sum(isinstance(e, ChunkComplete) for e in events) == closed.total_text_chunks


def test_barge_in_against_the_tone_server(server_factory: Callable[..., RunningServer]) -> None:
    server = server_factory()
    long_text = " ".join(f"This is sentence number {i} of a long answer." for i in range(40))

    async def main() -> tuple[list[TtsEvent], list[TtsEvent], list[TtsEvent]]:
        session = StreamingSession(f"{server.url}/ws/tts/stream", StreamConfig(voice_id=VOICE))
        await session.connect()
        everything: list[TtsEvent] = []
        session.events.subscribe(everything.append)
        got: list[TtsEvent] = []
        first_audio: Subject[bool] = Subject()

        def on_next(e: TtsEvent) -> None:
            got.append(e)
            if isinstance(e, AudioChunk):
                first_audio.on_next(True)

        await session.speak(long_text.split(" ")).pipe(
            ops.map(lambda e: e), ops.do_action(on_next), ops.take_until(first_audio), ops.to_list()
        )
        marker = len(everything)
        nxt = await events_of(session.speak("Okay."))
        await session.close()
        return got, nxt, everything[marker:]

    got, nxt, after = run(main())
    assert sum(isinstance(e, AudioChunk) for e in got) == 1
    assert not any(isinstance(e, SessionClosed) for e in got)
    assert kinds(nxt)[-1] == "SessionClosed"
    texts = [e.text for e in after if isinstance(e, GenerationStarted)]
    assert texts == ["Okay."]  # nothing of the cancelled turn after the barge-in


def test_idle_auto_flush_mid_speak_continues_the_turn(tone_server: RunningServer) -> None:
    async def main() -> list[TtsEvent]:
        session = StreamingSession(f"{tone_server.url}/ws/tts/stream", StreamConfig(voice_id=VOICE))
        tokens = reactivex.concat(
            reactivex.of("Hello there"),
            reactivex.timer(0.9).pipe(ops.map(lambda _: " and more text.")),
        )
        async with session:
            return await events_of(session.speak(tokens))

    events = run(main())
    assert sum(isinstance(e, SessionClosed) for e in events) == 2  # server auto-flushed at 0.5 s
    assert any(isinstance(e, ServerWarning) for e in events)
    spoken = [e.text for e in events if isinstance(e, GenerationStarted)]
    assert "".join(spoken).replace(" ", "") == "Hellothereandmoretext."  # nothing lost
    assert isinstance(events[-1], SessionClosed)


def test_tokens_completing_after_an_auto_flush_end_the_turn(tone_server: RunningServer) -> None:
    async def main() -> list[TtsEvent]:
        session = StreamingSession(f"{tone_server.url}/ws/tts/stream", StreamConfig(voice_id=VOICE))
        tokens = reactivex.concat(
            reactivex.of("Stalled llm"), reactivex.timer(0.9).pipe(ops.ignore_elements())
        )
        async with session:
            events = await events_of(session.speak(tokens))
            after = await events_of(session.speak("Next."))  # the session is in step
            assert [e.text for e in after if isinstance(e, GenerationStarted)] == ["Next."]
            return events

    events = run(main())
    closed = [e for e in events if isinstance(e, SessionClosed)]
    assert len(closed) == 2 and closed[0].total_audio_seconds > 0
    assert closed[1].total_audio_seconds == 0.0  # the closing empty flush found nothing open


def test_imperative_api_against_the_tone_server(tone_server: RunningServer) -> None:
    async def main() -> tuple[list[float], list[str]]:
        closed: list[float] = []
        log: list[str] = []
        session = StreamingSession(
            f"{tone_server.url}/ws/tts/stream",
            StreamConfig(voice_id=1071),
            callbacks=SessionCallbacks(
                on_session_closed=closed.append,
                on_interrupted=lambda: log.append("interrupted"),
                on_chunk=lambda c: log.append("chunk"),
            ),
        )
        await session.connect()
        session.send("Hello from voice one.")
        await session.end_session()
        session.update_config(voice_id=1072)
        session.send("Hello from voice two. " * 30)
        await session.cancel_current()
        session.send("Sure.", True)
        await session.end_session()
        await session.close()
        return closed, log

    closed, log = run(main())
    assert len(closed) == 2 and all(s > 0 for s in closed)
    assert "interrupted" in log


@pytest.mark.slow
def test_speak_with_piper(piper_server: RunningServer) -> None:
    async def main() -> tuple[list[TtsEvent], TurnMetrics | None]:
        session = StreamingSession(
            f"{piper_server.url}/ws/tts/stream", StreamConfig(voice_id=VOICE, auto_mode=True)
        )
        async with session:
            events = await events_of(session.speak(["The ", "quick ", "brown ", "fox ", "jumps."]))
            return events, session.last_metrics

    events, metrics = run(main(), timeout=60)
    samples = np.concatenate([e.samples for e in events if isinstance(e, AudioChunk)])
    assert metrics is not None and metrics.ttfa is not None and metrics.ttfb is not None
    assert metrics.ttfa >= metrics.ttfb
    assert len(samples) / 22050 > 0.5 and np.abs(samples).max() > 1000  # real speech
