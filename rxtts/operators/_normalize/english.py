"""English rules: one precompiled alternation of detectors, one handler per rule.

Decisions (each one is tested in ``tests/data/normalize_corpus.json``):

* **Currency**: ``$3.50`` -> "three dollars and fifty cents", ``$0.99`` -> "ninety-nine
  cents", ``$5`` -> "five dollars", ``20€`` -> "twenty euros", ``75¢`` -> "seventy-five
  cents"; with a scale (``£1.2 million``, ``$5M``, ``$3k``) -> "one point two million
  pounds". A range puts the currency once, at the end (``$10-$20`` -> "ten to twenty
  dollars"). ISO codes before or after the amount are said like symbols (``USD 45`` ->
  "forty-five US dollars", ``30 EUR``); a code without an amount (``EUR/USD``) stays.
* **Attributive amounts** take the singular: a determiner before and a lowercase noun right
  after (``a $5 fee`` "a five-dollar fee", ``the 2 TB drive`` "the two-terabyte drive",
  ``a $3.50 coffee`` "a three fifty coffee", ``a $0.99 app`` "a ninety-nine-cent app");
  a pronoun or function word after keeps the plural (``the $50 you owe``, ``a $50 or $60``).
* **Years**: a bare 4-digit integer 1500-2099 is a year ("nineteen ninety", "two
  thousand five", "twenty twenty-four"), unless a quantity cue precedes it ("over
  1500 people") or a count noun follows it ("2048 tokens"). Other 4-digit numbers are
  cardinals; a year cue before them ("in 1066") makes them years. Decades: ``1990s``
  -> "nineteen nineties", ``'90s``/``90s`` -> "nineties", ``100s``/``1000s`` ->
  "hundreds"/"thousands". ``in '21`` -> "in twenty-one", ``'05`` -> "oh five" (the
  apostrophe is dropped). A decimal with ``s`` glued to it is seconds (``9.58s``).
* **Dates**: ``2024-03-03``, ``2024/3/3`` and ``March 3, 2024`` -> "March third, twenty
  twenty-four". Slash dates are **US order** (month/day/year): ``3/4/2024`` is
  March fourth; when the first part cannot be a month (``25/12/2024``) the
  day/month order is used. Two-digit years: 00-49 -> 20xx, 50-99 -> 19xx. Without a
  year, ``12/25`` is a date only after a date cue ("on 12/25"), else a fraction.
* **Times**: ``3:30 pm`` -> "three thirty PM", ``14:05`` -> "fourteen oh five" (24-hour
  times are read as written, not converted), ``9am`` -> "nine AM", ``5:00`` -> "five
  o'clock", ``10am-2pm`` -> "ten AM to two PM". Other ``a:b`` (``16:9``, a score
  ``3:2``) -> "sixteen to nine".
* **Fractions**: ``1/2`` "one half", ``3/4`` "three quarters", ``7/16`` "seven
  sixteenths" (ordinal denominators up to 100 and powers of ten, else "x over y");
  ``1 1/2`` "one and a half"; after a score cue ``rated 8/10`` "eight out of ten";
  ``24/7``, ``50/50``, ``9/11`` as said.
* **Weekdays**: ``Mon.``, ``Fri`` are said in full only before a date (``Fri., Nov. 29``,
  ``Sat, 12 June``): espeak-ng would end a sentence at the period, and "the Sun" stays.
* **Roman numerals** (I, V, X, L; ``XL``/``XXL`` are sizes, a lone L a letter) are read after a
  capitalised word: after a cue (``Part I``, ``World War II``, ``Chapter IV``, ``type II``) a
  cardinal; after a regnal name (``Louis XIV``, ``Elizabeth II's``, ``Henry V``) "the" and an
  ordinal; after another capitalised word a numeral of two letters or more is a cardinal
  (``Final Fantasy VII``, ``Apollo XI``). ``Malcolm X``, the pronoun "I" and ``An IV drip``
  stay. espeak-ng says "roman two" for ``II``.
* **Titles**: ``Dr.`` is "Doctor", or "Drive" after a capitalised word when no
  capitalised word follows (``Sunset Dr. near``). ``St.`` is "Saint" before a
  capitalised word (unless a number precedes: ``5th St. Louis`` is a street), "Street"
  otherwise. The period of a title is dropped (a voice would end the sentence there)
  unless the text ends there; the period of an abbreviation that can end a sentence
  (``etc.``, ``Inc.``, ``St.`` as Street) is kept when the text ends there or the next
  word is capitalised. Dotted initialisms lose their dots: ``U.S.`` -> "US".
* **URLs**: the scheme, ``www.`` and a trailing slash are dropped, separators are
  said ("dot", "slash", "dash", ...): ``https://www.example.com/docs`` -> "example
  dot com slash docs"; bare domains need a known top-level domain (``example.com``,
  not ``node.js``). E-mail: "jane dot doe at example dot com".
* **Phone numbers** (``555-123-4567``, ``(555) 123-4567``, ``1-800-555-0199``, ``+44 20
  7946 0958``, ``0800 123 456``, ``555-0100``, ``call 911``): digit by digit, a comma (a short pause)
  between groups. ``100-200`` stays a range: a 3-4 digit pair is a phone number only
  after a phone cue ("call") or when its second part starts with 0.
* **SSML/XML tags** (``<break time="500ms"/>``) are left exactly as they are, and so is
  the content of ``<say-as>``, ``<phoneme>`` and ``<sub>`` (the author chose its reading).

Not handled (left to the voice): European number formats (``1.234,56``), a scale letter
without a currency or a count noun after it (``Apt 4B``, ``a 5k run``: kept; ``7B
parameters`` is "seven billion"), codes mixing letters and digits (``BA2490``, ``4K``),
``10/11`` meaning "10 or 11", Roman numerals with C, D or M (``DC`` is a city, ``CD`` a
disc), attributive amounts without a determiner before them ("buy 5 GB plans").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from .handlers import HANDLERS, Spoken
from .spans import NormalizedText, SpanBuilder
from .tables import (
    ABBREVIATIONS,
    CURRENCIES,
    CURRENCY_CODES,
    MONTH_ABBREVIATIONS,
    MONTHS,
    NUMBER_ABBREVIATIONS,
    PER_UNITS,
    UNITS,
    VULGAR_FRACTIONS,
    WEEKDAY_ABBREVIATIONS,
)

__all__ = ["normalize_english"]


def _alternation(keys: Iterable[str]) -> str:
    """Regex alternation of literal keys, longest first (so ``min`` wins over ``m``)."""
    return "|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True))


_NUM: Final = r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+(?:\.[0-9]+)?|\.[0-9]+"
_CUR: Final = "[" + "".join(CURRENCIES) + "]"
_MONTH: Final = "|".join(MONTHS)
_MON_ABBR: Final = _alternation(MONTH_ABBREVIATIONS)
_UNIT: Final = _alternation(UNITS)
_PER: Final = _alternation(PER_UNITS)
_CODES: Final = _alternation(CURRENCY_CODES)
_WEEKDAY: Final = _alternation(WEEKDAY_ABBREVIATIONS)
_AMPM: Final = r"[AaPp]\.?[Mm]\b\.?"
_SEP: Final = r"[\s.-]"
_HOUR: Final = r"[01]?[0-9]|2[0-4]"

_PATTERNS: Final = {
    "email": r"(?<![\w.+-])[A-Za-z0-9._%+-]++@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])",
    "url": r"\b(?:(?i:https?|ftp)://|www\.)[^\s<>\"'`]*[^\s<>\"'`.,;:!?)\]}]"
    r"|(?<![\w.@/-])(?:[A-Za-z0-9][A-Za-z0-9-]*+\.)+"
    r"(?i:com|org|net|edu|gov|io|ai|dev|app|co\.uk|uk|de|fr|us|info|biz|me|tv|ly|gg|xyz|tech|cloud)"
    r"(?![\w.-]*\w)(?:/[^\s<>\"'`]*[^\s<>\"'`.,;:!?)\]}])?/?",
    "iso_date": r"(?<![\w/.-])(?P<iso_y>[0-9]{4})(?P<iso_s>[-/])(?P<iso_m>0?[1-9]|1[0-2])(?P=iso_s)"
    r"(?P<iso_d>0?[1-9]|[12][0-9]|3[01])(?![\w/-])",
    "slash_date": r"(?<![\w/])(?P<sd_a>[0-9]{1,2})/(?P<sd_b>[0-9]{1,2})/(?P<sd_y>[0-9]{4}|[0-9]{2})(?![\w/])",
    "month_date": rf"\b(?P<md_mon>{_MONTH}|(?:{_MON_ABBR})\.?)\s+(?P<md_day>[0-9]{{1,2}})(?:st|nd|rd|th)?"
    r"(?!\w|:|[.,][0-9])(?:,?\s+(?P<md_year>[0-9]{4})(?!\w))?",
    "day_month": rf"(?<![\w.])(?P<dm_day>[0-9]{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<dm_mon>{_MONTH})\b"
    r"(?:,?\s+(?P<dm_year>[0-9]{4})(?!\w))?",
    "time_range": rf"(?<![\w:.])(?P<tr_h1>{_HOUR})(?::(?P<tr_m1>[0-5][0-9]))?(?:\s?(?P<tr_ap1>{_AMPM}))?"
    rf"\s?[-–]\s?(?P<tr_h2>{_HOUR})(?::(?P<tr_m2>[0-5][0-9]))?(?:\s?(?P<tr_ap2>{_AMPM}))?(?![\w:])",
    "time": rf"(?<![\w:.])(?P<t_h>[01]?[0-9]|2[0-4]):(?P<t_m>[0-5][0-9])(?::(?P<t_s>[0-5][0-9]))?"
    rf"(?:\s?(?P<t_ap>{_AMPM}))?(?![\w:])",
    "ampm": rf"(?<![\w:.])(?P<a_h>1[0-2]|0?[1-9])\s?(?P<a_ap>{_AMPM})",
    "ratio": r"(?<![\w:.])(?P<r_a>[0-9]{1,3}):(?P<r_b>[0-9]{1,3})(?![\w:]|[.,][0-9])",
    "phone": rf"(?<![\w+])(?:\+[0-9]{{1,3}}(?:[\s.-][0-9]{{1,4}}){{2,6}}"
    rf"|(?:\+?1{_SEP})?(?:\([0-9]{{3}}\)\s?|[0-9]{{3}}{_SEP})[0-9]{{3}}{_SEP}[0-9]{{4}}"
    r"|0[0-9]{2,4}(?:[\s-][0-9]{3,4}){2})(?![\w-]|\.[0-9])",
    "decade": r"(?<![\w'’,])(?P<dec_round>100|1000)['’]?s(?!\w)"
    r"|(?<![\w'’])(?P<dec_full>[12][0-9]{2}0)['’]?s(?!\w)"
    r"|(?<!\w)['’](?P<dec_short>[0-9]0)s(?!\w)|(?<![\w'’])(?P<dec_bare>[2-9]0)['’]?s(?!\w)",
    "short_year": r"(?<![\w'’])['’](?P<sy>[0-9]{2})(?![\w'’]|[.,:/][0-9])",
    "ordinal": r"(?<![\w.])(?P<ord>[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:st|nd|rd|th|ST|ND|RD|TH)(?!\w)",
    "mixed": r"(?<![\w./])(?P<mx_w>[0-9]+)\s(?P<mx_n>[0-9]{1,2})/(?P<mx_d>[0-9]{1,2})(?![\w/])",
    "vulgar": r"(?<![\w.])(?P<vf_w>[0-9]+)?\s?(?P<vf>[" + "".join(VULGAR_FRACTIONS) + "])",
    "fraction": r"(?<![\w./])(?P<fr_n>[0-9]{1,3}(?:\.[0-9]{1,2})?)/(?P<fr_d>[0-9]{1,4})(?![\w/]|\.[0-9])",
    "hash": r"(?<![\w&])#\s?(?P<h_num>[0-9]+)(?![\w.,][0-9]|\w)",
    "version": r"(?<![\w.])(?P<ver_v>[vV])?(?P<ver>[0-9]+(?:\.[0-9]+){2,})(?![\w]|\.[0-9])",
    "quantity": rf"(?<![\w.,])(?P<q_sign>[-−+](?=[0-9$€£¥₹]))?(?P<q_cur>{_CUR})?(?P<q_num>{_NUM})"
    rf"(?:(?P<q_dash>-|\s?–\s?)(?P<q_cur2>{_CUR})?(?P<q_num2>{_NUM}))?"
    r"(?:\s?(?P<q_scale>thousand|million|billion|trillion)\b|(?P<q_abbr>[kKMB]|bn|mn|tn)(?!\w))?"
    rf"(?P<q_curpost>{_CUR}|\s?(?:{_CODES})(?!\w))?(?:(?P<q_times>[x×])(?!\w))?"
    rf"(?:\s?(?P<q_unit>%|°\s?[FCK]|°|(?:{_UNIT})(?!\w|/(?!(?:{_PER})(?!\w)))"
    r"|(?:(?<=\.[0-9])|(?<=\.[0-9]{2})|(?<=\.[0-9]{3}))s(?!\w)))?"  # "9.58s"; "100s" is hundreds
    rf"(?:\s?/\s?(?P<q_per>{_PER})(?!\w))?(?P<q_plus>\+(?![0-9]))?(?![\w]|[.,][0-9])",
    "dimensions": rf"(?<![\w.])(?P<dim>[0-9]+(?:\s?[x×]\s?[0-9]+){{1,2}})"
    rf"(?:\s?(?P<dim_unit>{_UNIT})(?![\w/]))?(?!\w|[.,][0-9])",
    "power": r"(?<![\w.])(?P<pw_b>[0-9]+)\^(?P<pw_e>[0-9]{1,2})(?![\w.]|\.[0-9])",
    "compare": r"(?<=\s)(?P<cmp>[<>]=?)(?=\s)",
    "feet_inches": r"(?<![\w'’])(?P<fi_f>[0-9])['’′]\s?(?P<fi_i>[0-9]{1,2})(?:\"|”|″|'')",
    "latin": r"(?<![\w.])(?P<lat>[Ee]\.\s?[Gg]|[Ii]\.\s?[Ee]|a\.k\.a|A\.k\.a)\.?(?!\w)",
    "title": r"(?<![\w.])(?P<ti>Dr|St)\.(?!\w)",
    "number_abbr": rf"(?<![\w.])(?P<na>{_alternation(NUMBER_ABBREVIATIONS)})\.\s?(?=[0-9])"
    r"|(?<![\w.])(?P<na_of>[Nn]o)\.(?=\s+of\b)",
    "abbr": rf"(?<![\w.])(?P<ab>{_alternation(ABBREVIATIONS)})\.(?!\w)",
    "sharp": r"(?<![\w#])(?P<sh>[A-G])#(?![\w#])",
    "bare_title": r"(?<![\w.])(?P<bt>Dr|Mr|Mrs|Ms|Prof)(?=\s+[A-Z])",
    "weekday": rf"(?<![\w.])(?P<wd>{_WEEKDAY})\.?(?=,?\s+(?:(?:{_MONTH}|{_MON_ABBR})\b"
    rf"|[0-9]{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{_MONTH}|{_MON_ABBR})\b))",
    "code_money": rf"(?<![\w./])(?P<cm_code>{_CODES})\s?(?P<cm_num>{_NUM})"
    r"(?:\s?(?P<cm_scale>thousand|million|billion|trillion)\b|(?P<cm_abbr>[kKMB]|bn|mn|tn)(?!\w))?"
    r"(?![\w]|[.,][0-9])",
    "roman": r"(?<![\w.'’-])(?P<rn>(?=[IVXL])(?:XL|L?X{0,3})(?:IX|IV|V?I{0,3}))(?![\w-]|['’](?!s\b))",
    "bare_word": r"(?<![\w.])(?P<bw>vs|etc)\b(?!\.)",
    "initialism": r"(?<![\w.])(?P<ini>(?:[A-Z]\.){2,})",
    "amp": r"&(?:amp;)?",
    "about": r"[~≈](?=\s?[-−+$€£¥₹.]?[0-9])",
}

# Rules grouped by what their first character can be, behind one cheap guard per group:
# inside a word two guards fail per position instead of every rule (several times faster).
_SYMBOLS: Final = re.escape("-−+$€£¥₹#&('’~≈<>" + "".join(VULGAR_FRACTIONS))  # for a [...] class
_WORD_GUARD: Final = (
    r"(?<!\w)(?=[A-Za-z0-9][A-Za-z0-9_%+-]*+[.@:]"  # a word followed by . @ : (abbreviation, address)
    rf"|(?:Dr|Mr|Mrs|Ms|Prof|vs|etc|{_MONTH}|{_MON_ABBR}|{_WEEKDAY})\b|[A-G]#"  # a bare title, a month, C#
    rf"|(?:{_CODES})\s?[0-9]|[IVXL]+(?![\w-]|['’](?!s\b)))"  # a currency code, a Roman numeral
)
_GROUPS: Final = (
    (_WORD_GUARD, "email url weekday month_date latin title number_abbr abbr sharp bare_title bare_word"
     " initialism code_money roman"),
    (rf"(?:(?<!\w)(?=\.?[0-9])|(?=[{_SYMBOLS}]))", "iso_date slash_date day_month time_range time ampm"
     " ratio phone decade short_year ordinal mixed vulgar fraction hash version dimensions power feet_inches"
     " quantity amp about compare"),
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
_BARE_WORDS: Final = frozenset(
    ["Dr", "Mr", "Mrs", "Ms", "Prof", "vs", "etc", *MONTHS, *MONTH_ABBREVIATIONS, *WEEKDAY_ABBREVIATIONS]
)
_BARE_FIRST: Final = "".join(sorted({word[0] for word in _BARE_WORDS}))
_WORD_STARTS: Final = "".join(sorted(set(_BARE_FIRST + "IVXL").union(code[0] for code in CURRENCY_CODES)))
_CANDIDATE: Final = re.compile(
    rf"[0-9{_SYMBOLS}.@:]|(?<!\w)(?=[{_WORD_STARTS}])(?:(?P<word>[{_BARE_FIRST}][a-z]{{1,8}})\b"
    rf"|(?P<roman>[IVXL]+)(?![\w-]|['’](?!s\b))|(?P<code>{_CODES})(?=\s?[0-9]))"
)
"""Where a rule may start: a digit or symbol, ``.@:`` after a token, a word that may be a
bare title, a month or a weekday (checked against :data:`_BARE_WORDS`; a charset of their
first letters first is 4x faster than the alternation of the words), a Roman numeral, a
currency code before a number; one look-behind and one charset guard all three."""
_TOKEN_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")
_QUANTITY: Final = re.compile(_PATTERNS["quantity"])
_TAG: Final = re.compile(r"<(say-as|phoneme|sub)\b[^<>]*>.*?</\1\s*>|</?[A-Za-z][^<>]*>", re.S)
"""An SSML/XML tag; ``say-as``, ``phoneme`` and ``sub`` protect their content too."""

assert set(HANDLERS) == set(_PATTERNS)


def _rule(m: re.Match[str]) -> str:
    """Name of the outermost alternative that matched (``lastgroup`` sees inner groups)."""
    name = m.lastgroup
    if name in HANDLERS:
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


def _resolve(m: re.Match[str], text: str) -> tuple[re.Match[str], Spoken | None]:
    """The handler's reading of ``m``; a rejected match falls back to its leading number."""
    rule = _rule(m)
    spoken = HANDLERS[rule](m, text)
    if spoken is None and rule != "quantity":  # an impossible date...: read the number alone
        m2 = _QUANTITY.match(text, m.start())
        if m2 is not None:
            return m2, HANDLERS["quantity"](m2, text)
    return m, spoken


def _tags(text: str) -> list[tuple[int, int]]:
    """Spans of SSML/XML tags: meant for the engine, never rewritten (``<break time="5ms"/>``)."""
    return [(t.start(), t.end()) for t in _TAG.finditer(text)] if "<" in text else []


def _tag_end(tags: list[tuple[int, int]], start: int, end: int) -> int | None:
    """End of the tag that ``[start, end)`` touches, if any."""
    for tag_start, tag_end in tags:
        if tag_start < end and start < tag_end:
            return tag_end
    return None


def normalize_english(text: str) -> NormalizedText:
    """Normalise English ``text`` (see the module docstring for every decision).

    A cheap candidate search (a digit, a symbol, ``.``/``@``/``:``, a bare title or
    month) finds where a rule may apply; the full rule alternation is only tried at
    the start of that token and at the candidate itself. SSML/XML tags are copied
    unchanged.
    """
    out = SpanBuilder(text)
    tags = _tags(text)
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
        if tags and (skip := _tag_end(tags, m.start(), m.end())) is not None:
            search_from = max(skip, candidate.end())
            continue
        out.copy(pos, m.start())
        if isinstance(spoken, str):
            out.rewrite(m.start(), m.end(), spoken)
        else:
            for start, end, piece in spoken:  # pieces tile the match
                out.rewrite(m.start() + start, m.start() + end, piece)
        pos = search_from = m.end()
    out.copy(pos, len(text))
    return out.build()
