"""PROTOCOL 10 for multi-context sessions, over the in-memory transport with a scripted
peer: after a 1012 close, contexts that had no audio are re-created (in creation order,
session config on the first) and replayed once; a context that spoke fails with a typed
error; the session goes on."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import numpy as np

import rxtts
from rxtts.errors import ServerRestartingError
from rxtts.events import AudioChunk, ContextClosed, ContextError, Final, TtsEvent
from rxtts.transport import MemorySocket, MemoryTransport, ReconnectPolicy


def audio(context_id: str, idx: int = 0) -> str:
    pcm = (3000 * np.sin(np.arange(480) / 5)).astype("<i2").tobytes()
    return json.dumps(
        {
            "audio": base64.b64encode(pcm).decode(),
            "enc": "pcm_s16le",
            "idx": idx,
            "sr": 24000,
            "samples": 480,
            "chunk_id": 0,
            "context_id": context_id,
        }
    )


class Peer:
    """Connection 0: creates a and b, a speaks, then a deploy restart (1012).
    Connection 1: answers every creation and flush normally."""

    def __init__(self) -> None:
        self.logs: list[list[dict[str, Any]]] = []

    async def __call__(self, sock: MemorySocket) -> None:
        log: list[dict[str, Any]] = []
        self.logs.append(log)
        first = len(self.logs) == 1
        created: set[str] = set()
        while True:
            frame = json.loads(await sock.recv())
            log.append(frame)
            cid = frame.get("context_id")
            if frame.get("close_socket"):
                await sock.send(json.dumps({"session_closed": True}))
                return
            if cid and cid not in created:
                created.add(cid)
                await sock.send(json.dumps({"context_created": True, "context_id": cid}))
            if first and cid == "a" and frame.get("text", "").strip():
                await sock.send(audio("a"))
            if first and len(created) == 2 and frame.get("flush"):
                await asyncio.sleep(0.05)
                await sock.close(1012, "service restart")
                return
            if not first and frame.get("flush"):
                await sock.send(audio(cid))
                await sock.send(json.dumps({"final": True, "context_id": cid}))
            if frame.get("close_context"):
                await sock.send(json.dumps({"context_closed": True, "context_id": cid, "usage": None}))


def test_contexts_without_audio_are_re_created_and_replayed_once_after_1012() -> None:
    peer = Peer()

    async def main() -> list[TtsEvent]:
        transport = MemoryTransport(peer)
        multi = rxtts.MultiContextSession(
            "ws://memory",
            default_voice_id=1071,
            transport=transport,
            reconnect=ReconnectPolicy(retry_after=0.05),
        )
        events: list[TtsEvent] = []
        multi.events.subscribe(events.append)
        await multi.connect()
        multi.create_context("a", voice_id=1071)
        multi.create_context("b", voice_id=1072)
        multi.send("a", "A speaks first.")
        multi.send("b", "B has not spoken yet.", flush=True)
        for _ in range(200):
            if any(isinstance(e, Final) and e.context_id == "b" for e in events):
                break
            await asyncio.sleep(0.02)
        multi.close_context("b")
        for _ in range(100):
            if any(isinstance(e, ContextClosed) and e.context_id == "b" for e in events):
                break
            await asyncio.sleep(0.02)
        await multi.close(timeout=2)
        assert transport.opened == 2
        return events

    events = asyncio.run(asyncio.wait_for(main(), 20))
    errors = [e for e in events if isinstance(e, ContextError)]
    assert [(e.context_id, type(e.error)) for e in errors] == [("a", ServerRestartingError)]
    replayed = peer.logs[1]
    assert [f.get("context_id") for f in replayed[:2]] == ["b", "b"]  # only b, creation first
    assert replayed[0]["voice_settings"]["voice_id"] == 1072  # its own voice again
    original = peer.logs[0][0]  # session config rides on the first creating frame, again
    assert {k: v for k, v in replayed[0].items() if k not in ("context_id", "voice_settings")} == {
        k: v for k, v in original.items() if k not in ("context_id", "voice_settings")
    }
    assert original["sample_rate"] == 24000
    assert replayed[1] == {"text": "B has not spoken yet.", "flush": True, "context_id": "b"}
    assert any(isinstance(e, AudioChunk) and e.context_id == "b" for e in events)
    assert any(isinstance(e, Final) and e.context_id == "b" for e in events)
