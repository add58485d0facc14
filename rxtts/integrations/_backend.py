"""What the Pipecat and LiveKit plug-ins share: one rxtts client, one multi-context socket.

:class:`Backend` resolves where to speak exactly like :func:`rxtts.connect` (``url=``
/ ``RXTTS_URL``, an API key for the hosted service, else an embedded local server
started in a worker thread), opens one :class:`~rxtts.client.multi.MultiContextSession`
and keeps it for every turn. Each framework turn is one context; closing a context
returns a future that resolves with the server's ``context_closed`` (the ack that frees
its slot, PROTOCOL M-7/M-9), so a barge-in can be awaited and counted, never leaked.
A turn that ends normally is flushed, and released right after its ``final`` (the
context stays live on the server while its audio plays, so a barge-in during that
audio is a real cancel the server acknowledges at once).

:class:`WordClock` turns the per-chunk word timestamps of a context (PROTOCOL 3.3: ms
from the chunk's audio start) into seconds from the context's first audio, which is
what both frameworks expect.

Only the standard library and rxtts are imported here; the frameworks never are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rxtts.client.multi import MultiContextSession
from rxtts.client.multi_speak import fails_every_context
from rxtts.client.tts import TTS
from rxtts.config import MultiContextConfig, OutputFormat, VoiceSettings
from rxtts.errors import ConnectionClosedError
from rxtts.events import (
    AudioChunk,
    ContextClosed,
    ContextError,
    ContextTimeout,
    GenerationStarted,
    TtsEvent,
    WordTimestamps,
)
from rxtts.operators.heard import word_time_base

log = logging.getLogger("rxtts.integrations")

SUPPORTED_RATES = (8000, 16000, 22050, 24000)
"""Output rates the server can send (PROTOCOL 7 ``sample_rate``)."""
NATIVE_RATE = 24000
"""Rate requested when a framework asks for one the server does not send."""


def wire_rate(rate: int | None) -> int:
    """The rate to ask the server for: ``rate`` itself if it can send it, else 24 kHz."""
    return rate if rate in SUPPORTED_RATES else NATIVE_RATE


def iso_language(language: object) -> str | None:
    """``"en-US"`` / ``Language.EN_US`` -> ``"en"`` (the server takes ISO 639-1 only)."""
    if language is None:
        return None
    text = str(getattr(language, "value", language)).strip()
    if not text:
        return None
    return text.replace("_", "-").split("-")[0].lower()


@dataclass(frozen=True, slots=True)
class TimedWord:
    """One word of a context, in seconds from the context's first audio sample."""

    word: str
    start: float
    end: float
    score: float


class WordClock:
    """Per-context clock: word timestamps -> seconds from the context's first audio.

    rxtts servers already send them on the context's timeline; chunk-relative ones (other
    servers, PROTOCOL U-18) are shifted by the chunk's start (:func:`word_time_base`).
    """

    def __init__(self) -> None:
        self.audio_seconds = 0.0
        """Seconds of audio received so far in the context."""
        self._chunk_start: dict[int, float] = {}
        self._last_chunk: int | None = None

    def on_event(self, event: TtsEvent) -> list[TimedWord]:
        """Advance on ``event``; the words it times (only for :class:`WordTimestamps`)."""
        if isinstance(event, GenerationStarted):
            self._chunk_start[event.chunk_id] = self.audio_seconds
            self._last_chunk = event.chunk_id
        elif isinstance(event, AudioChunk):
            if event.chunk_id is not None and event.chunk_id not in self._chunk_start:
                self._chunk_start[event.chunk_id] = self.audio_seconds
                self._last_chunk = event.chunk_id
            self.audio_seconds += event.duration
        elif isinstance(event, WordTimestamps):
            chunk = event.chunk_id if event.chunk_id is not None else self._last_chunk
            start = self._chunk_start.get(chunk, 0.0) if chunk is not None else 0.0
            base = word_time_base(event.words, start)  # turn-based (rxtts) or chunk-based
            return [
                TimedWord(w.word, base + w.start_ms / 1000.0, base + w.end_ms / 1000.0, w.score)
                for w in event.words
            ]
        return []


class Backend:
    """One rxtts client and one multi-context session shared by a plug-in's turns.

    Args:
        url: Server base URL; ``None``: ``RXTTS_URL``, else the hosted service when an API
            key is known, else an embedded local server (``rxtts.connect()`` rules).
        api_key: API key (``None``: ``KUGELAUDIO_API_KEY``; none needed locally).
        region: ``"eu"`` for the hosted EU endpoint.
        engine: Engine of the embedded server (``"best"``, ``"piper"``, ``"espeak"``,
            ``"tone"``).
        voice_id: Default voice (embedded server: 1071 when not given).
        server_options: Options of the embedded server (``ServerOptions`` fields).
        on_event: Called on the loop thread with every event of the session.
    """

    def __init__(
        self,
        *,
        url: str | None,
        api_key: str | None,
        region: str | None,
        engine: str,
        voice_id: int | None,
        server_options: Mapping[str, Any] | None,
        on_event: Callable[[TtsEvent], None],
    ) -> None:
        self._url = url
        self._api_key = api_key
        self._region = region
        self._engine = engine
        self.voice_id = voice_id
        """Voice of contexts created from now on (``None``: the session default)."""
        self._server_options = dict(server_options or {})
        self._on_event = on_event
        self._tts: TTS | None = None
        self._session: MultiContextSession | None = None
        self._subscription: Any = None
        self._acks: dict[str, asyncio.Future[TtsEvent]] = {}
        self.closes_sent = 0
        """Immediate closes (barge-ins) sent over this backend's lifetime."""
        self.closes_acked = 0
        """Of those, how many the server acknowledged with ``context_closed``."""

    # -- lifecycle --------------------------------------------------------------------

    @property
    def tts(self) -> TTS | None:
        """The rxtts client (``None`` before :meth:`open`)."""
        return self._tts

    @property
    def session(self) -> MultiContextSession | None:
        """The current multi-context session (``None`` before :meth:`open`)."""
        return self._session

    @property
    def is_connected(self) -> bool:
        """Whether the session's socket is open."""
        return self._session is not None and self._session.is_connected

    @property
    def needs_reopen(self) -> bool:
        """No session, or an idle one whose socket is gone (a busy one replays itself
        after a 1012/1013 restart, PROTOCOL 10)."""
        session = self._session
        if session is None:
            return True
        return not session.is_connected and not session.active_contexts and not session.waiting_contexts

    @property
    def pending_closes(self) -> list[str]:
        """Contexts closed by us whose ``context_closed`` has not arrived yet."""
        return [cid for cid, fut in self._acks.items() if not fut.done()]

    async def open(
        self,
        *,
        sample_rate: int,
        language: str | None = None,
        model_id: str | None = None,
        word_timestamps: bool = True,
        output_format: OutputFormat | None = None,
        inactivity_timeout: float = 20.0,
    ) -> MultiContextSession:
        """Open the client (starting the embedded server if needed) and a new session.

        A previous session, if any, is closed first (a reconnect opens a fresh socket).
        """
        if self._tts is None:
            import rxtts

            self._tts = await rxtts.connect(
                self._url,
                self._api_key,
                region=self._region,
                engine=self._engine,
                voice_id=self.voice_id,
                **self._server_options,
            )
        await self.close_session()
        if self.voice_id is None:
            self.voice_id = self._tts.default_config.voice_id
        if self.voice_id is None:
            from rxtts.client.connector import DEFAULT_LOCAL_VOICE, resolve

            if resolve(self._url, self._api_key, self._region).source == "hosted":
                raise ValueError("voice_id= is required with the hosted service")
            self.voice_id = DEFAULT_LOCAL_VOICE  # every local engine has it
        config = MultiContextConfig(
            default_voice_id=self.voice_id,
            sample_rate=sample_rate,
            output_format=output_format,
            language=language,
            model_id=model_id,
            word_timestamps=word_timestamps,
            inactivity_timeout=inactivity_timeout,
        )
        session = self._tts.multi_context_session(config, wait_for_slot=True)
        self._subscription = session.events.subscribe(self._dispatch)
        self._session = session
        await session.connect()
        return session

    async def close_session(self, timeout: float = 2.0) -> None:
        """Close the current session's socket (``close_socket``), if one is open."""
        session, self._session = self._session, None
        sub, self._subscription = self._subscription, None
        if session is not None:
            with contextlib.suppress(Exception):
                await session.close(timeout)
        if sub is not None:
            sub.dispose()
        self._fail_acks()

    async def aclose(self) -> None:
        """Close the session, the client and the embedded server (if one was started)."""
        await self.close_session()
        tts, self._tts = self._tts, None
        if tts is not None:
            await tts.aclose()

    # -- intents ----------------------------------------------------------------------

    def _require(self) -> MultiContextSession:
        if self._session is None:
            raise ConnectionClosedError("the rxtts backend is not open")
        return self._session

    def create(self, context_id: str, voice_id: int | None = None) -> None:
        """Create a context with ``voice_id`` (default: :attr:`voice_id`)."""
        voice = voice_id if voice_id is not None else self.voice_id
        settings = VoiceSettings(voice_id=voice) if voice is not None else None
        self._require().create_context(context_id, voice_settings=settings)

    def send(self, context_id: str, text: str) -> None:
        """Send text to a context (created first if unknown)."""
        self._require().send(context_id, text)

    def flush(self, context_id: str) -> None:
        """Speak the context's buffer; its ``final`` follows the last of that audio."""
        self._require().flush(context_id)

    def release(self, context_id: str) -> None:
        """Free a finished context (after its last ``final``: nothing is left to drop).

        ``immediate`` on purpose: the server then answers ``context_closed`` at once
        with no further ``final``, and keeps nothing of the context queued.
        """
        session = self._session
        if session is not None and context_id in session.active_contexts:
            session.close_context(context_id, immediate=True)

    def keep_alive(self, context_id: str) -> None:
        """Reset a context's inactivity timer (``text: ""``)."""
        if self._session is not None:
            self._session.keep_alive(context_id)

    def cancel(self, context_id: str) -> asyncio.Future[TtsEvent]:
        """Barge-in: close ``context_id`` immediately (PROTOCOL M-7).

        Returns a future resolving with the server's :class:`ContextClosed` (its slot
        is free), or with a ``ContextError`` / ``ContextTimeout`` that ended it. Frames
        of the context arriving meanwhile are dropped by the protocol core (M-7a).
        """
        loop = asyncio.get_running_loop()
        fut = self._acks.get(context_id)
        if fut is None or fut.done():
            fut = loop.create_future()
            self._acks[context_id] = fut
        session = self._session
        if session is None or not session.is_connected:
            if not fut.done():
                fut.set_result(ContextClosed(None, context_id=context_id))
            return fut
        if context_id in session.active_contexts or context_id in session.waiting_contexts:
            self.closes_sent += 1
            session.close_context(context_id, immediate=True)
        elif not fut.done():  # never reached the server, or already closed
            fut.set_result(ContextClosed(None, context_id=context_id))
        return fut

    # -- events -----------------------------------------------------------------------

    def _dispatch(self, event: TtsEvent) -> None:
        cid = event.context_id
        if cid is not None and isinstance(event, (ContextClosed, ContextTimeout, ContextError)):
            fut = self._acks.pop(cid, None)
            if fut is not None and not fut.done():
                if isinstance(event, ContextClosed):
                    self.closes_acked += 1
                fut.set_result(event)
        elif cid is None and isinstance(event, ContextError) and fails_every_context(event.error):
            self._fail_acks()
        self._on_event(event)

    def _fail_acks(self) -> None:
        """The socket is gone: its contexts (and their slots) went with it."""
        for cid, fut in list(self._acks.items()):
            if not fut.done():
                fut.set_result(ContextError(ConnectionClosedError("socket closed"), context_id=cid))
        self._acks.clear()


__all__ = ["NATIVE_RATE", "SUPPORTED_RATES", "Backend", "TimedWord", "WordClock", "iso_language", "wire_rate"]
