"""Per-text caps every engine path shares (issue 11), pure and engine-independent."""

from __future__ import annotations

import re

__all__ = ["MAX_WORD_CHARS", "split_long_words"]

MAX_WORD_CHARS = 50
"""Longer words are cut into pieces of this many characters: on arrival at the server,
and by the piper engine for direct callers (issue 11: one 100 KB word was one engine
chunk: 1.3 GB in piper, 20 s of head-of-line blocking)."""
_PIECES = re.compile(r"\s+|\S+")


def split_long_words(text: str, run: int = 0) -> tuple[str, int]:
    """``text`` with a space after every :data:`MAX_WORD_CHARS` characters of one word.

    ``run``: characters of the word the previous frame ended in (LLM tokens split words
    over frames). Returns the text and the run it ends in.
    """
    out: list[str] = []
    for piece in _PIECES.findall(text):
        if piece[0].isspace():
            out.append(piece)
            run = 0
            continue
        while run + len(piece) > MAX_WORD_CHARS:
            take = MAX_WORD_CHARS - run
            out += [piece[:take], " "]
            piece, run = piece[take:], 0
        out.append(piece)
        run += len(piece)
    return "".join(out), run
