"""Client transport: the seam between the sessions and the network.

- :mod:`rxtts.transport.base`: the :class:`Transport`/:class:`Socket` protocols,
  :class:`Connection` (decoded frames in, frames out, typed close info), the replay
  policy of PROTOCOL 10;
- :mod:`rxtts.transport.websocket`: real WebSockets and the URL/key rules of PROTOCOL 2.1;
- :mod:`rxtts.transport.memory`: an in-memory transport for tests (httpx's
  ``MockTransport``), connecting a client to the real server logic or a scripted peer.
"""

from rxtts.transport.base import (
    CloseInfo,
    Connection,
    ReconnectPolicy,
    Socket,
    SocketClosed,
    Transport,
    TransportOptions,
    open_connection,
)
from rxtts.transport.memory import MemorySocket, MemoryTransport
from rxtts.transport.websocket import (
    HOSTED_EU_URL,
    HOSTED_URL,
    WebSocketTransport,
    build_url,
    connect_observable,
    hosted_base_url,
    key_region,
    redact,
    strip_key_prefix,
    ws_base_url,
)

__all__ = [
    "HOSTED_EU_URL",
    "HOSTED_URL",
    "CloseInfo",
    "Connection",
    "MemorySocket",
    "MemoryTransport",
    "ReconnectPolicy",
    "Socket",
    "SocketClosed",
    "Transport",
    "TransportOptions",
    "WebSocketTransport",
    "build_url",
    "connect_observable",
    "hosted_base_url",
    "key_region",
    "open_connection",
    "redact",
    "strip_key_prefix",
    "ws_base_url",
]
