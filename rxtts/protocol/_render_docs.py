"""Re-render the transition tables into the module docstrings (a maintainer tool).

``python -m rxtts.protocol._render_docs`` rewrites the rendered copies after a table
changes; ``tests/test_protocol_tables.py`` fails until it has been run.
"""

from __future__ import annotations

import pathlib
import textwrap
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

from rxtts.protocol import client, multi_client
from rxtts.protocol.tables import Rule, render_table


def _replace(path: pathlib.Path, start: str, end: str, table: str) -> None:
    text = path.read_text()
    a = text.index(start) + len(start)
    b = text.index(end, a)
    path.write_text(text[:a] + textwrap.indent(table, "    ") + text[b:])


def _render(table: Mapping[tuple[Any, str], Rule], states: Sequence[Enum], inputs: Sequence[str]) -> str:
    return render_table(table, states, inputs)


def main() -> None:
    """Rewrite both docstrings in place."""
    stream = _render(client.STREAM_TABLE, list(client.TurnState), client.STREAM_INPUTS)
    multi = _render(multi_client.MULTI_TABLE, list(multi_client.ContextState), multi_client.MULTI_INPUTS)
    _replace(pathlib.Path(client.__file__), "copy in step)::\n\n", "\n\n``TURNS``", stream)
    _replace(pathlib.Path(multi_client.__file__), "keeps it in step)::\n\n", "\n\n``REFUSAL``", multi)


if __name__ == "__main__":
    main()
