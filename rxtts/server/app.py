"""The local KugelAudio-compatible server: the app, REST, upgrades (DESIGN 4, PROTOCOL 11).

One :class:`TtsApp` serves every connection of a ``websockets.asyncio.server``. Each
WebSocket gets a :class:`~rxtts.server.connection.Connection` bound to its endpoint,
running over the :class:`~rxtts.server.socket.ServerSocket` seam
(:meth:`TtsApp.serve_socket`). REST (``GET /v1/models``, ``/v1/voices``,
``/v1/voices/{id}``, ``/health``) and the probes (``/ready``, ``/metrics``,
:mod:`rxtts.server.metrics`) are answered in ``process_request`` before any upgrade,
as are the API-key check (PROTOCOL G-2) and refusals while draining (G-11).

Backpressure: a client frame is at most 1 MiB (bigger closes 1009, PROTOCOL G-5); the
rest is in :mod:`rxtts.server.connection` (input) and :mod:`rxtts.server.output`
(pacing, send queue, slow readers).
"""

from __future__ import annotations

import asyncio
import http
import logging
import os
from collections.abc import Awaitable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from rxtts.engine import Engine, VoiceInfo
from rxtts.protocol.frames import MAX_FRAME_BYTES, Endpoint
from rxtts.protocol.server import Pricing
from rxtts.server.auth import (
    API_KEY_ENV,
    api_key_from_env,
    error_response,
    header_key,
    json_response,
    key_matches,
    query_key,
    raw_query,
    redact_keys,
)
from rxtts.server.connection import CONNECTIONS, RESTART_CODE, Connection, MultiConnection
from rxtts.server.engines.catalogue import VoiceCatalogue
from rxtts.server.metrics import CONTENT_TYPE, ServerMetrics, TimedExecutor
from rxtts.server.options import ServerOptions, ServerStats
from rxtts.server.socket import ServerSocket, WebsocketsSocket

__all__ = [
    "API_KEY_ENV",
    "KUGEL_MODEL_IDS",
    "ServerOptions",
    "ServerStats",
    "TtsApp",
    "api_key_from_env",
]

log = logging.getLogger("rxtts.server")
redact_keys(log)

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
_WS_PATHS = frozenset(e.value for e in Endpoint)
DRAIN_RETRY_AFTER_S = 1
"""``Retry-After`` of upgrades refused while draining or saturated (G-11; PROTOCOL 10
waits ~1 s)."""
TRY_AGAIN_LATER = 1013
"""Close code of a socket admitted past ``max_sessions`` (PROTOCOL 9: try later)."""


def _plain(status: int, body: bytes, content_type: str) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


def _page(query: Mapping[str, list[str]], name: str, default: int, cap: int) -> int:
    try:
        value = int(query.get(name, [str(default)])[0])
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None
    if value < 0:
        raise ValueError(f"{name} must be >= 0")
    return min(value, cap)


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
        self.executor = TimedExecutor(self.options.engine_threads)
        """Worker threads for engine calls."""
        self.metrics = ServerMetrics(self, self.executor)
        """``/ready``, ``/metrics`` and the HAProxy agent (:mod:`rxtts.server.metrics`)."""
        self.local_model_id = f"rxtts-{engine.name}"
        """The model id of the local engine in ``GET /v1/models``."""
        self.sessions: set[Connection] = set()
        """Open connections."""
        self.draining = False
        """G-11: new upgrades are refused (HTTP 503 + ``Retry-After``)."""

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
            contexts=sum(len(s.machine.open_contexts) for s in sessions if isinstance(s, MultiConnection)),
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

    # -- connections ----------------------------------------------------------------------

    def serve_socket(self, sock: ServerSocket) -> Awaitable[None]:
        """Serve one accepted socket until it closes (call on the server's event loop).

        Assumes what ``process_request`` decides for real sockets: ``sock.path`` is one
        of the three WebSocket paths and the API key was checked; the transport answers
        pings and limits frames to 1 MiB. An unknown path is closed with 1008, a socket
        beyond ``max_sessions`` with 1013; one accepted while draining is drained.
        """
        return self._serve(sock)

    async def _serve(self, sock: ServerSocket) -> None:
        factory = CONNECTIONS.get(sock.path)
        if factory is None:
            await sock.close(1008, f"no such endpoint: {sock.path}")
            return
        if self.saturated():
            # Admission: an upgrade that raced past process_request's check.
            self.metrics.refused("saturated", "close_1013")
            await sock.close(TRY_AGAIN_LATER, "server at capacity, try again later")
            return
        session = factory(self, self.metrics.wrap(sock))
        self.sessions.add(session)
        if self.draining:
            self.metrics.refused("draining", "close_1012")
            session.drain()
        try:
            await session.run()
        finally:
            self.sessions.discard(session)

    def saturated(self) -> bool:
        """Whether ``max_sessions`` WebSockets are open (admission control)."""
        limit = self.options.max_sessions
        return limit is not None and len(self.sessions) >= limit

    async def handler(self, ws: ServerConnection) -> None:
        """``websockets`` handler: one upgraded connection."""
        await self.serve_socket(WebsocketsSocket(ws))

    def drain(self) -> None:
        """G-11: refuse new upgrades; close idle sockets 1012 now, busy ones after their work."""
        self.draining = True
        for session in list(self.sessions):
            session.drain()

    async def close_remaining(self, code: int = RESTART_CODE, reason: str = "service restart") -> None:
        """Close every socket still open (the drain timeout passed) with ``code``."""
        await asyncio.gather(
            *(s.sock.close(code, reason) for s in list(self.sessions)), return_exceptions=True
        )

    # -- HTTP -------------------------------------------------------------------------

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Auth for upgrades (PROTOCOL G-1, G-2) and the REST endpoints (PROTOCOL 12)."""
        url = urlsplit(request.path)
        query = parse_qs(url.query)
        is_upgrade = "websocket" in request.headers.get("Upgrade", "").lower()
        if url.path == "/health":
            return json_response(200, {"status": "ok", "engine": self.engine.name})
        if url.path == "/ready":
            state = self.metrics.ready_state()
            body = {"status": state, "pid": os.getpid()}  # pid: which --worker-processes child
            if state == "ready":
                return json_response(200, body)
            return json_response(503, body, [("Retry-After", str(DRAIN_RETRY_AFTER_S))])
        if url.path == "/metrics":
            return _plain(200, self.metrics.render(), CONTENT_TYPE)
        if url.path in _WS_PATHS and is_upgrade:
            key = query_key(raw_query(url.query))  # raw: the SDKs send "+" unencoded
            if self.options.api_key is not None and not key_matches(self.options.api_key, key):
                # PROTOCOL G-2: a bad key is refused before the upgrade; the SDKs map 401
                # to AuthenticationError.
                self.metrics.refused("unauthorized", "http_401")
                return error_response(401, "invalid or missing API key", "UNAUTHORIZED")
            retry = [("Retry-After", str(DRAIN_RETRY_AFTER_S))]
            if self.draining:
                # G-11: draining refuses new upgrades; 503 + Retry-After (PROTOCOL 9).
                self.metrics.refused("draining", "http_503")
                return error_response(503, "server is restarting", "MODEL_UNAVAILABLE", retry)
            if self.saturated():
                self.metrics.refused("saturated", "http_503")
                return error_response(503, "server at capacity, try again later", "MODEL_UNAVAILABLE", retry)
            return None
        if self.options.api_key is not None:
            given = header_key(request.headers) or query_key(raw_query(url.query))
            if not key_matches(self.options.api_key, given):
                return error_response(401, "invalid or missing API key", "UNAUTHORIZED")
        return self._rest(url.path, query)

    def _rest(self, path: str, query: Mapping[str, list[str]]) -> Response:
        if path == "/v1/models":
            return json_response(200, {"models": self.models()})
        if path == "/v1/voices":
            return self._voices(query)
        if path.startswith("/v1/voices/"):
            raw = path.removeprefix("/v1/voices/")
            # ASCII digits of a sane length only: int() of 5000 digits raises (was a 500).
            if raw.isascii() and raw.isdigit() and len(raw) <= 18 and int(raw) in self.catalogue:
                voice = self.catalogue.get(int(raw)).to_json()
                detail = {"generative_voice_description": None, "pending_verification": False}
                return json_response(200, voice | detail)
            shown = raw if len(raw) <= 40 else raw[:40] + "..."
            return error_response(404, f"voice {shown!r} not found", "NOT_FOUND")
        shown = path if len(path) <= 80 else path[:80] + "..."
        return error_response(404, f"no such endpoint: {shown}", "NOT_FOUND")

    def _voices(self, query: Mapping[str, list[str]]) -> Response:
        try:
            limit = _page(query, "limit", 20, 100)
            offset = _page(query, "offset", 0, 1 << 31)
        except ValueError as exc:
            return error_response(400, str(exc), "VALIDATION_ERROR")
        language = query.get("language", [None])[0]
        voices = [v for v in self.catalogue if language is None or v.language == language]
        body = {
            "voices": [v.to_json() for v in voices[offset : offset + limit]],
            "total": len(voices),
            "limit": limit,
            "offset": offset,
        }
        return json_response(200, body)

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
            reuse_port=self.options.reuse_port or None,  # --worker-processes share the port
        )

    def close(self) -> None:
        """Stop every pipeline and the worker pool (after the server stopped)."""
        for session in list(self.sessions):
            session.shutdown()
        self.executor.shutdown(wait=False, cancel_futures=True)
