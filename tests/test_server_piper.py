"""End-to-end with the real piper voice: latency, cancel mid-sentence, concurrent contexts."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

VOICE = 1071
LONG = (
    "The history of the region is long and complicated, shaped by trade routes, shifting borders, "
    "and the slow growth of its cities along the rivers, where merchants, farmers and craftsmen "
    "met every week to sell their goods, exchange their news, and argue about the weather."
)

pytestmark = pytest.mark.slow


def test_piper_ttfa_for_a_short_sentence(piper_server, wire):
    async def main():
        async with wire.connect(piper_server, "/ws/tts/stream") as ws:
            t0 = time.perf_counter()
            await ws.send({"text": "Hello, how are you today?", "flush": True, "voice_id": VOICE})
            first = await ws.recv_until(lambda f: "audio" in f)
            ttfa = time.perf_counter() - t0
            frames = first + await ws.recv_until(lambda f: f.get("session_closed"))
            return ttfa, frames

    ttfa, frames = wire.run(main())
    audio = [f for f in frames if "audio" in f]
    pcm = np.concatenate([np.frombuffer(wire.audio_bytes(f), "<i2") for f in audio]).astype(float) / 32768
    print(f"\npiper TTFA (stream, 5 words, flush): {ttfa * 1000:.0f} ms; audio {len(pcm) / 24000:.2f} s")
    assert ttfa < 3.0  # ~75 ms on an idle 2-core machine (DESIGN 4); generous for loaded CI
    assert 1.0 < len(pcm) / 24000 < 3.5
    assert np.sqrt(np.mean(pcm**2)) > 0.02


@pytest.mark.parametrize(
    "text", ["For a simple tomato pasta you need four things.", "Here are the three steps to take."]
)
def test_a_turn_starts_with_sound_not_the_engines_lead_silence(piper_server, wire, text):
    # Issue 12: piper leads these sentences with 45-60 ms below -50 dBFS; at a turn's
    # start that is only delay. The server keeps 10 ms (TURN_LEAD_S).
    from rxtts.audio.silence import first_non_silent_sample
    from rxtts.server.pipeline import TURN_LEAD_S

    async def main():
        async with wire.connect(piper_server, "/ws/tts/stream") as ws:
            await ws.send({"text": text, "flush": True, "voice_id": VOICE})
            return await ws.recv_until(lambda f: f.get("session_closed"), timeout=30)

    frames = wire.run(main())
    pcm = np.concatenate([np.frombuffer(wire.audio_bytes(f), "<i2") for f in frames if "audio" in f])
    lead_s = first_non_silent_sample(pcm.astype(np.float32) / 32768) / 24000
    assert TURN_LEAD_S - 0.005 <= lead_s <= TURN_LEAD_S + 0.005  # detector windows: 64 samples


def test_piper_cancel_stops_mid_sentence(piper_server, wire):
    async def main():
        async with wire.connect(piper_server, "/ws/tts/stream") as ws:
            # max_buffer_length 1000 keeps the whole paragraph one chunk: one long inference run.
            await ws.send({"text": LONG, "flush": True, "voice_id": VOICE, "chunk_length_schedule": [500]})
            await ws.recv_until(lambda f: "audio" in f, timeout=10)
            t0 = time.perf_counter()
            await ws.send({"cancel": True})
            after = await ws.recv_until(lambda f: f.get("interrupted"), timeout=5)
            latency = time.perf_counter() - t0
            rest = await ws.quiet(0.5)
            await ws.send({"text": "Okay.", "flush": True, "voice_id": VOICE})
            nxt = await ws.recv_until(lambda f: f.get("session_closed"), timeout=10)
            return after, latency, rest, nxt

    after, latency, rest, nxt = wire.run(main())
    residual = sum(f["samples"] / f["sr"] for f in after if "audio" in f)
    frames_after = sum("audio" in f for f in after)
    print(f"\ncancel->interrupted {latency * 1000:.1f} ms; {frames_after} frames ({residual:.2f} s) after")
    assert latency < 0.3
    assert residual <= 1.3  # PROTOCOL S-5: ~1 s residual at most (paced at 1 s lead)
    assert rest == []
    assert wire.kinds(nxt)[-2:] == ["final", "session_closed"]


TWO_VOICES = "The same words in two voices, so that anyone can tell the bright one from the plain one."


def test_piper_two_contexts_concurrently_with_distinct_voices(piper_server, wire):
    def pitch(frames):
        """Median F0 of the voiced 40 ms windows, by YIN (cumulative mean normalised difference).

        YIN takes the first lag whose normalised difference dips under 0.15, so it does not
        jump an octave the way a plain autocorrelation peak does on short, noisy windows.
        """
        pcm = np.concatenate([np.frombuffer(wire.audio_bytes(f), "<i2") for f in frames]).astype(float)
        win, hop, lo, hi = 960, 480, 24000 // 400, 24000 // 60
        f0 = []
        for i in range(0, len(pcm) - win - hi, hop):
            x = pcm[i : i + win + hi]
            lagged = np.lib.stride_tricks.sliding_window_view(x, win)[:hi]
            d = np.sum((x[:win] - lagged) ** 2, axis=1)
            cmnd = d[1:] * np.arange(1, hi) / np.maximum(np.cumsum(d[1:]), 1e-9)
            dips = np.flatnonzero(cmnd[lo - 1 :] < 0.15)
            if dips.size:  # voiced window: the first dip, then its local minimum
                tau = lo - 1 + int(dips[0])
                while tau + 1 < cmnd.size and cmnd[tau + 1] < cmnd[tau]:
                    tau += 1
                f0.append(24000 / (tau + 1))
        assert len(f0) >= 20, len(f0)  # enough voiced windows for a stable median
        return float(np.median(f0))

    async def main():
        async with wire.connect(piper_server, "/ws/tts/multi") as ws:
            for cid, voice in (("joe", 1071), ("jo", 1072)):
                await ws.send(
                    {
                        "text": TWO_VOICES,
                        "context_id": cid,
                        "flush": True,
                        "voice_settings": {"voice_id": voice},
                    }
                )
            frames, finals = [], 0
            while finals < 2:
                f = await ws.recv(10)
                frames.append(f)
                finals += bool(f.get("final"))
            return frames

    frames = wire.run(main())
    joe = [f for f in frames if "audio" in f and f["context_id"] == "joe"]
    jo = [f for f in frames if "audio" in f and f["context_id"] == "jo"]
    assert joe and jo
    ratio = pitch(jo) / pitch(joe)
    print(f"\npiper 1072/1071 F0 ratio {ratio:.2f}")
    assert 1.16 < ratio < 1.36  # 1072 is joe pitched up 4 semitones (x1.26)


ONE_CLAUSE = (
    " ".join(
        ["the old sailor walked slowly along the quiet harbour wall and looked out across the grey water"] * 2
    )
    + "."
)
"""One long sentence without clause marks: piper runs it as a single inference."""


class RunSpy:
    """Wraps the onnxruntime session: records when each ``run`` starts and ends."""

    def __init__(self, session):
        self.session = session
        self.runs: list[tuple[float, float | None]] = []
        self.started = __import__("threading").Event()

    def run(self, *args, **kwargs):
        self.runs.append((time.perf_counter(), None))
        self.started.set()
        try:
            return self.session.run(*args, **kwargs)
        finally:
            self.runs[-1] = (self.runs[-1][0], time.perf_counter())

    def __getattr__(self, name):
        return getattr(self.session, name)


def test_piper_cancel_terminates_the_running_inference(server_factory, wire):
    """DESIGN 4: cancel stops synthesis mid-inference (``RunOptions.terminate``), so the
    engine is free again long before the clause would have finished."""
    from rxtts.server.engines.piper import PiperEngine

    # Whole-sentence decode: one long inference to terminate (streaming decode checks the
    # cancel between decoder windows; tests/test_piper_streaming.py covers that).
    engine = PiperEngine(threads=1, streaming=False)
    engine.warm_up()
    model = engine._load()
    spy = RunSpy(model.whole)
    object.__setattr__(model, "whole", spy)  # frozen dataclass; the spy sees every run
    server = server_factory(engine)

    async def main():
        async with wire.connect(server, "/ws/tts/stream") as ws:
            # Uncancelled first: how long the one inference takes here.
            await ws.send(
                {"text": ONE_CLAUSE, "flush": True, "voice_id": VOICE, "chunk_length_schedule": [900]}
            )
            await ws.recv_until(lambda f: f.get("session_closed"), timeout=60)
            full = spy.runs[-1][1] - spy.runs[-1][0]
            spy.started.clear()
            await ws.send({"text": ONE_CLAUSE, "flush": True})
            while not spy.started.is_set():
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.05)
            cancelled_at = time.perf_counter()
            await ws.send({"cancel": True})
            await ws.recv_until(lambda f: f.get("interrupted"), timeout=10)
            while spy.runs[-1][1] is None:
                await asyncio.sleep(0.005)
            return full, spy.runs[-1][1] - cancelled_at

    full, busy_after_cancel = wire.run(main(), timeout=120)
    print(f"\npiper one inference {full * 1000:.0f} ms; busy {busy_after_cancel * 1000:.0f} ms after cancel")
    assert full > 0.4  # long enough that finishing it would be visible
    assert busy_after_cancel < min(0.2, full / 3)
