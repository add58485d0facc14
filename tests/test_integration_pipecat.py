"""The Pipecat service in a real Pipecat pipeline against the real local tone server.

Pipecat cannot be installed beside rxtts's dev pins, so in the main suite this file only
runs itself in ``.venv-pipecat`` (see ``tests/frameworks.py``); there, the tests below
drive :class:`rxtts.integrations.pipecat.RxttsTTSService` with Pipecat's own pipeline,
worker and runner, as an LLM would: ``LLMFullResponseStartFrame``, raw tokens split
mid-word, ``LLMFullResponseEndFrame``, and ``InterruptionFrame`` for barge-in.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
from collections.abc import Callable
from typing import Any

import pytest

if importlib.util.find_spec("pipecat") is None:

    def test_pipecat_suite_in_its_venv() -> None:
        """Run this file in the Pipecat venv (fails under CI=true when it is missing)."""
        import frameworks

        frameworks.require_suite("pipecat")

else:
    from pipecat.frames.frames import (
        EndFrame,
        ErrorFrame,
        Frame,
        InterruptionFrame,
        LLMFullResponseEndFrame,
        LLMFullResponseStartFrame,
        LLMTextFrame,
        TTSAudioRawFrame,
        TTSStartedFrame,
        TTSStoppedFrame,
        TTSTextFrame,
    )
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.workers.runner import WorkerRunner
    from reactivex import operators as ops

    import rxtts
    from rxtts.events import AudioChunk
    from rxtts.integrations.pipecat import RxttsTTSService
    from rxtts.integrations.tokens import llm_tokens, split_tokens
    from rxtts.server.embedded import RunningServer

    RATE = 24000
    TURN_1 = (
        "Thanks for calling about your order, I can see that the package left our warehouse "
        "yesterday afternoon and is now travelling with the regional courier. It should reach "
        "the distribution centre near you tonight, and the driver will bring it tomorrow before "
        "noon unless the weather gets in the way. Would you like me to send you the tracking link "
        "by text message so that you can follow every step of the delivery yourself?"
    )
    TURN_2 = (
        "Of course, I have just sent the tracking link to the mobile number on your account, "
        "and you should receive it within a minute or two."
    )

    class Recorder(FrameProcessor):
        """Records every frame passing in one direction, with a condition variable."""

        def __init__(self, direction: FrameDirection) -> None:
            super().__init__(enable_direct_mode=True)
            self.frames: list[Frame] = []
            self._direction = direction
            self._changed = asyncio.Event()

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if direction == self._direction:
                self.frames.append(frame)
                self._changed.set()
            await self.push_frame(frame, direction)

        async def wait_for(self, predicate: Callable[[list[Frame]], bool], timeout: float = 15.0) -> None:
            async def loop() -> None:
                while not predicate(self.frames):
                    self._changed.clear()
                    await self._changed.wait()

            await asyncio.wait_for(loop(), timeout)

    class Harness:
        """A running Pipecat pipeline ``[up-recorder, tts, down-recorder]``."""

        def __init__(self, tts: RxttsTTSService) -> None:
            self.tts = tts
            self.up = Recorder(FrameDirection.UPSTREAM)
            self.down = Recorder(FrameDirection.DOWNSTREAM)
            self.worker = PipelineWorker(
                Pipeline([self.up, tts, self.down]),
                cancel_on_idle_timeout=False,
                params=PipelineParams(audio_out_sample_rate=RATE),
            )
            self._started = asyncio.Event()
            self._task: asyncio.Task[Any] | None = None

        async def __aenter__(self) -> Harness:
            @self.worker.event_handler("on_pipeline_started")
            async def _started(worker: Any, frame: Any) -> None:
                self._started.set()

            runner = WorkerRunner()
            await runner.add_workers(self.worker)
            self._task = asyncio.create_task(runner.run())
            await asyncio.wait_for(self._started.wait(), 10)
            return self

        async def __aexit__(self, *exc: object) -> None:
            await self.worker.queue_frame(EndFrame())
            assert self._task is not None
            await asyncio.wait_for(self._task, 20)

        async def push(self, frame: Frame) -> None:
            await self.worker.queue_frame(frame)

        async def llm_turn(self, text: str, end: bool = True) -> None:
            """An LLM reply: start, tokens as a tokenizer cuts them (mid-word), end."""
            await self.push(LLMFullResponseStartFrame())
            for token in split_tokens(text):
                await self.push(LLMTextFrame(token))
            if end:
                await self.push(LLMFullResponseEndFrame())

        def started_contexts(self) -> list[str]:
            return [f.context_id for f in self.down.frames if isinstance(f, TTSStartedFrame)]

        def audio(self, context_id: str, frames: list[Frame] | None = None) -> list[TTSAudioRawFrame]:
            return [
                f
                for f in (self.down.frames if frames is None else frames)
                if isinstance(f, TTSAudioRawFrame) and f.context_id == context_id
            ]

        def stopped(self, context_id: str) -> bool:
            return any(
                isinstance(f, TTSStoppedFrame) and f.context_id == context_id for f in self.down.frames
            )

        def errors(self) -> list[Frame]:
            return [f for f in self.up.frames + self.down.frames if isinstance(f, ErrorFrame)]

    def samples(frames: list[TTSAudioRawFrame]) -> int:
        return sum(len(f.audio) // 2 for f in frames)

    async def reference_samples(server: RunningServer, text: str) -> int:
        """Samples the same server sends for ``text`` to a plain rxtts multi context."""
        async with rxtts.connect(server.url) as client:
            multi = client.multi_context_session(default_voice_id=1071, sample_rate=RATE)
            events = await multi.speak("reference", llm_tokens(split_tokens(text), math.inf)).pipe(
                ops.to_list()
            )
            await multi.close()
        return sum(e.num_samples for e in events if isinstance(e, AudioChunk))

    def server_sessions(server: RunningServer) -> set[int]:
        return {id(s) for s in server.app.sessions}

    @pytest.fixture
    def server(server_factory: Callable[..., RunningServer]) -> RunningServer:
        return server_factory("tone")

    def test_llm_turn_speaks_every_token_in_one_context(server: RunningServer) -> None:
        async def main() -> None:
            expected = await reference_samples(server, TURN_1)
            tts = RxttsTTSService(url=server.url)
            async with Harness(tts) as h:
                await h.llm_turn(TURN_1)
                await h.down.wait_for(
                    lambda fs: bool(h.started_contexts()) and h.stopped(h.started_contexts()[0])
                )
                (ctx,) = h.started_contexts()
                audio = h.audio(ctx)
                assert audio and all(f.sample_rate == RATE for f in audio)
                # every frame of the turn belongs to its one context, and all of it came
                assert samples(audio) == expected
                assert samples(h.audio(ctx)) == samples(
                    [f for f in h.down.frames if isinstance(f, TTSAudioRawFrame)]
                )
                # words from the server's timestamps, in order, make up the whole text
                words = [f for f in h.down.frames if isinstance(f, TTSTextFrame)]
                assert " ".join(w.text.strip() for w in words).split() == TURN_1.split()
                pts = [w.pts for w in words if w.pts]
                assert pts == sorted(pts)
                # the turn closed its context: the slot is free on the server and here
                await asyncio.sleep(0.2)
                assert server.stats().contexts == 0
                assert tts.open_contexts == {}
                assert h.errors() == []

        asyncio.run(asyncio.wait_for(main(), 60))

    def test_barge_in_late_in_turn_acks_and_next_turn_reuses_socket(server: RunningServer) -> None:
        async def main() -> None:
            expected_2 = await reference_samples(server, TURN_2)
            tts = RxttsTTSService(url=server.url)
            async with Harness(tts) as h:
                await h.llm_turn(TURN_1)
                await h.down.wait_for(lambda fs: bool(h.started_contexts()))
                ctx_1 = h.started_contexts()[0]
                # late in the turn: all text sent, 1.5 s of its ~4 s of audio delivered
                await h.down.wait_for(lambda fs: samples(h.audio(ctx_1)) >= int(1.5 * RATE))
                sessions = server_sessions(server)
                assert len(sessions) == 1
                acked = tts.backend.closes_acked
                await h.push(InterruptionFrame())
                await h.down.wait_for(lambda fs: any(isinstance(f, InterruptionFrame) for f in fs))
                await tts.wait_closed(1.0)  # acked at once (PROTOCOL M-7: ~1 s)
                assert tts.backend.closes_acked == acked + 1  # the server's context_closed
                assert server.stats().contexts == 0
                cut = next(i for i, f in enumerate(h.down.frames) if isinstance(f, InterruptionFrame))
                assert samples(h.audio(ctx_1)) < len(TURN_1) * 240  # it really was cut short

                await h.llm_turn(TURN_2)
                await h.down.wait_for(lambda fs: len(h.started_contexts()) == 2)
                ctx_2 = h.started_contexts()[1]
                assert ctx_2 != ctx_1
                await h.down.wait_for(lambda fs: h.stopped(ctx_2))
                after = h.down.frames[cut:]
                assert h.audio(ctx_1, after) == []  # no stale audio after the barge-in
                assert samples(h.audio(ctx_2)) == expected_2  # turn 2 is exactly its own audio
                assert server_sessions(server) == sessions  # same socket for both turns
                assert server.stats().connections == 1
                assert h.errors() == []

        asyncio.run(asyncio.wait_for(main(), 60))

    def test_25_rapid_interruptions_never_hit_the_context_cap(server: RunningServer) -> None:
        async def main() -> None:
            tts = RxttsTTSService(url=server.url)
            async with Harness(tts) as h:
                for n in range(25):
                    await h.llm_turn(TURN_1, end=False)  # mid-reply: nothing would close it but us
                    await h.down.wait_for(lambda fs, n=n: len(h.started_contexts()) == n + 1)
                    ctx = h.started_contexts()[n]
                    await h.down.wait_for(lambda fs, ctx=ctx: bool(h.audio(ctx)))
                    await h.push(InterruptionFrame())
                    await h.down.wait_for(
                        lambda fs, n=n: sum(isinstance(f, InterruptionFrame) for f in fs) == n + 1
                    )
                await tts.wait_closed(10)
                assert tts.backend.closes_sent == 25
                assert tts.backend.closes_acked == 25
                assert server.stats().contexts == 0
                assert server.stats().connections == 1
                assert h.errors() == []  # no TOO_MANY_CONTEXTS, no connection error
                # and the service still speaks a whole turn afterwards
                await h.llm_turn(TURN_2)
                await h.down.wait_for(lambda fs: len(h.started_contexts()) == 26)
                await h.down.wait_for(lambda fs: h.stopped(h.started_contexts()[25]))
                assert len(set(h.started_contexts())) == 26

        asyncio.run(asyncio.wait_for(main(), 120))

    def test_api_key_server_and_embedded_server(
        server_factory: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        keyed = server_factory("tone", api_key="secret-key")
        monkeypatch.delenv("RXTTS_URL", raising=False)
        monkeypatch.delenv("KUGELAUDIO_API_KEY", raising=False)

        async def speak(tts: RxttsTTSService) -> int:
            async with Harness(tts) as h:
                await h.llm_turn("Hello there, this is a short test of the voice.")
                await h.down.wait_for(
                    lambda fs: bool(h.started_contexts()) and h.stopped(h.started_contexts()[0])
                )
                return samples(h.audio(h.started_contexts()[0]))

        async def main() -> None:
            assert await speak(RxttsTTSService(url=keyed.http_url, api_key="secret-key")) > 0
            embedded = RxttsTTSService(engine="tone")
            assert await speak(embedded) > 0
            assert embedded.backend.tts is None  # cleanup stopped the embedded server

        asyncio.run(asyncio.wait_for(main(), 60))

    def test_reconnects_after_the_socket_is_lost(server: RunningServer) -> None:
        async def main() -> None:
            expected_2 = await reference_samples(server, TURN_2)
            tts = RxttsTTSService(url=server.url)
            async with Harness(tts) as h:
                await h.llm_turn(TURN_2)
                await h.down.wait_for(lambda fs: bool(h.started_contexts()))
                await h.down.wait_for(lambda fs: h.stopped(h.started_contexts()[0]))
                first = server_sessions(server)
                assert server.close_connections(code=1011, reason="test: server error") == 1
                await asyncio.sleep(0.3)
                assert not tts.backend.is_connected
                await h.llm_turn(TURN_2)  # the next turn opens a new socket
                await h.down.wait_for(lambda fs: len(h.started_contexts()) == 2)
                ctx_2 = h.started_contexts()[1]
                await h.down.wait_for(lambda fs: h.stopped(ctx_2), timeout=20)
                assert samples(h.audio(ctx_2)) == expected_2
                assert server_sessions(server) and not server_sessions(server) & first  # new socket
                assert server.stats().connections == 1
                assert h.errors() == []

        asyncio.run(asyncio.wait_for(main(), 60))

    @pytest.mark.parametrize("keepalive", [True, False])
    def test_keepalive_holds_a_context_through_an_llm_pause(server: RunningServer, keepalive: bool) -> None:
        """A 2 s pause of the LLM (a tool call) with a 1 s server inactivity timeout:
        the keep-alives hold the context; without them the server times it out."""

        async def main() -> None:
            tts = RxttsTTSService(
                url=server.url, inactivity_timeout=1.0, keepalive_interval=0.25 if keepalive else 60.0
            )
            async with Harness(tts) as h:
                await h.push(LLMFullResponseStartFrame())
                for token in split_tokens("Let me check that for you, "):
                    await h.push(LLMTextFrame(token))
                await asyncio.sleep(2.0)
                for token in split_tokens("it is on its way. "):
                    await h.push(LLMTextFrame(token))
                await h.push(LLMFullResponseEndFrame())
                await h.down.wait_for(lambda fs: bool(h.started_contexts()))
                ctx = h.started_contexts()[0]
                await h.down.wait_for(lambda fs: h.stopped(ctx))
                spoken = samples(h.audio(ctx))
                full = len("Let me check that for you, it is on its way.") * 240
                if keepalive:
                    assert spoken == full
                else:  # the server timed the context out: its buffered first part was never spoken
                    assert spoken < full

        asyncio.run(asyncio.wait_for(main(), 30))

    def test_cancelling_the_pipeline_mid_turn_closes_the_socket(server: RunningServer) -> None:
        async def main() -> None:
            tts = RxttsTTSService(url=server.url)
            h = Harness(tts)
            await h.__aenter__()
            await h.llm_turn(TURN_1, end=False)
            await h.down.wait_for(lambda fs: bool(h.started_contexts()))
            await h.down.wait_for(lambda fs: bool(h.audio(h.started_contexts()[0])))
            assert server.stats().connections == 1
            await h.worker.cancel()
            assert h._task is not None
            await asyncio.wait_for(h._task, 5)  # prompt: the service handled CancelFrame
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while server.stats().connections:
                assert loop.time() < deadline, "the socket outlived the cancelled pipeline"
                await asyncio.sleep(0.05)
            assert tts.backend.session is None

        asyncio.run(asyncio.wait_for(main(), 30))

    def test_stray_tokens_after_a_barge_in_do_not_hold_slots(server: RunningServer) -> None:
        """Text that arrives after the InterruptionFrame with no LLM turn around it gets
        a context per token from Pipecat; no turn will flush those, so their slots are
        freed once Pipecat has finished them (not at the server's inactivity timeout)."""

        async def main() -> None:
            tts = RxttsTTSService(url=server.url, stop_frame_timeout_s=0.5)
            async with Harness(tts) as h:
                await h.llm_turn(TURN_1, end=False)
                await h.down.wait_for(lambda fs: bool(h.started_contexts()))
                await h.down.wait_for(lambda fs: bool(h.audio(h.started_contexts()[0])))
                await h.push(InterruptionFrame())
                for token in ["Sorry", ",", " go", " on", "."]:
                    await h.push(LLMTextFrame(token))
                await h.down.wait_for(lambda fs: len(h.started_contexts()) >= 2)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 10
                while server.stats().contexts or tts.open_contexts:
                    assert loop.time() < deadline, f"slots held: {tts.open_contexts}"
                    await asyncio.sleep(0.05)
                # (Pipecat itself reports each unflushed stray context as "completed with
                # no audio": its zero-audio check, the same for every provider.)

        asyncio.run(asyncio.wait_for(main(), 30))
