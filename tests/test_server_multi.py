"""``/ws/tts/multi`` obligations M-1..M-12 (PROTOCOL 11) against the real server."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import numpy as np

from rxtts.server.engines.tone import ToneEngine

MULTI = "/ws/tts/multi"


def vs(voice: int = 1071) -> dict[str, Any]:
    return {"voice_id": voice, "cfg_scale": 2.0, "max_new_tokens": 2048}


def ctx_is(kind: str, cid: str):
    return lambda f: bool(f.get(kind)) and f.get("context_id") == cid


def dominant_hz(wire, frames: list[dict[str, Any]]) -> float:
    pcm = np.concatenate([np.frombuffer(wire.audio_bytes(f), "<i2") for f in frames]).astype(float)
    spectrum = np.abs(np.fft.rfft(pcm))
    return float(np.fft.rfftfreq(len(pcm), 1 / frames[0]["sr"])[int(np.argmax(spectrum))])


def test_M1_context_created_on_any_first_frame(tone_server, wire):
    firsts = {
        "space": {"text": " ", "voice_settings": vs()},
        "empty": {"text": ""},
        "text": {"text": "Hi", "flush": False, "voice_settings": vs()},
        "flush": {"flush": True, "voice_settings": vs()},
    }

    async def main():
        async with wire.connect(tone_server, MULTI) as ws:
            got = {}
            for cid, frame in firsts.items():
                await ws.send({**frame, "context_id": cid})
                got[cid] = await ws.recv()
            tail = await ws.recv()  # the flush-created context answers final
            return got, tail, await ws.quiet(0.2)

    got, tail, rest = wire.run(main())
    for cid, frame in got.items():
        assert frame == {"context_created": True, "context_id": cid}
    assert tail == {"final": True, "context_id": "flush"}
    assert rest == []  # "Hi" is below a chunk boundary: nothing yet


def test_M2_voice_bound_from_voice_settings_top_level_only_session_default(tone_server, wire):
    async def main():
        async with wire.connect(tone_server, MULTI) as ws:
            await ws.send(
                {
                    "text": " ",
                    "context_id": "a",
                    "voice_settings": {**vs(1071), "stability": 0.5, "made_up": 1},
                }
            )
            await ws.send({"text": " ", "context_id": "b", "voice_settings": vs(1072)})
            # Top-level voice_id: session config only; "c" gets it as its default.
            await ws.send({"text": " ", "context_id": "c", "voice_id": 1073})
            await ws.recv_until(ctx_is("context_created", "c"))
            out = {}
            for cid in "abc":
                await ws.send({"text": "A long enough tone sentence.", "context_id": cid, "flush": True})
                out[cid] = [f for f in await ws.recv_until(ctx_is("final", cid)) if "audio" in f]
            return out

    out = wire.run(main())
    assert abs(dominant_hz(wire, out["a"]) - 200) < 8
    assert abs(dominant_hz(wire, out["b"]) - 252) < 8
    assert abs(dominant_hz(wire, out["c"]) - 168) < 8


def test_M3_contextless_prep_frame_is_accepted_silently(tone_server, wire):
    async def main():
        async with wire.connect(tone_server, MULTI) as ws:
            await ws.send({"text": "", "voice_id": 1072, "model_id": "kugel-3.5"})
            quiet = await ws.quiet(0.3)
            # ...and its voice became the session default.
            await ws.send({"text": "Default voice here.", "context_id": "x", "flush": True})
            frames = await ws.recv_until(ctx_is("final", "x"))
            return quiet, frames

    quiet, frames = wire.run(main())
    assert quiet == []
    assert abs(dominant_hz(wire, [f for f in frames if "audio" in f]) - 252) < 8


def test_M4_blank_text_makes_no_audio_and_empty_text_keeps_context_alive(server_factory, wire):
    server = server_factory(inactivity_timeout=0.4)

    async def main():
        async with wire.connect(server, MULTI) as ws:
            await ws.send({"text": " ", "context_id": "k", "voice_settings": vs()})
            await ws.recv()
            seen = []
            for _ in range(6):  # 0.9 s > timeout, kept alive by keep-alives
                await ws.send({"text": "", "context_id": "k"})
                await ws.send({"text": " ", "context_id": "k"})
                seen += await ws.quiet(0.15)
            await ws.send({"flush": True, "context_id": "k"})
            fin = await ws.recv()
            late = await ws.recv_until(ctx_is("context_timeout", "k"), timeout=2)
            return seen, fin, late

    seen, fin, late = wire.run(main())
    assert seen == []  # no audio, no timeout while kept alive
    assert fin == {"final": True, "context_id": "k"}
    assert late == [{"context_timeout": True, "context_id": "k"}]


def test_M5_every_context_frame_tagged_and_contexts_interleave(server_factory, wire):
    server = server_factory(ToneEngine(delay_per_block_s=0.01), engine_threads=2)
    text = "Both contexts speak this rather long sentence at the same time, interleaved. " * 2

    async def main():
        async with wire.connect(server, MULTI) as ws:
            for cid, voice in (("left", 1071), ("right", 1072)):
                await ws.send({"text": " ", "context_id": cid, "voice_settings": vs(voice)})
            for cid in ("left", "right"):
                await ws.send({"text": text, "context_id": cid, "flush": True})
            frames = []
            finals = 0
            while finals < 2:
                f = await ws.recv()
                frames.append(f)
                finals += bool(f.get("final"))
            return frames

    frames = wire.run(main())
    assert all("context_id" in f for f in frames)
    order = [f["context_id"] for f in frames if "audio" in f]
    switches = sum(a != b for a, b in itertools.pairwise(order))
    assert switches >= 2  # concurrent, interleaved
    for cid in ("left", "right"):
        own = [f for f in frames if f["context_id"] == cid]
        kinds = wire.kinds(own)
        assert kinds[0] == "context_created" and kinds[1] == "generation_started" and kinds[-1] == "final"
        idx = [f["idx"] for f in own if "audio" in f]
        assert idx == list(range(len(idx)))


def test_M6_flush_speaks_buffer_then_final_and_final_for_empty_buffer(tone_server, wire):
    async def main():
        async with wire.connect(tone_server, MULTI) as ws:
            await ws.send({"text": " ", "context_id": "n", "voice_settings": vs()})
            await ws.recv()
            await ws.send({"text": "The story begins. It was dark.", "context_id": "n", "flush": True})
            first = await ws.recv_until(ctx_is("final", "n"))
            await ws.send({"flush": True, "context_id": "n"})
            empty = await ws.recv()
            await ws.send({"text": "Again.", "context_id": "n", "flush": True})
            second = await ws.recv_until(ctx_is("final", "n"))
            return first, empty, second

    first, empty, second = wire.run(main())
    assert wire.kinds(first)[0] == "generation_started"
    assert wire.kinds(first)[-2:] == ["chunk_complete", "final"]
    assert first[0]["text"] == "The story begins. It was dark."
    assert empty == {"final": True, "context_id": "n"}
    assert second[0]["chunk_id"] == 1  # numbering continues within the context
    assert second[1]["idx"] == sum("audio" in f for f in first)


def test_M7_graceful_close_finishes_text_then_final_then_context_closed(tone_server, wire):
    async def main():
        async with wire.connect(tone_server, MULTI) as ws:
            await ws.send({"text": "Unflushed words here", "context_id": "g", "voice_settings": vs()})
            await ws.send({"close_context": True, "context_id": "g"})
            return await ws.recv_until(ctx_is("context_closed", "g"))

    frames = wire.run(main())
    kinds = wire.kinds(frames)
    assert kinds[0] == "context_created" and "audio" in kinds
    assert kinds[-2:] == ["final", "context_closed"]
    usage = frames[-1]["usage"]
    seconds = sum(f["samples"] / f["sr"] for f in frames if "audio" in f)
    assert usage["characters"] == len("Unflushed words here")
    assert abs(usage["audio_seconds"] - seconds) < 1e-3


def test_M7_immediate_close_stops_at_once_without_final(server_factory, wire):
    server = server_factory(ToneEngine(delay_per_block_s=0.05))
    text = "This context would speak for a long long time if nobody stopped it now. " * 4

    async def main():
        async with wire.connect(server, MULTI) as ws:
            await ws.send({"text": text, "context_id": "i", "flush": True, "voice_settings": vs()})
            await ws.recv_until(lambda f: "audio" in f)
            t0 = time.perf_counter()
            await ws.send({"close_context": True, "context_id": "i", "immediate": True})
            frames = await ws.recv_until(ctx_is("context_closed", "i"))
            latency = time.perf_counter() - t0
            await ws.send({"close_context": True, "context_id": "unknown"})
            unknown = await ws.recv()
            return frames, latency, unknown, await ws.quiet(0.3)

    frames, latency, unknown, rest = wire.run(main())
    assert not any(f.get("final") for f in frames)
    assert latency < 0.25
    assert sum(f["samples"] / f["sr"] for f in frames if "audio" in f) < 1.0
    assert frames[-1]["usage"]["audio_seconds"] > 0
    assert unknown["context_closed"] and unknown["context_id"] == "unknown"
    assert rest == []


def test_M7_immediate_close_after_a_graceful_one_stops_the_paced_audio_at_once(tone_server, wire):
    """Found with the LiveKit plug-in: the engine had finished a gracefully closed context,
    its audio was still paced out, and an immediate close waited ~1.7 s behind that audio.
    Now the context drains (slot held) until its frames are written, and an immediate
    close purges them and answers at once, billing what was sent (M-7, M-7a)."""
    text = "Thanks for calling about your order, the package left our warehouse yesterday. " * 3

    async def main():
        async with wire.connect(tone_server, MULTI) as ws:
            await ws.send({"text": text, "context_id": "g", "flush": True, "voice_settings": vs()})
            await ws.send({"close_context": True, "context_id": "g"})
            await ws.recv_until(lambda f: "audio" in f)
            await asyncio.sleep(0.3)  # the engine is done: the rest is paced audio
            t0 = time.perf_counter()
            await ws.send({"close_context": True, "context_id": "g", "immediate": True})
            frames = await ws.recv_until(ctx_is("context_closed", "g"))
            latency = time.perf_counter() - t0
            return frames, latency, await ws.quiet(0.3)

    frames, latency, rest = wire.run(main())
    assert latency < 0.5  # was 1.7 s behind the paced audio
    assert not any(f.get("final") for f in frames)
    sent = sum(f["samples"] / f["sr"] for f in frames if "audio" in f)
    assert sent < 1.5 and frames[-1]["usage"]["audio_seconds"] < len(text) * 0.01  # not all billed
    assert rest == []  # the graceful close's own context_closed was purged with the audio


def test_M8_close_socket_closes_contexts_then_session_closed_then_1000(tone_server, wire):
    async def main():
        async with wire.connect(tone_server, MULTI) as ws:
            for cid in ("c0", "c1"):
                await ws.send({"text": "Pending text", "context_id": cid, "voice_settings": vs()})
            await ws.send({"close_socket": True})
            frames = await ws.recv_until(lambda f: f.get("session_closed"))
            await ws.ws.wait_closed()
            return frames, ws.ws.close_code

    frames, code = wire.run(main())
    closed = [f["context_id"] for f in frames if f.get("context_closed")]
    assert sorted(closed) == ["c0", "c1"]
    assert wire.kinds(frames)[-1] == "session_closed"
    assert all(f["usage"]["audio_seconds"] > 0 for f in frames if f.get("context_closed"))
    assert code == 1000


def test_M9_twenty_contexts_allowed_21st_refused_socket_survives(tone_server, wire):
    async def main():
        async with wire.connect(tone_server, MULTI) as ws:
            for i in range(20):
                await ws.send({"text": " ", "context_id": f"c{i}", "voice_settings": vs()})
                assert (await ws.recv())["context_created"]
            await ws.send({"text": " ", "context_id": "c20", "voice_settings": vs()})
            refused = await ws.recv()
            await ws.send({"close_context": True, "context_id": "c3", "immediate": True})
            await ws.recv()
            await ws.send({"text": " ", "context_id": "c20", "voice_settings": vs()})
            admitted = await ws.recv()
            await ws.send({"text": " ", "context_id": "c3", "voice_settings": vs()})
            refused_again = await ws.recv()
            return refused, admitted, refused_again

    refused, admitted, refused_again = wire.run(main())
    assert refused == {
        "error": "Too many concurrent contexts",
        "error_code": "TOO_MANY_CONTEXTS",
        "code": 429,
        "context_id": "c20",
    }
    assert admitted == {"context_created": True, "context_id": "c20"}
    assert refused_again["error_code"] == "TOO_MANY_CONTEXTS"


def test_M10_idle_context_times_out_and_its_id_is_reusable(server_factory, wire):
    server = server_factory(inactivity_timeout=0.3)

    async def main():
        async with wire.connect(server, MULTI) as ws:
            await ws.send(
                {
                    "text": "Partial text without end",
                    "context_id": "n",
                    "flush": False,
                    "voice_settings": vs(),
                }
            )
            t0 = time.perf_counter()
            frames = await ws.recv_until(ctx_is("context_timeout", "n"), timeout=2)
            elapsed = time.perf_counter() - t0
            await ws.send({"flush": True, "context_id": "n", "voice_settings": vs()})
            again = await ws.recv_until(ctx_is("final", "n"))
            return frames, elapsed, again

    frames, elapsed, again = wire.run(main())
    assert wire.kinds(frames) == ["context_created", "context_timeout"]
    assert 0.25 < elapsed < 1.0
    assert wire.kinds(again) == ["context_created", "final"]


def test_M10_client_inactivity_timeout_wins_and_generation_counts_as_activity(server_factory, wire):
    server = server_factory(ToneEngine(delay_per_block_s=0.03))
    text = "Generating this takes longer than the inactivity timeout of the context. " * 2

    async def main():
        async with wire.connect(server, MULTI) as ws:
            await ws.send({"text": " ", "context_id": "s", "voice_settings": vs(), "inactivity_timeout": 0.3})
            await ws.recv()
            t0 = time.perf_counter()
            await ws.send({"text": text, "context_id": "s", "flush": True})
            frames = await ws.recv_until(lambda f: f.get("final") or f.get("context_timeout"), timeout=5)
            spoke = time.perf_counter() - t0
            later = await ws.recv_until(ctx_is("context_timeout", "s"), timeout=2)
            return frames, spoke, later

    frames, spoke, later = wire.run(main())
    assert spoke > 0.3  # longer than the timeout...
    assert frames[-1].get("final")  # ...yet no context_timeout while generating
    assert later == [{"context_timeout": True, "context_id": "s"}]


def test_M11_update_settings_acked_or_refused(tone_server, wire):
    async def main():
        async with wire.connect(tone_server, MULTI) as ws:
            await ws.send({"update_settings": {"cfg_scale": 1.5}})
            ok = await ws.recv()
            await ws.send({"update_settings": {"temperature": 7}})
            bad = await ws.recv()
            await ws.send({"update_settings": {"speed": 1.2}})
            await ws.recv()
            await ws.send(
                {"text": "Twelve chars", "context_id": "later", "flush": True, "voice_settings": vs()}
            )
            frames = await ws.recv_until(ctx_is("final", "later"))
            return ok, bad, frames

    ok, bad, frames = wire.run(main())
    assert ok["settings_updated"] and ok["settings"]["cfg_scale"] == 1.5
    assert bad["error_code"] == "VALIDATION_ERROR" and "context_id" not in bad
    seconds = sum(f["samples"] / f["sr"] for f in frames if "audio" in f)
    assert abs(seconds - 0.12 / 1.2) < 0.005  # applies to later contexts


def test_M12_context_errors_carry_context_id(tone_server, wire):
    async def main():
        async with wire.connect(tone_server, MULTI) as ws:
            await ws.send({"text": "No voice anywhere.", "context_id": "mute", "flush": False})
            created = await ws.recv()
            missing = await ws.recv()
            await ws.send({"text": " ", "context_id": "bad", "voice_settings": vs(424242)})
            unknown = await ws.recv()
            await ws.send("{not json")
            session_wide = await ws.recv()
            return created, missing, unknown, session_wide

    created, missing, unknown, session_wide = wire.run(main())
    assert created["context_created"]
    assert missing == {
        "error": "voice_id is required",
        "error_code": "MISSING_VOICE_ID",
        "code": 400,
        "context_id": "mute",
    }
    assert unknown["error_code"] == "VALIDATION_ERROR" and unknown["context_id"] == "bad"
    assert "424242" in unknown["error"]
    assert session_wide["error_code"] == "PROTOCOL_ERROR" and "context_id" not in session_wide


def test_M7a_late_immediate_close_sends_no_final_and_bills_only_audio_sent(server_factory, wire):
    """PROTOCOL M-7a: JS ``closeContext(id, true)`` late in a context's text, after the
    text finished generating but while its audio is still paced out: no ``final`` (the
    queued one is purged too) and ``usage`` bills only the audio written to the socket."""
    server = server_factory(ToneEngine(ms_per_char=40.0), max_lead_seconds=0.3)
    text = "This sentence is long enough to be spoken for a few seconds of paced audio. " * 2

    async def main():
        async with wire.connect(server, MULTI) as ws:
            await ws.send({"text": " ", "context_id": "a", "voice_settings": vs()})
            await ws.recv()  # context_created
            await ws.send({"text": text, "context_id": "a", "flush": True})
            frames = [await ws.recv()]
            start = time.perf_counter()
            while time.perf_counter() - start < 1.0:  # ~1.3 s of ~6 s delivered
                frames.append(await ws.recv())
            await ws.send({"close_context": True, "context_id": "a", "immediate": True})
            frames += await ws.recv_until(ctx_is("context_closed", "a"))
            frames += await ws.quiet(0.5)
            return frames

    frames = wire.run(main())
    generated = len(text.strip()) * 0.040  # the tone engine had made all of it
    delivered = sum(f["samples"] / f["sr"] for f in frames if "audio" in f)
    closed = next(f for f in frames if f.get("context_closed"))
    assert not any(f.get("final") for f in frames)
    assert 0.8 < delivered < generated / 2  # the close really came while audio was paced
    assert closed["usage"]["audio_seconds"] == round(delivered, 4)
    assert frames.index(closed) > max(i for i, f in enumerate(frames) if "audio" in f)
