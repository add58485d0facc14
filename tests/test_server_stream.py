"""``/ws/tts/stream`` obligations S-1..S-10 (PROTOCOL 11) against the real server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from rxtts.server.engines.tone import ToneEngine

VOICE = 1071
STREAM = "/ws/tts/stream"


def is_closed(f: dict[str, Any]) -> bool:
    return bool(f.get("session_closed"))


def test_S1_config_from_first_frame_is_sticky_across_turns(tone_server, wire):
    async def main():
        async with wire.connect(tone_server, STREAM) as ws:
            await ws.send(
                {"text": "First turn.", "flush": True, "voice_id": VOICE, "output_format": "ulaw_8000"}
            )
            first = await ws.recv_until(is_closed)
            # Second turn carries no config at all (PY after a flushed turn).
            await ws.send({"text": "Next.", "flush": True})
            second = await ws.recv_until(is_closed)
            # PY's bare flush may be the frame that carries the config.
            async with wire.connect(tone_server, STREAM) as ws2:
                await ws2.send({"text": "Buffered ", "flush": False})
                err = await ws2.recv()  # no voice yet: refused, nothing opened
                await ws2.send({"flush": True, "voice_id": VOICE})
                empty = await ws2.recv()
                await ws2.send({"text": "Hello.", "flush": True})
                third = [empty, *await ws2.recv_until(is_closed)]
        return first, second, err, third

    first, second, err, third = wire.run(main())
    for turn in (first, second):
        audio = [f for f in turn if "audio" in f]
        assert audio and all(f["enc"] == "mulaw" and f["sr"] == 8000 for f in audio)
    assert err["error_code"] == "MISSING_VOICE_ID"
    assert third[0]["session_closed"] and third[0]["total_audio_chunks"] == 0
    assert any("audio" in f for f in third)
    assert third[-1]["usage"]["characters"] == len("Hello.")


def test_S2_tokens_buffered_across_frames_give_chunk_frames_in_order(tone_server, wire):
    text = "The quick brown fox jumps over the lazy dog near the river bank today. " * 3
    tokens = [t + " " for t in text.split()] + [""]

    async def main():
        async with wire.connect(tone_server, STREAM) as ws:
            for i, token in enumerate(tokens):
                frame = {"text": token, "flush": False}
                if i == 0:
                    frame["voice_id"] = VOICE
                await ws.send(frame)
            await ws.send({"flush": True})
            return await ws.recv_until(is_closed)

    frames = wire.run(main())
    kinds = wire.kinds(frames)
    assert kinds[-2:] == ["final", "session_closed"]
    # Per chunk: generation_started -> audio+ -> chunk_complete (PROTOCOL S-2).
    body = kinds[:-2]
    chunks = []
    for kind, frame in zip(body, frames, strict=False):
        if kind == "generation_started":
            chunks.append([frame])
        else:
            chunks[-1].append(frame)
    assert len(chunks) >= 2  # 80/150/250 schedule over ~210 chars
    spoken = " ".join(c[0]["text"] for c in chunks)
    assert spoken.split() == text.split()
    for chunk_id, chunk in enumerate(chunks):
        assert chunk[0]["chunk_id"] == chunk_id
        assert wire.kinds(chunk[1:-1]) == ["audio"] * (len(chunk) - 2)
        assert chunk[-1]["chunk_complete"] and chunk[-1]["chunk_id"] == chunk_id
        assert all(f["chunk_id"] == chunk_id for f in chunk[1:-1])
        seconds = sum(f["samples"] / f["sr"] for f in chunk[1:-1])
        assert abs(chunk[-1]["audio_seconds"] - seconds) < 1e-3
    idx = [f["idx"] for f in frames if "audio" in f]
    assert idx == list(range(len(idx)))


def test_S3_flush_speaks_buffer_then_final_then_session_closed_with_usage(tone_server, wire):
    async def main():
        async with wire.connect(tone_server, STREAM) as ws:
            await ws.send({"text": "Hello ", "flush": False, "voice_id": VOICE})
            await ws.send({"text": "world", "flush": True})
            return await ws.recv_until(is_closed)

    frames = wire.run(main())
    kinds = wire.kinds(frames)
    assert kinds[0] == "generation_started" and frames[0]["text"] == "Hello world"
    assert kinds[-2:] == ["final", "session_closed"]
    final, closed = frames[-2], frames[-1]
    audio = [f for f in frames if "audio" in f]
    seconds = sum(f["samples"] / f["sr"] for f in audio)
    for totals in (final, closed):
        assert totals["total_audio_chunks"] == len(audio)
        assert totals["total_text_chunks"] == 1
        assert abs(totals["total_audio_seconds"] - seconds) < 1e-3
    assert "usage" not in final  # PROTOCOL U-19
    usage = closed["usage"]
    assert usage["characters"] == len("Hello world")
    assert abs(usage["audio_seconds"] - seconds) < 1e-3
    # Default price 0 (DESIGN 4): the local server is free, so 0.0 is the real cost.
    assert usage["cost_cents"] == 0.0 and usage["currency"] == "eur"
    # tone engine: 10 ms per character
    assert abs(seconds - 0.11) < 0.01


def test_S4_close_ends_open_turn_and_answers_empty_session_closed_without_one(tone_server, wire):
    async def main():
        async with wire.connect(tone_server, STREAM) as ws:
            await ws.send({"close": True})
            empty = await ws.recv()
            await ws.send({"text": "Spoken on close.", "flush": False, "voice_id": VOICE})
            await ws.send({"close": True})
            turn = await ws.recv_until(is_closed)
            await ws.send({"end_session": True})  # S-10 alias, no open turn
            alias = await ws.recv()
            return empty, turn, alias

    empty, turn, alias = wire.run(main())
    assert empty == {
        "session_closed": True,
        "total_audio_seconds": 0.0,
        "total_text_chunks": 0,
        "total_audio_chunks": 0,
    }
    assert wire.kinds(turn)[-2:] == ["final", "session_closed"]
    assert any("audio" in f for f in turn)
    assert alias["session_closed"] and alias["total_audio_chunks"] == 0


def test_S5_cancel_sends_only_interrupted_and_stops_within_a_chunk(server_factory, wire):
    # 100 ms blocks, each taking 50 ms to "compute": a long chunk is mid-synthesis.
    server = server_factory(ToneEngine(delay_per_block_s=0.05))
    long_text = "This sentence is long enough to take quite a while to speak out loud. " * 4

    async def main():
        async with wire.connect(server, STREAM) as ws:
            await ws.send({"text": long_text, "flush": True, "voice_id": VOICE})
            await ws.recv_until(lambda f: "audio" in f)
            sent = time.perf_counter()
            await ws.send({"cancel": True})
            before = await ws.recv_until(lambda f: f.get("interrupted"))
            latency = time.perf_counter() - sent
            after = await ws.quiet(0.5)
            # The next turn works normally.
            await ws.send({"text": "Sure.", "flush": True, "voice_id": VOICE})
            nxt = await ws.recv_until(is_closed)
            return before, latency, after, nxt

    before, latency, after, nxt = wire.run(main())
    assert after == []  # nothing after the ack, least of all final/session_closed
    assert not any(f.get("final") or f.get("session_closed") for f in before)
    residual = sum(f["samples"] / f["sr"] for f in before if "audio" in f)
    assert residual < 1.0  # PROTOCOL S-5: <= ~1 s residual audio
    assert latency < 0.25
    assert wire.kinds(nxt)[0] == "generation_started" and nxt[0]["text"] == "Sure."
    assert wire.kinds(nxt)[-2:] == ["final", "session_closed"]
    assert nxt[1]["idx"] == 0  # a fresh turn numbers its frames from 0


def test_S5_cancel_without_open_turn_still_answers_interrupted(tone_server, wire):
    async def main():
        async with wire.connect(tone_server, STREAM) as ws:
            await ws.send({"cancel": True})
            first = await ws.recv()
            await ws.send({"text": "Done.", "flush": True, "voice_id": VOICE})
            await ws.recv_until(is_closed)
            await ws.send({"cancel": True})  # the turn ended just before
            second = await ws.recv()
            return first, second, await ws.quiet(0.2)

    first, second, rest = wire.run(main())
    assert first == {"interrupted": True} and second == {"interrupted": True}
    assert rest == []


def test_S5_cancel_drops_buffered_text_of_unflushed_turn(tone_server, wire):
    async def main():
        async with wire.connect(tone_server, STREAM) as ws:
            await ws.send(
                {
                    "text": "This is a long answer that will be interrupted because the user ",
                    "flush": False,
                    "voice_id": VOICE,
                }
            )
            await ws.send({"cancel": True})
            ack = await ws.recv()
            await ws.send({"flush": True})  # nothing left to speak
            return ack, await ws.recv(), await ws.quiet(0.3)

    ack, closed, rest = wire.run(main())
    assert ack == {"interrupted": True}
    assert closed["session_closed"] and closed["total_audio_chunks"] == 0
    assert rest == []


def test_S6_next_turn_frames_only_after_previous_session_closed(tone_server, wire):
    async def main():
        async with wire.connect(tone_server, STREAM) as ws:
            await ws.send({"text": "First turn has some words.", "flush": True, "voice_id": VOICE})
            await ws.send({"text": "Second.", "flush": True})  # accepted at once, buffered
            one = await ws.recv_until(is_closed)
            two = await ws.recv_until(is_closed)
            return one, two

    one, two = wire.run(main())
    assert one[0]["text"] == "First turn has some words."
    assert two[0]["text"] == "Second." and two[0]["chunk_id"] == 0
    assert wire.kinds(one)[-2:] == wire.kinds(two)[-2:] == ["final", "session_closed"]
    assert abs(two[-1]["total_audio_seconds"] - 0.07) < 0.01


def test_S7_update_settings_acked_with_six_settings_or_validation_error(tone_server, wire):
    async def main():
        async with wire.connect(tone_server, STREAM) as ws:
            await ws.send({"update_settings": {"temperature": 0.3, "speed": 1.1}})
            ok = await ws.recv()
            await ws.send({"update_settings": {"speed": 3.0}})
            bad = await ws.recv()
            await ws.send({"update_settings": {"voice_id": 1072}})
            fixed = await ws.recv()
            # It neither opened a turn nor broke the socket; speed applies to the next turn.
            await ws.send({"text": "Twelve chars", "flush": True, "voice_id": VOICE})
            turn = await ws.recv_until(is_closed)
            return ok, bad, fixed, turn, await ws.quiet(0.1)

    ok, bad, fixed, turn, rest = wire.run(main())
    assert ok["settings_updated"] is True
    assert ok["settings"] == {
        "cfg_scale": None,
        "temperature": 0.3,
        "speed": 1.1,
        "max_new_tokens": None,
        "language": None,
        "normalize": None,
    }
    for err in (bad, fixed):
        assert err["error_code"] == "VALIDATION_ERROR" and err["code"] == 400
    assert "voice_id" in fixed["error"]
    seconds = turn[-1]["total_audio_seconds"]
    assert abs(seconds - 0.12 / 1.1) < 0.005  # speed 1.1 shortened the tone
    assert rest == []


def test_S8_idle_auto_flush_warning_then_audio_final_session_closed(tone_server, wire):
    async def main():
        async with wire.connect(tone_server, STREAM) as ws:
            await ws.send({"text": "Never flushed", "flush": False, "voice_id": VOICE})
            start = time.perf_counter()
            # Pings are not activity (PROTOCOL S-8).
            for _ in range(3):
                pong = await ws.ws.ping()
                await pong
                await ws.quiet(0.1)
            frames = await ws.recv_until(is_closed, timeout=3)
            return frames, time.perf_counter() - start

    frames, elapsed = wire.run(main())
    kinds = wire.kinds(frames)
    assert kinds[0] == "warning" and "flush" in frames[0]["warning"]
    assert "audio" in kinds and kinds[-2:] == ["final", "session_closed"]
    assert 0.45 < elapsed < 1.5  # idle_flush_seconds=0.5 on the tone server


def test_S9_text_short_of_a_chunk_boundary_sends_nothing(tone_server, wire):
    async def main():
        async with wire.connect(tone_server, STREAM) as ws:
            await ws.send({"text": "Hello there, how are", "flush": False, "voice_id": VOICE})
            early = await ws.quiet(0.3)
            await ws.send({"flush": True})
            return early, await ws.recv_until(is_closed)

    early, frames = wire.run(main())
    assert early == []
    assert frames[0]["text"] == "Hello there, how are"


def test_flush_timeout_ms_releases_partial_text_but_keeps_the_turn_open(tone_server, wire):
    async def main():
        async with wire.connect(tone_server, STREAM) as ws:
            await ws.send(
                {"text": "Hello there, how are", "flush": False, "voice_id": VOICE, "flush_timeout_ms": 150}
            )
            chunk = await ws.recv_until(lambda f: f.get("chunk_complete"), timeout=2)
            await ws.send({"text": " you?", "flush": True})
            rest = await ws.recv_until(is_closed)
            return chunk, rest

    chunk, rest = wire.run(main())
    # S-8a: the release stops at the last word boundary; "are" may still be growing.
    assert chunk[0]["text"] == "Hello there, how"
    assert not any(f.get("final") for f in chunk)
    assert rest[0]["text"] == "are you?" and rest[0]["chunk_id"] == 1
    assert rest[-1]["total_text_chunks"] == 2


LOW_LATENCY_WIRE = {"auto_mode": True, "chunk_length_schedule": [50, 100, 150, 250]}


async def _send_tokens(ws: Any, text: str, **config: Any) -> None:
    """``text`` in 3-character tokens (mid-word), as an LLM streams it."""
    for i in range(0, len(text), 3):
        await ws.send({"text": text[i : i + 3], "flush": False, **config})
        config = {}


async def _drain_audio(ws: Any, quiet_s: float = 0.8) -> list[dict[str, Any]]:
    """Frames until the server has sent nothing for ``quiet_s`` (its output is idle)."""
    frames: list[dict[str, Any]] = []
    while batch := await ws.quiet(quiet_s):
        frames += batch
    return frames


def test_a_stalled_llm_gets_its_sentence_end_spoken_then_a_phrase_cut(server_factory, wire):
    # Issue 12: a tool call stalls the tokens after "for you." (the segmenter holds a "."
    # for its next character: an abbreviation?). The starving pipeline speaks it anyway,
    # and the next chunk after the stall is cut at a phrase boundary, not the threshold.
    server = server_factory()  # the S-8 turn end after 5 s of silence, not the fixture's 0.5 s

    async def main() -> tuple[list[str], list[str], list[dict[str, Any]]]:
        async with wire.connect(server, STREAM) as ws:
            first = "Sure thing, let me check the latest departure times for you. "
            await _send_tokens(ws, first, voice_id=VOICE, **LOW_LATENCY_WIRE)
            frames = await ws.recv_until(lambda f: "for you" in f.get("text", ""), timeout=5)
            frames += await _drain_audio(ws)  # ... the tool call goes on; all was spoken
            before = [f["text"] for f in frames if f.get("generation_started")]
            await _send_tokens(ws, "The next train to Porto leaves at a quarter past three from platform ")
            after = await ws.recv_until(lambda f: f.get("generation_started"), timeout=5)
            await ws.send({"text": "four.", "flush": True})
            rest = await ws.recv_until(is_closed)
            return before, [f["text"] for f in after + rest if f.get("generation_started")], rest

    before, after, rest = wire.run(main())
    assert before == ["Sure thing, let me check", "the latest departure times for you."]
    assert after == ["The next train to Porto leaves", "at a quarter past three from platform four."]
    assert rest[-1]["total_text_chunks"] == 4  # one turn


def test_S10_close_socket_ends_turn_session_closed_then_close_1000(tone_server, wire):
    async def main():
        async with wire.connect(tone_server, STREAM) as ws:
            await ws.send({"text": "Last words.", "flush": False, "voice_id": VOICE})
            await ws.send({"close_socket": True})
            frames = await ws.recv_until(is_closed)
            await ws.ws.wait_closed()
            return frames, ws.ws.close_code

    frames, code = wire.run(main())
    assert wire.kinds(frames)[-2:] == ["final", "session_closed"]
    assert code == 1000


def test_chunk_schedule_and_auto_mode_from_client_config(tone_server, wire):
    text = "Hi. This second sentence is here to make the buffer quite a bit longer. End."

    async def main(extra):
        async with wire.connect(tone_server, STREAM) as ws:
            await ws.send({"text": text, "flush": False, "voice_id": VOICE, **extra})
            await ws.send({"flush": True})
            return [f["text"] for f in await ws.recv_until(is_closed) if f.get("generation_started")]

    auto = wire.run(main({"auto_mode": True, "chunk_length_schedule": [50, 100]}))
    plain = wire.run(main({"chunk_length_schedule": [50, 100]}))
    assert auto[0] == "Hi."  # auto_mode: chunk 0 at the first sentence boundary
    assert plain[0].startswith("Hi. This second sentence")
    assert " ".join(auto).split() == " ".join(plain).split() == text.split()


def test_text_over_the_buffer_limit_is_refused_not_dropped(server_factory, wire):
    server = server_factory(max_buffered_chars=50)

    async def main():
        async with wire.connect(server, STREAM) as ws:
            await ws.send({"text": "a" * 30 + " ", "flush": False, "voice_id": VOICE})
            await ws.send({"text": "b" * 30, "flush": False})
            err = await ws.recv()
            await ws.send({"flush": True})
            return err, await ws.recv_until(is_closed)

    err, frames = wire.run(main())
    assert err["error_code"] == "VALIDATION_ERROR" and "refused" in err["error"]
    assert frames[0]["text"] == "a" * 30  # the accepted text is still spoken
    assert frames[-1]["usage"]["characters"] == 31


def test_word_timestamps_only_when_requested(tone_server, wire):
    async def main(requested):
        async with wire.connect(tone_server, STREAM) as ws:
            await ws.send(
                {"text": "Hello big world.", "flush": True, "voice_id": VOICE, "word_timestamps": requested}
            )
            return await ws.recv_until(is_closed)

    with_ts = wire.run(main(True))
    without = wire.run(main(False))
    assert not any("word_timestamps" in f for f in without)
    kinds = wire.kinds(with_ts)
    ts_at = kinds.index("word_timestamps")
    assert kinds[ts_at - 1] == "audio" and kinds[ts_at + 1] == "chunk_complete"
    words = with_ts[ts_at]["word_timestamps"]
    assert [w["word"] for w in words] == ["Hello", "big", "world."]
    text = "Hello big world."
    for w in words:
        assert text[w["char_start"] : w["char_end"]] == w["word"]
        assert 0 <= w["start_ms"] <= w["end_ms"] <= 170
    assert np.all(np.diff([w["start_ms"] for w in words]) > 0)


def test_audio_is_paced_one_second_ahead_so_a_fast_engine_cancel_leaves_little(tone_server, wire):
    text = "An instant engine makes all of this audio at once, four seconds of it. " * 5

    async def main():
        async with wire.connect(tone_server, STREAM) as ws:
            await ws.send({"text": text, "flush": True, "voice_id": VOICE, "chunk_length_schedule": [500]})
            first = await ws.recv_until(lambda f: "audio" in f)
            await asyncio.sleep(0.3)
            await ws.send({"cancel": True})
            return first, await ws.recv_until(lambda f: f.get("interrupted"))

    first, after = wire.run(main())
    received = sum(f["samples"] / f["sr"] for f in first + after if "audio" in f)
    assert 0.9 < received < 1.6  # ~1 s lead + 0.3 s played, not the whole 3.5 s


def test_tts_endpoint_is_not_paced(tone_server, wire):
    async def main():
        async with wire.connect(tone_server, "/ws/tts") as ws:
            t0 = time.perf_counter()
            text = " ".join(["x" * 29] * 10)  # 299 characters (words over 50 are cut, issue 11)
            await ws.send({"text": text, "voice_id": VOICE})  # ~3 s of audio
            frames = await ws.recv_until(lambda f: f.get("final"))
            return frames, time.perf_counter() - t0

    frames, elapsed = wire.run(main())
    assert frames[-1]["dur_ms"] >= 2900.0  # tone: 10 ms per character, chunk edges stripped
    assert elapsed < 1.0


def test_S8a_idle_turn_end_counts_from_when_paced_audio_is_all_sent(server_factory, wire):
    """PROTOCOL S-8a: the 5 s (here 0.5 s) idle end counts from the later of the last text
    and the moment nothing is left to send; paced audio still leaving is not silence."""
    server = server_factory(ToneEngine(ms_per_char=40.0), idle_flush_seconds=0.5, max_lead_seconds=0.3)

    async def main():
        async with wire.connect(server, STREAM) as ws:
            first = "A complete first sentence that speaks for a while."  # ~2 s of audio
            await ws.send({"text": f"{first} Then", "flush": False, "voice_id": VOICE, "auto_mode": True})
            sent = time.perf_counter()
            frames, at = [], []
            while not frames or not is_closed(frames[-1]):
                frames.append(await ws.recv(timeout=8))
                at.append(time.perf_counter() - sent)
            return frames, at

    frames, at = wire.run(main())
    kinds = wire.kinds(frames)
    warning = kinds.index("warning")
    done = kinds.index("chunk_complete")
    assert done < warning  # the first chunk's audio went out before the turn ended
    assert at[done] > 1.0  # paced: ~2 s of audio left over ~1.7 s
    assert at[warning] - at[done] >= 0.4  # idle counted from the last frame sent
    assert kinds[-2:] == ["final", "session_closed"]


def test_S5_M7a_cancel_while_paced_audio_is_queued_reports_nothing_for_the_turn(server_factory, wire):
    """PROTOCOL S-5, M-7a: a turn whose text finished generating and whose final and
    session_closed wait behind paced audio is cancelled: none of them is sent, so it is
    never billed; the next turn's usage counts only its own audio."""
    server = server_factory(ToneEngine(ms_per_char=40.0), max_lead_seconds=0.3)
    text = "This sentence is long enough to be spoken for a few seconds of paced audio."

    async def main():
        async with wire.connect(server, STREAM) as ws:
            await ws.send({"text": text, "flush": True, "voice_id": VOICE})
            first = [await ws.recv()]
            start = time.perf_counter()
            while time.perf_counter() - start < 0.8:
                first.append(await ws.recv())
            await ws.send({"cancel": True})
            first += await ws.recv_until(lambda f: f.get("interrupted"))
            await ws.send({"text": "Next.", "flush": True})
            return first, await ws.recv_until(is_closed)

    first, second = wire.run(main())
    assert not any(f.get("final") or f.get("session_closed") for f in first)
    assert sum(f["samples"] / f["sr"] for f in first if "audio" in f) < len(text) * 0.040 / 2
    usage = second[-1]["usage"]
    assert usage["characters"] == len("Next.")
    assert usage["audio_seconds"] == round(sum(f["samples"] / f["sr"] for f in second if "audio" in f), 4)
