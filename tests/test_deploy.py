"""``rxtts deploy haproxy|nginx``: the shipped balancer configs (issue 14)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from rxtts.cli import deploy as deploy_cmd
from rxtts.deploy import Layout, render

ROOT = Path(__file__).resolve().parents[1]
HAPROXY_HINT = (
    "the HAProxy tests need Debian's haproxy binary: "
    "command -v haproxy || (apt-get update -qq && apt-get install -y -qq haproxy)"
)


def haproxy_binary() -> str:
    """The haproxy binary; missing fails under CI=true (never a silent skip)."""
    found = shutil.which("haproxy")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(HAPROXY_HINT)
        pytest.skip(HAPROXY_HINT)
    return found


def run_deploy(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = deploy_cmd.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_haproxy_config_has_websocket_timeouts_leastconn_readiness_and_agents(capsys):
    code, out, err = run_deploy(capsys, "haproxy", "--workers", "3", "--base-port", "8001")
    assert code == 0 and err == ""
    line_re = r"^\s+server (w\d) 127\.0\.0\.1:(\d+) check agent-check agent-port (\d+)$"
    servers = re.findall(line_re, out, re.M)
    assert servers == [("w1", "8001", "9001"), ("w2", "8002", "9002"), ("w3", "8003", "9003")]
    for line in (
        "timeout tunnel 1h",
        "timeout client-fin 5s",
        "balance leastconn",
        "option httpchk GET /ready",
        "http-check expect status 200",
        "mode http",
    ):
        assert re.search(rf"^\s+{re.escape(line)}$", out, re.M), line
    # The header says how to start the workers the config expects.
    assert "#   rxtts serve --host 127.0.0.1 --port 8003 --agent-port 9003 &" in out
    assert "{{" not in out


def test_ports_follow_the_bases(capsys):
    code, out, _ = run_deploy(
        capsys,
        "haproxy",
        "--workers",
        "2",
        "--base-port",
        "7100",
        "--agent-port-base",
        "7200",
        "--bind",
        "*:80",
    )
    assert code == 0
    assert re.findall(r"127\.0\.0\.1:(\d+) check agent-check agent-port (\d+)", out) == [
        ("7100", "7200"),
        ("7101", "7201"),
    ]
    assert re.search(r"^\s+bind \*:80$", out, re.M)


@pytest.mark.parametrize(
    "argv",
    [
        ["haproxy", "--workers", "0"],
        ["haproxy", "--workers", "3", "--base-port", "65534"],
        ["haproxy", "--workers", "3", "--base-port", "9000", "--agent-port-base", "9001"],
        ["apache"],
    ],
)
def test_bad_layouts_are_one_line_usage_errors(capsys, argv):
    code, out, err = run_deploy(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("rxtts deploy: error: ")


def test_haproxy_accepts_the_shipped_config_without_warnings(tmp_path):
    binary = haproxy_binary()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(render("haproxy", Layout(workers=3)))
    result = subprocess.run([binary, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Configuration file is valid" in output
    assert "WARNING" not in output and "ALERT" not in output, output


def test_nginx_config_upgrades_websockets_and_retries_503(capsys):
    code, out, _ = run_deploy(capsys, "nginx", "--workers", "2", "--bind", "*:8080")
    assert code == 0
    assert re.findall(r"^\s+server 127\.0\.0\.1:(\d+) ", out, re.M) == ["8001", "8002"]
    for line in (
        "least_conn;",
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $rxtts_connection_upgrade;",
        "proxy_read_timeout 3600s;",
        "proxy_next_upstream error timeout http_503;",
        "listen 8080;",
    ):
        assert re.search(rf"^\s+{re.escape(line)}$", out, re.M), line


def test_templates_are_package_data_and_the_command_is_listed():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert data["tool"]["setuptools"]["package-data"]["rxtts.deploy"] == ["*.cfg", "*.conf"]
    assert any(d.startswith("prometheus_client") for d in data["project"]["dependencies"])
    for name in ("haproxy.cfg", "nginx.conf"):
        assert (ROOT / "rxtts" / "deploy" / name).is_file()
    listing = subprocess.run(
        [sys.executable, "-m", "rxtts.cli", "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert re.search(r"^\s+deploy\s", listing, re.M)
