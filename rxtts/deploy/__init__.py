"""Balancer configs for many ``rxtts serve`` workers (``rxtts deploy haproxy|nginx``).

The templates ship inside the package (``haproxy.cfg``, ``nginx.conf``); ``{{name}}``
placeholders are filled by :func:`render`. Worker ``i`` (0-based) listens on
``base_port + i`` and answers HAProxy's agent-check on ``agent_port_base + i``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files

__all__ = ["BALANCERS", "Layout", "render"]

BALANCERS = {"haproxy": "haproxy.cfg", "nginx": "nginx.conf"}
"""Balancer name → template file in this package."""
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the workers and the balancer listen."""

    workers: int = 3
    """Worker processes (one port each)."""
    base_port: int = 8001
    """Port of worker 0; worker ``i`` listens on ``base_port + i``."""
    agent_port_base: int = 9001
    """Agent port of worker 0 (HAProxy only)."""
    server_host: str = "127.0.0.1"
    """Address of the workers as the balancer reaches them."""
    bind: str = "127.0.0.1:8000"
    """Where the balancer listens (``*:8000`` for every interface)."""
    check_interval: str = "2s"
    """HAProxy health- and agent-check interval."""
    maxconn: int = 4000
    """HAProxy ``maxconn`` (each connection takes two file descriptors: raise ``ulimit -n``
    before raising this)."""

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("--workers must be >= 1")
        for name, base in (("--base-port", self.base_port), ("--agent-port-base", self.agent_port_base)):
            if base < 1 or base + self.workers - 1 > 65535:
                raise ValueError(f"{name} {base} + {self.workers} workers leaves the port range 1..65535")
        if set(self.ports()) & set(self.agent_ports()):
            raise ValueError("worker ports and agent ports overlap; move --agent-port-base")

    def ports(self) -> list[int]:
        """Worker ports."""
        return [self.base_port + i for i in range(self.workers)]

    def agent_ports(self) -> list[int]:
        """Agent ports."""
        return [self.agent_port_base + i for i in range(self.workers)]


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def render(balancer: str, layout: Layout, argv: str = "") -> str:
    """The config text of ``balancer`` (``haproxy`` or ``nginx``) for ``layout``."""
    template = files(__package__).joinpath(BALANCERS[balancer]).read_text(encoding="utf-8")
    host = _host(layout.server_host)
    if balancer == "haproxy":
        servers = [
            f"    server w{i + 1} {host}:{port} check agent-check agent-port {agent}"
            for i, (port, agent) in enumerate(zip(layout.ports(), layout.agent_ports(), strict=True))
        ]
        starts = [
            f"#   rxtts serve --host {layout.server_host} --port {port} --agent-port {agent} &"
            for port, agent in zip(layout.ports(), layout.agent_ports(), strict=True)
        ]
        bind = layout.bind
    else:
        servers = [f"    server {host}:{port} max_fails=1 fail_timeout=2s;" for port in layout.ports()]
        starts = [f"#   rxtts serve --host {layout.server_host} --port {port} &" for port in layout.ports()]
        bind = layout.bind.removeprefix("*:")
    values = {
        "workers": str(layout.workers),
        "argv": argv,
        "start_commands": "\n".join(starts),
        "servers": "\n".join(servers),
        "bind": bind,
        "check_interval": layout.check_interval,
        "maxconn": str(layout.maxconn),
    }
    text = _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
    return text
