"""The local KugelAudio-compatible server: connections, REST, auth (DESIGN 4, PROTOCOL 11).

One :class:`TtsApp` serves every connection of a ``websockets.asyncio.server``. Each
WebSocket gets a session bound to its endpoint; the session feeds decoded frames to the
sans-I/O machine of :mod:`rxtts.protocol.server`, carries out its commands (pipelines,
frames, close) and reports pipeline progress back to it. All of a session's state lives
on the event loop thread; engines run on the app's thread pool (:mod:`.pipeline`).

REST (``GET /v1/models``, ``/v1/voices``, ``/v1/voices/{id}``, ``/health``) is answered
in ``process_request`` before any upgrade, as is the API-key check (PROTOCOL G-2).

Backpressure (a slow or stalled client never makes the server buffer without bound):

- Input: a client frame is at most 1 MiB (bigger closes 1009, PROTOCOL G-5). Text not yet
  handed to the engine is limited to ``max_buffered_chars`` per socket on ``/ws/tts`` and
  ``/ws/tts/stream`` (every queued request/turn counts) and per context on
  ``/ws/tts/multi`` (at most 20 contexts); more is refused with ``VALIDATION_ERROR``,
  never dropped silently (DESIGN 7).
- Pacing: stream and multi audio leaves at most ``max_lead_seconds`` ahead of real-time
  playback; ``/ws/tts`` sends as fast as the client reads. Writes wait for the socket
  (``websockets`` drains its 32 KiB write buffer), so unsent frames wait in the
  connection's send queue.
- Output gate: while that queue holds ``max_queued_bytes`` or more, the connection's
  pipelines start no new engine job (:class:`~rxtts.server.pipeline.GatedExecutor`); the
  held chunk starts once the client has read the queue below the limit. The queue is
  therefore bounded by ``max_queued_bytes`` plus one chunk's audio per running pipeline.
- Reading pauses while the queue holds twice that (only replies to a client that does not
  read pile up so far): its further frames wait in TCP, pushing back on the client.
- A client that reads nothing for ``send_timeout`` seconds while a frame waits for it is
  disconnected (keepalive pings cannot detect it: they wait behind the same full buffer);
  its pipelines are disposed and the engine is cancelled mid-chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import http
import json
import logging
import os
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar, ParamSpec, TypeVar
from urllib.parse import parse_qs, urlsplit

from reactivex.scheduler.eventloop import AsyncIOThreadSafeScheduler
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from rxtts.config import MAX_CONTEXTS
from rxtts.errors import ProtocolError
from rxtts.operators.encode_audio import EncodedAudio, EncodeEvent
from rxtts.operators.flush import FLUSH
from rxtts.operators.synthesize import ChunkDone, ChunkStarted, FlushReached
from rxtts.protocol.frames import (
    MAX_FRAME_BYTES,
    AudioFrame,
    CancelFrame,
    ChunkCompleteFrame,
    ClientFrame,
    CloseContextFrame,
    Endpoint,
    ErrorFrame,
    FlushFrame,
    GenerationStartedFrame,
    ServerFrame,
    TextFrame,
    TtsRequest,
    WireConfig,
    WordTimestampsFrame,
    decode_client_frame,
    encode,
)
from rxtts.protocol.server import (
    AppendText,
    CancelPipeline,
    CloseSocket,
    Command,
    Flush,
    MultiServer,
    OpenPipeline,
    Pricing,
    Send,
    StreamServer,
    TtsServer,
)
from rxtts.server.engines.base import Engine, VoiceInfo
from rxtts.server.engines.catalogue import VoiceCatalogue
from rxtts.server.pipeline import PipelineRunner, PipelineSpec, estimate_word_timestamps

__all__ = [
    "API_KEY_ENV",
    "KUGEL_MODEL_IDS",
    "ServerOptions",
    "ServerStats",
    "TtsApp",
]

log = logging.getLogger("rxtts.server")

API_KEY_ENV = "RXTTS_API_KEY"
"""Environment variable read by ``rxtts serve`` when ``--api-key`` is absent."""
KUGEL_MODEL_IDS = (
    "kugel-3",
    "kugel-3.5",
    "kugel-2.5",
    "kugel-2-turbo",
    "kugel-2",
    "kugel-1-turbo",
    "kugel-1",
)
"""Hosted model ids the SDKs send; all are served by the local engine (PROTOCOL 7)."""
_AUTH_PARAMS = ("api_key", "token", "master_key")
_WS_PATHS = frozenset(e.value for e in Endpoint)
_MAX_ERROR_CHARS = 2000
_NATIVE_RATE = 24000  # PROTOCOL 3.5: tts total_samples are counted at the native 24 kHz
_P = ParamSpec("_P")
_T = TypeVar("_T")
_SECRET_PARAM = re.compile(r"\b(api_key|token|master_key)=[^&\s#]*", re.IGNORECASE)
_SECRET_HEADER = re.compile(r"^([<>] (?:authorization|x-api-key):).*$", re.IGNORECASE | re.MULTILINE)


class _RedactKeys(logging.Filter):
    """Hides API keys in log records: at DEBUG, websockets logs every request line and
    header through this server's logger (``?api_key=``, ``Authorization``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler
            return True
        redacted = _SECRET_HEADER.sub(r"\1 ***", _SECRET_PARAM.sub(r"\1=***", message))
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


log.addFilter(_RedactKeys())  # DESIGN 4: the key itself is never logged


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """Tunables of the local server (CLI flags and ``start_background_server`` kwargs)."""

    api_key: str | None = None
    """Required ``api_key`` (or ``token``/``master_key``) on every upgrade; ``None`` = open."""
    price_cents_per_minute: float | None = 0.0
    """EUR cents per minute of audio; 0 by default (the local server is free, DESIGN 4);
    ``None`` reports ``cost_cents: null`` with ``cost_unavailable`` (PROTOCOL 3.5)."""
    idle_flush_seconds: float = 5.0
    """Unflushed stream turns end this long after their last text (PROTOCOL S-8)."""
    inactivity_timeout: float = 20.0
    """Idle multi contexts close after this many seconds unless the client sets one (M-10)."""
    max_buffered_chars: int = 100_000
    """Unspoken characters a turn/context may hold; more is refused with an error (DESIGN 7)."""
    workers: int = 2
    """Engine worker threads shared by all connections."""
    frame_ms: int = 80
    """Audio frame length in ms (first frame of a chunk may be shorter)."""
    max_contexts: int = MAX_CONTEXTS
    """Open contexts per multi socket (PROTOCOL M-9)."""
    ping_interval: float | None = 20.0
    """Server keepalive pings; clients need not ping (PROTOCOL G-6)."""
    ping_timeout: float | None = 20.0
    """Close a connection whose pong is this late."""
    close_timeout: float = 2.0
    """Seconds to wait for a client's close frame before dropping TCP (fast shutdown)."""
    max_lead_seconds: float | None = 1.0
    """Stream/multi audio is sent at most this far ahead of real-time playback, so a
    cancel leaves little audio in flight (PROTOCOL S-5, M-7); ``None`` = no pacing."""
    max_queued_bytes: int = 4 << 20
    """Per-connection send queue size at which engine work pauses (output backpressure);
    reading from the client pauses at twice this size (module docstring)."""
    send_timeout: float | None = 60.0
    """Seconds one frame may wait for a client that reads nothing before the connection
    is dropped; ``None`` = wait forever."""

    def __post_init__(self) -> None:
        if self.idle_flush_seconds <= 0 or self.inactivity_timeout <= 0:
            raise ValueError("idle_flush_seconds and inactivity_timeout must be > 0")
        if self.max_buffered_chars <= 0 or self.workers <= 0 or self.max_queued_bytes <= 0:
            raise ValueError("max_buffered_chars, max_queued_bytes and workers must be > 0")
        if self.send_timeout is not None and self.send_timeout <= 0:
            raise ValueError("send_timeout must be > 0 or None")
        if not 1 <= self.max_contexts <= MAX_CONTEXTS:
            raise ValueError(f"max_contexts must be in [1, {MAX_CONTEXTS}]")
        if self.price_cents_per_minute is not None and self.price_cents_per_minute < 0:
            raise ValueError("price_cents_per_minute must be >= 0")


@dataclass(frozen=True, slots=True)
class ServerStats:
    """A read-only snapshot of the server's live work (:meth:`TtsApp.stats`)."""

    connections: int
    """Open WebSocket sessions."""
    pipelines: int
    """Synthesis pipelines not yet disposed (stream turns, tts requests, multi contexts)."""
    contexts: int
    """Open multi contexts over all ``/ws/tts/multi`` sockets."""
    synthesis_jobs: int
    """Engine calls submitted to the worker pool and not yet finished."""
    queued_frames: int
    """Outgoing frames waiting in the per-connection send queues."""
    queued_bytes: int
    """Characters of those frames (their size on the wire)."""
    tasks: int
    """Unfinished asyncio tasks of the server loop (0 when not called on it)."""


class _CountingExecutor(ThreadPoolExecutor):
    """The engine worker pool, counting jobs in flight for :class:`ServerStats`."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers, thread_name_prefix="rxtts-engine")
        self._count_lock = threading.Lock()
        self.in_flight = 0
        """Jobs submitted and not yet finished (or cancelled)."""

    def _done(self, _: object = None) -> None:
        with self._count_lock:
            self.in_flight -= 1

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
        with self._count_lock:
            self.in_flight += 1
        try:
            future = super().submit(fn, *args, **kwargs)
        except BaseException:
            self._done()
            raise
        future.add_done_callback(self._done)
        return future


# -- HTTP ---------------------------------------------------------------------------------


def _json_response(status: int, body: Mapping[str, Any], extra: Iterable[tuple[str, str]] = ()) -> Response:
    data = json.dumps(body, separators=(",", ":")).encode()
    headers = Headers(
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Connection", "close"),
            *extra,
        ]
    )
    return Response(status, http.HTTPStatus(status).phrase, headers, data)


def _error_response(status: int, message: str, error_code: str) -> Response:
    request_id = uuid.uuid4().hex
    body = {"error": message, "error_code": error_code, "code": status, "request_id": request_id}
    return _json_response(status, body, [("x-request-id", request_id)])


def _key_matches(expected: str, given: str | None) -> bool:
    # Constant-time compare; the key itself is never logged.
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _query_key(query: Mapping[str, list[str]]) -> str | None:
    # PROTOCOL G-1: api_key=, or JS's token=/master_key=.
    for name in _AUTH_PARAMS:
        if query.get(name):
            return query[name][0]
    return None


def _header_key(headers: Headers) -> str | None:
    auth = headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return headers.get("X-API-Key")


def _page(query: Mapping[str, list[str]], name: str, default: int, cap: int) -> int:
    try:
        value = int(query.get(name, [str(default)])[0])
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None
    if value < 0:
        raise ValueError(f"{name} must be >= 0")
    return min(value, cap)


# -- sessions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Out:
    """One queued outgoing text frame; ``key`` marks purgeable per-pipeline frames."""

    text: str
    """The encoded frame."""
    key: str | None = None
    """Pipeline whose cancel drops this frame if still unsent."""
    seconds: float = 0.0
    """Audio duration carried (paced frames only)."""
    lane: str | None = ""
    """Ordering lane: frames leave in order within a lane and may overtake a paced frame
    of another lane (multi: one lane per context); ``None`` = keeps its place among all."""


@dataclass(frozen=True, slots=True)
class _Close:
    """Close the socket once everything queued before it is sent."""

    code: int
    reason: str


def _text_of(frame: ClientFrame) -> str:
    return frame.text if isinstance(frame, TextFrame | TtsRequest) else ""


def _letters(text: str) -> int:
    return len(text) - sum(c.isspace() for c in text)


class _Session:
    """Common I/O of one WebSocket: the ordered writer, command execution, pipelines."""

    endpoint: ClassVar[Endpoint]
    machine: StreamServer | MultiServer | TtsServer

    def __init__(self, app: TtsApp, ws: ServerConnection) -> None:
        self.app = app
        self.ws = ws
        self.loop = asyncio.get_running_loop()
        self.scheduler = AsyncIOThreadSafeScheduler(self.loop)
        self.runners: dict[str, PipelineRunner] = {}
        self._out: deque[_Out | _Close] = deque()
        self._play_end: dict[str, float] = {}
        self._wakeup = asyncio.Event()
        self._close_after: _Close | None = None
        self._queued_bytes = 0
        self._gate_closed = False
        self._reading = asyncio.Event()
        self._reading.set()

    # -- machine hooks (per endpoint) --------------------------------------------------

    def receive(self, frame: ClientFrame) -> list[Command]:
        raise NotImplementedError

    def chunk_started(self, key: str, text: str) -> list[ServerFrame]:
        return self.machine.chunk_started(key, text)

    def audio(self, key: str, ev: EncodedAudio) -> list[ServerFrame]:
        return self.machine.audio(key, ev.data, ev.encoding, ev.sample_rate, ev.samples)

    def chunk_done(self, runner: PipelineRunner, text: str, ev: ChunkDone) -> list[ServerFrame]:
        return _chunk_done_frames(self.machine, runner, text, ev)

    def flush_done(self, runner: PipelineRunner) -> list[Command]:
        raise NotImplementedError

    def failed(self, key: str, exc: ProtocolError) -> list[Command]:
        raise NotImplementedError

    def live_keys(self) -> set[str]:
        raise NotImplementedError

    def sequential(self) -> bool:
        """Whether pipelines run one after another (stream, tts) or at once (multi)."""
        return True

    def max_lead(self) -> float | None:
        """Seconds of audio the client may hold unplayed; ``None`` = send as generated."""
        return self.app.options.max_lead_seconds

    def pace_key(self, key: str) -> str:
        """Which playback clock a pipeline's audio runs on (stream: one per socket)."""
        return ""

    def queued(self) -> list[_Out]:
        """Frames waiting to be written (introspection, :meth:`TtsApp.stats`)."""
        return [o for o in self._out if isinstance(o, _Out)]

    # -- main loop -----------------------------------------------------------------------

    async def run(self) -> None:
        writer = asyncio.create_task(self._writer())
        try:
            # Read until the socket closes: after close_socket the writer closes it once
            # the last frames are out; frames arriving meanwhile get error frames.
            async for message in self.ws:
                self.on_message(message)
                # Backpressure: replies pile up unread; stop reading (module docstring).
                await self._reading.wait()
        except ConnectionClosed:
            pass  # PROTOCOL G-12: the client may vanish at any time
        finally:
            self.shutdown()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await writer

    def shutdown(self) -> None:
        """Dispose every pipeline and timer (client gone or server stopping)."""
        for runner in self.runners.values():
            runner.dispose()
        self.runners.clear()

    def on_message(self, message: str | bytes) -> None:
        try:
            frame = decode_client_frame(message, self.endpoint)
        except ProtocolError as exc:
            # DESIGN 7: malformed JSON, unknown keys, binary frames: an error, socket lives.
            self.send_error(exc, None)
            return
        context_id = getattr(frame, "context_id", None)
        try:
            refusal = self.check(frame)
            if refusal is not None:
                self.send_error(refusal, context_id)
                return
            self.execute(self.receive(frame))
        except ProtocolError as exc:
            self.send_error(exc, context_id)
        except Exception:  # a server bug must not take the connection down with it
            log.exception("failed to handle a %s frame", type(frame).__name__)
            err = ProtocolError("internal server error", error_code="INTERNAL_ERROR", status=500)
            self.send_error(err, context_id)
        self.after_frame(frame)

    def after_frame(self, frame: ClientFrame) -> None:
        """Timers and bookkeeping after a frame was handled."""

    # -- validation the machine does not know about (engine, limits) -----------------

    def check(self, frame: ClientFrame) -> ProtocolError | None:
        """A refusal for a frame naming an unknown voice/model or overflowing the buffer."""
        config: WireConfig | None = getattr(frame, "config", None)
        voice_ids = [config.voice_id] if config is not None else []
        settings = getattr(frame, "voice_settings", None)
        if settings is not None:
            voice_ids.append(settings.voice_id)
        for voice_id in voice_ids:
            if voice_id is not None and voice_id not in self.app.catalogue:
                known = ", ".join(map(str, self.app.catalogue.ids()))
                return _refusal(f"unknown voice_id {voice_id}; available: {known}")
        if config is not None and config.model_id is not None and not self.app.knows_model(config.model_id):
            return _refusal(f"unknown model_id {config.model_id!r}; see GET /v1/models")
        text = _text_of(frame)
        if text:
            held = self.buffered_chars(frame)
            limit = self.app.options.max_buffered_chars
            if held + _letters(text) > limit:
                # DESIGN 7: never drop accepted text silently: refuse it, say so.
                return _refusal(
                    f"text refused: this would buffer more than {limit} unspoken characters "
                    f"({held} already waiting); flush or wait for audio"
                )
        return None

    def buffered_chars(self, frame: ClientFrame) -> int:
        """Unspoken characters of the turn/context ``frame`` adds to."""
        return 0

    # -- commands --------------------------------------------------------------------------

    def execute(self, commands: Iterable[Command]) -> None:
        for cmd in commands:
            match cmd:
                case Send(frames=frames):
                    self.send(frames)
                case OpenPipeline(key=key, config=config):
                    self.open(key, config)
                case AppendText(key=key, text=text):
                    if (runner := self.runners.get(key)) is not None:
                        runner.push(text)
                case Flush(key=key):
                    if (runner := self.runners.get(key)) is not None:
                        runner.push(FLUSH)
                case CancelPipeline(key=key):
                    self.cancel(key)
                case CloseSocket(code=code, reason=reason):
                    self._close_after = _Close(code, reason)
        self.reap()

    def open(self, key: str, config: WireConfig) -> None:
        voice = self.app.voice(config.voice_id)
        spec = PipelineSpec(
            self.app.engine,
            voice,
            config,
            self.app.executor,
            self.scheduler,
            self.app.options.frame_ms,
            gate=self.output_open,
        )
        old = self.runners.pop(key, None)
        if old is not None:
            old.dispose()
        runner = PipelineRunner(key, spec, self._on_event, self._on_error)
        self.runners[key] = runner
        if not self.sequential() or next(iter(self.runners.values())) is runner:
            runner.start()

    def cancel(self, key: str) -> None:
        runner = self.runners.pop(key, None)
        if runner is not None:
            runner.dispose()
        # PROTOCOL S-5/M-7: stop at once: unsent audio of the pipeline is dropped too.
        self.purge(lambda out: out.key == key)
        # The client stops playback on barge-in: its buffer is empty again.
        self._play_end.pop(self.pace_key(key), None)

    def purge(self, drop: Callable[[_Out], bool]) -> None:
        """Remove unsent frames (PROTOCOL S-5/M-7: stop at once, nothing stale after)."""
        if any(isinstance(o, _Out) and drop(o) for o in self._out):
            self._out = deque(o for o in self._out if not (isinstance(o, _Out) and drop(o)))
            self._queued_bytes = sum(len(o.text) for o in self._out if isinstance(o, _Out))
            self._wakeup.set()
            self._flow()

    def output_open(self) -> bool:
        """Whether the send queue has room for more engine output (module docstring)."""
        return self._queued_bytes < self.app.options.max_queued_bytes

    def _flow(self) -> None:
        """Open/close the output gate and the reader after the send queue changed size."""
        limit = self.app.options.max_queued_bytes
        if self._queued_bytes >= limit:
            self._gate_closed = True
        elif self._gate_closed:
            self._gate_closed = False
            for runner in list(self.runners.values()):
                runner.resume()
        if self._queued_bytes >= 2 * limit:
            self._reading.clear()
        else:
            self._reading.set()

    def reap(self) -> None:
        """Dispose pipelines the machine has finished; start the next sequential one."""
        live = self.live_keys()
        for key in [k for k in self.runners if k not in live]:
            self.runners.pop(key).dispose()
        now = self.loop.time()
        for clock in [c for c, end in self._play_end.items() if end < now]:
            del self._play_end[clock]  # that client buffer has drained
        if self._close_after is not None and not live:
            # PROTOCOL S-10, M-8: close only after the last turn's session_closed.
            close, self._close_after = self._close_after, None
            self._enqueue(close)
        if self.sequential() and self.runners:
            first = next(iter(self.runners.values()))
            if not first.started:
                # PROTOCOL S-6, T-2: the next turn/request starts after this one's last frame.
                self.loop.call_soon(first.start)

    # -- pipeline events -----------------------------------------------------------------

    def _on_event(self, runner: PipelineRunner, event: EncodeEvent) -> None:
        if self.runners.get(runner.key) is not runner:
            return  # a cancelled pipeline's late result (PROTOCOL S-5)
        key = runner.key
        match event:
            case ChunkStarted(text=text):
                self.send(self.chunk_started(key, text), key)
            case EncodedAudio():
                self.send(self.audio(key, event), key)
            case ChunkDone():
                self.send(self.chunk_done(runner, runner.chunk_text, event), key)
            case FlushReached():
                self.execute(self.flush_done(runner))
        self.on_activity(key)

    def _on_error(self, runner: PipelineRunner, exc: Exception) -> None:
        if self.runners.get(runner.key) is not runner:
            return
        log.warning("pipeline %s failed: %s", runner.key, exc)
        err = ProtocolError(f"synthesis failed: {exc}", error_code="INTERNAL_ERROR", status=500)
        self.execute(self.failed(runner.key, err))

    def on_activity(self, key: str) -> None:
        """A pipeline produced something (multi: keeps the context alive)."""

    # -- output ------------------------------------------------------------------------

    def send(self, frames: Iterable[ServerFrame], key: str | None = None, whole_turn: bool = False) -> None:
        """Queue frames; those of pipeline ``key`` are dropped if it is cancelled unsent.

        Only chunk frames are tagged, unless ``whole_turn`` (the frames end a turn that
        the client may still barge into while its paced audio is queued).
        """
        for frame in frames:
            purgeable = whole_turn or isinstance(
                frame, AudioFrame | GenerationStartedFrame | ChunkCompleteFrame | WordTimestampsFrame
            )
            seconds = frame.samples / frame.sr if isinstance(frame, AudioFrame) else 0.0
            lane = self.lane(frame)
            self._enqueue(_Out(self._encode(frame), key if purgeable else None, seconds, lane))

    def lane(self, frame: ServerFrame) -> str | None:
        """The ordering lane of ``frame`` (stream, tts: one lane, strict order)."""
        return ""

    def send_error(self, exc: ProtocolError, context_id: str | None) -> None:
        self.send([_error_frame(exc, context_id)])

    def _encode(self, frame: ServerFrame) -> str:
        text = encode(frame)
        if len(text) * 4 >= MAX_FRAME_BYTES and len(text.encode()) >= MAX_FRAME_BYTES:
            # PROTOCOL G-5: never send a frame the client cannot take.
            log.error("dropping oversized %s frame", type(frame).__name__)
            return encode(ErrorFrame("frame too large", "INTERNAL_ERROR", 500))
        return text

    def _enqueue(self, item: _Out | _Close) -> None:
        self._out.append(item)
        if isinstance(item, _Out):
            self._queued_bytes += len(item.text)
            self._flow()
        self._wakeup.set()

    async def _writer(self) -> None:
        try:
            await self._write_queue()
        finally:
            self._reading.set()  # the reader must see the close, never wait for room

    async def _write_queue(self) -> None:
        # One writer keeps frames in the order the machine produced them (per lane).
        while True:
            if not self._out:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            index, wait = self._next_ready()
            if index < 0:
                self._wakeup.clear()  # a new frame, a cancel or a purge wakes us up early
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), wait)
                continue
            item = self._out[index]
            del self._out[index]
            if isinstance(item, _Out):
                self._advance_clock(item)
                self._queued_bytes -= len(item.text)
                self._flow()
            if isinstance(item, _Close):
                self.shutdown()
                await self.ws.close(item.code, item.reason)
                return
            try:
                async with asyncio.timeout(self.app.options.send_timeout):
                    await self.ws.send(item.text)
            except ConnectionClosed:
                return
            except TimeoutError:
                # Backpressure (module docstring): a client that reads nothing at all is
                # gone; keepalive cannot tell, its ping waits behind the same full buffer.
                log.info("dropping a connection that read nothing for %s s", self.app.options.send_timeout)
                self.ws.transport.abort()
                return

    def _next_ready(self) -> tuple[int, float]:
        """Index of the first frame that may leave now, else ``(-1, seconds to wait)``.

        A frame held back by pacing holds back the rest of its lane only: on multi a
        context whose audio waits for its playback clock never delays another context
        (PROTOCOL 6.1: one context plays while another pre-buffers; M-5: per-context
        order). Frames without a lane (``session_closed``, the close) overtake nothing.
        """
        blocked: set[str] = set()
        wait = 0.0
        for index, item in enumerate(self._out):
            lane = item.lane if isinstance(item, _Out) else None
            if lane is None and index > 0:
                break
            if lane is not None and lane in blocked:
                continue
            delay = self._pace(item) if isinstance(item, _Out) else 0.0
            if delay <= 0:
                return index, 0.0
            wait = delay if not blocked else min(wait, delay)
            if lane is None or not self.interleaved():
                break
            blocked.add(lane)
        return -1, wait

    def interleaved(self) -> bool:
        """Whether frames of different lanes may overtake each other (multi)."""
        return False

    def _pace(self, item: _Out) -> float:
        """Seconds to hold ``item`` back; 0 = it may be sent now.

        PROTOCOL S-5/M-7 want <= ~1 s of audio after a cancel; a neural engine makes a
        whole clause at once, so audio leaves at most ``max_lead`` ahead of real-time
        playback, estimated by a virtual clock per socket (stream) or context (multi).
        """
        lead = self.max_lead()
        if lead is None or item.key is None or not item.seconds:
            return 0.0
        now = self.loop.time()
        end = max(self._play_end.get(self.pace_key(item.key), now), now)
        return end - now - lead if end - now > lead else 0.0

    def _advance_clock(self, item: _Out) -> None:
        """``item`` leaves now: its audio extends its playback clock."""
        if self.max_lead() is None or item.key is None or not item.seconds:
            return
        clock = self.pace_key(item.key)
        now = self.loop.time()
        self._play_end[clock] = max(self._play_end.get(clock, now), now) + item.seconds


def _error_frame(exc: ProtocolError, context_id: str | None) -> ErrorFrame:
    message = exc.message if len(exc.message) <= _MAX_ERROR_CHARS else exc.message[:_MAX_ERROR_CHARS] + "..."
    return ErrorFrame(message, exc.error_code or "PROTOCOL_ERROR", exc.status or 400, context_id=context_id)


def _refusal(message: str) -> ProtocolError:
    return ProtocolError(message, error_code="VALIDATION_ERROR", status=400)


class _StreamSession(_Session):
    """``/ws/tts/stream``: turns, sticky config, barge-in, idle auto-flush (PROTOCOL 5)."""

    endpoint = Endpoint.STREAM
    machine: StreamServer

    def __init__(self, app: TtsApp, ws: ServerConnection) -> None:
        super().__init__(app, ws)
        self.machine = StreamServer(pricing=app.pricing)
        self._idle: tuple[str, asyncio.TimerHandle] | None = None

    def receive(self, frame: ClientFrame) -> list[Command]:
        if isinstance(frame, CancelFrame):
            # PROTOCOL S-5: a turn whose audio is still queued (paced) is not over for the
            # client: drop all of it, final and session_closed too; interrupted replaces them.
            self.purge(lambda out: out.key is not None)
            self._play_end.clear()
        return self.machine.receive(frame)

    def buffered_chars(self, frame: ClientFrame) -> int:
        # Backpressure (module docstring): turns queued behind the speaking one count too.
        return sum(runner.pending_chars for runner in self.runners.values())

    def after_frame(self, frame: ClientFrame) -> None:
        turn = self.machine.open_turn
        if turn is None:
            self._cancel_idle()
        elif isinstance(frame, TextFrame) or self._idle is None or self._idle[0] != turn:
            # PROTOCOL S-8: ~5 s after the last text; pings never reach this code.
            self._cancel_idle()
            delay = self.app.options.idle_flush_seconds
            self._idle = (turn, self.loop.call_later(delay, self._idle_fired, turn))

    def _cancel_idle(self) -> None:
        if self._idle is not None:
            self._idle[1].cancel()
            self._idle = None

    def _idle_fired(self, turn: str) -> None:
        self._idle = None
        self.execute(self.machine.idle_timeout(turn))

    def shutdown(self) -> None:
        self._cancel_idle()
        super().shutdown()

    def flush_done(self, runner: PipelineRunner) -> list[Command]:
        self.send(self.machine.flush_done(runner.key), runner.key, whole_turn=True)
        return []

    def failed(self, key: str, exc: ProtocolError) -> list[Command]:
        return self.machine.error(key, exc)

    def live_keys(self) -> set[str]:
        return set(self.machine.pipelines)


def _chunk_done_frames(
    machine: StreamServer | MultiServer | TtsServer, runner: PipelineRunner, text: str, ev: ChunkDone
) -> list[ServerFrame]:
    frames: list[ServerFrame] = []
    if runner.spec.config.word_timestamps:
        # PROTOCOL G-9: only when requested, after the chunk's audio.
        words = estimate_word_timestamps(text, ev.audio_seconds)
        if words:
            frames += machine.word_timestamps(runner.key, WordTimestampsFrame(words))
    return frames + machine.chunk_done(runner.key, ev.audio_seconds, ev.gen_ms)


class _MultiSession(_Session):
    """``/ws/tts/multi``: up to 20 concurrent contexts (PROTOCOL 6)."""

    endpoint = Endpoint.MULTI
    machine: MultiServer

    def __init__(self, app: TtsApp, ws: ServerConnection) -> None:
        super().__init__(app, ws)
        self.machine = MultiServer(pricing=app.pricing, max_contexts=app.options.max_contexts)
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def sequential(self) -> bool:
        return False

    def interleaved(self) -> bool:
        return True

    def lane(self, frame: ServerFrame) -> str | None:
        # PROTOCOL M-5: per-context order; contexts may interleave.
        context_id: str | None = getattr(frame, "context_id", None)
        return context_id

    def pace_key(self, key: str) -> str:
        return key  # each context is its own speaker

    def receive(self, frame: ClientFrame) -> list[Command]:
        return self.machine.receive(frame)

    def buffered_chars(self, frame: ClientFrame) -> int:
        cid = getattr(frame, "context_id", None)
        runner = self.runners.get(cid) if cid is not None else None
        return runner.pending_chars if runner is not None else 0

    def after_frame(self, frame: ClientFrame) -> None:
        # PROTOCOL M-4, M-10: every frame for a context (keep-alive text:"" too) resets
        # its inactivity timer.
        cid = getattr(frame, "context_id", None)
        if isinstance(frame, TextFrame | FlushFrame | CloseContextFrame) and cid is not None:
            self.on_activity(cid)

    @property
    def inactivity_timeout(self) -> float:
        # PROTOCOL U-8: the client's inactivity_timeout (s), else the server option.
        return self.machine.config.inactivity_timeout or self.app.options.inactivity_timeout

    def on_activity(self, key: str) -> None:
        """Re-arm a context's inactivity timer; audio being generated counts as activity."""
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        if key in self.machine.pipelines:
            self._timers[key] = self.loop.call_later(self.inactivity_timeout, self._timed_out, key)

    def _timed_out(self, cid: str) -> None:
        self._timers.pop(cid, None)
        runner = self.runners.get(cid)
        pipeline = self.machine.pipelines.get(cid)
        if pipeline is not None and runner is not None and (runner.in_chunk or pipeline.pending_flushes):
            self.on_activity(cid)  # still speaking what a flush asked for: not idle
            return
        self.execute(self.machine.timeout(cid))

    def reap(self) -> None:
        super().reap()
        for cid in [c for c in self._timers if c not in self.machine.pipelines]:
            self._timers.pop(cid).cancel()

    def shutdown(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        super().shutdown()

    def open(self, key: str, config: WireConfig) -> None:
        if config.voice_id is None:
            # MISSING_VOICE_ID comes from the machine on the first text; a voiceless
            # context only ever receives flushes, so any voice will do here.
            config = WireConfig(voice_id=self.app.catalogue.ids()[0]).merged(config)
        super().open(key, config)
        self.on_activity(key)

    def flush_done(self, runner: PipelineRunner) -> list[Command]:
        return self.machine.flush_done(runner.key)

    def failed(self, key: str, exc: ProtocolError) -> list[Command]:
        return self.machine.error(key, exc)

    def live_keys(self) -> set[str]:
        return {k for k, p in self.machine.pipelines.items() if p.live}


class _TtsSession(_Session):
    """``/ws/tts``: one request at a time, answered in arrival order (PROTOCOL T-1..T-3)."""

    endpoint = Endpoint.TTS
    machine: TtsServer

    def __init__(self, app: TtsApp, ws: ServerConnection) -> None:
        super().__init__(app, ws)
        self.machine = TtsServer(pricing=app.pricing)

    def receive(self, frame: ClientFrame) -> list[Command]:
        return self.machine.receive(frame)

    def buffered_chars(self, frame: ClientFrame) -> int:
        # Backpressure (module docstring): every request still waiting counts.
        return sum(runner.pending_chars for runner in self.runners.values())

    def send_error(self, exc: ProtocolError, context_id: str | None) -> None:
        # PROTOCOL T-2: refusals (unknown voice, buffer limit, bad JSON) are answers too and
        # wait behind the pending requests; sent at once the SDKs blame the request in
        # flight for them (found by tests/test_reliability_security.py).
        if self.machine.queue:
            self.machine.owed.setdefault(self.machine.queue[-1], []).append(_error_frame(exc, context_id))
            return
        super().send_error(exc, context_id)

    def max_lead(self) -> float | None:
        return None  # no cancel on /ws/tts: send as fast as it is made

    def flush_done(self, runner: PipelineRunner) -> list[Command]:
        native = round(runner.audio_seconds * _NATIVE_RATE)
        return [Send(tuple(self.machine.flush_done(runner.key, native)))]

    def failed(self, key: str, exc: ProtocolError) -> list[Command]:
        return [CancelPipeline(key), Send(tuple(self.machine.error(key, exc)))]

    def live_keys(self) -> set[str]:
        return set(self.machine.pipelines)


_SESSIONS: Mapping[str, type[_Session]] = {
    Endpoint.STREAM.value: _StreamSession,
    Endpoint.MULTI.value: _MultiSession,
    Endpoint.TTS.value: _TtsSession,
}


# -- the app ------------------------------------------------------------------------------


class TtsApp:
    """The server: one engine, one worker pool, every connection (DESIGN 4)."""

    def __init__(self, engine: Engine, options: ServerOptions | None = None) -> None:
        self.engine = engine
        """The engine every pipeline speaks with."""
        self.options = options or ServerOptions()
        """Server tunables."""
        self.catalogue = VoiceCatalogue.from_engine(engine)
        """Voices by id."""
        self.pricing = Pricing(self.options.price_cents_per_minute)
        """Cost of usage (``None`` price = cost unavailable)."""
        self.executor = _CountingExecutor(self.options.workers)
        """Worker threads for engine calls."""
        self.local_model_id = f"rxtts-{engine.name}"
        """The model id of the local engine in ``GET /v1/models``."""
        self.sessions: set[_Session] = set()

    def stats(self) -> ServerStats:
        """A snapshot of connections, pipelines, engine jobs and send queues.

        Read-only; call it on the server's event loop thread (``RunningServer.stats()``
        does), where the session state lives.
        """
        sessions = list(self.sessions)
        queued = [o for s in sessions for o in s.queued()]
        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:  # not on a running loop
            tasks = 0
        return ServerStats(
            connections=len(sessions),
            pipelines=sum(len(s.runners) for s in sessions),
            contexts=sum(len(s.machine.open_contexts) for s in sessions if isinstance(s, _MultiSession)),
            synthesis_jobs=self.executor.in_flight,
            queued_frames=len(queued),
            queued_bytes=sum(len(o.text) for o in queued),
            tasks=tasks,
        )

    def knows_model(self, model_id: str) -> bool:
        """Whether ``model_id`` names the local engine or a hosted alias (PROTOCOL 7)."""
        return model_id == self.local_model_id or model_id.startswith("kugel-")

    def voice(self, voice_id: int | None) -> VoiceInfo:
        """The voice for a pipeline (ids were checked when the frame came in)."""
        return self.catalogue.get(voice_id if voice_id is not None else self.catalogue.ids()[0])

    async def handler(self, ws: ServerConnection) -> None:
        """Serve one WebSocket until it closes."""
        path = urlsplit(ws.request.path if ws.request else "").path
        session = _SESSIONS[path](self, ws)
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Auth for upgrades (PROTOCOL G-1, G-2) and the REST endpoints (PROTOCOL 12)."""
        url = urlsplit(request.path)
        query = parse_qs(url.query)
        is_upgrade = "websocket" in request.headers.get("Upgrade", "").lower()
        if url.path == "/health":
            return _json_response(200, {"status": "ok", "engine": self.engine.name})
        if url.path in _WS_PATHS and is_upgrade:
            if self.options.api_key is not None and not _key_matches(self.options.api_key, _query_key(query)):
                # PROTOCOL G-2: a bad key is refused before the upgrade; the SDKs map 401
                # to AuthenticationError.
                return _error_response(401, "invalid or missing API key", "UNAUTHORIZED")
            return None
        if self.options.api_key is not None:
            given = _header_key(request.headers) or _query_key(query)
            if not _key_matches(self.options.api_key, given):
                return _error_response(401, "invalid or missing API key", "UNAUTHORIZED")
        return self._rest(url.path, query)

    def _rest(self, path: str, query: Mapping[str, list[str]]) -> Response:
        if path == "/v1/models":
            return _json_response(200, {"models": self.models()})
        if path == "/v1/voices":
            return self._voices(query)
        if path.startswith("/v1/voices/"):
            raw = path.removeprefix("/v1/voices/")
            if raw.isdigit() and int(raw) in self.catalogue:
                voice = self.catalogue.get(int(raw)).to_json()
                detail = {"generative_voice_description": None, "pending_verification": False}
                return _json_response(200, voice | detail)
            return _error_response(404, f"voice {raw!r} not found", "NOT_FOUND")
        return _error_response(404, f"no such endpoint: {path}", "NOT_FOUND")

    def _voices(self, query: Mapping[str, list[str]]) -> Response:
        try:
            limit = _page(query, "limit", 20, 100)
            offset = _page(query, "offset", 0, 1 << 31)
        except ValueError as exc:
            return _error_response(400, str(exc), "VALIDATION_ERROR")
        language = query.get("language", [None])[0]
        voices = [v for v in self.catalogue if language is None or v.language == language]
        body = {
            "voices": [v.to_json() for v in voices[offset : offset + limit]],
            "total": len(voices),
            "limit": limit,
            "offset": offset,
        }
        return _json_response(200, body)

    def models(self) -> list[dict[str, Any]]:
        """The local engine's model, then the hosted ids it answers to."""
        rate = self.engine.sample_rate
        local = {
            "id": self.local_model_id,
            "name": f"rxtts {self.engine.name} (local)",
            "description": f"Local {self.engine.name} engine, {rate} Hz native.",
            "max_input_length": self.options.max_buffered_chars,
            "sample_rate": rate,
        }
        aliases = [
            {
                "id": model_id,
                "name": model_id,
                "description": f"Alias of {self.local_model_id} on this local server.",
                "max_input_length": self.options.max_buffered_chars,
                "sample_rate": rate,
            }
            for model_id in KUGEL_MODEL_IDS
        ]
        return [local, *aliases]

    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> Server:
        """Start listening; the caller owns the returned server (``close()``/``wait_closed()``)."""
        return await serve(
            self.handler,
            host,
            port,
            process_request=self.process_request,
            max_size=MAX_FRAME_BYTES,  # PROTOCOL G-5; larger frames close with 1009
            ping_interval=self.options.ping_interval,
            ping_timeout=self.options.ping_timeout,
            close_timeout=self.options.close_timeout,
            compression="deflate",  # PY MultiContextSession offers permessage-deflate
            logger=log,
        )

    def close(self) -> None:
        """Stop every pipeline and the worker pool (after the server stopped)."""
        for session in list(self.sessions):
            session.shutdown()
        self.executor.shutdown(wait=False, cancel_futures=True)


def api_key_from_env() -> str | None:
    """``RXTTS_API_KEY`` if set and non-empty."""
    return os.environ.get(API_KEY_ENV) or None
