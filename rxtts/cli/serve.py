"""``rxtts serve``: run the local KugelAudio-compatible TTS server in the foreground.

Prints one line containing ``ws://HOST:PORT`` once it accepts connections (port 0 shows
the real port); Ctrl-C / SIGTERM drain (PROTOCOL G-11): new upgrades get HTTP 503 +
``Retry-After``, idle sockets close 1012 at once, busy ones 1012 after their current turn
or context work (at most ``--drain-timeout`` s), then it exits 0.

``--worker-processes N`` runs N such processes on one port (``SO_REUSEPORT``) under a
supervising parent (:mod:`rxtts.server.workers`); probes are ``GET /health`` (alive),
``GET /ready`` (takes sessions) and ``GET /metrics`` (Prometheus); ``--agent-port``
answers HAProxy's ``agent-check`` (:mod:`rxtts.server.metrics`).

Every startup error is one line on stderr (exit 2 for bad usage, 1 when the address
cannot be bound or the engine fails), never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from rxtts.cli._progress import error
from rxtts.cli.common import EXIT_OK, EXIT_RUNTIME, EXIT_USAGE
from rxtts.engine import EngineUnavailableError
from rxtts.server.app import API_KEY_ENV, ServerOptions, TtsApp, api_key_from_env
from rxtts.server.embedded import resolve_engine, run_until_stopped
from rxtts.server.engines.catalogue import ENGINE_NAMES
from rxtts.server.metrics import start_agent
from rxtts.server.workers import ThreadPlan, plan_threads, run_workers

__all__ = ["build_parser", "main"]

PROG = "rxtts serve"
log = logging.getLogger("rxtts.server")


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (``rxtts serve: error: ...``), exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        error(PROG, f"{message} (see 'rxtts serve --help')")
        raise SystemExit(EXIT_USAGE)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535, got {value}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``rxtts serve`` argument parser (``--help`` shows every default)."""
    p = _Parser(
        prog=PROG,
        description="Run the local KugelAudio-compatible TTS server.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind")
    p.add_argument("--port", type=_port, default=8000, help="port; 0 picks a free one")
    p.add_argument("--engine", choices=ENGINE_NAMES, default=None, help="engine; None = piper if installed")
    p.add_argument("--api-key", default=None, help=f"require this key; None = ${API_KEY_ENV} or open")
    p.add_argument(
        "--no-auth",
        action="store_true",
        help=f"run without a key even if ${API_KEY_ENV} is set (an empty key is an error)",
    )
    p.add_argument(
        "--price-cents-per-minute",
        type=float,
        default=0.0,
        help="EUR cents per audio minute for usage (0: the local server is free)",
    )
    scale = p.add_argument_group("capacity and scale-out")
    scale.add_argument(
        "--worker-processes",
        type=_positive,
        default=1,
        help="server processes sharing the port (SO_REUSEPORT) under a supervising parent; "
        "SIGTERM drains them all",
    )
    scale.add_argument(
        "--threads",
        type=_positive,
        default=None,
        help="piper onnxruntime intra-op threads per inference; None = cores / processes / engine threads",
    )
    scale.add_argument(
        "--engine-threads",
        type=_positive,
        default=None,
        help="engine worker threads per process; None = min(2, cores / processes)",
    )
    scale.add_argument("--workers", type=_positive, dest="engine_threads", help=argparse.SUPPRESS)  # old name
    scale.add_argument(
        "--max-sessions",
        type=_positive,
        default=None,
        help="admission: open WebSockets per process at most; more get HTTP 503 + Retry-After "
        "(None = unlimited)",
    )
    scale.add_argument(
        "--capacity",
        type=_positive,
        default=None,
        help="voices (turns + multi contexts) at 1%% agent weight; None = --max-sessions, else 16",
    )
    scale.add_argument(
        "--agent-port",
        type=_port,
        default=None,
        help="answer HAProxy agent-check on this port ('ready up 75%%', 'drain'); None = off",
    )
    scale.add_argument("--reuse-port", action="store_true", help="bind with SO_REUSEPORT")
    scale.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="SIGTERM: seconds busy sockets may finish their turn before 1012",
    )
    p.add_argument("--idle-flush-seconds", type=float, default=5.0, help="stream idle auto-flush (s)")
    p.add_argument("--inactivity-timeout", type=float, default=20.0, help="multi context timeout (s)")
    p.add_argument(
        "--max-lead-seconds",
        type=float,
        default=1.0,
        help="pace stream/multi audio at most this far ahead of real time; 0 = unpaced",
    )
    p.add_argument(
        "--max-queued-mib", type=float, default=4.0, help="per-connection send queue before backpressure"
    )
    p.add_argument(
        "--send-timeout", type=float, default=60.0, help="drop a client that reads nothing for this long (s)"
    )
    p.add_argument("--log-level", default="WARNING", help="logging level")
    return p


async def _serve(app: TtsApp, host: str, port: int, agent_port: int | None) -> None:
    server = await app.serve(host, port)
    agent = None
    try:
        if agent_port is not None:
            agent = await start_agent(
                app.metrics.agent_reply, host, agent_port, reuse_port=app.options.reuse_port
            )
        stop, drain = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        # G-11: SIGTERM (a deploy) drains: 503 to new upgrades, 1012 after each socket's
        # current work; Ctrl-C drains too.
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, drain.set)
        bound = server.sockets[0].getsockname()
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        extra = f", agent port {agent.sockets[0].getsockname()[1]}" if agent is not None else ""
        print(
            f"rxtts serve: listening on ws://{shown}:{bound[1]} (engine {app.engine.name}, "
            f"REST http://{shown}:{bound[1]}/v1/models{extra})",
            flush=True,
        )
    except BaseException:
        server.close()
        app.close()
        raise
    try:
        await run_until_stopped(server, app, stop, drain)
    finally:
        if agent is not None:
            agent.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``rxtts serve``; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(args_list)
    except SystemExit as exc:  # --help (0) or a one-line usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    except ValueError:
        error(PROG, f"unknown --log-level {args.log_level!r} (DEBUG, INFO, WARNING, ERROR)")
        return EXIT_USAGE
    plan = plan_threads(args.worker_processes, args.engine_threads, args.threads)
    if args.worker_processes > 1:
        return run_workers(args.worker_processes, args_list, args.host, args.port, args.agent_port, plan)
    return _serve_one(args, plan)


def _serve_one(args: argparse.Namespace, plan: ThreadPlan) -> int:
    log.info("%s", plan.describe())
    try:
        options = ServerOptions(
            api_key=None if args.no_auth else api_key_from_env() if args.api_key is None else args.api_key,
            price_cents_per_minute=args.price_cents_per_minute,
            idle_flush_seconds=args.idle_flush_seconds,
            inactivity_timeout=args.inactivity_timeout,
            engine_threads=plan.engine_threads,
            drain_timeout=args.drain_timeout,
            max_sessions=args.max_sessions,
            max_lead_seconds=args.max_lead_seconds or None,
            max_queued_bytes=int(args.max_queued_mib * (1 << 20)),
            send_timeout=args.send_timeout,
            capacity=args.capacity,
            reuse_port=args.reuse_port,
        )
    except ValueError as exc:
        error(PROG, str(exc))
        return EXIT_USAGE
    try:
        engine = resolve_engine(args.engine or "best", threads=plan.intra_op_threads)
        engine.warm_up()
    except EngineUnavailableError as exc:
        error(PROG, str(exc))
        return EXIT_USAGE
    except Exception as exc:  # a broken voice file, onnxruntime failing to load, ...
        error(PROG, f"engine {args.engine or 'best'!r} failed to start: {exc}")
        return EXIT_RUNTIME
    try:
        asyncio.run(_serve(TtsApp(engine, options), args.host, args.port, args.agent_port))
    except OSError as exc:
        where = f"{args.host}:{args.port}" + (f" (agent port {args.agent_port})" if args.agent_port else "")
        error(PROG, f"cannot listen on {where}: {exc.strerror or exc}")
        return EXIT_RUNTIME
    except KeyboardInterrupt:  # a second Ctrl-C during the drain
        return 130
    return EXIT_OK
