"""Character classes, word lists and scanner states of the sentence segmenter."""

from __future__ import annotations

import re
from typing import Final

# --- character classes -------------------------------------------------------

_SOFT_TERMS: Final = ".!?…‼⁇⁈⁉؟"  # the next character's case decides
_HARD_TERMS: Final = "。！？｡।॥"  # CJK / Devanagari: no space, no case needed
_TERMS: Final = _SOFT_TERMS + _HARD_TERMS
_CLOSERS: Final = "\"'”’»›)]}」』）】〕〉》〗〙〛｣*_"
# After "<terminator> ", these continue the sentence ("voila! -- you", ". . .").
_CONTINUERS: Final = _TERMS + "-–—,;:"
_CJK_OPENERS: Final = "「『“‘（(【〔〈《〖〘〚｢"
# Characters that start a word when scanning back from a terminator.
_WORD_STOPS: Final = "\"'“‘«‹([{¿¡*_<>/"
_LINE_MARKS: Final = " \t#>*-+•|"

# Characters at which the NORMAL-mode scanner has to stop and think.
_SPECIAL: Final = re.compile(r"[.!?…‼⁇⁈⁉؟。！？｡।॥\n`<]")
_NON_SPACE: Final = re.compile(r"\S")
_WORD: Final = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*", re.UNICODE)
_CODE_EVENT: Final = re.compile(r"`+|\n[ \t]*\n")
_TAG_EVENT: Final = re.compile(r"[<>]|\n[ \t]*\n")
# A word that is complete although nothing follows it yet: punctuation after a letter.
_WORD_END: Final = re.compile(r"[^\W\d_][.!?…,;:]+[\"'”’»)\]]*\Z")

# --- word lists ----------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Never end a sentence (titles, Latin/German abbreviations, references).
_TITLES: Final = _words(
    """mr mrs ms mx dr prof rev hon capt cpt lt sgt maj cmdr adm supt messrs mme mlle
    e.g i.e cf viz vs z.b d.h u.a bzw ca approx incl vgl"""
)
# Not a sentence end before a digit ("p. 55", "No. 5"), an ordinary word otherwise.
_NUMREFS: Final = _words("no nos nr n° nº p pp vol vols fig figs eq eqs ch sec art tel ph")
# May end a sentence: decided by the next word (a sentence starter ends it).
_AMBIGUOUS: Final = _words(
    """etc inc ltd co corp llc plc jr sr st ave blvd rd al bros dept mt ft jan feb apr jun
    jul aug sep sept oct nov dec mon tue tues thu thur thurs fri usw min max hrs yr yrs mo
    sq oz lb lbs gen col gov sen rep pres"""
)
_ROMAN: Final = _words("i ii iii iv v vi vii viii ix x xi xii")
# Words that make "<abbreviation>. <Word>" a sentence end (lowercased).
_STARTERS: Final = _words(
    """a an the i i'm i've i'll i'd he he's she she's it it's we we're we've you you're
    you'll they they're they've this that that's these those there there's then but and
    so or yet however how what what's why when where who which whose if in on at by for
    from to with without after before as once while although though still next finally
    first second third last also besides moreover furthermore meanwhile instead otherwise
    here now today tomorrow yesterday tonight my our your his her their its let let's
    please thanks thank yes no not nothing none all some many most every each both
    either neither one two three another is are was were do does did don't can can't
    could will would should shall may might must have has had being it'd we'd they'd
    since because unless until during overall anyway indeed sure okay ok well oh hello hi
    great good note see remember just maybe perhaps sometimes often usually never always
    everyone everything nobody someone something our"""
)
# Words after "<1-2 digit number>." that make it an ordinal (German dates etc.).
_ORDINAL_NOUNS: Final = _words(
    """januar jänner februar märz april mai juni juli august september oktober november
    dezember jan feb mär apr jun jul aug sep sept okt nov dez mal platz klasse
    jahrhundert jahrtausend weltkrieg stock etage liga runde quartal halbjahr kapitel
    auflage spieltag tag woche bundesliga"""
)


def _prefixes(words: frozenset[str]) -> frozenset[str]:
    return frozenset(w[:i] for w in words for i in range(1, len(w) + 1))


_STARTER_PREFIXES: Final = _prefixes(_STARTERS)
_ORDINAL_PREFIXES: Final = _prefixes(_ORDINAL_NOUNS)

# --- scanner states ------------------------------------------------------------

_NORMAL: Final = 0
_CODE: Final = 1  # inside `inline code`
_TAG: Final = 2  # inside <tag ...>
_FENCE: Final = 3  # inside a ``` fenced block

# Kinds of line (classified from the line's first characters).
_PLAIN: Final = 0
_HEADING: Final = 1
_LIST: Final = 2
_BLOCK: Final = 3  # block quote or table row
_FENCE_LINE: Final = 4

# Kinds of word before a single period.
_W_NORMAL: Final = 0
_W_TITLE: Final = 1  # never a boundary
_W_AMBIGUOUS: Final = 2  # boundary iff the next word is a sentence starter
_W_ORDINAL: Final = 3  # boundary unless the next word is a month/ordinal noun
_W_NUMREF: Final = 4  # no boundary before a digit only

_WAIT: Final = -1  # "need more text" from a handler
# Bounds that keep waiting O(1) per token on pathological whitespace runs:
_MAX_INDENT: Final = 16  # a line indented more than this is plain text
_MAX_GAP: Final = 64  # a terminator followed by more whitespace than this ends a sentence
_TAG_LIMIT: Final = 400  # a "<x" with no ">" after this many chars is not a tag
_MAX_WORD: Final = 32  # a word longer than this before a period is an ordinary word


def _is_dotted_abbreviation(word: str) -> bool:
    """``U.S``, ``a.m``, ``Ph.D``: alphabetic parts of one or two letters."""
    parts = word.split(".")
    return len(parts) > 1 and all(0 < len(p) <= 2 and p.isalpha() for p in parts)


def _skip_space(buf: str, i: int) -> int:
    """Index of the first non-space character at or after ``i`` (or ``len(buf)``)."""
    m = _NON_SPACE.search(buf, i)
    return len(buf) if m is None else m.start()


def _resume_point(buf: str, pos: int) -> int:
    """Where to resume a search so a blank line split across tokens is still seen.

    The search found no blank line in ``buf[pos:]``, so at most one newline ends
    it, followed by spaces/tabs: resume at that newline, else at the end. Looks
    back at most ``_MAX_GAP`` characters (a blank line padded with more spaces
    than that does not end a code span or tag).
    """
    n = len(buf)
    p = n
    while p > pos and n - p <= _MAX_GAP and buf[p - 1] in " \t":
        p -= 1
    return p - 1 if p > pos and buf[p - 1] == "\n" else n
