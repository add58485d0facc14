"""Handlers of the English rules: one function per rule, match -> spoken text.

Each handler gets the rule's match and the whole segment (for context: the word
before, whether a sentence ends after) and returns what to say, or ``None`` to
reject the match (an impossible date: the scanner then reads its number alone).
The decisions are listed in :mod:`.english`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from . import words as w
from .tables import (
    ABBREVIATIONS,
    COUNT_NOUNS,
    CURRENCIES,
    CURRENCY_CODES,
    DATE_CUES,
    KEEP_PERIOD,
    MONTH_ABBREVIATIONS,
    MONTHS,
    NUMBER_ABBREVIATIONS,
    PER_UNITS,
    PHONE_CUES,
    QUANTITY_CUES,
    REGNAL_NAMES,
    ROMAN_CUES,
    SCORE_CUES,
    SYMBOL_WORDS,
    UNITS,
    VULGAR_FRACTIONS,
    WEEKDAY_ABBREVIATIONS,
    YEAR_CUES,
)

__all__ = ["HANDLERS", "Handler", "Piece", "Spoken"]

Piece = tuple[int, int, str]
"""``(start, end, spoken)``: ``match[start:end]`` is said ``spoken`` (offsets in the match)."""
Spoken = str | tuple[Piece, ...]
"""What a handler says: one text for the whole match, or pieces that tile the match (an
address, a phone number: "doe" in an e-mail maps back to "doe", not to the address)."""
Handler = Callable[["re.Match[str]", str], "Spoken | None"]

_PREV_WORD: Final = re.compile(r"([\w'’]+)\W*$")
_NEXT_CAPITAL: Final = re.compile(r"\s+[\"'“‘(]?[A-Z]")
_SENTENCE_AFTER: Final = re.compile(r"\s*$|\s+[\"'“‘(]?[A-Z]")
_WORDS: Final = re.compile(r"[A-Za-z]+")
_NEXT_WORD: Final = re.compile(r"\s+([A-Za-z]+)")
_URL_PARTS: Final = re.compile(r"[A-Za-z]+|[0-9]+|[^A-Za-z0-9]")
_SCHEME: Final = re.compile(r"^(?i:[a-z]+://)?(?i:www\.)?")
_PHONE_PARTS: Final = re.compile(r"\+|[0-9]+|[^0-9+]+")


# --- context helpers -------------------------------------------------------------------


def _prev_word(text: str, start: int) -> str:
    m = _PREV_WORD.search(text, max(0, start - 32), start)
    return m.group(1) if m is not None else ""


def _recent_words(text: str, start: int) -> list[str]:
    """The (up to) two words before ``start``: ``rate it 8/10``."""
    return _WORDS.findall(text, max(0, start - 24), start)[-2:]


def _ends_sentence(text: str, end: int) -> bool:
    """Whether a sentence plausibly ends at ``end`` (end of text, or a capital follows)."""
    return _SENTENCE_AFTER.match(text, end) is not None


def _period(m: re.Match[str], text: str) -> str:
    """A "." to put back when the match consumed a sentence-final period."""
    return "." if m.group().endswith(".") and _ends_sentence(text, m.end()) else ""


def _final_period(m: re.Match[str], text: str) -> str:
    """The "." of an abbreviation that ends the text (``see the Dr.``) also ends the sentence."""
    return "." if m.group().endswith(".") and not text[m.end() :].strip() else ""


def _ampm(token: str) -> str:
    return "AM" if token[0] in "Aa" else "PM"


# --- numbers -------------------------------------------------------------------------------


def _is_year(raw: str, text: str, start: int) -> bool:
    """A bare 4-digit 1500-2099 is a year unless a quantity cue precedes or a count noun follows.

    ``in 1066`` (a year cue) is a year too; ``over 1500 people``, ``2048 tokens`` are counts.
    """
    if len(raw) != 4 or not raw.isdigit() or raw[0] == "0":
        return False
    prev = _prev_word(text, start)
    if prev.lower() in QUANTITY_CUES:
        return False
    if _count_follows(text, start + 4):
        return False
    return 1500 <= int(raw) <= 2099 or (prev in YEAR_CUES and int(raw) >= 1000)


def _count_follows(text: str, end: int) -> bool:
    """Whether a count noun follows ``end`` ("2048 tokens", "7B parameters")."""
    after = _NEXT_WORD.match(text, end)
    return after is not None and after.group(1).lower() in COUNT_NOUNS


def _number(raw: str) -> str:
    """Cardinal or decimal words for a matched number string."""
    if "." in raw:
        return w.decimal(raw)
    clean = raw.replace(",", "")
    if len(clean) > 1 and clean[0] == "0":
        return w.digits(clean)
    return w.cardinal(int(clean))


_MONEY: Final = {**CURRENCIES, **CURRENCY_CODES}
"""Names of a currency by its symbol (``$``) or ISO code (``USD``)."""


def _money(raw: str, currency: str, scale: str) -> str:
    """``3.50`` -> "three dollars and fifty cents"; with a scale or other decimals, "1.2 million pounds"."""
    major1, majors, minor1, minors = _MONEY[currency]
    whole, _, frac = raw.replace(",", "").partition(".")
    if scale or (frac and len(frac) != 2) or not minors:
        amount = _number(raw)
        plural = bool(scale or frac) or amount != "one"
        return f"{amount}{' ' + scale if scale else ''} {majors if plural else major1}"
    units, cents = int(whole or "0"), int(frac or "0")
    parts = []
    if units or not cents:
        parts.append(f"{w.cardinal(units)} {major1 if units == 1 else majors}")
    if cents:
        parts.append(f"{w.cardinal(cents)} {minor1 if cents == 1 else minors}")
    return " and ".join(parts)


_SCALES: Final = {
    "k": "thousand", "K": "thousand", "M": "million", "mn": "million", "B": "billion", "bn": "billion",
    "tn": "trillion",
}  # fmt: skip


def _quantity(m: re.Match[str], text: str) -> str | None:
    """A number with its sign, currency, range, scale, unit, ``/unit``, ``x`` or ``+``."""
    raw, raw2 = m.group("q_num"), m.group("q_num2")
    cur = (m.group("q_cur") or m.group("q_cur2") or m.group("q_curpost") or "").strip()  # " EUR"
    abbr = m.group("q_abbr")
    if abbr and not cur and not _count_follows(text, m.end()):
        return None  # "Apt 4B", "a 5k run": a scale letter needs a currency or a count noun after
    scale = m.group("q_scale") or (_SCALES[abbr] if abbr else "")
    sign = m.group("q_sign") or ""
    if not (cur or scale or sign or m.group("q_unit")):
        said = _bare_reading(raw, raw2, text, m.start())
        if said is not None:
            return said
    spoken = ("minus " if sign in "-−" else "plus ") if sign else ""
    if sign == "-" and m.start() and text[m.start() - 1] in "%°":
        spoken = " to "  # "5.25%-5.5%": the dash of a range glued to the first amount, no minus
    if raw2 is None and not sign and (cur or m.group("q_unit") not in (None, "%")) and _attributive(m, text):
        return _attributive_reading(m, raw, cur, scale)
    if raw2 is not None:
        spoken += _number(raw) + " to "
        raw = raw2
    spoken += _money(raw, cur, scale) if cur else _number(raw) + (" " + scale if scale else "")
    return spoken + _suffix(m, raw == "1" and raw2 is None and not scale)


_DETERMINERS: Final = frozenset(
    ["a", "an", "the", "this", "that", "these", "those", "every", "each", "one", "another", "no", "any",
     "some", "my", "your", "his", "her", "our", "their", "its"]
)  # fmt: skip
"""Words that name nothing: before ``$50 bill`` they make it attributive ("a fifty-dollar
bill"); capitalised at a sentence start, "An IV drip" is no numeral after a name."""
_NOT_NOUNS: Final = frozenset(
    ["of", "for", "and", "or", "nor", "but", "per", "each", "a", "an", "the", "to", "in", "on", "at", "from",
     "with", "by", "into", "over", "under", "after", "before", "than", "then", "as", "so", "if", "is", "was",
     "are", "were", "be", "been", "will", "would", "can", "could", "should", "may", "might", "must", "has",
     "have", "had", "do", "does", "did", "that", "which", "who", "you", "i", "we", "they", "he", "she", "it",
     "now", "today", "tonight", "yesterday", "tomorrow", "more", "less", "off", "back", "up", "down", "out",
     "cash", "worth", "apiece", "plus", "minus", "too", "only", "extra", "total", "all", "instead", "later",
     "ago", "away", "long", "wide", "tall", "high", "deep", "old", "faster", "slower", "left", "remaining"]
)  # fmt: skip
"""Words that do not make ``a $50 ___`` attributive ("the $50 you owe", "a $50 or $60 bill")."""


def _attributive(m: re.Match[str], text: str) -> bool:
    """``a $50 bill``, ``the 5 km run``: a determiner before, a lowercase noun right after."""
    after = _NEXT_WORD.match(text, m.end())
    if after is None or after.start(1) != m.end() + 1 or not after.group(1).islower():
        return False
    return _prev_word(text, m.start()).lower() in _DETERMINERS and after.group(1) not in _NOT_NOUNS


def _compound(amount: str, word: str) -> str:
    """``amount`` and ``word`` as one modifier: "five-dollar", but "one million dollar"."""
    return f"{amount}{' ' if ' ' in amount or ' ' in word else '-'}{word}"


def _attributive_reading(m: re.Match[str], raw: str, cur: str, scale: str) -> str:
    """The singular an adjective takes: "a fifty-dollar bill", "a three fifty coffee", "a
    five-kilometer run", "a one million dollar house" (a scale is no hyphenated compound)."""
    amount = _number(raw) + (" " + scale if scale else "")
    if not cur:
        return _compound(amount, _suffix(m, True).strip())
    major1, _, minor1, minors = _MONEY[cur]
    whole, _, frac = raw.replace(",", "").partition(".")
    if frac and int(frac) == 0:  # "a $1.00 fee" is "a one-dollar fee"
        amount = _number(whole)
    elif frac and len(frac) == 2 and minors and not scale:
        units, cents = int(whole or "0"), int(frac)
        if not units:  # "a $0.99 app": "a ninety-nine-cent app"
            return _compound(w.cardinal(cents), minor1)
        said = w.cardinal(cents) if cents >= 10 else "oh " + w.DIGITS[cents]
        return f"{w.cardinal(units)} {said}"  # "a $3.50 coffee": "a three fifty coffee"
    return _compound(amount, major1)


def _code_money(m: re.Match[str], _text: str) -> str:
    """``USD 45`` -> "forty-five US dollars", ``EUR 1.2M`` -> "one point two million euros"."""
    abbr = m.group("cm_abbr")
    scale = m.group("cm_scale") or (_SCALES[abbr] if abbr else "")
    return _money(m.group("cm_num"), m.group("cm_code"), scale)


def _bare_reading(raw: str, raw2: str | None, text: str, start: int) -> str | None:
    """A bare number (or range) read as a year, a year range or digits; None: a cardinal."""
    if _is_year(raw, text, start):
        if raw2 is None:
            return w.year(int(raw))
        if len(raw2) in (2, 4):
            second = w.year(int(raw2)) if len(raw2) == 4 else w.cardinal(int(raw2))
            return f"{w.year(int(raw))} to {second}"
    return _said_as_digits(raw, raw2, text, start)


_SECONDS: Final = ("second", "seconds")
"""``s`` glued to a decimal (``9.58s``); a bare ``s`` is no unit ("100s" is hundreds)."""


def _suffix(m: re.Match[str], single: bool) -> str:
    """Words for the unit, ``/unit``, ``x`` and ``+`` after a quantity ("kilometers per hour")."""
    spoken = ""
    unit = m.group("q_unit")
    if unit:
        one, many = _SECONDS if unit == "s" else UNITS[unit if unit in UNITS else unit.replace(" ", "")]
        spoken += " " + (one if single else many)
    if m.group("q_per"):
        spoken += " per " + PER_UNITS[m.group("q_per")]
    if m.group("q_times"):
        spoken += " times"
    if m.group("q_plus"):
        spoken += " plus"
    return spoken


def _dimensions(m: re.Match[str], _text: str) -> str:
    """``1920x1080``, ``4 x 4``, ``30x20x10 cm``: "thirty by twenty by ten centimeters"."""
    spoken = " by ".join(_number(n) for n in re.findall(r"[0-9]+", m.group("dim")))
    unit = m.group("dim_unit")
    return spoken + (" " + UNITS[unit][1] if unit else "")


def _power(m: re.Match[str], _text: str) -> str:
    """``10^6`` -> "ten to the sixth", ``x^2`` (a number) -> "squared", ``^3`` -> "cubed"."""
    base, exponent = _number(m.group("pw_b")), int(m.group("pw_e"))
    if exponent in (2, 3):
        return f"{base} {'squared' if exponent == 2 else 'cubed'}"
    return f"{base} to the {w.ordinal(exponent)}"


def _compare(m: re.Match[str], _text: str) -> str:
    """`` > `` between spaces -> "greater than" (espeak-ng says nothing for it)."""
    op = m.group("cmp")
    spoken = "greater than" if op[0] == ">" else "less than"
    return spoken + (" or equal to" if op.endswith("=") else "")


def _sharp(m: re.Match[str], _text: str) -> str:
    """``C#``, ``F#`` -> "C sharp" (the language, the note), not "C hash"."""
    return m.group("sh") + " sharp"


def _feet_inches(m: re.Match[str], _text: str) -> str:
    """``5'11"`` -> "five foot eleven"."""
    return f"{w.cardinal(int(m.group('fi_f')))} foot {w.cardinal(int(m.group('fi_i')))}"


def _said_as_digits(raw: str, raw2: str | None, text: str, start: int) -> str | None:
    """A phone-like number: ``call 911``, ``555-0100`` (a leading zero is no range end)."""
    if not raw.isdigit() or (raw2 is not None and not raw2.isdigit()):
        return None
    cue = _prev_word(text, start).lower() in PHONE_CUES
    if raw2 is None:
        return w.digits(raw) if cue and len(raw) >= 3 else None
    if len(raw) == 3 and len(raw2) == 4 and (cue or raw2[0] == "0"):
        return f"{w.digits(raw)}, {w.digits(raw2)}"
    return None


def _version(m: re.Match[str], text: str) -> str:
    parts = m.group("ver").split(".")
    if len(parts) == 4 and all(int(p) <= 255 for p in parts):  # an IPv4 address
        return " dot ".join(_number(p) for p in parts)
    said = _prev_word(text, m.start()).lower() == "version"
    head = "version " if m.group("ver_v") and not said else ""
    return head + " point ".join("oh" if p == "0" else _number(p) for p in parts)


# --- dates and times -------------------------------------------------------------------


def _date(month: int, day: int, year: str | None) -> str | None:
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    spoken = f"{MONTHS[month - 1]} {w.ordinal(day)}"
    if year is not None:
        y = int(year)
        if len(year) == 2:
            y += 2000 if y < 50 else 1900
        spoken += f", {w.year(y)}"
    return spoken


def _iso_date(m: re.Match[str], _text: str) -> str | None:
    return _date(int(m.group("iso_m")), int(m.group("iso_d")), m.group("iso_y"))


def _slash_date(m: re.Match[str], _text: str) -> str | None:
    a, b = int(m.group("sd_a")), int(m.group("sd_b"))
    if a > 12 >= b:  # cannot be month/day: read day/month
        a, b = b, a
    return _date(a, b, m.group("sd_y"))


def _month_date(m: re.Match[str], _text: str) -> str | None:
    name = m.group("md_mon").rstrip(".")
    month = MONTH_ABBREVIATIONS.get(name, name)
    return _date(MONTHS.index(month) + 1, int(m.group("md_day")), m.group("md_year"))


def _day_month(m: re.Match[str], text: str) -> str | None:
    day = int(m.group("dm_day"))
    if not 1 <= day <= 31:
        return None
    year = m.group("dm_year")
    the = "" if _prev_word(text, m.start()).lower() == "the" else "the "
    return f"{the}{w.ordinal(day)} of {m.group('dm_mon')}" + (f", {w.year(int(year))}" if year else "")


def _clock(hour: str, minute: str | None, ap: str | None) -> str:
    """ "three thirty PM", "five o'clock", "nine oh five", "ten AM"."""
    spoken = w.cardinal(int(hour))
    mins = int(minute) if minute is not None else 0
    if minute is not None and mins == 0 and not ap:
        spoken += " o'clock"
    elif mins:
        spoken += " " + (f"oh {w.DIGITS[mins]}" if mins < 10 else w.cardinal(mins))
    return spoken + (" " + _ampm(ap) if ap else "")


def _time(m: re.Match[str], text: str) -> str:
    ap, secs = m.group("t_ap"), m.group("t_s")
    if secs is None:
        spoken = _clock(m.group("t_h"), m.group("t_m"), ap)
    else:
        seconds = int(secs)
        spoken = _clock(m.group("t_h"), m.group("t_m"), None)
        spoken += f" and {w.cardinal(seconds)} second{'' if seconds == 1 else 's'}"
        spoken += " " + _ampm(ap) if ap else ""
    return spoken + (_period(m, text) if ap else "")


def _time_range(m: re.Match[str], text: str) -> str | None:
    """``9-10am``, ``10am-2pm``, ``9:00-17:30``; a bare ``9-10`` is a number range (rejected)."""
    m1, m2, ap1, ap2 = m.group("tr_m1"), m.group("tr_m2"), m.group("tr_ap1"), m.group("tr_ap2")
    if not (ap2 or (m1 and m2)):
        return None
    first = _clock(m.group("tr_h1"), m1, ap1)
    return f"{first} to {_clock(m.group('tr_h2'), m2, ap2)}{_period(m, text) if ap2 else ''}"


def _ampm_time(m: re.Match[str], text: str) -> str:
    return f"{w.cardinal(int(m.group('a_h')))} {_ampm(m.group('a_ap'))}{_period(m, text)}"


# --- other numeric forms -----------------------------------------------------------------


def _ratio(m: re.Match[str], _text: str) -> str:
    """``16:9``, a score ``3:2``: "sixteen to nine" (``3:30`` is a time, matched before)."""
    return f"{_number(m.group('r_a'))} to {_number(m.group('r_b'))}"


def _phone(m: re.Match[str], _text: str) -> tuple[Piece, ...]:
    """Digit groups said digit by digit, a comma between groups; separators are silent."""
    pieces: list[Piece] = []
    groups, plus = 0, False
    for part in _PHONE_PARTS.finditer(m.group()):
        token, words = part.group(), ""
        if token == "+":
            words, plus = "plus", True
        elif token[0].isdigit():
            words = (", " if groups else " " if plus else "") + w.digits(token)
            groups += 1
        pieces.append((part.start(), part.end(), words))
    return tuple(pieces)


def _decade(m: re.Match[str], _text: str) -> str:
    if m.group("dec_round") is not None:  # "100s of people", "1000s of fans"
        return "hundreds" if m.group("dec_round") == "100" else "thousands"
    full, short = m.group("dec_full"), m.group("dec_short") or m.group("dec_bare")
    if full is not None:
        spoken = w.year(int(full))
    else:
        spoken = "two thousand" if short == "00" else w.cardinal(int(short))
    head, _, last = spoken.rpartition(" ")
    return (head + " " if head else "") + w.plural_word(last)


def _short_year(m: re.Match[str], _text: str) -> str:
    """``'21`` -> "twenty-one", ``'05`` -> "oh five": a year with its century left out."""
    n = int(m.group("sy"))
    return w.cardinal(n) if n >= 10 else "oh " + w.DIGITS[n]


def _ordinal(m: re.Match[str], _text: str) -> str:
    return w.ordinal(int(m.group("ord").replace(",", "")))


def _mixed(m: re.Match[str], _text: str) -> str | None:
    n, d = int(m.group("mx_n")), int(m.group("mx_d"))
    if not 0 < n < d:
        return None
    return f"{w.cardinal(int(m.group('mx_w')))} and {_fraction_words(n, d)}"


def _fraction_words(n: int, d: int) -> str:
    spoken = w.fraction(n, d)
    return "a " + spoken[4:] if spoken.startswith("one ") and " over " not in spoken else spoken


def _vulgar(m: re.Match[str], _text: str) -> str:
    n, d = VULGAR_FRACTIONS[m.group("vf")]
    whole = m.group("vf_w")
    if whole is None:
        return w.fraction(n, d)
    return f"{w.cardinal(int(whole))} and {_fraction_words(n, d)}"


def _fraction(m: re.Match[str], text: str) -> str | None:
    """``3/4`` is a fraction; ``on 12/25`` (a date cue, a day 13-31) is December 25th;
    ``scored 8/10`` (a score cue) is "eight out of ten"."""
    raw_n, d = m.group("fr_n"), int(m.group("fr_d"))
    if d == 0:
        return None
    if "." in raw_n:  # "4.8/5": a rating
        return f"{_number(raw_n)} out of {w.cardinal(d)}"
    n = int(raw_n)
    prev = _prev_word(text, m.start()).lower()
    if 1 <= n <= 12 and 13 <= d <= 31 and prev in DATE_CUES:
        return _date(n, d, None)
    if n <= d and any(word.lower() in SCORE_CUES for word in _recent_words(text, m.start())):
        return f"{w.cardinal(n)} out of {w.cardinal(d)}"
    return _SAID_FRACTIONS.get((n, d)) or w.fraction(n, d)


_SAID_FRACTIONS: Final = {(24, 7): "twenty-four seven", (50, 50): "fifty-fifty", (9, 11): "nine eleven"}
"""Slash pairs that are names, not fractions."""


def _hash(m: re.Match[str], _text: str) -> str:
    return "number " + _number(m.group("h_num"))


# --- words, abbreviations, addresses ----------------------------------------------------


_LATIN: Final = {"eg": "for example", "ie": "that is", "aka": "also known as"}


def _latin(m: re.Match[str], _text: str) -> str:
    key = "".join(c for c in m.group("lat").lower() if c.isalpha())
    spoken = _LATIN[key]
    return spoken[0].upper() + spoken[1:] if m.group()[0].isupper() else spoken


def _title(m: re.Match[str], text: str) -> str:
    """``Dr.``/``St.`` by context: see the module docstring."""
    prev = _prev_word(text, m.start())
    before_name = _NEXT_CAPITAL.match(text, m.end()) is not None
    after_number = prev[:1].isdigit()
    if m.group("ti") == "Dr":
        if before_name or not prev[:1].isupper():
            return "Doctor" + _final_period(m, text)
        return "Drive" + _period(m, text)
    if before_name and not after_number:
        return "Saint"
    return "Street" + _period(m, text)


def _abbr(m: re.Match[str], text: str) -> str:
    key = m.group("ab")
    keep = _period(m, text) if key in KEEP_PERIOD else _final_period(m, text)
    return ABBREVIATIONS[key] + keep


def _number_abbr(m: re.Match[str], _text: str) -> str:
    """``No. 5`` -> "number 5", ``p. 3`` -> "page 3", ``the no. of`` -> "the number of"."""
    if m.group("na_of") is not None:
        return "number"
    return NUMBER_ABBREVIATIONS[m.group("na")] + " "


def _weekday(m: re.Match[str], _text: str) -> str:
    """``Mon.``/``Fri`` before a date -> "Monday"/"Friday" (the period would end a sentence)."""
    return WEEKDAY_ABBREVIATIONS[m.group("wd")]


_ROMAN: Final = {"I": 1, "V": 5, "X": 10, "L": 50}
_SIZES: Final = frozenset(["XL", "XXL", "XXXL"])
"""Clothing sizes, never numerals."""


def _roman_value(numeral: str) -> int:
    """Value of a well-formed Roman numeral (the pattern only matches well-formed ones)."""
    values = [_ROMAN[c] for c in numeral]
    return sum(-v if v < nxt else v for v, nxt in zip(values, [*values[1:], 0], strict=True))


def _roman(m: re.Match[str], text: str) -> str | None:
    """``World War II`` "two", ``Louis XIV`` "the fourteenth"; otherwise left as written.

    A numeral is read only right after a capitalised word (one space between): after a
    cue word (:data:`ROMAN_CUES`: ``Part I``, ``Chapter V``) any numeral is a cardinal;
    after a regnal name (:data:`REGNAL_NAMES`) it is "the" + ordinal (one letter only
    for ``V``: "Malcolm X" is a name, "John I think" a pronoun); after any other
    capitalised word a numeral of two letters or more is a cardinal (``Rocky II``).
    """
    numeral, start = m.group("rn"), m.start()
    gap = _PREV_WORD.search(text, max(0, start - 32), start)
    if numeral in _SIZES or gap is None or text[gap.end(1) : start] != " ":
        return None
    prev = gap.group(1)
    value = _roman_value(numeral)
    if prev.capitalize() in ROMAN_CUES and numeral != "L":  # "Type II", "type II"; "Type L" a letter
        return w.cardinal(value)
    if prev in REGNAL_NAMES and (len(numeral) > 1 or numeral == "V"):
        return "the " + w.ordinal(value)
    if len(numeral) > 1 and prev[:1].isupper() and not prev.isupper() and prev.lower() not in _DETERMINERS:
        return w.cardinal(value)
    return None


def _bare_title(m: re.Match[str], _text: str) -> str:
    return "Doctor" if m.group("bt") == "Dr" else ABBREVIATIONS[m.group("bt")]


def _bare_word(m: re.Match[str], _text: str) -> str:
    return ABBREVIATIONS[m.group("bw")]


def _initialism(m: re.Match[str], text: str) -> str:
    """``U.S.A.`` -> "USA": espeak-ng spells a capitalised initialism, but reads a lone "A" as "uh"."""
    letters = m.group("ini").replace(".", "")
    return letters + ("." if m.end() == len(text.rstrip()) else "")


def _address_word(part: str) -> str:
    """Letters as they are, numbers as words, a separator said ("dot", "slash", "at"...)."""
    if part.isalpha():
        return part
    if "0" <= part[0] <= "9":  # not str.isdigit(): "²" is a digit to it
        return _number(part) if len(part) <= 4 else w.digits(part)
    return SYMBOL_WORDS.get(part, "")


def _spaced(source: str, words: list[Piece]) -> tuple[Piece, ...]:
    """Join the words of ``words`` ("" is silent) with single spaces.

    Each space goes into a rewritten piece when it can, so that a word copied
    unchanged ("doe" in "jane.doe@") stays an identity span.
    """
    texts = [word for _, _, word in words]
    said = False
    for i, (start, end, word) in enumerate(words):
        if not word:
            continue
        if said:
            prev_start, prev_end, _ = words[i - 1]
            if word == source[start:end] and texts[i - 1] != source[prev_start:prev_end]:
                texts[i - 1] += " "
            else:
                texts[i] = " " + word
        said = True
    return tuple((start, end, text) for (start, end, _), text in zip(words, texts, strict=True))


def _say_address(source: str, start: int, end: int) -> tuple[Piece, ...]:
    """Pieces for ``source[start:end]``; what lies outside that range is silent."""
    words: list[Piece] = [(0, start, "")] if start else []
    words += [(p.start(), p.end(), _address_word(p.group())) for p in _URL_PARTS.finditer(source, start, end)]
    if end < len(source):
        words.append((end, len(source), ""))
    return _spaced(source, words)


def _url(m: re.Match[str], _text: str) -> tuple[Piece, ...]:
    """Scheme, ``www.`` and trailing slashes are silent."""
    source = m.group()
    start = len(source) - len(_SCHEME.sub("", source, count=1))
    return _say_address(source, start, max(start, len(source.rstrip("/"))))


def _email(m: re.Match[str], _text: str) -> tuple[Piece, ...]:
    return _say_address(m.group(), 0, len(m.group()))


def _about(m: re.Match[str], text: str) -> str:
    """``~14 million`` -> "about fourteen million"."""
    return "about" + ("" if text[m.end()].isspace() else " ")


def _amp(m: re.Match[str], text: str) -> str:
    """``&`` -> "and", with a space on a side that touches a word (``R&D`` -> "R and D")."""
    head = " " if m.start() > 0 and not text[m.start() - 1].isspace() else ""
    tail = " " if m.end() < len(text) and not text[m.end()].isspace() else ""
    return head + "and" + tail


HANDLERS: Final[dict[str, Handler]] = {
    "email": _email,
    "url": _url,
    "iso_date": _iso_date,
    "slash_date": _slash_date,
    "month_date": _month_date,
    "day_month": _day_month,
    "time_range": _time_range,
    "time": _time,
    "ampm": _ampm_time,
    "ratio": _ratio,
    "phone": _phone,
    "decade": _decade,
    "short_year": _short_year,
    "ordinal": _ordinal,
    "mixed": _mixed,
    "vulgar": _vulgar,
    "fraction": _fraction,
    "hash": _hash,
    "version": _version,
    "quantity": _quantity,
    "dimensions": _dimensions,
    "feet_inches": _feet_inches,
    "latin": _latin,
    "title": _title,
    "number_abbr": _number_abbr,
    "abbr": _abbr,
    "bare_title": _bare_title,
    "weekday": _weekday,
    "roman": _roman,
    "code_money": _code_money,
    "bare_word": _bare_word,
    "initialism": _initialism,
    "amp": _amp,
    "about": _about,
    "power": _power,
    "compare": _compare,
    "sharp": _sharp,
}
