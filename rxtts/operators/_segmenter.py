"""Pure, incremental sentence segmenter (no Rx): the engine behind ``sentences()``.

``SentenceSegmenter.push(text)`` appends a token (split anywhere: mid-word, mid-URL,
a lone ``"."``) and returns the segments whose end became *certain*;
``flush()`` returns the rest and resets the segmenter for the next turn.

Lookahead policy (what "certain" means):

* A terminator run (``. ! ? …`` and combinations such as ``?!``, ``!!``, ``...``)
  plus its closing quotes/brackets/closing tags is decided at the **next
  non-space character**: lowercase -> same sentence (``"Stop." she said``),
  anything else -> boundary. A terminator followed directly by a non-space
  character is never a boundary (``3.14``, ``example.com``, ``e.g.,``).
* Where one character cannot tell, the decision waits for the **end of the next
  word** and no longer: after an ambiguous abbreviation, a dotted abbreviation or
  an initial (``U.S. Then`` ends, ``U.S. Government`` does not; the next word must
  be a common sentence starter), and after a small number (``am 3. Oktober``: the
  next word is a month or ordinal noun). The decision is taken as soon as the
  word's prefix rules a candidate out, so ``U.S. Gov`` is decided at ``Gov``.
* Titles (``Dr. Mr. e.g. i.e. vs.``...) and list enumerators at the start of a
  line or after ``:`` (``1.``, ``II.``) never end a sentence.
* CJK/Devanagari terminators (``。！？।``) end a sentence with no space after
  them; they wait one character for closing quotes/brackets only.
* Newlines: a blank line, the end of a heading line, and a newline before a list
  item, heading, code fence, block quote or table row are boundaries (decided
  when the next line's marker is visible); any other single newline is a soft
  wrap. A fenced code block (```` ``` ```` / ``~~~``) is one segment; nothing
  splits inside inline code or an SSML/XML tag.

Segments keep their inner spacing and are stripped; whitespace-only segments
are never returned. The concatenation of all segments equals the concatenation
of all pushed text with whitespace removed.

The scan is incremental: the buffer holds only the current (undecided)
segment, and a scan position means each character is examined O(1) times
(a regular expression jumps between the few characters that matter). A
decision that waits for more text resumes where it stopped instead of
rescanning what it already saw: a terminator run and its closers, a run of
backticks/tildes/spaces (``_run``), a run of newlines (resumed at its last
newline); lookbacks are bounded (a word before a period: 32 characters, list
marks and the gap before a ``:``: 64). So pushing a token costs O(its length)
amortised, whatever came before (``tests/test_segmenter_cost.py``: a 100k run of
``.``, digits, ``#``, spaces, backticks... then 1,500 one-character tokens).
"""

from __future__ import annotations

from rxtts.operators._segmenter_markup import Markup
from rxtts.operators._segmenter_tables import (
    _AMBIGUOUS,
    _CJK_OPENERS,
    _CLOSERS,
    _CODE,
    _CONTINUERS,
    _HARD_TERMS,
    _LINE_MARKS,
    _MAX_GAP,
    _MAX_WORD,
    _NORMAL,
    _NUMREFS,
    _ORDINAL_NOUNS,
    _ORDINAL_PREFIXES,
    _PLAIN,
    _ROMAN,
    _SPECIAL,
    _STARTER_PREFIXES,
    _STARTERS,
    _TAG,
    _TAG_LIMIT,
    _TERMS,
    _TITLES,
    _W_AMBIGUOUS,
    _W_NORMAL,
    _W_NUMREF,
    _W_ORDINAL,
    _W_TITLE,
    _WAIT,
    _WORD,
    _WORD_END,
    _WORD_STOPS,
    _is_dotted_abbreviation,
    _skip_space,
)

__all__ = ["SentenceSegmenter"]


class SentenceSegmenter(Markup):
    """Incremental sentence-boundary detector for text split anywhere.

    Example:
        >>> seg = SentenceSegmenter()
        >>> seg.push("Dr. Smith went ho") + seg.push("me. Th") + seg.push("en he slept.")
        ['Dr. Smith went home.']
        >>> seg.flush()
        ['Then he slept.']
    """

    __slots__ = (
        "_buf",
        "_code_start",
        "_fence",
        "_fence_midline",
        "_line_kind",
        "_line_start",
        "_mode",
        "_new_line",
        "_nl_resume",
        "_pos",
        "_runs",
        "_start",
        "_t_at",
        "_t_state",
        "_tag_start",
        "_ticks",
    )

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._buf = ""  # text of the undecided segment (+ lookahead)
        self._start = 0  # where the current segment starts in _buf
        self._pos = 0  # next index to scan
        self._mode = _NORMAL
        self._line_start = 0  # index where the current line starts
        self._line_kind = _PLAIN
        self._new_line = True  # a line starting at _line_start is not yet classified
        self._ticks = 0  # backticks that close the current inline code span
        self._fence = ""  # the marker that closes the current fenced block
        self._fence_midline = False
        self._tag_start = 0
        self._code_start = 0  # where the current inline code span starts
        # Lookback memo that keeps a waiting decision O(new characters) per push:
        self._runs: dict[tuple[int, str], int] = {}  # (start, chars) -> end of that run so far
        self._t_at = -1  # terminator whose scan _t_state holds
        self._t_state: tuple[int, bool, int, bool] = (-1, False, 0, False)
        self._nl_resume = 0  # where a waiting newline decision resumes

    @property
    def pending(self) -> str:
        """Text received but not yet returned as a segment."""
        return self._buf[self._start :]

    @property
    def pending_length(self) -> int:
        """``len(pending)``, without building it."""
        return len(self._buf) - self._start

    def safe_end(self) -> int:
        """Length of the pending prefix that may be cut off: up to an open tag or code span.

        Cutting before ``safe_end()`` never splits an SSML/XML tag or inline code.
        """
        end = len(self._buf)
        if self._mode == _TAG:
            end = self._tag_start
        elif self._mode == _CODE:
            end = self._code_start
        return max(end - self._start, 0)

    def releasable(self) -> int:
        """Length of the pending prefix an idle release may take (PROTOCOL S-8a).

        Everything up to the last word boundary at or before :meth:`safe_end`: the
        trailing word stays pending while more of it may come. A trailing word that
        ends in punctuation after a letter (``you.``, ``Lisbon,``, ``done!)``) is
        complete. 0 when the pending text is a single partial word.
        """
        buf = self._buf
        lo = self._start
        end = lo + self.safe_end()
        if end == lo:
            return 0
        if buf[end - 1].isspace():
            return end - lo
        if end == len(buf) and _WORD_END.search(buf, max(lo, end - 12)) is not None:
            return end - lo
        p = end - 1  # back over the partial word (paid once per idle release)
        while p > lo and not buf[p - 1].isspace():
            p -= 1
        return p - lo

    def take(self, n: int) -> str:
        """Remove the first ``n`` pending characters and return them stripped.

        ``n`` must end at a word boundary (:meth:`releasable`, or a phrase cut that
        ends before whitespace); scanning goes on with the rest as the current
        segment, so the text is neither lost nor repeated.
        """
        lo = self._start
        cut = min(lo + max(n, 0), len(self._buf))
        text = self._buf[lo:cut].strip()
        self._start = cut
        self._pos = max(self._pos, cut)  # a decision waiting before the cut is moot now
        if self._new_line and self._line_start < cut:
            self._line_start = cut
        self._compact()
        return text

    def push(self, text: str) -> list[str]:
        """Add a token; return the segments that are now certainly complete."""
        if not text:
            return []
        # Append in place: with the attribute cleared, the local is the only reference
        # and CPython grows the string without copying it (``self._buf += text``
        # would copy the whole buffer on every token).
        buf = self._buf
        n0 = len(buf)
        self._buf = ""
        buf += text
        self._buf = buf
        if (
            self._pos == n0  # no decision is waiting for this text
            and self._mode == _NORMAL
            and not self._new_line
            and _SPECIAL.search(text) is None
        ):
            self._pos = len(buf)  # fast path: plain text cannot complete anything
            return []
        return self._scan(final=False)

    def flush(self) -> list[str]:
        """End of text (FLUSH or completion): return every remaining segment, reset."""
        out = self._scan(final=True)
        tail = self._buf[self._start :].strip()
        if tail:
            out.append(tail)
        self._reset()
        return out

    # --- driver ------------------------------------------------------------------

    def _scan(self, final: bool) -> list[str]:
        out: list[str] = []
        pos = self._pos
        while True:
            n = len(self._buf)
            if self._new_line:
                pos = self._begin_line(self._line_start, final)
                if pos == _WAIT:
                    pos = self._line_start
                    break
            if pos >= n and not (final and self._mode == _TAG):
                break  # (an unclosed "<x" at the end is rescanned as text, below)
            mode = self._mode
            if mode == _NORMAL:
                m = _SPECIAL.search(self._buf, pos)
                if m is None:
                    pos = n
                    break
                i = m.start()
                c = self._buf[i]
                if c == "\n":
                    nxt = self._newline(i, final, out)
                elif c == "`":
                    nxt = self._backtick(i, final)
                elif c == "<":
                    nxt = self._angle(i, final)
                else:
                    nxt = self._terminator(i, final, out)
                if nxt == _WAIT:
                    pos = self._nl_resume if c == "\n" else i
                    break
                pos = nxt
            elif mode == _CODE:
                pos = self._in_code(pos, final)
                if pos < 0:
                    pos = -pos - 1
                    break
            elif mode == _TAG:
                pos = self._in_tag(pos, final)
                if pos < 0:
                    pos = -pos - 1
                    break
            else:
                pos = self._in_fence(pos, final, out)
                if pos < 0:
                    pos = -pos - 1
                    break
        self._pos = pos
        if self._start:
            self._compact()
        return out

    def _compact(self) -> None:
        """Drop emitted text from the buffer, shifting every index."""
        s = self._start
        self._buf = self._buf[s:]
        self._start = 0
        self._pos -= s
        self._line_start -= s
        self._tag_start -= s
        self._code_start -= s
        self._t_at -= s
        self._nl_resume -= s
        if self._runs:
            self._runs = {(i - s, c): e - s for (i, c), e in self._runs.items() if i >= s}

    def _run(self, i: int, chars: str) -> int:
        """End of the run of ``chars`` starting at ``i``; resumes where the last call stopped."""
        buf = self._buf
        n = len(buf)
        key = (i, chars)
        j = self._runs.get(key, i)
        while j < n and buf[j] in chars:
            j += 1
        if len(self._runs) > 8:
            self._runs.clear()
        self._runs[key] = j
        return j

    def _emit(self, cut: int, out: list[str]) -> None:
        seg = self._buf[self._start : cut].strip()
        if seg:
            out.append(seg)
        self._start = cut

    # --- terminators ---------------------------------------------------------------

    def _terminator(self, i: int, final: bool, out: list[str]) -> int:
        buf = self._buf
        n = len(buf)
        if self._t_at == i:  # this decision waited before: resume its scan
            term_len, hard, j, closed = self._t_state
            j += i
        else:
            term_len, hard, j, closed = -1, False, i, False
        if term_len < 0:
            while j < n and buf[j] in _TERMS:
                hard = hard or buf[j] in _HARD_TERMS
                j += 1
            if j == n and not final:  # the run may grow
                return self._t_wait(i, -1, hard, j, False)
            term_len = j - i
        single_period = term_len == 1 and buf[i] == "."
        # Closing quotes/brackets/tags belong to the sentence they close.
        while j < n:
            c = buf[j]
            if c in _CLOSERS:
                j += 1
                closed = True
                continue
            if c == "[":  # a citation after the period: "martyr.[1] The"
                e = j + 1
                while e < n and e - j <= 4 and buf[e].isdigit():
                    e += 1
                if e == n and not final:
                    return self._t_wait(i, term_len, hard, j, closed)
                if e < n and e > j + 1 and buf[e] == "]":
                    j = e + 1
                    continue
                break
            if c == "<":
                if j + 1 == n:
                    if final:
                        break
                    return self._t_wait(i, term_len, hard, j, closed)
                if buf[j + 1] == "/":
                    e = buf.find(">", j + 2, j + _TAG_LIMIT)
                    if e < 0:
                        if final or n - j >= _TAG_LIMIT:
                            break
                        return self._t_wait(i, term_len, hard, j, closed)
                    j = e + 1
                    closed = True
                    continue
            break
        if j == n:
            return n if final else self._t_wait(i, term_len, hard, j, closed)
        c = buf[j]
        if not c.isspace():
            # CJK: "。" ends the sentence; "。」と" (quote inside a sentence) does not.
            if hard and (not closed or c in _CJK_OPENERS or c in _TERMS):
                self._emit(j, out)
            return j
        k = _skip_space(buf, j)
        if buf.count("\n", j, k) >= 2 or hard or k - j > _MAX_GAP:  # blank line, 。 + space
            self._emit(j, out)
            return j
        if k == n:
            return n if final else self._t_wait(i, term_len, hard, j, closed)
        c2 = buf[k]
        if c2.islower() or c2 in _CONTINUERS:  # continuation, or ". . ." goes on
            return j
        kind = _W_NORMAL
        if single_period:
            dots = self._spaced_dots(i)
            if dots == 3:
                return j  # ". . . I didn't": a spaced ellipsis inside a sentence
            if dots == 1:
                kind = self._word_kind(i)
        if kind == _W_TITLE:
            return j
        if kind == _W_NORMAL:
            self._emit(j, out)
            return j
        if not c2.isalpha():
            if not (c2.isdigit() and kind != _W_ORDINAL):  # "p. 55", "No. 5"
                self._emit(j, out)
            return j
        if kind == _W_NUMREF:
            self._emit(j, out)
            return j
        # An uppercase letter: decided by the next word, or by its prefix.
        m = _WORD.match(buf, k)
        word = m.group().lower() if m is not None else c2.lower()
        e = n if m is None else m.end()
        # Complete once a character that cannot extend the word follows it.
        complete = final or (e < n and not (buf[e] in "'’" and e + 1 == n))
        if kind == _W_AMBIGUOUS:
            words, prefixes = _STARTERS, _STARTER_PREFIXES
        else:
            words, prefixes = _ORDINAL_NOUNS, _ORDINAL_PREFIXES
        if not complete and word in prefixes:
            return self._t_wait(i, term_len, hard, j, closed)
        found = complete and word in words
        if kind == _W_AMBIGUOUS and found and word in ("a", "i") and self._initial(i):
            found = False  # "J. A. Smith": an initial before "A"
        if found == (kind == _W_AMBIGUOUS):
            self._emit(j, out)
        return j

    def _t_wait(self, i: int, term_len: int, hard: bool, j: int, closed: bool) -> int:
        """Remember how far the terminator at ``i`` got, so the next push resumes there.

        Only for long scans: rescanning a few characters is cheaper than the memo.
        """
        if j - i > 8:
            self._t_at = i
            self._t_state = (term_len, hard, j - i, closed)
        return _WAIT

    def _initial(self, i: int) -> bool:
        """True when the period at ``i`` follows a single uppercase letter."""
        buf = self._buf
        lo = self._start
        return i > lo and buf[i - 1].isupper() and (i - 1 == lo or not buf[i - 2].isalpha())

    def _spaced_dots(self, i: int) -> int:
        """How many dots of a ``. . .`` sequence end at index ``i``."""
        buf = self._buf
        d = 1  # counted up to 4: callers only tell 1 and 3 from the rest
        while d < 4 and i - 2 >= self._start and buf[i - 1] == " " and buf[i - 2] == ".":
            d += 1
            i -= 2
        return d

    def _word_kind(self, i: int) -> int:
        """Classify the word that ends just before the period at ``i``."""
        buf = self._buf
        w = i
        lo = max(self._start, i - _MAX_WORD - 1)  # never look before the segment (it may be gone)
        while w > lo:
            c = buf[w - 1]
            if c.isspace() or c in _WORD_STOPS:
                break
            w -= 1
        if i - w > _MAX_WORD:
            return _W_NORMAL  # no title, abbreviation or number is that long
        word = buf[w:i]
        if not word:
            return _W_NORMAL
        lw = word.lower()
        if lw in _TITLES:
            return _W_TITLE
        short_enum = (word.isdigit() and len(word) <= 3) or len(word) == 1 or lw in _ROMAN
        if short_enum and self._at_item_start(w):
            return _W_TITLE  # "1. Open", "II. Methods", "Steps: 1. Open"
        if lw in _NUMREFS and len(word) > 1:
            return _W_NUMREF
        if lw in _AMBIGUOUS or (len(word) == 1 and word.isalpha()):
            return _W_AMBIGUOUS
        if "." in word and _is_dotted_abbreviation(word):
            return _W_AMBIGUOUS
        if word.isdigit() and len(word) <= 2:
            return _W_ORDINAL
        return _W_NORMAL

    def _at_item_start(self, w: int) -> bool:
        """True when index ``w`` starts a line/segment (after list marks) or follows ':'."""
        buf = self._buf
        lo = max(self._start, self._line_start)
        p = w
        while p > lo and w - p <= _MAX_GAP and buf[p - 1] in _LINE_MARKS:
            p -= 1
        if p == lo:
            return True
        p = w
        while p > self._start and w - p <= _MAX_GAP and buf[p - 1].isspace():
            p -= 1
        return p > self._start and buf[p - 1] == ":"

    # --- lines -----------------------------------------------------------------------
