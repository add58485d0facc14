"""English rules: one precompiled alternation of detectors, one handler per rule.

Decisions (each one is tested in ``tests/data/normalize_corpus.json``):

* **Currency**: ``$3.50`` -> "three dollars and fifty cents", ``$0.99`` -> "ninety-nine
  cents", ``$5`` -> "five dollars"; with a scale (``£1.2 million``, ``$5M``, ``$3k``)
  -> "one point two million pounds". A range puts the currency once, at the end
  (``$10-$20`` -> "ten to twenty dollars").
* **Years**: a bare 4-digit integer 1500-2099 is a year ("nineteen ninety", "two
  thousand five"), unless a quantity cue precedes it ("over 1500 people"). Other
  4-digit numbers are cardinals; a year cue ("in 1066") extends the year reading.
  Decades: ``1990s`` -> "nineteen nineties", ``'90s``/``90s`` -> "nineties".
* **Dates**: ``2024-03-03`` and ``March 3, 2024`` -> "March third, twenty
  twenty-four". Slash dates are **US order** (month/day/year): ``3/4/2024`` is
  March fourth; when the first part cannot be a month (``25/12/2024``) the
  day/month order is used. Two-digit years: 00-49 -> 20xx, 50-99 -> 19xx.
* **Times**: ``3:30 pm`` -> "three thirty PM", ``14:05`` -> "fourteen oh five" (24-hour
  times are read as written, not converted), ``9am`` -> "nine AM", ``5:00`` -> "five
  o'clock".
* **Titles**: ``Dr.`` is "Doctor" before a capitalised word, "Drive" after a
  capitalised word otherwise. ``St.`` is "Saint" before a capitalised word (unless a
  number precedes: ``5th St. Louis`` is a street), "Street" otherwise. The period of
  a title is always dropped (a voice would end the sentence there); the period of
  an abbreviation that can end a sentence (``etc.``, ``Inc.``, ``St.`` as Street) is
  kept when the text ends there or the next word is capitalised.
* **URLs**: the scheme, ``www.`` and a trailing slash are dropped, separators are
  said ("dot", "slash", "dash", ...): ``https://www.example.com/docs`` -> "example
  dot com slash docs". E-mail: "jane dot doe at example dot com".
* **Ratios and scores** that are not times (``16:9``, ``3:2``): "sixteen to nine".
* **Phone numbers** (``555-123-4567``, ``(555) 123-4567``, ``+44 20 7946 0958``): digit
  by digit, a comma (a short pause) between groups.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Final

from . import words as w
from .spans import NormalizedText, SpanBuilder
from .tables import (
    ABBREVIATIONS,
    CURRENCIES,
    KEEP_PERIOD,
    MONTH_ABBREVIATIONS,
    MONTHS,
    NUMBER_ABBREVIATIONS,
    PER_UNITS,
    QUANTITY_CUES,
    SYMBOL_WORDS,
    UNITS,
    VULGAR_FRACTIONS,
    YEAR_CUES,
)

__all__ = ["normalize_english"]

Handler = Callable[["re.Match[str]", str], "str | None"]


def _alternation(keys: Iterable[str]) -> str:
    """Regex alternation of literal keys, longest first (so ``min`` wins over ``m``)."""
    return "|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True))


_NUM: Final = r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+(?:\.[0-9]+)?"
_CUR: Final = "[" + "".join(CURRENCIES) + "]"
_MONTH: Final = "|".join(MONTHS)
_MON_ABBR: Final = _alternation(MONTH_ABBREVIATIONS)
_UNIT: Final = _alternation(UNITS)
_PER: Final = _alternation(PER_UNITS)
_AMPM: Final = r"[AaPp]\.?[Mm]\b\.?"
_SEP: Final = r"[\s.-]"

_PATTERNS: Final = {
    "email": r"(?<![\w.+-])[A-Za-z0-9._%+-]++@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])",
    "url": r"\b(?:(?i:https?|ftp)://|www\.)[^\s<>\"'`]*[^\s<>\"'`.,;:!?)\]}]"
    r"|(?<![\w.@/-])(?:[A-Za-z0-9][A-Za-z0-9-]*+\.)+"
    r"(?i:com|org|net|edu|gov|io|ai|dev|app|co\.uk|uk|de|fr|us|info|biz|me|tv|ly|gg|xyz|tech|cloud)"
    r"(?![\w.-]*\w)(?:/[^\s<>\"'`]*[^\s<>\"'`.,;:!?)\]}])?/?",
    "iso_date": r"(?<![\w-])(?P<iso_y>[0-9]{4})-(?P<iso_m>0[1-9]|1[0-2])-(?P<iso_d>0[1-9]|[12][0-9]|3[01])"
    r"(?![\w-])",
    "slash_date": r"(?<![\w/])(?P<sd_a>[0-9]{1,2})/(?P<sd_b>[0-9]{1,2})/(?P<sd_y>[0-9]{4}|[0-9]{2})(?![\w/])",
    "month_date": rf"\b(?P<md_mon>{_MONTH}|(?:{_MON_ABBR})\.?)\s+(?P<md_day>[0-9]{{1,2}})(?:st|nd|rd|th)?"
    r"(?!\w|:|[.,][0-9])(?:,?\s+(?P<md_year>[0-9]{4})(?!\w))?",
    "day_month": rf"(?<![\w.])(?P<dm_day>[0-9]{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<dm_mon>{_MONTH})\b"
    r"(?:,?\s+(?P<dm_year>[0-9]{4})(?!\w))?",
    "time": rf"(?<![\w:.])(?P<t_h>[01]?[0-9]|2[0-4]):(?P<t_m>[0-5][0-9])(?::(?P<t_s>[0-5][0-9]))?"
    rf"(?:\s?(?P<t_ap>{_AMPM}))?(?![\w:])",
    "ampm": rf"(?<![\w:.])(?P<a_h>1[0-2]|0?[1-9])\s?(?P<a_ap>{_AMPM})",
    "ratio": r"(?<![\w:.])(?P<r_a>[0-9]{1,3}):(?P<r_b>[0-9]{1,3})(?![\w:]|[.,][0-9])",
    "phone": rf"(?<![\w+])(?:\+[0-9]{{1,3}}(?:[\s.-][0-9]{{1,4}}){{2,6}}"
    rf"|(?:\+1{_SEP}?)?(?:\([0-9]{{3}}\)\s?|[0-9]{{3}}{_SEP})[0-9]{{3}}{_SEP}[0-9]{{4}})(?![\w-]|\.[0-9])",
    "decade": r"(?<![\w'’])(?P<dec_full>[12][0-9]{2}0)['’]?s(?!\w)"
    r"|(?<!\w)['’](?P<dec_short>[0-9]0)s(?!\w)|(?<![\w'’])(?P<dec_bare>[2-9]0)['’]?s(?!\w)",
    "ordinal": r"(?<![\w.])(?P<ord>[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:st|nd|rd|th|ST|ND|RD|TH)(?!\w)",
    "mixed": r"(?<![\w./])(?P<mx_w>[0-9]+)\s(?P<mx_n>[0-9]{1,2})/(?P<mx_d>[0-9]{1,2})(?![\w/])",
    "vulgar": r"(?<![\w.])(?P<vf_w>[0-9]+)?\s?(?P<vf>[" + "".join(VULGAR_FRACTIONS) + "])",
    "fraction": r"(?<![\w./])(?P<fr_n>[0-9]{1,3})/(?P<fr_d>[0-9]{1,3})(?![\w/]|\.[0-9])",
    "hash": r"(?<![\w&])#\s?(?P<h_num>[0-9]+)(?![\w.,][0-9]|\w)",
    "version": r"(?<![\w.])(?P<ver_v>[vV])?(?P<ver>[0-9]+(?:\.[0-9]+){2,})(?![\w]|\.[0-9])",
    "quantity": rf"(?<![\w.,])(?P<q_sign>[-−+](?=[0-9$€£¥₹]))?(?P<q_cur>{_CUR})?(?P<q_num>{_NUM})"
    rf"(?:(?P<q_dash>-|\s?–\s?)(?P<q_cur2>{_CUR})?(?P<q_num2>{_NUM}))?"
    r"(?:\s?(?P<q_scale>thousand|million|billion|trillion)\b|(?P<q_abbr>[kKMB]|bn|mn|tn)(?!\w))?"
    rf"(?P<q_curpost>{_CUR})?"
    rf"(?:\s?(?P<q_unit>%|°\s?[FCK]|°|(?:{_UNIT})(?![\w/])))?"
    rf"(?:\s?/\s?(?P<q_per>{_PER})(?!\w))?(?![\w]|[.,][0-9])",
    "latin": r"(?<![\w.])(?P<lat>[Ee]\.\s?[Gg]|[Ii]\.\s?[Ee]|a\.k\.a|A\.k\.a)\.?(?!\w)",
    "title": r"(?<![\w.])(?P<ti>Dr|St)\.(?!\w)",
    "number_abbr": rf"(?<![\w.])(?P<na>{_alternation(NUMBER_ABBREVIATIONS)})\.\s?(?=[0-9])",
    "abbr": rf"(?<![\w.])(?P<ab>{_alternation(ABBREVIATIONS)})\.(?!\w)",
    "bare_title": r"(?<![\w.])(?P<bt>Dr|Mr|Mrs|Ms|Prof)(?=\s+[A-Z])",
    "bare_word": r"(?<![\w.])(?P<bw>vs|etc)\b(?!\.)",
    "initialism": r"(?<![\w.])(?P<ini>(?:[A-Z]\.){2,})",
    "amp": r"&(?:amp;)?",
}

# Rules grouped by what their first character can be, behind one cheap guard per group:
# inside a word two guards fail per position instead of every rule (several times faster).
_SYMBOLS: Final = re.escape("-−+$€£¥₹#&('’" + "".join(VULGAR_FRACTIONS))  # for a [...] class
_WORD_GUARD: Final = (
    r"(?<!\w)(?=[A-Za-z0-9][A-Za-z0-9_%+-]*+[.@:]"  # a word followed by . @ : (abbreviation, address)
    rf"|(?:Dr|Mr|Mrs|Ms|Prof|vs|etc|{_MONTH}|{_MON_ABBR})\b)"  # or a bare title, a month
)
_GROUPS: Final = (
    (_WORD_GUARD, "email url month_date latin title number_abbr abbr bare_title bare_word"
     " initialism"),
    (rf"(?:(?<!\w)(?=[0-9])|(?=[{_SYMBOLS}]))", "iso_date slash_date day_month time ampm ratio phone decade"
     " ordinal mixed vulgar fraction hash version quantity amp"),
)  # fmt: skip


def _scanner() -> re.Pattern[str]:
    """The one alternation: ``(?P<rule>...)`` per rule, in priority order within its group."""
    branches, seen = [], []
    for guard, names in _GROUPS:
        rules = [f"(?P<{name}>{_PATTERNS[name]})" for name in names.split()]
        branches.append(f"{guard}(?:{'|'.join(rules)})")
        seen += names.split()
    assert sorted(seen) == sorted(_PATTERNS), set(seen) ^ set(_PATTERNS)
    return re.compile("|".join(branches))


_SCANNER: Final = _scanner()
_CANDIDATE: Final = re.compile(rf"[0-9{_SYMBOLS}.@:]|(?<!\w)(?P<word>[DMPveJFASON][a-z]{{1,8}})\b")
"""Where a rule may start: a digit or symbol, ``.@:`` after a token, or a word that may be a
bare title or a month (checked against :data:`_BARE_WORDS`; a charset first is 4x faster
than the alternation of the words)."""
_BARE_WORDS: Final = frozenset(["Dr", "Mr", "Mrs", "Ms", "Prof", "vs", "etc", *MONTHS, *MONTH_ABBREVIATIONS])
_TOKEN_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")
_QUANTITY: Final = re.compile(_PATTERNS["quantity"])
_PREV_WORD: Final = re.compile(r"([\w'’]+)\W*$")
_NEXT_CAPITAL: Final = re.compile(r"\s+[\"'“‘(]?[A-Z]")
_SENTENCE_AFTER: Final = re.compile(r"\s*$|\s+[\"'“‘(]?[A-Z]")
_URL_PARTS: Final = re.compile(r"[A-Za-z]+|[0-9]+|[^A-Za-z0-9]")
_SCHEME: Final = re.compile(r"^(?i:[a-z]+://)?(?i:www\.)?")


# --- context helpers -------------------------------------------------------------------


def _prev_word(text: str, start: int) -> str:
    m = _PREV_WORD.search(text, max(0, start - 32), start)
    return m.group(1) if m is not None else ""


def _ends_sentence(text: str, end: int) -> bool:
    """Whether a sentence plausibly ends at ``end`` (end of text, or a capital follows)."""
    return _SENTENCE_AFTER.match(text, end) is not None


def _period(m: re.Match[str], text: str) -> str:
    """A "." to put back when the match consumed a sentence-final period."""
    return "." if m.group().endswith(".") and _ends_sentence(text, m.end()) else ""


def _ampm(token: str) -> str:
    return "AM" if token[0] in "Aa" else "PM"


# --- numbers -------------------------------------------------------------------------------


def _is_year(raw: str, text: str, start: int) -> bool:
    """A bare 4-digit 1100-2099 is a year unless a quantity cue precedes (see module doc)."""
    if len(raw) != 4 or not raw.isdigit() or raw[0] == "0":
        return False
    prev = _prev_word(text, start)
    if prev.lower() in QUANTITY_CUES:
        return False
    return 1500 <= int(raw) <= 2099 or (prev in YEAR_CUES and int(raw) >= 1000)


def _number(raw: str) -> str:
    """Cardinal or decimal words for a matched number string."""
    if "." in raw:
        return w.decimal(raw)
    clean = raw.replace(",", "")
    if len(clean) > 1 and clean[0] == "0":
        return w.digits(clean)
    return w.cardinal(int(clean))


def _money(raw: str, symbol: str, scale: str) -> str:
    major1, majors, minor1, minors = CURRENCIES[symbol]
    whole, _, frac = raw.replace(",", "").partition(".")
    if scale or (frac and len(frac) != 2) or not minors:
        amount = _number(raw)
        plural = scale or amount != "one" or bool(frac)
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
    raw, raw2 = m.group("q_num"), m.group("q_num2")
    cur = m.group("q_cur") or m.group("q_cur2") or m.group("q_curpost") or ""
    unit, per, abbr = m.group("q_unit"), m.group("q_per"), m.group("q_abbr")
    if abbr and not cur:
        return None  # "5M" without a currency: leave it (could be a model size, a paper size)
    scale = m.group("q_scale") or (_SCALES[abbr] if abbr else "")
    sign = m.group("q_sign") or ""
    bare = not (cur or unit or scale or sign)
    if bare and raw2 is None and _is_year(raw, text, m.start()):
        return w.year(int(raw))
    if bare and raw2 is not None and _is_year(raw, text, m.start()) and len(raw2) in (2, 4):
        second = w.year(int(raw2)) if len(raw2) == 4 else w.cardinal(int(raw2))
        return f"{w.year(int(raw))} to {second}"
    spoken = ("minus " if sign in "-−" else "plus ") if sign else ""
    if raw2 is not None:
        spoken += _number(raw) + " to "
        raw = raw2
    if cur:
        spoken += _money(raw, cur, scale)
    else:
        spoken += _number(raw) + (" " + scale if scale else "")
    if unit:
        unit = unit.replace(" ", "")
        one, many = UNITS[unit]
        single = raw2 is None and raw == "1" and not scale
        spoken += " " + (one if single else many)
    if per:
        spoken += " per " + PER_UNITS[per]
    return spoken


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


def _time(m: re.Match[str], text: str) -> str:
    hour, minute, ap = int(m.group("t_h")), int(m.group("t_m")), m.group("t_ap")
    spoken = w.cardinal(hour)
    if minute == 0 and not ap:
        spoken += " o'clock"
    elif minute:
        spoken += " " + (f"oh {w.DIGITS[minute]}" if minute < 10 else w.cardinal(minute))
    if m.group("t_s") is not None:
        seconds = int(m.group("t_s"))
        spoken += f" and {w.cardinal(seconds)} second{'' if seconds == 1 else 's'}"
    if ap:
        spoken += " " + _ampm(ap) + _period(m, text)
    return spoken


def _ampm_time(m: re.Match[str], text: str) -> str:
    return f"{w.cardinal(int(m.group('a_h')))} {_ampm(m.group('a_ap'))}{_period(m, text)}"


# --- other numeric forms -----------------------------------------------------------------


def _ratio(m: re.Match[str], _text: str) -> str:
    """``16:9``, a score ``3:2``: "sixteen to nine" (``3:30`` is a time, matched before)."""
    return f"{_number(m.group('r_a'))} to {_number(m.group('r_b'))}"


def _phone(m: re.Match[str], _text: str) -> str:
    groups = re.findall(r"[0-9]+", m.group())
    spoken = ", ".join(w.digits(g) for g in groups)
    return "plus " + spoken if m.group().startswith("+") else spoken


def _decade(m: re.Match[str], _text: str) -> str:
    full, short = m.group("dec_full"), m.group("dec_short") or m.group("dec_bare")
    if full is not None:
        spoken = w.year(int(full))
    else:
        spoken = "two thousand" if short == "00" else w.cardinal(int(short))
    head, _, last = spoken.rpartition(" ")
    return (head + " " if head else "") + w.plural_word(last)


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


def _fraction(m: re.Match[str], _text: str) -> str | None:
    n, d = int(m.group("fr_n")), int(m.group("fr_d"))
    if d == 0:
        return None
    if (n, d) == (24, 7):
        return "twenty-four seven"
    return w.fraction(n, d)


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
            return "Doctor"
        return "Drive" + _period(m, text)
    if before_name and not after_number:
        return "Saint"
    return "Street" + _period(m, text)


def _abbr(m: re.Match[str], text: str) -> str:
    key = m.group("ab")
    keep = _period(m, text) if key in KEEP_PERIOD else ""
    return ABBREVIATIONS[key] + keep


def _number_abbr(m: re.Match[str], _text: str) -> str:
    return NUMBER_ABBREVIATIONS[m.group("na")] + " "


def _bare_title(m: re.Match[str], _text: str) -> str:
    return "Doctor" if m.group("bt") == "Dr" else ABBREVIATIONS[m.group("bt")]


def _bare_word(m: re.Match[str], _text: str) -> str:
    return ABBREVIATIONS[m.group("bw")]


def _initialism(m: re.Match[str], text: str) -> str:
    letters = " ".join(m.group("ini").replace(".", ""))
    return letters + ("." if m.end() == len(text.rstrip()) else "")


def _say_address(address: str) -> str:
    """Letters and numbers as they are, separators said ("dot", "slash", "at", ...)."""
    out = []
    for part in _URL_PARTS.findall(address):
        if part.isalpha():
            out.append(part)
        elif part.isdigit():
            out.append(_number(part) if len(part) <= 4 else w.digits(part))
        else:
            out.append(SYMBOL_WORDS.get(part, ""))
    return " ".join(p for p in out if p)


def _url(m: re.Match[str], _text: str) -> str:
    address = _SCHEME.sub("", m.group()).rstrip("/")
    return _say_address(address)


def _email(m: re.Match[str], _text: str) -> str:
    return _say_address(m.group())


def _amp(m: re.Match[str], text: str) -> str:
    """``&`` -> "and", with a space on a side that touches a word (``R&D`` -> "R and D")."""
    head = " " if m.start() > 0 and not text[m.start() - 1].isspace() else ""
    tail = " " if m.end() < len(text) and not text[m.end()].isspace() else ""
    return head + "and" + tail


_HANDLERS: Final[dict[str, Handler]] = {
    "email": _email,
    "url": _url,
    "iso_date": _iso_date,
    "slash_date": _slash_date,
    "month_date": _month_date,
    "day_month": _day_month,
    "time": _time,
    "ampm": _ampm_time,
    "ratio": _ratio,
    "phone": _phone,
    "decade": _decade,
    "ordinal": _ordinal,
    "mixed": _mixed,
    "vulgar": _vulgar,
    "fraction": _fraction,
    "hash": _hash,
    "version": _version,
    "quantity": _quantity,
    "latin": _latin,
    "title": _title,
    "number_abbr": _number_abbr,
    "abbr": _abbr,
    "bare_title": _bare_title,
    "bare_word": _bare_word,
    "initialism": _initialism,
    "amp": _amp,
}
assert set(_HANDLERS) == set(_PATTERNS)


def _rule(m: re.Match[str]) -> str:
    """Name of the outermost alternative that matched (``lastgroup`` sees inner groups)."""
    name = m.lastgroup
    if name in _HANDLERS:
        return name
    for key in _PATTERNS:
        if m.group(key) is not None:
            return key
    raise AssertionError("unreachable: a scanner match always belongs to one rule")


def _match_at(text: str, candidate: re.Match[str], floor: int) -> re.Match[str] | None:
    """A rule match at the start of the token holding ``candidate``, else at the candidate."""
    p = start = candidate.start()
    if candidate.lastgroup is None:  # a digit, symbol or . @ : inside a token: back up to its start
        while start > floor and text[start - 1] in _TOKEN_CHARS:
            start -= 1
        if start < p:
            m = _SCANNER.match(text, start)
            if m is not None:
                return m
    return _SCANNER.match(text, p)


def _resolve(m: re.Match[str], text: str) -> tuple[re.Match[str], str | None]:
    """The handler's reading of ``m``; a rejected match falls back to its leading number."""
    rule = _rule(m)
    spoken = _HANDLERS[rule](m, text)
    if spoken is None and rule != "quantity":  # an impossible date...: read the number alone
        m2 = _QUANTITY.match(text, m.start())
        if m2 is not None:
            return m2, _quantity(m2, text)
    return m, spoken


def normalize_english(text: str) -> NormalizedText:
    """Normalise English ``text`` (see the module docstring for every decision).

    A cheap candidate search (a digit, a symbol, ``.``/``@``/``:``, a bare title or
    month) finds where a rule may apply; the full rule alternation is only tried at
    the start of that token and at the candidate itself.
    """
    out = SpanBuilder(text)
    pos = 0
    search_from = 0
    while (candidate := _CANDIDATE.search(text, search_from)) is not None:
        word = candidate.group("word")
        if word is not None and word not in _BARE_WORDS:
            search_from = candidate.end()
            continue
        m = _match_at(text, candidate, pos)
        spoken = None
        if m is not None:
            m, spoken = _resolve(m, text)
        if m is None or spoken is None:
            search_from = candidate.end()
            continue
        out.copy(pos, m.start())
        out.rewrite(m.start(), m.end(), spoken)
        pos = search_from = m.end()
    out.copy(pos, len(text))
    return out.build()
