"""Framework test environments: Pipecat and LiveKit Agents pin versions of numpy,
protobuf, soxr... that cannot live beside rxtts's own dev pins, so their tests run in
a virtualenv of their own, built from the extras ``rxtts[pipecat]`` / ``rxtts[livekit]``.

Commands (what ``.ci/run`` executes before the main pytest run)::

    python tests/frameworks.py setup            # build .venv-pipecat and .venv-livekit
    python tests/frameworks.py test             # run both framework suites (optional:
                                                # the main suite runs them too, below)

The main suite's ``test_integration_pipecat.py`` / ``test_integration_livekit.py``,
when the framework is not importable there, run the same file in the framework's
venv through :func:`run_suite` and fail with its output; without the venv they skip
locally and FAIL under ``CI=true`` (a missing environment is never a silent skip).

``RXTTS_FRAMEWORK_VENVS`` overrides the folder holding the venvs (default: the repo).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FRAMEWORKS: dict[str, str] = {
    "pipecat": "pipecat",
    "livekit": "livekit.agents",
}
"""Extra name -> module its test file needs."""

TEST_FILES: dict[str, str] = {
    "pipecat": "tests/test_integration_pipecat.py",
    "livekit": "tests/test_integration_livekit.py",
}


def venv_dir(name: str) -> Path:
    """Where the framework's venv lives."""
    base = Path(os.environ.get("RXTTS_FRAMEWORK_VENVS") or ROOT)
    return base / f".venv-{name}"


def venv_python(name: str) -> Path:
    """The venv's interpreter (may not exist)."""
    return venv_dir(name) / "bin" / "python"


def is_ready(name: str) -> bool:
    """True when the venv exists and imports the framework and rxtts."""
    python = venv_python(name)
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", f"import {FRAMEWORKS[name]}, rxtts, pytest"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def setup(name: str) -> float:
    """Build (or refresh) the venv of ``name``; returns the seconds it took."""
    start = time.monotonic()
    target = venv_dir(name)
    if not venv_python(name).exists():
        subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
    pip = [str(venv_python(name)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-e", f"{ROOT}[{name}]", "pytest>=8", "pytest-timeout>=2.2"], check=True)
    return time.monotonic() - start


def run_suite(name: str, *pytest_args: str, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
    """Run the framework's test file in its venv (``-p no:cacheprovider``, quiet)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RXTTS_URL", "KUGELAUDIO_API_KEY")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [
            str(venv_python(name)),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            TEST_FILES[name],
            *pytest_args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def require_suite(name: str) -> None:
    """Main-suite body of a framework test file: run it in the venv or fail/skip clearly."""
    import pytest

    if not is_ready(name):
        message = (
            f"the {name} test environment is missing: build it with "
            f"`python tests/frameworks.py setup {name}` (venv {venv_dir(name)})"
        )
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    result = run_suite(name)
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-60:])
    print(tail)
    assert result.returncode == 0, f"{name} suite failed in {venv_dir(name)}:\n{tail}"
    assert " passed" in result.stdout, f"{name} suite ran no test:\n{tail}"


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("setup", "test"):
        print(__doc__)
        return 2
    names = argv[1:] or list(FRAMEWORKS)
    unknown = set(names) - set(FRAMEWORKS)
    if unknown:
        print(f"unknown framework(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    status = 0
    if argv[0] == "setup":  # one after the other: side by side was slower on 2 cores
        start = time.monotonic()
        for name in names:
            seconds = setup(name)
            print(f"{name}: venv ready in {seconds:.0f} s ({venv_dir(name)})")
        print(f"setup: {time.monotonic() - start:.0f} s")
        return 0
    for name in names:  # one suite after the other: they share the CPU
        start = time.monotonic()
        result = run_suite(name)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        print(f"{name}: exit {result.returncode} in {time.monotonic() - start:.0f} s")
        status = status or result.returncode
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
