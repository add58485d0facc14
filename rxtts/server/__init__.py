"""The local KugelAudio-compatible TTS server (``rxtts serve``, DESIGN 4).

Exports are lazy, so importing :mod:`rxtts.server.engines` (as the operators do) never
imports ``websockets`` or the app.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rxtts.server.app import ServerOptions, TtsApp
    from rxtts.server.embedded import RunningServer, start_background_server
    from rxtts.server.socket import ServerSocket, SocketClosed

__all__ = [
    "RunningServer",
    "ServerOptions",
    "ServerSocket",
    "SocketClosed",
    "TtsApp",
    "start_background_server",
]

_LAZY = {
    "ServerOptions": "rxtts.server.options",
    "ServerSocket": "rxtts.server.socket",
    "SocketClosed": "rxtts.server.socket",
    "TtsApp": "rxtts.server.app",
    "RunningServer": "rxtts.server.embedded",
    "start_background_server": "rxtts.server.embedded",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
