"""Pipecat TTS service: raw LLM tokens in, one multi-context context per LLM turn.

Install with ``pip install "rxtts[pipecat]"`` (a Pipecat release needs its own
environment: see the README). Use it where any Pipecat TTS goes::

    from rxtts.integrations.pipecat import RxttsTTSService

    tts = RxttsTTSService()                       # embedded local server, no key
    tts = RxttsTTSService(api_key="eu-...", voice_id=1071)        # hosted service
    tts = RxttsTTSService(url="ws://127.0.0.1:8000")              # `rxtts serve`
    pipeline = Pipeline([transport.input(), stt, user_agg, llm, tts, transport.output(), ...])

What it does, on Pipecat's :class:`~pipecat.services.tts_service.WebsocketTTSService`:

- Token aggregation mode by default (``TextAggregationMode.TOKEN``): every LLM token
  goes to the server as it arrives; the server segments sentences and schedules chunks
  (PROTOCOL 10), so nothing waits for a sentence end on the client.
- One ``/ws/tts/multi`` socket for the whole call; one context per LLM turn (Pipecat's
  turn context id). The end of the turn sends ``flush`` and a graceful ``close_context``
  at once, so the slot frees itself when the turn's audio is done.
- Barge-in (``InterruptionFrame``): every interruptible context still open on the
  server, including one whose text never produced an audio context yet, is closed with
  ``immediate: true``; the protocol core drops its late frames and the server's
  ``context_closed`` frees the slot (awaitable with :meth:`RxttsTTSService.wait_closed`).
  Pipecat's ElevenLabs users hit the 5-context cap by fire-and-forget closes; here a new
  turn waits for a slot instead of failing (client-side admission, PROTOCOL M-9).
- Audio frames and word timestamps go into Pipecat's audio context of their turn in
  arrival (= playback) order; frames of closed contexts are dropped.
- Keepalive: ``text: ""`` on open contexts every ``keepalive_interval`` seconds (the
  socket itself is kept by WebSocket pings). Reconnect: a lost socket ends the receive
  loop and Pipecat's reconnect logic opens a new session.

Hosted service or local server follow :func:`rxtts.connect`: ``url=`` / ``RXTTS_URL``,
else the hosted service when ``api_key=`` / ``KUGELAUDIO_API_KEY`` is set, else an
embedded local server on 127.0.0.1 (``engine=`` picks piper, espeak or tone).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Mapping
from typing import Any

try:
    from pipecat.frames.frames import (
        ErrorFrame,
        Frame,
        InterruptionFrame,
        StartFrame,
        TTSAudioRawFrame,
        TTSStartedFrame,
        TTSStoppedFrame,
    )
    from pipecat.processors.frame_processor import FrameDirection
    from pipecat.services.settings import TTSSettings
    from pipecat.services.tts_service import TextAggregationMode, WebsocketTTSService
    from pipecat.transcriptions.language import Language
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "rxtts.integrations.pipecat needs Pipecat: pip install 'rxtts[pipecat]' "
        "(in an environment of its own, see the README)"
    ) from exc

from rxtts.client.multi_speak import fails_every_context
from rxtts.events import (
    AudioChunk,
    ContextClosed,
    ContextError,
    ContextTimeout,
    Final,
    TtsEvent,
    WordTimestamps,
)
from rxtts.integrations._backend import Backend, WordClock, iso_language, wire_rate

_LOST = object()
"""Queue marker: the session's socket is gone (ends the receive loop -> reconnect)."""


class RxttsTTSService(WebsocketTTSService):
    """rxtts / KugelAudio speech for Pipecat (see the module docstring).

    Args:
        url: Server base URL (``ws://``/``http://``...); ``None``: ``RXTTS_URL``, the
            hosted service with an API key, else an embedded local server.
        api_key: KugelAudio API key (``None``: ``KUGELAUDIO_API_KEY``).
        region: ``"eu"`` for the hosted EU endpoint.
        voice_id: Voice (embedded server: 1071 when not given). Changeable at run time
            with ``TTSUpdateSettingsFrame(delta=TTSSettings(voice="1072"))``.
        language: ISO 639-1 language (``"en"``) or a Pipecat ``Language``.
        model: Model id (the local server accepts and ignores it).
        engine: Engine of the embedded server: ``"best"``, ``"piper"``, ``"espeak"``,
            ``"tone"``.
        sample_rate: Output rate; ``None``: the pipeline's. Rates the server does not send
            (e.g. 48000) are produced at 24000 and resampled here.
        text_aggregation_mode: ``TOKEN`` (default: the server segments) or ``SENTENCE``.
        keepalive_interval: Seconds between keep-alives of open contexts.
        inactivity_timeout: Seconds the server keeps a silent context (sent on the
            socket's first context; keep-alives reset it).
        server_options: Options of the embedded server (``ServerOptions`` fields).
        **kwargs: Further :class:`WebsocketTTSService` arguments.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        api_key: str | None = None,
        region: str | None = None,
        voice_id: int | None = None,
        language: Language | str | None = None,
        model: str | None = None,
        engine: str = "best",
        sample_rate: int | None = None,
        text_aggregation_mode: TextAggregationMode = TextAggregationMode.TOKEN,
        keepalive_interval: float = 10.0,
        inactivity_timeout: float = 20.0,
        server_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        settings = TTSSettings(
            model=model,
            voice=str(voice_id) if voice_id is not None else None,
            language=iso_language(language),
        )
        super().__init__(
            text_aggregation_mode=text_aggregation_mode,
            push_text_frames=False,  # words come from the server's timestamps
            push_stop_frames=False,  # TTSStoppedFrame on the context's final
            sample_rate=sample_rate,
            settings=settings,
            reuse_context_id_within_turn=True,
            **kwargs,
        )
        self._backend = Backend(
            url=url,
            api_key=api_key,
            region=region,
            engine=engine,
            voice_id=voice_id,
            server_options=server_options,
            on_event=self._on_backend_event,
        )
        self._keepalive_interval = keepalive_interval
        self._inactivity_timeout = inactivity_timeout
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._receive_task: asyncio.Task[None] | None = None
        self._clocks: dict[str, WordClock] = {}
        self._server_contexts: dict[str, str] = {}
        """Contexts holding a server slot, by id: ``"open"`` (taking text), ``"flushed"``
        (turn ended, audio playing), ``"released"`` (final received, close sent),
        ``"cancelled"`` (barge-in sent), ``"failed"`` (refused by the server); removed
        on ``context_closed``."""
        self._wire_rate = 0

    # -- public helpers -------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """The rxtts client and session behind this service."""
        return self._backend

    @property
    def open_contexts(self) -> dict[str, str]:
        """Contexts holding a server slot, with their state (a copy)."""
        return dict(self._server_contexts)

    async def wait_closed(self, timeout: float = 5.0) -> None:
        """Wait until every context closed by a barge-in was acknowledged by the server.

        Raises:
            TimeoutError: an ack did not come within ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._backend.pending_closes:
            if loop.time() > deadline:
                raise TimeoutError(f"no context_closed for {self._backend.pending_closes}")
            await asyncio.sleep(0.01)

    def can_generate_metrics(self) -> bool:
        """TTFB and usage metrics are reported."""
        return True

    def language_to_service_language(self, language: Language) -> str | None:
        """Pipecat ``Language`` -> ISO 639-1 (``en-US`` -> ``en``)."""
        return iso_language(language)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, frame: StartFrame) -> None:
        """Pipeline start: learn the output rate, open the socket."""
        await super().start(frame)
        self._wire_rate = wire_rate(self.sample_rate)
        await self._connect()

    async def cleanup(self) -> None:
        """Teardown: close the socket and the embedded server, if one was started."""
        await super().cleanup()
        await self._backend.aclose()

    async def _connect(self) -> None:
        await super()._connect()
        await self._connect_websocket()
        if self._backend.is_connected and self._receive_task is None:
            self._receive_task = self.create_task(self._receive_task_handler(self._report_error))
        if self._backend.is_connected:
            self._create_keepalive_task(self._keepalive_interval)

    async def _disconnect(self) -> None:
        await super()._disconnect()
        if self._receive_task is not None:
            await self.cancel_task(self._receive_task)
            self._receive_task = None
        await self._cancel_keepalive_task()
        await self._disconnect_websocket()

    async def _connect_websocket(self) -> None:
        if not self._backend.needs_reopen:
            return
        try:
            self._server_contexts.clear()
            self._clocks.clear()
            language = self._settings.language
            model = self._settings.model
            await self._backend.open(
                sample_rate=self._wire_rate or wire_rate(self.sample_rate),
                language=iso_language(language) if isinstance(language, str) else None,
                model_id=model if isinstance(model, str) else None,
                word_timestamps=True,
                inactivity_timeout=self._inactivity_timeout,
            )
            await self._call_event_handler("on_connected")
        except Exception as e:
            await self.push_error(error_msg=f"rxtts: could not connect: {e}", exception=e)
            await self._call_event_handler("on_connection_error", f"{e}")

    async def _disconnect_websocket(self) -> None:
        try:
            await self.stop_all_metrics()
            await self._backend.close_session()
        finally:
            self._server_contexts.clear()
            self._clocks.clear()
            await self._call_event_handler("on_disconnected")

    async def _verify_connection(self) -> bool:
        return self._backend.is_connected

    def _is_keepalive_ready(self) -> bool:
        return self._backend.is_connected

    async def _send_keepalive(self) -> None:
        for cid, state in list(self._server_contexts.items()):
            if state in ("open", "flushed"):
                self._backend.keep_alive(cid)

    async def _update_settings(self, delta: Any) -> dict[str, Any]:
        changed: dict[str, Any] = await super()._update_settings(delta)
        if "voice" in changed:
            voice = self._settings.voice
            self._backend.voice_id = int(voice) if isinstance(voice, str) and voice else None
        if changed.keys() & {"language", "model"}:
            # Session config rides on the socket's first context (PROTOCOL 6.3).
            await self._disconnect()
            await self._connect()
        return changed

    # -- text in --------------------------------------------------------------------------

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        """Send one token (or sentence) of the turn ``context_id``; audio comes later."""
        if self._backend.needs_reopen:  # never opened, or an idle socket was lost
            if self._receive_task is None:
                await self._connect()
            else:
                await self._connect_websocket()
        if self._backend.session is None:
            yield ErrorFrame(error="rxtts: not connected")
            return
        try:
            if not self.audio_context_available(context_id):
                await self.create_audio_context(context_id)
                await self.start_ttfb_metrics()
                yield TTSStartedFrame(context_id=context_id)
            state = self._server_contexts.get(context_id)
            if state == "failed":
                return  # refused by the server (reported once): drop the rest of the turn
            if state is None:
                self._server_contexts[context_id] = "open"
                self._clocks[context_id] = WordClock()
                self._backend.create(context_id)
            self._backend.send(context_id, text)
        except Exception as e:
            yield TTSStoppedFrame(context_id=context_id)
            yield ErrorFrame(error=f"rxtts: {e}")
            return
        yield None

    async def on_turn_context_completed(self) -> None:
        """End of the LLM turn: flush its context (released after its ``final``)."""
        context_id = self._turn_context_id
        await super().on_turn_context_completed()  # flushes via flush_audio when it can
        if context_id is not None:
            await self.flush_audio(context_id)
            if self._server_contexts.get(context_id) == "failed":
                del self._server_contexts[context_id]

    async def flush_audio(self, context_id: str | None = None) -> None:
        """Flush a turn's text: the server speaks the rest, then sends ``final``."""
        cid = context_id or self.get_active_audio_context_id()
        if cid is not None and self._server_contexts.get(cid) == "open":
            self._server_contexts[cid] = "flushed"
            with contextlib.suppress(Exception):
                self._backend.flush(cid)

    # -- barge-in -------------------------------------------------------------------------

    async def _handle_interruption(self, frame: InterruptionFrame, direction: FrameDirection) -> None:
        preserved = {cid for cid, ctx in self._tts_contexts.items() if not ctx.interruptible}
        await super()._handle_interruption(frame, direction)
        # Contexts with no audio context yet (text sent, no audio) are not reported by
        # on_audio_context_interrupted: close them too, or their slots would leak.
        for cid, state in list(self._server_contexts.items()):
            if state == "failed":
                del self._server_contexts[cid]
            elif cid not in preserved:
                self._barge_in(cid)

    async def on_audio_context_interrupted(self, context_id: str) -> None:
        """Pipecat dropped this context's audio: close it on the server at once."""
        self._barge_in(context_id)
        await super().on_audio_context_interrupted(context_id)

    async def on_audio_context_completed(self, context_id: str) -> None:
        """A context finished playing; one that no turn will ever flush is freed now.

        That is a context outside the current turn still taking text, e.g. text that
        arrived after a barge-in with no LLM turn around it (Pipecat gives each token
        its own context id): without this its slot would wait for the server's
        inactivity timeout.
        """
        await super().on_audio_context_completed(context_id)
        if context_id != self._turn_context_id and self._server_contexts.get(context_id) == "open":
            self._server_contexts[context_id] = "released"
            self._backend.release(context_id)

    def _barge_in(self, context_id: str) -> None:
        if self._server_contexts.get(context_id) in ("open", "flushed"):
            self._server_contexts[context_id] = "cancelled"
            self._clocks.pop(context_id, None)
            self._backend.cancel(context_id)

    # -- audio out ------------------------------------------------------------------------

    def _on_backend_event(self, event: TtsEvent) -> None:
        self._queue.put_nowait(event)
        if event.context_id is None and isinstance(event, ContextError) and fails_every_context(event.error):
            self._queue.put_nowait(_LOST)

    async def _receive_messages(self) -> None:
        queue = self._queue  # one queue for the service's life: sessions come and go
        while True:
            item = await queue.get()
            if item is _LOST:
                raise ConnectionError("rxtts: the server connection was lost")
            await self._handle_event(item)

    async def _handle_event(self, event: TtsEvent) -> None:
        cid = event.context_id
        if cid is None:
            if isinstance(event, ContextError):
                await self.push_error(error_msg=f"rxtts: {event.error}", exception=event.error)
            return
        if isinstance(event, (ContextClosed, ContextTimeout)):
            self._server_contexts.pop(cid, None)
            self._clocks.pop(cid, None)
            if isinstance(event, ContextTimeout):
                await self._finish_context(cid)
            return
        if isinstance(event, ContextError):
            if self._server_contexts.get(cid) in ("open", "flushed", "released"):
                self._server_contexts[cid] = "failed"
            else:
                self._server_contexts.pop(cid, None)
            self._clocks.pop(cid, None)
            await self.push_error(error_msg=f"rxtts context {cid}: {event.error}", exception=event.error)
            await self._finish_context(cid)
            return
        if self._server_contexts.get(cid) == "cancelled":
            return  # barged in: nothing of it may play
        clock = self._clocks.get(cid)
        words = clock.on_event(event) if clock is not None else []
        if isinstance(event, AudioChunk):
            if not self.audio_context_available(cid):
                return
            audio = event.samples.tobytes() if event.encoding != "pcm_s16le" else event.audio
            if event.sample_rate != self.sample_rate:
                audio = await self._resampler.resample(audio, event.sample_rate, self.sample_rate)
            await self.append_to_audio_context(
                cid, TTSAudioRawFrame(audio, self.sample_rate, 1, context_id=cid)
            )
        elif isinstance(event, WordTimestamps):
            if words:
                await self.add_word_timestamps([(w.word, w.start) for w in words], cid)
        elif isinstance(event, Final) and self._server_contexts.get(cid) == "flushed":
            # all of the turn's audio is here: end Pipecat's audio context, free the slot
            await self._finish_context(cid)
            self._server_contexts[cid] = "released"
            self._backend.release(cid)

    async def _finish_context(self, cid: str) -> None:
        if self.audio_context_available(cid):
            await self.append_to_audio_context(cid, TTSStoppedFrame(context_id=cid))
            await self.remove_audio_context(cid)


__all__ = ["RxttsTTSService"]
