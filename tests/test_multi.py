"""MultiContextSession against our server (tone engine; one piper test), a scripted
server for failure paths, and marble tests of the keep-alive operators.

The tone engine makes audio checkable: voice 1071 is a 200 Hz tone, 1072 a 252 Hz tone,
10 ms of audio per character of each synthesised chunk (``ToneEngine.samples_for``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import numpy as np
import pytest
import reactivex
from reactivex import operators as ops
from reactivex.subject import Subject
from reactivex.testing.marbles import marbles_testing
from websockets.asyncio.server import ServerConnection, serve

from rxtts.client.callbacks import MultiContextCallbacks
from rxtts.client.dialogue import (
    Line,
    assemble_dialogue,
    dialogue_items,
    mix_dialogue,
    pan_gains,
    render_dialogue,
    split_lines,
)
from rxtts.client.multi import MultiContextSession
from rxtts.client.multi_speak import fails_every_context
from rxtts.config import MultiContextConfig
from rxtts.errors import (
    ConnectionClosedError,
    LocalProtocolError,
    TooManyContextsError,
    ValidationError,
)
from rxtts.events import (
    AudioChunk,
    ContextClosed,
    ContextCreated,
    ContextError,
    ContextTimeout,
    Final,
    GenerationStarted,
    SessionUsage,
    SettingsUpdated,
    TtsEvent,
)
from rxtts.operators.flush import FLUSH
from rxtts.operators.keep_alive import KEEP_ALIVE, KeepAlivePolicy, idle_ticks, keep_alive
from rxtts.server.embedded import RunningServer
from rxtts.server.engines.tone import ToneEngine

RATE = 24000
HZ = {1071: 200.0, 1072: 252.0}
TONE = ToneEngine()


# -- helpers --------------------------------------------------------------------------------


def run(coro: Any, timeout: float = 20.0) -> Any:
    """Run a coroutine on a fresh loop with a hard timeout."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Recorder:
    """Every event of a session, with an awaitable condition."""

    def __init__(self, session: MultiContextSession) -> None:
        self.events: list[TtsEvent] = []
        session.events.subscribe(self.events.append)

    def of(self, cid: str | None, kind: type[Any] | None = None) -> list[Any]:
        return [e for e in self.events if e.context_id == cid and (kind is None or isinstance(e, kind))]

    def count(self, kind: type[Any], cid: str | None = None) -> int:
        return sum(1 for e in self.events if isinstance(e, kind) and (cid is None or e.context_id == cid))

    async def until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                kinds = [(type(e).__name__, e.context_id) for e in self.events[-20:]]
                raise AssertionError(f"condition not met in {timeout} s; last events: {kinds}")
            await asyncio.sleep(0.01)


async def to_list(source: reactivex.Observable[Any], timeout: float = 10.0) -> list[Any]:
    """All items of an observable subscribed on the running loop."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[Any]] = loop.create_future()
    items: list[Any] = []

    def settle(error: Exception | None) -> None:
        if done.done():
            return
        if error is None:
            done.set_result(items)
        else:
            done.set_exception(error)

    sub = source.subscribe(
        items.append,
        lambda e: loop.call_soon_threadsafe(settle, e),
        lambda: loop.call_soon_threadsafe(settle, None),
    )
    try:
        return await asyncio.wait_for(done, timeout)
    finally:
        sub.dispose()


def audio_of(events: list[TtsEvent]) -> np.ndarray:
    chunks = [e.samples for e in events if isinstance(e, AudioChunk)]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


def dominant_hz(samples: np.ndarray, rate: int = RATE) -> float:
    x = samples.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1.0 / rate)[int(np.argmax(spectrum))])


def expected_samples(events: list[TtsEvent]) -> int:
    """What the tone engine yields for the chunks the server announced."""
    return sum(TONE.samples_for(e.text) for e in events if isinstance(e, GenerationStarted))


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def session(server: RunningServer, **kw: Any) -> MultiContextSession:
    kw.setdefault("default_voice_id", 1071)
    return MultiContextSession(server.url, **kw)


# -- keep-alive operators (virtual time) --------------------------------------------------


def test_keep_alive_inserts_empty_text_after_each_silence() -> None:
    with marbles_testing(timespan=1.0) as (start, cold, _hot, exp):
        source = cold("-a--------b-|")
        expected = exp("-a--k--k--b-|", {"k": KEEP_ALIVE})
        assert start(source.pipe(keep_alive(3.0))) == expected


def test_keep_alive_passes_errors_and_stops_ticking() -> None:
    with marbles_testing(timespan=1.0) as (start, cold, _hot, _exp):
        source = cold("-a---#", error=ValueError("boom"))
        result = start(source.pipe(keep_alive(2.0)))
        assert [n.value.kind for n in result] == ["N", "N", "E"]
        assert result[1].value.value == KEEP_ALIVE and result[1].time == 203.0


def test_idle_ticks_counts_silences_and_restarts_on_items() -> None:
    with marbles_testing(timespan=1.0) as (start, cold, _hot, exp):
        source = cold("-a--------b-|")
        expected = exp("----0--1----|", {"0": 0, "1": 1})
        assert start(source.pipe(idle_ticks(3.0))) == expected


def test_keep_alive_is_cold_and_reusable() -> None:
    with marbles_testing(timespan=1.0) as (start, cold, _hot, exp):
        op = keep_alive(2.0)
        source = cold("-a-|")
        first = start(source.pipe(op))
    with marbles_testing(timespan=1.0) as (start, cold, _hot, exp):
        second = start(cold("-a-|").pipe(op))
    assert first == second == exp("-a-|")


def test_keep_alive_policy_validates_and_derives_from_timeout() -> None:
    assert KeepAlivePolicy.for_timeout(20.0).interval == 10.0
    assert KeepAlivePolicy.for_timeout(1.0, fraction=0.25).interval == 0.25
    with pytest.raises(ValueError, match="interval"):
        KeepAlivePolicy(0)
    with pytest.raises(ValueError, match="fraction"):
        KeepAlivePolicy.for_timeout(10.0, fraction=1.0)
    with pytest.raises(ValueError, match="interval"):
        keep_alive(-1.0)


# -- dialogue layout (pure) -----------------------------------------------------------------


def tone(hz: float, seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def test_mix_dialogue_stereo_pans_two_speakers_hard_left_and_right() -> None:
    a, b = tone(200, 0.2), tone(252, 0.1)
    mix, starts = mix_dialogue([("a", a), ("b", b), ("a", a)], RATE, gap=0.05)
    gap = round(0.05 * RATE)
    assert starts == [0, len(a) + gap, len(a) + gap + len(b) + gap]
    assert mix.shape == (starts[-1] + len(a), 2) and mix.dtype == np.int16
    np.testing.assert_array_equal(mix[: len(a), 0], a)
    assert not mix[: len(a), 1].any()  # speaker a only on the left
    np.testing.assert_array_equal(mix[starts[1] : starts[1] + len(b), 1], b)
    assert not mix[starts[1] : starts[1] + len(b), 0].any()
    assert not mix[len(a) : starts[1]].any()  # the gap is silent


def test_mix_dialogue_interleaved_is_mono_turn_after_turn() -> None:
    a, b = tone(200, 0.1), tone(252, 0.1)
    mix, starts = mix_dialogue([("a", a), ("b", b)], RATE, layout="interleaved", gap=0.0)
    assert mix.ndim == 1 and starts == [0, len(a)]
    np.testing.assert_array_equal(mix, np.concatenate([a, b]))
    with pytest.raises(ValueError, match="layout"):
        mix_dialogue([("a", a)], RATE, layout="surround")  # type: ignore[arg-type]


def test_pan_gains_are_constant_power() -> None:
    assert pan_gains(0.0) == (1.0, 0.0) and pan_gains(1.0) == (0.0, 1.0)
    left, right = pan_gains(0.5)
    assert left == pytest.approx(right) and left**2 + right**2 == pytest.approx(1.0)


def chunk(n: int, cid: str = "a", value: int = 1) -> AudioChunk:
    return AudioChunk(np.full(n, value, np.int16).tobytes(), RATE, "pcm_s16le", 0, context_id=cid)


def test_split_lines_cuts_at_each_final_and_drops_the_close_final() -> None:
    events: list[TtsEvent] = [chunk(3), chunk(2), Final(), chunk(4, value=2), Final(), Final()]
    lines, rate = split_lines(events)
    assert rate == RATE
    assert [len(x) for x in lines] == [5, 4, 0]  # the empty tail is the close's final
    script = [Line("a", "one"), Line("a", "two")]
    audio = assemble_dialogue(script, {"a": events}, layout="interleaved", gap=0.0)
    assert [len(x.samples) for x in audio.lines] == [5, 4] and audio.lines[1].start == 5
    with pytest.raises(ValueError, match="finished line"):
        assemble_dialogue([*script, Line("a", "three"), Line("a", "four")], {"a": events})


def test_dialogue_items_flush_each_line() -> None:
    items = dialogue_items([Line("a", "Hi."), Line("b", "Yo.")])
    assert items == [("a", "Hi."), ("a", FLUSH), ("b", "Yo."), ("b", FLUSH)]


def test_fails_every_context_spares_settings_rejections() -> None:
    assert not fails_every_context(ValidationError("bad cfg_scale"))
    assert fails_every_context(ConnectionClosedError("gone"))


# -- against the tone server ----------------------------------------------------------------

NARRATOR = ["The story begins.", "Night fell on the town.", "Nobody spoke."]
ALICE = ["Where are we going?", "I do not like this place."]
BOB = ["Just follow me.", "Trust me on this one."]


def test_three_contexts_two_voices_interleaved_audio_routed_in_order(tone_server: RunningServer) -> None:
    script = [
        ("narrator", NARRATOR[0]),
        ("alice", ALICE[0]),
        ("bob", BOB[0]),
        ("narrator", NARRATOR[1]),
        ("alice", ALICE[1]),
        ("bob", BOB[1]),
        ("narrator", NARRATOR[2]),
    ]
    voices = {"narrator": 1071, "alice": 1072, "bob": 1071}

    async def main() -> dict[str, list[TtsEvent]]:
        items = [x for cid, text in script for x in ((cid, text + " "), (cid, FLUSH))]
        async with session(tone_server) as multi:
            groups = multi.speak_keyed(reactivex.from_iterable(items), voices)
            tagged = await to_list(groups.pipe(ops.flat_map(lambda g: g.pipe(ops.map(lambda e: (g.key, e))))))
            assert multi.active_contexts == []
        out: dict[str, list[TtsEvent]] = {}
        for key, event in tagged:
            assert event.context_id == key  # each group holds only its own context
            out.setdefault(key, []).append(event)
        return out

    by_ctx = run(main())
    assert set(by_ctx) == {"narrator", "alice", "bob"}
    for cid, sentences in (("narrator", NARRATOR), ("alice", ALICE), ("bob", BOB)):
        events = by_ctx[cid]
        assert isinstance(events[0], ContextCreated) and isinstance(events[-1], ContextClosed)
        started = [e.text for e in events if isinstance(e, GenerationStarted)]
        assert squash("".join(started)) == squash("".join(sentences))  # in order, nothing lost
        assert sum(isinstance(e, Final) for e in events) == len(sentences) + 1  # + graceful close
        chunks = [e for e in events if isinstance(e, AudioChunk)]
        assert [c.index for c in chunks] == list(range(len(chunks)))
        samples = audio_of(events)
        assert len(samples) == expected_samples(events)
        assert dominant_hz(samples) == pytest.approx(HZ[voices[cid]], abs=6)
        usage = events[-1].usage
        assert usage is not None and usage.audio_seconds == pytest.approx(len(samples) / RATE, abs=1e-3)


def test_immediate_close_of_one_context_leaves_the_others_alone(server_factory: Any) -> None:
    server = server_factory(ToneEngine(delay_per_block_s=0.1))  # about real time
    text = "This is a fairly long sentence for one speaker to say. " * 2  # ~1.1 s audio each

    async def main() -> tuple[Recorder, dict[str, list[TtsEvent]], MultiContextSession]:
        multi = session(server)
        rec = Recorder(multi)
        barge: Subject[None] = Subject()
        results: dict[str, list[TtsEvent]] = {"a": [], "b": [], "c": []}

        def on_a(event: TtsEvent) -> None:
            results["a"].append(event)
            if isinstance(event, AudioChunk):
                barge.on_next(None)  # the user talks over speaker a

        a = multi.speak("a", text).pipe(ops.take_until(barge))
        sub_a = a.subscribe(on_a)
        b_task = asyncio.ensure_future(to_list(multi.speak("b", text, voice_id=1072)))
        c_task = asyncio.ensure_future(to_list(multi.speak("c", text)))
        results["b"], results["c"] = await asyncio.gather(b_task, c_task)
        await rec.until(lambda: rec.count(ContextClosed, "a") == 1)
        await asyncio.sleep(0.2)  # late frames of a, if any, would show up now
        sub_a.dispose()
        await multi.close()
        return rec, results, multi

    rec, results, multi = run(main())
    full = TONE.samples_for(text)
    assert 0 < len(audio_of(results["a"])) < full
    assert rec.count(Final, "a") == 0  # immediate close: no final (PROTOCOL M-7)
    closed_at = next(
        i for i, e in enumerate(rec.events) if isinstance(e, ContextClosed) and e.context_id == "a"
    )
    assert not [e for e in rec.events[closed_at + 1 :] if e.context_id == "a"]  # nothing after its close
    usage_a = multi.usage_for("a")
    assert usage_a is not None and usage_a.audio_seconds < full / RATE
    for cid in ("b", "c"):
        events = results[cid]
        assert len(audio_of(events)) == expected_samples(events) >= full - 2
        assert isinstance(events[-1], ContextClosed) and any(isinstance(e, Final) for e in events)
    assert dominant_hz(audio_of(results["b"])) == pytest.approx(252, abs=6)


def test_twenty_contexts_work_and_the_twenty_first_is_refused_locally(tone_server: RunningServer) -> None:
    async def main() -> None:
        errors: list[tuple[Exception, str | None]] = []
        multi = session(tone_server)
        await multi.connect(MultiContextCallbacks(on_error=lambda e, c: errors.append((e, c))))
        rec = Recorder(multi)
        for i in range(20):
            multi.create_context(f"c{i}", voice_id=1071 + i % 2)
            multi.send(f"c{i}", f"Speaker {i} is here.", flush=True)
        await rec.until(lambda: rec.count(Final) == 20)
        assert all(len(audio_of(rec.of(f"c{i}"))) > 0 for i in range(20))
        with pytest.raises(TooManyContextsError, match="at most 20 open contexts") as info:
            multi.create_context("c20")
        assert info.value.context_id == "c20"
        with pytest.raises(TooManyContextsError):
            multi.send("c20", "Implicit creation is refused too.")
        await asyncio.sleep(0.2)
        assert multi.is_connected and not rec.of("c20") and not errors  # never on the wire
        multi.close_context("c0")
        await rec.until(lambda: rec.count(ContextClosed, "c0") == 1)
        multi.send("c20", "Now there is room.", flush=True)  # the slot is free again
        await rec.until(lambda: rec.count(Final, "c20") == 1)
        assert len(multi.active_contexts) == 20
        await multi.close()
        assert rec.count(ContextClosed) == 21 and not errors

    run(main())


def test_server_side_cap_is_a_context_error_and_the_socket_stays(server_factory: Any) -> None:
    server = server_factory(max_contexts=2)  # the server refuses before our admission does

    async def main() -> None:
        errors: list[tuple[Exception, str | None]] = []
        multi = session(server)
        await multi.connect(MultiContextCallbacks(on_error=lambda e, c: errors.append((e, c))))
        rec = Recorder(multi)
        multi.create_context("c0")
        multi.create_context("c1")
        with pytest.raises(TooManyContextsError):  # speak() reports it as its error
            await to_list(multi.speak("c2", "Am I in?"))
        # Every frame for c2 was refused (creation, text, flush: PROTOCOL M-1, M-9).
        assert errors and all(isinstance(e, TooManyContextsError) and c == "c2" for e, c in errors)
        # Frames pipelined after the refused creation could have created c2 on the
        # server (M-1): the client closes it and frees the slot on context_closed.
        await rec.until(lambda: multi.active_contexts == ["c0", "c1"])
        assert multi.is_connected
        multi.close_context("c0")
        await rec.until(lambda: rec.count(ContextClosed, "c0") == 1)
        events = await to_list(multi.speak("c2", "Now I am."))
        assert isinstance(events[-1], ContextClosed) and len(audio_of(events)) == expected_samples(events) > 0
        await multi.close()

    run(main())


def test_wait_for_slot_queues_the_twenty_first_until_a_context_closes(tone_server: RunningServer) -> None:
    async def main() -> None:
        multi = session(tone_server, wait_for_slot=True)
        rec = Recorder(multi)
        await multi.connect()
        for i in range(20):
            multi.create_context(f"c{i}")
        multi.create_context("late", voice_id=1072)
        multi.send("late", "I waited for my turn.", flush=True)
        assert multi.waiting_contexts == ["late"] and len(multi.active_contexts) == 20
        await asyncio.sleep(0.2)
        assert not rec.of("late")
        multi.close_context("c3")
        await rec.until(lambda: rec.count(Final, "late") == 1)
        closed = rec.events.index(rec.of("c3", ContextClosed)[0])
        created = rec.events.index(rec.of("late", ContextCreated)[0])
        assert created > closed and multi.waiting_contexts == []
        assert dominant_hz(audio_of(rec.of("late"))) == pytest.approx(252, abs=6)
        await multi.close()

    run(main())


def test_inactivity_timeout_fires_callback_and_frees_slots(tone_server: RunningServer) -> None:
    async def main() -> None:
        timeouts: list[str] = []
        cfg = MultiContextConfig(default_voice_id=1071, inactivity_timeout=0.4)
        multi = MultiContextSession(tone_server.url, cfg)
        await multi.connect(MultiContextCallbacks(on_context_timeout=timeouts.append))
        rec = Recorder(multi)
        for i in range(20):
            multi.create_context(f"old{i}")
        with pytest.raises(TooManyContextsError):
            multi.create_context("new0")
        await rec.until(lambda: len(timeouts) == 20, timeout=5)
        assert sorted(timeouts) == sorted(f"old{i}" for i in range(20))
        assert multi.active_contexts == [] and multi.usage_for("old0") is None
        for i in range(20):  # every slot is free again
            multi.send(f"new{i}", "Fresh.", flush=True)
        await rec.until(lambda: rec.count(Final) == 20)
        await multi.close()

    run(main())


def test_keep_alive_and_hold_prevent_the_timeout(tone_server: RunningServer) -> None:
    async def main() -> None:
        cfg = MultiContextConfig(default_voice_id=1071, inactivity_timeout=0.6)
        multi = MultiContextSession(tone_server.url, cfg)
        rec = Recorder(multi)
        await multi.connect()
        for cid in ("held", "manual", "idle"):
            multi.create_context(cid)
        hold = multi.hold("held", KeepAlivePolicy(0.15))
        for _ in range(8):  # 1.2 s, more than twice the timeout
            await asyncio.sleep(0.15)
            multi.keep_alive("manual")
        assert rec.count(ContextTimeout, "idle") == 1
        assert rec.count(ContextTimeout, "held") == rec.count(ContextTimeout, "manual") == 0
        assert sorted(multi.active_contexts) == ["held", "manual"]
        multi.send("held", "Still here.", flush=True)
        await rec.until(lambda: rec.count(Final, "held") == 1)
        assert rec.count(ContextCreated, "held") == 1  # the same context, not a re-creation
        hold.dispose()
        await rec.until(lambda: rec.count(ContextTimeout, "held") == 1, timeout=3)
        await multi.close()

    run(main())


def test_session_keep_alive_policy_holds_every_context(tone_server: RunningServer) -> None:
    async def main() -> None:
        cfg = MultiContextConfig(default_voice_id=1071, inactivity_timeout=0.4)
        multi = MultiContextSession(tone_server.url, cfg, keep_alive=KeepAlivePolicy(0.1))
        rec = Recorder(multi)
        multi.create_context("a")
        multi.send("b", "Hello.", flush=True)
        await asyncio.sleep(1.0)
        assert rec.count(ContextTimeout) == 0 and sorted(multi.active_contexts) == ["a", "b"]
        await multi.close()
        assert rec.count(ContextClosed) == 2

    run(main(), timeout=10)


def test_speak_keep_alive_every_survives_a_slow_token_stream(tone_server: RunningServer) -> None:
    async def main() -> tuple[list[TtsEvent], list[TtsEvent]]:
        cfg = MultiContextConfig(default_voice_id=1071, inactivity_timeout=0.4)
        async with MultiContextSession(tone_server.url, cfg) as multi:

            def slow() -> reactivex.Observable[str]:  # an LLM that thinks for 1 s mid-answer
                return reactivex.concat(
                    reactivex.of("First part, "),
                    reactivex.timer(1.0).pipe(ops.map(lambda _: "second part.")),
                )

            kept = await to_list(multi.speak("kept", slow(), keep_alive_every=0.15))
            lost = await to_list(multi.speak("lost", slow()))
        return kept, lost

    kept, lost = run(main())
    assert isinstance(kept[-1], ContextClosed) and not any(isinstance(e, ContextTimeout) for e in kept)
    assert (
        squash("".join(e.text for e in kept if isinstance(e, GenerationStarted))) == "Firstpart,secondpart."
    )
    assert isinstance(lost[-1], ContextTimeout)  # without keep-alives the context expired
    assert not any(isinstance(e, AudioChunk) for e in lost)


def test_usage_per_context_matches_the_audio_received(server_factory: Any) -> None:
    server = server_factory(price_cents_per_minute=6.0)
    texts = {"a": ["One two three. ", "Four five six seven. "], "b": ["Eight nine. "]}

    async def main() -> tuple[Recorder, MultiContextSession, list[tuple[str, SessionUsage | None]]]:
        closed: list[tuple[str, SessionUsage | None]] = []
        multi = session(server)
        await multi.connect(MultiContextCallbacks(on_context_closed=lambda c, u: closed.append((c, u))))
        rec = Recorder(multi)
        for cid, parts in texts.items():
            for part in parts:
                multi.send(cid, part)
            multi.flush(cid)
        await rec.until(lambda: rec.count(Final) == 2)
        assert multi.usage_for("a") is None and multi.context_usage == {}  # not closed yet
        multi.close_context("a")
        multi.close_context("b")
        await rec.until(lambda: rec.count(ContextClosed) == 2)
        await multi.close()
        return rec, multi, closed

    rec, multi, closed = run(main())
    assert {c for c, _ in closed} == {"a", "b"}
    for cid, parts in texts.items():
        usage = multi.usage_for(cid)
        assert usage is not None and dict(closed)[cid] == usage == multi.context_usage[cid]
        seconds = sum(e.duration for e in rec.of(cid, AudioChunk))
        assert seconds > 0 and usage.audio_seconds == pytest.approx(seconds, abs=1e-3)
        assert usage.characters == sum(len(p) for p in parts)
        assert usage.currency == "eur" and usage.cost_cents == pytest.approx(
            usage.audio_seconds * 0.1, abs=1e-4
        )


def test_context_id_can_be_reused_right_after_close(tone_server: RunningServer) -> None:
    async def main() -> tuple[Recorder, MultiContextSession]:
        multi = session(tone_server)
        rec = Recorder(multi)
        multi.send("hero", "First life.", flush=True)
        await rec.until(lambda: rec.count(Final, "hero") == 1)
        multi.close_context("hero")
        multi.create_context("hero", voice_id=1072)  # queued behind its own close
        multi.send("hero", "Second life, other voice.", flush=True)
        assert multi.waiting_contexts == ["hero"]
        await rec.until(lambda: rec.count(ContextCreated, "hero") == 2 and rec.count(Final, "hero") == 3)
        first_usage = multi.usage_for("hero")  # cleared again: the new context is open
        multi.close_context("hero")
        await rec.until(lambda: rec.count(ContextClosed, "hero") == 2)
        await multi.close()
        assert first_usage is None
        return rec, multi

    rec, multi = run(main())
    events = rec.of("hero")
    cut = next(i for i, e in enumerate(events) if isinstance(e, ContextClosed))
    first, second = audio_of(events[:cut]), audio_of(events[cut:])
    assert dominant_hz(first) == pytest.approx(200, abs=6)
    assert dominant_hz(second) == pytest.approx(252, abs=6)
    usage = multi.usage_for("hero")
    assert usage is not None and usage.audio_seconds == pytest.approx(len(second) / RATE, abs=1e-3)


def test_callbacks_and_properties_follow_the_seed(tone_server: RunningServer) -> None:
    calls: list[tuple[Any, ...]] = []
    callbacks = MultiContextCallbacks(
        on_session_started=lambda s: calls.append(("started", s)),
        on_context_created=lambda c: calls.append(("created", c)),
        on_chunk=lambda ch: calls.append(("chunk", ch.context_id)),
        on_final=lambda c: calls.append(("final", c)),
        on_context_closed=lambda c, u: calls.append(("closed", c, u is not None)),
        on_context_timeout=lambda c: calls.append(("timeout", c)),
        on_session_closed=lambda stats: calls.append(("session_closed", "total_audio_seconds" in stats)),
        on_error=lambda e, c: calls.append(("error", c)),
    )

    async def main() -> MultiContextSession:
        multi = session(tone_server)
        assert not multi.is_connected
        await multi.connect(callbacks)
        assert multi.is_connected and multi.session_id is None  # PROTOCOL U-9
        multi.create_context("narrator")
        multi.create_context("character", voice_id=1072)
        assert multi.active_contexts == ["narrator", "character"]
        multi.send("narrator", "The story begins.")
        multi.send("character", "Hello there!", flush=True)
        await asyncio.sleep(0.3)
        await multi.close()  # close_socket: narrator's buffer is still spoken (PROTOCOL M-8)
        assert not multi.is_connected
        with pytest.raises(LocalProtocolError, match="closed"):
            multi.send("narrator", "Too late.")
        return multi

    multi = run(main())
    assert calls[:2] == [("created", "narrator"), ("created", "character")]
    assert ("chunk", "narrator") in calls and ("chunk", "character") in calls
    assert calls.index(("final", "character")) < calls.index(("closed", "character", True))
    assert ("closed", "narrator", True) in calls and calls[-1] == ("session_closed", True)
    assert not [c for c in calls if c[0] in ("error", "timeout", "started")]
    assert set(multi.context_usage) == {"narrator", "character"}


def test_events_group_by_context_id_gives_the_contexts(tone_server: RunningServer) -> None:
    async def main() -> dict[str | None, list[TtsEvent]]:
        groups: dict[str | None, list[TtsEvent]] = {}
        multi = session(tone_server)
        multi.events.pipe(ops.group_by(lambda e: e.context_id)).subscribe(
            lambda g: g.subscribe(groups.setdefault(g.key, []).append)
        )
        multi.send("x", "Ex.", flush=True)
        multi.send("y", "Why.", flush=True)
        rec = Recorder(multi)
        await rec.until(lambda: rec.count(Final) == 2)
        await multi.close()
        return groups

    groups = run(main())
    assert set(groups) == {"x", "y", None}  # None: the session_closed
    assert all(e.context_id == "x" for e in groups["x"]) and isinstance(groups["x"][-1], ContextClosed)


def test_speak_keyed_dispose_closes_its_contexts_immediately(server_factory: Any) -> None:
    server = server_factory(ToneEngine(delay_per_block_s=0.1))

    async def main() -> Recorder:
        multi = session(server)
        rec = Recorder(multi)
        items = reactivex.of(
            ("p", "A long line that keeps going for a while. "), ("q", "Another long line here.")
        )
        sub = multi.speak_keyed(items.pipe(ops.concat(reactivex.never()))).subscribe(
            lambda g: g.subscribe(lambda _: None)
        )
        multi.flush("p")
        await rec.until(lambda: rec.count(AudioChunk, "p") > 0)
        sub.dispose()
        await rec.until(lambda: rec.count(ContextClosed) == 2)
        assert multi.active_contexts == []
        await multi.close()
        return rec

    rec = run(main())
    assert rec.count(Final, "p") == 0 and rec.count(Final, "q") == 0


def test_speak_keyed_group_errors_on_its_context_error(tone_server: RunningServer) -> None:
    async def main() -> tuple[list[Any], list[Any]]:
        multi = MultiContextSession(tone_server.url)  # no default voice
        outcomes: list[Any] = []
        done = asyncio.Event()

        def on_group(group: Any) -> None:
            group.subscribe(
                lambda _: None,
                lambda e: outcomes.append((group.key, type(e).__name__)),
                lambda: outcomes.append((group.key, "completed")),
            )

        items = reactivex.of(("voiceless", "Who am I?"), ("voiced", "I am someone."))
        multi.speak_keyed(items, voices={"voiced": 1071}).subscribe(
            on_group, lambda e: done.set(), lambda: done.set()
        )
        await asyncio.wait_for(done.wait(), 5)
        rec_errors = list(outcomes)
        await multi.close()
        return rec_errors, outcomes

    outcomes, _ = run(main())
    assert ("voiceless", "MissingVoiceError") in outcomes and ("voiced", "completed") in outcomes


def test_intents_from_other_threads_keep_their_order(tone_server: RunningServer) -> None:
    words = [f"word{i} " for i in range(30)]

    async def main() -> list[TtsEvent]:
        multi = session(tone_server)
        rec = Recorder(multi)
        await multi.connect()

        def worker() -> None:
            for w in words:
                multi.send("t", w)
            multi.flush("t")

        thread = threading.Thread(target=worker)
        thread.start()
        await asyncio.to_thread(thread.join)
        await rec.until(lambda: rec.count(Final, "t") == 1)
        await multi.close()
        return rec.of("t")

    events = run(main())
    spoken = "".join(e.text for e in events if isinstance(e, GenerationStarted))
    assert squash(spoken) == squash("".join(words))


def test_render_dialogue_two_voices_to_stereo(tone_server: RunningServer) -> None:
    script = [("alice", "Hello Bob."), ("bob", "Hi Alice, how are you?"), ("alice", "Fine.")]

    async def main() -> Any:
        async with session(tone_server) as multi:
            return await render_dialogue(multi, script, {"alice": 1072, "bob": 1071}, gap=0.1)

    audio = run(main())
    assert audio.speakers == ("alice", "bob") and audio.channels == 2 and audio.sample_rate == RATE
    assert [ln.text for ln in audio.lines] == [t for _, t in script]
    for line in audio.lines:
        assert len(line.samples) == TONE.samples_for(line.text)
        left = audio.samples[line.start : line.end, 0]
        right = audio.samples[line.start : line.end, 1]
        own, other = (left, right) if line.speaker == "alice" else (right, left)
        assert not other.any()
        assert dominant_hz(own) == pytest.approx(252 if line.speaker == "alice" else 200, abs=8)
    assert audio.lines[1].start == audio.lines[0].end + round(0.1 * RATE)
    usage = audio.usage["bob"]
    assert usage is not None and usage.audio_seconds == pytest.approx(
        audio.lines[1].samples.size / RATE, abs=1e-3
    )
    wav = audio.wav_bytes()
    assert wav[:4] == b"RIFF" and len(wav) > audio.samples.nbytes


def test_update_settings_is_acknowledged_on_events(tone_server: RunningServer) -> None:
    async def main() -> list[TtsEvent]:
        multi = session(tone_server)
        rec = Recorder(multi)
        with pytest.raises(LocalProtocolError, match="not updatable"):
            multi.update_settings(voice_id=3)
        multi.update_settings(temperature=0.3)
        await rec.until(lambda: any(isinstance(e, SettingsUpdated) for e in rec.events))
        await multi.close()
        return rec.events

    events = run(main())
    ack = next(e for e in events if isinstance(e, SettingsUpdated))
    assert ack.context_id is None and ack.settings["temperature"] == 0.3


def test_tts_client_builds_a_multi_context_session(tone_server: RunningServer) -> None:
    from rxtts.client.tts import TTS

    async def main() -> tuple[MultiContextSession, list[TtsEvent]]:
        async with TTS(tone_server.http_url, api_key="eu-test-key") as tts:
            multi = tts.multi_context_session(default_voice_id=1072, language="en")
            assert "api_key=test-key" in multi.url and multi.url.startswith("ws://")
            events = await to_list(multi.speak("only", "Through the client object."))
        return multi, events  # tts.aclose() closed the session too

    multi, events = run(main())
    assert isinstance(events[-1], ContextClosed) and not multi.is_connected
    assert dominant_hz(audio_of(events)) == pytest.approx(252, abs=6)


def test_session_on_a_loop_in_another_thread(tone_server: RunningServer) -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        multi = MultiContextSession(tone_server.url, default_voice_id=1071, loop=loop)
        asyncio.run_coroutine_threadsafe(multi.connect(), loop).result(5)
        events = multi.speak("t", "Called from a plain thread.").pipe(ops.to_list()).run()  # blocks here
        assert isinstance(events[-1], ContextClosed)
        assert all(e.context_id == "t" for e in events) and audio_of(events).size > 0
        with pytest.raises(TooManyContextsError):  # admission errors reach the calling thread
            for i in range(21):
                multi.create_context(f"x{i}")
        asyncio.run_coroutine_threadsafe(multi.close(), loop).result(5)
        assert not multi.is_connected
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.mark.slow
def test_piper_two_voices_on_one_socket(piper_server: RunningServer) -> None:
    async def main() -> tuple[Recorder, MultiContextSession]:
        async with session(piper_server) as multi:
            rec = Recorder(multi)
            multi.create_context("joe", voice_id=1071)
            multi.create_context("jo", voice_id=1072)
            multi.send("joe", "Good morning, how did you sleep?", flush=True)
            multi.send("jo", "Very well, thank you.", flush=True)
            await rec.until(lambda: rec.count(Final) == 2, timeout=30)
        return rec, multi

    rec, multi = run(main(), timeout=60)
    for cid in ("joe", "jo"):
        samples = audio_of(rec.of(cid))
        rate = rec.of(cid, AudioChunk)[0].sample_rate
        assert len(samples) / rate > 0.5
        assert np.sqrt(np.mean(samples.astype(np.float64) ** 2)) > 300  # speech, not silence
        usage = multi.usage_for(cid)
        assert usage is not None and usage.audio_seconds == pytest.approx(len(samples) / rate, abs=0.01)


# -- scripted server: failure paths ---------------------------------------------------------


@contextlib.asynccontextmanager
async def scripted(
    reply: Callable[[dict[str, Any]], list[dict[str, Any]] | int],
) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A server on 127.0.0.1:0 answering each frame with ``reply(frame)`` (an int closes)."""
    received: list[dict[str, Any]] = []

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            frame = json.loads(message)
            received.append(frame)
            answer = reply(frame)
            if isinstance(answer, int):
                await ws.close(answer, "scripted")
                return
            for out in answer:
                await ws.send(json.dumps(out))

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}", received


def test_server_refusal_is_a_context_error_and_the_socket_stays() -> None:
    def reply(frame: dict[str, Any]) -> list[dict[str, Any]] | int:
        cid = frame.get("context_id")
        if frame.get("text") == " " and cid == "refused":
            return [
                {
                    "error": "Too many concurrent contexts",
                    "error_code": "TOO_MANY_CONTEXTS",
                    "code": 429,
                    "context_id": cid,
                }
            ]
        if frame.get("text") == " ":
            return [
                {"context_created": True, "context_id": cid},
                {"session_started": True, "session_id": "s-1"},
            ]
        return []

    async def main() -> None:
        errors: list[tuple[Exception, str | None]] = []
        async with scripted(reply) as (url, received):
            multi = MultiContextSession(url, default_voice_id=7)
            await multi.connect(MultiContextCallbacks(on_error=lambda e, c: errors.append((e, c))))
            rec = Recorder(multi)
            multi.create_context("ok")
            multi.create_context("refused")
            await rec.until(lambda: bool(errors))
            assert isinstance(errors[0][0], TooManyContextsError) and errors[0][1] == "refused"
            assert multi.active_contexts == ["ok"] and multi.is_connected
            assert multi.session_id == "s-1"
            assert received[0]["inactivity_timeout"] == 20.0 and "inactivity_timeout" not in received[1]
            assert received[0]["voice_settings"] == {"voice_id": 7, "cfg_scale": 2.0, "max_new_tokens": 2048}
            await multi.close(timeout=0.2)

    run(main())


def test_abnormal_close_fails_speak_and_reports_a_session_error() -> None:
    def reply(frame: dict[str, Any]) -> list[dict[str, Any]] | int:
        if frame.get("text") == " ":
            return [{"context_created": True, "context_id": frame["context_id"]}]
        return 1011

    async def main() -> None:
        errors: list[tuple[Exception, str | None]] = []
        async with scripted(reply) as (url, _):
            multi = MultiContextSession(url, default_voice_id=7)
            await multi.connect(MultiContextCallbacks(on_error=lambda e, c: errors.append((e, c))))
            with pytest.raises(ConnectionClosedError):
                await to_list(multi.speak("a", "Hello."))
            assert errors and errors[0][1] is None and isinstance(errors[0][0], ConnectionClosedError)
            assert not multi.is_connected and multi.active_contexts == []
            rec = Recorder(multi)
            events = rec.events
            await multi.close(timeout=0.2)
            assert not [e for e in events if isinstance(e, ContextError)]

    run(main())


def test_connect_failure_raises_a_typed_error() -> None:
    async def main() -> None:
        multi = MultiContextSession("ws://127.0.0.1:9", default_voice_id=7)
        with pytest.raises(ConnectionClosedError, match="cannot connect"):
            await multi.connect()

    run(main())


def test_constructor_rejects_unknown_settings_and_needs_a_loop() -> None:
    with pytest.raises(RuntimeError, match="running asyncio loop"):
        MultiContextSession("ws://127.0.0.1:1")

    async def main() -> None:
        with pytest.raises(TypeError, match="voice"):
            MultiContextSession("ws://127.0.0.1:1", voice=3)
        multi = MultiContextSession("ws://127.0.0.1:1", default_voice_id=5, language="de")
        assert multi.config.default_voice_id == 5 and multi.config.temperature == 0.5
        assert "/ws/tts/multi?" in multi.url

    run(main())


@pytest.fixture(autouse=True)
def _no_thread_leaks() -> Iterator[None]:
    before = {t.ident for t in threading.enumerate()}
    yield
    leaked = [t for t in threading.enumerate() if t.ident not in before and t.is_alive() and not t.daemon]
    assert not leaked, leaked
