"""Tests of ``strip_markdown()`` / ``strip_markdown_text()``."""

from __future__ import annotations

import re

import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st

from rxtts.operators import FLUSH, TextItem, sentences, strip_markdown, strip_markdown_text


@pytest.mark.parametrize(
    ("segment", "spoken"),
    [
        ("# Getting started", "Getting started"),
        ("### 1. Overview ###", "1. Overview"),
        ("- **Bold** move: see [the docs](https://x.io/a_(b)).", "Bold move: see the docs."),
        ("* bullet item", "bullet item"),
        ("1. Open the *app* now.", "1. Open the app now."),
        ("> quoted _text_ here", "quoted text here"),
        ("__Strong__ and ~~old~~ new", "Strong and old new"),
        ("Use `pip install rxtts` now.", "Use pip install rxtts now."),
        ("![logo](a.png) Logo.", "logo Logo."),
        ("Mail <mailto:a@b.io> now", "Mail mailto:a@b.io now"),
        ("| Name | Age |", "Name, Age"),
        ("|---|:---:|", ""),
        ("---", ""),
        ("```python\nprint('hi')\n```", "print('hi')"),
        ("~~~\nls -la\n~~~", "ls -la"),
        ("**Note.** Yes", "Note. Yes"),
    ],
)
def test_markup_is_removed(segment: str, spoken: str) -> None:
    assert strip_markdown_text(segment) == spoken


@pytest.mark.parametrize(
    "plain",
    [
        "snake_case_name and x__init__y stay",
        "2 * 3 * 4 = 24",
        "5 * 3 and a_b_c",
        '<break time="500ms"/> SSML is for the engine.',
        "Prices: $3.14 - $4.20 (approx.)",
    ],
)
def test_plain_text_and_ssml_are_kept(plain: str) -> None:
    assert strip_markdown_text(plain) == plain


def test_code_blocks_can_be_dropped() -> None:
    assert strip_markdown_text("```\nx = 1\n```", code_blocks=False) == ""
    assert strip_markdown_text("Inline `x` stays", code_blocks=False) == "Inline x stays"


def test_operator_after_sentences_drops_empty_and_forwards_flush() -> None:
    tokens: list[TextItem] = ["# In", "tro\n", "**Hi", "** there.\n\n", "---\n\n", "Bye", FLUSH, "Ok"]
    out: list[TextItem] = []
    reactivex.from_iterable(tokens).pipe(sentences(), strip_markdown()).subscribe(out.append)
    assert out == ["Intro", "Hi there.", "Bye", FLUSH, "Ok"]


def test_operator_rejects_non_text() -> None:
    errors: list[Exception] = []
    reactivex.from_iterable([3]).pipe(strip_markdown()).subscribe(  # type: ignore[list-item]
        on_error=errors.append
    )
    assert len(errors) == 1 and isinstance(errors[0], TypeError)


PIECES = st.sampled_from(
    ["word", "**", "*", "_", "__", "`", "~~", "[", "](", ")", "#", "- ", "> ", "|", " ", "\n", "."]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(PIECES, max_size=30).map("".join))
def test_property_never_adds_text_and_keeps_words(segment: str) -> None:
    spoken = strip_markdown_text(segment)
    assert spoken == spoken.strip()
    # Only markup is removed: every word of the output comes from the input, in order.
    assert spoken.count("word") <= segment.count("word")
    # Table cells are read as a list ("a | b" -> "a, b"): separators are the only addition.
    assert len(re.sub(r"[\s,]", "", spoken)) <= len(re.sub(r"\s", "", segment))
