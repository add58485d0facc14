"""Small helpers for the commands' human output: stderr progress lines and text tables.

Progress goes to stderr so stdout stays clean for results (tables, ``--json``) and the
commands compose with other tools. On a terminal a live status line is redrawn in place;
elsewhere (pipes, CI logs) only the one-line messages are printed.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO


class Progress:
    """Progress messages for one command, prefixed with its name (``rxtts say: ...``)."""

    def __init__(self, prog: str, stream: TextIO | None = None, *, enabled: bool = True) -> None:
        self.prog = prog
        """Prefix of every message."""
        self.enabled = enabled
        """False silences everything (``--quiet``)."""
        self._stream = stream if stream is not None else sys.stderr
        self._live = enabled and _isatty(self._stream)
        self._status_width = 0

    def info(self, message: str) -> None:
        """Print one message line (clearing a live status line first)."""
        if not self.enabled:
            return
        self._clear()
        print(f"{self.prog}: {message}", file=self._stream, flush=True)

    def status(self, message: str) -> None:
        """Redraw the live status line (terminals only; a no-op in pipes and logs)."""
        if not self._live:
            return
        text = f"{self.prog}: {message}"
        pad = max(0, self._status_width - len(text))
        self._stream.write("\r" + text + " " * pad)
        self._stream.flush()
        self._status_width = len(text)

    def done(self) -> None:
        """Remove the live status line."""
        self._clear()

    def _clear(self) -> None:
        if self._status_width:
            self._stream.write("\r" + " " * self._status_width + "\r")
            self._stream.flush()
            self._status_width = 0


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def error(prog: str, message: str, stream: TextIO | None = None) -> None:
    """Print a one-line error: ``prog: error: message``."""
    print(f"{prog}: error: {message}", file=stream if stream is not None else sys.stderr, flush=True)


def seconds(value: float | None, digits: int = 3) -> str:
    """``0.412 s``, or ``-`` when unknown."""
    return "-" if value is None else f"{value:.{digits}f} s"


def shorten(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: max(0, width - 1)] + "…"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A plain-text table; ``align`` has one ``<`` or ``>`` per column (default ``>``).

    >>> print(render_table(["id", "text"], [["0", "Hi."]], "><"))
    id  text
     0  Hi.
    """
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    aligns = align.ljust(len(headers), ">")

    def line(cells: Sequence[str]) -> str:
        out = [c.ljust(w) if a == "<" else c.rjust(w) for c, w, a in zip(cells, widths, aligns, strict=True)]
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


__all__ = ["Progress", "error", "render_table", "seconds", "shorten"]
