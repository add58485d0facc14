"""One WebSocket session: decode, run the sans-I/O machine, carry out its commands.

Each accepted :class:`~rxtts.server.socket.ServerSocket` gets a :class:`Connection` for
its endpoint. Every protocol decision is the machine's (:mod:`rxtts.protocol.server`);
this module owns only time (timers, ``now``), synthesis pipelines and the send queue
(:mod:`rxtts.server.output`). All state lives on the event loop thread; engines run on
the app's thread pool (:mod:`rxtts.server.pipeline`).

Hostile input (issue 11, DESIGN 7): whitespace runs are collapsed on arrival (a turn
holds, counts and bills what is spoken; every remaining character counts toward the
limit below), words over 50 characters are cut before the pipeline (billing counts the
text as sent), client ``max_buffer_length``/``chunk_length_schedule`` are clamped to
``max_chunk_chars`` (500), and each pipeline submits engine jobs through its own lane of
the fair engine pool (:class:`~rxtts.server.options.CountingExecutor`).

Input backpressure: text not yet handed to the engine is limited to
``max_buffered_chars`` per socket on ``/ws/tts`` and ``/ws/tts/stream`` (every queued
request/turn counts) and per context on ``/ws/tts/multi``; more is refused with
``VALIDATION_ERROR``, never dropped silently (DESIGN 7).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, ClassVar

from reactivex.scheduler.eventloop import AsyncIOThreadSafeScheduler
from reactivex.subject import BehaviorSubject

from rxtts.errors import ProtocolError
from rxtts.operators.encode_audio import EncodedAudio
from rxtts.operators.flush import FLUSH
from rxtts.operators.synthesize import ChunkDone, ChunkStarted, FlushReached
from rxtts.protocol.frames import (
    MAX_FRAME_BYTES,
    AudioFrame,
    ClientFrame,
    Endpoint,
    ErrorFrame,
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
    ArmTimer,
    CancelPipeline,
    CancelTimer,
    CloseSocket,
    Command,
    Flush,
    MultiServer,
    OpenPipeline,
    Purge,
    Send,
    StartPipeline,
    StreamServer,
    TtsServer,
)
from rxtts.server.limits import split_long_words
from rxtts.server.output import OutputQueue, QueuedFrame
from rxtts.server.pipeline import (
    DEFAULT_MAX_BUFFER_LENGTH,
    ChunkWords,
    PipelineRunner,
    PipelineSpec,
    RunnerEvent,
)
from rxtts.server.socket import ServerSocket, SocketClosed

if TYPE_CHECKING:
    from rxtts.server.app import TtsApp

__all__ = ["CONNECTIONS", "Connection", "MultiConnection", "StreamConnection", "TtsConnection"]

log = logging.getLogger("rxtts.server")

_MAX_ERROR_CHARS = 2000
_NATIVE_RATE = 24000  # PROTOCOL 3.5: tts total_samples are counted at the native 24 kHz
RESTART_CODE = 1012
"""G-11: deploy restart; clients replay (PROTOCOL 10)."""


def _text_of(frame: ClientFrame) -> str:
    return frame.text if isinstance(frame, TextFrame | TtsRequest) else ""


_SPACE_RUN = re.compile(r"\s{2,}")


def _one_space(run: re.Match[str]) -> str:
    newlines = run.group().count("\n")
    return "\n\n" if newlines >= 2 else "\n" if newlines else " "


def collapse_whitespace(text: str) -> str:
    """Runs of whitespace as one character (a paragraph break stays ``\n\n``).

    Issue 11: 150 MB of spaces were accepted into one turn, uncounted and billed as
    150,000,005 characters. Whitespace is collapsed on arrival, so the turn holds, counts
    and bills what is spoken; every character left counts toward the buffer limit.
    """
    return _SPACE_RUN.sub(_one_space, text) if len(text) > 1 else text


def _collapsed(frame: ClientFrame) -> ClientFrame:
    """``frame`` with the whitespace runs of its text collapsed."""
    if isinstance(frame, TextFrame | TtsRequest) and len(frame.text) > 1:
        text = collapse_whitespace(frame.text)
        if text != frame.text:
            return dataclasses.replace(frame, text=text)
    return frame


def clamp_config(config: WireConfig, max_chunk_chars: int) -> WireConfig:
    """``max_buffer_length`` and schedule steps capped at the server's chunk limit.

    Issue 11: a client ``max_buffer_length`` of 10,000 made piper take 2.6 GB for one
    chunk; the server owns scheduling (PROTOCOL 10), so it bounds what one chunk may be.
    """
    limit = max_chunk_chars
    length = min(config.max_buffer_length or DEFAULT_MAX_BUFFER_LENGTH, limit)
    schedule = config.chunk_length_schedule
    if schedule is not None:  # still strictly increasing: steps past the limit become one
        below = tuple(step for step in schedule if step < limit)
        schedule = (*below, limit) if len(below) < len(schedule) else below
    return dataclasses.replace(config, max_buffer_length=length, chunk_length_schedule=schedule)


def error_frame(exc: ProtocolError, context_id: str | None) -> ErrorFrame:
    """The frame for ``exc``, its message capped (G-5)."""
    message = exc.message if len(exc.message) <= _MAX_ERROR_CHARS else exc.message[:_MAX_ERROR_CHARS] + "..."
    return ErrorFrame(message, exc.error_code or "PROTOCOL_ERROR", exc.status or 400, context_id=context_id)


def _refusal(message: str) -> ProtocolError:
    return ProtocolError(message, error_code="VALIDATION_ERROR", status=400)


class Connection:
    """Common I/O of one WebSocket: reader, command execution, pipelines, timers."""

    endpoint: ClassVar[Endpoint]
    machine: StreamServer | MultiServer | TtsServer

    def __init__(self, app: TtsApp, sock: ServerSocket) -> None:
        self.app = app
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.scheduler = AsyncIOThreadSafeScheduler(self.loop)
        self.runners: dict[str, PipelineRunner] = {}
        self.idle: dict[str, BehaviorSubject[bool]] = {}
        """Per pipeline: True while it has nothing to make or send (S-8a)."""
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._close_after: tuple[int, str] | None = None
        self._word_runs: dict[str, int] = {}
        """Per pipeline: characters of the word its last text ended in."""
        self.draining = False
        """G-11: close 1012 once no turn/context work is left."""
        opts = app.options
        self.output = OutputQueue(
            sock,
            max_lead=self.max_lead(),
            interleaved=self.interleaved(),
            pace_key=self.pace_key,
            max_queued_bytes=opts.max_queued_bytes,
            send_timeout=opts.send_timeout,
            on_sent=self._sent,
            on_gate_open=self._gate_open,
            on_close=self.shutdown,
        )

    # -- endpoint policy (overridden) ---------------------------------------------------

    def max_lead(self) -> float | None:
        """Seconds of audio the client may hold unplayed; ``None`` = send as generated.

        ``pace=off`` in the upgrade URL (an rxtts extension; other servers ignore unknown
        parameters) asks for audio at engine speed: a client that writes a file, such as
        ``rxtts say -o``, has no playback clock to stay close to.
        """
        if self.sock.query.get("pace") == ["off"]:
            return None
        return self.app.options.max_lead_seconds

    def interleaved(self) -> bool:
        """Whether frames of different lanes may overtake each other (the machine's rule)."""
        return self.machine.INTERLEAVED

    def pace_key(self, key: str) -> str:
        """Which playback clock a pipeline's audio runs on (the machine's rule)."""
        return self.machine.pace_key(key)

    def lane(self, frame: ServerFrame) -> str | None:
        """The ordering lane of ``frame`` (the machine's rule, PROTOCOL M-5, S-6, T-2)."""
        return self.machine.lane(frame)

    def buffered_chars(self, frame: ClientFrame) -> int:
        """Unspoken characters of the turn/context ``frame`` adds to (every one here)."""
        return sum(runner.pending_chars for runner in self.runners.values())

    def refuse(self, frame: ErrorFrame) -> list[Command]:
        """Commands answering a frame with an error (tts: in arrival order, T-2)."""
        return [Send((frame,))]

    def flush_done(self, runner: PipelineRunner) -> list[Command]:
        return self.machine.flush_done(runner.key)

    def output_changed(self, key: str, idle: bool) -> list[Command]:
        """Report a pipeline's output going idle/busy to the machine (S-8a, M-10)."""
        return []

    # -- main loop -----------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """G-11: whether turn/request work is left: a live pipeline or unsent frames."""
        return bool(self.live_keys()) or self.output.has_pipeline_frames()

    async def run(self) -> None:
        """Serve the socket until it closes."""
        writer = asyncio.create_task(self.output.run())
        try:
            # Read until the socket closes: after close_socket the writer closes it once
            # the last frames are out; frames arriving meanwhile get error frames.
            while True:
                message = await self.sock.recv()
                self.on_message(message)
                await self.output.reading.wait()  # backpressure (rxtts.server.output)
        except SocketClosed:
            pass  # PROTOCOL G-12: the client may vanish at any time
        finally:
            self.shutdown()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, SocketClosed):
                await writer

    def shutdown(self) -> None:
        """Dispose every pipeline and timer (client gone or server stopping)."""
        for runner in self.runners.values():
            runner.dispose()
        self.runners.clear()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def on_message(self, message: str | bytes) -> None:
        try:
            frame = decode_client_frame(message, self.endpoint)
        except ProtocolError as exc:
            # DESIGN 7: malformed JSON, unknown keys, binary frames: an error, socket lives.
            self.send_error(exc, None)
            return
        frame = _collapsed(frame)
        context_id = getattr(frame, "context_id", None)
        try:
            refusal = self.check(frame)
            if refusal is not None:
                self.send_error(refusal, context_id)
                return
            self.execute(self.machine.receive(frame, self.loop.time()))
        except ProtocolError as exc:
            self.send_error(exc, context_id)
        except Exception:  # a server bug must not take the connection down with it
            log.exception("failed to handle a %s frame", type(frame).__name__)
            err = ProtocolError("internal server error", error_code="INTERNAL_ERROR", status=500)
            self.send_error(err, context_id)

    def _words_cut(self, key: str, text: str) -> str:
        """Over-long words cut, also across frames, before the text reaches the pipeline
        (issue 11, DESIGN 7); the machine saw and bills the text as sent."""
        cut, self._word_runs[key] = split_long_words(text, self._word_runs.get(key, 0))
        return cut

    def send_error(self, exc: ProtocolError, context_id: str | None) -> None:
        self.execute(self.refuse(error_frame(exc, context_id)))

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
            if held + len(text) > limit:
                # DESIGN 7: never drop accepted text silently: refuse it, say so.
                return _refusal(
                    f"text refused: this would buffer more than {limit} unspoken characters "
                    f"({held} already waiting); flush or wait for audio"
                )
        return None

    # -- commands --------------------------------------------------------------------------

    def execute(self, commands: Iterable[Command]) -> None:
        for cmd in commands:
            match cmd:
                case Send(frames=frames, purge_key=key):
                    self.send(frames, key)
                case OpenPipeline(key=key, config=config, start=start):
                    self.open(key, config, start)
                case StartPipeline(key=key):
                    if (runner := self.runners.get(key)) is not None:
                        self.loop.call_soon(self._start, runner)  # after the frames just queued
                case AppendText(key=key, text=text):
                    if (runner := self.runners.get(key)) is not None:
                        runner.push(self._words_cut(key, text))
                case Flush(key=key):
                    if (runner := self.runners.get(key)) is not None:
                        runner.push(FLUSH)
                case CancelPipeline(key=key):
                    if (runner := self.runners.pop(key, None)) is not None:
                        runner.dispose()
                case Purge(keys=keys):
                    self.output.purge(keys)
                case ArmTimer(key=key, deadline=deadline):
                    self._cancel_timer(key)
                    self._timers[key] = self.loop.call_at(deadline, self._timer_fired, key)
                case CancelTimer(key=key):
                    self._cancel_timer(key)
                case CloseSocket(code=code, reason=reason):
                    self._close_after = (code, reason)
        self.reap()

    def _cancel_timer(self, key: str) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def _timer_fired(self, key: str) -> None:
        self._timers.pop(key, None)
        self.execute(self.machine.timer_fired(key, self.loop.time()))

    def open(self, key: str, config: WireConfig, start: bool) -> None:
        idle = BehaviorSubject(True)
        spec = PipelineSpec(
            self.app.engine,
            self.app.voice(config.voice_id),
            clamp_config(config, self.app.options.max_chunk_chars),
            self.app.executor.lane(self),  # fair between connections, first chunks first
            self.scheduler,
            self.app.options.frame_ms,
            gate=self.output.output_open,
            idle=idle,
        )
        old = self.runners.pop(key, None)
        if old is not None:
            old.dispose()
        runner = PipelineRunner(key, spec, self._on_event, self._on_error)
        self.runners[key] = runner
        self.idle[key] = idle
        if start:
            self._start(runner)

    def _start(self, runner: PipelineRunner) -> None:
        """Start a pipeline; one that cannot be built fails its turn/context with an error
        instead of leaving it open forever (found by fuzzing, issue 11)."""
        try:
            runner.start()
        except Exception as exc:  # e.g. a config the operators refuse
            self._on_error(runner, exc)

    def live_keys(self) -> set[str]:
        return {k for k, p in self.machine.pipelines.items() if p.live}

    def reap(self) -> None:
        """Dispose pipelines the machine has finished; close when it asked and may."""
        live = self.live_keys()
        for key in [k for k in self.runners if k not in live]:
            self.runners.pop(key).dispose()
        for key in [k for k in self._word_runs if k not in live]:
            del self._word_runs[key]
        for key in [k for k in self.idle if k not in live]:
            self.idle.pop(key).on_completed()
        self.output.expire_clocks()
        if self._close_after is not None and not live:
            # PROTOCOL S-10, M-8: close only after the last turn's session_closed.
            code, reason = self._close_after
            self._close_after = None
            self.output.close_after(code, reason)
        self._maybe_drain_close()

    def drain(self) -> None:
        """G-11: close 1012 now if idle, else once the current work is done."""
        self.draining = True
        self._maybe_drain_close()

    def _maybe_drain_close(self) -> None:
        if self.draining and not self.output.closing and not self.busy:
            self.output.close_after(RESTART_CODE, "service restart")

    # -- pipeline events -----------------------------------------------------------------

    def _on_event(self, runner: PipelineRunner, event: RunnerEvent) -> None:
        if self.runners.get(runner.key) is not runner:
            return  # a cancelled pipeline's late result (PROTOCOL S-5)
        key = runner.key
        match event:
            case ChunkStarted(text=text):
                self.send(self.machine.chunk_started(key, text), key)
            case EncodedAudio():
                self.send(
                    self.machine.audio(key, event.data, event.encoding, event.sample_rate, event.samples), key
                )
            case ChunkWords(words=words):
                # PROTOCOL G-9, 3.3 (issue 13): only when requested (the runner checks);
                # engine timings before the audio they time, estimates after the chunk's.
                self.send(self.machine.word_timestamps(key, WordTimestampsFrame(words)), key)
            case ChunkDone():
                self.send(self.machine.chunk_done(key, event.audio_seconds, event.gen_ms), key)
            case FlushReached():
                self.execute(self.flush_done(runner))
        self._track_idle(key)

    def _on_error(self, runner: PipelineRunner, exc: Exception) -> None:
        if self.runners.get(runner.key) is not runner:
            return
        log.warning("pipeline %s failed: %s", runner.key, exc)
        err = ProtocolError(f"synthesis failed: {exc}", error_code="INTERNAL_ERROR", status=500)
        self.execute(self.machine.error(runner.key, err))

    # -- output --------------------------------------------------------------------------

    def send(self, frames: Iterable[ServerFrame], key: str | None = None) -> None:
        """Queue frames; those tagged ``key`` are dropped by its purge while unsent."""
        for frame in frames:
            seconds = frame.samples / frame.sr if isinstance(frame, AudioFrame) else 0.0
            self.output.put(QueuedFrame(self._encode(frame), key, seconds, self.lane(frame)))

    def _encode(self, frame: ServerFrame) -> str:
        text = encode(frame)
        if len(text) * 4 >= MAX_FRAME_BYTES and len(text.encode()) >= MAX_FRAME_BYTES:
            # PROTOCOL G-5: never send a frame the client cannot take.
            log.error("dropping oversized %s frame", type(frame).__name__)
            return encode(ErrorFrame("frame too large", "INTERNAL_ERROR", 500))
        return text

    def _sent(self, item: QueuedFrame) -> None:
        """A frame was handed to the socket (M-7a billing, S-8a idleness, G-11)."""
        if item.key is None:
            self._maybe_drain_close()
            return
        if item.seconds:
            self.machine.audio_sent(item.key, item.seconds)
        self._track_idle(item.key)
        self._maybe_drain_close()

    def _gate_open(self) -> None:
        for runner in list(self.runners.values()):
            runner.resume()

    def _track_idle(self, key: str) -> None:
        """S-8a: a pipeline is idle when it makes nothing and has nothing unsent."""
        subject = self.idle.get(key)
        runner = self.runners.get(key)
        if subject is None or runner is None:
            return
        idle = not runner.in_chunk and not self.output.pending(key)
        if subject.value != idle:
            subject.on_next(idle)
            self.execute(self.output_changed(key, idle))

    def queued(self) -> list[QueuedFrame]:
        """Frames waiting to be written (introspection, :meth:`TtsApp.stats`)."""
        return self.output.queued()


class StreamConnection(Connection):
    """``/ws/tts/stream``: turns, sticky config, barge-in, idle auto-flush (PROTOCOL 5)."""

    endpoint = Endpoint.STREAM
    machine: StreamServer

    def __init__(self, app: TtsApp, sock: ServerSocket) -> None:
        self.machine = StreamServer(pricing=app.pricing, idle_seconds=app.options.idle_flush_seconds)
        super().__init__(app, sock)

    def output_changed(self, key: str, idle: bool) -> list[Command]:
        # S-8a: turns speak one after another; the socket's output is what the client hears.
        busy = any(not s.value for s in self.idle.values())
        return self.machine.output_idle(not busy, self.loop.time())


class MultiConnection(Connection):
    """``/ws/tts/multi``: up to 20 concurrent contexts (PROTOCOL 6)."""

    endpoint = Endpoint.MULTI
    machine: MultiServer

    def __init__(self, app: TtsApp, sock: ServerSocket) -> None:
        self.machine = MultiServer(
            pricing=app.pricing,
            max_contexts=app.options.max_contexts,
            default_voice_id=app.catalogue.ids()[0],
            default_inactivity_timeout=app.options.inactivity_timeout,
        )
        super().__init__(app, sock)

    def buffered_chars(self, frame: ClientFrame) -> int:
        cid = getattr(frame, "context_id", None)
        runner = self.runners.get(cid) if cid is not None else None
        return runner.pending_chars if runner is not None else 0

    def output_changed(self, key: str, idle: bool) -> list[Command]:
        return self.machine.output_idle(key, idle, self.loop.time())

    @property
    def busy(self) -> bool:
        """G-11: contexts live long; only text, chunks, flushes or unsent frames are work."""
        live = [p for k, p in self.machine.pipelines.items() if p.live]
        working = any(p.pending_flushes or p.current_chunk is not None for p in live)
        runners = any(r.busy for r in self.runners.values())
        return working or runners or self.output.has_pipeline_frames()


class TtsConnection(Connection):
    """``/ws/tts``: one request at a time, answered in arrival order (PROTOCOL T-1..T-3)."""

    endpoint = Endpoint.TTS
    machine: TtsServer

    def __init__(self, app: TtsApp, sock: ServerSocket) -> None:
        self.machine = TtsServer(pricing=app.pricing)
        super().__init__(app, sock)

    def max_lead(self) -> float | None:
        return None  # no cancel on /ws/tts: send as fast as it is made

    def refuse(self, frame: ErrorFrame) -> list[Command]:
        # PROTOCOL T-2: refusals (unknown voice, buffer limit, bad JSON) are answers too and
        # wait behind the pending requests (found by tests/test_reliability_security.py).
        return self.machine.refuse(frame)

    def flush_done(self, runner: PipelineRunner) -> list[Command]:
        native = round(runner.audio_seconds * _NATIVE_RATE)
        return self.machine.flush_done(runner.key, native)


CONNECTIONS: Mapping[str, type[Connection]] = {
    Endpoint.STREAM.value: StreamConnection,
    Endpoint.MULTI.value: MultiConnection,
    Endpoint.TTS.value: TtsConnection,
}
"""The session class of each WebSocket path."""
