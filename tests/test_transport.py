"""The client transport: URLs and keys, frames in/out, close codes, upgrade errors.

Every server here is a small scripted ``websockets`` server on 127.0.0.1, port 0.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from rxtts.errors import (
    AuthenticationError,
    ConnectionClosedError,
    InsufficientCreditsError,
    ModelUnavailableError,
    RateLimitError,
    RemoteProtocolError,
    RxTtsError,
    ServerRestartingError,
)
from rxtts.protocol.frames import (
    AudioFrame,
    CancelFrame,
    Endpoint,
    FinalFrame,
    InterruptedFrame,
    ServerFrame,
    TextFrame,
)
from rxtts.transport import (
    HOSTED_EU_URL,
    HOSTED_URL,
    Connection,
    TransportOptions,
    build_url,
    connect_observable,
    hosted_base_url,
    key_region,
    open_connection,
    redact,
    strip_key_prefix,
    ws_base_url,
)

T = TypeVar("T")
Handler = Callable[[ServerConnection], Awaitable[None]]


def run(coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Scripted:
    """A WebSocket server on 127.0.0.1:0 running ``handler`` per connection."""

    def __init__(self, handler: Handler, process_request: Any = None) -> None:
        self.handler = handler
        self.process_request = process_request
        self.requests: list[str] = []
        self.received: list[str] = []

    async def _handle(self, ws: ServerConnection) -> None:
        self.requests.append(ws.request.path if ws.request else "")
        await self.handler(ws)

    async def __aenter__(self) -> Scripted:
        self.server = await serve(self._handle, "127.0.0.1", 0, process_request=self.process_request)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/tts/stream"


async def collect(conn: Connection) -> tuple[list[ServerFrame], Exception | None]:
    """Every frame until the stream terminates, and its error (None = completed)."""
    frames: list[ServerFrame] = []
    done: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
    conn.frames.subscribe(
        frames.append,
        lambda e: done.set_result(e),
        lambda: done.set_result(None),
    )
    return frames, await done


def close_with(code: int, reason: str = "", before: tuple[str, ...] = ()) -> Handler:
    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        for message in before:
            await ws.send(message)
        await ws.close(code, reason)

    return handler


# -- URLs and keys (PROTOCOL 2.1) ------------------------------------------------------------


def test_key_prefixes_are_stripped_and_name_the_region() -> None:
    assert strip_key_prefix("eu-test-key") == "test-key"
    assert strip_key_prefix("us-abc") == "abc"
    assert strip_key_prefix("global-abc") == "abc"
    assert strip_key_prefix("plain-key") == "plain-key"
    assert key_region("eu-x") == "eu" and key_region("x") is None


def test_only_the_eu_region_changes_the_hosted_url() -> None:
    assert hosted_base_url("eu-k") == HOSTED_EU_URL
    assert hosted_base_url("us-k") == HOSTED_URL
    assert hosted_base_url("k", region="eu") == HOSTED_EU_URL
    assert hosted_base_url(None) == HOSTED_URL


def test_http_urls_become_ws_urls_by_replacement() -> None:
    assert ws_base_url("https://api.kugelaudio.com/") == "wss://api.kugelaudio.com"
    assert ws_base_url("http://127.0.0.1:8000") == "ws://127.0.0.1:8000"
    assert ws_base_url("ws://h:1") == "ws://h:1"
    with pytest.raises(ValueError, match="scheme"):
        ws_base_url("ftp://h")


def test_build_url_adds_path_key_and_sdk_tag() -> None:
    url = build_url("https://api.eu.kugelaudio.com", Endpoint.STREAM, "eu-test-key")
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    assert (parts.scheme, parts.netloc, parts.path) == ("wss", "api.eu.kugelaudio.com", "/ws/tts/stream")
    assert query["api_key"] == "test-key"
    assert query["sdk"] == "rxtts" and query["sdk_version"]
    assert "api_key" not in urllib.parse.parse_qs(urllib.parse.urlsplit(build_url("ws://h", "/ws/tts")).query)
    # a base that already names an endpoint keeps it
    assert urllib.parse.urlsplit(build_url("ws://h/ws/tts/multi", Endpoint.STREAM)).path == "/ws/tts/multi"


def test_redact_hides_the_key() -> None:
    url = build_url("ws://h", Endpoint.TTS, "secret")
    assert "secret" not in redact(url) and "api_key" in redact(url)


# -- frames in and out ------------------------------------------------------------------------


def test_frames_are_decoded_once_and_sent_in_order() -> None:
    received: list[dict[str, Any]] = []

    async def handler(ws: ServerConnection) -> None:
        for _ in range(3):
            received.append(json.loads(await ws.recv()))
        await ws.send(
            json.dumps({"audio": "AAABAA==", "idx": 0, "sr": 24000, "samples": 2, "enc": "pcm_s16le"})
        )
        await ws.send(json.dumps({"final": True, "total_audio_seconds": 0.1}))
        await ws.close(1000)

    async def main() -> tuple[list[ServerFrame], Exception | None, Any]:
        async with Scripted(handler) as srv:
            conn = await open_connection(build_url(srv.url, Endpoint.STREAM, "eu-test-key"))
            task = asyncio.ensure_future(collect(conn))
            conn.sender.on_next(TextFrame("Hello ", False))
            conn.send(TextFrame("world.", True))
            conn.sender.on_next(CancelFrame())
            frames, error = await task
            return frames, error, (srv.requests[0], conn.stats)

    frames, error, (path, stats) = run(main())
    assert [f["text"] for f in received[:2]] == ["Hello ", "world."]
    assert received[2] == {"cancel": True}
    assert error is None  # 1000: completes
    assert isinstance(frames[0], AudioFrame) and frames[0].audio == b"\x00\x00\x01\x00"
    assert isinstance(frames[1], FinalFrame)
    assert stats.frames_in == 2 and stats.frames_out == 3
    assert "api_key=test-key" in path and "sdk=rxtts" in path


def test_unknown_frames_are_ignored_malformed_ones_fail_with_1002() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send(json.dumps({"heartbeat": True, "n": 1}))  # unknown marker: ignored
        await ws.send(json.dumps({"interrupted": True}))
        await ws.send("{not json")
        await ws.wait_closed()

    async def main() -> tuple[list[ServerFrame], Exception | None, int | None, int]:
        async with Scripted(handler) as srv:
            conn = await open_connection(srv.url)
            task = asyncio.ensure_future(collect(conn))
            conn.send(CancelFrame())
            frames, error = await task
            info = await conn.closed
            return frames, error, info.code, conn.stats.ignored

    frames, error, code, ignored = run(main())
    assert frames == [InterruptedFrame()]
    assert ignored == 1
    assert isinstance(error, RemoteProtocolError) and "malformed" in str(error)
    assert code == 1002


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (4001, AuthenticationError),
        (4003, InsufficientCreditsError),
        (4029, RateLimitError),
        (4500, ModelUnavailableError),
        (1012, ServerRestartingError),
        (1013, ServerRestartingError),
        (1011, ConnectionClosedError),
        (4000, ConnectionClosedError),
    ],
)
def test_close_codes_map_to_typed_errors(code: int, expected: type[RxTtsError]) -> None:
    async def main() -> tuple[Exception | None, int | None]:
        async with Scripted(close_with(code, "bye")) as srv:
            conn = await open_connection(srv.url)
            task = asyncio.ensure_future(collect(conn))
            conn.send(TextFrame("x"))
            _, error = await task
            return error, (await conn.closed).code

    error, got = run(main())
    assert type(error) is expected
    assert got == code
    if code == 4001:
        assert "bye" in str(error)  # reason appended (PROTOCOL 9, verified)


def test_normal_close_completes_and_a_dropped_tcp_connection_errors() -> None:
    async def drop(ws: ServerConnection) -> None:
        await ws.recv()
        ws.transport.abort()

    async def main() -> tuple[Exception | None, Exception | None]:
        async with Scripted(close_with(1000)) as a, Scripted(drop) as b:
            conn = await open_connection(a.url)
            task = asyncio.ensure_future(collect(conn))
            conn.send(TextFrame("x"))
            _, normal = await task
            conn2 = await open_connection(b.url)
            task2 = asyncio.ensure_future(collect(conn2))
            conn2.send(TextFrame("x"))
            _, dropped = await task2
            return normal, dropped

    normal, dropped = run(main())
    assert normal is None
    assert isinstance(dropped, ConnectionClosedError) and "1006" in str(dropped)


def test_local_close_completes_the_frames_and_refuses_sends() -> None:
    async def echo_forever(ws: ServerConnection) -> None:
        async for _ in ws:
            pass

    async def main() -> tuple[Exception | None, bool, bool]:
        async with Scripted(echo_forever) as srv:
            conn = await open_connection(srv.url)
            task = asyncio.ensure_future(collect(conn))
            info = await conn.close()
            _, error = await task
            with pytest.raises(ConnectionClosedError):
                conn.send(TextFrame("late"))
            return error, info.local, conn.is_open

    error, local, is_open = run(main())
    assert error is None and local and not is_open


def _reject(status: int, headers: dict[str, str]) -> Any:
    def process_request(ws: ServerConnection, request: Request) -> Response:
        return Response(status, "rejected", Headers(headers), b"no way")

    return process_request


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (403, {"x-request-id": "req-1"}, AuthenticationError),
        (401, {}, AuthenticationError),
        (402, {}, InsufficientCreditsError),
        (429, {"Retry-After": "7"}, RateLimitError),
        (503, {}, ModelUnavailableError),
    ],
)
def test_rejected_upgrades_map_to_typed_errors(
    status: int, headers: dict[str, str], expected: type[RxTtsError]
) -> None:
    async def main() -> RxTtsError:
        async with Scripted(close_with(1000), process_request=_reject(status, headers)) as srv:
            with pytest.raises(RxTtsError) as info:
                await open_connection(srv.url)
            return info.value

    error = run(main())
    assert type(error) is expected
    assert error.status == status
    if "x-request-id" in headers:
        assert error.request_id == "req-1"
    if "Retry-After" in headers:
        assert error.retry_after == 7


def test_unreachable_server_is_a_connection_error_naming_the_url_without_key() -> None:
    async def main() -> RxTtsError:
        async with Scripted(close_with(1000)) as srv:
            url = build_url(f"ws://127.0.0.1:{srv.port}", Endpoint.STREAM, "secret-key")
        with pytest.raises(ConnectionClosedError) as info:  # the server is gone now
            await open_connection(url, TransportOptions(open_timeout=2))
        return info.value

    error = run(main())
    assert "127.0.0.1" in str(error) and "secret-key" not in str(error)


def test_keepalive_pings_are_sent() -> None:
    async def idle(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async def main() -> float:
        async with Scripted(idle) as srv:
            conn = await open_connection(srv.url, TransportOptions(ping_interval=0.05, ping_timeout=1))
            await asyncio.sleep(0.3)
            latency = conn.latency
            await conn.close()
            return latency

    assert run(main()) > 0.0  # only a pong to our keepalive ping sets the latency


def test_connect_observable_emits_one_connection() -> None:
    async def idle(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async def main() -> list[Connection]:
        async with Scripted(idle) as srv:
            got: list[Connection] = []
            done = asyncio.get_running_loop().create_future()
            connect_observable(srv.url).subscribe(
                got.append, done.set_exception, lambda: done.set_result(None)
            )
            await done
            await got[0].close()
            return got

    conns = run(main())
    assert len(conns) == 1 and not conns[0].is_open


# -- the in-memory transport (issue 17: the transport seam) ----------------------------------


def test_memory_transport_delivers_in_order_and_maps_close_codes_like_a_websocket() -> None:
    from rxtts.errors import AuthenticationError, ServerRestartingError
    from rxtts.transport import MemorySocket, MemoryTransport, open_connection

    async def peer(sock: MemorySocket) -> None:
        first = json.loads(await sock.recv())
        assert sock.path == "/ws/tts/stream" and sock.query["api_key"] == ["k"]
        await sock.send(json.dumps({"generation_started": True, "chunk_id": 0, "text": first["text"]}))
        await sock.send(json.dumps({"interrupted": True}))
        await sock.close(1012, "restart")

    async def main() -> tuple[list[ServerFrame], Exception | None, Any, int]:
        transport = MemoryTransport(peer)
        conn = await open_connection("ws://memory/ws/tts/stream?api_key=k", transport=transport)
        conn.send(TextFrame("Hello.", None))
        frames, error = await collect(conn)
        refused = MemoryTransport(peer, refuse=lambda url: AuthenticationError("bad key"))
        with pytest.raises(AuthenticationError):
            await open_connection("ws://memory/ws/tts/stream", transport=refused)
        return frames, error, conn.closed.result(), transport.opened

    frames, error, info, opened = run(main())
    assert [type(f).__name__ for f in frames] == ["GenerationStartedFrame", "InterruptedFrame"]
    assert isinstance(error, ServerRestartingError) and info.code == 1012 and opened == 1


def test_memory_peer_that_raises_closes_1011_and_a_local_close_completes() -> None:
    from rxtts.transport import MemorySocket, MemoryTransport, open_connection

    async def broken(sock: MemorySocket) -> None:
        await sock.recv()
        raise RuntimeError("peer bug")

    async def idle(sock: MemorySocket) -> None:
        await sock.recv()  # until the client closes

    async def main() -> tuple[Any, Exception | None, Any]:
        conn = await open_connection("ws://memory/ws/tts", transport=MemoryTransport(broken))
        conn.send(TextFrame("x", None))
        _, error = await collect(conn)
        quiet = await open_connection("ws://memory/ws/tts", transport=MemoryTransport(idle))
        local = await quiet.close()
        return conn.closed.result(), error, local

    info, error, local = run(main())
    assert info.code == 1011 and error is not None
    assert local.local and local.code == 1000 and local.error is None
