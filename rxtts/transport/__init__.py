"""Client transport: the only client package that touches ``websockets``.

See :mod:`rxtts.transport.websocket`: :func:`open_connection` -> :class:`Connection`
(``frames``: hot ``Observable[ServerFrame]``, ``sender``: ``Observer[ClientFrame]``),
URL/key handling of PROTOCOL 2.1 and the replay policy of PROTOCOL 10.
"""

from rxtts.transport.websocket import (
    HOSTED_EU_URL,
    HOSTED_URL,
    CloseInfo,
    Connection,
    ReconnectPolicy,
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

__all__ = [
    "HOSTED_EU_URL",
    "HOSTED_URL",
    "CloseInfo",
    "Connection",
    "ReconnectPolicy",
    "TransportOptions",
    "build_url",
    "connect_observable",
    "hosted_base_url",
    "key_region",
    "open_connection",
    "redact",
    "strip_key_prefix",
    "ws_base_url",
]
