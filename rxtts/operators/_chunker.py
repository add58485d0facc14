"""The pure chunker behind ``chunk_schedule()``: no Rx, no clock.

:class:`ChunkScheduler` holds every pending character of a turn (with ``segment=True``
it runs the :class:`~rxtts.operators.SentenceSegmenter` itself), releases chunk ``k``
at the first boundary where the schedule's threshold is met, cuts over-long runs at
clause or word boundaries never right after a :data:`FUNCTION_WORDS` entry, and
implements the idle release (never inside a word, PROTOCOL S-8a) and the phrase-aware
first chunk. The operator in :mod:`rxtts.operators.chunk_schedule` adds FLUSH handling
and the timer.
"""

from __future__ import annotations

import itertools
import numbers
import re
from collections.abc import Sequence
from typing import Final, Literal, TypeAlias

from rxtts.config import DEFAULT_SCHEDULE

from ._segmenter import SentenceSegmenter

__all__ = ["FUNCTION_WORDS", "ChunkScheduler", "FirstChunk"]


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


FirstChunk: TypeAlias = Literal["sentence", "phrase"]
"""How chunk 0 of a turn is cut: at a sentence boundary, or at an earlier phrase boundary."""

FUNCTION_WORDS: Final = _wordset(
    """a an the this these those that which who whom whose what how why of to in on at
    for with from by as into onto about over under than and or but nor so yet if because
    while when where whether although though since until unless after before during
    through without is are was were be been being am isn't aren't wasn't weren't do does
    did don't doesn't didn't has have had can could will would shall should may might
    must can't won't i he she we they i'm you're he's she's it's we're they're that's
    there's let's i'll you'll we'll they'll i've you've we've they've i'd you'd we'd my
    your his her its our their some any no not very just also one each every all both
    few many most several such own same lot"""
)
"""Words a phrase cut never lands after (articles, prepositions, conjunctions,
auxiliaries, subject pronouns, determiners, quantifiers): "of the" | "nicest"
would split a phrase the voice must say in one breath."""

# Words that open a phrase: a cut just before one of them is preferred.
_OPENERS: Final = _wordset(
    """and but or so because which who where when while that if although though since
    unless until whereas to in on at for with from by of as into about after before
    during through without like"""
)
_CLAUSE_MARKS: Final = ",;:—–"
_ANGLE: Final = re.compile(r"[<>]")
_DASHES: Final = frozenset(("-", "--", "–", "—"))
_WORD_TRIM: Final = "\"'“”‘’«»‹›()[]{}*_<>.,;:!?…—–-"
_CLOSING: Final = "\"'”’»›)]}*_"
_OPENING: Final = "\"'“‘«‹([{"

# A clause ends at , ; : or a dash *followed by whitespace* (so a cut never splits a word).
_CLAUSE: Final = re.compile(r"[,;:—–](?=\s)|\s[-–—](?=\s)")
_SPACE_RUN: Final = re.compile(r"\s+")
_SENTENCE_END: Final = re.compile(r"[.!?…][\"'”’»)\]]*$")


def _validate_words(first_chunk: FirstChunk | None, min_words: int, max_words: int) -> None:
    if first_chunk not in (None, "sentence", "phrase"):
        raise ValueError(f"first_chunk must be 'sentence', 'phrase' or None, got {first_chunk!r}")
    for name, v in (("min_words", min_words), ("max_words", max_words)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if max_words < min_words:
        raise ValueError(f"max_words must be >= min_words, got {max_words} < {min_words}")


def _validate(
    schedule: Sequence[int], max_buffer_length: int, flush_timeout_ms: float | None
) -> tuple[int, ...]:
    raw = tuple(schedule)
    if not raw:
        raise ValueError("schedule must not be empty")
    for v in raw:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
            raise ValueError(f"schedule entries must be positive integers, got {v!r}")
    values = tuple(int(v) for v in raw)
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise ValueError(f"schedule must be strictly increasing, got {list(values)}")
    ok_max = isinstance(max_buffer_length, int) and not isinstance(max_buffer_length, bool)
    if not ok_max or max_buffer_length <= 0:
        raise ValueError(f"max_buffer_length must be a positive integer, got {max_buffer_length!r}")
    if flush_timeout_ms is not None and (isinstance(flush_timeout_ms, bool) or not flush_timeout_ms > 0):
        raise ValueError(f"flush_timeout_ms must be positive or None, got {flush_timeout_ms!r}")
    return values


def _cut_point(text: str, joins: Sequence[int], threshold: int, limit: int) -> int:
    """Where to end the next piece of an over-long run (``len(text) > limit``).

    In order of preference, with ``low = min(threshold, limit // 2)``: the first
    sentence boundary (``joins``: where two segments were joined) in ``[low,
    limit]``; the first clause boundary ending in that window; the last
    whitespace at or before ``limit`` that does not follow a function word
    (:data:`FUNCTION_WORDS`), else the last whitespace there; the first
    whitespace after it. ``-1`` when ``text`` has no whitespace (one long word
    is never split).
    """
    low = min(threshold, limit // 2)
    for j in joins:
        if low <= j <= limit:
            return j
    for m in _CLAUSE.finditer(text, max(low - 2, 0), limit + 1):
        if low <= m.end() <= limit:
            return m.end()
    last = last_ok = -1
    word_start = 0
    for m in _SPACE_RUN.finditer(text, 0, limit + 1):
        if m.start() > 0:
            last = m.start()
            if _clean(text[word_start : m.start()]) not in FUNCTION_WORDS:
                last_ok = m.start()
        word_start = m.end()
    if last_ok > 0:
        return last_ok
    if last > 0:
        return last
    m2 = _SPACE_RUN.search(text, limit)
    return m2.start() if m2 is not None else -1


def _clean(word: str) -> str:
    """A word without surrounding punctuation, lowercased: what the word lists hold."""
    return word.strip(_WORD_TRIM).lower()


class _PhraseFinder:
    """Incremental search for the phrase cut of chunk 0 over a turn's raw text.

    Fed every token while chunk 0 is pending; each character is looked at once
    (the word being typed is carried over between tokens). A word is complete
    when whitespace follows it. :meth:`feed` returns the offset (in the text
    fed since :meth:`reset`) right after the word that ends chunk 0, or -1:

    * the first clause boundary (a word ending in ``, ; : — –``, or a lone dash)
      once ``min_words`` words are in, up to ``max_words`` words;
    * else, at ``max_words`` words, the best phrase boundary among words
      ``min_words..max_words``: the latest one before a phrase opener
      (``and``, ``that``, ``to``, ``in``...), else the latest one at all;
    * never after a function word, a word ending in ``.``/``!``/``?`` (sentence
      ends belong to the segmenter; abbreviations are no cut points), an
      opening bracket/quote, or inside a tag, an element (``<spell>...</spell>``)
      or inline code; when no
      word up to ``max_words`` qualifies, the first later word that does.
    """

    __slots__ = (
        "_closing",
        "_code",
        "_depth",
        "_done",
        "_fed",
        "_max",
        "_min",
        "_neutral",
        "_tag",
        "_word",
        "_words",
    )

    def __init__(self, min_words: int, max_words: int) -> None:
        self._min = min_words
        self._max = max_words
        self.reset()

    def reset(self) -> None:
        self._fed = 0
        self._word = ""  # the word being typed (no whitespace after it yet)
        self._words: list[tuple[int, str, bool]] = []  # (end offset, clean word, may cut after)
        self._tag = False  # inside "<...", before its ">"
        self._closing = False  # that tag is "</...>"
        self._neutral = False  # that tag is "<!...>" or "<?...>"
        self._depth = 0  # open elements ("<spell>" before "</spell>")
        self._code = False
        self._done = False

    @property
    def fed(self) -> int:
        """Characters fed since :meth:`reset`."""
        return self._fed

    def feed(self, text: str) -> int:
        base = self._fed
        self._fed += len(text)
        if self._done:
            return -1
        pos = 0
        for m in _SPACE_RUN.finditer(text):
            word = self._word + text[pos : m.start()]
            self._word = ""
            pos = m.end()
            if word:
                cut = self._complete(word, base + m.start())
                if cut >= 0:
                    self._done = True
                    return cut
        word = self._word  # append in place (see SentenceSegmenter.push)
        self._word = ""
        word += text[pos:]
        self._word = word
        return -1

    def _complete(self, word: str, end: int) -> int:
        if "<" in word or ">" in word:
            self._markup(word)
        if word.count("`") % 2:
            self._code = not self._code
        blocked = self._tag or self._code or self._depth > 0
        words = self._words
        core = _clean(word)
        if not any(c.isalnum() for c in core):
            # A lone dash is a clause mark after the previous word.
            dash = word in _DASHES and bool(words) and words[-1][2] and not blocked
            return end if dash and self._min <= len(words) <= self._max else -1
        tail = word.rstrip(_CLOSING)
        ok = (
            not blocked
            and core not in FUNCTION_WORDS
            and tail[-1:] not in ".!?…"
            and word[-1] not in _OPENING
        )
        words.append((end, core, ok))
        n = len(words)
        if ok and tail[-1:] in _CLAUSE_MARKS and self._min <= n <= self._max:
            return end
        if n == self._max:
            return self._best()
        if n > self._max:
            return end if ok else -1
        return -1

    def _markup(self, word: str) -> None:
        """Track open tags and elements: no cut inside ``<prosody ...>...</prosody>``."""
        for m in _ANGLE.finditer(word):
            i = m.start()
            if word[i] == "<":
                nxt = word[i + 1 : i + 2]
                if nxt.isalpha() or nxt in ("/", "!", "?"):  # "a < b" is no tag
                    self._tag = True
                    self._closing = nxt == "/"
                    self._neutral = nxt in ("!", "?")  # comments, processing instructions
            elif self._tag:
                self._tag = False
                if self._closing:
                    self._depth = max(0, self._depth - 1)
                elif not self._neutral and word[i - 1 : i] != "/":  # "<x/>" opens nothing
                    self._depth += 1

    def _best(self) -> int:
        words = self._words
        best = -1
        for i in range(self._min - 1, len(words)):
            end, _, ok = words[i]
            if not ok:
                continue
            nxt = words[i + 1][1] if i + 1 < len(words) else ""
            if nxt in _OPENERS:
                best = end  # the latest boundary before a phrase opener wins
        if best >= 0:
            return best
        for i in range(len(words) - 1, self._min - 2, -1):
            if words[i][2]:
                return words[i][0]
        return -1


class ChunkScheduler:
    """Pure chunk-length scheduler: text in, synthesis chunks out.

    Semantics (DESIGN section 6):

    * Chunk ``k`` (0-based, counted since the last flush: a FLUSH starts a new
      turn) is released at the first sentence boundary (the end of a pushed
      segment) where the buffered text is at least ``schedule[min(k, len-1)]``
      characters long (capped by ``max_buffer_length``, the length that always
      forces a chunk). With ``auto_mode`` chunk 0 is released at the first
      boundary whatever its length.
    * Buffered segments are joined with one space.
    * **Over-long runs** (decision): a released run longer than
      ``limit = min(2 * threshold, max_buffer_length)`` is cut into pieces, each
      one chunk (so ``k`` and the threshold advance per piece). A piece ends at
      the first sentence boundary, else the first clause boundary (``, ; : —``
      followed by a space), at or after the threshold (``min(threshold, limit //
      2)``) and within the limit; else at the last word boundary before
      ``limit`` (not after a function word when another one is there), else at
      the first one after it. Cuts happen only at whitespace, never inside a
      word (a single word longer than the limit stays whole). What is left
      after the pieces is a sentence end again: it is released if long enough,
      otherwise it waits for the next sentence.
    * ``flush()`` (FLUSH or completion) and ``timeout()`` (the operator's
      ``flush_timeout_ms``) release the buffer, cut the same way; ``flush()``
      also resets ``k`` to 0.

    With ``segment=True`` the pushed text is the raw token stream (split
    anywhere) and the scheduler runs a :class:`SentenceSegmenter` itself, so it
    also holds the sentence still arriving (:attr:`pending`):

    * ``timeout()`` releases the buffered sentences **and** the pending text up
      to its last word boundary (:meth:`SentenceSegmenter.releasable`, PROTOCOL
      S-8a); the partial word stays, so a pending single partial word waits
      for more text, FLUSH or completion.
    * ``first_chunk="phrase"`` (the default when ``auto_mode`` is on) lets chunk
      0 go out before its sentence ends, at a phrase boundary
      (:class:`_PhraseFinder`: the first clause boundary after ``min_words``
      words, else the best phrase boundary by ``max_words`` words, never after
      a :data:`FUNCTION_WORDS` word, never inside a word, tag or inline code).
      It implies ``auto_mode``'s rule for chunk 0. Trade-off: audio starts
      after a few words instead of a whole sentence, at the price of a prosody
      break inside the first sentence (the voice cannot plan its intonation
      across the cut); cutting only at a clause/phrase boundary keeps that
      break where a speaker could pause. Later chunks follow the schedule
      (sentence boundaries first, then clause boundaries for over-long runs).
    * :meth:`starve` (phrase mode only; the operator calls it when its consumer
      has been idle a while: the listener is about to hear silence, e.g. after
      an LLM tool-call stall): the buffered sentences go out at once whatever
      their length, with the pending sentence if it has ended (the segmenter
      holds a final ``.`` until the next character shows it is no abbreviation:
      before a stall that character comes only after the stall); if there are
      none, the next chunk is cut like chunk 0 (phrase boundary, from the text
      pending now), not at the schedule's threshold. One such chunk per call;
      any release ends it.
    """

    __slots__ = (
        "_auto",
        "_buf",
        "_fed",
        "_k",
        "_last_text",
        "_len",
        "_max",
        "_phrase",
        "_schedule",
        "_seg",
        "_urgent",
    )

    def __init__(
        self,
        schedule: Sequence[int] = DEFAULT_SCHEDULE,
        auto_mode: bool = False,
        max_buffer_length: int = 1000,
        *,
        segment: bool = False,
        first_chunk: FirstChunk | None = None,
        min_words: int = 4,
        max_words: int = 6,
    ) -> None:
        self._schedule = _validate(schedule, max_buffer_length, None)
        _validate_words(first_chunk, min_words, max_words)
        if first_chunk == "phrase" and not segment:
            raise ValueError("first_chunk='phrase' needs segment=True (it cuts the sentence still arriving)")
        phrase = segment and (first_chunk == "phrase" or (first_chunk is None and auto_mode))
        self._auto = auto_mode or phrase
        self._max = max_buffer_length
        self._buf: list[str] = []
        self._len = 0  # len(" ".join(self._buf))
        self._k = 0  # index of the next chunk in this turn
        self._seg = SentenceSegmenter() if segment else None
        self._fed = 0  # segment=True: characters pushed this turn
        self._last_text = -1  # ... and the index of the last non-space one
        self._phrase = _PhraseFinder(min_words, max_words) if phrase else None
        self._urgent = False  # starve(): the next chunk is cut like chunk 0

    @property
    def chunk_index(self) -> int:
        """Index ``k`` of the next chunk since the last flush."""
        return self._k

    @property
    def buffered_length(self) -> int:
        """Length of :attr:`buffered`, without building it."""
        return self._len

    @property
    def buffered(self) -> str:
        """Complete segments waiting for the next chunk."""
        return " ".join(self._buf)

    @property
    def pending(self) -> str:
        """With ``segment=True``: the sentence still arriving (not yet in :attr:`buffered`)."""
        return "" if self._seg is None else self._seg.pending

    @property
    def has_text(self) -> bool:
        """Whether any non-space text waits (buffered or pending); O(1)."""
        seg = self._seg
        return self._len > 0 or (seg is not None and self._last_text >= self._fed - seg.pending_length)

    @property
    def phrase_first_chunk(self) -> bool:
        """Whether chunk 0 is cut at a phrase boundary (``first_chunk="phrase"``)."""
        return self._phrase is not None

    def threshold(self, k: int | None = None) -> int:
        """Minimum length of chunk ``k`` (default: the next chunk)."""
        s = self._schedule
        k = self._k if k is None else k
        return min(s[min(k, len(s) - 1)], self._max)

    def push(self, text: str) -> list[str]:
        """Add one complete segment, or (``segment=True``) one raw token."""
        seg = self._seg
        if seg is None:
            return self._push_segment(text)
        if text and not text[-1].isspace():
            self._last_text = self._fed + len(text) - 1
        elif stripped := len(text.rstrip()):
            self._last_text = self._fed + stripped - 1
        self._fed += len(text)
        out: list[str] = []
        for segment in seg.push(text):
            out += self._push_segment(segment)
        if self._phrase is not None and (self._k == 0 or self._urgent):
            out += self._phrase_cut(text)
        return out

    def _phrase_cut(self, text: str) -> list[str]:
        """Feed the phrase finder; release the pending text up to its cut, if any."""
        phrase, seg = self._phrase, self._seg
        assert phrase is not None and seg is not None
        cut = phrase.feed(text)
        if cut >= 0:
            n = cut - (phrase.fed - seg.pending_length)  # offset into the pending text
            if 0 < n <= seg.safe_end():
                self._append(seg.take(n))
                return self._release(keep_short_rest=False)
        return []

    def starve(self) -> list[str]:
        """The consumer is running dry: speak what is buffered now, else cut the next
        chunk at a phrase boundary (see the class doc; phrase mode only)."""
        seg = self._seg
        if self._phrase is None or seg is None or self._k == 0 or self._urgent:
            return []
        n = seg.releasable()
        if n and _SENTENCE_END.search(seg.pending[:n].rstrip()):
            self._append(seg.take(n))  # a sentence end held for its next character
        if self._buf:
            return self._release(keep_short_rest=False)
        self._urgent = True
        self._phrase.reset()
        return self._phrase_cut(seg.pending)

    def timeout(self) -> list[str]:
        """Release after silence (k keeps counting); keeps a pending partial word."""
        seg = self._seg
        if seg is not None:
            n = seg.releasable()
            if n:
                self._append(seg.take(n))
        return self._release(keep_short_rest=False)

    def flush(self) -> list[str]:
        """Release everything and start a new turn (k = 0)."""
        out: list[str] = []
        if self._seg is not None:
            for segment in self._seg.flush():
                out += self._push_segment(segment)
        out += self._release(keep_short_rest=False)
        self._k = 0
        self._urgent = False
        self._fed = 0
        self._last_text = -1
        if self._phrase is not None:
            self._phrase.reset()
        return out

    def _append(self, segment: str) -> None:
        if segment:
            self._len += len(segment) + (1 if self._buf else 0)
            self._buf.append(segment)

    def _push_segment(self, segment: str) -> list[str]:
        segment = segment.strip()
        if not segment:
            return []
        self._append(segment)
        if self._len < self.threshold() and not (self._auto and self._k == 0) and not self._urgent:
            return []
        return self._release(keep_short_rest=True)

    def _release(self, keep_short_rest: bool) -> list[str]:
        if not self._buf:
            return []
        self._urgent = False  # a chunk goes out: the consumer has work again
        joins: list[int] = []  # sentence boundaries inside the joined text
        for segment in self._buf[:-1]:
            joins.append((joins[-1] + 1 if joins else 0) + len(segment))
        text = " ".join(self._buf) if len(self._buf) > 1 else self._buf[0]
        self._buf.clear()
        self._len = 0
        out: list[str] = []
        while True:
            threshold = self.threshold()
            limit = min(2 * threshold, self._max)
            if len(text) <= limit:
                break
            cut = _cut_point(text, joins, threshold, limit)
            if cut < 0:
                break
            out.append(text[:cut].rstrip())
            self._k += 1
            rest = text[cut:].lstrip()
            shift = len(text) - len(rest)
            joins = [j - shift for j in joins if j - shift > 0]
            text = rest
        if out and keep_short_rest and len(text) < self.threshold():
            self._buf.append(text)  # the rest of a cut run waits for the next sentence
            self._len = len(text)
            return out
        if text:
            out.append(text)
            self._k += 1
        return out
