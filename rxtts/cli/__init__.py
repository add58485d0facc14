"""The ``rxtts`` command: ``serve``, ``say``, ``demo``, ``bench``, ``deploy``.

Each subcommand lives in its own module with a ``main(argv) -> int``; this file only
dispatches, so ``rxtts --help`` stays fast and GPL engines are never imported here.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

COMMANDS = {
    "serve": ("rxtts.cli.serve", "run the local KugelAudio-compatible TTS server"),
    "say": ("rxtts.cli.say", "speak text streamed token by token; print TTFA and a chunk timeline"),
    "demo": ("rxtts.cli.demo", "a scripted LLM token stream with a simulated barge-in"),
    "bench": ("rxtts.cli.bench", "run the benchmarks and print tables (writes JSON)"),
    "deploy": ("rxtts.cli.deploy", "print an HAProxy/nginx config for several serve workers"),
}


def _usage() -> str:
    lines = ["usage: rxtts <command> [options]", "", "commands:"]
    lines += [f"  {name:<7} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "Run 'rxtts <command> --help' for the options of a command; 'rxtts --version'."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-V", "--version"):
        from rxtts import __version__

        print(f"rxtts {__version__}")
        return 0
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"rxtts: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    code: int = module.main(rest)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
