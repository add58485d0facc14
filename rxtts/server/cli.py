"""``rxtts serve``: run the local KugelAudio-compatible TTS server in the foreground.

Prints one line containing ``ws://HOST:PORT`` once it accepts connections (port 0 shows
the real port); Ctrl-C / SIGTERM drain (PROTOCOL G-11): new upgrades get HTTP 503 +
``Retry-After``, idle sockets close 1012 at once, busy ones 1012 after their current turn
or context work (at most ``--drain-timeout`` s), then it exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from rxtts.engine import EngineUnavailableError
from rxtts.server.app import API_KEY_ENV, ServerOptions, TtsApp, api_key_from_env
from rxtts.server.embedded import resolve_engine, run_until_stopped
from rxtts.server.engines.catalogue import ENGINE_NAMES

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``rxtts serve`` argument parser."""
    p = argparse.ArgumentParser(
        prog="rxtts serve", description="Run the local KugelAudio-compatible TTS server."
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    p.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one (default 8000)")
    p.add_argument("--engine", choices=ENGINE_NAMES, default=None, help="default: piper if installed")
    p.add_argument("--api-key", default=None, help=f"require this key (default: ${API_KEY_ENV})")
    p.add_argument(
        "--no-auth",
        action="store_true",
        help=f"run without a key even if ${API_KEY_ENV} is set (an empty key is an error)",
    )
    p.add_argument(
        "--price-cents-per-minute",
        type=float,
        default=0.0,
        help="EUR cents per audio minute for usage (default 0: the local server is free)",
    )
    p.add_argument("--threads", type=int, default=2, help="piper onnxruntime threads per inference")
    p.add_argument("--engine-threads", type=int, default=2, help="engine worker threads (default 2)")
    p.add_argument("--workers", type=int, dest="engine_threads", help=argparse.SUPPRESS)  # old name
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="SIGTERM: seconds busy sockets may finish their turn before 1012 (default 30)",
    )
    p.add_argument("--idle-flush-seconds", type=float, default=5.0, help="stream idle auto-flush")
    p.add_argument("--inactivity-timeout", type=float, default=20.0, help="multi context timeout (s)")
    p.add_argument(
        "--max-lead-seconds",
        type=float,
        default=1.0,
        help="pace stream/multi audio at most this far ahead of real time; 0 = unpaced (default 1.0)",
    )
    p.add_argument(
        "--max-queued-mib", type=float, default=4.0, help="per-connection send queue before backpressure"
    )
    p.add_argument(
        "--send-timeout", type=float, default=60.0, help="drop a client that reads nothing for this long"
    )
    p.add_argument(
        "--max-sessions",
        type=int,
        default=None,
        help="admission: open WebSockets at most; more get HTTP 503 + Retry-After (default unlimited)",
    )
    p.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    return p


async def _serve(app: TtsApp, host: str, port: int) -> None:
    server = await app.serve(host, port)
    stop, drain = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    # G-11: SIGTERM (a deploy) drains: 503 to new upgrades, 1012 after each socket's
    # current work; Ctrl-C drains too.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, drain.set)
    bound = server.sockets[0].getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    print(
        f"rxtts serve: listening on ws://{shown}:{bound[1]} (engine {app.engine.name}, "
        f"REST http://{shown}:{bound[1]}/v1/models)",
        flush=True,
    )
    await run_until_stopped(server, app, stop, drain)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``rxtts serve``; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    try:
        options = ServerOptions(
            api_key=None if args.no_auth else api_key_from_env() if args.api_key is None else args.api_key,
            price_cents_per_minute=args.price_cents_per_minute,
            idle_flush_seconds=args.idle_flush_seconds,
            inactivity_timeout=args.inactivity_timeout,
            engine_threads=args.engine_threads,
            drain_timeout=args.drain_timeout,
            max_sessions=args.max_sessions,
            max_lead_seconds=args.max_lead_seconds or None,
            max_queued_bytes=int(args.max_queued_mib * (1 << 20)),
            send_timeout=args.send_timeout,
        )
        engine = resolve_engine(args.engine or "best", threads=args.threads)
        engine.warm_up()
    except (EngineUnavailableError, ValueError) as exc:
        print(f"rxtts serve: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(TtsApp(engine, options), args.host, args.port))
    except OSError as exc:
        print(f"rxtts serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
