"""The result of normalisation: spoken text plus a span map back to the original."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

__all__ = ["NormalizedText", "Span", "SpanBuilder"]


@dataclass(frozen=True, slots=True)
class Span:
    """``text[text_start:text_end]`` came from ``original[original_start:original_end]``.

    A span is either an *identity* span (the characters were copied unchanged: both
    ranges have the same length and map character by character) or a *rewrite*
    (``"$3.50"`` became ``"three dollars and fifty cents"``: any part of the spoken
    range maps to the whole original range).
    """

    text_start: int
    """Start offset in :attr:`NormalizedText.text` (inclusive)."""
    text_end: int
    """End offset in :attr:`NormalizedText.text` (exclusive)."""
    original_start: int
    """Start offset in :attr:`NormalizedText.original` (inclusive)."""
    original_end: int
    """End offset in :attr:`NormalizedText.original` (exclusive)."""
    identity: bool
    """True when the text was copied unchanged (1:1 character mapping)."""


@dataclass(frozen=True, slots=True)
class NormalizedText:
    """Text as it will be spoken, with a map back to the text the client sent.

    Invariants (property-tested): the spans cover ``original`` and ``text`` in order,
    without gaps or overlaps; identity spans copy characters unchanged.
    """

    original: str
    """The input, exactly as given."""
    text: str
    """What is spoken (the text sent to the synthesizer)."""
    spans: tuple[Span, ...]
    """Ordered, contiguous span map covering both strings."""
    _starts: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_starts", tuple(s.text_start for s in self.spans))

    @property
    def changed(self) -> bool:
        """Whether normalisation rewrote anything."""
        return self.text != self.original

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """Map a range of :attr:`text` to the smallest covering range of :attr:`original`.

        Offsets are clamped to ``[0, len(text)]``. Inside an identity span the mapping is
        exact; a range touching any character of a rewrite maps to the whole original
        range it came from (a word spoken for ``"$3.50"`` maps to ``"$3.50"``). An empty
        range maps to an empty range at the corresponding position.

        Raises:
            ValueError: ``start > end``.
        """
        if start > end:
            raise ValueError(f"to_original() needs start <= end, got {start} > {end}")
        size = len(self.text)
        start, end = min(max(start, 0), size), min(max(end, 0), size)
        if not self.spans:
            return (0, 0)
        if start == end:
            return self._point(start)
        first = self._index(start)
        last = self._index(end - 1)
        return (self._map_start(self.spans[first], start), self._map_end(self.spans[last], end))

    def _index(self, offset: int) -> int:
        """Index of the span whose text range holds ``offset`` (empty spans skipped)."""
        i = bisect.bisect_right(self._starts, offset) - 1
        while i > 0 and self.spans[i].text_start == self.spans[i].text_end:
            i -= 1
        return max(i, 0)

    def _point(self, offset: int) -> tuple[int, int]:
        if offset >= len(self.text):
            end = self.spans[-1].original_end
            return (end, end)
        span = self.spans[self._index(offset)]
        pos = span.original_start + (offset - span.text_start if span.identity else 0)
        return (pos, pos)

    @staticmethod
    def _map_start(span: Span, offset: int) -> int:
        return span.original_start + (offset - span.text_start) if span.identity else span.original_start

    @staticmethod
    def _map_end(span: Span, offset: int) -> int:
        return span.original_start + (offset - span.text_start) if span.identity else span.original_end


class SpanBuilder:
    """Accumulates spoken pieces and their spans while scanning the original."""

    __slots__ = ("_original", "_parts", "_spans", "_text_len")

    def __init__(self, original: str) -> None:
        self._original = original
        self._parts: list[str] = []
        self._spans: list[Span] = []
        self._text_len = 0

    def copy(self, start: int, end: int) -> None:
        """Copy ``original[start:end]`` unchanged (merged with a preceding copy)."""
        if start >= end:
            return
        n = end - start
        last = self._spans[-1] if self._spans else None
        if last is not None and last.identity and last.original_end == start:
            self._spans[-1] = Span(last.text_start, last.text_end + n, last.original_start, end, True)
        else:
            self._spans.append(Span(self._text_len, self._text_len + n, start, end, True))
        self._parts.append(self._original[start:end])
        self._text_len += n

    def rewrite(self, start: int, end: int, spoken: str) -> None:
        """Say ``spoken`` for ``original[start:end]``; identical text counts as a copy."""
        if spoken == self._original[start:end]:
            self.copy(start, end)
            return
        n = len(spoken)
        self._spans.append(Span(self._text_len, self._text_len + n, start, end, False))
        self._parts.append(spoken)
        self._text_len += n

    def build(self) -> NormalizedText:
        """The finished :class:`NormalizedText`."""
        return NormalizedText(self._original, "".join(self._parts), tuple(self._spans))
