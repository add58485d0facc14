"""Text normalisation for speech: "$3.50" -> "three dollars and fifty cents".

Pure code, no Rx: :func:`normalize_text` rewrites the written forms a voice
misreads (numbers, currency, dates, times, units, abbreviations, URLs, e-mail
addresses, phone numbers, symbols) and returns a :class:`NormalizedText` whose
span map sends any range of the spoken text back to the text the client sent
(word timestamps are computed on the spoken text).

Library choice: number words come from ``num2words`` (LGPL-2.1, pure Python, no
dependencies beyond ``docopt``, ~50 languages, ``to="year"``/``"ordinal"``): it
is the maintained reference for the hard, boring part (cardinals up to the
trillions, ordinals, the year reading). Detection is ours: one precompiled
alternation of regular expressions (``english.py``), scanned left to right, so
a chunk costs one regex pass plus a handler per match. Heavier normalisers
(NeMo's WFST grammars, which need pynini/OpenFST) are far too slow to load and
run per chunk for a streaming first chunk.

Only English is normalised. Any other ``language`` passes the text through
unchanged (identity span map): espeak-ng's own number reading in those
languages is better than a half-done rule set. Unknown languages never raise.
"""

from __future__ import annotations

from .english import normalize_english
from .spans import NormalizedText, Span, SpanBuilder

__all__ = ["NormalizedText", "Span", "is_english", "normalize_text"]


def is_english(language: str) -> bool:
    """``"en"``, ``"EN"``, ``"en-US"``, ``"en_GB"``... are English."""
    return language[:2].lower() == "en" and (len(language) == 2 or language[2] in "-_")


def normalize_text(text: str, language: str = "en") -> NormalizedText:
    """Rewrite ``text`` the way it should be spoken, keeping a map back to it.

    Example:
        >>> n = normalize_text("Dr. Smith paid $3.50.")
        >>> n.text
        'Doctor Smith paid three dollars and fifty cents.'
        >>> n.to_original(18, 23)  # "three" came from "$3.50"
        (16, 21)

    Args:
        text: One complete segment (a sentence or a synthesis chunk): tokens split
            inside a number would be read as two numbers.
        language: BCP-47-ish code; only English (``en``, ``en-US``, ...) is
            normalised, anything else is passed through unchanged.

    Returns:
        The spoken text and its span map; ``.text == text`` when nothing needed a
        rewrite. Every character of ``text`` is covered by exactly one span.
    """
    if is_english(language):
        return normalize_english(text)
    out = SpanBuilder(text)
    out.copy(0, len(text))
    return out.build()
