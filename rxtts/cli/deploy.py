"""``rxtts deploy haproxy|nginx``: print a balancer config for many ``rxtts serve`` workers.

The config is printed to stdout (redirect it to a file); worker ``i`` is expected on
``--base-port + i`` with its HAProxy agent on ``--agent-port-base + i``; the comment at
the top of the config lists the ``rxtts serve`` commands that start them.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from rxtts.cli._progress import error
from rxtts.cli.common import EXIT_OK, EXIT_USAGE
from rxtts.deploy import BALANCERS, Layout, render

__all__ = ["build_parser", "main"]

PROG = "rxtts deploy"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        error(PROG, f"{message} (see 'rxtts deploy --help')")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    """The ``rxtts deploy`` argument parser."""
    d = Layout()
    p = _Parser(
        prog=PROG,
        description="Print a load-balancer config for several rxtts serve workers.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("balancer", choices=sorted(BALANCERS), help="which balancer")
    p.add_argument("--workers", type=int, default=d.workers, help="worker processes, one port each")
    p.add_argument("--base-port", type=int, default=d.base_port, help="port of worker 1 (then +1 each)")
    p.add_argument(
        "--agent-port-base", type=int, default=d.agent_port_base, help="agent port of worker 1 (haproxy)"
    )
    p.add_argument("--server-host", default=d.server_host, help="address of the workers")
    p.add_argument("--bind", default=d.bind, help="where the balancer listens (e.g. *:8000)")
    p.add_argument("--check-interval", default=d.check_interval, help="haproxy health/agent check interval")
    p.add_argument("--maxconn", type=int, default=d.maxconn, help="haproxy maxconn")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``rxtts deploy``."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(args_list)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        layout = Layout(
            workers=args.workers,
            base_port=args.base_port,
            agent_port_base=args.agent_port_base,
            server_host=args.server_host,
            bind=args.bind,
            check_interval=args.check_interval,
            maxconn=args.maxconn,
        )
    except ValueError as exc:
        error(PROG, str(exc))
        return EXIT_USAGE
    sys.stdout.write(render(args.balancer, layout, shlex.join(args_list)))
    return EXIT_OK
