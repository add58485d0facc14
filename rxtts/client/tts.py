"""``TTS``: what :func:`rxtts.connect` returns.

- ``tts.streaming_session(...)`` -> :class:`~rxtts.client.session.StreamingSession` (``/ws/tts/stream``).
- ``tts.stream(text)`` -> :class:`AudioStream`, both an ``Observable[TtsEvent]`` and an
  async iterator of :class:`~rxtts.events.AudioChunk`; ``await tts.generate(text)`` ->
  :class:`GeneratedAudio`. Both use one pooled ``/ws/tts`` socket (PROTOCOL 4, 10).
- ``tts.multi_context_session(...)`` -> ``rxtts.client.multi.MultiContextSession``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxtts.client.callbacks import SessionCallbacks
from rxtts.client.connection import Link, Loss, deliver, finish
from rxtts.client.session import StreamingSession
from rxtts.config import StreamConfig
from rxtts.errors import MissingVoiceError, RxTtsError
from rxtts.events import (
    AudioChunk,
    Final,
    SessionUsage,
    TtsEvent,
    TurnMetrics,
    WordTimestamp,
    WordTimestamps,
)
from rxtts.protocol.client import TtsClient
from rxtts.protocol.frames import Endpoint, ServerFrame
from rxtts.transport import ReconnectPolicy, Transport, TransportOptions, build_url

if TYPE_CHECKING:
    from rxtts.client.multi import MultiContextSession
    from rxtts.server.embedded import RunningServer

log = logging.getLogger("rxtts.client.tts")


# -- results ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class GeneratedAudio:
    """The whole audio of one ``generate`` request."""

    samples: npt.NDArray[np.int16]
    """Mono int16 samples (G.711 output decoded)."""
    sample_rate: int
    """Rate of the first frame (JS ``generate()``)."""
    usage: SessionUsage | None = None
    """Billing from the ``final`` frame."""
    frames: int = 0
    """Audio frames received."""
    stats: Mapping[str, Any] = field(default_factory=dict)
    """Server statistics of ``final`` (``total_samples``, ``dur_ms``, ``gen_ms``, ``rtf``...)."""
    word_timestamps: tuple[WordTimestamp, ...] = ()
    """Aligned words, when requested."""
    ttfb: float | None = None
    """Seconds from sending the request to the first audio frame."""

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return len(self.samples) / self.sample_rate if self.sample_rate else 0.0

    def to_wav(self, path: str) -> None:
        """Write the audio as a 16-bit WAV file."""
        from rxtts.audio.wav import write_wav

        write_wav(path, self.samples, self.sample_rate)


def generated_audio(events: list[TtsEvent], started_at: float | None = None) -> GeneratedAudio:
    """Assemble a :class:`GeneratedAudio` from one request's events."""
    chunks = [e for e in events if isinstance(e, AudioChunk)]
    final = next((e for e in events if isinstance(e, Final)), None)
    words = tuple(w for e in events if isinstance(e, WordTimestamps) for w in e.words)
    samples = np.concatenate([c.samples for c in chunks]) if chunks else np.zeros(0, np.int16)
    ttfb = chunks[0].at - started_at if chunks and started_at is not None else None
    return GeneratedAudio(
        samples=samples.astype(np.int16, copy=False),
        sample_rate=chunks[0].sample_rate if chunks else 0,
        usage=final.usage if final else None,
        frames=len(chunks),
        stats=dict(final.stats) if final else {},
        word_timestamps=words,
        ttfb=ttfb,
    )


class AudioStream(Observable[TtsEvent]):
    """One ``/ws/tts`` request: an observable of its events and an async iterator of audio.

    Subscribing (or iterating) sends the request; each subscription is its own request::

        result: --a--a--a--w--F|     (a AudioChunk, w WordTimestamps, F Final)

    ``async for chunk in tts.stream(text)`` yields only the :class:`AudioChunk` events.
    """

    def __aiter__(self) -> AsyncIterator[AudioChunk]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[AudioChunk]:
        queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
        sub = self.subscribe(
            lambda e: queue.put_nowait((0, e)),
            lambda err: queue.put_nowait((1, err)),
            lambda: queue.put_nowait((2, None)),
        )
        try:
            while True:
                kind, value = await queue.get()
                if kind == 0:
                    if isinstance(value, AudioChunk):
                        yield value
                elif kind == 1:
                    raise value
                else:
                    return
        finally:
            sub.dispose()


# -- the pooled /ws/tts socket ----------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Request:
    text: str
    config: StreamConfig
    observer: abc.ObserverBase[TtsEvent]
    audio_frames: int = 0
    replays: int = 0
    abandoned: bool = False


class TtsPool:
    """One pooled ``/ws/tts`` socket; requests are answered in order (PROTOCOL T-2).

    A disposed request's remaining frames are dropped until its ``final``. After a
    1012/1013 close a request that got no audio is re-issued once (JS semantics).
    """

    def __init__(
        self,
        url: str,
        loop: asyncio.AbstractEventLoop,
        options: TransportOptions | None = None,
        reconnect: ReconnectPolicy | None = None,
        transport: Transport | None = None,
    ) -> None:
        self._loop = loop
        self._link = Link(
            url,
            loop,
            self,
            options=options or TransportOptions(ping_interval=20.0, ping_timeout=20.0),  # PY pooled tts
            transport=transport,
            policy=reconnect,
            name="rxtts-tts",
        )
        self._client = TtsClient()
        self._requests: dict[int, _Request] = {}

    @property
    def is_connected(self) -> bool:
        """Whether the pooled socket is open."""
        return self._link.is_connected

    def events(self, text: str, config: StreamConfig) -> AudioStream:
        """The request as a cold observable (see :class:`AudioStream`)."""

        def subscribe(
            observer: abc.ObserverBase[TtsEvent], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            req = _Request(text, config, observer)
            self._link.on_loop(self._start, req)
            return Disposable(lambda: self._link.on_loop(self._abandon, req))

        return AudioStream(subscribe)

    async def connect(self) -> None:
        """Open the pooled socket now (PY/JS pre-open it)."""
        await self._link.connect()

    async def close(self) -> None:
        """Close the pooled socket; open requests fail."""
        await self._link.close()

    def _start(self, req: _Request) -> None:
        task = self._loop.create_task(self._issue(req))
        task.add_done_callback(lambda t: None if t.cancelled() else t.exception())

    async def _issue(self, req: _Request) -> None:
        try:
            await self._link.connect()
        except Exception as exc:
            self._fail(req, exc)
            return
        if req.abandoned:
            return
        rid, frames = self._client.request(req.text, req.config)
        self._requests[rid] = req
        self._link.send(frames)

    def _abandon(self, req: _Request) -> None:
        req.abandoned = True  # /ws/tts has no cancel: its frames are dropped until final

    def _fail(self, req: _Request, err: Exception) -> None:
        if isinstance(err, MissingVoiceError) and req.config.voice_id is None:
            err = MissingVoiceError(
                f"{err.message}: no voice_id was given; pass voice_id= to rxtts.connect(), "
                "tts.generate() or tts.stream() (an rxtts server speaks 1071, 1072 and 1073; "
                "GET /v1/voices lists the voices of any server)",
                status=err.status,
                error_code=err.error_code,
                request_id=err.request_id,
            )
        if not req.abandoned:
            req.abandoned = True
            finish(req.observer, err, "tts.stream()")

    # -- LinkOwner ----------------------------------------------------------------------

    def on_open(self) -> None:
        pass

    def on_open_failed(self, error: RxTtsError) -> None:
        pass  # each waiting request gets the error from its own connect()

    def on_frame(self, frame: ServerFrame) -> None:
        for rid, out in self._client.receive(frame):
            req = self._requests.get(rid) if rid is not None else None
            if isinstance(out, Exception):
                if rid is not None:
                    self._requests.pop(rid, None)
                if req is not None:
                    self._fail(req, out)
                continue
            if req is None:
                continue
            if isinstance(out, AudioChunk):
                req.audio_frames += 1
            ended = isinstance(out, Final)
            if ended and rid is not None:
                del self._requests[rid]
            if req.abandoned:
                continue
            if not deliver(req.observer, out, "tts.stream()"):
                req.abandoned = True  # the subscriber policy: it gets nothing more
                continue
            if ended:
                req.abandoned = True
                finish(req.observer, None, "tts.stream()")

    def on_lost(self, loss: Loss) -> None:
        requests = list(self._requests.values())
        self._requests.clear()
        self._client.pending.clear()
        policy = self._link.policy
        for req in requests:
            if req.abandoned:
                continue
            if loss.restart and req.audio_frames == 0 and req.replays < policy.max_replays:
                req.replays += 1  # PROTOCOL 10: JS re-issues an audio-less request once
                self._loop.call_later(policy.retry_after, self._start, req)
                continue
            self._fail(req, loss.error)


# -- the client object ----------------------------------------------------------------------


class TTS:
    """A connection to a KugelAudio-compatible server: the hosted service or our own.

    Use it inside the loop that created it; it is returned by :func:`rxtts.connect`.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        default_config: StreamConfig | None = None,
        options: TransportOptions | None = None,
        transport: Transport | None = None,
        reconnect: ReconnectPolicy | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        server: RunningServer | None = None,
    ) -> None:
        self.base_url = base_url
        """HTTP(S) or WS(S) base URL of the server."""
        self.api_key = api_key
        """API key (region prefix included; stripped on the wire)."""
        self.default_config = default_config or StreamConfig()
        """Config sessions and requests start from."""
        self.options = options or TransportOptions()
        """Socket settings of streaming sessions."""
        self.transport = transport
        """How sockets are opened (``None``: real WebSockets; see :mod:`rxtts.transport`)."""
        self.reconnect = reconnect or ReconnectPolicy()
        """Replay policy after 1012/1013."""
        self.loop = loop or asyncio.get_running_loop()
        """The loop every socket of this client runs on."""
        self.server = server
        """The embedded local server, when :func:`rxtts.connect` started one."""
        self._pool = TtsPool(
            self.url_for(Endpoint.TTS), self.loop, reconnect=self.reconnect, transport=transport
        )
        self._sessions: weakref.WeakSet[Any] = weakref.WeakSet()

    @property
    def is_local(self) -> bool:
        """True when this client started its own embedded server."""
        return self.server is not None

    def url_for(self, endpoint: Endpoint | str, *, paced: bool = True) -> str:
        """The WebSocket URL of ``endpoint`` with auth (contains the key: do not log it).

        ``paced=False`` adds ``pace=off``: an rxtts server then sends audio at engine
        speed instead of at most ``--max-lead-seconds`` ahead of real time (for clients
        that write files, not play). Servers that do not know the parameter ignore it
        (PROTOCOL G-1: unknown query parameters are ignored).
        """
        return build_url(self.base_url, endpoint, self.api_key, None if paced else {"pace": "off"})

    def config(self, config: StreamConfig | None = None, **changes: Any) -> StreamConfig:
        """``config`` (else the default) with ``changes``; ``preset=`` picks a chunking preset."""
        base = config or self.default_config
        return base.replace(**changes) if changes else base

    def streaming_session(
        self,
        config: StreamConfig | None = None,
        *,
        on_chunk: Callable[[AudioChunk], None] | None = None,
        on_chunk_complete: Callable[[int, float, float], None] | None = None,
        on_final: Callable[[Final], None] | None = None,
        on_session_closed: Callable[[float], None] | None = None,
        on_interrupted: Callable[[], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
        on_word_timestamps: Callable[[tuple[WordTimestamp, ...]], None] | None = None,
        on_metrics: Callable[[TurnMetrics], None] | None = None,
        paced: bool = True,
        **config_changes: Any,
    ) -> StreamingSession:
        """A new streaming session (not yet connected: ``await session.connect()``, ``async
        with``, or just ``speak``). ``config_changes`` are :class:`StreamConfig` fields,
        e.g. ``voice_id=1071, auto_mode=True``, or ``preset="low-latency"``.

        ``paced=False``: the audio is for a file, not a speaker; an rxtts server sends
        it at engine speed (see :meth:`url_for`)."""
        callbacks = SessionCallbacks(
            on_chunk=on_chunk,
            on_chunk_complete=on_chunk_complete,
            on_final=on_final,
            on_session_closed=on_session_closed,
            on_interrupted=on_interrupted,
            on_error=on_error,
            on_word_timestamps=on_word_timestamps,
            on_metrics=on_metrics,
        )
        session = StreamingSession(
            self.url_for(Endpoint.STREAM, paced=paced),
            self.config(config, **config_changes),
            callbacks=callbacks,
            options=self.options,
            transport=self.transport,
            reconnect=self.reconnect,
            loop=self.loop,
        )
        self._sessions.add(session)
        return session

    def multi_context_session(self, *args: Any, **kwargs: Any) -> MultiContextSession:
        """A multi-context session on ``/ws/tts/multi`` (see :mod:`rxtts.client.multi`)."""
        from rxtts.client.multi import MultiContextSession

        session = MultiContextSession(self, *args, **kwargs)
        self._sessions.add(session)
        return session

    def stream(self, text: str, config: StreamConfig | None = None, **config_changes: Any) -> AudioStream:
        """Speak a whole text over the pooled ``/ws/tts`` socket (see :class:`AudioStream`)."""
        return self._pool.events(text, self.config(config, **config_changes))

    async def generate(
        self, text: str, config: StreamConfig | None = None, **config_changes: Any
    ) -> GeneratedAudio:
        """Speak a whole text and return all of its audio."""
        events: list[TtsEvent] = []
        done: asyncio.Future[None] = self.loop.create_future()

        def on_error(err: Exception) -> None:
            if not done.done():
                done.set_exception(err)

        def on_completed() -> None:
            if not done.done():
                done.set_result(None)

        started = time.monotonic()
        sub = self.stream(text, config, **config_changes).subscribe(events.append, on_error, on_completed)
        try:
            await done
        finally:
            sub.dispose()
        return generated_audio(events, started)

    async def aclose(self) -> None:
        """Close every session, the pooled socket and the embedded server."""
        for session in list(self._sessions):
            with contextlib.suppress(Exception):
                await session.close()
        self._sessions.clear()
        await self._pool.close()
        if self.server is not None:
            server, self.server = self.server, None
            await asyncio.get_running_loop().run_in_executor(None, server.stop)

    async def __aenter__(self) -> TTS:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


__all__ = ["TTS", "AudioStream", "GeneratedAudio", "TtsPool", "generated_audio"]
