"""``/ws/tts`` obligations T-1..T-3 (PROTOCOL 11) against the real server."""

from __future__ import annotations

import itertools

import numpy as np

from rxtts.audio.g711 import decode_samples

TTS = "/ws/tts"
REQUEST = {
    "model_id": "kugel-3.5",
    "cfg_scale": 2.0,
    "max_new_tokens": 2048,
    "sample_rate": 24000,
    "normalize": True,
    "speed": 1.0,
}


def test_T1_request_answered_by_audio_word_timestamps_then_one_final(tone_server, wire):
    async def main():
        async with wire.connect(tone_server, TTS, model_id="kugel-3.5") as ws:
            await ws.send(
                {
                    "text": "Hello world.",
                    **REQUEST,
                    "voice_id": 1071,
                    "word_timestamps": True,
                    "language": "en",
                }
            )
            return await ws.recv_until(lambda f: f.get("final") or f.get("error"))

    frames = wire.run(main())
    kinds = wire.kinds(frames)
    assert kinds[-2:] == ["word_timestamps", "final"]
    assert set(kinds[:-2]) == {"audio"}
    final = frames[-1]
    audio = frames[:-2]
    samples = sum(f["samples"] for f in audio)
    assert final["chunks"] == len(audio)
    assert final["total_samples"] == samples  # 24 kHz output == native 24 kHz count
    assert abs(final["dur_ms"] - samples / 24) < 0.5
    assert final["gen_ms"] >= 0 and final["rtf"] >= 0
    assert final["usage"]["characters"] == 12 and final["usage"]["model_id"] == "kugel-3.5"
    assert abs(final["usage"]["audio_seconds"] - 0.12) < 0.005
    assert [w["word"] for w in frames[-2]["word_timestamps"]] == ["Hello", "world."]
    assert "generation_started" not in kinds and "chunk_complete" not in kinds


def test_T2_socket_stays_open_and_requests_answered_in_order(tone_server, wire):
    texts = ["A fairly long first request that takes longer.", "Short.", "Mid length text."]

    async def main():
        async with wire.connect(tone_server, TTS) as ws:
            for i, text in enumerate(texts):  # all in flight at once
                await ws.send({"text": text, **REQUEST, "voice_id": 1071 + i})
            replies = []
            for _ in texts:
                replies.append(await ws.recv_until(lambda f: f.get("final")))
            return replies

    replies = wire.run(main())
    for text, reply in zip(texts, replies, strict=True):
        audio = [f for f in reply if "audio" in f]
        assert [f["idx"] for f in audio] == list(range(len(audio)))
        seconds = sum(f["samples"] for f in audio) / 24000
        assert abs(seconds - len(text) * 0.01) < 0.005


def test_T3_voiceless_or_invalid_request_gets_error_not_final(tone_server, wire):
    async def main():
        async with wire.connect(tone_server, TTS) as ws:
            out = []
            for frame in (
                {"text": "No voice."},
                {"text": "  ", "voice_id": 1071},
                {"text": "Bad voice.", "voice_id": 99999},
                {"text": "Fast.", "voice_id": 1071, "speed": 5.0},
            ):
                await ws.send(frame)
                out.append(await ws.recv())
            await ws.send({"text": "Still open.", "voice_id": 1071})
            out.append((await ws.recv_until(lambda f: f.get("final")))[-1])
            return out

    missing, empty, unknown, bad_speed, ok = wire.run(main())
    assert missing == {"error": "voice_id is required", "error_code": "MISSING_VOICE_ID", "code": 400}
    for err in (empty, unknown, bad_speed):
        assert err["error_code"] == "VALIDATION_ERROR" and err["code"] == 400 and "final" not in err
    assert ok["final"] is True


def test_output_format_wins_over_sample_rate_and_g711_decodes(tone_server, wire):
    async def main(fmt):
        async with wire.connect(tone_server, TTS) as ws:
            await ws.send({"text": "Encode this tone.", **REQUEST, "voice_id": 1071, "output_format": fmt})
            return [f for f in await ws.recv_until(lambda f: f.get("final")) if "audio" in f]

    for fmt, enc, sr in (
        ("ulaw_8000", "mulaw", 8000),
        ("alaw_8000", "alaw", 8000),
        ("pcm_16000", "pcm_s16le", 16000),
        ("pcm_22050", "pcm_s16le", 22050),
    ):
        frames = wire.run(main(fmt))
        assert {(f["enc"], f["sr"]) for f in frames} == {(enc, sr)}
        raw = b"".join(wire.audio_bytes(f) for f in frames)
        pcm = decode_samples(raw, enc).astype(float)
        assert len(pcm) == sum(f["samples"] for f in frames)
        assert abs(len(pcm) / sr - 0.17) < 0.005
        spectrum = np.abs(np.fft.rfft(pcm))
        peak = np.fft.rfftfreq(len(pcm), 1 / sr)[int(np.argmax(spectrum))]
        assert abs(peak - 200) < 10  # the 200 Hz voice survived resampling and G.711


WORDS_TEXT = (
    "The first sentence of this request is long enough to fill the first chunk on its own. "
    "Then a second and rather longer sentence follows it, with a few clauses and plenty of words, "
    "so that the schedule needs a second chunk to hold all of it. "
    "And the third one closes it."
)


def check_words(frames: list[dict], text: str) -> list[dict]:
    """Every word indexes ``text``, in order; times never go back (issue 17)."""
    words = [w for f in frames if "word_timestamps" in f for w in f["word_timestamps"]]
    assert [w["word"] for w in words] == text.split()
    for w in words:
        assert text[w["char_start"] : w["char_end"]] == w["word"]
    for a, b in itertools.pairwise(words):
        assert a["char_end"] <= b["char_start"] and a["end_ms"] <= b["start_ms"] + 1
    return words


def test_word_timestamps_of_a_multi_chunk_request_index_the_request_and_never_go_back(tone_server, wire):
    async def main():
        async with wire.connect(tone_server, TTS) as ws:
            await ws.send({"text": WORDS_TEXT, **REQUEST, "voice_id": 1071, "word_timestamps": True})
            return await ws.recv_until(lambda f: f.get("final") or f.get("error"))

    frames = wire.run(main())
    assert sum("word_timestamps" in f for f in frames) >= 2  # more than one chunk
    words = check_words(frames, WORDS_TEXT)
    then = next(w for w in words if w["word"] == "Then")
    assert WORDS_TEXT[then["char_start"] :].startswith("Then a second")
    total_ms = sum(f["samples"] / f["sr"] for f in frames if "audio" in f) * 1000
    # "Then" starts after the first chunk's ~0.86 s, not at 0; the last word ends the audio.
    assert then["start_ms"] > 700 and abs(words[-1]["end_ms"] - total_ms) <= 1


def test_word_timestamps_on_stream_are_relative_to_the_turn_text(tone_server, wire):
    tokens = [WORDS_TEXT[i : i + 7] for i in range(0, len(WORDS_TEXT), 7)]

    async def main():
        async with wire.connect(tone_server, "/ws/tts/stream") as ws:
            for i, token in enumerate(tokens):
                extra = {"voice_id": 1071, "word_timestamps": True} if i == 0 else {}
                await ws.send({"text": token, "flush": False, **extra})
            await ws.send({"flush": True})
            return await ws.recv_until(lambda f: f.get("session_closed"))

    frames = wire.run(main())
    assert sum("word_timestamps" in f for f in frames) >= 2
    check_words(frames, WORDS_TEXT)  # the base: the text the client sent in this turn
