"""What every ``rxtts`` command shares: exit codes, errors, connecting, files, main.

``say``, ``demo`` and ``serve`` are thin modules on top of this one: they parse their
options, call :func:`cli_main`, and leave error handling (one line, no traceback, the
exit statuses below), connecting (:func:`open_client`, :func:`connect_session`) and
output files (:func:`check_output_path` before any work, :func:`write_output`
atomically) to it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO, TypeVar

import numpy as np
import numpy.typing as npt

from rxtts.cli._progress import Progress, error
from rxtts.client.connector import DEFAULT_LOCAL_VOICE, ENV_API_KEY, ENV_URL, Connector, Resolution, resolve
from rxtts.errors import AuthenticationError, RxTtsError

if TYPE_CHECKING:
    from rxtts.audio.playback import Player
    from rxtts.client.session import StreamingSession
    from rxtts.client.tts import TTS

EXIT_OK = 0
"""Success."""
EXIT_RUNTIME = 1
"""A runtime failure: unreachable server, missing engine, a server error."""
EXIT_USAGE = 2
"""Bad command-line usage (argparse's convention)."""
EXIT_INTERRUPTED = 130
"""Ctrl-C."""
ENGINES = ("best", "piper", "espeak", "tone")
"""Engines of the embedded server (``best``: piper, else espeak)."""
URL_SCHEMES = ("ws://", "wss://", "http://", "https://")


class UsageError(Exception):
    """A bad combination of arguments, reported like an argparse error (exit status 2)."""


class CommandError(Exception):
    """A runtime failure whose message is ready to print as is (exit status 1)."""


# -- connecting ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """Which server a command talks to, from ``--url``/``--api-key``/``--engine`` and the env."""

    resolution: Resolution
    """Where :func:`rxtts.connect` rules say to connect."""
    engine: str
    """Engine of the embedded server (when one is started)."""

    @property
    def embedded(self) -> bool:
        """Whether an embedded local server is started."""
        return self.resolution.url is None

    def describe(self) -> str:
        """``embedded`` or the base URL (the API key travels separately, never shown)."""
        return "embedded" if self.resolution.url is None else self.resolution.url


def resolve_target(url: str | None, api_key: str | None, engine: str | None) -> Target:
    """Apply the connect rules; ``engine`` forces the embedded server.

    Raises:
        UsageError: ``--engine`` with ``--url``, or a URL that is not ws(s)/http(s).
    """
    if url is not None and engine is not None:
        raise UsageError("--engine selects the engine of the embedded server; it cannot be used with --url")
    if url is not None and not url.startswith(URL_SCHEMES):
        raise UsageError(f"--url must start with ws://, wss://, http:// or https://, got {url!r}")
    if engine is not None:
        return Target(Resolution("embedded", None, None), engine)
    return Target(resolve(url, api_key), "best")


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """``--url``, ``--api-key``, ``--engine``, ``--voice``, ``--quiet`` (shared by say and demo)."""
    group = parser.add_argument_group("server")
    group.add_argument(
        "--url",
        help=f"server base URL (ws://, wss://, http://, https://); default ${ENV_URL}, "
        f"the hosted service if ${ENV_API_KEY} is set, else an embedded local server",
    )
    group.add_argument("--api-key", help=f"API key for --url or the hosted service (default ${ENV_API_KEY})")
    group.add_argument(
        "--engine",
        choices=ENGINES,
        help="start an embedded server with this engine (default: best installed, piper then espeak)",
    )
    parser.add_argument(
        "--voice", type=int, default=DEFAULT_LOCAL_VOICE, help=f"voice id (default {DEFAULT_LOCAL_VOICE})"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress messages on stderr")


async def open_client(target: Target, voice_id: int, progress: Progress) -> tuple[TTS, str | None]:
    """Start the embedded server if needed and return the client and its engine name.

    Raises:
        EngineUnavailableError: the engine is not installed (message has the install hint).
    """
    connector = Connector(
        target.resolution,
        engine=target.engine,
        voice_id=voice_id,
        config=None,
        options=None,
        transport=None,
        reconnect=None,
        server_options={},
    )
    if target.embedded:
        named = "the best installed engine" if target.engine == "best" else f"engine {target.engine}"
        progress.info(f"starting an embedded local server ({named}) ...")
    began = time.monotonic()
    tts = await connector.open()
    engine = None
    if tts.server is not None:
        engine = tts.server.engine.name
        progress.info(
            f"embedded server ready on {tts.server.url} (engine {engine}) in {time.monotonic() - began:.1f} s"
        )
    return tts, engine


async def connect_session(session: StreamingSession, target: Target, progress: Progress) -> None:
    """Open the session's socket, with progress messages."""
    shown = "the embedded server" if target.embedded else target.describe()
    progress.info(f"connecting to {shown} ...")
    began = time.monotonic()
    try:
        await session.connect()
    except (RxTtsError, OSError, TimeoutError, ValueError) as exc:
        raise CommandError(f"cannot connect to {shown}: {_connect_failure(exc, target)}") from exc
    progress.info(f"connected in {(time.monotonic() - began) * 1000:.0f} ms")


def _connect_failure(exc: BaseException, target: Target) -> str:
    """Why a connect failed: the socket error (with a hint), or the server's answer."""
    cause = exc.__cause__
    if isinstance(cause, OSError | TimeoutError) or isinstance(exc, OSError | TimeoutError):
        hint = "" if target.embedded else "; is the server running? ('rxtts serve' starts one)"
        return f"{cause if cause is not None else exc}{hint}"
    if isinstance(exc, AuthenticationError):
        return f"{_server_message(exc)} (give the right --api-key, or set ${ENV_API_KEY})"
    if isinstance(exc, RxTtsError):
        return f"{type(exc).__name__}: {_server_message(exc)}"
    return str(exc)


def _server_message(exc: RxTtsError) -> str:
    """The human part of an error whose message may be a raw JSON error body."""
    try:
        body = json.loads(exc.message)
    except ValueError:
        return exc.message
    text = body.get("error") if isinstance(body, dict) else None
    return text if isinstance(text, str) and text else exc.message


def describe_failure(exc: BaseException, target: Target) -> str:
    """A one-line message for a runtime failure (no traceback, no secrets)."""
    from rxtts.engine import EngineUnavailableError

    if isinstance(exc, EngineUnavailableError | ImportError | CommandError):
        return str(exc)
    if isinstance(exc, RxTtsError):
        return f"server error ({type(exc).__name__}): {_server_message(exc)}"
    return f"{type(exc).__name__}: {exc}"


def check_output_path(path: str | None) -> None:
    """Fail early (before any server starts) when ``-o`` cannot be written.

    Raises:
        UsageError: not a ``.wav`` name, a directory, a missing or unwritable directory.
    """
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"-o {path}: is a directory")
    if target.suffix.lower() != ".wav":
        # Decision (issue 16): no lossy encoder is bundled; refuse rather than write a
        # WAV under another name. ffmpeg converts in one line.
        raise UsageError(
            f"-o {path}: only WAV output is supported; write {target.with_suffix('.wav').name} "
            f"and convert it (e.g. ffmpeg -i {target.with_suffix('.wav').name} {target.name})"
        )
    parent = target.parent
    if not parent.is_dir():
        raise UsageError(f"-o {path}: directory {str(parent)!r} does not exist")
    try:  # the only check that holds for root and read-only file systems too
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=parent)
    except OSError as exc:
        raise UsageError(f"-o {path}: cannot write there ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)
    if target.exists() and not os.access(target, os.W_OK):
        raise UsageError(f"-o {path}: permission denied")


def write_output(path: str, samples: npt.NDArray[np.int16], sample_rate: int) -> None:
    """Write a WAV file atomically: a temporary file in the same folder, then a rename.

    A failure leaves no file behind (and an existing file untouched).

    Raises:
        CommandError: the file could not be written (one line, no traceback).
    """
    from rxtts.audio.wav import write_wav

    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent or ".")
    os.close(fd)
    try:
        write_wav(tmp, samples, sample_rate)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a WAV is an ordinary file
        os.replace(tmp, target)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def run_command(prog: str, coro: Coroutine[Any, Any, int], target: Target) -> int:
    """Run a command's coroutine, mapping failures to one-line errors and exit statuses."""
    try:
        code: int = asyncio.run(coro)
        return code
    except KeyboardInterrupt:
        error(prog, "interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout was closed early (e.g. ``| head``): stay quiet, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_RUNTIME
    except (CommandError, RxTtsError, ImportError, OSError, TimeoutError, RuntimeError, ValueError) as exc:
        error(prog, describe_failure(exc, target))
        return EXIT_RUNTIME


def new_player() -> Player:
    """A live audio player (``rxtts[play]``).

    Raises:
        ImportError: sounddevice or PortAudio is missing (message has the install hint).
    """
    from rxtts.audio.playback import Player

    return Player()


def read_text(arg: str | None, stdin: TextIO) -> str:
    """The text to speak: the argument, or stdin for ``-`` or a piped stdin.

    Raises:
        UsageError: no text given, blank, or not UTF-8.
    """
    if arg is None or arg == "-":
        if arg is None and _isatty(stdin):
            raise UsageError("no text: give TEXT, or pipe it in (echo hi | rxtts say -)")
        text = _read_utf8(stdin)
    else:
        text = arg
        _check_utf8(text, "the TEXT argument")
    if not text.strip():
        raise UsageError("nothing to say: the text is empty")
    return text.strip()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _read_utf8(stdin: TextIO) -> str:
    """All of stdin as UTF-8 text (bytes are decoded here, so the error can say where)."""
    raw = getattr(stdin, "buffer", None)
    if raw is None:
        text = stdin.read()
        _check_utf8(text, "stdin")
        return text
    data: bytes = raw.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(_not_utf8("stdin", exc.start, data[exc.start])) from None


def _check_utf8(text: str, where: str) -> None:
    """Undecodable argv bytes arrive as lone surrogates (PEP 383): refuse them clearly."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UsageError(_not_utf8(where, exc.start, ord(text[exc.start]) & 0xFF)) from None


def _not_utf8(where: str, at: int, byte: int) -> str:
    return (
        f"{where} is not UTF-8 text (byte 0x{byte:02x} at offset {at}); "
        "convert it first, e.g. iconv -f latin1 -t utf-8"
    )


class CommandOptions(Protocol):
    """What :func:`cli_main` needs of a command's parsed options."""

    @property
    def quiet(self) -> bool: ...

    @property
    def target(self) -> Target: ...


OptionsT = TypeVar("OptionsT", bound=CommandOptions)


def cli_main(
    prog: str,
    parse: Callable[[], OptionsT],
    parser: Callable[[], argparse.ArgumentParser],
    command: Callable[[OptionsT, Progress, TextIO], Coroutine[Any, Any, int]],
) -> int:
    """Parse, then run a command: usage errors exit 2, runtime failures 1 (one line each)."""
    try:
        options = parse()
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except UsageError as exc:
        parser().print_usage(sys.stderr)
        error(prog, str(exc))
        return EXIT_USAGE
    progress = Progress(prog, enabled=not options.quiet)
    return run_command(prog, command(options, progress, sys.stdout), options.target)


__all__ = [
    "ENGINES",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_RUNTIME",
    "EXIT_USAGE",
    "CommandError",
    "CommandOptions",
    "Target",
    "UsageError",
    "add_connection_arguments",
    "check_output_path",
    "cli_main",
    "connect_session",
    "describe_failure",
    "new_player",
    "open_client",
    "read_text",
    "resolve_target",
    "run_command",
    "write_output",
]
