"""Every notebook in ``notebooks/`` executes without error against the embedded server.

Each runs in a fresh kernel of *this* interpreter (a kernelspec written to a temp dir,
never the user's home) with the real Piper voice (``RXTTS_NOTEBOOK_ENGINE=piper``), and
must produce its expected outputs: inline audio, plots, tables, and the numbers the
notebook asserts on itself.

The notebooks are stored executed (plots and audio visible on GitHub). To refresh the
stored copies after a change, run ``RXTTS_STORE_NOTEBOOKS=1 python -m pytest
tests/test_notebooks.py``: each executed notebook is written back (kernel metadata reset
to the standard ``python3`` kernel).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
KERNEL = "rxtts-test-python"
ENGINE = "piper"
CELL_TIMEOUT = 240


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kernelspec that launches ``sys.executable`` (the venv), in a temp dir."""
    root = tmp_path_factory.mktemp("kernels")
    spec = root / KERNEL
    spec.mkdir()
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "rxtts tests", "language": "python"})
    )
    return root


@pytest.fixture
def notebook_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The kernel inherits this env: the engine choice, and no remote server settings."""
    monkeypatch.setenv("RXTTS_NOTEBOOK_ENGINE", ENGINE)
    for name in ("RXTTS_URL", "KUGELAUDIO_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    yield


def execute(name: str, kernel_dir: Path, cwd: Path) -> tuple[nbformat.NotebookNode, float]:
    """Run a notebook in a fresh kernel; returns it with its outputs and the seconds taken."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    km = AsyncKernelManager(
        kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)])
    )
    client = NotebookClient(
        nb, km=km, timeout=CELL_TIMEOUT, kernel_name=KERNEL, resources={"metadata": {"path": str(cwd)}}
    )
    began = time.monotonic()
    client.execute(cleanup_kc=True)  # we own the kernel manager: shut the kernel down after
    if os.environ.get("RXTTS_STORE_NOTEBOOKS") == "1":
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, NOTEBOOKS / name)
    return nb, time.monotonic() - began


def outputs(nb: nbformat.NotebookNode) -> list[Any]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]


def rich(nb: nbformat.NotebookNode, mime: str) -> list[str]:
    """Every displayed value of one MIME type."""
    return [str(o["data"][mime]) for o in outputs(nb) if "data" in o and mime in o["data"]]


def printed(nb: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in outputs(nb) if o.get("output_type") == "stream")


def test_notebooks_are_stored_executed() -> None:
    """Issue 16.6: a reader on GitHub sees the plots and can play the audio."""
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == [
        "01_quickstart.ipynb",
        "02_barge_in.ipynb",
        "03_multi_context.ipynb",
        "04_chunk_schedule.ipynb",
    ]
    for name in names:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        assert nb.nbformat == 4
        code = [c for c in nb.cells if c.cell_type == "code"]
        counts = [c.execution_count for c in code]
        assert None not in counts and counts == sorted(counts), f"{name}: not stored executed in order"
        assert not [o for o in outputs(nb) if o.get("output_type") == "error"], name
        assert rich(nb, "image/png"), f"{name}: no stored plot"
        if name != "04_chunk_schedule.ipynb":
            assert any("<audio" in html for html in rich(nb, "text/html")), f"{name}: no stored audio"
        source = "\n".join(c.source for c in nb.cells)
        assert 'os.environ.get("RXTTS_NOTEBOOK_ENGINE", "best")' in source
        assert "rxtts.connect(" in source


@pytest.mark.slow
def test_01_quickstart(kernel_dir: Path, tmp_path: Path, notebook_env: None) -> None:
    nb, _ = execute("01_quickstart.ipynb", kernel_dir, tmp_path)
    assert any("<audio" in html for html in rich(nb, "text/html"))
    assert len(rich(nb, "image/png")) == 1
    text = printed(nb)
    assert "engine: piper" in text
    assert "TTFA" in text and "chunk  t_start  first audio" in text


@pytest.mark.slow
def test_02_barge_in(kernel_dir: Path, tmp_path: Path, notebook_env: None) -> None:
    nb, _ = execute("02_barge_in.ipynb", kernel_dir, tmp_path)
    assert any("<audio" in html for html in rich(nb, "text/html"))
    assert len(rich(nb, "image/png")) == 1
    text = printed(nb)
    assert "frames after the dispose: 0" in text
    assert "never spoken:" in text
    assert "same socket: True" in text


@pytest.mark.slow
def test_03_multi_context(kernel_dir: Path, tmp_path: Path, notebook_env: None) -> None:
    nb, _ = execute("03_multi_context.ipynb", kernel_dir, tmp_path)
    assert any("<audio" in html for html in rich(nb, "text/html"))
    tables = [md for md in rich(nb, "text/markdown") if md.startswith("| context |")]
    assert len(tables) == 1
    assert "| alice | 1072 | 2 |" in tables[0] and "| bob | 1071 | 2 |" in tables[0]
    assert len(rich(nb, "image/png")) == 1


@pytest.mark.slow
def test_04_chunk_schedule(kernel_dir: Path, tmp_path: Path, notebook_env: None) -> None:
    nb, _ = execute("04_chunk_schedule.ipynb", kernel_dir, tmp_path)
    tables = [md for md in rich(nb, "text/markdown") if md.startswith("| preset |")]
    assert len(tables) == 1
    rows = tables[0].splitlines()[2:]
    assert len(rows) == 6  # three presets x auto_mode on/off
    assert {r.split("|")[3].strip() for r in rows} == {"True", "False"}
    assert len(rich(nb, "image/png")) == 1
