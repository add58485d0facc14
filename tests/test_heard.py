"""heard(clock): virtual-time unit tests, then a real turn against the tone server.

The scripted turn (1000 Hz audio, so 1 sample = 1 ms) has two chunks::

    chunk 0 "Hello there, world."  1.9 s   Hello 0-500, there, 500-1100, world. 1100-1900
    chunk 1 "How are you?"         1.2 s   How 0-400, are 400-800, you? 800-1200

All audio arrives at t=1.0..1.3 and plays on a SimulatedClock from t=1.0 (no start
delay), so the playback position at time t is t - 1.0.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import reactivex
from reactivex import Observable
from reactivex import operators as ops
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.subject import Subject
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.recorded import Recorded

from rxtts.audio.clock import SimulatedClock, ttfa
from rxtts.client.session import StreamingSession
from rxtts.config import StreamConfig
from rxtts.events import (
    AudioChunk,
    ChunkComplete,
    Final,
    GenerationStarted,
    Heard,
    Interrupted,
    SessionClosed,
    TurnMetrics,
    WordTimestamp,
    WordTimestamps,
)
from rxtts.operators import play
from rxtts.operators.heard import align, heard, heard_at
from rxtts.server.embedded import RunningServer
from rxtts.server.engines.tone import ToneEngine
from rxtts.server.pipeline import estimate_word_timestamps

SR = 1000
TEXT = "Hello there, world. How are you?"
CHUNK0 = "Hello there, world."
CHUNK1 = "How are you?"
WORDS0 = (("Hello", 0, 500), ("there,", 500, 1100), ("world.", 1100, 1900))
WORDS1 = (("How", 0, 400), ("are", 400, 800), ("you?", 800, 1200))
on_next = ReactiveTest.on_next
on_completed = ReactiveTest.on_completed
on_error = ReactiveTest.on_error


def audio(ms: int, chunk_id: int, index: int, context_id: str | None = None) -> AudioChunk:
    data = np.full(ms, 5000, dtype="<i2").tobytes()
    return AudioChunk(data, SR, "pcm_s16le", index, chunk_id, context_id=context_id, turn=0)


def stamps(
    text: str, words: Sequence[tuple[str, int, int]], chunk_id: int, score: float = 1.0
) -> WordTimestamps:
    out, cursor = [], 0
    for word, start, end in words:
        at = text.index(word, cursor)
        out.append(WordTimestamp(word, start, end, at, at + len(word), score))
        cursor = at + len(word)
    return WordTimestamps(tuple(out), chunk_id, turn=0)


def turn_messages(
    timestamps: str = "after", score: float = 1.0, terminal: bool = True
) -> list[Recorded[Any]]:
    """The scripted turn; ``timestamps`` is ``after`` (today), ``before`` or ``none``."""
    w0, w1 = stamps(CHUNK0, WORDS0, 0, score), stamps(CHUNK1, WORDS1, 1, score)
    msgs: list[tuple[float, Any]] = [(1.0, GenerationStarted(0, CHUNK0, turn=0))]
    if timestamps == "before":
        msgs.append((1.0, w0))
    msgs += [(1.0, audio(1000, 0, 0)), (1.05, audio(900, 0, 1))]
    if timestamps == "after":
        msgs.append((1.1, w0))
    msgs += [(1.1, ChunkComplete(0, 1.9, 5.0, turn=0)), (1.2, GenerationStarted(1, CHUNK1, turn=0))]
    if timestamps == "before":
        msgs.append((1.2, w1))
    msgs.append((1.25, audio(1200, 1, 2)))
    if timestamps == "after":
        msgs.append((1.3, w1))
    msgs.append((1.3, ChunkComplete(1, 1.2, 5.0, turn=0)))
    out = [on_next(t, e) for t, e in msgs]
    if terminal:
        out += [on_next(1.3, Final(3.1, 2, 3, turn=0)), on_next(1.3, SessionClosed(3.1, 2, 3, turn=0))]
        out.append(on_completed(1.3))
    return out


def run_cut(
    cut_at: float | None,
    timestamps: str = "after",
    order: str = "heard-first",
    score: float = 1.0,
) -> tuple[list[Heard], list[Any], SimulatedClock]:
    """Play the turn on a SimulatedClock; the user speaks at ``cut_at`` (None: never)."""
    s = TestScheduler()
    clock = SimulatedClock(s)
    source = s.create_hot_observable(*turn_messages(timestamps, score))
    user = s.create_hot_observable(on_next(cut_at, "user")) if cut_at is not None else reactivex.never()
    results: list[Heard] = []
    if order == "heard-first":  # turn.pipe(heard(clock), ops.take_until(user_speaks))
        pipeline = source.pipe(play(clock), heard(clock, TEXT, on_heard=results.append), ops.take_until(user))
    else:  # turn.pipe(ops.take_until(user_speaks), heard(clock))
        pipeline = source.pipe(play(clock), ops.take_until(user), heard(clock, TEXT, on_heard=results.append))
    observer = s.create_observer()
    pipeline.subscribe(observer, scheduler=s)
    s.start()
    return results, observer.messages, clock


def heard_events(messages: list[Any]) -> list[Heard]:
    return [m.value.value for m in messages if m.value.kind == "N" and isinstance(m.value.value, Heard)]


# -- the operator, virtual time ---------------------------------------------------------------


@pytest.mark.parametrize("timestamps", ["after", "before"])
def test_cut_mid_word_heard_are_the_words_ended_by_the_position(timestamps: str) -> None:
    results, _, clock = run_cut(2.3, timestamps)  # position 1.3: inside "world." (1.1-1.9)
    [h] = results
    assert h.heard_text == "Hello there,"
    assert h.cut_word == "world."
    assert h.unheard_text == " world. How are you?"
    assert h.heard_text + h.unheard_text == TEXT
    assert TEXT[h.cut_char_start : h.cut_char_end] == "world."  # type: ignore[misc]
    assert h.history_text() == "Hello there,"
    assert h.history_text(include_cut_word=True) == "Hello there, world."
    assert h.heard_seconds == pytest.approx(1.3)
    assert h.received_seconds == pytest.approx(3.1)
    assert (h.words_heard, h.estimated, h.reason, h.turn) == (2, False, "disposed", 0)
    assert clock.position((None, 0)) == pytest.approx(1.3)  # stopped by the barge-in


def test_cut_in_the_second_chunk_offsets_chunk_times_by_the_first_chunks_audio() -> None:
    [h] = run_cut(1.0 + 1.9 + 0.5)[0]  # 0.5 s into chunk 1: "How" heard, "are" playing
    assert h.heard_text == "Hello there, world. How"
    assert h.cut_word == "are"
    assert h.words_heard == 4


def test_cut_exactly_at_a_word_end_has_no_cut_word() -> None:
    [h] = run_cut(1.0 + 1.1)[0]
    assert h.heard_text == "Hello there,"
    assert h.cut_word is None and h.cut_char_end is None
    assert h.history_text(include_cut_word=True) == "Hello there,"


def test_timestamps_not_arrived_yet_fall_back_to_an_estimate() -> None:
    # Cut at 1.08: chunk 0's timestamps come at 1.1 (after its audio), so its words are
    # spread by length over its received audio: Hello, there, world. = 6+7+7 weights.
    [h] = run_cut(1.08)[0]
    assert h.estimated
    assert h.heard_seconds == pytest.approx(0.08)
    assert h.heard_text == "" and h.cut_word == "Hello"


def test_without_timestamps_words_share_the_chunk_audio_by_characters() -> None:
    # chunk 0: 1.9 s over weights 6, 7, 7 -> Hello ends 0.57 s, there, ends 1.235 s
    [h] = run_cut(1.0 + 1.2, timestamps="none")[0]
    assert (h.heard_text, h.cut_word) == ("Hello", "there,")
    [h] = run_cut(1.0 + 1.25, timestamps="none")[0]
    assert (h.heard_text, h.cut_word, h.estimated) == ("Hello there,", "world.", True)


@pytest.mark.parametrize(("score", "estimated"), [(1.0, False), (0.95, False), (0.5, True)])
def test_score_tells_real_from_estimated_times(score: float, estimated: bool) -> None:
    [h] = run_cut(2.3, score=score)[0]
    assert h.estimated is estimated


def test_take_until_upstream_emits_heard_as_the_last_event() -> None:
    results, messages, clock = run_cut(1.2, order="take-until-first")  # before SessionClosed
    [h] = heard_events(messages)
    assert results == [h]
    assert messages[-2].value.value is h and messages[-1].value.kind == "C"
    assert messages[-1].time == pytest.approx(1.2)
    assert (h.heard_text, h.cut_word, h.reason) == ("", "Hello", "cut_short")
    assert clock.remaining((None, 0)) == 0.0  # the rest was dropped at the cut


def test_take_until_upstream_after_the_server_finished_needs_the_clock_stopped() -> None:
    s = TestScheduler()
    clock = SimulatedClock(s)
    source = s.create_hot_observable(*turn_messages())
    observer = s.create_observer()
    user = s.create_hot_observable(on_next(2.3, "user"))
    source.pipe(play(clock), ops.take_until(user), heard(clock, TEXT)).subscribe(observer, scheduler=s)
    user.subscribe(lambda _: clock.stop((None, 0)))  # the VAD stops the playout itself
    s.start()
    [h] = heard_events(observer.messages)
    emitted = next(m.time for m in observer.messages if m.value.kind == "N" and m.value.value is h)
    assert 2.3 <= emitted <= 2.3 + 0.05  # found by the playout wait within POLL_SECONDS
    assert (h.heard_text, h.cut_word, h.reason) == ("Hello there,", "world.", "stopped")


def test_heard_first_order_delivers_through_on_heard_only_on_disposal() -> None:
    results, messages, _ = run_cut(2.3)
    assert heard_events(messages) == []  # take_until completed downstream first
    assert [h.reason for h in results] == ["disposed"]


def test_a_finished_turn_is_heard_when_it_has_played_out() -> None:
    results, messages, _ = run_cut(None)
    [h] = heard_events(messages)
    assert results == [h]
    heard_at_time = next(m.time for m in messages if m.value.kind == "N" and m.value.value is h)
    assert heard_at_time == pytest.approx(1.0 + 3.1, abs=1e-6)  # the end of the playout
    assert h.complete and h.heard_text == TEXT and h.reason == "completed" and h.cut_word is None
    assert [type(m.value.value).__name__ for m in messages[-4:-1]] == ["Final", "SessionClosed", "Heard"]


def test_barge_in_during_the_playout_of_a_finished_turn() -> None:
    # The server finished at 1.3, the user talks at 3.5 while "are" (0.4-0.8 of chunk 1) plays
    [h] = run_cut(1.0 + 1.9 + 0.6)[0]
    assert (h.heard_text, h.cut_word, h.reason) == ("Hello there, world. How", "are", "disposed")


def test_interrupted_event_stops_the_clock_and_emits_heard_after_it() -> None:
    s = TestScheduler()
    clock = SimulatedClock(s)
    msgs = [m for m in turn_messages() if m.time <= 1.1] + [on_next(1.6, Interrupted()), on_completed(1.6)]
    source = s.create_hot_observable(*msgs)
    observer = s.create_observer()
    source.pipe(play(clock), heard(clock, TEXT)).subscribe(observer, scheduler=s)
    s.start()
    kinds = [type(m.value.value).__name__ for m in observer.messages if m.value.kind == "N"]
    assert kinds[-2:] == ["Interrupted", "Heard"]
    [h] = heard_events(observer.messages)
    assert (h.heard_text, h.cut_word, h.reason) == ("Hello", "there,", "interrupted")
    assert clock.position((None, 0)) == pytest.approx(0.6)


def test_error_emits_heard_then_the_error() -> None:
    s = TestScheduler()
    clock = SimulatedClock(s)
    boom = RuntimeError("socket lost")
    msgs = [m for m in turn_messages() if m.time <= 1.1] + [on_error(1.6, boom)]
    observer = s.create_observer()
    s.create_hot_observable(*msgs).pipe(play(clock), heard(clock)).subscribe(observer, scheduler=s)
    s.start()
    assert observer.messages[-1].value.kind == "E"
    [h] = heard_events(observer.messages)
    # no text given: the chunk texts are the turn's text
    assert (h.text, h.heard_text, h.reason) == (CHUNK0, "Hello", "error")


def test_offsets_index_the_sent_text_despite_whitespace_differences() -> None:
    sent = "  Hello   there,\n world.  How are\tyou?"
    results: list[Heard] = []
    s = TestScheduler()
    clock = SimulatedClock(s)
    source = s.create_hot_observable(*turn_messages())
    user = s.create_hot_observable(on_next(1.0 + 1.9 + 0.5, "user"))
    source.pipe(
        play(clock), heard(clock, lambda: sent, on_heard=results.append), ops.take_until(user)
    ).subscribe(scheduler=s)
    s.start()
    [h] = results
    assert h.heard_text == "  Hello   there,\n world.  How"
    assert sent[h.cut_char_start : h.cut_char_end] == "are"  # type: ignore[misc]
    assert h.unheard_text == " are\tyou?"


def test_align_resynchronises_after_a_normalised_word() -> None:
    mapping, end = align("I have 2 cats.", "I have two cats. More")
    assert mapping[9] == "I have two cats. More".index("cats")
    assert end == len("I have two cats.")


def test_heard_carries_the_turn_identity_and_passes_every_event_through() -> None:
    s = TestScheduler()
    clock = SimulatedClock(s)
    events = [GenerationStarted(0, "Hi there.", context_id="b", turn=2), audio(500, 0, 0, "b")]
    events = [events[0], AudioChunk(events[1].audio, SR, "pcm_s16le", 0, 0, context_id="b", turn=2)]
    observer = s.create_observer()
    reactivex.from_iterable(events).pipe(play(clock), heard(clock)).subscribe(observer, scheduler=s)
    s.start()
    values = [m.value.value for m in observer.messages if m.value.kind == "N"]
    assert values[:2] == events
    [h] = heard_events(observer.messages)
    assert (h.context_id, h.turn, h.heard_seconds) == ("b", 2, 0.0)  # cut short at once


def test_heard_at_on_recorded_events() -> None:
    events = [m.value.value for m in turn_messages() if m.value.kind == "N"]
    h = heard_at(events, 1.9 + 1.2, TEXT)
    assert h.complete and h.words_heard == 6
    assert heard_at(events, 0.0, TEXT).heard_text == ""


def test_operator_is_cold_and_reusable() -> None:
    results: list[Heard] = []
    op = heard(SimulatedClock(TestScheduler()), TEXT, on_heard=results.append)
    for _ in range(2):
        s = TestScheduler()
        observer = s.create_observer()
        s.create_hot_observable(*turn_messages()).pipe(op).subscribe(observer, scheduler=s)
        s.start()
        [h] = heard_events(observer.messages)
        # that clock was never fed: nothing played, so the turn did not play out
        assert (h.heard_seconds, h.words_heard, h.reason) == (0.0, 0, "stopped")
    assert len(results) == 2


# -- a real turn against the tone server -------------------------------------------------------

SENTENCES = (
    "The quick brown fox jumps over the lazy dog while the farmer watches from the porch "
    "and sips his morning coffee.",
    "Meanwhile, in the kitchen, grandmother prepares a splendid breakfast of pancakes, "
    "fresh berries and maple syrup.",
    "Everyone agrees that nothing beats a slow Sunday morning in the countryside, far "
    "away from the noise of the city.",
)
SENT = " ".join(SENTENCES)


def mid_word_tokens(text: str, rng: random.Random) -> list[str]:
    """Split anywhere (mid-word included), 2-6 characters per token like an LLM stream."""
    out, i = [], 0
    while i < len(text):
        n = rng.randint(2, 6)
        out.append(text[i : i + n])
        i += n
    return out


MS = 0.001
"""Resolution of word times on the wire (integer ms, PROTOCOL 3.3)."""


def expected_words(events: Sequence[Any], position: float) -> tuple[list[str], int, bool]:
    """Independent oracle: the words whose end time (on the turn's timeline) <= position.

    Word times are the server's: its ``word_timestamps`` frames, or, for a chunk cut
    before they came (they follow the chunk's audio), what the server would have sent
    (its estimator over the tone engine's audio length for the chunk text). Returns the
    words, how many more end within 1 ms of the position (the wire's resolution: either
    way is right), and whether the operator can know the times exactly: every chunk up to the cut
    complete, or an earlier chunk complete (its seconds per character extrapolate the cut
    chunk exactly on the tone engine). Else the operator may only err towards fewer words.
    """
    durations: dict[int, float] = {}
    texts: dict[int, str] = {}
    stamped: dict[int, tuple[WordTimestamp, ...]] = {}
    completed: set[int] = set()
    for e in events:
        if isinstance(e, AudioChunk):
            assert e.chunk_id is not None
            durations[e.chunk_id] = durations.get(e.chunk_id, 0.0) + e.duration
        elif isinstance(e, GenerationStarted):
            texts[e.chunk_id] = e.text
        elif isinstance(e, WordTimestamps):
            assert e.chunk_id is not None
            stamped[e.chunk_id] = e.words
        elif isinstance(e, ChunkComplete):
            completed.add(e.chunk_id)
    tone = ToneEngine()
    out: list[str] = []
    near = 0
    start = 0.0
    for cid in sorted(durations):
        # rxtts servers send word times on the turn's timeline; the estimate is per chunk
        words = stamped.get(cid)
        base = 0.0
        if not words:
            words = estimate_word_timestamps(texts[cid], tone.samples_for(texts[cid]) / tone.sample_rate)
            base = start
        for w in words:
            end = base + w.end_ms / 1000
            if end > position + MS:
                return out, near, cid in completed or bool(completed)
            if end > position - MS:
                near += 1
            else:
                out.append(w.word)
        start += durations[cid]
    return out, near, True


async def one_barge_in(
    session: StreamingSession, tokens: list[str], rate: float, cut_after: float
) -> tuple[Heard, list[Any], float]:
    loop = asyncio.get_running_loop()
    scheduler = AsyncIOScheduler(loop)
    clock = SimulatedClock(scheduler)
    user = Subject[str]()
    results: list[Heard] = []
    events: list[Any] = []
    sent: list[str] = []
    source: Observable[str] = reactivex.from_iterable(tokens).pipe(
        ops.map(lambda tok: reactivex.timer(1 / rate, scheduler=scheduler).pipe(ops.map(lambda _: tok))),
        ops.merge(max_concurrent=1),  # one after another: a steady LLM pace
        ops.do_action(sent.append),
    )
    cut_at: list[float] = []

    def user_talks() -> None:
        cut_at.append(clock.position((None, turn_no[0])) if turn_no else 0.0)
        user.on_next("user")

    turn_no: list[int] = []

    def record(e: Any) -> None:
        events.append(e)
        if not turn_no and getattr(e, "turn", None) is not None:
            turn_no.append(e.turn)
            loop.call_later(cut_after, user_talks)  # the user talks cut_after s into the turn

    done = loop.create_future()
    session.speak(source).pipe(
        ops.do_action(record),
        play(clock),
        heard(clock, lambda: "".join(sent), on_heard=results.append, scheduler=scheduler),
        ops.take_until(user),
    ).subscribe(on_completed=lambda: done.set_result(None), on_error=done.set_exception, scheduler=scheduler)
    await asyncio.wait_for(done, 20)
    for _ in range(100):
        if results:
            break
        await asyncio.sleep(0.05)
    [h] = results
    return h, events, "".join(sent)


def test_real_turn_barge_in_at_random_moments(tone_server: RunningServer) -> None:
    rng = random.Random(13)
    plans = [(rng.uniform(0.05, 4.5), mid_word_tokens(SENT, rng), rng.uniform(30, 40)) for _ in range(20)]

    async def one(moment: float, tokens: list[str], rate: float) -> tuple[Heard, list[Any], str]:
        url = f"{tone_server.url}/ws/tts/stream"
        session = StreamingSession(url, StreamConfig(voice_id=1071, word_timestamps=True))
        try:
            await session.connect()
            return await one_barge_in(session, tokens, rate, moment)
        finally:
            await session.close()

    async def main() -> list[tuple[Heard, list[Any], str]]:
        # 20 listeners at once (one socket each): the moments run concurrently
        return list(await asyncio.gather(*(one(*plan) for plan in plans)))

    runs = asyncio.run(asyncio.wait_for(main(), 60))
    reasons = set()
    for h, events, sent in runs:
        reasons.add(h.reason)
        assert len(runs) == 20
        assert sent == SENT[: len(sent)]
        assert h.text == sent
        assert h.heard_text == sent[: h.char_end] and h.heard_text + h.unheard_text == sent
        # word boundary: the heard part ends at the end of a word of the sent text
        assert h.char_end == 0 or not sent[h.char_end - 1].isspace()
        assert h.char_end in (0, len(sent)) or sent[h.char_end].isspace()
        sure, near, exact = expected_words(events, h.heard_seconds)
        got = h.heard_text.split()
        if exact:
            assert len(sure) <= len(got) <= len(sure) + near
        else:  # cut while the first chunk's audio still arrived: never more than the truth
            assert len(got) <= len(sure) + near
        assert got == SENT.split()[: len(got)]
        if h.cut_word is not None:
            assert sent[h.cut_char_start : h.cut_char_end] == h.cut_word  # type: ignore[misc]
            assert sent[h.char_end : h.cut_char_start].strip() == ""  # type: ignore[misc]
        assert 0.0 <= h.heard_seconds <= h.received_seconds + 1e-6
        assert h.estimated  # the local server's times are estimates (score 0.5)
        if h.reason == "completed":  # the user spoke after the turn had played out
            assert h.complete and h.heard_text == SENT
    assert "disposed" in reasons and reasons <= {"disposed", "completed"}
    assert len({h.words_heard for h, _, _ in runs}) >= 8  # the moments spread over the turn


def test_ttfa_on_a_simulated_clock_matches_the_session_metrics(tone_server: RunningServer) -> None:
    async def main() -> tuple[float | None, float | None, Heard]:
        loop = asyncio.get_running_loop()
        scheduler = AsyncIOScheduler(loop)
        clock = SimulatedClock(scheduler)
        session = StreamingSession(f"{tone_server.url}/ws/tts/stream", StreamConfig(voice_id=1071))
        started: list[float] = []
        results: list[Heard] = []
        try:
            await session.connect()
            tokens = reactivex.from_iterable(mid_word_tokens(SENTENCES[0], random.Random(5))).pipe(
                ops.do_action(lambda _: started or started.append(clock.now()))
            )
            events = await session.speak(tokens).pipe(
                play(clock),
                heard(clock, SENTENCES[0], on_heard=results.append, scheduler=scheduler),
                ops.to_list(),
            )
        finally:
            await session.close()
        metrics = next(e for e in events if isinstance(e, TurnMetrics))
        key = next((e.context_id, e.turn) for e in events if isinstance(e, AudioChunk))
        return ttfa(clock, key, started[0]), metrics.ttfa, results[0]

    on_clock, measured, h = asyncio.run(asyncio.wait_for(main(), 20))
    assert on_clock is not None and measured is not None
    # the simulated listener hears the first sound when it arrives: the session's TTFA
    assert abs(on_clock - measured) < 0.05
    # no word timestamps requested: proportional estimate, and the turn played out in full
    assert (h.reason, h.complete, h.estimated, h.heard_text) == ("completed", True, True, SENTENCES[0])


def test_heard_on_a_player_reads_what_the_device_played(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    pulls: list[Any] = []

    class Device:
        def __init__(self, **kwargs: Any) -> None:
            pulls.append(kwargs["callback"])

        def start(self) -> None: ...
        def stop(self) -> None: ...
        def close(self) -> None: ...

    module = types.ModuleType("sounddevice")
    module.OutputStream = Device  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sounddevice", module)
    from rxtts.audio.playback import Player

    player = Player()
    results: list[Heard] = []
    events = [m.value.value for m in turn_messages() if m.value.kind == "N"]
    subject = Subject[Any]()
    sub = subject.pipe(play(player), heard(player, TEXT, on_heard=results.append)).subscribe()
    for event in events:
        subject.on_next(event)
    buf = np.zeros((2400, 1), np.int16)
    pulls[0](buf, 2400, None, None)  # the device played 2.4 s: inside "are" of chunk 1
    sub.dispose()  # barge-in
    [h] = results
    assert (h.heard_text, h.cut_word, h.heard_seconds) == ("Hello there, world. How", "are", 2.4)
    assert player.remaining((None, 0)) == 0.0
    player.close()
