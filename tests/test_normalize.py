"""Tests of ``normalize_text()`` and the ``normalize()`` operator.

* the corpus (tests/data/normalize_corpus.json): input -> expected spoken text, per category;
* the span map: ``to_original`` on a rewrite of every category, identity spans, clamping;
* hypothesis properties: spans tile both strings in order, plain words pass unchanged,
  normalised text is a fixed point, arbitrary unicode never raises;
* the Rx operator: FLUSH passes, bad items error, cold and reusable, marble timing;
* espeak-ng (the phonemiser of the Piper voice) reads the normalised text differently
  from the raw text, on one example per category.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex.testing import ReactiveTest, TestScheduler

from rxtts.operators import FLUSH, NormalizedText, TextItem, normalize, normalize_text, sentences
from rxtts.operators._normalize.tables import (
    ABBREVIATIONS,
    CURRENCIES,
    MONTH_ABBREVIATIONS,
    MONTHS,
    NUMBER_ABBREVIATIONS,
    PER_UNITS,
    UNITS,
    VULGAR_FRACTIONS,
)
from rxtts.operators.normalize import Span

CORPUS_PATH = Path(__file__).parent / "data" / "normalize_corpus.json"
CORPUS: list[dict[str, Any]] = json.loads(CORPUS_PATH.read_text(encoding="utf-8"))

CATEGORIES = {
    "currency", "number", "year", "decade", "ordinal", "date", "time", "percent", "unit",
    "abbreviation", "phone", "email", "url", "range", "fraction", "symbol", "markup", "plain", "roman",
}  # fmt: skip

on_next = ReactiveTest.on_next
on_completed = ReactiveTest.on_completed
on_error = ReactiveTest.on_error


def check_spans(n: NormalizedText) -> None:
    """The span map tiles ``original`` and ``text`` in order; identity spans copy."""
    t = o = 0
    for span in n.spans:
        assert (span.text_start, span.original_start) == (t, o), n
        assert span.text_end >= span.text_start and span.original_end > span.original_start, n
        piece, source = (
            n.text[span.text_start : span.text_end],
            n.original[span.original_start : span.original_end],
        )
        if span.identity:
            assert piece == source, n
        else:
            assert piece != source, n
        t, o = span.text_end, span.original_end
    assert (t, o) == (len(n.text), len(n.original)), n


# --- the corpus ------------------------------------------------------------------


def test_corpus_is_large_and_covers_every_category() -> None:
    assert len(CORPUS) >= 80
    assert {c["category"] for c in CORPUS} == CATEGORIES
    inputs = [c["input"] for c in CORPUS]
    assert len(set(inputs)) == len(inputs)
    for category in CATEGORIES:
        assert sum(c["category"] == category for c in CORPUS) >= 3, category


@pytest.mark.parametrize("case", CORPUS, ids=[f"{c['category']}:{c['input'][:30]}" for c in CORPUS])
def test_corpus(case: dict[str, Any]) -> None:
    n = normalize_text(case["input"])
    assert n.text == case["expected"]
    assert n.original == case["input"]
    check_spans(n)
    assert n.changed == (case["category"] != "plain")


@pytest.mark.parametrize("case", CORPUS, ids=[f"{c['category']}:{c['input'][:30]}" for c in CORPUS])
def test_corpus_output_is_a_fixed_point(case: dict[str, Any]) -> None:
    assert normalize_text(case["expected"]).text == case["expected"]


def test_no_period_left_after_a_title() -> None:
    for raw in ("Dr. Smith", "Mr. Jones", "Mrs. Jones", "Ms. Lee", "Prof. Chen", "St. Louis", "Mt. Fuji"):
        spoken = normalize_text(f"I met {raw} today.").text
        assert spoken.count(".") == 1 and spoken.endswith("today."), spoken


# --- the span map --------------------------------------------------------------------

# (input, a word of the spoken text, the characters of the input it must map to)
MAPPED = [
    ("It costs $3.50 now.", "fifty", "$3.50"),
    ("We have 1,234 users", "thirty-four", "1,234"),
    ("In 1990 it rained", "ninety", "1990"),
    ("Music of the 1990s", "nineties", "1990s"),
    ("Our 103rd show", "third", "103rd"),
    ("Due 2024-03-03 here", "March", "2024-03-03"),
    ("On March 3, 2024 we met", "twenty-four", "March 3, 2024"),
    ("Meet at 3:30 pm today", "PM", "3:30 pm"),
    ("A 3.5% rate", "percent", "3.5%"),
    ("It weighs 10kg", "kilograms", "10kg"),
    ("Ask Dr. Smith in", "Doctor", "Dr."),
    # addresses and phone numbers map piece by piece: a word to its own characters
    ("Call 555-123-4567 now", "seven", "4567"),
    ("Mail jane.doe@example.com today", "at", "@"),
    ("See https://www.example.com/docs now", "slash", "/"),
    ("Pages 10-20 only", "twenty", "10-20"),
    ("Add 1/2 cup", "half", "1/2"),
    ("We are #1 here", "number", "#1"),
    ("Salt & pepper", "and", "&"),
]


@pytest.mark.parametrize(("raw", "word", "source"), MAPPED, ids=[m[2] for m in MAPPED])
def test_to_original_maps_a_spoken_word_back_to_its_source(raw: str, word: str, source: str) -> None:
    n = normalize_text(raw)
    match = re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", n.text)
    assert match is not None, n.text
    start, end = n.to_original(match.start(), match.end())
    assert raw[start:end] == source
    # the words around the rewrite map 1:1
    first = n.text.split()[0]
    assert n.to_original(0, len(first)) == (0, len(first))
    assert raw[slice(*n.to_original(0, len(n.text)))] == raw


def test_to_original_inside_an_address_is_exact() -> None:
    raw = "Mail jane.doe@example.com or see https://www.example.com/docs/ now"
    n = normalize_text(raw)
    assert n.text == "Mail jane dot doe at example dot com or see example dot com slash docs now"
    doe = n.text.index("doe")
    assert n.to_original(doe, doe + 3) == (raw.index("doe"), raw.index("doe") + 3)  # copied unchanged
    docs = n.text.index("docs")
    assert raw[slice(*n.to_original(docs, docs + 4))] == "docs"
    # the spoken URL maps to the smallest covering range: the silent scheme lies outside it...
    url = n.text.index("example dot com slash")
    start, end = n.to_original(url, docs + 4)
    assert raw[start:end] == "example.com/docs"
    # ...and inside it once the range starts before the URL
    assert raw[slice(*n.to_original(url - 1, docs + 4))] == " https://www.example.com/docs"


def test_to_original_identity_text_maps_one_to_one() -> None:
    raw = "Nothing to rewrite here."
    n = normalize_text(raw)
    assert n.text == raw and not n.changed
    assert n.spans == (Span(0, len(raw), 0, len(raw), True),)
    for start in range(len(raw)):
        for end in range(start, len(raw) + 1):
            assert n.to_original(start, end) == (start, end)


def test_to_original_offsets_after_a_rewrite_shift() -> None:
    raw = "Pay $5 to Bob"
    n = normalize_text(raw)
    assert n.text == "Pay five dollars to Bob"
    bob = n.text.index("Bob")
    assert n.to_original(bob, bob + 3) == (raw.index("Bob"), raw.index("Bob") + 3)
    # a range straddling identity text and the rewrite covers both, minimally
    assert n.to_original(2, n.text.index("dollars")) == (2, raw.index("$5") + 2)
    # an empty range maps to a point
    assert n.to_original(bob, bob) == (raw.index("Bob"),) * 2
    assert n.to_original(len(n.text), len(n.text)) == (len(raw), len(raw))


def test_to_original_clamps_and_rejects_reversed_ranges() -> None:
    n = normalize_text("It is $3.50")
    assert n.to_original(-5, 10**6) == (0, len(n.original))
    with pytest.raises(ValueError, match="start <= end"):
        n.to_original(5, 2)
    assert normalize_text("").to_original(0, 3) == (0, 0)


def test_empty_text() -> None:
    n = normalize_text("")
    assert (n.text, n.spans) == ("", ())


# --- number words -----------------------------------------------------------------


def test_fast_path_below_a_thousand_says_what_num2words_says() -> None:
    from num2words import num2words

    from rxtts.operators._normalize import words

    def american(text: str) -> str:
        return text.replace(" and ", " ").replace(",", "")

    for n in range(1000):
        assert words.cardinal(n) == american(num2words(n)), n
        assert words.ordinal(n) == american(num2words(n, to="ordinal")), n
    for n in (1000, 1234, 10**6 + 1, 999_999_999_999):
        assert words.cardinal(n) == american(num2words(n)), n
    assert words.cardinal(10**15) == "one " + " ".join(["zero"] * 15)  # digit by digit from here


# --- languages ------------------------------------------------------------------


@pytest.mark.parametrize("language", ["en", "EN", "en-US", "en_GB"])
def test_english_variants_are_normalised(language: str) -> None:
    assert normalize_text("It costs $5.", language).text == "It costs five dollars."


@pytest.mark.parametrize("language", ["de", "fr-FR", "es", "xx-unknown", "", "e", "eng", "english"])
def test_other_languages_pass_through(language: str) -> None:
    raw = "Es kostet 5 € am 3.4.2024, Dr. Müller."
    n = normalize_text(raw, language)
    assert n.text == raw
    check_spans(n)
    assert n.to_original(3, 9) == (3, 9)


# --- properties -------------------------------------------------------------------

_SKIP_WORDS = {k.lower() for k in ABBREVIATIONS} | {"dr", "mr", "mrs", "ms", "prof", "st", "no"}
_WORD = st.from_regex(r"[A-Za-z]{2,12}", fullmatch=True).filter(
    lambda w: w.lower() not in _SKIP_WORDS and w not in MONTHS
)
_JOIN = st.sampled_from([" ", ", ", "! ", "? ", "; ", " - ", "\n"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_WORD, _JOIN), min_size=1, max_size=20))
def test_plain_words_pass_unchanged(parts: list[tuple[str, str]]) -> None:
    text = "".join(w + j for w, j in parts)
    n = normalize_text(text)
    assert n.text == text
    assert n.spans == (Span(0, len(text), 0, len(text), True),)


_PIECES = st.sampled_from([c["input"] for c in CORPUS]) | _WORD


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, min_size=1, max_size=6), _JOIN)
def test_normalised_text_is_a_fixed_point(pieces: list[str], joiner: str) -> None:
    once = normalize_text(joiner.join(pieces))
    check_spans(once)
    assert normalize_text(once.text).text == once.text


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_unicode_never_raises_and_spans_tile(text: str) -> None:
    n = normalize_text(text)
    check_spans(n)
    assert n.original == text


_DENSE = st.text(alphabet="0123456789 .,:;/-–%$€£#&@+()'’°½aAmMpPstndrhkgxDr\n", max_size=80)


@settings(max_examples=1000, deadline=None)
@given(_DENSE)
def test_dense_symbol_soup_never_raises_and_spans_tile(text: str) -> None:
    n = normalize_text(text)
    check_spans(n)
    for start, end in [(0, len(n.text)), (len(n.text) // 2, len(n.text)), (0, len(n.text) // 3)]:
        a, b = n.to_original(start, end)
        assert 0 <= a <= b <= len(text)


_FRAGMENTS = sorted(
    {*UNITS, *CURRENCIES, *MONTHS, *MONTH_ABBREVIATIONS, *(f"{k}." for k in ABBREVIATIONS)}
    | {*(f"{k}." for k in NUMBER_ABBREVIATIONS), *PER_UNITS, *VULGAR_FRACTIONS}
    | {"1", "12", "1,234", "3.5", "2024", "1990", "0", "007", ".5", "10", "99", "555", "4567", "+1"}
    | {"-", "–", "/", ":", ".", ",", " ", "'", '"', "#", "&", "@", "^", "x", "%", "°", "+", "~", "<", ">"}
    | {"(", ")", "am", "pm", "a.m.", "st", "nd", "th", "s", "'s", "www.", "https://", "com", "io", "Dr", "St"}
    | {"Smith", "the", "in", "on", "call", "rated", "over", "tokens", "e.g.", "i.e.", "U.S.", "C#", "\n"}
    | {"<break/>", "<say-as>", "</say-as>", "million", "k", "M", "bn", "sq ft", "x2", "24/7"}
)


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), min_size=1, max_size=16), st.sampled_from(["", " "]))
def test_fragment_soup_never_raises_and_spans_tile(fragments: list[str], joiner: str) -> None:
    n = normalize_text(joiner.join(fragments))
    check_spans(n)


@settings(max_examples=200, deadline=None)
@given(st.lists(_PIECES, min_size=1, max_size=5), st.data())
def test_to_original_is_monotonic_and_covers(pieces: list[str], data: st.DataObject) -> None:
    n = normalize_text(" ".join(pieces))
    size = len(n.text)
    start = data.draw(st.integers(0, size))
    end = data.draw(st.integers(start, size))
    a, b = n.to_original(start, end)
    assert 0 <= a <= b <= len(n.original)
    if end < size:  # widening the range never shrinks the original range
        a2, b2 = n.to_original(start, end + 1)
        assert a2 == a and b2 >= b
    for span in n.spans:  # every character of a rewrite maps to the whole source
        if not span.identity and span.text_end > span.text_start:
            assert n.to_original(span.text_start, span.text_start + 1) == (
                span.original_start,
                span.original_end,
            )


# --- the operator -----------------------------------------------------------------


def through_rx(items: list[TextItem], language: str = "en") -> list[TextItem]:
    out: list[TextItem] = []
    done: list[bool] = []
    reactivex.from_iterable(items).pipe(normalize(language)).subscribe(
        out.append, on_completed=lambda: done.append(True)
    )
    assert done == [True]
    return out


def test_operator_normalises_segments_and_forwards_flush() -> None:
    out = through_rx(["Dr. Smith paid $3.50.", FLUSH, "Call at 9am.", FLUSH, "Fine."])
    assert out == [
        "Doctor Smith paid three dollars and fifty cents.",
        FLUSH,
        "Call at nine AM.",
        FLUSH,
        "Fine.",
    ]


def test_operator_after_sentences_on_a_token_stream() -> None:
    tokens = ["Dr", ". Sm", "ith paid $3", ".50 on 3/4", "/2024. Call 555", "-123-4567 at 9", "am.", FLUSH]
    out: list[TextItem] = []
    reactivex.from_iterable(tokens).pipe(sentences(), normalize()).subscribe(out.append)
    assert out == [
        "Doctor Smith paid three dollars and fifty cents on March fourth, twenty twenty-four.",
        "Call five five five, one two three, four five six seven at nine AM.",
        FLUSH,
    ]


def test_operator_passes_other_languages_through() -> None:
    assert through_rx(["Dr. Müller zahlt 5 €.", FLUSH], "de") == ["Dr. Müller zahlt 5 €.", FLUSH]


def test_operator_is_cold_and_reusable() -> None:
    source = reactivex.from_iterable(["It is 5 km.", FLUSH]).pipe(normalize())
    first: list[TextItem] = []
    second: list[TextItem] = []
    source.subscribe(first.append)
    source.subscribe(second.append)
    assert first == second == ["It is five kilometers.", FLUSH]


def test_operator_errors_on_a_bad_item() -> None:
    errors: list[Exception] = []
    out: list[TextItem] = []
    reactivex.from_iterable(["ok 1", 42]).pipe(normalize()).subscribe(  # type: ignore[list-item]
        out.append, errors.append
    )
    assert out == ["ok one"]
    assert len(errors) == 1 and isinstance(errors[0], TypeError) and "normalize()" in str(errors[0])


def test_operator_marbles_emit_at_once() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(210, "It costs $5."), on_next(220, FLUSH), on_next(300, "Pages 10-20."), on_completed(400)
    )
    result = scheduler.start(lambda: xs.pipe(normalize()))
    assert result.messages == [
        on_next(210, "It costs five dollars."),
        on_next(220, FLUSH),
        on_next(300, "Pages ten to twenty."),
        on_completed(400),
    ]


def test_operator_forwards_source_errors() -> None:
    scheduler = TestScheduler()
    boom = RuntimeError("boom")
    xs = scheduler.create_hot_observable(on_next(210, "1st"), on_error(220, boom))
    result = scheduler.start(lambda: xs.pipe(normalize()))
    assert result.messages == [on_next(210, "first"), on_error(220, boom)]


# --- espeak-ng reads the normalised text better ----------------------------------


def test_espeak_reads_normalised_text_differently_on_every_category() -> None:
    from rxtts.bench.normalize import ESPEAK_EXAMPLES, espeak_comparison

    rows = espeak_comparison()
    spoken_categories = CATEGORIES - {"plain", "markup"}
    assert {r["category"] for r in rows} == {c for c, _ in ESPEAK_EXAMPLES} == spoken_categories
    for row in rows:
        assert row["differs"], row
        assert row["normalized_sentences"] == 1, row  # nothing ends the sentence early


# phonemes espeak-ng says for the raw text that are a misreading (checked on espeak-ng 1.52 via piper)
MISREADINGS = [
    ("It costs $3.50.", "dˈɑːlɚ θɹˈiː"),  # "dollar three point five zero"
    ("In 1990 it rained.", "hˈʌndɹɪd"),  # "nineteen hundred ninety"
    ("See https://www.example.com/docs.", "dˌʌbəljˌuː"),  # "w w w"
    ("Add 1/2 cup.", "slˈæʃ"),  # "one slash two"
    ("Pages 10-20.", "dˈæʃ"),  # "ten dash twenty"
    ("It weighs 10kg.", "kˌeɪdʒˈiː"),  # "k g"
    ("It starts at 5:00.", "zˈiəɹoʊ zˈiəɹoʊ"),  # "five zero zero"
    ("Call 555-123-4567.", "hˈʌndɹɪd"),  # "five hundred fifty-five dash ..."
    ("World War II ended.", "ɹˌoʊmən"),  # "World War roman two"
    ("Louis XIV built it.", "ɹˌoʊmən"),  # "Louis roman fourteen"
    ("That costs USD 45.", "jˌuːˌɛsdˈiː"),  # "U S D forty-five"
    ("It downloads at 5 MB/s.", "slˈæʃ"),  # "M B slash S"
]


@pytest.mark.parametrize(("raw", "misread"), MISREADINGS, ids=[m[0] for m in MISREADINGS])
def test_espeak_misreading_is_gone_after_normalisation(raw: str, misread: str) -> None:
    from rxtts.bench.normalize import phonemize

    assert misread in " ".join(phonemize(raw))
    assert misread not in " ".join(phonemize(normalize_text(raw).text))


def test_espeak_sees_one_sentence_after_a_title() -> None:
    from rxtts.bench.normalize import phonemize

    raw = "Dr. Smith met the U.S. Army in St. Louis, e.g. at 3 p.m. today."
    assert len(phonemize(raw)) == 4  # espeak-ng ends a sentence after "Dr.", "U.S." and "St."
    assert len(phonemize(normalize_text(raw).text)) == 1


def test_espeak_sees_one_sentence_after_a_weekday_abbreviation() -> None:
    from rxtts.bench.normalize import phonemize

    raw = "The sale ends Fri., Nov. 29 at noon."
    assert len(phonemize(raw)) == 3  # "Fri." and "Nov." each end a sentence for espeak-ng
    assert len(phonemize(normalize_text(raw).text)) == 1
