"""Issue 16.2: every Python block in the README runs as pasted.

Each ```python block is written to a file and run in a fresh interpreter in an empty
folder, with no server in the environment (so ``rxtts.connect()`` starts the embedded
local server, as on a newcomer's machine). A block may not rely on another one. A block
that uses a framework plug-in runs in that framework's environment, as the README says
(``tests/frameworks.py``; missing under ``CI=true`` is a failure, never a silent skip).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.frameworks import FRAMEWORKS, venv_python

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks() -> list[str]:
    return BLOCK.findall(README.read_text())


def test_the_readme_has_python_examples() -> None:
    assert len(python_blocks()) >= 4


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_block_runs_as_pasted(index: int, tmp_path: Path) -> None:
    code = python_blocks()[index]
    script = tmp_path / f"block_{index}.py"
    script.write_text(code)
    env = {k: v for k, v in os.environ.items() if k not in ("RXTTS_URL", "KUGELAUDIO_API_KEY")}
    python = Path(sys.executable)
    for name in FRAMEWORKS:
        if f"rxtts.integrations.{name}" in code:
            python = venv_python(name)
            if not python.exists():
                hint = f"build it with: python tests/frameworks.py setup ({name})"
                if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                    pytest.fail(f"README block {index} needs the {name} environment; {hint}")
                pytest.skip(f"the {name} environment is not built; {hint}")
    result = subprocess.run(
        [str(python), str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, f"README block {index} failed:\n{code}\n--- stderr ---\n{result.stderr}"
