"""``synthesize()`` and ``encode_audio()``: order, low TTFA, cancel on dispose, framing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import reactivex
from reactivex.scheduler.eventloop import AsyncIOThreadSafeScheduler
from reactivex.subject import Subject

from rxtts.audio.g711 import decode_samples
from rxtts.audio.resample import resample
from rxtts.engine import Alignment, CancelToken, EngineBlock, SynthesisSettings, VoiceInfo, WordTiming
from rxtts.operators import FLUSH, encode_audio, synthesize
from rxtts.operators.encode_audio import EncodedAudio
from rxtts.operators.synthesize import BlockAlignment, BlockAudio, ChunkDone, ChunkStarted, FlushReached
from rxtts.server.engines.piper import PIPER_VOICES
from rxtts.server.engines.tone import TONE_VOICES, ToneEngine

VOICE = TONE_VOICES[0]


class Recorder:
    """Collects events; ``done`` is set on completion or error."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.threads: set[int] = set()
        self.error: Exception | None = None
        self.done = threading.Event()

    def on_next(self, event: Any) -> None:
        self.threads.add(threading.get_ident())
        self.events.append(event)

    def on_error(self, error: Exception) -> None:
        self.error = error
        self.done.set()

    def on_completed(self) -> None:
        self.done.set()

    def kinds(self) -> list[str]:
        names = {
            ChunkStarted: "S",
            BlockAlignment: "L",
            BlockAudio: "A",
            ChunkDone: "D",
            FlushReached: "F",
            EncodedAudio: "E",
        }
        return [names[type(e)] for e in self.events]


class GatedEngine:
    """Yields one block, then waits for ``release`` (or cancel) before the second."""

    name = "gated"
    sample_rate = 16000

    def __init__(self) -> None:
        self.release = threading.Event()
        self.cancelled = threading.Event()
        self.calls: list[str] = []

    def voices(self) -> tuple[VoiceInfo, ...]:
        return TONE_VOICES

    def warm_up(self) -> None:
        pass

    def synthesize(
        self, text: str, voice: VoiceInfo, settings: SynthesisSettings, cancel: CancelToken
    ) -> Iterator[np.ndarray]:
        self.calls.append(text)
        cancel.add_hook(self.cancelled.set)
        yield np.full(1600, 0.1, dtype=np.float32)
        while not self.release.wait(0.01):
            if cancel.cancelled:
                return
        yield np.full(1600, 0.2, dtype=np.float32)


def run(source, *operators) -> Recorder:
    rec = Recorder()
    source.pipe(*operators).subscribe(rec.on_next, rec.on_error, rec.on_completed)
    assert rec.done.wait(10)
    return rec


def test_chunks_are_spoken_one_after_another_with_flush_in_order():
    engine = ToneEngine(block_ms=50)
    rec = run(reactivex.of("Hello there.", "  ", FLUSH, "Bye."), synthesize(engine, VOICE))
    assert rec.error is None
    kinds = "".join(rec.kinds())
    assert kinds == "S" + "A" * 3 + "D" + "F" + "S" + "A" + "D"  # 120 ms / 50 ms blocks; blank skipped
    started = [e.text for e in rec.events if isinstance(e, ChunkStarted)]
    assert started == ["Hello there.", "Bye."]
    done = [e for e in rec.events if isinstance(e, ChunkDone)]
    assert done[0].audio_seconds == pytest.approx(0.12) and done[1].audio_seconds == pytest.approx(0.04)
    assert all(d.gen_ms >= 0 for d in done)
    audio = [e for e in rec.events if isinstance(e, BlockAudio)]
    assert all(a.sample_rate == 24000 and a.samples.dtype == np.float32 for a in audio)


def test_engine_runs_off_the_subscribing_thread_and_operator_is_cold():
    engine = ToneEngine()
    op = synthesize(engine, VOICE, executor=ThreadPoolExecutor(1))
    source = reactivex.of("One.", FLUSH)
    first, second = run(source, op), run(source, op)
    assert first.kinds() == second.kinds() == ["S", "A", "D", "F"]
    worker_threads = first.threads - {threading.get_ident()}
    assert worker_threads  # audio came from the worker (no scheduler given)


def test_first_block_is_emitted_before_the_chunk_finishes():
    engine = GatedEngine()
    rec = Recorder()
    reactivex.of("Gated.").pipe(synthesize(engine, VOICE)).subscribe(
        rec.on_next, rec.on_error, rec.on_completed
    )
    for _ in range(200):
        if any(isinstance(e, BlockAudio) for e in rec.events):
            break
        threading.Event().wait(0.01)
    assert rec.kinds() == ["S", "A"]  # first block out while the engine still works
    engine.release.set()
    assert rec.done.wait(5)
    assert rec.kinds() == ["S", "A", "A", "D"]


def test_dispose_cancels_engine_mid_chunk_and_drops_queue():
    engine = GatedEngine()
    rec = Recorder()
    text: Subject[Any] = Subject()
    sub = text.pipe(synthesize(engine, VOICE)).subscribe(rec.on_next, rec.on_error, rec.on_completed)
    text.on_next("First.")
    text.on_next("Queued.")
    text.on_next(FLUSH)
    for _ in range(200):
        if rec.events and isinstance(rec.events[-1], BlockAudio):
            break
        threading.Event().wait(0.01)
    sub.dispose()
    assert engine.cancelled.wait(1)  # CancelToken fired: piper would terminate run()
    engine.release.set()
    threading.Event().wait(0.1)
    assert rec.kinds() == ["S", "A"]  # nothing after dispose
    assert engine.calls == ["First."]  # the queued chunk never reached the engine
    assert not rec.done.is_set()


def test_engine_error_is_forwarded():
    class Broken(ToneEngine):
        def synthesize(self, *args: Any, **kwargs: Any) -> Iterator[np.ndarray]:
            raise RuntimeError("model exploded")
            yield  # pragma: no cover

    rec = run(reactivex.of("Boom."), synthesize(Broken(), VOICE))
    assert isinstance(rec.error, RuntimeError) and "exploded" in str(rec.error)


def test_scheduler_delivers_every_event_on_the_event_loop():
    async def main() -> tuple[list[str], set[int], int]:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        rec = Recorder()
        scheduler = AsyncIOThreadSafeScheduler(loop)
        reactivex.of("On the loop.", FLUSH).pipe(
            synthesize(ToneEngine(), VOICE, scheduler=scheduler)
        ).subscribe(rec.on_next, rec.on_error, lambda: done.set())
        await asyncio.wait_for(done.wait(), 5)
        return rec.kinds(), rec.threads, threading.get_ident()

    kinds, threads, loop_thread = asyncio.run(main())
    assert kinds == ["S", "A", "A", "D", "F"]  # 120 ms of tone in 100 ms blocks
    assert threads == {loop_thread}


class AligningEngine(ToneEngine):
    """Two "sentences" of two blocks each; the first block of each carries its words."""

    def synthesize_blocks(
        self, text: str, voice: VoiceInfo, settings: SynthesisSettings, cancel: CancelToken
    ) -> Iterator[EngineBlock]:
        for k, word in enumerate(text.split()):
            timing = WordTiming(
                word, text.index(word), text.index(word) + len(word), 3200 * k, 3200 * (k + 1)
            )
            yield EngineBlock(np.full(1600, 0.1, np.float32), Alignment((timing,), self.sample_rate))
            yield EngineBlock(np.full(1600, 0.2, np.float32))


def test_alignment_is_emitted_before_the_audio_it_times():
    rec = run(reactivex.of("Hello there.", FLUSH), synthesize(AligningEngine(), VOICE))
    assert rec.error is None
    assert "".join(rec.kinds()) == "SLAALAADF"
    alignments = [e.alignment for e in rec.events if isinstance(e, BlockAlignment)]
    assert [w.word for a in alignments for w in a.words] == ["Hello", "there."]
    assert alignments[1].words[0].start_sample == 3200 and alignments[0].sample_rate == 24000
    done = next(e for e in rec.events if isinstance(e, ChunkDone))
    assert done.audio_seconds == pytest.approx(4 * 1600 / 24000)


def test_engines_yielding_arrays_give_no_alignment_events():
    rec = run(
        reactivex.of("Hello there.", FLUSH),
        synthesize(ToneEngine(), VOICE, SynthesisSettings(alignment=True)),
    )
    assert "L" not in rec.kinds() and rec.kinds()[0] == "S"


@pytest.mark.slow
def test_piper_alignment_reaches_the_operator_before_each_sentence_audio(piper_engine):
    settings = SynthesisSettings(alignment=True)
    rec = run(reactivex.of("One. Two is here.", FLUSH), synthesize(piper_engine, PIPER_VOICES[0], settings))
    kinds = "".join(rec.kinds())
    assert kinds.startswith("SLA") and kinds.count("L") == 2 and kinds.endswith("DF")
    words = [w.word for e in rec.events if isinstance(e, BlockAlignment) for w in e.alignment.words]
    assert words == ["One", "Two", "is", "here"]


class LeadingSilenceEngine(ToneEngine):
    """Each chunk: an aligned block of 64 ms silence (24 silence-detector windows of 64
    samples at 24 kHz) then 40 ms of sound, then 100 ms of sound."""

    LEAD = 1536

    def synthesize_blocks(
        self, text: str, voice: VoiceInfo, settings: SynthesisSettings, cancel: CancelToken
    ) -> Iterator[EngineBlock]:
        rate = self.sample_rate
        first = np.concatenate([np.zeros(self.LEAD, np.float32), np.full(rate // 25, 0.3, np.float32)])
        timing = WordTiming(text, 0, len(text), 1500, 4800)
        yield EngineBlock(first, Alignment((timing,), rate))
        yield EngineBlock(np.full(rate // 10, 0.3, np.float32))


def test_lead_s_cuts_only_the_first_chunks_leading_silence_and_shifts_its_words():
    engine = LeadingSilenceEngine()
    rate = engine.sample_rate
    rec = run(reactivex.of("One.", "Two.", FLUSH), synthesize(engine, VOICE, lead_s=0.01))
    assert rec.error is None
    audio = [e.samples for e in rec.events if isinstance(e, BlockAudio)]
    words = [e.alignment.words[0] for e in rec.events if isinstance(e, BlockAlignment)]
    cut = engine.LEAD - rate // 100
    # chunk 0: 10 ms of the 64 ms lead left, its word as much earlier
    assert int(np.flatnonzero(audio[0])[0]) == rate // 100
    assert (words[0].start_sample, words[0].end_sample) == (1500 - cut, 4800 - cut)
    # chunk 1 is a seam inside the turn: untouched
    assert int(np.flatnonzero(audio[2])[0]) == engine.LEAD
    assert words[1].start_sample == 1500
    done = [e.audio_seconds for e in rec.events if isinstance(e, ChunkDone)]
    assert done == [pytest.approx(0.204 - cut / rate), pytest.approx(0.204)]  # the cut is not billed
    assert "".join(rec.kinds()) == "SLAADSLAADF"  # the words still lead their audio


def test_lead_s_keeps_a_silent_chunk_and_none_keeps_every_lead():
    class Silent(ToneEngine):
        def synthesize(self, *args: Any, **kwargs: Any) -> Iterator[np.ndarray]:
            yield np.zeros(2400, np.float32)

    rec = run(reactivex.of("...", FLUSH), synthesize(Silent(), VOICE, lead_s=0.01))
    assert sum(e.samples.size for e in rec.events if isinstance(e, BlockAudio)) == 2400
    engine = LeadingSilenceEngine()
    rec = run(reactivex.of("One.", FLUSH), synthesize(engine, VOICE))
    first = next(e.samples for e in rec.events if isinstance(e, BlockAudio))
    assert int(np.flatnonzero(first)[0]) == engine.LEAD


class SettingsSpy(ToneEngine):
    """Records each call's ``early_audio``; audio: ``len(text)`` tenths of a second."""

    def __init__(self) -> None:
        super().__init__()
        self.early: list[bool] = []

    def synthesize(
        self, text: str, voice: VoiceInfo, settings: SynthesisSettings, cancel: CancelToken
    ) -> Iterator[np.ndarray]:
        self.early.append(settings.early_audio)
        yield np.full(len(text) * self.sample_rate // 10, 0.2, np.float32)


def test_early_audio_only_while_the_listener_may_be_waiting() -> None:
    engine = SettingsSpy()
    # "ab" is 0.2 s of audio: the listener of "abcdefghijklmnopqrst" (2 s) may wait;
    # "xy" then has ~2.2 s of audio ahead of real-time playback: the cheap decode.
    run(reactivex.of("ab", "abcdefghijklmnopqrst", "xy", FLUSH), synthesize(engine, VOICE))
    assert engine.early == [True, True, False]
    never = SettingsSpy()
    run(reactivex.of("ab", "cd"), synthesize(never, VOICE, SynthesisSettings(early_audio=False)))
    assert never.early == [False, False]  # a caller's False is kept


# -- encode_audio -----------------------------------------------------------------------------


def synth_events(blocks: list[np.ndarray], rate: int) -> list[Any]:
    total = sum(len(b) for b in blocks) / rate
    return [ChunkStarted("x"), *(BlockAudio(b, rate) for b in blocks), ChunkDone(total, 5.0), FlushReached()]


def test_encode_audio_resamples_frames_and_reports_sent_seconds():
    rate = 22050
    t = np.arange(rate) / rate
    wave = (0.5 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    blocks = [wave[:5000], wave[5000:12000], wave[12000:]]
    rec = run(reactivex.from_iterable(synth_events(blocks, rate)), encode_audio("pcm_24000", frame_ms=80))
    kinds = rec.kinds()
    assert kinds[0] == "S" and kinds[-2:] == ["D", "F"] and set(kinds[1:-2]) == {"E"}
    frames = [e for e in rec.events if isinstance(e, EncodedAudio)]
    assert all(f.encoding == "pcm_s16le" and f.sample_rate == 24000 for f in frames)
    assert all(len(f.data) == 2 * f.samples for f in frames)
    # The first block goes out whole (its tail as a short frame: no dead air while the
    # next decoder window runs); whole 80 ms frames after it, a short one at the end.
    first_block = round(5000 * 24000 / 22050)
    sent, k = 0, 0
    while sent < first_block - 50:  # the resampler keeps a few ms back
        sent += frames[k].samples
        k += 1
    assert all(f.samples == 1920 for f in frames[k:-1])
    total = sum(f.samples for f in frames)
    assert abs(total - 24000) <= 2
    done = rec.events[-2]
    assert done.audio_seconds == pytest.approx(total / 24000) and done.gen_ms == 5.0
    # Streaming per chunk equals the one-shot resample: no clicks at block joins.
    pcm = np.concatenate([np.frombuffer(f.data, "<i2") for f in frames]).astype(np.float64) / 32768
    ref = resample(wave, rate, 24000).astype(np.float64)
    n = min(len(pcm), len(ref))
    assert np.max(np.abs(pcm[:n] - ref[:n])) < 2e-3


def test_encode_audio_first_frame_goes_out_at_once_whatever_its_size():
    rec = Recorder()
    source: Subject[Any] = Subject()
    source.pipe(encode_audio("pcm_24000", frame_ms=100)).subscribe(
        rec.on_next, rec.on_error, rec.on_completed
    )
    source.on_next(ChunkStarted("x"))
    source.on_next(BlockAudio(np.full(480, 0.1, np.float32), 24000))  # 20 ms < one frame
    assert rec.kinds() == ["S", "E"] and rec.events[1].samples == 480
    source.on_next(BlockAudio(np.full(480, 0.1, np.float32), 24000))
    assert rec.kinds() == ["S", "E"]  # later frames wait for a whole frame...
    source.on_next(ChunkDone(0.04, 1.0))
    assert rec.kinds() == ["S", "E", "E", "D"]  # ...or the end of the chunk
    assert rec.events[2].samples == 480


@pytest.mark.parametrize(("fmt", "enc"), [("ulaw_8000", "mulaw"), ("alaw_8000", "alaw")])
def test_encode_audio_g711_at_8k(fmt, enc):
    rate = 24000
    t = np.arange(rate // 2) / rate
    wave = (0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    rec = run(reactivex.from_iterable(synth_events([wave], rate)), encode_audio(fmt, frame_ms=40))
    frames = [e for e in rec.events if isinstance(e, EncodedAudio)]
    assert {(f.encoding, f.sample_rate) for f in frames} == {(enc, 8000)}
    assert all(len(f.data) == f.samples <= 320 for f in frames)
    pcm = decode_samples(b"".join(f.data for f in frames), enc).astype(float)
    assert abs(len(pcm) - 4000) <= 2
    peak = np.fft.rfftfreq(len(pcm), 1 / 8000)[int(np.argmax(np.abs(np.fft.rfft(pcm))))]
    assert abs(peak - 440) < 5


def test_encode_audio_rejects_bad_arguments():
    with pytest.raises(ValueError):
        encode_audio("mp3_44100")
    with pytest.raises(ValueError):
        encode_audio("pcm_24000", frame_ms=5)


def test_full_chain_tone_to_wire_frames_in_virtual_order():
    rec = run(
        reactivex.of("First sentence.", FLUSH),
        synthesize(ToneEngine(sample_rate=16000), VOICE),
        encode_audio("pcm_8000", frame_ms=50),
    )
    kinds = rec.kinds()
    assert kinds[0] == "S" and kinds[-2:] == ["D", "F"]
    frames = [e for e in rec.events if isinstance(e, EncodedAudio)]
    assert sum(f.samples for f in frames) == pytest.approx(0.15 * 8000, abs=2)
