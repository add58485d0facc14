"""``python -m rxtts.protocol.server``: re-render the docstring tables after a table edit.

Rewrites the five table blocks of ``rxtts/protocol/server/__init__.py`` (in docstring
order) from the executed tables; ``tests/test_protocol_machines.py`` fails until then.
"""

from __future__ import annotations

import re
from pathlib import Path

from rxtts.protocol.server import TABLES, render_table

_ORDER = ("STREAM_TABLE", "TURN_TABLE", "MULTI_SOCKET_TABLE", "CONTEXT_TABLE", "TTS_TABLE")
_BLOCK = re.compile(r"(?m)^    state  .*\n(?:    .*\n)*")


def rerender(path: Path) -> bool:
    """Rewrite the tables in ``path``; whether anything changed."""
    source = path.read_text("utf-8")
    blocks = list(_BLOCK.finditer(source))
    if len(blocks) != len(_ORDER):
        raise SystemExit(f"expected {len(_ORDER)} table blocks in {path}, found {len(blocks)}")
    out, last = [], 0
    for name, block in zip(_ORDER, blocks, strict=True):
        out += [source[last : block.start()], render_table(TABLES[name]) + "\n"]
        last = block.end()
    out.append(source[last:])
    new = "".join(out)
    if new != source:
        path.write_text(new, "utf-8")
    return new != source


if __name__ == "__main__":
    target = Path(__file__).with_name("__init__.py")
    print(f"{target}: {'re-rendered' if rerender(target) else 'up to date'}")
