"""Conformance: the official ``kugelaudio==2.7.0`` SDK, unchanged, as our server's client.

Telemetry is off (``telemetry=False``; it would be off anyway for a non-kugelaudio.com
``api_url``); every socket is on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from kugelaudio import KugelAudio
from kugelaudio.exceptions import AuthenticationError, RateLimitError, ValidationError

from rxtts.server.embedded import RunningServer
from rxtts.server.engines.tone import ToneEngine

VOICE = 1071


def client_for(server: RunningServer, key: str = "test-key") -> KugelAudio:
    return KugelAudio(api_key=key, api_url=server.http_url, telemetry=False)


def pcm_seconds(chunks) -> float:
    return sum(len(c.audio) // 2 / c.sample_rate for c in chunks)


def test_sdk_tts_generate_and_stream(tone_server):
    client = client_for(tone_server)
    try:
        response = client.tts.generate("Hello world.", voice_id=VOICE, word_timestamps=True)
        assert response.sample_rate == 24000
        assert len(response.audio) // 2 == pytest.approx(0.12 * 24000, abs=2)
        assert [w.word for w in response.word_timestamps] == ["Hello", "world."]
        assert response.usage is not None and response.usage.characters == 12
        assert response.usage.cost_cents == 0.0  # default price 0: the local server is free
        items = list(client.tts.stream("Streamed text.", voice_id=1072, output_format="ulaw_8000"))
        chunks = [i for i in items if hasattr(i, "audio")]
        finals = [i for i in items if isinstance(i, dict) and i.get("final")]
        assert chunks and all(c.sample_rate == 8000 for c in chunks)
        assert sum(len(c.audio) for c in chunks) == pytest.approx(0.14 * 8000, abs=2)
        assert len(finals) == 1
    finally:
        client.close()


def test_sdk_models_and_voices(tone_server):
    client = client_for(tone_server)
    try:
        ids = [m.id for m in client.models.list()]
        assert "kugel-3.5" in ids and "rxtts-tone" in ids
        voices = client.voices.list()
        assert [v.id for v in voices.voices] == [1071, 1072, 1073]
        assert client.voices.get(1072).id == 1072
    finally:
        client.close()


def test_sdk_bad_key_raises_authentication_error(server_factory):
    server = server_factory(api_key="right")
    good, bad = client_for(server, "right"), client_for(server, "wrong")
    try:
        assert len(good.tts.generate("Ok.", voice_id=VOICE).audio) > 0
        with pytest.raises(AuthenticationError):
            bad.tts.generate("Nope.", voice_id=VOICE)

        async def session() -> None:
            async with bad.tts.streaming_session(voice_id=VOICE) as s:
                async for _ in s.send("Nope.", flush=True):
                    pass

        with pytest.raises(AuthenticationError):
            asyncio.run(session())
        with pytest.raises(AuthenticationError):
            bad.voices.list()
    finally:
        good.close()
        bad.close()


def test_sdk_streaming_session_turns_cancel_update_config_close(server_factory):
    # A slow tone (50 ms per 100 ms block) so cancel_current lands mid-speech.
    server = server_factory(ToneEngine(delay_per_block_s=0.05), idle_flush_seconds=5.0)
    client = client_for(server)

    async def main():
        async with client.tts.streaming_session(voice_id=VOICE) as s:
            first = []
            for token in ["Hello ", "there, ", "how ", "are ", "you? "]:
                first += [c async for c in s.send(token)]
            first += [c async for c in s.flush()]
            usage = s.last_usage
            stats = await s.end_session()  # flushed turn: no traffic, cached stats

            # Barge-in mid-sentence, then the next turn works on the same socket.
            long = "This answer is long and will be cut off by the user barging in now. " * 3
            got = [c async for c in s.send(long, flush=False)]
            await asyncio.sleep(0.3)
            t0 = time.perf_counter()
            await s.cancel_current()
            cancel_s = time.perf_counter() - t0

            s.update_config(voice_id=1072, output_format="pcm_16000")
            second = [c async for c in s.send("Sure.", flush=True)]
            second += [c async for c in s.flush()]
            closed = await s.close()
            return first, usage, stats, got, cancel_s, second, closed

    first, usage, stats, _got, cancel_s, second, closed = asyncio.run(main())
    assert pcm_seconds(first) == pytest.approx(len("Hello there, how are you?") * 0.01, abs=0.005)
    assert usage is not None and usage.characters == len("Hello there, how are you? ")
    assert stats.get("total_audio_seconds") == pytest.approx(pcm_seconds(first), abs=1e-3)
    assert cancel_s < 1.0
    assert pcm_seconds(second) == pytest.approx(0.05, abs=0.005)
    assert {c.sample_rate for c in second} == {16000}
    assert isinstance(closed, dict)


def test_sdk_streaming_session_update_settings_and_validation(tone_server):
    client = client_for(tone_server)

    async def main():
        async with client.tts.streaming_session(voice_id=VOICE) as s:
            ack = await s.update_settings(speed=1.1, temperature=0.3)
            with pytest.raises(ValidationError):
                await s.update_settings(speed=3.0)
            chunks = [c async for c in s.send("Twelve chars", flush=True)]
            return ack, chunks

    ack, chunks = asyncio.run(main())
    assert ack["speed"] == 1.1 and ack["temperature"] == 0.3
    assert pcm_seconds(chunks) == pytest.approx(0.12 / 1.1, abs=0.005)


def test_sdk_multi_context_session(tone_server):
    client = client_for(tone_server)

    async def main():
        async with client.tts.multi_context_session(default_voice_id=VOICE) as m:
            await m.create_context("narrator", voice_id=1071)
            await m.create_context("character", voice_id=1072)
            narr = [c async for c in m.send("narrator", "The story begins. It was dark.", flush=True)]
            char = [c async for c in m.send("character", "Hello!", flush=True)]
            tail = [c async for c in m.flush("narrator")]
            closing = [c async for c in m.close_context("narrator")]
            dropped = [c async for c in m.close_context("character", immediate=True)]
            usage = m.usage_for("narrator")
            closed = await m.close()
            return narr, char, tail, closing + dropped, usage, closed

    narr, char, tail, closing, usage, closed = asyncio.run(main())
    assert pcm_seconds(narr) == pytest.approx(0.30, abs=0.005)
    assert pcm_seconds(char) == pytest.approx(0.06, abs=0.005)
    assert tail == [] and closing == []
    hz = np.fft.rfftfreq(1440, 1 / 24000)[
        np.argmax(np.abs(np.fft.rfft(np.frombuffer(b"".join(c.audio for c in char), "<i2")[:1440])))
    ]
    assert abs(hz - 252) < 20  # the character's own voice
    assert usage is not None and usage.audio_seconds == pytest.approx(0.30, abs=0.005)
    assert isinstance(closed, dict)


def test_sdk_multi_context_cap_raises_rate_limit_error(tone_server):
    client = client_for(tone_server)

    async def main():
        async with client.tts.multi_context_session(default_voice_id=VOICE) as m:
            for i in range(20):
                await m.create_context(f"c{i}")
            with pytest.raises(RateLimitError):
                await m.create_context("c20")
            # The socket survived: a context still speaks.
            return [c async for c in m.send("c0", "Still here.", flush=True)]

    assert pcm_seconds(asyncio.run(main())) == pytest.approx(0.11, abs=0.005)


@pytest.mark.slow
def test_sdk_piper_stream_and_session_speak_real_speech(piper_server):
    client = client_for(piper_server)
    try:
        response = client.tts.generate("Hello from the local neural voice.", voice_id=VOICE)
        assert response.sample_rate == 24000
        pcm = np.frombuffer(response.audio, "<i2").astype(float) / 32768
        assert 1.0 < len(pcm) / 24000 < 4.0
        assert np.sqrt(np.mean(pcm**2)) > 0.02  # real signal, not silence

        async def main():
            async with client.tts.multi_context_session(default_voice_id=VOICE) as m:
                await m.create_context("a", voice_id=1071)
                return [c async for c in m.send("a", "Piper speaks in a multi context.", flush=True)]

        chunks = asyncio.run(main())
        assert 1.0 < pcm_seconds(chunks) < 4.0
    finally:
        client.close()


S8A_TEXT = (
    "Hello there. How are you today? I am fine, thank you very much for asking me that. "
    "The weather is lovely here, and the sea is calm."
)


def mid_word_tokens(text: str, size: int = 4) -> list[str]:
    """``text`` in ``size``-character tokens, so most tokens end inside a word."""
    return [text[i : i + size] for i in range(0, len(text), size)]


def test_sdk_token_stream_with_flush_timeout_is_one_turn_never_cut_mid_word(
    piper_engine, server_factory, monkeypatch
):
    """PROTOCOL S-8a regression: kugelaudio 2.7.0 used as documented (``send(token,
    flush=False)`` per token, then ``flush()``) with ``flush_timeout_ms`` 500 against
    paced audio. The SDK reads audio inside ``send()`` and sends no text meanwhile (up
    to its 2 s linger after ``chunk_complete``); that silence is not idleness while
    audio is still paced out, and an idle release never cuts inside a word."""
    from rxtts.protocol.server import StreamServer

    chunks: list[str] = []
    real = StreamServer.chunk_started

    def spy(self: StreamServer, key: str, text: str):  # records every chunk the server speaks
        chunks.append(text)
        return real(self, key, text)

    monkeypatch.setattr(StreamServer, "chunk_started", spy)
    server = server_factory(piper_engine, max_lead_seconds=1.0)
    client = client_for(server)
    tokens = mid_word_tokens(S8A_TEXT)
    received: list[float] = []

    async def main() -> dict:
        async with client.tts.streaming_session(voice_id=client.voices.list().voices[0].id) as s:
            for token in tokens:
                # ~50 ms per token (the SDK's first-read poll): ~20-35 tokens/s.
                async for c in s.send(token, flush=False):
                    received.append(len(c.audio) // 2 / c.sample_rate)
                await asyncio.sleep(0.01)
            async for c in s.flush():
                received.append(len(c.audio) // 2 / c.sample_rate)
            final = s.last_final
            assert final is not None
            return final

    try:
        started = time.monotonic()
        final = asyncio.run(main())
        elapsed = time.monotonic() - started
    finally:
        client.close()
    words = set(S8A_TEXT.split())
    assert len(chunks) >= 2, chunks
    for chunk in chunks:  # every chunk is whole words of the text, in order
        assert chunk.split() and set(chunk.split()) <= words, chunks
    assert " ".join(chunks).split() == S8A_TEXT.split()
    # One turn: the turn's final accounts for every second of audio the client got.
    frame = 0.08
    assert final["total_text_chunks"] == len(chunks)
    assert abs(final["total_audio_seconds"] - sum(received)) <= frame + 1e-3
    assert elapsed < 60
