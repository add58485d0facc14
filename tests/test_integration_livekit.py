"""The LiveKit plug-in through LiveKit Agents' own TTS API against the real local tone server.

LiveKit Agents is not installed beside rxtts's dev pins, so in the main suite this file
only runs itself in ``.venv-livekit`` (see ``tests/frameworks.py``). There, the tests
use :class:`rxtts.integrations.livekit.TTS` the way ``AgentSession`` does: ``stream()``,
``push_text`` per LLM token (split mid-word), ``end_input()``, iterating
``SynthesizedAudio``, and ``aclose()`` on barge-in; ``synthesize()`` for one-shot text.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
from collections.abc import Callable

import pytest


def _has_livekit_agents() -> bool:
    try:
        return importlib.util.find_spec("livekit.agents") is not None
    except ModuleNotFoundError:  # no "livekit" package at all
        return False


if not _has_livekit_agents():

    def test_livekit_suite_in_its_venv() -> None:
        """Run this file in the LiveKit venv (fails under CI=true when it is missing)."""
        import frameworks

        frameworks.require_suite("livekit")

else:
    from livekit.agents.tts import SynthesizedAudio
    from livekit.agents.types import USERDATA_TIMED_TRANSCRIPT
    from reactivex import operators as ops

    import rxtts
    from rxtts.events import AudioChunk
    from rxtts.integrations.livekit import TTS
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

    async def reference_samples(server: RunningServer, text: str) -> int:
        """Samples the same server sends for ``text`` to a plain rxtts multi context."""
        async with rxtts.connect(server.url) as client:
            multi = client.multi_context_session(default_voice_id=1071, sample_rate=RATE)
            speech = multi.speak("reference", llm_tokens(split_tokens(text), math.inf))
            events = await speech.pipe(ops.to_list())
            await multi.close()
        return sum(e.num_samples for e in events if isinstance(e, AudioChunk))

    def server_sessions(server: RunningServer) -> set[int]:
        return {id(s) for s in server.app.sessions}

    def samples(audio: list[SynthesizedAudio]) -> int:
        return sum(a.frame.samples_per_channel for a in audio)

    def words(audio: list[SynthesizedAudio]) -> list[object]:
        return [w for a in audio for w in a.frame.userdata.get(USERDATA_TIMED_TRANSCRIPT, [])]

    async def speak_turn(tts: TTS, text: str) -> list[SynthesizedAudio]:
        stream = tts.stream()
        for token in split_tokens(text):
            stream.push_text(token)
        stream.end_input()
        out = [ev async for ev in stream]
        await stream.aclose()
        return out

    async def wait_acked(tts: TTS, timeout: float) -> float:
        """Seconds until every barge-in of ``tts`` was acknowledged by the server."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while tts.backend.pending_closes:
            assert loop.time() - start < timeout, f"no context_closed for {tts.backend.pending_closes}"
            await asyncio.sleep(0.01)
        return loop.time() - start

    @pytest.fixture
    def server(server_factory: Callable[..., RunningServer]) -> RunningServer:
        return server_factory("tone")

    def test_stream_turn_with_timed_transcript(server: RunningServer) -> None:
        async def main() -> None:
            expected = await reference_samples(server, TURN_1)
            tts = TTS(url=server.url, aligned_transcript=True)
            try:
                audio = await speak_turn(tts, TURN_1)
                assert audio and all(a.frame.sample_rate == RATE for a in audio)
                assert samples(audio) == expected  # all of the turn, nothing else
                assert audio[-1].is_final and len({a.segment_id for a in audio}) == 1
                timed = words(audio)
                assert "".join(str(w) for w in timed).split() == TURN_1.split()
                starts = [w.start_time for w in timed]  # type: ignore[attr-defined]
                assert starts == sorted(starts) and starts[0] == 0.0
                assert timed[-1].end_time <= expected / RATE + 1e-6  # type: ignore[attr-defined]
                await asyncio.sleep(0.2)
                assert server.stats().contexts == 0  # end_input closed the context
            finally:
                await tts.aclose()

        asyncio.run(asyncio.wait_for(main(), 60))

    def test_aclose_is_an_acked_barge_in_and_the_socket_stays(server: RunningServer) -> None:
        async def main() -> None:
            expected_2 = await reference_samples(server, TURN_2)
            tts = TTS(url=server.url)
            try:
                stream = tts.stream()
                for token in split_tokens(TURN_1):
                    stream.push_text(token)
                stream.end_input()
                got: list[SynthesizedAudio] = []
                async for ev in stream:  # late in the turn: all text sent, 1.5 s heard
                    got.append(ev)
                    if samples(got) >= int(1.5 * RATE):
                        break
                sessions = server_sessions(server)
                assert len(sessions) == 1
                await stream.aclose()
                assert tts.backend.closes_sent == 1
                await wait_acked(tts, 5.0)  # the server's context_closed arrived
                assert tts.backend.closes_acked == 1
                assert server.stats().contexts == 0
                assert samples(got) < len(TURN_1) * 240  # it really was cut short

                audio_2 = await speak_turn(tts, TURN_2)
                assert samples(audio_2) == expected_2  # no stale audio of turn 1 in turn 2
                assert server_sessions(server) == sessions  # the same socket
                assert server.stats().connections == 1
            finally:
                await tts.aclose()

        asyncio.run(asyncio.wait_for(main(), 60))

    def test_25_rapid_barge_ins_never_hit_the_context_cap(server: RunningServer) -> None:
        async def main() -> None:
            expected = await reference_samples(server, TURN_2)
            tts = TTS(url=server.url)
            try:
                for _ in range(25):
                    stream = tts.stream()
                    for token in split_tokens(TURN_1):
                        stream.push_text(token)  # mid-reply: no end_input, nothing closes it but us
                    first = await asyncio.wait_for(stream.__anext__(), 10)
                    assert first.frame.samples_per_channel > 0
                    await stream.aclose()
                assert tts.backend.closes_sent == 25
                assert tts.backend.closes_acked == 25
                assert server.stats().contexts == 0
                assert server.stats().connections == 1
                # one-shot synthesis on the same socket still gets exactly its audio
                audio = [ev async for ev in tts.synthesize(TURN_2)]
                assert samples(audio) == expected
                assert server.stats().connections == 1
            finally:
                await tts.aclose()

        asyncio.run(asyncio.wait_for(main(), 120))

    def test_aligned_transcript_capability(server: RunningServer) -> None:
        async def main() -> None:
            assert TTS(url=server.url).capabilities.aligned_transcript is False  # engine unknown
            assert TTS(engine="tone").capabilities.aligned_transcript is False  # estimates
            assert TTS(engine="piper").capabilities.aligned_transcript is True  # piper's durations
            assert TTS(api_key="eu-some-key", voice_id=1).capabilities.aligned_transcript is True
            assert TTS(url=server.url, aligned_transcript=True).capabilities.aligned_transcript is True
            tts = TTS(url=server.url)
            try:
                audio = await speak_turn(tts, TURN_2)
                assert samples(audio) > 0
                assert words(audio) == []  # no timed transcript claimed from estimates
            finally:
                await tts.aclose()

        asyncio.run(asyncio.wait_for(main(), 30))

    def test_api_key_server_and_embedded_server(
        server_factory: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        keyed = server_factory("tone", api_key="secret-key")
        monkeypatch.delenv("RXTTS_URL", raising=False)
        monkeypatch.delenv("KUGELAUDIO_API_KEY", raising=False)

        async def main() -> None:
            tts = TTS(url=keyed.http_url, api_key="secret-key")
            try:
                assert samples([ev async for ev in tts.synthesize("Hello there, a keyed server.")]) > 0
            finally:
                await tts.aclose()
            embedded = TTS(engine="tone")
            assert samples(await speak_turn(embedded, "Hello from the embedded server.")) > 0
            assert embedded.backend.tts is not None and embedded.backend.tts.is_local
            await embedded.aclose()
            assert embedded.backend.tts is None

        asyncio.run(asyncio.wait_for(main(), 60))

    def test_barge_in_after_end_input_is_acked_within_a_second(server: RunningServer) -> None:
        """The usual barge-in: the LLM is done, its audio still plays. The context is
        still live on the server (flushed, released only after its final), so the
        immediate close is a real cancel acknowledged at once (PROTOCOL M-7: ~1 s)."""

        async def main() -> float:
            tts = TTS(url=server.url)
            try:
                stream = tts.stream()
                for token in split_tokens(TURN_1):
                    stream.push_text(token)
                stream.end_input()  # the LLM is done; ~4 s of audio still to play
                await asyncio.wait_for(stream.__anext__(), 10)
                await asyncio.sleep(0.3)
                await stream.aclose()
                return await wait_acked(tts, 10.0)
            finally:
                await tts.aclose()

        latency = asyncio.run(asyncio.wait_for(main(), 30))
        print(f"barge-in ack after {latency * 1000:.0f} ms")
        assert latency < 1.0

    def test_next_stream_reconnects_after_the_socket_is_lost(server: RunningServer) -> None:
        async def main() -> None:
            expected = await reference_samples(server, TURN_2)
            tts = TTS(url=server.url)
            try:
                assert samples(await speak_turn(tts, TURN_2)) == expected
                first = server_sessions(server)
                assert server.close_connections(code=1011, reason="test: server error") == 1
                await asyncio.sleep(0.3)
                assert samples(await speak_turn(tts, TURN_2)) == expected
                assert server_sessions(server) and not server_sessions(server) & first  # new socket
                assert server.stats().connections == 1
            finally:
                await tts.aclose()

        asyncio.run(asyncio.wait_for(main(), 60))

    def test_flush_then_end_input_is_one_segment(server: RunningServer) -> None:
        async def main() -> None:
            expected = await reference_samples(server, TURN_2)
            tts = TTS(url=server.url)
            try:
                stream = tts.stream()
                for token in split_tokens(TURN_2):
                    stream.push_text(token)
                stream.flush()  # the agent's end of segment ...
                stream.end_input()  # ... then the end of the reply: no second flush
                audio = [ev async for ev in stream]
                await stream.aclose()
                assert samples(audio) == expected
                assert len({a.segment_id for a in audio}) == 1 and audio[-1].is_final
                assert tts.backend.closes_sent == 0  # ended normally: no barge-in
                await asyncio.sleep(0.2)
                assert server.stats().contexts == 0
            finally:
                await tts.aclose()

        asyncio.run(asyncio.wait_for(main(), 30))
