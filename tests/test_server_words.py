"""Issue 13, "words you can trust": word timestamps of the local server on the wire.

With the real piper voice on every endpoint: the engine's alignment (``score`` 1.0)
arrives before the audio it times, monotonic over the request/turn/context, char
offsets index the text the client sent, and the words tile each sentence (its lead is
nobody's). Estimates remain for engines without alignment (tone, ``score`` 0.5, after the chunk's audio).
Normalisation (``normalize``, default true) rewrites what is spoken, never what the
client reads back: ``generation_started.text`` and word offsets are the client's.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from typing import Any

import pytest

VOICE = 1071
SENTENCES = (
    "The old lighthouse keeper climbed the narrow stairs every evening, carrying a lantern "
    "and a small book of poems. ",
    "From the top of the tower he could see the fishing boats returning slowly across the "
    "grey water of the quiet bay. ",
    "When the last boat was safely inside the harbour, he wrote a short note in his journal "
    "and went back down to sleep.",
)
TEXT = "".join(SENTENCES)
PIPER_RATE = 22050
PIPER_FRAME_MS = 256 * 1000 / PIPER_RATE
"""One piper duration frame (hop of 256 samples): the unit of the model's durations."""
ENDPOINTS = ("/ws/tts", "/ws/tts/stream", "/ws/tts/multi")

Frame = dict[str, Any]


def test_sentences_are_long_enough():
    assert all(len(s.strip()) >= 100 for s in SENTENCES)


async def _speak(ws: Any, path: str, text_parts: tuple[str, ...], **config: Any) -> list[Frame]:
    """Send ``text_parts`` to ``path`` with ``config``; every frame up to the end."""
    if path == "/ws/tts":
        await ws.send({"text": "".join(text_parts), "voice_id": VOICE, **config})
        return list(await ws.recv_until(lambda f: f.get("final"), timeout=90))
    if path == "/ws/tts/stream":
        for i, part in enumerate(text_parts):
            last = i == len(text_parts) - 1
            await ws.send({"text": part, "flush": last, "voice_id": VOICE, **config})
        return list(await ws.recv_until(lambda f: f.get("session_closed"), timeout=90))
    await ws.send({"text": " ", "context_id": "c", "voice_settings": {"voice_id": VOICE}, **config})
    for i, part in enumerate(text_parts):
        await ws.send({"text": part, "context_id": "c", "flush": i == len(text_parts) - 1})
    await ws.send({"close_context": True, "context_id": "c"})
    return list(await ws.recv_until(lambda f: f.get("context_closed"), timeout=90))


_CACHE: dict[tuple[str, str], list[Frame]] = {}


@pytest.fixture
def spoken(piper_server, wire):
    """Frames of TEXT (three sentences, three text frames on stream/multi) per endpoint."""

    def run(path: str) -> list[Frame]:
        key = (piper_server.url, path)
        if key not in _CACHE:

            async def main() -> list[Frame]:
                async with wire.connect(piper_server, path) as ws:
                    return await _speak(ws, path, SENTENCES, word_timestamps=True)

            _CACHE[key] = wire.run(main(), timeout=120)
        return _CACHE[key]

    return run


def _words(frames: list[Frame]) -> list[dict[str, Any]]:
    return [w for f in frames if "word_timestamps" in f for w in f["word_timestamps"]]


def _audio_ms(frame: Frame) -> float:
    return float(frame["samples"]) * 1000.0 / float(frame["sr"])


@pytest.mark.parametrize("path", ENDPOINTS)
def test_piper_words_arrive_before_the_audio_they_time(spoken, path):
    frames = spoken(path)
    received_ms = 0.0
    ts_frames = 0
    for f in frames:
        if "audio" in f:
            received_ms += _audio_ms(f)
        elif "word_timestamps" in f:
            ts_frames += 1
            first = f["word_timestamps"][0]
            # No audio of these words is on the client yet (1 ms: rounding to whole ms).
            assert received_ms <= first["start_ms"] + 1, (path, received_ms, first)
    assert ts_frames >= 2  # one per engine sentence at least
    # Every word comes from the engine's durations (exact spans for plain English words).
    words = _words(frames)
    assert {w["score"] for w in words} == {1.0}


@pytest.mark.parametrize("path", ["/ws/tts/stream", "/ws/tts/multi"])
def test_each_chunks_words_come_before_its_first_audio_frame(spoken, path):
    frames = spoken(path)
    chunks = sorted({f["chunk_id"] for f in frames if "generation_started" in f})
    assert len(chunks) >= 2
    for chunk in chunks:
        kinds = [
            ("ts" if "word_timestamps" in f else "audio")
            for f in frames
            if f.get("chunk_id") == chunk and ("audio" in f or "word_timestamps" in f)
        ]
        assert kinds[0] == "ts", (chunk, kinds[:3])


@pytest.mark.parametrize("path", ENDPOINTS)
def test_every_client_word_appears_once_with_exact_offsets(spoken, path):
    words = _words(spoken(path))
    for w in words:
        assert TEXT[w["char_start"] : w["char_end"]] == w["word"]
    spans = [(w["char_start"], w["char_end"]) for w in words]
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))  # in order, no overlap
    expected = [m.group() for m in re.finditer(r"[\w']+", TEXT)]
    assert [w["word"] for w in words] == expected


@pytest.mark.parametrize("path", ENDPOINTS)
def test_times_are_monotonic_and_tile_each_sentence(spoken, path):
    frames = spoken(path)
    sentences = [f["word_timestamps"] for f in frames if "word_timestamps" in f]  # one per engine sentence
    words = _words(frames)
    # The first word is heard after the turn's lead (10 ms) and half its onset.
    assert 0 < words[0]["start_ms"] < 150
    for sentence in sentences:
        for a, b in itertools.pairwise(sentence):
            assert a["start_ms"] < a["end_ms"]
            assert abs(b["start_ms"] - a["end_ms"]) <= 1  # contiguous: pauses belong to the word before
    for a, b in itertools.pairwise(sentences):
        # between sentences only the next one's lead is nobody's
        assert a[-1]["end_ms"] - 1 <= b[0]["start_ms"] <= a[-1]["end_ms"] + 250
    total_ms = sum(_audio_ms(f) for f in frames if "audio" in f)
    assert abs(words[-1]["end_ms"] - total_ms) <= PIPER_FRAME_MS


@pytest.mark.parametrize("path", ["/ws/tts/stream", "/ws/tts/multi"])
def test_each_chunks_words_lie_within_its_audio_and_end_with_it(spoken, path):
    frames = spoken(path)
    done = {f["chunk_id"]: f["audio_seconds"] for f in frames if "chunk_complete" in f}
    begin_ms = 0.0
    for chunk in sorted(done):
        words = [w for f in frames if f.get("chunk_id") == chunk for w in f.get("word_timestamps", [])]
        audio_ms = sum(_audio_ms(f) for f in frames if f.get("chunk_id") == chunk and "audio" in f)
        assert abs(audio_ms - done[chunk] * 1000) < 1
        end_ms = begin_ms + audio_ms
        assert words and all(begin_ms - 1 <= w["start_ms"] < w["end_ms"] <= end_ms + 1 for w in words)
        assert words[0]["start_ms"] - begin_ms < 250  # the chunk's lead and the onset half
        assert abs(words[-1]["end_ms"] - end_ms) <= PIPER_FRAME_MS, (chunk, words[-1], end_ms)
        begin_ms = end_ms


# -- normalisation -----------------------------------------------------------------------

MONEY = "Pay $3.50 on 3/4/2024 please."


def _generation_text(frames: list[Frame]) -> str:
    return "".join(f["text"] for f in frames if "generation_started" in f)


@pytest.mark.parametrize("path", ENDPOINTS)
def test_normalised_words_map_back_to_the_client_text(piper_server, wire, path):
    async def main() -> list[Frame]:
        async with wire.connect(piper_server, path) as ws:
            return await _speak(ws, path, (MONEY,), word_timestamps=True)

    words = _words(wire.run(main(), timeout=60))
    by_word = {w["word"]: w for w in words}
    assert [w["word"] for w in words] == ["Pay", "$3.50", "on", "3/4/2024", "please"]
    for word in ("$3.50", "3/4/2024"):
        w = by_word[word]
        assert (w["char_start"], w["char_end"]) == (MONEY.index(word), MONEY.index(word) + len(word))
        assert w["score"] == 1.0
    # "three dollars and fifty cents" is spoken: far longer than "on" or "Pay".
    money_ms = by_word["$3.50"]["end_ms"] - by_word["$3.50"]["start_ms"]
    assert money_ms > 3 * (by_word["on"]["end_ms"] - by_word["on"]["start_ms"])


def test_generation_started_keeps_the_client_text_and_normalize_false_speaks_raw(server_factory, wire):
    # The tone engine's audio length is proportional to the characters it is given, so the
    # audio tells what was spoken: "three dollars and fifty cents ..." or "$3.50 ...".
    server = server_factory()

    async def main(**config: Any) -> list[Frame]:
        async with wire.connect(server, "/ws/tts/stream") as ws:
            return await _speak(ws, "/ws/tts/stream", (MONEY,), word_timestamps=True, **config)

    normalised = wire.run(main())
    raw = wire.run(main(normalize=False))
    for frames in (normalised, raw):
        assert _generation_text(frames) == MONEY
    seconds = [sum(_audio_ms(f) for f in frames if "audio" in f) / 1000 for frames in (normalised, raw)]
    spoken_chars = len("Pay three dollars and fifty cents on March fourth, twenty twenty-four please.")
    assert seconds[0] / seconds[1] == pytest.approx(spoken_chars / len(MONEY), rel=0.1)
    # Estimates (score 0.5) over the spoken text, mapped back to the client's characters.
    for frames in (normalised, raw):
        words = _words(frames)
        assert {w["score"] for w in words} == {0.5}
        money = next(w for w in words if w["word"].startswith("$3.50"))
        assert money["char_start"] == MONEY.index("$3.50")
        assert MONEY[money["char_start"] : money["char_end"]] == money["word"]
    share = [_share(_words(frames), "$3.50") for frames in (normalised, raw)]
    # Words weigh len + 1: "three dollars and fifty cents" 30 of 78, "$3.50" 6 of 30.
    assert share == [pytest.approx(30 / 78, abs=0.01), pytest.approx(6 / 30, abs=0.01)]


def _share(words: list[dict[str, Any]], prefix: str) -> float:
    total = words[-1]["end_ms"] - words[0]["start_ms"]
    w = next(w for w in words if w["word"].startswith(prefix))
    return float(w["end_ms"] - w["start_ms"]) / total


def test_normalize_uses_the_language(server_factory, wire):
    # Only English is normalised: German text is spoken as written.
    server = server_factory()

    async def main(**config: Any) -> float:
        async with wire.connect(server, "/ws/tts/stream") as ws:
            frames = await _speak(ws, "/ws/tts/stream", (MONEY,), **config)
        return sum(_audio_ms(f) for f in frames if "audio" in f)

    assert wire.run(main(language="de")) == pytest.approx(wire.run(main(normalize=False)), abs=1)
    assert wire.run(main(language="en")) > 2 * wire.run(main(language="de"))


def test_tone_estimates_stay_after_the_audio(tone_server, wire):
    async def main() -> list[Frame]:
        async with wire.connect(tone_server, "/ws/tts/stream") as ws:
            return await _speak(ws, "/ws/tts/stream", ("Hello big world.",), word_timestamps=True)

    kinds = wire.kinds(wire.run(main()))
    ts = kinds.index("word_timestamps")
    assert "audio" in kinds[:ts] and kinds[ts + 1] == "chunk_complete"


def test_piper_first_audio_is_not_delayed_by_words_or_normalisation(piper_server, wire):
    """TTFA with ``word_timestamps`` + normalisation vs neither (best of 5, interleaved)."""
    text = "Hello there, how are you doing on this fine morning?"

    async def ttfa(**config: Any) -> float:
        async with wire.connect(piper_server, "/ws/tts/stream") as ws:
            t0 = time.perf_counter()
            await ws.send({"text": text, "flush": True, "voice_id": VOICE, **config})
            await ws.recv_until(lambda f: "audio" in f, timeout=20)
            took = time.perf_counter() - t0
            await ws.recv_until(lambda f: f.get("session_closed"), timeout=30)
            return took

    plain: list[float] = []
    full: list[float] = []
    for _ in range(5):
        plain.append(wire.run(ttfa(normalize=False)))
        full.append(wire.run(ttfa(word_timestamps=True)))
    print(f"\nTTFA best of 5: plain {min(plain) * 1000:.1f} ms, words+normalize {min(full) * 1000:.1f} ms")
    assert min(full) - min(plain) < 0.025  # alignment ~2 ms + normalisation ~0.1 ms, plus noise


# -- the official kugelaudio 2.7.0 SDK with timestamps first --------------------------------


def _sdk(server: Any) -> Any:
    from kugelaudio import KugelAudio

    return KugelAudio(api_key="test-key", api_url=server.http_url, telemetry=False)


def _kind(item: Any) -> str:
    return "words" if isinstance(item, list) else "audio" if hasattr(item, "audio") else "other"


def _check_sdk_words(stamps: list[Any], text: str = TEXT) -> None:
    assert [s.word for s in stamps] == [m.group() for m in re.finditer(r"[\w']+", text)]
    assert all(text[s.char_start : s.char_end] == s.word for s in stamps)
    assert all(a.end_ms <= b.start_ms + 1 for a, b in itertools.pairwise(stamps))
    assert {s.score for s in stamps} == {1.0}


def test_sdk_tts_stream_and_generate_take_timestamps_before_audio(piper_server, monkeypatch):
    """PY ``tts.stream``/``generate`` (``/ws/tts``): stamps lists first, then their audio."""
    monkeypatch.setenv("KUGELAUDIO_TELEMETRY", "0")
    client = _sdk(piper_server)
    try:
        items = list(client.tts.stream(TEXT, voice_id=VOICE, word_timestamps=True))
        kinds = [
            "words" if isinstance(i, list) else "audio" if hasattr(i, "audio") else "other" for i in items
        ]
        assert kinds[0] == "words" and kinds[-1] == "other"  # ... final
        _check_sdk_words([s for i in items if isinstance(i, list) for s in i])
        response = client.tts.generate(MONEY, voice_id=VOICE, word_timestamps=True)
        assert [w.word for w in response.word_timestamps] == ["Pay", "$3.50", "on", "3/4/2024", "please"]
        assert len(response.audio) // 2 / 24000 >= response.word_timestamps[-1].end_ms / 1000 - 0.02
    finally:
        client.close()


def test_sdk_streaming_and_multi_sessions_take_timestamps_before_audio(piper_server, monkeypatch):
    """PY ``streaming_session`` and ``multi_context_session`` with ``word_timestamps=True``."""
    monkeypatch.setenv("KUGELAUDIO_TELEMETRY", "0")
    client = _sdk(piper_server)
    log: list[tuple[str, Any]] = []

    async def main() -> tuple[list[Any], list[Any]]:
        async with client.tts.streaming_session(
            voice_id=VOICE, word_timestamps=True, on_word_timestamps=lambda s: log.append(("s", s))
        ) as s:
            stream_audio = []
            for part in SENTENCES:
                async for chunk in s.send(part, flush=False):
                    stream_audio.append(chunk)
                    log.append(("audio", chunk))
            async for chunk in s.flush():
                stream_audio.append(chunk)
                log.append(("audio", chunk))
            await s.close()
        async with client.tts.multi_context_session(
            default_voice_id=VOICE,
            word_timestamps=True,
            on_word_timestamps=lambda cid, st: log.append(("m", st)),
        ) as m:
            await m.create_context("c", voice_id=VOICE)
            multi_audio = [c async for c in m.send("c", TEXT, flush=True)]
            await m.close()
        return stream_audio, multi_audio

    try:
        stream_audio, multi_audio = wire_run(main())
    finally:
        client.close()
    for tag, audio in (("s", stream_audio), ("m", multi_audio)):
        stamps = [s for t, st in log if t == tag for s in st]
        _check_sdk_words(stamps)
        seconds = sum(len(c.audio) // 2 / c.sample_rate for c in audio)
        assert abs(stamps[-1].end_ms / 1000 - seconds) <= PIPER_FRAME_MS / 1000
    first = next(i for i, (t, _) in enumerate(log) if t == "s")
    assert first < next(i for i, (t, _) in enumerate(log) if t == "audio")  # callback before audio


def wire_run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))
