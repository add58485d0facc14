"""The markup side of the sentence segmenter: lines, lists, headings, code and tags.

A mixin of :class:`~rxtts.operators._segmenter.SentenceSegmenter` (the state it uses is
declared below): newlines decide boundaries by what the next line starts with, and
nothing splits inside inline code, a fenced block or an SSML/XML tag.
"""

from __future__ import annotations

from rxtts.operators._segmenter_tables import (
    _BLOCK,
    _CODE,
    _CODE_EVENT,
    _FENCE,
    _FENCE_LINE,
    _HEADING,
    _LIST,
    _MAX_INDENT,
    _NON_SPACE,
    _NORMAL,
    _PLAIN,
    _TAG,
    _TAG_EVENT,
    _TAG_LIMIT,
    _WAIT,
    _resume_point,
    _skip_space,
)


class Markup:
    """Line and markup handling of the segmenter (a mixin, no state of its own)."""

    _buf: str
    _start: int
    _mode: int
    _line_start: int
    _line_kind: int
    _new_line: bool
    _ticks: int
    _fence: str
    _fence_midline: bool
    _tag_start: int
    _code_start: int
    _nl_resume: int

    def _emit(self, cut: int, out: list[str]) -> None:
        raise NotImplementedError

    def _run(self, i: int, chars: str) -> int:
        raise NotImplementedError

    def _newline(self, i: int, final: bool, out: list[str]) -> int:
        buf = self._buf
        n = len(buf)
        if self._line_kind == _HEADING:  # a heading ends at its newline
            self._emit(i, out)
            self._line_kind = _PLAIN
        k = _skip_space(buf, i)
        lo = max(self._start, self._line_start)
        if buf.count("\n", i, k) >= 2 or _NON_SPACE.search(buf, lo, i) is None:  # blank line
            self._emit(i, out)
        ls = buf.rfind("\n", i, k) + 1
        # A wait resumes at the run's last newline: what came before is decided.
        self._nl_resume = ls - 1
        if k == n and not final and k - ls <= _MAX_INDENT:
            return _WAIT
        kind = self._classify(ls, final)
        if kind == _WAIT:
            return _WAIT
        if kind != _PLAIN or (self._line_kind in (_LIST, _BLOCK) and ls == k):
            self._emit(i, out)
        self._line_start = ls
        self._new_line = True
        return ls

    def _classify(self, ls: int, final: bool) -> int:
        """Kind of the line starting at ``ls``, or _WAIT if its marker is not visible yet."""
        buf = self._buf
        n = len(buf)
        q = ls
        while q < n and q - ls <= _MAX_INDENT and buf[q] in " \t":
            q += 1
        if q - ls > _MAX_INDENT:
            return _PLAIN
        if q == n:
            return _PLAIN if final else _WAIT
        c = buf[q]
        if c == "#" or c == "`" or c == "~":
            if c == "#":
                r = q
                while r < n and r - q <= 6 and buf[r] == c:  # 7 or more: not a heading
                    r += 1
            else:
                r = self._run(q, c)  # the fence marker's length matters: wait for the run
            if r == n and not final:
                return _WAIT
            if c == "#":
                ok = r - q <= 6 and (r == n or buf[r].isspace())
                return _HEADING if ok else _PLAIN
            return _FENCE_LINE if r - q >= 3 else _PLAIN
        if c in "-*+•":
            if q + 1 == n:
                return _PLAIN if final else _WAIT
            return _LIST if buf[q + 1] in " \t" else _PLAIN
        if c.isdigit():
            r = q
            while r < n and r - q <= 3 and buf[r].isdigit():  # 4 or more: not an item
                r += 1
            if r + 1 >= n:
                return _PLAIN if final else _WAIT
            if r - q <= 3 and buf[r] in ".)" and buf[r + 1] in " \t":
                return _LIST
            return _PLAIN
        if c == ">" or c == "|":
            return _BLOCK
        return _PLAIN

    def _begin_line(self, ls: int, final: bool) -> int:
        """Classify and enter the line starting at ``ls``; return where to scan next."""
        kind = self._classify(ls, final)
        if kind == _WAIT:
            return _WAIT
        self._new_line = False
        self._line_kind = kind
        q = ls
        buf = self._buf
        while q < len(buf) and buf[q] in " \t":
            q += 1
        if kind == _FENCE_LINE:
            r = q
            while r < len(buf) and buf[r] == buf[q]:
                r += 1
            self._fence = buf[q:r]
            self._mode = _FENCE
            self._fence_midline = True  # the opening line (info string) is not a closer
            return r
        return q

    # --- code, tags, fences ----------------------------------------------------------

    def _backtick(self, i: int, final: bool) -> int:
        buf = self._buf
        j = self._run(i, "`")
        if j == len(buf) and not final:
            return _WAIT  # the run may grow
        self._ticks = j - i
        self._code_start = i
        self._mode = _CODE
        return j

    def _in_code(self, pos: int, final: bool) -> int:
        """Scan inline code; return the next pos, or ``-(pos+1)`` to wait."""
        buf = self._buf
        n = len(buf)
        if pos < n and buf[pos] == "`":  # a backtick run waited here: resume it
            start = pos
        else:
            m = _CODE_EVENT.search(buf, pos)
            if m is None:
                return -(_resume_point(buf, pos) + 1)
            if m.group()[0] == "\n":  # code spans never cross a blank line
                self._mode = _NORMAL
                return m.start()
            start = m.start()
        end = self._run(start, "`")
        if end == n and not final:
            return -(start + 1)
        if end - start == self._ticks:
            self._mode = _NORMAL
        return end

    def _angle(self, i: int, final: bool) -> int:
        buf = self._buf
        if i + 1 == len(buf):
            return i + 1 if final else _WAIT
        c = buf[i + 1]
        if c.isalpha() or c in "/!?":
            self._mode = _TAG
            self._tag_start = i
        return i + 1

    def _in_tag(self, pos: int, final: bool) -> int:
        """Scan an SSML/XML tag; a stray ``<`` (no ``>`` soon) is plain text."""
        buf = self._buf
        m = _TAG_EVENT.search(buf, pos)
        if m is not None and m.group() == ">":
            self._mode = _NORMAL
            return m.end()
        if m is None and not final and len(buf) - self._tag_start < _TAG_LIMIT:
            return -(_resume_point(buf, pos) + 1)
        self._mode = _NORMAL  # not a tag after all: rescan it as text
        return self._tag_start + 1

    def _in_fence(self, pos: int, final: bool, out: list[str]) -> int:
        """Scan a fenced block line by line until its closing fence."""
        buf = self._buf
        n = len(buf)
        while True:
            if self._fence_midline:
                f = buf.find("\n", pos)
                if f < 0:
                    return -(n + 1)
                pos = f + 1
                self._fence_midline = False
            q = pos
            while q < n and buf[q] in " \t":
                q += 1
            marker = self._fence
            r = self._run(q, marker[0])
            e = self._run(r, " \t")
            if e == n and not final:
                return -(pos + 1)  # this line may still become the closing fence
            if r - q >= len(marker) and (e == n or buf[e] in "\r\n"):
                self._mode = _NORMAL
                self._line_kind = _PLAIN
                self._emit(r, out)
                return r
            self._fence_midline = True
            pos = q
