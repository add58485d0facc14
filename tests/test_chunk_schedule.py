"""Tests of ``chunk_schedule()`` and the pure ``ChunkScheduler`` (DESIGN section 6)."""

from __future__ import annotations

import itertools
import random
import threading
import time
from typing import Any

import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex.subject import Subject
from reactivex.testing import ReactiveTest, TestScheduler

from rxtts.config import BALANCED, LOW_LATENCY
from rxtts.operators import (
    FLUSH,
    FUNCTION_WORDS,
    ChunkScheduler,
    Flush,
    TextItem,
    chunk_schedule,
    is_flush,
    sentences,
)

on_next = ReactiveTest.on_next
on_completed = ReactiveTest.on_completed
on_error = ReactiveTest.on_error


def through_rx(items: list[TextItem], **kw: Any) -> list[TextItem]:
    out: list[TextItem] = []
    reactivex.from_iterable(items).pipe(chunk_schedule(**kw)).subscribe(out.append)
    return out


def squash(text: str) -> str:
    return "".join(text.split())


# --- validation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"schedule": []}, "schedule"),
        ({"schedule": [100, 50]}, "schedule"),
        ({"schedule": [80, 80]}, "schedule"),
        ({"schedule": [0, 10]}, "schedule"),
        ({"schedule": [10, -5]}, "schedule"),
        ({"schedule": [True]}, "schedule"),
        ({"schedule": [1.5]}, "schedule"),
        ({"max_buffer_length": 0}, "max_buffer_length"),
        ({"max_buffer_length": -1}, "max_buffer_length"),
        ({"flush_timeout_ms": 0}, "flush_timeout_ms"),
        ({"flush_timeout_ms": -10}, "flush_timeout_ms"),
    ],
)
def test_invalid_arguments_raise_value_error_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        chunk_schedule(**kwargs)


def test_pure_scheduler_validates_too() -> None:
    with pytest.raises(ValueError, match="schedule"):
        ChunkScheduler([])


def test_defaults_are_balanced() -> None:
    c = ChunkScheduler()
    assert [c.threshold(k) for k in range(5)] == [80, 150, 250, 250, 250]


# --- schedule semantics (pure) ---------------------------------------------------


def test_chunk_k_waits_for_its_threshold_at_a_sentence_boundary() -> None:
    c = ChunkScheduler((20, 40))
    assert c.push("Hi.") == []
    assert c.push("This is a test.") == []  # "Hi. This is a test." = 19 < 20
    assert c.push("Ok.") == ["Hi. This is a test. Ok."]  # 23 >= 20 -> chunk 0
    assert c.chunk_index == 1
    assert c.push("A second sentence here.") == []  # 23 < 40
    assert c.push("And a third one.") == ["A second sentence here. And a third one."]
    assert c.push("x" * 39 + ".") == ["x" * 39 + "."]  # the last entry repeats: 40 >= 40


def test_auto_mode_sends_chunk_zero_at_the_first_boundary() -> None:
    c = ChunkScheduler((50, 100), auto_mode=True)
    assert c.push("Hi.") == ["Hi."]
    assert c.push("Short.") == []  # chunk 1 needs 100
    off = ChunkScheduler((50, 100), auto_mode=False)
    assert off.push("Hi.") == []


def test_flush_emits_rest_and_restarts_the_schedule() -> None:
    c = ChunkScheduler((10, 1000), auto_mode=True)
    assert c.push("One.") == ["One."]
    assert c.push("Two.") == []
    assert c.flush() == ["Two."]
    assert c.chunk_index == 0
    assert c.push("Three.") == ["Three."]  # auto_mode applies again: new turn


def test_timeout_emits_rest_but_keeps_counting() -> None:
    c = ChunkScheduler((10, 1000), auto_mode=True)
    assert c.push("One.") == ["One."]
    assert c.push("Two.") == []
    assert c.timeout() == ["Two."]
    assert c.chunk_index == 2
    assert c.push("Three.") == []


def test_max_buffer_length_forces_a_chunk() -> None:
    c = ChunkScheduler((500,), max_buffer_length=30)
    assert c.push("A sentence of twenty.") == []
    assert c.push("Done it.") == ["A sentence of twenty. Done it."]  # 30 >= min(500, 30)
    assert c.flush() == []


def test_over_long_buffer_prefers_the_sentence_boundary() -> None:
    c = ChunkScheduler((500,), max_buffer_length=30)
    assert c.push("A sentence of twenty.") == []
    assert c.push("Another one.") == ["A sentence of twenty."]  # 34 > 30: cut at the join
    assert c.buffered == "Another one."


def test_over_long_run_is_cut_at_a_clause_after_the_threshold() -> None:
    c = ChunkScheduler((20,))
    text = "one two three four five, six seven eight nine, ten eleven twelve thirteen."
    out = c.push(text) + c.flush()
    assert out == [
        "one two three four five,",
        "six seven eight nine,",
        "ten eleven twelve thirteen.",
    ]


def test_over_long_run_without_clauses_is_cut_at_a_word_boundary() -> None:
    c = ChunkScheduler((10,))
    text = "alpha beta gamma delta epsilon zeta eta theta iota kappa"
    out = c.push(text) + c.flush()
    assert " ".join(out).split() == text.split()
    assert all(len(chunk) <= 20 for chunk in out)
    assert len(out) > 2


def test_a_single_word_longer_than_the_limit_is_never_split() -> None:
    c = ChunkScheduler((10,))
    url = "https://example.com/" + "a" * 80
    assert c.push(f"See {url} now.") + c.flush() == ["See", url, "now."]


def test_short_rest_of_a_cut_run_waits_for_the_next_sentence() -> None:
    c = ChunkScheduler((20, 40))
    out = c.push("aaaa bbbb cccc dddd, eeee ffff gggg hhhh iiii, jj.")  # 50 > 2 * 20
    assert out == ["aaaa bbbb cccc dddd,"]  # first clause boundary at/after 20
    assert c.buffered == "eeee ffff gggg hhhh iiii, jj."  # 29 < 40 (chunk 1): waits
    assert c.push("Next.") == []  # 35 < 40
    assert c.push("More.") == ["eeee ffff gggg hhhh iiii, jj. Next. More."]


def test_whitespace_only_segments_are_ignored() -> None:
    c = ChunkScheduler((5,), auto_mode=True)
    assert c.push("   ") == []
    assert c.push("\n") == []
    assert c.flush() == []


# --- the operator ----------------------------------------------------------------


def test_operator_forwards_flush_after_the_rest_and_continues() -> None:
    out = through_rx(
        ["Hello there.", "How are you?", FLUSH, "Fine.", FLUSH, FLUSH],
        schedule=(1000,),
    )
    assert out == ["Hello there. How are you?", FLUSH, "Fine.", FLUSH, FLUSH]


def test_operator_completion_emits_the_rest() -> None:
    assert through_rx(["a.", "b."], schedule=(1000,)) == ["a. b."]


def test_operator_rejects_non_text_items() -> None:
    errors: list[Exception] = []
    reactivex.from_iterable([42]).pipe(chunk_schedule()).subscribe(  # type: ignore[list-item]
        on_error=errors.append
    )
    assert len(errors) == 1 and isinstance(errors[0], TypeError)


def test_operator_is_cold_and_reusable() -> None:
    piped = reactivex.from_iterable(["One.", "Two.", "Three."]).pipe(chunk_schedule((8,), auto_mode=True))
    first: list[TextItem] = []
    second: list[TextItem] = []
    piped.subscribe(first.append)
    piped.subscribe(second.append)
    assert first == second == ["One.", "Two. Three."]


# --- marble tests (virtual time) ---------------------------------------------------


def run_marble(events: list[tuple[float, TextItem]], end: float = 1000, **kw: Any) -> list[Any]:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(*[on_next(t, v) for t, v in events], on_completed(end))
    return scheduler.start(lambda: xs.pipe(chunk_schedule(**kw))).messages


def test_marble_chunks_leave_at_the_boundary_that_reaches_the_threshold() -> None:
    messages = run_marble(
        [(210, "Hi there."), (220, "How are you?"), (230, "Fine."), (240, FLUSH), (250, "Bye.")],
        schedule=(20,),
        auto_mode=True,
    )
    assert messages == [
        on_next(210, "Hi there."),  # auto_mode: chunk 0 at the first boundary
        on_next(240, "How are you? Fine."),  # 18 < 20 at 230: waits for FLUSH
        on_next(240, FLUSH),
        on_next(250, "Bye."),  # new turn: auto_mode again
        on_completed(1000),
    ]


def test_marble_flush_timeout_emits_after_silence() -> None:
    # TestScheduler ticks are seconds: 30_000 ms = 30 ticks.
    messages = run_marble(
        [(210, "Hi."), (220, "Still short."), (300, "Later.")],
        schedule=(100,),
        flush_timeout_ms=30_000,
    )
    assert messages == [
        on_next(250, "Hi. Still short."),  # 30 after the *last* input (220), not the first
        on_next(330, "Later."),
        on_completed(1000),
    ]


def test_marble_timer_only_runs_with_a_non_empty_buffer() -> None:
    messages = run_marble(
        [(210, "A long enough sentence."), (400, FLUSH)],
        schedule=(15,),
        flush_timeout_ms=10_000,
    )
    assert messages == [
        on_next(210, "A long enough sentence."),
        on_next(400, FLUSH),
        on_completed(1000),
    ]


def test_marble_flush_cancels_the_timer() -> None:
    messages = run_marble(
        [(210, "Short."), (215, FLUSH)],
        schedule=(100,),
        flush_timeout_ms=10_000,
    )
    assert messages == [on_next(215, "Short."), on_next(215, FLUSH), on_completed(1000)]


def test_marble_timeout_counts_as_a_chunk() -> None:
    messages = run_marble(
        [(210, "Hi."), (300, "Two."), (301, "Three.")],
        schedule=(3, 100),
        auto_mode=False,
        flush_timeout_ms=20_000,
    )
    assert messages == [
        on_next(210, "Hi."),  # chunk 0: 3 >= 3
        on_next(321, "Two. Three."),  # chunk 1 (needs 100) leaves on the timeout
        on_completed(1000),
    ]


def test_marble_subscribe_scheduler_is_used_when_none_given() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(210, "Hi."), on_completed(500))
    op = chunk_schedule((100,), flush_timeout_ms=5_000)  # no scheduler argument
    messages = scheduler.start(lambda: xs.pipe(op)).messages
    assert messages == [on_next(215, "Hi."), on_completed(500)]


def test_marble_end_to_end_with_sentences() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(210, "Dr"), on_next(220, ". Smith is "), on_next(230, "in. He"),
        on_next(240, " will call."), on_next(250, " Bye"), on_next(260, FLUSH),
        on_completed(300),
    )  # fmt: skip
    messages = scheduler.start(
        lambda: xs.pipe(sentences(), chunk_schedule((10, 100), auto_mode=True))
    ).messages
    assert messages == [
        on_next(230, "Dr. Smith is in."),  # sentence certain at "H" (230)
        on_next(260, "He will call. Bye"),
        on_next(260, FLUSH),
        on_completed(300),
    ]


def test_real_timer_thread_flushes() -> None:
    subject: Subject[TextItem] = Subject()
    got: list[TextItem] = []
    done = threading.Event()

    def collect(item: TextItem) -> None:
        got.append(item)
        done.set()

    subject.pipe(chunk_schedule((100,), flush_timeout_ms=20)).subscribe(collect)
    t0 = time.monotonic()
    subject.on_next("Hello.")
    assert done.wait(5)
    assert got == ["Hello."]
    assert time.monotonic() - t0 >= 0.015


# --- hypothesis properties ---------------------------------------------------------

WORDS = st.sampled_from(
    ["a", "word", "Hello.", "longerword", "x" * 30, "clause,", "semi;", "dash —", "end!", "\n"]
)
SEGMENTS = st.lists(WORDS, min_size=1, max_size=12).map(" ".join)
SCHEDULES = st.lists(st.integers(1, 60), min_size=1, max_size=4, unique=True).map(sorted)


def split_turns(items: list[TextItem]) -> list[list[str]]:
    result: list[list[str]] = [[]]
    for item in items:
        if isinstance(item, Flush):
            result.append([])
        else:
            result[-1].append(item)
    return result


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(SEGMENTS, st.just(FLUSH)), max_size=25),
    SCHEDULES,
    st.booleans(),
    st.integers(5, 200),
)
def test_property_chunks_lossless_whole_words_flush_ordered(
    items: list[TextItem], schedule: list[int], auto_mode: bool, max_len: int
) -> None:
    out = through_rx(items, schedule=schedule, auto_mode=auto_mode, max_buffer_length=max_len)
    assert sum(map(is_flush, out)) == sum(map(is_flush, items))
    c = ChunkScheduler(schedule, auto_mode, max_len)
    for got, given_ in zip(split_turns(out), split_turns(items), strict=True):
        # Lossless, ordered, and never cut inside a word.
        assert " ".join(got).split() == " ".join(given_).split()
        for k, chunk in enumerate(got):
            assert chunk.strip() and chunk == chunk.strip()
            limit = min(2 * c.threshold(k), max_len)
            assert len(chunk) <= limit or not any(ch.isspace() for ch in chunk)


@st.composite
def retokenised_text(draw: st.DrawFn) -> list[TextItem]:
    sentences_ = draw(st.lists(st.sampled_from(
        ["Dr. Smith left.", "It costs $3.14.", "Hi!", "Visit example.com today.",
         "Steps:\n1. Open it.\n", "你好。", "A long, long clause; then more — and more words here."]
    ), max_size=12))  # fmt: skip
    text = " ".join(sentences_)
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=len(text) + 1)))
    bounds = [0, *cuts, len(text)]
    tokens: list[TextItem] = [text[a:b] for a, b in itertools.pairwise(bounds)]
    if tokens and draw(st.booleans()):
        tokens.insert(draw(st.integers(0, len(tokens))), FLUSH)
    return tokens


@settings(max_examples=200, deadline=None)
@given(retokenised_text(), SCHEDULES, st.booleans())
def test_property_pipeline_lossless_for_any_tokenisation(
    tokens: list[TextItem], schedule: list[int], auto_mode: bool
) -> None:
    out: list[TextItem] = []
    reactivex.from_iterable(tokens).pipe(sentences(), chunk_schedule(schedule, auto_mode)).subscribe(
        out.append
    )
    assert sum(map(is_flush, out)) == sum(map(is_flush, tokens))
    for got, given_ in zip(split_turns(out), split_turns(tokens), strict=True):
        assert squash("".join(got)) == squash("".join(given_))
        assert all(chunk.strip() for chunk in got)


# --- idle release: whole words, measured from output idle (PROTOCOL S-8a) ------------


def run_idle_marble(
    events: list[tuple[float, TextItem]],
    idle_events: list[tuple[float, bool]] | None = None,
    end: float = 1000,
    **kw: Any,
) -> list[Any]:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(*[on_next(t, v) for t, v in events], on_completed(end))
    idle = None
    if idle_events is not None:
        idle = scheduler.create_hot_observable(*[on_next(t, v) for t, v in idle_events])
    return scheduler.start(lambda: xs.pipe(chunk_schedule(idle=idle, **kw))).messages


def test_pure_timeout_keeps_the_partial_word() -> None:
    c = ChunkScheduler((100,), segment=True)
    assert c.push("Hello there. How are yo") == []
    assert c.timeout() == ["Hello there. How are"]
    assert c.pending == "yo"
    assert c.timeout() == []  # only a partial word: it waits
    assert c.push("u doing") == []
    assert c.timeout() == ["you"]  # "doing" may go on
    assert c.push("?") == []
    assert c.timeout() == ["doing?"]  # punctuation after a letter completes the word
    assert c.flush() == []


def test_pure_timeout_never_splits_an_open_tag_or_inline_code() -> None:
    c = ChunkScheduler((100,), segment=True)
    c.push('Wait <break time="1')
    assert c.timeout() == ["Wait"]
    c.push('s"/> now `x = ')
    assert c.timeout() == ['<break time="1s"/> now']
    assert c.flush() == ["`x ="]


def test_pure_segment_mode_matches_sentences_then_chunk_schedule() -> None:
    tokens = ["Dr", ". Smith is ", "in. He", " will call.", " Bye"]
    c = ChunkScheduler((10, 100), auto_mode=True, segment=True, first_chunk="sentence")
    out = [chunk for t in tokens for chunk in c.push(t)] + c.flush()
    assert out == ["Dr. Smith is in.", "He will call. Bye"]


def test_phrase_first_chunk_needs_segment() -> None:
    with pytest.raises(ValueError, match="first_chunk"):
        chunk_schedule(first_chunk="phrase")
    with pytest.raises(ValueError, match="first_chunk"):
        chunk_schedule(first_chunk="clause", segment=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_words"):
        chunk_schedule(segment=True, min_words=5, max_words=4)
    with pytest.raises(ValueError, match="min_words"):
        chunk_schedule(segment=True, min_words=0)


def test_marble_idle_timer_counts_from_the_last_text_when_already_idle() -> None:
    messages = run_idle_marble(
        [(210, "Hel"), (220, "lo wor"), (260, "ld and"), (300, FLUSH)],
        [(205, True)],
        schedule=(100,),
        segment=True,
        flush_timeout_ms=30_000,
    )
    assert messages == [
        on_next(250, "Hello"),  # 30 after the last text (220); "wor" is kept
        on_next(290, "world"),  # 30 after 260; "and" is kept
        on_next(300, "and"),
        on_next(300, FLUSH),
        on_completed(1000),
    ]


def test_marble_idle_timer_is_held_while_busy_and_starts_when_idle() -> None:
    messages = run_idle_marble(
        [(210, "Hello there "), (220, "friend ")],
        [(201, True), (215, False), (300, True), (305, False), (310, True)],
        schedule=(100,),
        segment=True,
        flush_timeout_ms=30_000,
    )
    assert messages == [
        # Busy from 215 to 300: no release at 250; idle at 300 restarts, busy at 305
        # cancels, idle at 310 counts again: released at 340.
        on_next(340, "Hello there friend"),
        on_completed(1000),
    ]


def test_marble_idle_timer_holds_a_lone_partial_word() -> None:
    messages = run_idle_marble(
        [(210, "Supercalifragi"), (400, "listic "), (500, FLUSH)],
        [(201, True)],
        schedule=(100,),
        segment=True,
        flush_timeout_ms=10_000,
    )
    assert messages == [
        on_next(410, "Supercalifragilistic"),  # nothing at 220: one partial word waits
        on_next(500, FLUSH),
        on_completed(1000),
    ]


def test_marble_flush_after_a_timeout_release() -> None:
    messages = run_idle_marble(
        [(210, "One. Two thr"), (300, "ee"), (310, FLUSH), (320, "Next.")],
        [(201, False), (250, True)],
        schedule=(100,),
        segment=True,
        flush_timeout_ms=20_000,
    )
    assert messages == [
        on_next(270, "One. Two"),  # 20 after idle turned True at 250
        on_next(310, "three"),  # FLUSH releases the kept word, then itself
        on_next(310, FLUSH),
        on_next(340, "Next."),  # new turn, idle: "Next." ends in punctuation, so it is whole
        on_completed(1000),
    ]


def test_marble_idle_without_a_timeout_changes_nothing() -> None:
    messages = run_idle_marble(
        [(210, "Hi. Some"), (220, FLUSH)], [(201, False)], schedule=(100,), segment=True
    )
    assert messages == [on_next(220, "Hi. Some"), on_next(220, FLUSH), on_completed(1000)]


def test_marble_idle_error_is_forwarded() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(210, "Hi"), on_completed(400))
    boom = RuntimeError("idle failed")
    idle = scheduler.create_hot_observable(on_error(220, boom))
    op = chunk_schedule((100,), flush_timeout_ms=10_000, idle=idle, segment=True)
    assert scheduler.start(lambda: xs.pipe(op)).messages == [on_error(220, boom)]


WORDY = st.sampled_from(
    ["alpha", "be", "gamma.", "Delta,", "eps;", "Zeta!", "eta?", "(theta)", "iota —", "k"]
)


STARVE = 0
"""In :func:`timed_tokens`: the consumer is starving (``ChunkScheduler.starve``)."""


@st.composite
def timed_tokens(draw: st.DrawFn) -> list[str | int | None]:
    """Tokens split anywhere, with ``None`` = an idle timeout and STARVE sprinkled in."""
    text = " ".join(draw(st.lists(WORDY, min_size=1, max_size=30)))
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=len(text))))
    items: list[str | int | None] = []
    for a, b in itertools.pairwise([0, *cuts, len(text)]):
        items.append(text[a:b])
        items.extend(draw(st.lists(st.sampled_from([None, STARVE]), max_size=2)))
    return items


@settings(max_examples=300, deadline=None)
@given(timed_tokens(), SCHEDULES, st.booleans(), st.booleans())
def test_property_idle_release_is_lossless_and_never_cuts_a_word(
    items: list[str | int | None], schedule: list[int], auto_mode: bool, phrase: bool
) -> None:
    c = ChunkScheduler(schedule, auto_mode, segment=True, first_chunk="phrase" if phrase else "sentence")
    fed = ""
    out: list[str] = []
    for item in items:
        if item is None or item == STARVE:
            released = c.timeout() if item is None else c.starve()
            out += released
            done = squash("".join(out))
            assert squash(fed).startswith(done)
            if released:
                # The last released character ends a word of the input: whitespace follows
                # it, or it is punctuation after a letter at the end of the text so far.
                rest = fed[[i for i, ch in enumerate(fed) if not ch.isspace()][len(done) - 1] + 1 :]
                assert rest[:1].isspace() or (not rest and not fed.rstrip()[-1].isalnum())
        else:
            assert isinstance(item, str)
            fed += item
            out += c.push(item)
        assert all(chunk and chunk == chunk.strip() for chunk in out)
    out += c.flush()
    assert squash("".join(out)) == squash(fed)


# --- phrase-aware first chunk (issue 12) -----------------------------------------------

# Realistic first sentences of LLM answers (60-150 characters each).
FIRST_SENTENCES = [
    "Sure, I can help you plan the trip to Lisbon, and the good news is that late October "
    "is one of the nicest times to visit.",
    "Good question, and the short answer is that it depends on your budget and how much time you have.",
    "To reset your password, open the settings page and click the link that says forgot "
    "password at the bottom.",
    "Absolutely, here is a quick overview of the three main options you have for getting "
    "from the airport to the city.",
    "The main difference between a Roth IRA and a traditional IRA is when you pay taxes on "
    "the money you put in.",
    "I'm sorry to hear that your order arrived damaged; I can arrange a replacement or a "
    "full refund, whichever you prefer.",
    "Based on the numbers you shared, your monthly payment would be around four hundred "
    "dollars over five years.",
    "Photosynthesis is the process by which green plants use sunlight to turn water and "
    "carbon dioxide into sugar.",
    "Well, that really depends on what you mean by fast, because some of these models are "
    "optimized for throughput.",
    "Here's what I found: the restaurant opens at noon on weekdays, and it takes "
    "reservations for groups of six or more.",
    "Thanks for waiting — I checked the schedule and the next train to Porto leaves at a "
    "quarter past three from platform four.",
    "In short, yes: you can run the model on a laptop, but it will be slow unless you use a "
    "smaller quantized version.",
]
CLAUSE_END = (",", ";", ":", "—", "–", "-")


def stream_mid_word(text: str, seed: int) -> list[str]:
    """Tokens of 1-5 characters, so most of them end inside a word."""
    rng = random.Random(seed)
    tokens, pos = [], 0
    while pos < len(text):
        n = rng.randint(1, 5)
        tokens.append(text[pos : pos + n])
        pos += n
    return tokens


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("sentence", FIRST_SENTENCES, ids=[s[:24] for s in FIRST_SENTENCES])
def test_phrase_first_chunk_leaves_early_at_a_phrase_boundary(sentence: str, seed: int) -> None:
    assert 60 <= len(sentence) <= 150
    text = sentence + " Then a second sentence follows here."
    c = ChunkScheduler(LOW_LATENCY.chunk_length_schedule, LOW_LATENCY.auto_mode, segment=True)
    assert c.phrase_first_chunk
    out: list[str] = []
    fed = 0
    released_at = -1
    for token in stream_mid_word(text, seed):
        fed += len(token)
        out += c.push(token)
        if out and released_at < 0:
            released_at = fed
    out += c.flush()
    first = out[0]
    words = first.split()
    assert released_at < len(sentence)  # before the first sentence ends
    assert len(first) < len(sentence)
    assert first[-1] in CLAUSE_END or len(words) <= 12  # a clause boundary or <= max_words
    assert len(words) >= 4  # min_words
    assert _clean_word(words[-1]) not in FUNCTION_WORDS  # never after a function word
    assert text.startswith(first) and text[len(first)].isspace()  # never mid-word
    assert squash("".join(out)) == squash(text)  # nothing lost or reordered


def _clean_word(word: str) -> str:
    return word.strip("\"'“”‘’«»()[]{}*_<>.,;:!?…—–-").lower()


def test_phrase_first_chunk_example_of_issue_12() -> None:
    c = ChunkScheduler(LOW_LATENCY.chunk_length_schedule, LOW_LATENCY.auto_mode, segment=True)
    out: list[str] = []
    for token in stream_mid_word(FIRST_SENTENCES[0] + " It is mild.", 3):
        out += c.push(token)
    out += c.flush()
    # max_words=6 (the default since the realistic-answers benchmark): the best phrase
    # boundary by word 6, before the phrase opener "the"; never "... one of the".
    assert out[0] == "Sure, I can help you plan"
    assert out[1].startswith("the trip to Lisbon, and the good news")


def test_phrase_cut_by_max_words_prefers_a_boundary_before_a_phrase_opener() -> None:
    c = ChunkScheduler((50, 100), auto_mode=True, segment=True, max_words=8)
    text = "Photosynthesis is the process by which green plants use sunlight to grow "
    assert c.push(text) == ["Photosynthesis is the process"]  # before "by which"
    assert c.chunk_index == 1


def test_phrase_cut_never_lands_after_function_words_even_past_max_words() -> None:
    c = ChunkScheduler((50, 100), auto_mode=True, segment=True, min_words=2, max_words=3)
    assert c.push("It is in the of a to ") == []  # nothing but function words after "It"
    assert c.push("Lisbon ") == ["It is in the of a to Lisbon"]


def test_short_first_sentence_still_goes_out_at_its_end() -> None:
    c = ChunkScheduler(LOW_LATENCY.chunk_length_schedule, True, segment=True)
    assert c.push("Great question! The") == ["Great question!"]


def test_phrase_cut_skips_tags_and_inline_code() -> None:
    c = ChunkScheduler((50, 100), auto_mode=True, segment=True, min_words=2, max_words=4)
    assert c.push('Run <say-as interpret-as="x" format="y">the') == []
    assert c.push(" tool</say-as> now, ") == ['Run <say-as interpret-as="x" format="y">the tool</say-as>']
    code = ChunkScheduler((50, 100), auto_mode=True, segment=True, min_words=2, max_words=4)
    assert code.push("Use `pip install, fast` now, ") == ["Use `pip install, fast`"]


def test_first_chunk_sentence_keeps_the_old_auto_mode() -> None:
    c = ChunkScheduler((50, 100), auto_mode=True, segment=True, first_chunk="sentence")
    assert not c.phrase_first_chunk
    assert c.push("Sure, I can help you plan the trip to Lisbon, and more ") == []


def test_low_latency_preset_enables_the_phrase_policy_from_auto_mode() -> None:
    assert LOW_LATENCY.first_chunk == "phrase"
    assert BALANCED.first_chunk == "sentence"
    balanced = ChunkScheduler(BALANCED.chunk_length_schedule, BALANCED.auto_mode, segment=True)
    assert not balanced.phrase_first_chunk


def test_marble_phrase_chunk_leaves_with_the_token_that_completes_the_clause() -> None:
    messages = run_idle_marble(
        [(210, "Sure, I can he"), (220, "lp plan it,"), (230, " and the"), (240, " rest.")],
        schedule=(50, 100),
        auto_mode=True,
        segment=True,
    )
    assert messages == [
        on_next(230, "Sure, I can help plan it,"),  # decided at the space after ","
        on_next(1000, "and the rest."),
        on_completed(1000),
    ]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(FIRST_SENTENCES), st.integers(0, 10_000), SCHEDULES, st.booleans())
def test_property_phrase_pipeline_is_lossless(
    sentence: str, seed: int, schedule: list[int], flush: bool
) -> None:
    tokens: list[TextItem] = list(stream_mid_word(sentence + " And more. " + sentence, seed))
    if flush:
        tokens.insert(len(tokens) // 2, FLUSH)
    out = through_rx(tokens, schedule=schedule, auto_mode=True, segment=True)
    assert sum(map(is_flush, out)) == sum(map(is_flush, tokens))
    for got, given_ in zip(split_turns(out), split_turns(tokens), strict=True):
        assert squash("".join(got)) == squash("".join(given_))
        assert all(chunk and chunk == chunk.strip() for chunk in got)


def test_phrase_cut_never_splits_an_ssml_element() -> None:
    c = ChunkScheduler((50, 100), auto_mode=True, segment=True, min_words=4, max_words=5)
    # Words 4-7 are inside <spell>: the first cut after it (and not after a function word).
    assert c.push("Your code is <spell>A B C, D E</spell> and ") == ["Your code is <spell>A B C, D E</spell>"]
    b = ChunkScheduler((50, 100), auto_mode=True, segment=True, min_words=2, max_words=9)
    # A self-closing <break/> opens no element: its clause boundary is fine.
    assert b.push("Hold on <break time='1s'/> please, ") == ["Hold on <break time='1s'/> please,"]


def test_word_cut_of_an_over_long_run_avoids_function_words() -> None:
    c = ChunkScheduler((10,))
    text = "aaaa bbbb cccc of the dddd eeee ffff"  # the last space <= 20 follows "of"
    out = c.push(text) + c.flush()
    assert out == ["aaaa bbbb cccc", "of the dddd eeee", "ffff"]
    assert " ".join(out).split() == text.split()
    assert all(_clean_word(chunk.split()[-1]) not in FUNCTION_WORDS for chunk in out[:-1]), out


def test_has_text_tracks_buffered_and_pending_text() -> None:
    c = ChunkScheduler((100,), segment=True)
    assert not c.has_text
    c.push(" \n ")
    assert not c.has_text  # whitespace only: no timer
    c.push("Hi")
    assert c.has_text
    assert c.timeout() == []  # a lone partial word
    c.push(" there. ")
    assert c.buffered == "" and c.has_text
    assert c.timeout() == ["Hi there."]
    assert not c.has_text
    c.push("Next")
    assert c.has_text and c.flush() == ["Next"] and not c.has_text


def test_marble_of_the_idle_docstring() -> None:
    messages = run_idle_marble(
        [(301, "Hel"), (303, "lo wor"), (320, "ld"), (322, FLUSH)],
        [(300, True), (305, False), (312, True)],
        end=325,
        schedule=(100,),
        flush_timeout_ms=3000,
        segment=True,
    )
    assert messages == [
        on_next(315, "Hello"),
        on_next(322, "world"),
        on_next(322, FLUSH),
        on_completed(325),
    ]


@st.composite
def timed_stream(draw: st.DrawFn) -> tuple[list[tuple[int, TextItem]], list[tuple[int, bool]]]:
    """Tokens split anywhere at random times, FLUSHes, and random idle flips."""
    text = " ".join(draw(st.lists(WORDY, min_size=1, max_size=25)))
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=len(text))))
    t = 201
    events: list[tuple[int, TextItem]] = []
    for a, b in itertools.pairwise([0, *cuts, len(text)]):
        t += draw(st.integers(0, 8))
        events.append((t, text[a:b]))
        if draw(st.integers(0, 9)) == 0:
            events.append((t, FLUSH))
    flips = sorted(draw(st.sets(st.integers(201, t + 10), max_size=8)))
    idle = [(at, i % 2 == 1) for i, at in enumerate(flips)]  # False, True, False...
    return events, idle


@settings(max_examples=200, deadline=None)
@given(timed_stream(), SCHEDULES, st.booleans(), st.integers(1, 6), st.booleans())
def test_property_operator_is_lossless_under_random_timeouts_and_idle(
    stream: tuple[list[tuple[int, TextItem]], list[tuple[int, bool]]],
    schedule: list[int],
    auto_mode: bool,
    timeout_ticks: int,
    with_idle: bool,
) -> None:
    events, idle = stream
    end = events[-1][0] + 50
    messages = run_idle_marble(
        events,
        idle if with_idle else None,
        end=end,
        schedule=schedule,
        auto_mode=auto_mode,
        segment=True,
        flush_timeout_ms=timeout_ticks * 1000,
    )
    out = [m.value.value for m in messages if m.value.kind == "N"]
    items = [item for _, item in events]
    assert messages[-1].value.kind == "C"
    assert sum(map(is_flush, out)) == sum(map(is_flush, items))
    for got, given_ in zip(split_turns(out), split_turns(items), strict=True):
        assert squash("".join(got)) == squash("".join(given_))  # nothing lost or reordered
        assert all(chunk and chunk == chunk.strip() for chunk in got)
    # A chunk at a time without input is an idle release: it ends at a word boundary.
    input_times = {t for t, _ in events} | {end}
    done = 0
    for m in messages:
        if m.value.kind != "N" or is_flush(m.value.value):
            continue
        done += len(squash(m.value.value))
        if m.time in input_times:
            continue
        fed = "".join(" " if is_flush(item) else item for t, item in events if t < m.time)
        last = [i for i, ch in enumerate(fed) if not ch.isspace()][done - 1]
        rest = fed[last + 1 :]
        assert rest[:1].isspace() or (not rest and not fed[last].isalnum()), (m, fed)


# --- starving consumer: after an LLM stall the next chunk is cut like chunk 0 (issue 12) ---


def test_pure_starve_speaks_a_held_sentence_end_then_cuts_at_a_phrase_boundary() -> None:
    c = ChunkScheduler(LOW_LATENCY.chunk_length_schedule, LOW_LATENCY.auto_mode, segment=True)
    assert c.push("Sure thing, let me check the latest departure times for you. ") == [
        "Sure thing, let me check"
    ]
    # Tool call: the LLM is silent. "for you." waits for its next character (an
    # abbreviation?), which comes only after the stall: the starving consumer takes it.
    assert c.starve() == ["the latest departure times for you."]
    # Its audio is sent and the consumer runs dry again: the next chunk is a phrase.
    assert c.starve() == []
    assert c.push("The next train to Porto leaves at a quarter past three from platform ") == [
        "The next train to Porto leaves"  # by max_words, before the phrase opener "at"
    ]
    assert c.chunk_index == 3
    # the urgency ended with that chunk: the rest waits for its threshold again
    assert c.push("four, and the one after that at five. Then ") == []
    assert c.flush() == ["at a quarter past three from platform four, and the one after that at five. Then"]


def test_pure_starve_releases_buffered_short_sentences_at_once() -> None:
    c = ChunkScheduler((20, 200), auto_mode=True, segment=True)
    assert c.push("Hi there, friend of mine. Yes. It is ") == ["Hi there, friend of mine."]
    assert c.buffered == "Yes."  # below chunk 1's threshold of 200
    assert c.starve() == ["Yes."]
    assert c.push("sunny today, ") == []  # that release ended the urgency


def test_pure_starve_uses_the_text_already_pending() -> None:
    c = ChunkScheduler(LOW_LATENCY.chunk_length_schedule, LOW_LATENCY.auto_mode, segment=True)
    assert c.push("Okay then. The weather in Lisbon is mild, with sun") == ["Okay then."]
    assert c.starve() == ["The weather in Lisbon is mild,"]  # its first clause after 4 words
    assert c.flush() == ["with sun"]


def test_pure_starve_is_a_no_op_for_chunk_zero_and_without_the_phrase_policy() -> None:
    c = ChunkScheduler(LOW_LATENCY.chunk_length_schedule, LOW_LATENCY.auto_mode, segment=True)
    assert c.push("Sure, I") == [] and c.starve() == [] and c.chunk_index == 0
    balanced = ChunkScheduler(BALANCED.chunk_length_schedule, BALANCED.auto_mode, segment=True)
    first = "One sentence here is long enough to go out now, my friend, as it has more than 80 letters."
    assert balanced.push(first + " Two ") == [first]
    assert balanced.starve() == []
    assert balanced.push("words and more words and more words, ") == []


def test_marble_urgent_after_ms_counts_from_idle_and_is_cancelled_by_work() -> None:
    text = "The next train to Porto leaves at a quarter past three from platform four "
    events = [(210, "Let me check the times for you. "), (300, text)]  # a stall from 210 to 300
    messages = run_idle_marble(
        events,
        # busy with chunk 0 from 211, all sent at 250, busy 252-258, idle 258-263:
        # urgent at 262 (4000 ms = 4 ticks); busy with that chunk 263-270, urgent at 274
        [(201, True), (211, False), (250, True), (252, False), (258, True), (263, False), (270, True)],
        schedule=LOW_LATENCY.chunk_length_schedule,
        auto_mode=True,
        segment=True,
        urgent_after_ms=4000,
    )
    assert messages == [
        on_next(210, "Let me check the times"),  # the phrase-aware chunk 0
        on_next(262, "for you."),  # the held sentence end, at the first urgency
        on_next(300, "The next train to Porto leaves"),  # urgent since 274: a phrase cut
        on_next(1000, "at a quarter past three from platform four"),
        on_completed(1000),
    ]
    calm = run_idle_marble(
        events,
        [(201, True), (211, False), (250, True), (253, False)],  # never idle 4 s in a row
        schedule=LOW_LATENCY.chunk_length_schedule,
        auto_mode=True,
        segment=True,
        urgent_after_ms=4000,
    )
    assert calm == [
        on_next(210, "Let me check the times"),
        on_next(1000, "for you. " + text.strip()),
        on_completed(1000),
    ]


def test_urgent_after_ms_is_validated() -> None:
    with pytest.raises(ValueError, match="urgent_after_ms"):
        chunk_schedule(segment=True, urgent_after_ms=0)
    with pytest.raises(ValueError, match="urgent_after_ms"):
        chunk_schedule(segment=True, urgent_after_ms=True)  # type: ignore[arg-type]
