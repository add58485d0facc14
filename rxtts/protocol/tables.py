"""Transition tables, h11 style: every protocol decision is a cell (state, input).

A machine looks its input up in its table, runs the cell's effect (a method named
``_do_<effect>``), then moves to the cell's next state; a missing cell is an illegal
input. :func:`render_table` renders a table for the docs; tests check that the
rendered copies in the module docstrings are the executed tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

__all__ = ["Rule", "format_rows", "render_table"]


@dataclass(frozen=True, slots=True)
class Rule:
    """One cell of a transition table: the effect to run, then the next state."""

    effect: str
    """Name of the machine method that carries the effect out (``_do_<effect>``)."""
    next: Enum
    """The next state, or a :class:`By` resolver."""
    why: str = ""
    """The PROTOCOL rule the cell enforces."""


def render_table(table: Mapping[tuple[Any, str], Rule], states: Sequence[Enum], inputs: Sequence[str]) -> str:
    """A transition table as fixed-width text, one row per legal (state, input) cell.

    Columns: state, input, effect, next state, and the PROTOCOL rule it enforces. A
    pair without a row is illegal: ``LocalProtocolError`` for an intent, a received
    frame is dropped.
    """
    rows = [("state", "input", "effect", "next", "rule")]
    for state in states:
        for name in inputs:
            rule = table.get((state, name))
            if rule is not None:
                rows.append((state.name, name, rule.effect, rule.next.name, rule.why.split(":")[0]))
    return format_rows(rows)


def format_rows(rows: Sequence[Sequence[str]], indent: str = "", rule_line: bool = False) -> str:
    """Fixed-width columns, two spaces apart; ``rule_line`` underlines the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if rule_line:
        lines.insert(1, indent + "  ".join("-" * w for w in widths))
    return "\n".join(lines)
