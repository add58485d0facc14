"""The transition tables are the documentation: the rendered copies in the module
docstrings must match the tables the machines execute, and every cell must name an
effect the machine implements (issue 17: h11's rule, literally)."""

from __future__ import annotations

import ast
import pathlib
import textwrap

import pytest

from rxtts.errors import LocalProtocolError
from rxtts.events import Interrupted
from rxtts.protocol import client, multi_client, tables
from rxtts.protocol.frames import InterruptedFrame, SessionClosedFrame


def test_stream_table_in_the_docstring_is_the_executed_one() -> None:
    rendered = tables.render_table(client.STREAM_TABLE, list(client.TurnState), client.STREAM_INPUTS)
    assert textwrap.indent(rendered, "    ") in (client.__doc__ or "")


def test_multi_table_in_the_docstring_is_the_executed_one() -> None:
    rendered = tables.render_table(
        multi_client.MULTI_TABLE, list(multi_client.ContextState), multi_client.MULTI_INPUTS
    )
    assert textwrap.indent(rendered, "    ") in (multi_client.__doc__ or "")


@pytest.mark.parametrize(
    ("table", "machine"),
    [(client.STREAM_TABLE, client.StreamClient), (multi_client.MULTI_TABLE, multi_client.MultiClient)],
)
def test_every_cell_names_an_implemented_effect(table: object, machine: type) -> None:
    assert isinstance(table, type(client.STREAM_TABLE))
    for (state, name), rule in table.items():
        assert hasattr(machine, f"_do_{rule.effect}"), (state, name, rule.effect)


def test_a_missing_cell_is_an_illegal_intent() -> None:
    c = client.StreamClient()
    assert ("IDLE", "ack_timeout") not in {(s.name, n) for s, n in client.STREAM_TABLE}
    with pytest.raises(LocalProtocolError, match="ack_timeout is not allowed while IDLE"):
        c.ack_timeout()


def test_the_machine_state_is_what_the_table_says() -> None:
    c = client.StreamClient()
    c.send_text("Hello there.")
    assert c.state is client.STREAM_TABLE[(client.TurnState.IDLE, "send_text")].next
    c.cancel()
    assert c.state is client.TurnState.CANCELLING
    assert c.receive(SessionClosedFrame()) == []  # S-5: dropped while cancelling
    [(tid, ack)] = c.receive(InterruptedFrame())
    assert ack == Interrupted()
    assert tid is None and c.state is client.TurnState.IDLE


def test_the_protocol_core_imports_no_io_and_reads_no_clock() -> None:
    """DESIGN 2: protocol/ is sans-I/O: no asyncio, websockets, reactivex, time."""
    banned = {"asyncio", "websockets", "reactivex", "time", "socket", "threading"}
    root = pathlib.Path(client.__file__).parent
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in banned, f"{path.name} imports {name}"
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                assert (node.value.id, node.attr) not in {("time", "monotonic"), ("time", "time")}
