"""LiveKit Agents TTS plug-in: ``tts.TTS`` with ``ChunkedStream`` and ``SynthesizeStream``.

Install with ``pip install "rxtts[livekit]"`` (in an environment of its own beside the
rxtts dev pins, see the README). Use it where any LiveKit TTS goes::

    from rxtts.integrations.livekit import TTS

    session = AgentSession(stt=..., llm=..., tts=TTS())          # embedded local server
    session = AgentSession(..., tts=TTS(api_key="eu-...", voice_id=1071))   # hosted
    session = AgentSession(..., tts=TTS(url="ws://127.0.0.1:8000"))         # `rxtts serve`

One TTS instance keeps one ``/ws/tts/multi`` socket for its whole life; every
``stream()`` / ``synthesize()`` is one context on it (PROTOCOL 6):

- ``push_text`` sends each token at once (the server segments and schedules chunks);
  ``flush()`` flushes the context (one audio segment per flush, ended by its ``final``);
  ``end_input()`` flushes and closes the context gracefully (the stream ends with the
  server's ``context_closed``, the slot is free).
- ``aclose()`` before the end is a barge-in: ``close_context`` with ``immediate: true``,
  waiting (at most ``cancel_timeout`` s) for the server's ``context_closed`` ack; late
  frames of that context are dropped, and the socket stays open for the next turn.
  (LiveKit's Cartesia plug-in throws its socket away on every interruption.)
- Word timestamps become timed transcripts (``TimedString``, seconds from the
  segment's first audio) when ``aligned_transcript`` is on.

``aligned_transcript``: LiveKit trusts a TTS with this capability to time the
transcript it shows, so it is on only where the times are real: the hosted service, and
an embedded server with the Piper engine (its word times come from the voice's own
phoneme durations, ``score`` 1.0). Elsewhere it is off (a server at ``url=`` may run an
engine that only *estimates*: tone or espeak, ``score`` 0.5) and LiveKit paces the
transcript itself; pass ``aligned_transcript=True`` for an ``rxtts serve --engine piper``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

try:
    from livekit.agents import (
        APIConnectionError,
        APIConnectOptions,
        APIError,
        APITimeoutError,
        tts,
        utils,
    )
    from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS
    from livekit.agents.voice.io import TimedString
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "rxtts.integrations.livekit needs LiveKit Agents: pip install 'rxtts[livekit]' "
        "(in an environment of its own, see the README)"
    ) from exc

from rxtts.client.connector import resolve
from rxtts.client.multi_speak import fails_every_context
from rxtts.events import (
    AudioChunk,
    ContextClosed,
    ContextError,
    ContextTimeout,
    Final,
    GenerationStarted,
    TtsEvent,
    WordTimestamps,
)
from rxtts.integrations._backend import SUPPORTED_RATES, Backend, WordClock, iso_language

DEFAULT_CANCEL_TIMEOUT = 1.0
"""Seconds ``aclose()`` waits for the server's ``context_closed`` after a barge-in."""


class TTS(tts.TTS):
    """rxtts / KugelAudio speech for LiveKit Agents (see the module docstring).

    Args:
        url: Server base URL; ``None``: ``RXTTS_URL``, the hosted service with an API
            key, else an embedded local server (``rxtts.connect()`` rules).
        api_key: KugelAudio API key (``None``: ``KUGELAUDIO_API_KEY``).
        region: ``"eu"`` for the hosted EU endpoint.
        voice_id: Voice (local servers: 1071 when not given; required when hosted).
        language: ISO 639-1 language (``"en"``; ``"en-US"`` is cut to ``"en"``).
        model: Model id (the local server accepts and ignores it).
        engine: Engine of the embedded server (``"best"``, ``"piper"``, ``"espeak"``,
            ``"tone"``).
        sample_rate: Output rate: 8000, 16000, 22050 or 24000.
        aligned_transcript: Report word timestamps as an aligned transcript; default:
            True for the hosted service and an embedded Piper server (real times), False
            for a server at ``url=`` (its engine may only estimate).
        cancel_timeout: Seconds a barge-in waits for the server's ack.
        server_options: Options of the embedded server (``ServerOptions`` fields).
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        api_key: str | None = None,
        region: str | None = None,
        voice_id: int | None = None,
        language: str | None = None,
        model: str | None = None,
        engine: str = "best",
        sample_rate: int = 24000,
        aligned_transcript: bool | None = None,
        cancel_timeout: float = DEFAULT_CANCEL_TIMEOUT,
        server_options: Mapping[str, Any] | None = None,
    ) -> None:
        if sample_rate not in SUPPORTED_RATES:
            raise ValueError(f"sample_rate must be one of {SUPPORTED_RATES}, got {sample_rate}")
        if aligned_transcript is None:
            aligned_transcript = _real_word_times(resolve(url, api_key, region).source, engine)
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=True, aligned_transcript=aligned_transcript),
            sample_rate=sample_rate,
            num_channels=1,
        )
        self._language = iso_language(language)
        self._model = model
        self._cancel_timeout = cancel_timeout
        self._backend = Backend(
            url=url,
            api_key=api_key,
            region=region,
            engine=engine,
            voice_id=voice_id,
            server_options=server_options,
            on_event=self._route,
        )
        self._queues: dict[str, asyncio.Queue[TtsEvent]] = {}
        self._lock: asyncio.Lock | None = None
        self._reopen = False

    # -- properties -----------------------------------------------------------------------

    @property
    def model(self) -> str:
        """Model id (``"unknown"`` when the server's default is used)."""
        return self._model or "unknown"

    @property
    def provider(self) -> str:
        """``"rxtts"``."""
        return "rxtts"

    @property
    def backend(self) -> Backend:
        """The rxtts client and multi-context session behind this TTS."""
        return self._backend

    # -- options and lifecycle ------------------------------------------------------------

    def update_options(self, *, voice_id: int | None = None, language: str | None = None) -> None:
        """Voice and language of later streams (a language change opens a new socket)."""
        if voice_id is not None:
            self._backend.voice_id = voice_id
        if language is not None and iso_language(language) != self._language:
            self._language = iso_language(language)
            self._reopen = True

    def prewarm(self) -> None:
        """Open the socket (and the embedded server) in the background."""
        task = asyncio.get_running_loop().create_task(self._ensure())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _ensure(self) -> Backend:
        """The backend with an open session (opened, or reopened after a loss)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._reopen or self._backend.needs_reopen:
                self._reopen = False
                await self._backend.open(
                    sample_rate=self.sample_rate,
                    language=self._language,
                    model_id=self._model,
                    word_timestamps=self.capabilities.aligned_transcript,
                )
        return self._backend

    async def aclose(self) -> None:
        """Close the socket and the embedded server, if one was started."""
        await self._backend.aclose()

    # -- streams --------------------------------------------------------------------------

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> ChunkedStream:
        """Speak a whole text (one context, closed gracefully after it)."""
        return ChunkedStream(tts=self, input_text=text, conn_options=conn_options)

    def stream(self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> SynthesizeStream:
        """Speak text pushed token by token (one context per stream)."""
        return SynthesizeStream(tts=self, conn_options=conn_options)

    # -- event routing --------------------------------------------------------------------

    def _register(self, context_id: str) -> asyncio.Queue[TtsEvent]:
        queue: asyncio.Queue[TtsEvent] = asyncio.Queue()
        self._queues[context_id] = queue
        return queue

    def _unregister(self, context_id: str) -> None:
        self._queues.pop(context_id, None)

    def _route(self, event: TtsEvent) -> None:
        cid = event.context_id
        if cid is not None:
            queue = self._queues.get(cid)
            if queue is not None:
                queue.put_nowait(event)
        elif isinstance(event, ContextError) and fails_every_context(event.error):
            for queue in self._queues.values():
                queue.put_nowait(event)


class _Speech:
    """One context: send text, turn its events into emitter calls, cancel with an ack."""

    def __init__(self, tts: TTS, emitter: tts.AudioEmitter, *, streaming: bool) -> None:
        self.tts = tts
        self.emitter = emitter
        self.streaming = streaming
        self.context_id = utils.shortuuid("rx-")
        self.created = False
        self.closed = False
        self.released = False
        self.ended_input = False
        self._dirty = False  # text sent since the last flush
        self._flushes = 0
        self._finals = 0
        self.backend: Backend | None = None
        self._queue = tts._register(self.context_id)
        self._clock = WordClock()
        self._segment: int | None = None
        self._segment_start = 0.0
        self._segments_done: set[int] = set()

    async def start(self) -> None:
        self.backend = await self.tts._ensure()
        self.emitter.initialize(
            request_id=self.context_id,
            sample_rate=self.tts.sample_rate,
            num_channels=1,
            mime_type="audio/pcm",
            stream=self.streaming,
        )

    def send(self, text: str) -> None:
        assert self.backend is not None
        if not self.created:
            self.created = True
            self.backend.create(self.context_id)
        self.backend.send(self.context_id, text)
        self._dirty = True

    def flush(self) -> None:
        """End of a segment: the server speaks the buffer, then sends ``final``."""
        if self._dirty and self.backend is not None:
            self._dirty = False
            self._flushes += 1
            self.backend.flush(self.context_id)

    def end(self) -> None:
        """No more text: flush; the last ``final`` releases the context (then it closes)."""
        self.ended_input = True
        self.flush()
        if not self.created:  # no text at all: nothing was sent, nothing will come
            self._queue.put_nowait(ContextClosed(None, context_id=self.context_id))
        else:
            self._release_if_done()

    def _release_if_done(self) -> None:
        if self.ended_input and self._finals >= self._flushes and not self.released:
            self.released = True
            assert self.backend is not None
            self.backend.release(self.context_id)

    async def receive(self, timeout: float) -> None:
        """Deliver the context's events until its ``context_closed``.

        Once the input has ended, the server must say something within ``timeout``
        seconds (before that, silence is the LLM thinking).
        """
        while True:
            if self.ended_input:
                try:
                    # asyncio.timeout, not wait_for: wait_for (< 3.12) swallows a cancel
                    # that races a ready item, and aclose() would then wait for the end
                    async with asyncio.timeout(timeout):
                        event = await self._queue.get()
                except TimeoutError:
                    raise APITimeoutError(f"rxtts: no answer for {timeout} s") from None
            else:
                event = await self._queue.get()
            if isinstance(event, ContextClosed):
                self.closed = True
                self._end_segment()
                return
            if isinstance(event, ContextTimeout):
                self.closed = True
                raise APITimeoutError("rxtts: the context timed out on the server")
            if isinstance(event, ContextError):
                if event.context_id is not None:
                    self.closed = True
                raise APIConnectionError(f"rxtts: {event.error}")
            self._deliver(event)

    def _deliver(self, event: TtsEvent) -> None:
        words = self._clock.on_event(event)
        if isinstance(event, (GenerationStarted, AudioChunk)):
            self._begin_segment(event.turn)
        if isinstance(event, AudioChunk):
            audio = event.audio if event.encoding == "pcm_s16le" else event.samples.tobytes()
            self.emitter.push(audio)
        elif isinstance(event, WordTimestamps) and self.tts.capabilities.aligned_transcript:
            base = self._segment_start
            self.emitter.push_timed_transcript(
                [
                    TimedString(text=f"{w.word} ", start_time=w.start - base, end_time=w.end - base)
                    for w in words
                ]
            )
        elif isinstance(event, Final):
            self._end_segment()
            self._finals += 1
            self._release_if_done()

    def _begin_segment(self, turn: int | None) -> None:
        utterance = turn or 0
        if self._segment == utterance or utterance in self._segments_done:
            return
        self._end_segment()
        self._segment = utterance
        self._segment_start = self._clock.audio_seconds
        if self.streaming:
            self.emitter.start_segment(segment_id=f"{self.context_id}-{utterance}")

    def _end_segment(self) -> None:
        if self._segment is None:
            return
        self._segments_done.add(self._segment)
        self._segment = None
        if self.streaming:
            self.emitter.end_segment()

    async def finish(self) -> None:
        """Always runs: an unfinished context is a barge-in (immediate close, ack)."""
        self.tts._unregister(self.context_id)
        if self.created and not self.closed and not self.released and self.backend is not None:
            self.closed = True
            ack = self.backend.cancel(self.context_id)
            # Until the ack the slot stays taken on the client too (admission waits for
            # it), so returning after cancel_timeout never leaks a slot.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.tts._cancel_timeout):
                    await asyncio.shield(ack)


class ChunkedStream(tts.ChunkedStream):
    """``TTS.synthesize(text)``: one context, the whole text flushed at once."""

    def __init__(self, *, tts: TTS, input_text: str, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._rx_tts = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        speech = _Speech(self._rx_tts, output_emitter, streaming=False)
        try:
            await speech.start()
            if self._input_text.strip():
                speech.send(self._input_text)
            speech.end()
            await speech.receive(self._conn_options.timeout)
        except APIError:
            raise
        except Exception as e:
            raise APIConnectionError(f"rxtts: {e}") from e
        finally:
            await speech.finish()


class SynthesizeStream(tts.SynthesizeStream):
    """``TTS.stream()``: tokens in as the LLM produces them, one context per stream."""

    def __init__(self, *, tts: TTS, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, conn_options=conn_options)
        self._rx_tts = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        speech = _Speech(self._rx_tts, output_emitter, streaming=True)

        async def input_task() -> None:
            async for data in self._input_ch:
                if isinstance(data, self._FlushSentinel):
                    speech.flush()
                elif data:
                    self._mark_started()
                    speech.send(data)
            speech.end()

        try:
            await speech.start()
            tasks = [
                asyncio.create_task(input_task()),
                asyncio.create_task(speech.receive(self._conn_options.timeout)),
            ]
            try:
                await asyncio.gather(*tasks)
            finally:
                await utils.aio.gracefully_cancel(*tasks)
        except APIError:
            raise
        except Exception as e:
            raise APIConnectionError(f"rxtts: {e}") from e
        finally:
            await speech.finish()


__all__ = ["DEFAULT_CANCEL_TIMEOUT", "TTS", "ChunkedStream", "SynthesizeStream"]


def _real_word_times(source: str, engine: str) -> bool:
    """Whether the server's word times come from an aligner (see the module docstring)."""
    if source == "hosted":
        return True
    if source != "embedded":
        return False
    from rxtts.server.engines.piper import piper_available

    return engine == "piper" or (engine == "best" and piper_available())
