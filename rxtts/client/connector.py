"""``rxtts.connect()``: one call from "nothing configured" to a speaking client.

Where the server comes from, first match wins:

1. ``url=`` (with ``api_key=`` or ``KUGELAUDIO_API_KEY`` if set);
2. the ``RXTTS_URL`` environment variable (same key rule);
3. an API key (``api_key=`` or ``KUGELAUDIO_API_KEY``): the hosted KugelAudio service,
   its EU region for ``eu-`` keys or ``region="eu"`` (PROTOCOL 2.1);
4. otherwise an embedded local server on 127.0.0.1 (ephemeral port) with the best
   installed engine: piper, else espeak; if neither is installed the error says what to
   ``pip install``.

``connect()`` is an async context manager and also awaitable; it never blocks the running
loop (the embedded server starts in a worker thread), so it works in Jupyter::

    async with rxtts.connect() as tts:
        session = tts.streaming_session(voice_id=1071)
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from rxtts.config import StreamConfig

if TYPE_CHECKING:  # kept lazy: ``import rxtts`` imports this module eagerly
    from rxtts.client.session import StreamingSession
    from rxtts.client.tokens import Tokens
    from rxtts.client.tts import TTS, GeneratedAudio
    from rxtts.events import TtsEvent
    from rxtts.transport import ReconnectPolicy, Transport, TransportOptions

ENV_URL = "RXTTS_URL"
"""Environment variable naming the server URL."""
ENV_API_KEY = "KUGELAUDIO_API_KEY"
"""Environment variable holding the API key."""
DEFAULT_LOCAL_VOICE = 1071
"""Voice used with the embedded server when none is given (exists on every engine)."""

Source = Literal["argument", "environment", "hosted", "embedded"]


@dataclass(frozen=True, slots=True)
class Resolution:
    """Where :func:`connect` will connect, and why."""

    source: Source
    """Which rule matched (see the module docstring)."""
    url: str | None
    """Base URL; ``None`` for the embedded server (its port is chosen at start)."""
    api_key: str | None
    """API key to send, if any."""


def resolve(
    url: str | None = None,
    api_key: str | None = None,
    region: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Resolution:
    """Apply the rules of the module docstring without connecting anywhere."""
    env = os.environ if environ is None else environ
    key = api_key or env.get(ENV_API_KEY) or None
    if url:
        return Resolution("argument", url, key)
    if env.get(ENV_URL):
        return Resolution("environment", env[ENV_URL], key)
    if key:
        from rxtts.transport import hosted_base_url

        return Resolution("hosted", hosted_base_url(key, region), key)
    return Resolution("embedded", None, None)


class Connector:
    """The object :func:`connect` returns: ``async with`` it, or ``await`` it."""

    def __init__(
        self,
        resolution: Resolution,
        *,
        engine: str = "best",
        voice_id: int | None,
        config: StreamConfig | None,
        options: TransportOptions | None,
        transport: Transport | None,
        reconnect: ReconnectPolicy | None,
        server_options: Mapping[str, Any],
    ) -> None:
        self.resolution = resolution
        """Where the client connects."""
        self._engine = engine
        self._voice_id = voice_id
        self._config = config
        self._options = options
        self._transport = transport
        self._reconnect = reconnect
        self._server_options = dict(server_options)
        self._tts: TTS | None = None
        self._sync: SyncClient | None = None

    async def open(self) -> TTS:
        """Start the embedded server if needed and build the :class:`TTS` client."""
        from rxtts.client.tts import TTS

        config = self._config or StreamConfig()
        if self._voice_id is not None:
            config = config.replace(voice_id=self._voice_id)
        res = self.resolution
        server = None
        if res.url is None:
            server = await asyncio.get_running_loop().run_in_executor(None, self._start_server)
            base_url = server.url
            if config.voice_id is None:
                config = config.replace(voice_id=DEFAULT_LOCAL_VOICE)
        else:
            base_url = res.url
        return TTS(
            base_url,
            res.api_key,
            default_config=config,
            options=self._options,
            transport=self._transport,
            reconnect=self._reconnect,
            server=server,
        )

    def _start_server(self) -> Any:
        from rxtts.engine import EngineUnavailableError
        from rxtts.server.embedded import start_background_server
        from rxtts.server.engines.catalogue import best_available_engine

        engine = self._engine
        if engine == "best":
            try:
                engine = best_available_engine()
            except EngineUnavailableError as exc:
                raise EngineUnavailableError(
                    f"rxtts.connect(): no url=, no {ENV_URL} and no {ENV_API_KEY} given, so an "
                    f"embedded local server is needed, but {exc}"
                ) from exc
        return start_background_server(engine, "127.0.0.1", 0, **self._server_options)

    def __enter__(self) -> SyncClient:
        """``with rxtts.connect() as tts:`` in synchronous code: a :class:`SyncClient`."""
        self._sync = start_sync(self)
        return self._sync

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        sync, self._sync = self._sync, None
        if sync is not None:
            sync.close()

    def __await__(self) -> Generator[Any, None, TTS]:
        return self.open().__await__()

    async def __aenter__(self) -> TTS:
        self._tts = await self.open()
        return self._tts

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tts, self._tts = self._tts, None
        if tts is not None:
            await tts.aclose()


def connect(
    url: str | None = None,
    api_key: str | None = None,
    *,
    region: str | None = None,
    engine: str = "best",
    voice_id: int | None = None,
    config: StreamConfig | None = None,
    options: TransportOptions | None = None,
    transport: Transport | None = None,
    reconnect: ReconnectPolicy | None = None,
    **server_options: Any,
) -> Connector:
    """Connect to a server (see the module docstring for how it is chosen).

    Args:
        url: Base URL (``http(s)://`` or ``ws(s)://``) of a KugelAudio-compatible server.
        api_key: API key; ``eu-``/``us-``/``global-`` prefixes are stripped on the wire.
        region: ``"eu"`` selects the hosted EU endpoint (only without ``url``).
        engine: Engine of the embedded server: ``"best"``, ``"piper"``, ``"espeak"``, ``"tone"``.
        voice_id: Default voice of sessions and requests (embedded: 1071 when not given).
        config: Default :class:`~rxtts.config.StreamConfig`.
        options: Socket settings of streaming sessions.
        transport: How sockets are opened; e.g. a
            :class:`~rxtts.transport.memory.MemoryTransport` for tests without sockets
            (``None``: real WebSockets).
        reconnect: Replay policy after a 1012/1013 close.
        **server_options: Options of the embedded server (``idle_flush_seconds``, ...).

    Raises:
        EngineUnavailableError: the embedded server is needed but no engine is installed.
    """
    return Connector(
        resolve(url, api_key, region),
        engine=engine,
        voice_id=voice_id,
        config=config,
        options=options,
        transport=transport,
        reconnect=reconnect,
        server_options=server_options,
    )


@dataclass(frozen=True, slots=True)
class SyncClient:
    """A :class:`TTS` whose loop runs in a daemon thread, for code that is not async.

    Use it as a context manager; its methods block the calling thread only, events are
    delivered on the background loop thread::

        with rxtts.connect_sync() as tts:           # or: with rxtts.connect() as tts
            tts.generate("Hello from rxtts.").to_wav("hello.wav")
            events = tts.speak(["Hel", "lo ", "there."], voice_id=1071)

    ``session.speak(tokens).run()`` works too for a session made with
    :meth:`streaming_session`.
    """

    tts: TTS
    """The client (all of its sockets live on the background loop)."""
    thread: threading.Thread
    """The thread running the loop."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The background loop."""
        return self.tts.loop

    def run(self, awaitable: Any, timeout: float | None = None) -> Any:
        """Run a coroutine on the background loop and wait for its result."""

        async def wrap() -> Any:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(timeout)

    def generate(self, text: str, timeout: float | None = None, **config: Any) -> GeneratedAudio:
        """:meth:`TTS.generate`, blocking: the whole audio of ``text``."""
        audio: GeneratedAudio = self.run(self.tts.generate(text, **config), timeout)
        return audio

    def speak(self, tokens: Tokens, timeout: float | None = None, **config: Any) -> list[TtsEvent]:
        """One streamed turn on a fresh streaming session; returns its events.

        ``config`` are :class:`~rxtts.config.StreamConfig` fields (``voice_id=``,
        ``preset=`` ...).
        """

        async def turn() -> list[TtsEvent]:
            from reactivex import operators as ops

            session = self.tts.streaming_session(**config)
            try:
                events: list[TtsEvent] = await session.speak(tokens).pipe(ops.to_list())
                return events
            finally:
                await session.close()

        result: list[TtsEvent] = self.run(turn(), timeout)
        return result

    def streaming_session(self, **kwargs: Any) -> StreamingSession:
        """:meth:`TTS.streaming_session` on the background loop."""
        session: StreamingSession = self.run(_call(self.tts.streaming_session, **kwargs))
        return session

    def close(self) -> None:
        """Close the client, stop the loop and join its thread."""
        try:
            self.run(self.tts.aclose(), timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


async def _call(fn: Any, **kwargs: Any) -> Any:
    return fn(**kwargs)


def start_sync(connector: Connector) -> SyncClient:
    """Open ``connector`` on a private loop thread (see :class:`SyncClient`)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="rxtts-client-loop", daemon=True)
    thread.start()
    future = asyncio.run_coroutine_threadsafe(connector.open(), loop)
    try:
        tts = future.result()
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        raise
    return SyncClient(tts, thread)


def connect_sync(url: str | None = None, api_key: str | None = None, **kwargs: Any) -> SyncClient:
    """:func:`connect` for synchronous code: the client runs on a private loop thread.

    ``with rxtts.connect_sync() as tts:`` closes it at the end of the block.
    """
    return start_sync(connect(url, api_key, **kwargs))


__all__ = [
    "DEFAULT_LOCAL_VOICE",
    "ENV_API_KEY",
    "ENV_URL",
    "Connector",
    "Resolution",
    "SyncClient",
    "connect",
    "connect_sync",
    "resolve",
    "start_sync",
]
