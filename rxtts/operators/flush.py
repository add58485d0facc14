"""The FLUSH sentinel that travels inside a text stream.

A text stream is an ``Observable[str | Flush]``: text tokens interleaved with
``FLUSH`` markers. A FLUSH is a *turn boundary*, not the end of the stream: the
text operators emit whatever they buffered, forward the FLUSH itself (so the
server knows when to send ``final``, PROTOCOL ``flush``), reset their per-turn
state and keep going.
"""

from __future__ import annotations

import enum
from typing import Final, Protocol, TypeAlias

__all__ = ["FLUSH", "Flush", "TextItem", "TextMachine", "is_flush", "step"]


class Flush(enum.Enum):
    """Type of the FLUSH sentinel; its only member is :data:`FLUSH`.

    A one-member enum is the singleton idiom type checkers understand:
    ``isinstance(item, Flush)`` or ``item is FLUSH`` narrows ``str | Flush``
    to ``Flush``, identity survives ``copy`` and ``pickle``.
    """

    FLUSH = "FLUSH"

    def __repr__(self) -> str:
        return "FLUSH"

    def __str__(self) -> str:
        return "FLUSH"


FLUSH: Final = Flush.FLUSH
"""The sentinel: ``text.pipe(...)`` items are either ``str`` or this object."""

TextItem: TypeAlias = str | Flush
"""One item of a text stream: a text token/segment or the FLUSH sentinel."""


def is_flush(item: object) -> bool:
    """Return True when ``item`` is the FLUSH sentinel."""
    return item is FLUSH


class TextMachine(Protocol):
    """A pure incremental text stage (``SentenceSegmenter``, ``ChunkScheduler``)."""

    def push(self, text: str) -> list[str]: ...

    def flush(self) -> list[str]: ...


def step(machine: TextMachine, item: TextItem, operator: str) -> list[TextItem]:
    """Feed one stream item to ``machine``: its output, then FLUSH itself after a flush.

    Raises:
        TypeError: ``item`` is neither text nor FLUSH.
    """
    if isinstance(item, str):
        return list(machine.push(item))
    if item is FLUSH:
        return [*machine.flush(), FLUSH]  # the tail, then the boundary it closes
    raise TypeError(f"{operator}() expects str or FLUSH, got {item!r}")
