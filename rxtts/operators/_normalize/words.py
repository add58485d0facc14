"""English number words, on top of ``num2words``.

``num2words`` (LGPL-2.1, pure Python, maintained by Savoir-faire Linux) does the
hard part: cardinals up to decillions, ordinals, and the year reading
(``1990`` -> "nineteen ninety", ``1905`` -> "nineteen oh-five"). Its English output
is British-styled ("one hundred and five", "one thousand, two hundred"): the
commas would make the voice pause and the "and" is not American usage, so both
are removed here. Results are cached (a call costs ~70 µs, a cache hit ~0.1 µs), and
numbers below 1000 -- most of what a chunk holds -- are spelled by a ten-line fast path
(:func:`_below_thousand`), tested equal to num2words for every value, so that the first
chunk of a fresh process does not pay num2words' cost for "three" or "fifty".
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

from num2words import num2words

__all__ = [
    "DIGITS",
    "cardinal",
    "decimal",
    "digits",
    "fraction",
    "ordinal",
    "plural_word",
    "year",
]

DIGITS: Final = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_MAX_CARDINAL: Final = 10**15
"""Up to the trillions integers are read as numbers; longer ones digit by digit."""
_AND: Final = re.compile(r",? and |, ")


def _american(words: str) -> str:
    """Drop num2words' British "and" and the commas between groups."""
    return _AND.sub(" ", words)


_ONES: Final = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)  # fmt: skip
_TENS: Final = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_ORDINAL_WORDS: Final = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}  # fmt: skip


def _below_thousand(n: int) -> str:
    """Cardinal words of ``0 <= n < 1000``, exactly as num2words (American-styled) says them."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    hundreds, rest = divmod(n, 100)
    return f"{_ONES[hundreds]} hundred" + (f" {_below_thousand(rest)}" if rest else "")


def _ordinal_of(words: str) -> str:
    """Ordinal of cardinal words: "twenty-one" -> "twenty-first", "ninety" -> "ninetieth"."""
    head, sep, last = max(words.rpartition(" "), words.rpartition("-"), key=lambda p: len(p[0]))
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


def digits(text: str) -> str:
    """Read a string of ASCII digits one by one: ``"007"`` -> "zero zero seven"."""
    return " ".join(DIGITS[ord(c) - 48] for c in text if "0" <= c <= "9")


@lru_cache(maxsize=4096)
def cardinal(n: int) -> str:
    """``1234`` -> "one thousand two hundred thirty-four"; negative -> "minus ...".

    Integers of 10**15 and more are read digit by digit (nobody says "four
    quadrillion ..." for a long id).
    """
    if abs(n) >= _MAX_CARDINAL:
        return ("minus " if n < 0 else "") + digits(str(abs(n)))
    if 0 <= n < 1000:
        return _below_thousand(n)
    return _american(str(num2words(n)))


@lru_cache(maxsize=1024)
def ordinal(n: int) -> str:
    """``22`` -> "twenty-second", ``103`` -> "one hundred third"."""
    if abs(n) >= _MAX_CARDINAL:
        return cardinal(n)
    if 0 <= n < 1000:
        return _ordinal_of(_below_thousand(n))
    return _american(str(num2words(n, to="ordinal")))


@lru_cache(maxsize=1024)
def year(n: int) -> str:
    """Year reading: ``1990`` -> "nineteen ninety", ``2005`` -> "two thousand five".

    Follows num2words: 2000-2009 are "two thousand (n)", 2010 on "twenty ten",
    ``1905`` -> "nineteen oh five" (its hyphen dropped), ``1900`` -> "nineteen hundred".
    """
    if not 0 < n < 10000:
        return cardinal(n)
    return _american(str(num2words(n, to="year"))).replace("oh-", "oh ")


def decimal(text: str) -> str:
    """Read a plain decimal string: ``"3.14"`` -> "three point one four", ``"-0.5"``.

    Thousands separators are ignored; the fractional part is read digit by digit.
    """
    sign = ""
    if text[:1] in "-−":
        sign, text = "minus ", text[1:]
    elif text[:1] == "+":
        sign, text = "plus ", text[1:]
    whole, _, frac = text.replace(",", "").partition(".")
    if len(whole) > 1 and whole.startswith("0"):
        head = digits(whole)  # "007" is an identifier, not seven
    else:
        head = cardinal(int(whole)) if whole else ""
    if not frac:
        return sign + head
    tail = "point " + digits(frac)
    return sign + (f"{head} {tail}" if head else tail)


def plural_word(word: str) -> str:
    """Plural of the last number word: "ninety" -> "nineties", "hundred" -> "hundreds"."""
    if word.endswith("y"):
        return word[:-1] + "ies"
    if word.endswith("x"):
        return word + "es"
    return word + "s"


_HALVES: Final = {2: ("half", "halves"), 4: ("quarter", "quarters")}


def fraction(numerator: int, denominator: int) -> str:
    """``1/2`` -> "one half", ``3/4`` -> "three quarters", ``5/8`` -> "five eighths".

    Denominators up to 100 and powers of ten read as ordinals (``7/16`` -> "seven
    sixteenths", ``3/1000`` -> "three thousandths"); others "x over y"
    (``5/365`` -> "five over three hundred sixty-five").
    """
    if denominator in _HALVES:
        one, many = _HALVES[denominator]
        return f"{cardinal(numerator)} {one if numerator == 1 else many}"
    if 2 < denominator <= 100 or (denominator > 100 and str(denominator).rstrip("0") == "1"):
        name = ordinal(denominator)
        return f"{cardinal(numerator)} {name if numerator == 1 else plural_word(name)}"
    return f"{cardinal(numerator)} over {cardinal(denominator)}"
