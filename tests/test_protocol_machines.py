"""Sans-I/O protocol machines (rxtts.protocol.server / .client) against PROTOCOL.md.

Three layers:

1. **Worked transcripts** (PROTOCOL 4.3, 5.5 a-c, 5.6, 6.7) replayed through *both*
   machines. The client machine is driven by the intents that produce the transcript's
   client frames, which are compared with the transcript; the transcript's client frames,
   decoded from their JSON, drive the server machine; simulated pipeline results (what the
   I/O layer reports: ``chunk_started``/``audio``/``chunk_done``/``flush_done``, with the
   transcript's numbers) give server frames compared with the transcript's server frames;
   those, encoded and decoded again, drive the client machine, whose events are checked.
2. **Table-driven transitions**: illegal client intents raise ``LocalProtocolError``,
   illegal client frames get the server's ``PROTOCOL_ERROR`` frame; legal ones
   produce the documented frames (S-1..S-9, M-1..M-12, T-1..T-3).
3. **Hypothesis sequences**: random intents, deliveries, pipeline results and timers
   through paired machines, with invariants checked on every frame.

Normalisation of the transcripts (everything else is compared exactly, bools kept apart
from numbers):

- client frames: ``StreamConfig`` always sends ``cfg_scale`` 2.0, ``max_new_tokens``
  2048, ``sample_rate`` 24000, ``normalize`` true, ``word_timestamps`` false, ``speed``
  1.0 (the server defaults, G-10); JS sends only caller-set keys, so such a key is dropped
  from our frame when the transcript lacks it and its value is that default
  (:data:`STREAM_DEFAULTS`). PY always sends ``flush_timeout_ms`` 500 and
  ``max_buffer_length`` 1000, which ``StreamConfig`` leaves unset: the tests set them.
  ``MultiContextConfig`` always sends ``temperature`` 0.5 and ``inactivity_timeout`` 20.0
  on the first creating frame, PY neither (:data:`MULTI_DEFAULTS`).
- server frames: ``ttfa_ms`` (a fixture-only statistic, 3.5) is not produced and ``rtf``
  has 4 decimals (0.1265 for the transcript's 0.126); usage ``model_id`` names the model
  the turn ran with, ``kugel-3.5`` (our default) when the client named none (the
  transcripts' ``kugel-3`` is the hosted model); ``settings_updated`` carries all six
  settings (U-24) where the transcript echoes the changed one. A price of 6 EUR cents per
  minute reproduces every cost in the transcripts.
- ``…`` elisions and ``<b64>`` placeholders are filled with concrete values, noted where
  they are used.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from rxtts.config import MultiContextConfig, StreamConfig, VoiceSettings
from rxtts.errors import (
    LocalProtocolError,
    MissingVoiceError,
    ProtocolError,
    RateLimitError,
    RxTtsError,
    ServerError,
    TooManyContextsError,
    ValidationError,
)
from rxtts.events import (
    AudioChunk,
    ChunkComplete,
    ContextClosed,
    ContextCreated,
    ContextTimeout,
    Final,
    GenerationStarted,
    Interrupted,
    ServerWarning,
    SessionClosed,
    SessionStarted,
    SessionUsage,
    SettingsUpdated,
    WordTimestamp,
    WordTimestamps,
)
from rxtts.protocol.client import Output, StreamClient, TtsClient, TurnState, settings_update
from rxtts.protocol.frames import (
    AudioFrame,
    CancelFrame,
    ChunkCompleteFrame,
    ClientFrame,
    CloseContextFrame,
    CloseFrame,
    CloseSocketFrame,
    ContextClosedFrame,
    ContextCreatedFrame,
    ContextTimeoutFrame,
    Endpoint,
    ErrorFrame,
    FinalFrame,
    FlushFrame,
    GenerationStartedFrame,
    InterruptedFrame,
    ServerFrame,
    SessionClosedFrame,
    SessionStartedFrame,
    SettingsUpdatedFrame,
    TextFrame,
    TtsRequest,
    UpdateSettingsFrame,
    WarningFrame,
    WireConfig,
    WordTimestampsFrame,
    decode_client_frame,
    decode_server_frames,
    encode,
)
from rxtts.protocol.multi_client import ContextState, MultiClient
from rxtts.protocol.server import (
    AUTO_FLUSH_WARNING,
    TABLES,
    AppendText,
    ArmTimer,
    CancelPipeline,
    CancelTimer,
    CloseSocket,
    Command,
    Flush,
    MultiServer,
    OpenPipeline,
    Pricing,
    Purge,
    Send,
    StartPipeline,
    StreamServer,
    TtsServer,
    render_table,
)

PRICING = Pricing(cents_per_minute=6.0)
"""Reproduces every ``cost_cents`` of the transcripts (0.048, 0.136, 0.116)."""
BALANCED = (80, 150, 250)
"""The schedule the server resolves when the client sends none (G-10)."""

STREAM_DEFAULTS: Mapping[str, Any] = {
    "cfg_scale": 2.0,
    "max_new_tokens": 2048,
    "sample_rate": 24000,
    "normalize": True,
    "word_timestamps": False,
    "speed": 1.0,
}
"""Keys ``StreamConfig`` always sends that JS omits unless set (normalisation)."""
MULTI_DEFAULTS: Mapping[str, Any] = {"temperature": 0.5, "inactivity_timeout": 20.0}
"""Keys ``MultiContextConfig`` always sends on the first creating frame, PY never."""
PY_KEYS = {"flush_timeout_ms": 500, "max_buffer_length": 1000}
"""Keys PY always sends on a stream config epoch; ``StreamConfig`` leaves them unset."""

COMMAND_TYPES = (
    OpenPipeline,
    StartPipeline,
    AppendText,
    Flush,
    CancelPipeline,
    Purge,
    ArmTimer,
    CancelTimer,
    CloseSocket,
)
TIMERS = (ArmTimer, CancelTimer)


def core(cmds: Iterable[Command]) -> list[Command]:
    """``cmds`` without timer commands (their deadlines are tested on their own)."""
    return [c for c in cmds if not isinstance(c, TIMERS)]


# -- helpers ------------------------------------------------------------------------------


def canon(v: Any) -> Any:
    """A JSON value with bools kept apart from numbers (``True == 1`` in Python)."""
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, dict):
        return {k: canon(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [canon(x) for x in v]
    return v


def pcm(samples: int, seed: int = 0) -> bytes:
    """Deterministic non-silent s16le bytes for ``samples`` samples."""
    return bytes((seed * 31 + i) % 251 + 1 for i in range(samples * 2))


def g711(samples: int) -> bytes:
    """Deterministic 1-byte-per-sample G.711 bytes."""
    return bytes((i * 7) % 256 for i in range(samples))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def as_json(frames: Iterable[ClientFrame | ServerFrame]) -> list[dict[str, Any]]:
    """Frames as the JSON objects on the wire."""
    return [json.loads(encode(f)) for f in frames]


def normalised(
    ours: dict[str, Any], theirs: Mapping[str, Any], defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """``ours`` without the keys the transcript lacks; each must be a documented default."""
    extra = set(ours) - set(theirs)
    assert extra <= set(defaults), f"undocumented extra keys {sorted(extra - set(defaults))}"
    for k in extra:
        assert canon(ours[k]) == canon(defaults[k]), (k, ours[k])
    return {k: v for k, v in ours.items() if k not in extra}


def assert_client_frames(
    frames: Sequence[ClientFrame], transcript: Sequence[str], defaults: Mapping[str, Any] = {}
) -> None:
    """Our encoded frames equal the transcript's, modulo ``defaults`` (module docstring)."""
    ours = as_json(frames)
    theirs = [json.loads(t) for t in transcript]
    assert len(ours) == len(theirs), (ours, theirs)
    for o, t in zip(ours, theirs, strict=True):
        assert canon(normalised(o, t, defaults)) == canon(t)


def audio_json(
    data: bytes,
    idx: int,
    samples: int,
    *,
    chunk_id: int | None = None,
    context_id: str | None = None,
    enc: str = "pcm_s16le",
    sr: int = 24000,
) -> dict[str, Any]:
    out: dict[str, Any] = {"audio": b64(data), "enc": enc, "idx": idx, "sr": sr, "samples": samples}
    if chunk_id is not None:
        out["chunk_id"] = chunk_id
    if context_id is not None:
        out["context_id"] = context_id
    return out


def usage_json(seconds: float, characters: int, cost: float, model: str = "kugel-3.5") -> dict[str, Any]:
    return {
        "audio_seconds": seconds,
        "characters": characters,
        "cost_cents": cost,
        "currency": "eur",
        "model_id": model,
    }


def words_json(words: Sequence[WordTimestamp]) -> list[dict[str, Any]]:
    return [
        {
            "word": w.word,
            "start_ms": w.start_ms,
            "end_ms": w.end_ms,
            "char_start": w.char_start,
            "char_end": w.char_end,
            "score": w.score,
        }
        for w in words
    ]


def replace_model(frame: dict[str, Any], model: str = "kugel-3.5") -> dict[str, Any]:
    """Server normalisation: usage names our model (module docstring)."""
    out = json.loads(json.dumps(frame))
    out["usage"]["model_id"] = model
    return out


@dataclass
class Outbox:
    """What the I/O layer does with a machine's results: frames sent in order."""

    log: list[ServerFrame | Command] = field(default_factory=list)
    """Sent frames and non-``Send`` commands, in order."""
    delivered: int = 0
    """How many frames the client has been fed."""

    def take(self, results: Iterable[Command | ServerFrame]) -> list[Command | ServerFrame]:
        """Record results; returns them unchanged for assertions."""
        results = list(results)
        for r in results:
            if isinstance(r, Send):
                self.log.extend(r.frames)
            else:
                self.log.append(r)
        return results

    @property
    def frames(self) -> list[ServerFrame]:
        return [x for x in self.log if not isinstance(x, COMMAND_TYPES)]  # type: ignore[misc]

    def json(self) -> list[dict[str, Any]]:
        return as_json(self.frames)

    def undelivered(self) -> list[ServerFrame]:
        frames = self.frames
        new, self.delivered = frames[self.delivered :], len(frames)
        return new


def feed(server: StreamServer | MultiServer | TtsServer, endpoint: Endpoint, text: str) -> list[Command]:
    """A transcript's client frame, decoded from its JSON, into a server machine."""
    return core(server.receive(decode_client_frame(text, endpoint)))


def speak(
    server: StreamServer | MultiServer | TtsServer,
    out: Outbox,
    key: str,
    text: str,
    samples: Sequence[int],
    audio_seconds: float,
    gen_ms: float,
    *,
    seed: int = 0,
    words: Sequence[WordTimestamp] = (),
    enc: str = "pcm_s16le",
    sr: int = 24000,
) -> list[bytes]:
    """The pipeline results of one chunk, as the I/O layer reports them; returns the audio."""
    out.take(server.chunk_started(key, text))
    datas: list[bytes] = []
    for i, n in enumerate(samples):
        data = pcm(n, seed + i) if enc == "pcm_s16le" else g711(n)
        out.take(server.audio(key, data, enc, sr, n))  # type: ignore[arg-type]
        datas.append(data)
    if words:
        out.take(server.word_timestamps(key, WordTimestampsFrame(tuple(words))))
    out.take(server.chunk_done(key, audio_seconds, gen_ms))
    return datas


def shifted(words: Sequence[WordTimestamp], ms: int, chars: int) -> tuple[WordTimestamp, ...]:
    """Chunk-relative words moved onto their turn/context (issue 17)."""
    return tuple(
        WordTimestamp(
            w.word, w.start_ms + ms, w.end_ms + ms, w.char_start + chars, w.char_end + chars, w.score
        )
        for w in words
    )


def wire_roundtrip(frames: Iterable[ServerFrame]) -> list[ServerFrame]:
    """Server frames as a client receives them: encoded, then decoded."""
    return [g for f in frames for g in decode_server_frames(encode(f))]


def stream_deliver(client: StreamClient, out: Outbox) -> list[tuple[int | None, Output]]:
    return [e for f in wire_roundtrip(out.undelivered()) for e in client.receive(f)]


def multi_deliver(client: MultiClient, out: Outbox) -> list[Output]:
    return [e for f in wire_roundtrip(out.undelivered()) for e in client.receive(f)]


def chunk(data: bytes, idx: int, chunk_id: int | None = None, context_id: str | None = None) -> AudioChunk:
    return AudioChunk(data, 24000, "pcm_s16le", idx, chunk_id, context_id=context_id)


# -- 4.3 /ws/tts ---------------------------------------------------------------------------

TTS_4_3_FIRST = (
    '{"text":"Hello world.","model_id":"kugel-3.5","cfg_scale":2.0,"max_new_tokens":2048,'
    '"sample_rate":24000,"normalize":true,"word_timestamps":true,"speed":1.0,"voice_id":7,"language":"en"}'
)
# "…" of the second request filled with the first request's options (same call site).
TTS_4_3_SECOND = (
    '{"text":"Hi there.","model_id":"kugel-3.5","cfg_scale":2.0,"max_new_tokens":2048,'
    '"sample_rate":24000,"normalize":true,"word_timestamps":true,"speed":1.0,"voice_id":7,"language":"en",'
    '"output_format":"ulaw_8000"}'
)
HELLO_WORLD_WORDS = (
    WordTimestamp("Hello", 0, 200, 0, 5, 1.0),
    WordTimestamp("world.", 240, 480, 6, 12, 1.0),
)


def test_transcript_4_3_tts_two_requests_on_one_socket() -> None:
    client = TtsClient()
    config = StreamConfig(voice_id=7, language="en", word_timestamps=True, model_id="kugel-3.5")
    rid0, frames0 = client.request("Hello world.", config)
    assert_client_frames(frames0, [TTS_4_3_FIRST])  # exact: no normalisation needed

    server, out = TtsServer(pricing=PRICING), Outbox()
    cmds = out.take(feed(server, Endpoint.TTS, TTS_4_3_FIRST))
    assert [type(c) for c in cmds] == [OpenPipeline, AppendText, Flush]
    open_ = cmds[0]
    assert isinstance(open_, OpenPipeline) and open_.key == "req-0"
    assert (open_.config.voice_id, open_.config.language, open_.config.word_timestamps) == (7, "en", True)
    assert open_.config.chunk_length_schedule == BALANCED
    assert cmds[1:] == [AppendText("req-0", "Hello world."), Flush("req-0")]

    # S→C audio idx 0..4 (4 x 2400 + 1920 samples), word_timestamps, final.
    samples = [2400, 2400, 2400, 2400, 1920]
    datas = speak(server, out, "req-0", "Hello world.", samples, 0.48, 60.7, words=HELLO_WORLD_WORDS)
    out.take(core(server.flush_done("req-0", native_samples=11520)))

    transcript_final = json.loads(
        '{"final":true,"chunks":5,"total_samples":11520,"dur_ms":480.0,"gen_ms":60.7,"ttfa_ms":5.0,'
        '"rtf":0.126,"usage":{"audio_seconds":0.48,"characters":12,"cost_cents":0.048,"currency":"eur",'
        '"model_id":"kugel-3.5"}}'
    )
    del transcript_final["ttfa_ms"]  # normalisation: fixture-only statistic
    transcript_final["rtf"] = round(60.7 / 480.0, 4)  # normalisation: 4 decimals
    expected = [audio_json(d, i, n) for i, (d, n) in enumerate(zip(datas, samples, strict=True))]
    expected.append({"word_timestamps": words_json(HELLO_WORLD_WORDS)})
    expected.append(transcript_final)
    assert canon(out.json()) == canon(expected)

    # Same socket, second request (generate_async) with G.711 output.
    rid1, frames1 = client.request("Hi there.", config.replace(output_format="ulaw_8000"))
    assert_client_frames(frames1, [TTS_4_3_SECOND])
    cmds = feed(server, Endpoint.TTS, TTS_4_3_SECOND)
    assert isinstance(cmds[0], OpenPipeline) and cmds[0].key == "req-1"
    assert cmds[0].config.effective_format.value == "ulaw_8000"
    first_len = len(out.frames)
    [mulaw] = speak(server, out, "req-1", "Hi there.", [800], 0.1, 20.0, words=(), enc="mulaw", sr=8000)
    out.take(core(server.flush_done("req-1", native_samples=2400)))
    assert canon(out.json()[first_len:]) == canon(
        [
            audio_json(mulaw, 0, 800, enc="mulaw", sr=8000),  # "<b64 800 B>", idx restarts per request
            {
                "final": True,
                "chunks": 1,
                "total_samples": 2400,
                "dur_ms": 100.0,
                "gen_ms": 20.0,
                "rtf": 0.2,
                "usage": usage_json(0.1, 9, 0.01),
            },
        ]
    )

    # Client: every frame routed to the oldest pending request; `final` ends it (T-2).
    events = [e for f in wire_roundtrip(out.frames) for e in client.receive(f)]
    assert [rid for rid, _ in events] == [rid0] * 7 + [rid1] * 2
    assert [e for _, e in events[:5]] == [chunk(d, i) for i, d in enumerate(datas)]
    assert events[5][1] == WordTimestamps(HELLO_WORLD_WORDS)
    final = events[6][1]
    assert isinstance(final, Final)
    assert dict(final.stats) == {
        "chunks": 5,
        "total_samples": 11520,
        "dur_ms": 480.0,
        "gen_ms": 60.7,
        "rtf": 0.1265,
    }
    assert final.usage == SessionUsage(0.48, 12, 0.048, "eur", "kugel-3.5")
    assert events[7][1] == AudioChunk(mulaw, 8000, "mulaw", 0)
    assert isinstance(events[8][1], Final) and not client.pending


# -- 5.5 /ws/tts/stream --------------------------------------------------------------------

PY_A_CONFIG = StreamConfig(voice_id=7, language="en", **PY_KEYS)
PY_A_FIRST = (
    '{"text":"Hello ","flush":false,"cfg_scale":2.0,"max_new_tokens":2048,"sample_rate":24000,'
    '"flush_timeout_ms":500,"max_buffer_length":1000,"normalize":true,"word_timestamps":false,'
    '"speed":1.0,"voice_id":7,"language":"en"}'
)
PY_A_TOKENS = [
    '{"text":"there, ","flush":false}',
    '{"text":"how are ","flush":false}',
    '{"text":"you? ","flush":false}',
]
PY_A_TAIL = ['{"text":"I am ","flush":false}', '{"text":"fine","flush":false}', '{"flush":true}']
CHUNK0_SAMPLES = [2400] * 10  # idx 0..9, 1.0 s
CHUNK1_SAMPLES = [2400, 2400, 2400, 1440]  # idx 10..13, 0.36 s


@dataclass
class StreamPlay:
    """A stream socket mid-transcript: both machines and what went over the wire."""

    client: StreamClient
    server: StreamServer
    out: Outbox = field(default_factory=Outbox)
    events: list[tuple[int | None, Output]] = field(default_factory=list)

    def send(self, frames: Sequence[ClientFrame], transcript: Sequence[str], **kw: Any) -> list[Command]:
        """Client frames checked against the transcript; its frames fed to the server."""
        assert_client_frames(frames, transcript, **kw)
        return [c for t in transcript for c in self.out.take(feed(self.server, Endpoint.STREAM, t))]

    def deliver(self) -> list[tuple[int | None, Output]]:
        new = stream_deliver(self.client, self.out)
        self.events.extend(new)
        return new


def play_5_5a() -> tuple[StreamPlay, list[dict[str, Any]], list[tuple[int | None, Output]]]:
    """Transcript 5.5 (a); returns the play, the expected server JSON and client events."""
    play = StreamPlay(StreamClient(PY_A_CONFIG), StreamServer(pricing=PRICING))
    c = play.client
    assert c.state is TurnState.IDLE
    cmds = play.send(c.send_text("Hello "), [PY_A_FIRST])
    assert c.state is TurnState.STREAMING and c.current_turn == 0
    cmds += play.send([f for t in ("there, ", "how are ", "you? ") for f in c.send_text(t)], PY_A_TOKENS)
    assert play.out.frames == []  # S-9: text short of a chunk boundary gets nothing back
    d0 = speak(play.server, play.out, "turn-0", "Hello there, how are you?", CHUNK0_SAMPLES, 1.0, 117.6)
    cmds += play.send([*c.send_text("I am "), *c.send_text("fine"), *c.flush()], PY_A_TAIL)
    assert c.state is TurnState.FLUSHING
    d1 = speak(play.server, play.out, "turn-0", "I am fine", CHUNK1_SAMPLES, 0.36, 45.3, seed=10)
    play.out.take(core(play.server.flush_done("turn-0")))

    # Server commands: one pipeline, every token appended as it came, one FLUSH.
    assert isinstance(cmds[0], OpenPipeline) and cmds[0].key == "turn-0"
    assert (cmds[0].config.voice_id, cmds[0].config.language) == (7, "en")
    assert cmds[0].config.chunk_length_schedule == BALANCED
    texts = ["Hello ", "there, ", "how are ", "you? ", "I am ", "fine"]
    assert cmds[1:] == [*(AppendText("turn-0", t) for t in texts), Flush("turn-0")]

    transcript = [
        {"generation_started": True, "chunk_id": 0, "text": "Hello there, how are you?"},
        *(audio_json(d, i, 2400, chunk_id=0) for i, d in enumerate(d0)),
        {"chunk_complete": True, "chunk_id": 0, "audio_seconds": 1.0, "gen_ms": 117.6},
        {"generation_started": True, "chunk_id": 1, "text": "I am fine"},
        *(
            audio_json(d, 10 + i, n, chunk_id=1)
            for i, (d, n) in enumerate(zip(d1, CHUNK1_SAMPLES, strict=True))
        ),
        {"chunk_complete": True, "chunk_id": 1, "audio_seconds": 0.36, "gen_ms": 45.3},
        {"final": True, "total_audio_seconds": 1.36, "total_text_chunks": 2, "total_audio_chunks": 14},
        replace_model(
            {
                "session_closed": True,
                "total_audio_seconds": 1.36,
                "total_text_chunks": 2,
                "total_audio_chunks": 14,
                "usage": usage_json(1.36, 35, 0.136, "kugel-3"),
            }
        ),
    ]
    events = play.deliver()
    return play, transcript, events


def test_transcript_5_5a_py_sends_then_flush() -> None:
    play, transcript, events = play_5_5a()
    assert canon(play.out.json()) == canon(transcript)

    # Client: every event is turn 0's; session_closed returns the machine to IDLE.
    assert {turn for turn, _ in events} == {0}
    kinds = [type(e).__name__ for _, e in events]
    chunk0 = ["GenerationStarted", *["AudioChunk"] * 10, "ChunkComplete"]
    chunk1 = ["GenerationStarted", *["AudioChunk"] * 4, "ChunkComplete"]
    assert kinds == [*chunk0, *chunk1, "Final", "SessionClosed"]
    audio = [e for _, e in events if isinstance(e, AudioChunk)]
    assert [a.index for a in audio] == list(range(14))
    assert [a.chunk_id for a in audio] == [0] * 10 + [1] * 4
    assert sum(a.duration for a in audio) == pytest.approx(1.36)
    assert events[-2][1] == Final(1.36, 2, 14)
    assert events[-1][1] == SessionClosed(1.36, 2, 14, SessionUsage(1.36, 35, 0.136, "eur", "kugel-3.5"))
    assert play.client.state is TurnState.IDLE and not play.client.turns


JS_B = [
    '{"text":"Hello ","flush":false,"voice_id":1}',
    '{"text":"world. ","flush":false}',
    '{"text":"How are you?","flush":false}',
]


def test_transcript_5_5b_js_sends_then_close() -> None:
    play = StreamPlay(StreamClient(StreamConfig(voice_id=1)), StreamServer(pricing=PRICING))
    c = play.client
    frames = [*c.send_text("Hello "), *c.send_text("world. "), *c.send_text("How are you?")]
    play.send(frames, JS_B, defaults=STREAM_DEFAULTS)
    # chunk 0 with the SDK test values of 5.4: 1.0 s, gen_ms 100 (two 0.5 s frames).
    d0 = speak(play.server, play.out, "turn-0", "Hello world.", [12000, 12000], 1.0, 100.0)
    assert play.send(c.end_turn(), ['{"close":true}']) == [Flush("turn-0")]
    assert c.state is TurnState.FLUSHING
    d1 = speak(play.server, play.out, "turn-0", "How are you?", [9600, 9600], 0.8, 90.0, seed=5)
    play.out.take(core(play.server.flush_done("turn-0")))
    assert canon(play.out.json()) == canon(
        [
            {"generation_started": True, "chunk_id": 0, "text": "Hello world."},
            *(audio_json(d, i, 12000, chunk_id=0) for i, d in enumerate(d0)),
            {"chunk_complete": True, "chunk_id": 0, "audio_seconds": 1.0, "gen_ms": 100.0},
            {"generation_started": True, "chunk_id": 1, "text": "How are you?"},
            *(audio_json(d, 2 + i, 9600, chunk_id=1) for i, d in enumerate(d1)),
            {"chunk_complete": True, "chunk_id": 1, "audio_seconds": 0.8, "gen_ms": 90.0},
            # 5.4 test values: {"session_closed": true, 1.8, 2, 4}
            {"final": True, "total_audio_seconds": 1.8, "total_text_chunks": 2, "total_audio_chunks": 4},
            {
                "session_closed": True,
                "total_audio_seconds": 1.8,
                "total_text_chunks": 2,
                "total_audio_chunks": 4,
                "usage": usage_json(1.8, 25, 0.18),
            },
        ]
    )
    events = play.deliver()
    assert {turn for turn, _ in events} == {0}
    assert [e for _, e in events[-3:]] == [
        ChunkComplete(1, 0.8, 90.0),
        Final(1.8, 2, 4),
        SessionClosed(1.8, 2, 4, SessionUsage(1.8, 25, 0.18, "eur", "kugel-3.5")),
    ]
    assert c.state is TurnState.IDLE


PY_C_CONFIG = StreamConfig(voice_id=9, language="de", **PY_KEYS)
# "…" filled with the keys of 5.5 (a)'s first frame (same PY config epoch shape).
PY_C_FIRST = (
    '{"text":"Zweiter Satz. ","flush":false,"cfg_scale":2.0,"max_new_tokens":2048,"sample_rate":24000,'
    '"flush_timeout_ms":500,"max_buffer_length":1000,"normalize":true,"word_timestamps":false,'
    '"speed":1.0,"voice_id":9,"language":"de"}'
)


def test_transcript_5_5c_py_reuse_with_new_config() -> None:
    play, _, _ = play_5_5a()
    c, start = play.client, len(play.out.frames)
    assert c.end_turn() == []  # PY end_session() after a flushed turn: no traffic
    assert c.update_config(PY_C_CONFIG) is None  # local only
    cmds = play.send(c.send_text("Zweiter Satz. "), [PY_C_FIRST])
    # S-1: config replaced by the frame that carries it; a new turn key, numbering restarts.
    assert isinstance(cmds[0], OpenPipeline) and cmds[0].key == "turn-1"
    assert (cmds[0].config.voice_id, cmds[0].config.language) == (9, "de")
    data = speak(play.server, play.out, "turn-1", "Zweiter Satz.", [2080] * 6, 0.52, 60.0)
    assert play.send(c.end_turn(), ['{"close":true}']) == [Flush("turn-1")]  # drain() -> close
    play.out.take(core(play.server.flush_done("turn-1")))
    assert canon(play.out.json()[start:]) == canon(
        [
            {"generation_started": True, "chunk_id": 0, "text": "Zweiter Satz."},
            *(audio_json(d, i, 2080, chunk_id=0) for i, d in enumerate(data)),
            {"chunk_complete": True, "chunk_id": 0, "audio_seconds": 0.52, "gen_ms": 60.0},
            {"final": True, "total_audio_seconds": 0.52, "total_text_chunks": 1, "total_audio_chunks": 6},
            {
                "session_closed": True,
                "total_audio_seconds": 0.52,
                "total_text_chunks": 1,
                "total_audio_chunks": 6,
                "usage": usage_json(0.52, 14, 0.052),
            },
        ]
    )
    events = play.deliver()
    assert {turn for turn, _ in events} == {1}
    assert events[-1][1] == SessionClosed(0.52, 1, 6, SessionUsage(0.52, 14, 0.052, "eur", "kugel-3.5"))

    # JS endSession() sends close even after a flushed turn: an empty turn's
    # session_closed (0 s, no usage), which belongs to no client turn.
    start = len(play.out.frames)
    play.out.take(feed(play.server, Endpoint.STREAM, '{"close":true}'))
    assert canon(play.out.json()[start:]) == canon(
        [
            {
                "session_closed": True,
                "total_audio_seconds": 0.0,
                "total_text_chunks": 0,
                "total_audio_chunks": 0,
            }
        ]
    )
    assert play.deliver() == [(None, SessionClosed(0.0, 0, 0, SessionUsage(0.0)))]


# -- 5.6 barge-in --------------------------------------------------------------------------

LONG = "This is a long answer that will be interrupted because the user "
# <config> and "…" filled with the PY keys of 5.5 (c) (voice 9, "de").
BARGE_FIRST = (
    f'{{"text":"{LONG}","flush":false,"cfg_scale":2.0,"max_new_tokens":2048,"sample_rate":24000,'
    '"flush_timeout_ms":500,"max_buffer_length":1000,"normalize":true,"word_timestamps":false,'
    '"speed":1.0,"voice_id":9,"language":"de"}'
)
BARGE_AGAIN = BARGE_FIRST.replace(LONG, "Sure.").replace('"flush":false', '"flush":true')


def test_transcript_5_6_barge_in() -> None:
    play = StreamPlay(StreamClient(PY_C_CONFIG), StreamServer(pricing=PRICING))
    c = play.client
    cmds = play.send(c.send_text(LONG), [BARGE_FIRST])
    assert [type(x) for x in cmds] == [OpenPipeline, AppendText]
    assert play.out.frames == []  # no sentence end => no audio

    frames, cancelled = c.cancel()
    assert cancelled == [0] and c.state is TurnState.CANCELLING
    cmds = play.send(frames, ['{"cancel":true}'])
    assert cmds[0] == CancelPipeline("turn-0")
    # S-5: late results of the disposed pipeline produce nothing, never final/session_closed.
    server = play.server
    assert server.chunk_started("turn-0", LONG) == []
    assert server.audio("turn-0", pcm(10), "pcm_s16le", 24000, 10) == []
    assert server.chunk_done("turn-0", 0.1, 5.0) == []
    assert core(server.flush_done("turn-0")) == []

    # Config again on the first frame after cancel (5.3), a fresh turn.
    cmds = play.send(c.send_text("Sure.", flush=True), [BARGE_AGAIN])
    assert [type(x) for x in cmds] == [OpenPipeline, AppendText, Flush]
    assert isinstance(cmds[0], OpenPipeline) and cmds[0].key == "turn-1"
    data = speak(server, play.out, "turn-1", "Sure.", [2400] * 3, 0.3, 40.0)
    play.out.take(core(server.flush_done("turn-1")))
    assert canon(play.out.json()) == canon(
        [
            {"interrupted": True},  # replaces final; no session_closed for turn 0 (U-5)
            {"generation_started": True, "chunk_id": 0, "text": "Sure."},
            *(audio_json(d, i, 2400, chunk_id=0) for i, d in enumerate(data)),
            {"chunk_complete": True, "chunk_id": 0, "audio_seconds": 0.3, "gen_ms": 40.0},
            {"final": True, "total_audio_seconds": 0.3, "total_text_chunks": 1, "total_audio_chunks": 3},
            {
                "session_closed": True,
                "total_audio_seconds": 0.3,
                "total_text_chunks": 1,
                "total_audio_chunks": 3,
                "usage": usage_json(0.3, 5, 0.03),
            },
        ]
    )
    events = play.deliver()
    assert events[0] == (None, Interrupted())
    assert {turn for turn, _ in events[1:]} == {1}
    assert events[-1][1] == SessionClosed(0.3, 1, 3, SessionUsage(0.3, 5, 0.03, "eur", "kugel-3.5"))
    assert c.state is TurnState.IDLE


def test_barge_in_mid_chunk_late_frames_dropped_on_both_sides() -> None:
    """The 5.6 race: audio of the cancelled turn is in flight when the cancel is sent."""
    play = StreamPlay(StreamClient(PY_C_CONFIG), StreamServer(pricing=PRICING))
    c, server = play.client, play.server
    play.out.take(core(server.receive(c.send_text("Hello there. How")[0])))
    server_before = len(play.out.frames)
    play.out.take(server.chunk_started("turn-0", "Hello there."))
    play.out.take(server.audio("turn-0", pcm(2400), "pcm_s16le", 24000, 2400))
    in_flight = play.out.undelivered()
    assert len(in_flight) == 2 == len(play.out.frames) - server_before

    frames, cancelled = c.cancel()  # sent while the two frames above travel
    assert cancelled == [0]
    assert [e for f in wire_roundtrip(in_flight) for e in c.receive(f)] == []  # dropped
    # A stale session_closed of the cancelled turn would be dropped too (S-6).
    assert c.receive(SessionClosedFrame(0.1, 1, 1)) == []
    c.send_text("Sure.", flush=True)  # the next turn, before the ack arrives

    play.out.take(core(server.receive(frames[0])))
    assert server.audio("turn-0", pcm(2400), "pcm_s16le", 24000, 2400) == []  # residual audio
    assert server.chunk_done("turn-0", 0.2, 9.0) == []
    assert core(server.receive(decode_client_frame(encode(c.turns[0].frames[0]), Endpoint.STREAM)))[0] == (
        OpenPipeline("turn-1", server.config.merged(WireConfig(chunk_length_schedule=BALANCED)))
    )
    d = speak(server, play.out, "turn-1", "Sure.", [2400], 0.1, 10.0)
    play.out.take(core(server.flush_done("turn-1")))
    events = play.deliver()
    assert [e for e in events] == [
        (None, Interrupted()),
        (1, GenerationStarted(0, "Sure.")),  # numbering restarts for the new turn
        (1, chunk(d[0], 0, 0)),
        (1, ChunkComplete(0, 0.1, 10.0)),
        (1, Final(0.1, 1, 1)),
        (1, SessionClosed(0.1, 1, 1, SessionUsage(0.1, 5, 0.01, "eur", "kugel-3.5"))),
    ]
    assert c.state is TurnState.IDLE and c.cancelling == 0


# -- 6.7 /ws/tts/multi ---------------------------------------------------------------------

MULTI_NARRATOR = (
    '{"text":" ","context_id":"narrator","sample_rate":24000,"normalize":true,"word_timestamps":true,'
    '"language":"en","voice_settings":{"voice_id":7,"cfg_scale":2.0,"max_new_tokens":2048}}'
)
VOICE_7 = '"voice_settings":{"voice_id":7,"cfg_scale":2.0,"max_new_tokens":2048}'
MULTI_CHARACTER = (
    '{"text":" ","context_id":"character",'
    '"voice_settings":{"voice_id":8,"cfg_scale":2.0,"max_new_tokens":2048}}'
)
STORY = "The story begins. It was dark."
STORY_WORDS_0 = (
    WordTimestamp("The", 0, 120, 0, 3),
    WordTimestamp("story", 140, 400, 4, 9),
    WordTimestamp("begins.", 420, 680, 10, 17),
)
STORY_WORDS_1 = (
    WordTimestamp("It", 0, 100, 0, 2),
    WordTimestamp("was", 120, 260, 3, 6),
    WordTimestamp("dark.", 280, 480, 7, 12),
)
HELLO_WORDS = (WordTimestamp("Hello!", 0, 200, 0, 6),)
PY_MULTI_CONFIG = MultiContextConfig(language="en", word_timestamps=True)


@dataclass
class MultiPlay:
    """A multi socket mid-transcript."""

    client: MultiClient
    server: MultiServer
    out: Outbox = field(default_factory=Outbox)

    def send(self, frames: Sequence[ClientFrame], transcript: Sequence[str], **kw: Any) -> list[Command]:
        assert_client_frames(frames, transcript, **kw)
        return [c for t in transcript for c in self.out.take(feed(self.server, Endpoint.MULTI, t))]

    def deliver(self) -> list[Output]:
        return multi_deliver(self.client, self.out)


def open_narrator_and_character() -> MultiPlay:
    """The first four lines of the 6.7 PY transcript."""
    play = MultiPlay(MultiClient(PY_MULTI_CONFIG), MultiServer(pricing=PRICING))
    c = play.client
    cmds = play.send(c.create_context("narrator", voice_id=7), [MULTI_NARRATOR], defaults=MULTI_DEFAULTS)
    assert c.contexts == {"narrator": ContextState.CREATING}
    open_ = cmds[0]
    assert isinstance(open_, OpenPipeline) and open_.key == "narrator"
    # M-2: the voice binds from voice_settings; the top-level keys are session config.
    assert (open_.config.voice_id, open_.config.language, open_.config.word_timestamps) == (7, "en", True)
    assert open_.voice_settings == VoiceSettings(voice_id=7, cfg_scale=2.0, max_new_tokens=2048)
    assert cmds[1:] == [Send((ContextCreatedFrame("narrator"),))]  # M-4: " " appends nothing
    assert play.deliver() == [ContextCreated(context_id="narrator")]
    assert c.contexts == {"narrator": ContextState.OPEN}

    cmds = play.send(c.create_context("character", voice_id=8), [MULTI_CHARACTER])
    assert isinstance(cmds[0], OpenPipeline) and cmds[0].config.voice_id == 8
    assert cmds[0].config.word_timestamps is True  # sticky session config (M-2)
    assert play.deliver() == [ContextCreated(context_id="character")]
    return play


def test_transcript_6_7_py_multi_context() -> None:
    play = open_narrator_and_character()
    c, server, out = play.client, play.server, play.out
    assert canon(out.json()) == canon(
        [
            {"context_created": True, "context_id": "narrator"},
            {"context_created": True, "context_id": "character"},
        ]
    )
    start = len(out.frames)
    cmds = play.send(
        c.send("narrator", STORY, flush=True), [f'{{"text":"{STORY}","context_id":"narrator","flush":true}}']
    )
    assert cmds == [AppendText("narrator", STORY), Flush("narrator")]
    s0 = [2400] * 6 + [1920]  # idx 0..6, 0.68 s
    s1 = [2400] * 4 + [1920]  # idx 7..11, 0.48 s
    d0 = speak(server, out, "narrator", "The story begins.", s0, 0.68, 1.0, words=STORY_WORDS_0)
    d1 = speak(server, out, "narrator", "It was dark.", s1, 0.48, 1.0, seed=7, words=STORY_WORDS_1)
    out.take(core(server.flush_done("narrator")))
    narrator = [
        {"generation_started": True, "context_id": "narrator", "chunk_id": 0, "text": "The story begins."},
        *(
            audio_json(d, i, n, chunk_id=0, context_id="narrator")
            for i, (d, n) in enumerate(zip(d0, s0, strict=True))
        ),
        {"word_timestamps": words_json(STORY_WORDS_0), "context_id": "narrator", "chunk_id": 0},
        {
            "chunk_complete": True,
            "context_id": "narrator",
            "chunk_id": 0,
            "audio_seconds": 0.68,
            "gen_ms": 1.0,
        },
        {"generation_started": True, "context_id": "narrator", "chunk_id": 1, "text": "It was dark."},
        *(
            audio_json(d, 7 + i, n, chunk_id=1, context_id="narrator")
            for i, (d, n) in enumerate(zip(d1, s1, strict=True))
        ),
        # Issue 17: the transcript's words are chunk-relative; rxtts rebases them onto the
        # context (times after chunk 0's 0.68 s, offsets into the context's text).
        {
            "word_timestamps": words_json(shifted(STORY_WORDS_1, 680, 18)),
            "context_id": "narrator",
            "chunk_id": 1,
        },
        {
            "chunk_complete": True,
            "context_id": "narrator",
            "chunk_id": 1,
            "audio_seconds": 0.48,
            "gen_ms": 1.0,
        },
        {"final": True, "context_id": "narrator"},
    ]
    assert canon(out.json()[start:]) == canon(narrator)
    events = play.deliver()
    assert {e.context_id for e in events if not isinstance(e, Exception)} == {"narrator"}
    assert [e.index for e in events if isinstance(e, AudioChunk)] == list(range(12))
    assert events[-1] == Final(context_id="narrator")  # send() returns here

    start = len(out.frames)
    assert play.send(c.keep_alive("character"), ['{"text":"","context_id":"character"}']) == []
    cmds = play.send(
        c.send("character", "Hello!", flush=True), ['{"text":"Hello!","context_id":"character","flush":true}']
    )
    assert cmds == [AppendText("character", "Hello!"), Flush("character")]
    dc = speak(server, out, "character", "Hello!", [2400, 2400], 0.2, 2.0, words=HELLO_WORDS)
    server.audio_sent("character", 0.2)  # the I/O layer wrote both frames (M-7a billing)
    out.take(core(server.flush_done("character")))
    assert canon(out.json()[-1]) == canon({"final": True, "context_id": "character"})
    assert canon(out.json()[start + 1 : start + 3]) == canon(
        [audio_json(d, i, 2400, chunk_id=0, context_id="character") for i, d in enumerate(dc)]
    )
    assert play.deliver()[-1] == Final(context_id="character")

    start = len(out.frames)
    assert play.send(c.close_context("narrator"), ['{"close_context":true,"context_id":"narrator"}']) == [
        Flush("narrator")
    ]
    assert c.contexts["narrator"] is ContextState.CLOSING and c.free_slots == 18  # slot held until closed
    out.take(core(server.flush_done("narrator")))
    assert "narrator" in server.open_contexts  # M-7: draining until its frames are written
    assert server.output_idle("narrator", True, 0.0) == [CancelTimer("narrator")]
    assert "narrator" not in server.open_contexts
    cmds = play.send(
        c.close_context("character", immediate=True),
        ['{"close_context":true,"context_id":"character","immediate":true}'],
    )
    assert cmds[0] == CancelPipeline("character")
    # Residual audio of the immediately closed context is dropped (M-7).
    assert server.audio("character", pcm(10), "pcm_s16le", 24000, 10) == []
    assert core(server.flush_done("character")) == []
    cmds = play.send(c.update_settings(cfg_scale=1.5), ['{"update_settings":{"cfg_scale":1.5}}'])
    cmds = play.send(c.close(), ['{"close_socket":true}'])
    assert cmds[-1] == CloseSocket(1000)
    assert canon(out.json()[start:]) == canon(
        [
            {"final": True, "context_id": "narrator"},
            replace_model(
                {
                    "context_closed": True,
                    "context_id": "narrator",
                    "usage": usage_json(1.16, 30, 0.116, "kugel-3"),
                }
            ),
            # "usage":{…} filled; no final (M-7 immediate)
            {"context_closed": True, "context_id": "character", "usage": usage_json(0.2, 6, 0.02)},
            # U-24: all six settings, null where never set; ⊇ the transcript's {"cfg_scale":1.5}
            {
                "settings_updated": True,
                "settings": {
                    "cfg_scale": 1.5,
                    "temperature": None,
                    "speed": None,
                    "max_new_tokens": None,
                    "language": "en",
                    "normalize": True,
                },
            },
            {"session_closed": True},
        ]
    )
    assert out.log[-1] == CloseSocket(1000)  # after session_closed
    events = play.deliver()
    assert events[0] == Final(context_id="narrator")
    assert events[1] == ContextClosed(
        SessionUsage(1.16, 30, 0.116, "eur", "kugel-3.5"), context_id="narrator"
    )
    assert events[2] == ContextClosed(SessionUsage(0.2, 6, 0.02, "eur", "kugel-3.5"), context_id="character")
    assert isinstance(events[3], SettingsUpdated) and events[3].settings["cfg_scale"] == 1.5
    assert events[4] == SessionClosed()
    assert c.contexts == {} and c.usage["narrator"].characters == 30
    assert is_protocol_error(server.receive(TextFrame("late", None, "narrator")))  # after close_socket


PARTIAL = '{"text":"Partial text without end","context_id":"narrator","flush":false}'


def test_transcript_6_7_py_inactivity() -> None:
    play = open_narrator_and_character()
    c, server, out = play.client, play.server, play.out
    start = len(out.frames)
    cmds = play.send(c.send("narrator", "Partial text without end"), [PARTIAL])
    assert cmds == [AppendText("narrator", "Partial text without end")]
    assert out.frames[start:] == []  # nothing back
    # 20 s later the I/O layer's inactivity timers fire (M-10).
    assert out.take(core(server.timeout("character"))) == [
        CancelPipeline("character"),
        Purge(frozenset({"character"})),
        Send((ContextTimeoutFrame("character"),)),
    ]
    out.take(core(server.timeout("narrator")))
    assert server.open_contexts == []
    assert play.deliver() == [ContextTimeout(context_id="character"), ContextTimeout(context_id="narrator")]
    assert c.contexts == {} and c.free_slots == 20  # the client frees the slots too

    # PY ignores context_timeout and flushes the id; our client refuses instead
    # (it forgot the context), so the transcript's PY frame drives the server.
    with pytest.raises(LocalProtocolError):
        c.flush("narrator")
    start = len(out.frames)
    cmds = out.take(feed(server, Endpoint.MULTI, '{"flush":true,"context_id":"narrator"}'))
    assert isinstance(cmds[0], OpenPipeline) and cmds[-1] == Flush("narrator")  # M-1 re-creation
    assert server.open_contexts == ["narrator"]
    out.take(core(server.flush_done("narrator")))  # empty buffer: final anyway (M-6)
    assert canon(out.json()[start:]) == canon(
        [{"context_created": True, "context_id": "narrator"}, {"final": True, "context_id": "narrator"}]
    )
    assert play.deliver() == []  # frames of a context our client forgot are dropped


def test_transcript_6_7_py_cap_then_close_socket() -> None:
    """The cap part of 6.7; the re-created ``narrator`` of the inactivity part timed out
    again first (elided): were it still open it would hold a slot and ``c19`` would be the
    21st context, asserted on a copy below."""
    play = open_narrator_and_character()
    c, server, out = play.client, play.server, play.out
    for cid in ("character", "narrator"):
        out.take(core(server.timeout(cid)))
    play.deliver()
    out.take(feed(server, Endpoint.MULTI, '{"flush":true,"context_id":"narrator"}'))
    out.take(core(server.flush_done("narrator")))

    held = copy.deepcopy(server)
    for i in range(19):
        core(held.receive(decode_client_frame(f'{{"text":" ","context_id":"c{i}"}}', Endpoint.MULTI)))
    [refused] = core(held.receive(decode_client_frame('{"text":" ","context_id":"c19"}', Endpoint.MULTI)))
    assert isinstance(refused, Send) and refused.frames[0] == ErrorFrame(
        "Too many concurrent contexts", "TOO_MANY_CONTEXTS", 429, context_id="c19"
    )

    out.take(core(server.timeout("narrator")))  # the elided second timeout
    play.deliver()
    start = len(out.frames)
    vs = VoiceSettings(voice_id=7, cfg_scale=2.0, max_new_tokens=2048)
    for i in range(20):
        cmds = play.send(
            c.create_context(f"c{i}", voice_settings=vs),
            [f'{{"text":" ","context_id":"c{i}",{VOICE_7}}}'],
        )
        assert isinstance(cmds[0], OpenPipeline)
    assert c.free_slots == 0 and len(server.open_contexts) == 20
    # Admission control: our client never puts a 21st context on the wire (M-9).
    with pytest.raises(TooManyContextsError) as info:
        c.create_context("c20", voice_settings=vs)
    assert info.value.context_id == "c20" and "c20" not in c.contexts
    # PY does: refused with context_id, the socket survives (no CloseSocket, U-10).
    c20 = f'{{"text":" ","context_id":"c20",{VOICE_7}}}'
    cmds = out.take(feed(server, Endpoint.MULTI, c20))
    assert cmds == [
        Send((ErrorFrame("Too many concurrent contexts", "TOO_MANY_CONTEXTS", 429, context_id="c20"),))
    ]
    assert len(server.open_contexts) == 20 and not server.closed

    cmds = play.send(c.close(), ['{"close_socket":true}'])
    assert cmds == [Flush(f"c{i}") for i in range(20)]  # M-8: each context closed gracefully
    for i in range(20):
        out.take(core(server.flush_done(f"c{i}")))
        # M-7/M-8: each drains until the I/O layer wrote its frames; the last one closes
        closed = out.take(core(server.output_idle(f"c{i}", True, 0.0)))
        assert (CloseSocket(1000) in closed) == (i == 19)
    context_frames = [
        f
        for i in range(20)
        for f in (
            {"final": True, "context_id": f"c{i}"},
            {"context_closed": True, "context_id": f"c{i}", "usage": usage_json(0.0, 0, 0.0)},
        )
    ]
    assert canon(out.json()[start:]) == canon(
        [
            *({"context_created": True, "context_id": f"c{i}"} for i in range(20)),
            {
                "error": "Too many concurrent contexts",
                "error_code": "TOO_MANY_CONTEXTS",
                "code": 429,
                "context_id": "c20",
            },
            *context_frames,
            {"session_closed": True},
        ]
    )
    assert out.log[-1] == CloseSocket(1000) and server.closed

    events = play.deliver()
    assert [type(e) for e in events[:20]] == [ContextCreated] * 20
    err = events[20]
    assert isinstance(err, TooManyContextsError) and isinstance(err, RateLimitError)
    assert (err.context_id, err.status) == ("c20", 429)
    assert events[21:23] == [
        Final(context_id="c0"),
        ContextClosed(SessionUsage(0.0, 0, 0.0, "eur", "kugel-3.5"), context_id="c0"),
    ]
    assert events[-1] == SessionClosed() and c.contexts == {}


# -- illegal transitions -------------------------------------------------------------------


def _closing_multi_client(immediate: bool) -> MultiClient:
    c = MultiClient(MultiContextConfig(default_voice_id=1))
    c.create_context("a")
    c.close_context("a", immediate=immediate)
    return c


def _closed_multi_client() -> MultiClient:
    c = MultiClient(MultiContextConfig(default_voice_id=1))
    c.create_context("a")
    c.close()
    return c


def _closed_stream_server(turn_open: bool) -> StreamServer:
    s = StreamServer()
    if turn_open:
        core(s.receive(TextFrame("Hello", False, None, WireConfig(voice_id=1))))
    core(s.receive(CloseSocketFrame()))
    return s


def _closing_multi_server(fully: bool) -> MultiServer:
    s = MultiServer()
    core(s.receive(TextFrame("Hi", None, "a", WireConfig(), VoiceSettings(voice_id=1))))
    core(s.receive(CloseSocketFrame()))
    if fully:
        core(s.flush_done("a"))
        core(s.output_idle("a", True, 0.0))  # its final and context_closed were written (M-7)
        assert s.closed
    else:
        assert s.closing_socket and not s.closed
    return s


ANY_CLIENT_FRAME: list[ClientFrame] = [
    TextFrame("x", False, None, WireConfig(voice_id=1)),
    TextFrame("x", True, "a", WireConfig(), VoiceSettings(voice_id=1)),
    FlushFrame(),
    FlushFrame("a"),
    CloseFrame(),
    CancelFrame(),
    UpdateSettingsFrame(WireConfig(speed=1.1)),
    CloseContextFrame("a"),
    CloseSocketFrame(),
    TtsRequest("x", WireConfig(voice_id=1)),
]

ILLEGAL: list[tuple[str, Callable[[], object]]] = [
    ("stream client: non-str text", lambda: StreamClient().send_text(b"x")),  # type: ignore[arg-type]
    ("multi: send to a gracefully closing context", lambda: _closing_multi_client(False).send("a", "x")),
    ("multi: send to an immediately closing context", lambda: _closing_multi_client(True).send("a", "x")),
    ("multi: flush a closing context", lambda: _closing_multi_client(False).flush("a")),
    ("multi: keep-alive a closing context", lambda: _closing_multi_client(False).keep_alive("a")),
    ("multi: re-create a closing context", lambda: _closing_multi_client(False).create_context("a")),
    ("multi: flush an unknown context", lambda: MultiClient().flush("nope")),
    ("multi: keep-alive an unknown context", lambda: MultiClient().keep_alive("nope")),
    ("multi: empty context id", lambda: MultiClient().create_context("")),
    ("multi: non-str context id", lambda: MultiClient().send(7, "x")),  # type: ignore[arg-type]
    ("multi: non-str text", lambda: MultiClient().send("a", None)),  # type: ignore[arg-type]
    ("multi: create after close", lambda: _closed_multi_client().create_context("b")),
    ("multi: send after close", lambda: _closed_multi_client().send("a", "x")),
    ("multi: flush after close", lambda: _closed_multi_client().flush("a")),
    ("multi: keep-alive after close", lambda: _closed_multi_client().keep_alive("a")),
    ("multi: close_context after close", lambda: _closed_multi_client().close_context("a")),
    ("update_settings: empty", lambda: settings_update()),
    ("update_settings: not updatable", lambda: settings_update(voice_id=3)),
    ("update_settings: out of range", lambda: settings_update(speed=2.0)),
    ("update_settings: wrong type", lambda: settings_update(temperature="hot")),
    (
        "stream client update_settings: not updatable",
        lambda: StreamClient().update_settings(sample_rate=8000),
    ),
    ("multi client update_settings: empty", lambda: MultiClient().update_settings()),
]
SERVER_ILLEGAL: list[tuple[str, Callable[[], StreamServer | MultiServer | TtsServer], ClientFrame]] = [
    ("stream server: tts request", StreamServer, TtsRequest("x", WireConfig(voice_id=1))),
    ("stream server: close_context", StreamServer, CloseContextFrame("a")),
    ("multi server: cancel (stream frame)", MultiServer, CancelFrame()),
    ("multi server: close (stream frame)", MultiServer, CloseFrame()),
    ("multi server: tts request", MultiServer, TtsRequest("x", WireConfig(voice_id=1))),
    ("multi server: flush without context", MultiServer, FlushFrame()),
    ("tts server: text frame", TtsServer, TextFrame("x", True)),
    ("tts server: cancel", TtsServer, CancelFrame()),
    ("tts server: close_socket", TtsServer, CloseSocketFrame()),
]
SERVER_ILLEGAL += [
    (
        f"stream server after close_socket ({'turn open' if t else 'idle'}): {type(f).__name__}",
        lambda t=t: _closed_stream_server(t),
        f,
    )
    for t in (False, True)
    for f in ANY_CLIENT_FRAME
]
SERVER_ILLEGAL += [
    (
        f"multi server after close_socket ({'closed' if full else 'closing'}): {type(f).__name__}",
        lambda full=full: _closing_multi_server(full),
        f,
    )
    for full in (False, True)
    for f in ANY_CLIENT_FRAME
]


def is_protocol_error(cmds: Sequence[Command]) -> bool:
    """Whether ``cmds`` is exactly the PROTOCOL_ERROR reply to an illegal frame."""
    return (
        len(cmds) == 1
        and isinstance(cmds[0], Send)
        and len(cmds[0].frames) == 1
        and isinstance(err := cmds[0].frames[0], ErrorFrame)
        and err.error_code == "PROTOCOL_ERROR"
        and err.code == 400
    )


@pytest.mark.parametrize(("name", "make", "frame"), SERVER_ILLEGAL, ids=[n for n, _, _ in SERVER_ILLEGAL])
def test_illegal_client_frame_gets_the_protocol_error_frame_and_changes_nothing(
    name: str, make: Callable[[], StreamServer | MultiServer | TtsServer], frame: ClientFrame
) -> None:
    """Absent (state, event) pairs of the tables: the PROTOCOL error frame, state kept."""
    server = make()
    before = (
        copy.deepcopy(server.pipelines),
        getattr(server, "state", None),
        getattr(server, "config", None),
    )
    assert is_protocol_error(server.receive(frame))
    assert (server.pipelines, getattr(server, "state", None), getattr(server, "config", None)) == before


def test_rendered_tables_match_the_executed_tables() -> None:
    """The docstring tables of rxtts.protocol.server are the executed ones (no drift)."""
    import rxtts.protocol.server as machines

    doc = machines.__doc__ or ""
    for name, table in TABLES.items():
        assert render_table(table) in doc, f"{name} in the module docstring is stale"
    # A changed row changes the rendering (the check could fail).
    key, row = next(iter(machines.STREAM_TABLE.items()))
    tampered = {**machines.STREAM_TABLE, key: type(row)(row.next, row.effects[:-1])}
    assert render_table(tampered) not in doc


@pytest.mark.parametrize(("name", "attempt"), ILLEGAL, ids=[n for n, _ in ILLEGAL])
def test_illegal_transition_raises_local_protocol_error(name: str, attempt: Callable[[], object]) -> None:
    with pytest.raises(LocalProtocolError):
        attempt()


def test_illegal_intent_leaves_client_state_unchanged() -> None:
    c = _closing_multi_client(False)
    before = (dict(c.contexts), c.free_slots, c.session_config_sent)
    for attempt in (lambda: c.send("a", "x"), lambda: c.flush("a"), lambda: c.create_context("a")):
        with pytest.raises(LocalProtocolError):
            attempt()
    assert (dict(c.contexts), c.free_slots, c.session_config_sent) == before


def test_update_settings_rejection_is_validation_error() -> None:
    with pytest.raises(LocalProtocolError) as info:
        settings_update(cfg_scale="high")
    assert info.value.error_code == "VALIDATION_ERROR"


def test_multi_client_21st_context_refused_without_a_frame() -> None:
    c = MultiClient(MultiContextConfig(default_voice_id=1))
    frames = [f for i in range(20) for f in c.create_context(f"c{i}")]
    assert len(frames) == 20 and c.free_slots == 0
    for attempt in (lambda: c.create_context("c20"), lambda: c.send("c20", "Hi", flush=True)):
        with pytest.raises(TooManyContextsError) as info:
            attempt()
        assert info.value.error_code == "TOO_MANY_CONTEXTS" and info.value.context_id == "c20"
    assert list(c.contexts) == [f"c{i}" for i in range(20)]
    # A known id still works at the cap; closing frees the slot only once the server says so.
    assert c.send("c3", "Hi") == [TextFrame("Hi", False, "c3")]
    assert c.close_context("c0") == [CloseContextFrame("c0")]
    assert c.free_slots == 0
    assert c.receive(ContextClosedFrame("c0")) == [ContextClosed(context_id="c0")]
    assert c.free_slots == 1 and len(c.create_context("c20")) == 1


def test_multi_client_smaller_admission_limit() -> None:
    c = MultiClient(MultiContextConfig(default_voice_id=1, max_contexts=2))
    c.create_context("a")
    c.create_context("b")
    with pytest.raises(TooManyContextsError):
        c.create_context("c")
    c.receive(ContextTimeoutFrame("a"))  # a timeout frees the slot too
    assert c.create_context("c")[0].context_id == "c"  # type: ignore[union-attr]


# -- legal transitions: /ws/tts/stream -----------------------------------------------------


def stream_server(**kw: Any) -> tuple[StreamServer, Outbox]:
    return StreamServer(pricing=PRICING, **kw), Outbox()


def text(t: str, flush: bool | None = False, **config: Any) -> TextFrame:
    return TextFrame(t, flush, None, WireConfig(**config))


def sends(cmds: Iterable[Command | ServerFrame]) -> list[ServerFrame]:
    """The frames of the ``Send`` commands in ``cmds``."""
    return [f for c in cmds if isinstance(c, Send) for f in c.frames]


def test_s1_config_is_sticky_until_replaced() -> None:
    s, _ = stream_server()
    cmds = core(s.receive(text("One.", True, voice_id=7, language="en", speed=1.1)))
    assert cmds[0] == OpenPipeline(
        "turn-0", WireConfig(voice_id=7, language="en", speed=1.1, chunk_length_schedule=BALANCED)
    )
    core(s.flush_done("turn-0"))
    # Later turns carry no config (PY after a flushed turn): the old config holds.
    cmds = core(s.receive(text("Two.", True)))
    assert isinstance(cmds[0], OpenPipeline) and cmds[0].config.voice_id == 7 and cmds[0].config.speed == 1.1
    core(s.flush_done("turn-1"))
    # A frame carrying config replaces the keys it sets, keeps the others.
    cmds = core(s.receive(text("Drei.", True, voice_id=9, language="de")))
    assert isinstance(cmds[0], OpenPipeline)
    assert (cmds[0].config.voice_id, cmds[0].config.language, cmds[0].config.speed) == (9, "de", 1.1)


def test_s1_config_from_a_bare_flush() -> None:
    """PY's bare flush may be the first frame carrying config (S-1)."""
    s, _ = stream_server()
    cmds = core(s.receive(FlushFrame(None, WireConfig(voice_id=5, chunk_length_schedule=(10, 20)))))
    assert sends(cmds) == [SessionClosedFrame(0.0, 0, 0)]  # no turn open: like close (S-4)
    cmds = core(s.receive(text("Hi.")))
    assert cmds[0] == OpenPipeline("turn-0", WireConfig(voice_id=5, chunk_length_schedule=(10, 20)))


def test_s2_every_token_appended_blank_ones_only_inside_a_turn() -> None:
    s, _ = stream_server()
    assert core(s.receive(text("", voice_id=1))) == []  # blank opens nothing (S-9)
    assert core(s.receive(text("  "))) == []
    cmds = core(s.receive(text("Hello")))
    assert [type(c) for c in cmds] == [OpenPipeline, AppendText]
    assert core(s.receive(text(" "))) == [AppendText("turn-0", " ")]  # spacing kept inside a turn
    assert core(s.receive(text(""))) == []
    assert core(s.receive(text("world", None))) == [AppendText("turn-0", "world")]


def test_s3_flush_with_text_then_final_and_session_closed() -> None:
    s, out = stream_server()
    cmds = core(s.receive(text("Hi.", True, voice_id=1)))
    assert cmds[1:] == [AppendText("turn-0", "Hi."), Flush("turn-0")]
    speak(s, out, "turn-0", "Hi.", [2400], 0.1, 3.0)
    frames = sends(s.flush_done("turn-0"))
    usage = SessionUsage(0.1, 3, 0.01, "eur", "kugel-3.5")
    assert frames == [FinalFrame(None, 0.1, 1, 1), SessionClosedFrame(0.1, 1, 1, usage)]


def test_s4_close_with_open_turn_and_without() -> None:
    s, out = stream_server()
    assert sends(core(s.receive(CloseFrame()))) == [SessionClosedFrame(0.0, 0, 0)]  # empty, at once
    core(s.receive(text("Hi.", voice_id=1)))
    assert core(s.receive(CloseFrame(alias=True))) == [Flush("turn-0")]  # end_session = close (S-10)
    speak(s, out, "turn-0", "Hi.", [2400], 0.1, 3.0)
    assert [type(f) for f in sends(s.flush_done("turn-0"))] == [FinalFrame, SessionClosedFrame]


def test_s4_turn_without_audio_gets_only_session_closed() -> None:
    """U-4: ``final`` only if the turn produced content."""
    s, _ = stream_server()
    core(s.receive(text("...", voice_id=1)))
    core(s.receive(CloseFrame()))
    [closed] = sends(s.flush_done("turn-0"))
    assert closed == SessionClosedFrame(0.0, 0, 0, SessionUsage(0.0, 3, 0.0, "eur", "kugel-3.5"))


def test_s4_close_while_a_turn_is_ending_is_answered_after_it() -> None:
    """FIX: a close/blank flush while the previous turn still speaks gets its empty
    session_closed right after that turn's own (it used to get none, leaving the client's
    blank turn open forever and every later turn attributed one turn late)."""
    s, out = stream_server()
    core(s.receive(text("One.", True, voice_id=1)))
    assert core(s.receive(CloseFrame())) == []  # JS endSession() right after a flushed send
    assert core(s.receive(text(" ", True))) == []  # a blank turn flushed
    speak(s, out, "turn-0", "One.", [2400], 0.1, 3.0)
    frames = sends(s.flush_done("turn-0"))
    assert [type(f) for f in frames] == [
        FinalFrame,
        SessionClosedFrame,
        SessionClosedFrame,
        SessionClosedFrame,
    ]
    assert frames[2:] == [SessionClosedFrame(0.0, 0, 0)] * 2


def test_s4_blank_turn_pairs_with_client_turns() -> None:
    """The fix above seen from our client: each client turn gets exactly its own session_closed."""
    client, (server, out) = StreamClient(StreamConfig(voice_id=1)), stream_server()
    for f in [
        *client.send_text("One.", flush=True),
        *client.send_text(" ", flush=True),
        *client.send_text("Two.", flush=True),
    ]:
        out.take(core(server.receive(f)))
    assert [t.id for t in client.turns] == [0, 1, 2]
    for key in ("turn-0", "turn-1"):
        speak(server, out, key, "x.", [2400], 0.1, 1.0)
        out.take(core(server.flush_done(key)))
    closed = [turn for turn, e in stream_deliver(client, out) if isinstance(e, SessionClosed)]
    assert closed == [0, 1, 2] and not client.turns


def test_s5_cancel_without_a_turn_answers_interrupted() -> None:
    s, _ = stream_server()
    assert core(s.receive(CancelFrame())) == [Purge(None), Send((InterruptedFrame(),))]
    core(s.receive(text("One.", True, voice_id=1)))
    core(s.flush_done("turn-0"))  # the turn ended just before the cancel arrived
    assert core(s.receive(CancelFrame())) == [Purge(None), Send((InterruptedFrame(),))]


def test_s5_cancel_stops_ending_and_open_turns_only_interrupted_follows() -> None:
    s, out = stream_server()
    core(s.receive(text("One.", True, voice_id=1)))
    core(s.receive(CloseFrame()))  # owed empty session_closed behind turn-0
    core(s.receive(text("Two")))
    out.take(s.chunk_started("turn-0", "One."))
    cmds = core(s.receive(CancelFrame()))
    # S-5: every unsent turn frame is purged; interrupted replaces them.
    assert cmds == [
        CancelPipeline("turn-0"),
        CancelPipeline("turn-1"),
        Purge(None),
        Send((InterruptedFrame(),)),
    ]
    assert (s.open_turn, s.ending, s.pipelines, s.deferred_closes) == (None, [], {}, {})
    for key in ("turn-0", "turn-1"):
        assert s.audio(key, pcm(1), "pcm_s16le", 24000, 1) == []
        assert s.chunk_done(key, 0.1, 1.0) == []
        assert core(s.flush_done(key)) == []
        assert core(s.error(key, ProtocolError("late"))) == []
        assert core(s.idle_timeout(key)) == []
    # The next text opens a fresh turn.
    assert core(s.receive(text("Three.")))[0] == OpenPipeline("turn-2", s._resolved())


def test_s7_update_settings_snapshot_of_six_keys() -> None:
    s, _ = stream_server()
    cmds = core(s.receive(UpdateSettingsFrame(WireConfig(temperature=0.3, speed=1.1))))
    assert cmds == [
        Send(
            (
                SettingsUpdatedFrame(
                    {
                        "cfg_scale": None,
                        "temperature": 0.3,
                        "speed": 1.1,
                        "max_new_tokens": None,
                        "language": None,
                        "normalize": None,
                    }
                ),
            )
        )
    ]


def test_s7_update_settings_never_opens_or_ends_a_turn_applies_next() -> None:
    s, _ = stream_server()
    core(s.receive(text("Hello", voice_id=1, cfg_scale=2.0)))
    cmds = core(s.receive(UpdateSettingsFrame(WireConfig(cfg_scale=1.5))))
    assert [type(f) for f in sends(cmds)] == [SettingsUpdatedFrame] and len(cmds) == 1
    assert s.open_turn == "turn-0" and s.pipelines["turn-0"].config.cfg_scale == 2.0  # not this turn
    core(s.receive(CloseFrame()))
    core(s.flush_done("turn-0"))
    cmds = core(s.receive(text("Next.")))
    assert isinstance(cmds[0], OpenPipeline) and cmds[0].config.cfg_scale == 1.5


def test_s8_idle_timeout_warns_then_flushes() -> None:
    s, out = stream_server()
    core(s.receive(text("Unfinished", voice_id=1)))
    assert core(s.idle_timeout("turn-7")) == []  # not the open turn
    cmds = core(s.idle_timeout("turn-0"))
    assert cmds == [Send((WarningFrame(AUTO_FLUSH_WARNING),)), Flush("turn-0")]
    assert core(s.idle_timeout("turn-0")) == []  # already ending
    speak(s, out, "turn-0", "Unfinished", [2400], 0.1, 2.0)
    assert [type(f) for f in sends(s.flush_done("turn-0"))] == [FinalFrame, SessionClosedFrame]
    client = StreamClient()
    client.send_text("Unfinished")
    assert client.receive(WarningFrame(AUTO_FLUSH_WARNING)) == [(0, ServerWarning(AUTO_FLUSH_WARNING))]


def test_stream_missing_voice_opens_no_turn() -> None:
    s, _ = stream_server()
    cmds = core(s.receive(text("Hi.")))
    assert cmds == [Send((ErrorFrame("voice_id is required", "MISSING_VOICE_ID", 400),))]
    assert s.open_turn is None and s.pipelines == {}


def test_stream_pipeline_error_ends_the_turn() -> None:
    s, out = stream_server()
    core(s.receive(text("Hi.", True, voice_id=1)))
    core(s.receive(CloseFrame()))
    speak(s, out, "turn-0", "Hi.", [2400], 0.1, 2.0)
    cmds = core(s.error("turn-0", ProtocolError("engine crashed", error_code="INTERNAL_ERROR", status=500)))
    usage = SessionUsage(0.1, 3, 0.01, "eur", "kugel-3.5")
    assert cmds == [
        CancelPipeline("turn-0"),
        Send(
            (
                ErrorFrame("engine crashed", "INTERNAL_ERROR", 500),
                SessionClosedFrame(0.1, 1, 1, usage),
                SessionClosedFrame(0.0, 0, 0),  # the owed answer to the close
            )
        ),
    ]
    assert s.pipelines == {} and s.ending == []


def test_s10_close_socket() -> None:
    s, _ = stream_server()
    assert core(s.receive(CloseSocketFrame())) == [Send((SessionClosedFrame(0.0, 0, 0),)), CloseSocket(1000)]
    s, out = stream_server()
    core(s.receive(text("Hi.", voice_id=1)))
    # With a turn open: FLUSH, then CloseSocket; the turn's final/session_closed still
    # come from flush_done, so the I/O layer closes only once no turn is live (S-10).
    assert core(s.receive(CloseSocketFrame())) == [Flush("turn-0"), CloseSocket(1000)]
    speak(s, out, "turn-0", "Hi.", [2400], 0.1, 2.0)
    assert [type(f) for f in sends(s.flush_done("turn-0"))] == [FinalFrame, SessionClosedFrame]


def test_stream_frames_of_a_turn_are_numbered_per_turn() -> None:
    s, out = stream_server()
    core(s.receive(text("A. B.", True, voice_id=1)))
    speak(s, out, "turn-0", "A.", [100, 100], 0.01, 1.0)
    speak(s, out, "turn-0", "B.", [100], 0.005, 1.0)
    core(s.flush_done("turn-0"))
    core(s.receive(text("C.", True)))
    speak(s, out, "turn-1", "C.", [100], 0.005, 1.0)
    audio = [f for f in out.frames if isinstance(f, AudioFrame)]
    assert [(f.idx, f.chunk_id) for f in audio] == [(0, 0), (1, 0), (2, 1), (0, 0)]
    # chunk_done without a started chunk is ignored (S-9: only after generation_started).
    assert s.chunk_done("turn-1", 0.1, 1.0) == []


def test_word_timestamps_only_when_requested() -> None:
    words = WordTimestampsFrame(HELLO_WORDS)
    s, _ = stream_server()
    core(s.receive(text("Hello!", voice_id=1)))
    s.chunk_started("turn-0", "Hello!")
    assert s.word_timestamps("turn-0", words) == []  # G-9
    s, _ = stream_server()
    core(s.receive(text("Hello!", voice_id=1, word_timestamps=True)))
    s.chunk_started("turn-0", "Hello!")
    assert s.word_timestamps("turn-0", words) == [WordTimestampsFrame(HELLO_WORDS, 0)]


def test_pricing_without_a_price_reports_cost_unavailable() -> None:
    s = StreamServer()
    core(s.receive(text("Hi.", True, voice_id=1, model_id="kugel-2")))
    s.chunk_started("turn-0", "Hi.")
    s.audio("turn-0", pcm(2400), "pcm_s16le", 24000, 2400)
    usage = sends(s.flush_done("turn-0"))[-1].usage  # type: ignore[union-attr]
    assert usage == SessionUsage(0.1, 3, None, None, "kugel-2", cost_unavailable=True)


# -- legal transitions: client side of /ws/tts/stream --------------------------------------


def test_stream_client_config_epochs() -> None:
    c = StreamClient(StreamConfig(voice_id=1))
    [first] = c.send_text("One.", flush=True)
    assert isinstance(first, TextFrame) and first.config.voice_id == 1
    c.receive(SessionClosedFrame())
    [second] = c.send_text("Two.")
    assert isinstance(second, TextFrame) and second.config.is_empty()  # not after a flushed turn
    c.cancel()
    c.receive(InterruptedFrame())
    [third] = c.send_text("Three.")
    assert isinstance(third, TextFrame) and third.config.voice_id == 1  # after cancel
    c.update_config(StreamConfig(voice_id=2))
    assert c.end_turn() == [CloseFrame()]
    assert c.flush() == [] and c.end_turn() == []  # nothing open: no frame
    turn = c.begin_turn()
    [bare] = c.flush()  # PY's bare flush carries the pending config epoch (S-1)
    assert isinstance(bare, FlushFrame) and bare.config.voice_id == 2
    assert [t.id for t in c.turns] == [2, turn]
    c.receive(SessionClosedFrame(0.2, 1, 2))
    assert c.receive(SessionClosedFrame(0.0, 0, 0)) == [(turn, SessionClosed(usage=SessionUsage(0.0)))]
    assert c.state is TurnState.IDLE


def test_stream_client_text_after_flush_opens_the_next_turn() -> None:
    c = StreamClient(StreamConfig(voice_id=1))
    c.send_text("One.", flush=True)
    c.send_text("Two.")
    assert [t.id for t in c.turns] == [0, 1] and c.current_turn == 1
    assert c.receive(AudioFrame(b"\1\0", "pcm_s16le", 0, 24000, 1)) == [
        (0, AudioChunk(b"\1\0", 24000, "pcm_s16le", 0))
    ]
    assert c.receive(SessionClosedFrame(0.1, 1, 1))[0][0] == 0
    assert c.receive(AudioFrame(b"\2\0", "pcm_s16le", 0, 24000, 1))[0][0] == 1


def test_stream_client_settings_ack_survives_a_cancel() -> None:
    """FIX: ``settings_updated`` is an ack, not a turn frame; it used to be dropped while
    cancelling, so an ``update_settings`` racing a barge-in never got its answer."""
    c = StreamClient(StreamConfig(voice_id=1))
    c.send_text("Hi")
    c.update_settings(speed=1.1)
    c.cancel()
    assert c.receive(SettingsUpdatedFrame({"speed": 1.1})) == [(None, SettingsUpdated({"speed": 1.1}))]
    assert c.receive(AudioFrame(b"\1\0", "pcm_s16le", 0, 24000, 1)) == []
    err = c.receive(ErrorFrame("boom", "INTERNAL_ERROR", 500))
    assert isinstance(err[0][1], ServerError) and err[0][0] is None
    assert c.receive(InterruptedFrame()) == [(None, Interrupted())]
    assert c.state is TurnState.IDLE


def test_stream_client_double_cancel_needs_two_acks() -> None:
    c = StreamClient()
    c.cancel()
    c.cancel()
    assert c.receive(InterruptedFrame()) == [(None, Interrupted())]
    assert c.state is TurnState.CANCELLING
    assert c.receive(GenerationStartedFrame(0, "late")) == []
    c.receive(InterruptedFrame())
    assert c.state is TurnState.IDLE


def test_stream_client_replay_after_connection_lost() -> None:
    """PROTOCOL 10: only turns without audio are replayed, config on the first frame."""
    c = StreamClient(StreamConfig(voice_id=1))
    c.send_text("Spoken.", flush=True)
    c.receive(AudioFrame(b"\1\0", "pcm_s16le", 0, 24000, 1))
    c.send_text("Unspoken")
    c.send_text(" text", flush=True)
    lost = c.connection_lost()
    assert [turn for turn, _ in lost] == [1] and not c.turns
    frames = c.replay(*lost[0])
    assert [f.text for f in frames] == ["Unspoken", " text"]  # type: ignore[union-attr]
    assert frames[0].config.voice_id == 1 and frames[1].config.is_empty()  # type: ignore[union-attr]
    assert c.state is TurnState.FLUSHING


# -- legal transitions: /ws/tts/multi ------------------------------------------------------


def multi_server(**kw: Any) -> tuple[MultiServer, Outbox]:
    return MultiServer(pricing=PRICING, **kw), Outbox()


def ctx_text(cid: str, t: str, flush: bool | None = None, voice: int | None = 1, **config: Any) -> TextFrame:
    vs = VoiceSettings(voice_id=voice) if voice is not None else None
    return TextFrame(t, flush, cid, WireConfig(**config), vs)


@pytest.mark.parametrize(
    "frame",
    [
        ctx_text("a", " "),
        ctx_text("a", ""),
        ctx_text("a", "Hello"),
        ctx_text("a", "Hello", True),
        FlushFrame("a"),
    ],
    ids=["space", "empty", "text", "text+flush", "flush"],
)
def test_m1_any_first_frame_creates_the_context(frame: ClientFrame) -> None:
    s, _ = multi_server()
    cmds = core(s.receive(frame))
    assert isinstance(cmds[0], OpenPipeline) and cmds[0].key == "a"
    assert cmds[1] == Send((ContextCreatedFrame("a"),))
    assert s.open_contexts == ["a"]
    again = core(s.receive(ctx_text("a", "more")))
    assert not any(isinstance(f, ContextCreatedFrame) for f in sends(again))  # created once
    assert not any(isinstance(c, OpenPipeline) for c in again)


def test_m2_voice_binds_from_voice_settings_session_keys_stick() -> None:
    s, _ = multi_server()
    core(s.receive(TextFrame("", None, None, WireConfig(voice_id=268, model_id="kugel-3.5"))))  # prep (M-3)
    cmds = core(s.receive(ctx_text("a", " ", voice=None, sample_rate=16000, language="de")))
    assert isinstance(cmds[0], OpenPipeline)
    assert (cmds[0].config.voice_id, cmds[0].config.sample_rate) == (268, 16000)  # session default voice
    cmds = core(s.receive(TextFrame(" ", None, "b", WireConfig(), VoiceSettings(voice_id=8, cfg_scale=1.5))))
    assert isinstance(cmds[0], OpenPipeline)
    config = cmds[0].config
    assert (config.voice_id, config.cfg_scale, config.language, config.sample_rate) == (8, 1.5, "de", 16000)
    # A later frame's config is not applied to an existing context.
    core(s.receive(ctx_text("a", "x", language="fr")))
    assert s.pipelines["a"].config.language == "de"


def test_m3_context_less_prep_frame_creates_nothing() -> None:
    s, _ = multi_server()
    assert core(s.receive(TextFrame("", None, None, WireConfig(voice_id=268, model_id="kugel-3.5")))) == []
    assert s.open_contexts == [] and s.config.voice_id == 268
    # Text that names no context is a session-wide error, the only one without an id (M-12).
    [err] = sends(core(s.receive(TextFrame("Hello", None, None))))
    assert isinstance(err, ErrorFrame) and err.error_code == "VALIDATION_ERROR" and err.context_id is None
    assert s.open_contexts == []


def test_m4_blank_text_makes_no_audio() -> None:
    s, _ = multi_server()
    core(s.receive(ctx_text("a", " ")))
    assert core(s.receive(ctx_text("a", ""))) == []  # keep-alive
    assert core(s.receive(ctx_text("a", "   "))) == []
    assert core(s.receive(ctx_text("a", "Hi"))) == [AppendText("a", "Hi")]
    assert core(s.receive(ctx_text("a", " "))) == [AppendText("a", " ")]  # spacing between tokens
    assert s.pipelines["a"].characters == 3


def test_m6_final_per_flush_even_for_an_empty_buffer() -> None:
    s, out = multi_server()
    core(s.receive(ctx_text("a", "One.", True)))
    core(s.receive(ctx_text("a", "Two.", True)))
    core(s.receive(FlushFrame("a")))
    speak(s, out, "a", "One.", [100], 0.004, 1.0)
    assert sends(core(s.flush_done("a"))) == [FinalFrame("a")]
    speak(s, out, "a", "Two.", [100], 0.004, 1.0)
    assert sends(core(s.flush_done("a"))) == [FinalFrame("a")]
    assert sends(core(s.flush_done("a"))) == [FinalFrame("a")]  # empty buffer
    assert s.open_contexts == ["a"]  # a flush never closes


def test_m7_graceful_close_finishes_then_final_and_context_closed() -> None:
    s, out = multi_server()
    core(s.receive(ctx_text("a", "One.", True)))
    core(s.receive(ctx_text("a", " Two.")))
    assert core(s.receive(CloseContextFrame("a"))) == [Flush("a")]
    assert core(s.receive(CloseContextFrame("a"))) == []  # already closing
    err = sends(core(s.receive(ctx_text("a", "more"))))
    assert err == [ErrorFrame("context is closing", "VALIDATION_ERROR", 400, context_id="a")]
    speak(s, out, "a", "One.", [2400], 0.1, 1.0)
    assert sends(core(s.flush_done("a"))) == [FinalFrame("a")]  # the earlier flush
    assert s.open_contexts == ["a"]
    speak(s, out, "a", "Two.", [2400], 0.1, 1.0, seed=3)
    usage = SessionUsage(0.2, 9, 0.02, "eur", "kugel-3.5")
    assert sends(core(s.flush_done("a"))) == [FinalFrame("a"), ContextClosedFrame("a", usage)]
    assert s.audio("a", pcm(1), "pcm_s16le", 24000, 1) == []
    # M-7: it holds its slot until its final and context_closed are written...
    assert s.open_contexts == ["a"]
    assert core(s.output_idle("a", True, 0.0)) == []
    assert s.open_contexts == []


def test_m7_immediate_close_of_a_draining_context_purges_its_paced_audio() -> None:
    """Found with the LiveKit plug-in: a graceful close, then an immediate one while the
    context's audio is still paced out; the ack waited 1.7 s behind that audio."""
    s, out = multi_server()
    core(s.receive(ctx_text("a", "One.", True)))
    assert core(s.receive(CloseContextFrame("a"))) == [Flush("a")]
    speak(s, out, "a", "One.", [2400, 2400, 2400], 0.3, 1.0)
    core(s.flush_done("a"))
    core(s.flush_done("a"))  # generation done: final + context_closed queued behind audio
    s.audio_sent("a", 0.1)  # only 100 ms of the 300 ms were written so far
    cmds = core(s.receive(CloseContextFrame("a", True)))
    assert cmds[:2] == [CancelPipeline("a"), Purge(frozenset({"a"}))]  # drops the queued rest
    closed = sends(cmds)
    assert closed == [ContextClosedFrame("a", SessionUsage(0.1, 4, 0.01, "eur", "kugel-3.5"))]
    assert s.open_contexts == []


def test_m7_immediate_close_drops_everything_no_final() -> None:
    s, out = multi_server()
    core(s.receive(ctx_text("a", "One. Two.", True)))
    speak(s, out, "a", "One.", [2400], 0.1, 1.0)
    out.take(s.chunk_started("a", "Two."))
    s.audio_sent("a", 0.04)  # the I/O layer wrote 40 ms of the 100 ms made
    cmds = core(s.receive(CloseContextFrame("a", immediate=True)))
    usage = SessionUsage(0.04, 9, 0.004, "eur", "kugel-3.5")  # M-7a: only audio sent
    assert cmds == [CancelPipeline("a"), Purge(frozenset({"a"})), Send((ContextClosedFrame("a", usage),))]
    assert s.audio("a", pcm(1), "pcm_s16le", 24000, 1) == [] and core(s.flush_done("a")) == []
    # Immediate after graceful: at once, still no final.
    core(s.receive(ctx_text("b", "x", True)))
    core(s.receive(CloseContextFrame("b")))
    assert [type(c) for c in core(s.receive(CloseContextFrame("b", immediate=True)))] == [
        CancelPipeline,
        Purge,
        Send,
    ]


def test_m7_unknown_context_still_gets_context_closed() -> None:
    s, _ = multi_server()
    usage = SessionUsage(0.0, 0, 0.0, "eur", "kugel-3.5")
    assert core(s.receive(CloseContextFrame("ghost"))) == [Send((ContextClosedFrame("ghost", usage),))]
    assert s.open_contexts == []


def test_m8_close_socket_waits_for_every_context() -> None:
    s, out = multi_server()
    for cid in ("a", "b", "c"):
        core(s.receive(ctx_text(cid, "Hi.", None)))
    core(s.receive(CloseContextFrame("c", immediate=True)))
    core(s.receive(CloseContextFrame("b")))
    assert core(s.receive(CloseSocketFrame())) == [Flush("a")]  # b already closing, c gone
    assert s.closing_socket and not s.closed
    assert CloseSocket(1000) not in out.take(core(s.flush_done("b")))
    assert CloseSocket(1000) not in out.take(core(s.output_idle("b", True, 0.0)))
    assert CloseSocket(1000) not in out.take(core(s.flush_done("a")))  # a's frames still queued
    cmds = out.take(core(s.output_idle("a", True, 0.0)))  # M-7: the last context_closed is out
    assert cmds[-2:] == [Send((SessionClosedFrame(),)), CloseSocket(1000)] and s.closed
    assert core(s.flush_done("a")) == [] and core(s.timeout("a")) == []


def test_m8_close_socket_with_no_context() -> None:
    s, _ = multi_server()
    assert core(s.receive(CloseSocketFrame())) == [Send((SessionClosedFrame(),)), CloseSocket(1000)]


def test_m8_pipeline_error_during_close_socket_still_closes() -> None:
    s, _ = multi_server()
    core(s.receive(ctx_text("a", "Hi.", None)))
    core(s.receive(CloseSocketFrame()))
    cmds = core(s.error("a", ProtocolError("engine crashed", error_code="INTERNAL_ERROR", status=500)))
    assert cmds[-1] == CloseSocket(1000) and s.closed


def test_m9_cap_slots_freed_by_close_and_timeout_ids_reusable() -> None:
    s, out = multi_server()
    for i in range(20):
        core(s.receive(ctx_text(f"c{i}", " ")))
    refused = core(s.receive(ctx_text("x", "Hello", True)))
    assert refused == [
        Send((ErrorFrame("Too many concurrent contexts", "TOO_MANY_CONTEXTS", 429, context_id="x"),))
    ]
    assert len(s.open_contexts) == 20 and not s.closing_socket  # socket kept

    core(s.receive(CloseContextFrame("c0")))  # graceful: the slot is held until context_closed
    assert isinstance(core(s.receive(ctx_text("x", " ")))[0], Send)
    core(s.flush_done("c0"))
    assert isinstance(core(s.receive(ctx_text("x", " ")))[0], Send)  # its context_closed is queued
    core(s.output_idle("c0", True, 0.0))  # ... and written
    assert isinstance(core(s.receive(ctx_text("x", " ")))[0], OpenPipeline)  # freed

    core(s.receive(CloseContextFrame("c1", immediate=True)))  # immediate: freed at once
    assert isinstance(core(s.receive(ctx_text("y", " ")))[0], OpenPipeline)
    core(s.timeout("c2"))  # timed out: freed (inferred, 6.6)
    assert isinstance(core(s.receive(ctx_text("z", " ")))[0], OpenPipeline)
    assert len(s.open_contexts) == 20

    # Ids are reusable; numbering restarts for the new context.
    core(s.receive(CloseContextFrame("x", immediate=True)))
    core(s.receive(ctx_text("x", "Again.", True)))
    out.take(s.chunk_started("x", "Again."))
    out.take(s.audio("x", pcm(10), "pcm_s16le", 24000, 10))
    assert [(f.idx, f.chunk_id) for f in out.frames if isinstance(f, AudioFrame)] == [(0, 0)]


def test_m9_smaller_server_limit() -> None:
    s, _ = multi_server(max_contexts=1)
    core(s.receive(ctx_text("a", " ")))
    [refused] = sends(core(s.receive(ctx_text("b", " "))))
    assert isinstance(refused, ErrorFrame) and refused.error_code == "TOO_MANY_CONTEXTS"


def test_m10_timeout_closes_an_idle_context_but_not_a_closing_one() -> None:
    """FIX: a context in graceful close is finishing its text, not idle (M-7); a timeout
    used to cancel it, and during close_socket that lost the session_closed forever."""
    s, _ = multi_server()
    core(s.receive(ctx_text("a", "Hi", None)))
    assert core(s.timeout("a")) == [
        CancelPipeline("a"),
        Purge(frozenset({"a"})),
        Send((ContextTimeoutFrame("a"),)),
    ]
    assert core(s.timeout("a")) == []
    core(s.receive(ctx_text("b", "Hi", None)))
    core(s.receive(CloseSocketFrame()))
    assert core(s.timeout("b")) == []  # closing: final + context_closed still owed
    core(s.flush_done("b"))
    assert core(s.timeout("b")) == []  # draining: its frames are still being sent
    assert sends(core(s.output_idle("b", True, 0.0)))[-1] == SessionClosedFrame() and s.closed
    s, _ = multi_server(config=WireConfig(inactivity_timeout=5.0))
    assert s.inactivity_timeout == 5.0 and MultiServer().inactivity_timeout == 20.0


def test_m11_update_settings_applies_to_later_contexts() -> None:
    s, _ = multi_server()
    core(s.receive(ctx_text("a", " ", temperature=0.5)))
    cmds = core(s.receive(UpdateSettingsFrame(WireConfig(cfg_scale=1.5, language="fr"))))
    [ack] = sends(cmds)
    assert ack == SettingsUpdatedFrame(
        {
            "cfg_scale": 1.5,
            "temperature": 0.5,
            "speed": None,
            "max_new_tokens": None,
            "language": "fr",
            "normalize": None,
        }
    )
    assert s.pipelines["a"].config.language is None  # not the existing context
    cmds = core(s.receive(ctx_text("b", " ")))
    assert isinstance(cmds[0], OpenPipeline) and cmds[0].config.language == "fr"


def test_m12_context_errors_carry_the_context_id() -> None:
    s, _ = multi_server()
    [missing] = sends(core(s.receive(ctx_text("a", "Hi", voice=None))))[1:]
    assert missing == ErrorFrame("voice_id is required", "MISSING_VOICE_ID", 400, context_id="a")
    core(s.receive(ctx_text("b", "Hi")))
    cmds = core(s.error("b", ProtocolError("engine crashed", error_code="INTERNAL_ERROR", status=500)))
    assert cmds[0] == Send((ErrorFrame("engine crashed", "INTERNAL_ERROR", 500, context_id="b"),))
    assert cmds[1] == CancelPipeline("b") and sends(cmds)[-1].context_id == "b"  # type: ignore[union-attr]
    client = MultiClient()
    err = client.receive(ErrorFrame("voice_id is required", "MISSING_VOICE_ID", 400, context_id="a"))
    assert isinstance(err[0], MissingVoiceError) and err[0].context_id == "a"


def test_m_multi_frames_keep_per_context_order_and_interleave() -> None:
    s, out = multi_server()
    core(s.receive(ctx_text("a", "A.", True)))
    core(s.receive(ctx_text("b", "B.", True)))
    out.take(s.chunk_started("a", "A."))
    out.take(s.chunk_started("b", "B."))
    out.take(s.audio("b", pcm(1), "pcm_s16le", 24000, 1))
    out.take(s.audio("a", pcm(1), "pcm_s16le", 24000, 1))
    out.take(s.audio("a", pcm(1), "pcm_s16le", 24000, 1))
    audio = [(f.context_id, f.idx) for f in out.frames if isinstance(f, AudioFrame)]
    assert audio == [("b", 0), ("a", 0), ("a", 1)]


# -- legal transitions: client side of /ws/tts/multi ---------------------------------------


def test_multi_client_send_creates_first_and_known_ids_send_nothing() -> None:
    c = MultiClient(MultiContextConfig(default_voice_id=3))
    frames = c.send("a", "Hi", flush=True)
    assert [type(f) for f in frames] == [TextFrame, TextFrame]
    create = frames[0]
    assert isinstance(create, TextFrame) and create.text == " " and create.voice_settings is not None
    assert create.voice_settings.voice_id == 3 and not create.config.is_empty()  # session config once
    assert frames[1] == TextFrame("Hi", True, "a")
    assert c.create_context("a") == []
    [second] = c.create_context("b", voice_id=4)
    assert isinstance(second, TextFrame) and second.config.is_empty()
    assert second.voice_settings == VoiceSettings(voice_id=4, cfg_scale=2.0, max_new_tokens=2048)


def test_multi_client_session_started_stops_session_config() -> None:
    c = MultiClient()
    assert c.receive(SessionStartedFrame("s1")) == [SessionStarted("s1")]
    [create] = c.create_context("a", voice_id=1)
    assert isinstance(create, TextFrame) and create.config.is_empty() and c.session_id == "s1"


def test_multi_client_too_many_contexts_frame_frees_the_creating_context() -> None:
    c = MultiClient(MultiContextConfig(default_voice_id=1))
    c.create_context("a")
    [err] = c.receive(ErrorFrame("Too many concurrent contexts", "TOO_MANY_CONTEXTS", 429, context_id="a"))
    assert isinstance(err, TooManyContextsError) and "a" not in c.contexts and c.free_slots == 20


def test_multi_client_drops_frames_of_immediately_closed_contexts() -> None:
    c = MultiClient(MultiContextConfig(default_voice_id=1))
    c.create_context("a")
    c.receive(ContextCreatedFrame("a"))
    assert c.close_context("a", immediate=True) == [CloseContextFrame("a", True)]
    assert c.close_context("a") == [] and c.close_context("a", immediate=True) == []
    late = [
        GenerationStartedFrame(0, "x", "a"),
        AudioFrame(b"\1\0", "pcm_s16le", 0, 24000, 1, 0, "a"),
        ChunkCompleteFrame(0, 0.1, 1.0, "a"),
        FinalFrame("a"),
    ]
    assert [e for f in late for e in c.receive(f)] == []
    assert c.receive(ContextClosedFrame("a")) == [ContextClosed(context_id="a")]
    assert c.receive(AudioFrame(b"\1\0", "pcm_s16le", 1, 24000, 1, 0, "a")) == []  # unknown now


def test_multi_client_graceful_close_still_delivers() -> None:
    c = MultiClient(MultiContextConfig(default_voice_id=1))
    c.create_context("a")
    assert c.close_context("a") == [CloseContextFrame("a")]
    assert c.close_context("a", immediate=True) == [CloseContextFrame("a", True)]  # escalate
    c2 = MultiClient(MultiContextConfig(default_voice_id=1))
    c2.create_context("a")
    c2.close_context("a")
    assert c2.receive(FinalFrame("a")) == [Final(context_id="a")]
    assert c2.close() == [CloseSocketFrame()] and c2.close() == []


def test_multi_client_connection_lost_forgets_everything() -> None:
    c = MultiClient(MultiContextConfig(default_voice_id=1))
    c.create_context("a")
    c.create_context("b")
    assert [cid for cid, _ in c.connection_lost()] == ["a", "b"] and c.contexts == {}
    [again] = c.create_context("a")
    assert isinstance(again, TextFrame) and not again.config.is_empty()  # session config resent


# -- legal transitions: /ws/tts ------------------------------------------------------------


def test_t3_missing_voice_and_empty_text() -> None:
    s = TtsServer()
    assert core(s.receive(TtsRequest("Hi.", WireConfig()))) == [
        Send((ErrorFrame("voice_id is required", "MISSING_VOICE_ID", 400),))
    ]
    assert core(s.receive(TtsRequest("  ", WireConfig(voice_id=1)))) == [
        Send((ErrorFrame("text must not be empty", "VALIDATION_ERROR", 400),))
    ]
    assert s.queue == [] and s.pipelines == {}
    [err] = TtsClient().receive(ErrorFrame("voice_id is required", "MISSING_VOICE_ID", 400))
    assert isinstance(err[1], MissingVoiceError) and isinstance(err[1], ValidationError)


def test_t2_error_replies_wait_for_the_pending_request() -> None:
    """FIX: an invalid request used to get its error at once, inside the audio of the
    request before it; clients route frames to the oldest pending request (JS), so the
    earlier request failed with the wrong error and the invalid one got its audio."""
    client, server, out = TtsClient(), TtsServer(pricing=PRICING), Outbox()
    r0, [f0] = client.request("One.", StreamConfig(voice_id=1))
    r1, [f1] = client.request("Two.", StreamConfig())  # no voice
    r2, [f2] = client.request("Three.", StreamConfig(voice_id=1))
    for f in (f0, f1, f2):
        out.take(core(server.receive(decode_client_frame(encode(f), Endpoint.TTS))))
    speak(server, out, "req-0", "One.", [2400], 0.1, 1.0)
    assert [type(f) for f in out.frames] == [AudioFrame]  # no error mid-request
    out.take(core(server.flush_done("req-0", 2400)))
    speak(server, out, "req-1", "Three.", [2400], 0.1, 1.0)
    out.take(
        core(server.error("req-1", ProtocolError("engine crashed", error_code="EMPTY_AUDIO", status=500)))
    )
    events = [e for f in wire_roundtrip(out.frames) for e in client.receive(f)]
    assert [(rid, type(e).__name__) for rid, e in events] == [
        (r0, "AudioChunk"),
        (r0, "Final"),
        (r1, "MissingVoiceError"),
        (r2, "AudioChunk"),
        (r2, "ServerError"),
    ]
    assert not client.pending and server.owed == {}


def test_t1_requests_are_numbered_and_answered_per_request() -> None:
    s, out = TtsServer(pricing=PRICING), Outbox()
    core(s.receive(TtsRequest("A.", WireConfig(voice_id=1, model_id="kugel-2"))))
    core(s.receive(TtsRequest("B.", WireConfig(voice_id=1))))
    assert s.queue == ["req-0", "req-1"]
    speak(s, out, "req-0", "A.", [2400, 2400], 0.2, 10.0)
    [final] = sends(s.flush_done("req-0", native_samples=4800))
    assert isinstance(final, FinalFrame) and final.usage == SessionUsage(0.2, 2, 0.02, "eur", "kugel-2")
    assert final.stats == {"chunks": 2, "total_samples": 4800, "dur_ms": 200.0, "gen_ms": 10.0, "rtf": 0.05}
    speak(s, out, "req-1", "B.", [100], 0.004, 1.0)
    assert [f.idx for f in out.frames if isinstance(f, AudioFrame)] == [0, 1, 0]
    assert all(f.chunk_id is None for f in out.frames if isinstance(f, AudioFrame))  # FIX: tts has none
    assert core(s.flush_done("req-0")) == [] and core(s.error("req-0", ProtocolError("x"))) == []


def test_tts_client_drops_stream_only_keys() -> None:
    _, [req] = TtsClient().request(
        "Hi.", StreamConfig.from_preset("low-latency", voice_id=1, flush_timeout_ms=300)
    )
    assert isinstance(req, TtsRequest)
    assert req.config.chunk_length_schedule is None and req.config.auto_mode is None
    assert req.config.flush_timeout_ms is None and req.config.voice_id == 1


# -- Hypothesis: a well-behaved I/O layer and the invariants of every frame ----------------

WORDS = WordTimestampsFrame((WordTimestamp("w", 0, 10, 0, 1),))


@dataclass
class SimPipe:
    """The I/O layer's pipeline for one turn/context/request: what it was told to do."""

    key: str
    text: str = ""
    flushes: int = 0
    chunk_open: bool = False


@dataclass
class KeyLog:
    """What the server sent for one turn/context/request incarnation."""

    appended: int = 0
    flushes: int = 0
    finals: int = 0
    next_chunk: int = 0
    next_idx: int = 0
    chunk_open: bool = False
    chunks_done: int = 0
    audio_seconds: float = 0.0
    ended: bool = False
    sent: int = 0
    failed: bool = False


Emitted = list[tuple[str | None, ServerFrame]]
"""Frames a machine produced, with the pipeline key they belong to (``None``: none)."""


class ServerProbe:
    """Drives a server machine like a correct I/O layer and checks every frame it sends.

    Pipelines run one after another on stream/tts (the oldest first) and concurrently on
    multi. Invariants: a turn/context/request sends nothing after its terminal frame
    (session_closed, context_closed/timeout, final on tts, a cancel); chunks are
    ``generation_started`` → audio → ``chunk_complete`` and never open at ``final``;
    ``idx``/``chunk_id`` count from 0; ``final`` is followed at once by
    ``session_closed`` on stream; totals and usage match what was sent and appended;
    multi has at most ``max_contexts`` open contexts, context errors carry their id and
    nothing follows the socket's ``session_closed``.
    """

    def __init__(self, server: StreamServer | MultiServer | TtsServer) -> None:
        self.server = server
        self.multi = isinstance(server, MultiServer)
        self.tts = isinstance(server, TtsServer)
        self.sims: dict[str, SimPipe] = {}
        self.dead: dict[str, SimPipe] = {}
        self.logs: dict[str, KeyLog] = {}
        self.sent: Emitted = []
        self.socket_done = False
        self.opened: list[str] = []
        self.last_frame: ClientFrame | None = None

    # -- driving ----------------------------------------------------------------------

    def receive(self, frame: ClientFrame) -> Emitted:
        self.last_frame = frame
        return self._process(core(self.server.receive(frame)), None)

    def runnable(self) -> list[str]:
        """Keys whose pipeline may report now (sequential on stream/tts)."""
        keys = list(self.sims)
        return keys if self.multi else keys[:1]

    def step(self, key: str, action: int) -> Emitted | None:
        """One result of ``key``'s pipeline; ``None`` when it has nothing to report."""
        s, sim = self.server, self.sims[key]
        if sim.chunk_open:
            if action % 3 == 0:
                n = 240 * (1 + action % 4)
                return self._process(s.audio(key, pcm(n, action), "pcm_s16le", 24000, n), key)
            if action % 3 == 1:
                return self._process(s.word_timestamps(key, WORDS), key)
            sim.chunk_open = False
            return self._process(s.chunk_done(key, 0.01 * action, 1.0), key)
        if sim.text.strip():
            cut = len(sim.text) if action % 2 else max(1, len(sim.text) // 2)
            part, sim.text = sim.text[:cut], sim.text[cut:]
            sim.chunk_open = True
            return self._process(s.chunk_started(key, part.strip() or part), key)
        if sim.flushes:
            sim.flushes -= 1
            sim.text = ""
            if isinstance(s, TtsServer):
                return self._process(core(s.flush_done(key, native_samples=action)), key)
            emitted = self._process(core(s.flush_done(key)), key)
            if isinstance(s, MultiServer) and key in s.pipelines:
                # the I/O layer wrote what was queued: a draining context is done (M-7)
                emitted = emitted + self._process(core(s.output_idle(key, True, 0.0)), key)
            return emitted
        return None

    def finish(self, key: str) -> None:
        """Run ``key``'s pipeline until it has nothing more to report."""
        for i in range(10_000):
            if key not in self.sims or self.step(key, i) is None:
                return
        raise AssertionError("pipeline never finished")

    def late(self, key: str, action: int) -> None:
        """A disposed pipeline's late result must produce nothing (S-5, M-7)."""
        s = self.server
        calls: list[Callable[[], list[Any]]] = [
            lambda: s.chunk_started(key, "late"),
            lambda: s.audio(key, pcm(10), "pcm_s16le", 24000, 10),
            lambda: s.word_timestamps(key, WORDS),
            lambda: s.chunk_done(key, 0.1, 1.0),
            lambda: core(s.flush_done(key)),
            lambda: core(s.error(key, ProtocolError("late", error_code="INTERNAL_ERROR", status=500))),
        ]
        if isinstance(s, StreamServer):
            calls.append(lambda: core(s.idle_timeout(key)))
        if isinstance(s, MultiServer):
            calls.append(lambda: core(s.timeout(key)))
        assert calls[action % len(calls)]() == []

    def error(self, key: str) -> Emitted:
        exc = ProtocolError("engine crashed", error_code="INTERNAL_ERROR", status=500)
        return self._process(core(self.server.error(key, exc)), key)

    # -- checking ---------------------------------------------------------------------

    def _process(self, results: Sequence[Command | ServerFrame], key: str | None) -> Emitted:
        emitted: Emitted = []
        frames: list[ServerFrame] = []
        cancels: list[str] = []
        for r in results:
            # After close_socket a late frame gets only the PROTOCOL error (or nothing).
            assert not self.socket_done or is_protocol_error([r]), f"{r!r} after the socket closed"
            if isinstance(r, Send):
                frames.extend(r.frames)
            elif isinstance(r, OpenPipeline):
                assert r.key not in self.sims, "a live pipeline opened twice"
                self.sims[r.key] = SimPipe(r.key)
                self.dead.pop(r.key, None)
                self.logs[r.key] = KeyLog()
                self.opened.append(r.key)
                assert r.config.chunk_length_schedule is not None  # resolved (G-10)
                if not self.multi:
                    assert r.config.voice_id is not None  # T-3 / missing voice: no pipeline
            elif isinstance(r, AppendText):
                self.sims[r.key].text += r.text
                self.logs[r.key].appended += len(r.text)
            elif isinstance(r, Flush):
                self.sims[r.key].flushes += 1
                self.logs[r.key].flushes += 1
            elif isinstance(r, CancelPipeline):
                cancels.append(r.key)
            elif isinstance(r, StartPipeline | Purge):
                pass  # the probe delivers every frame at once: nothing waits to purge
            elif isinstance(r, CloseSocket):
                assert r.code == 1000 and (not self.multi or self.server.closed)  # type: ignore[union-attr]
                self.socket_done = True
            else:
                frames.append(r)
        for f in frames:
            if isinstance(f, AudioFrame):  # delivered at once: written to the socket (M-7a)
                self.server.audio_sent(f.context_id if self.multi else key, f.samples / f.sr)  # type: ignore[arg-type]
        for i, f in enumerate(frames):
            emitted.append((self._check(key, f, frames[i + 1 :]), f))
        for k in cancels:
            self.logs[k].ended = True
            if k in self.sims:
                self.dead[k] = self.sims.pop(k)
        self.sent.extend(emitted)
        if self.multi:
            assert len(self.server.open_contexts) <= self.server.max_contexts  # type: ignore[union-attr]
            live = [k for k, log in self.logs.items() if not log.ended and log.sent]
            assert len(live) <= self.server.max_contexts  # type: ignore[union-attr]
        return emitted

    def _end(self, k: str) -> None:
        self.logs[k].ended = True
        self.sims.pop(k, None)

    def _check(self, call_key: str | None, f: ServerFrame, rest: Sequence[ServerFrame]) -> str | None:
        """Check one frame; returns the key it belongs to."""
        k = getattr(f, "context_id", None) if self.multi else call_key
        if self.multi and isinstance(f, SessionClosedFrame):
            k = None
        log = self.logs.get(k) if k is not None else None
        if log is not None and log.ended:
            # After an end only replies that belong to no incarnation: the owed empty
            # session_closed of a close (S-4), an owed tts error (T-2), a refused
            # re-creation or the context_closed of an unknown id (M-9, M-7).
            if self.tts:
                assert isinstance(f, ErrorFrame), f"{f!r} after the end of {k}"
            elif self.multi:
                assert isinstance(f, ErrorFrame) or (
                    isinstance(f, ContextClosedFrame) and f.usage is not None and f.usage.characters == 0
                ), f"{f!r} after the end of {k}"
            else:
                assert f == SessionClosedFrame(0.0, 0, 0), f"{f!r} after the end of {k}"
            return None
        if log is not None:
            log.sent += 1
        match f:
            case GenerationStartedFrame():
                assert log is not None and not self.tts
                assert not log.chunk_open and f.chunk_id == log.next_chunk
                log.chunk_open, log.next_chunk = True, log.next_chunk + 1
            case AudioFrame():
                assert log is not None and f.idx == log.next_idx and f.audio
                assert f.chunk_id == (None if self.tts else log.next_chunk - 1)
                if not self.tts:
                    assert log.chunk_open
                log.next_idx += 1
                log.audio_seconds += f.samples / f.sr
            case WordTimestampsFrame():
                assert log is not None
            case ChunkCompleteFrame():
                assert log is not None and log.chunk_open and f.chunk_id == log.next_chunk - 1
                log.chunk_open, log.chunks_done = False, log.chunks_done + 1
            case FinalFrame():
                assert log is not None and not log.chunk_open  # chunk_complete before final
                log.finals += 1
                assert log.finals <= log.flushes  # M-6: one final per flush
                if self.tts:
                    assert f.usage is not None and f.usage.characters == log.appended
                    assert f.stats["chunks"] == log.next_idx
                    self._end(k)  # type: ignore[arg-type]
                elif not self.multi:
                    assert rest and isinstance(rest[0], SessionClosedFrame)  # S-3: immediately
                    assert (f.total_text_chunks, f.total_audio_chunks) == (log.chunks_done, log.next_idx)
            case SessionClosedFrame() if self.multi:
                assert self.server.closed and self.server.open_contexts == []  # type: ignore[union-attr]
                assert not rest
            case SessionClosedFrame():
                if log is None:
                    assert f == SessionClosedFrame(0.0, 0, 0)  # empty turn (S-4)
                else:
                    assert (f.total_text_chunks, f.total_audio_chunks) == (log.chunks_done, log.next_idx)
                    assert f.total_audio_seconds == pytest.approx(log.audio_seconds, abs=1e-3)
                    assert f.usage is not None and f.usage.characters == log.appended
                    if not log.failed:  # a pipeline error replaces final (4.2)
                        assert log.finals == (1 if log.next_idx or log.chunks_done else 0)  # U-4
                    self._end(k)  # type: ignore[arg-type]
            case ContextCreatedFrame():
                assert log is not None and log.sent == 1 and k == self.opened[-1]
            case ContextClosedFrame():
                assert f.usage is not None
                if log is None:
                    assert f.usage.audio_seconds == 0.0 and f.usage.characters == 0  # unknown id
                else:
                    assert f.usage.characters == log.appended
                    assert f.usage.audio_seconds == pytest.approx(log.audio_seconds, abs=1e-3)
                    self._end(k)  # type: ignore[arg-type]
            case ContextTimeoutFrame():
                assert log is not None
                self._end(k)  # type: ignore[arg-type]
            case ErrorFrame():
                if self.multi and f.context_id is None:
                    # M-12: only a frame naming no context may get an error without one.
                    assert call_key is None and getattr(self.last_frame, "context_id", None) is None
                if log is not None and call_key is not None:
                    log.failed = True
                    if self.tts:
                        self._end(k)  # type: ignore[arg-type]
            case InterruptedFrame() | WarningFrame():
                assert not self.multi and not self.tts
            case SettingsUpdatedFrame():
                assert set(f.settings) == {
                    "cfg_scale",
                    "temperature",
                    "speed",
                    "max_new_tokens",
                    "language",
                    "normalize",
                }
            case _:
                raise AssertionError(f"unexpected {f!r}")
        return k


ANY_TURN = object()
"""Expected turn tag of a frame no turn owns for certain (acks, warnings, errors)."""
TOKENS = st.sampled_from(["", " ", "Hi", "Hello there. ", "How are you?", " ok", "Done."])
HYPOTHESIS = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class StreamWorld(RuleBasedStateMachine):
    """A StreamClient and a StreamServer joined by an in-order socket, with races.

    Client intents queue frames to the server; server frames queue to the client; each
    delivery, pipeline result and timer is its own step, so cancels cross in-flight
    audio. Beyond the probe's invariants: the server never raises for our client's
    frames; while cancelling the client drops everything but ``interrupted``, errors and
    acks; every other frame gives one event tagged with the client turn that caused it
    (unless a server-side turn end — idle timer, pipeline error — raced the client); at
    the end every client turn got its ``session_closed`` or was cancelled.
    """

    def __init__(self) -> None:
        super().__init__()
        self.client = StreamClient(StreamConfig(voice_id=1, word_timestamps=True))
        self.probe = ServerProbe(StreamServer(pricing=PRICING))
        self.c2s: deque[tuple[int | None, str]] = deque()
        self.s2c: deque[tuple[object, ServerFrame]] = deque()
        self.turn_of: dict[str, int | None] = {}
        self.owed: defaultdict[str, list[int | None]] = defaultdict(list)
        self.raced = False
        self.events: list[tuple[int | None, Output]] = []

    @property
    def server(self) -> StreamServer:
        return self.probe.server  # type: ignore[return-value]

    # -- client intents -----------------------------------------------------------------

    def _out(self, frames: Sequence[ClientFrame]) -> None:
        turn = self.client.turns[-1].id if self.client.turns else None
        for f in frames:
            self.c2s.append((None if isinstance(f, CancelFrame | UpdateSettingsFrame) else turn, encode(f)))

    @rule(t=TOKENS, flush=st.booleans())
    def send_text(self, t: str, flush: bool) -> None:
        self._out(self.client.send_text(t, flush))

    @rule()
    def flush(self) -> None:
        self._out(self.client.flush())

    @rule()
    def end_turn(self) -> None:
        self._out(self.client.end_turn())

    @rule()
    def begin_turn(self) -> None:
        self.client.begin_turn()

    @rule()
    def cancel(self) -> None:
        frames, _ = self.client.cancel()
        assert self.client.turns == deque() and self.client.state is TurnState.CANCELLING
        self._out(frames)

    @rule(speed=st.sampled_from([0.9, 1.1]))
    def update_settings(self, speed: float) -> None:
        self._out(self.client.update_settings(speed=speed))

    @rule(voice=st.sampled_from([1, 2]))
    def update_config(self, voice: int) -> None:
        self.client.update_config(StreamConfig(voice_id=voice))

    # -- the wire -----------------------------------------------------------------------

    def _to_client(self, emitted: Emitted, cause: object = ANY_TURN, owner: str | None = None) -> None:
        """Queue frames with the client turn each must be tagged with.

        ``owner``: the pipeline whose end may be followed by owed empty session_closed
        frames, each tagged with the client turn whose close/flush it answers (S-4).
        """
        for key, f in emitted:
            if key is not None:
                tag = self.turn_of[key]
            elif isinstance(f, SessionClosedFrame):
                tag = self.owed[owner].pop(0) if owner is not None and self.owed.get(owner) else cause
            else:
                tag = None if isinstance(f, InterruptedFrame) else ANY_TURN
            self.s2c.append((tag, f))

    @precondition(lambda self: self.c2s)
    @rule()
    def deliver_to_server(self) -> None:
        turn, data = self.c2s.popleft()
        frame = decode_client_frame(data, Endpoint.STREAM)
        ending = list(self.server.ending)
        opened = len(self.probe.opened)
        emitted = self.probe.receive(frame)  # never raises for our client's frames
        for key in self.probe.opened[opened:]:
            self.turn_of[key] = turn
        if isinstance(frame, CancelFrame):
            self.owed.clear()
        ends = isinstance(frame, CloseFrame | FlushFrame) or (isinstance(frame, TextFrame) and frame.flush)
        if ends and ending and not emitted and self.server.open_turn is None and self.server.ending == ending:
            self.owed[ending[-1]].append(turn)
        self._to_client(emitted, cause=turn)

    @precondition(lambda self: self.s2c)
    @rule()
    def deliver_to_client(self) -> None:
        tag, frame = self.s2c.popleft()
        [decoded] = decode_server_frames(encode(frame))
        cancelling = self.client.cancelling > 0
        outs = self.client.receive(decoded)
        self.events.extend(outs)
        if cancelling and not isinstance(frame, InterruptedFrame | ErrorFrame | SettingsUpdatedFrame):
            assert outs == [], "late frame delivered while cancelling (S-5)"
            return
        assert len(outs) == 1
        if tag is not ANY_TURN and not self.raced:
            assert outs[0][0] == tag, (frame, outs, tag)

    # -- the pipelines and timers --------------------------------------------------------

    @precondition(lambda self: self.probe.runnable())
    @rule(action=st.integers(0, 11))
    def pipeline(self, action: int) -> None:
        key = self.probe.runnable()[0]
        emitted = self.probe.step(key, action)
        if emitted:
            self._to_client(emitted, owner=key)

    @precondition(lambda self: self.probe.dead)
    @rule(data=st.data())
    def late_result(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.probe.dead)))
        self.probe.late(key, data.draw(st.integers(0, 10)))

    @precondition(lambda self: self.server.open_turn is not None)
    @rule()
    def idle_timeout(self) -> None:
        key = self.server.open_turn
        assert key is not None
        self.raced = True  # the server ends a turn the client still writes to (S-8)
        self._to_client(self.probe._process(core(self.server.idle_timeout(key)), key))

    @precondition(lambda self: self.probe.runnable())
    @rule()
    def pipeline_error(self) -> None:
        key = self.probe.runnable()[0]
        self.raced = True
        self._to_client(self.probe.error(key), owner=key)

    @invariant()
    def states_agree(self) -> None:
        c = self.client
        assert c.cancelling >= 0
        assert [t.id for t in c.turns] == sorted({t.id for t in c.turns})
        assert all(t.flushed for t in list(c.turns)[:-1])  # only the newest turn takes text
        assert self.server.open_turn is None or self.server.open_turn in self.server.pipelines

    def teardown(self) -> None:
        for _ in range(100):
            if self.client.current_turn is not None:
                self._out(self.client.flush())
            while self.c2s:
                self.deliver_to_server()
            while self.probe.runnable():
                key = self.probe.runnable()[0]
                emitted = self.probe.step(key, 2)
                if emitted is None:
                    break
                self._to_client(emitted, owner=key)
            if self.server.open_turn is not None and not self.c2s and self.client.current_turn is None:
                self.idle_timeout()  # the server's 5 s timer ends a turn the client forgot
            while self.s2c:
                self.deliver_to_client()
            if not (self.c2s or self.s2c or self.probe.sims or self.client.current_turn is not None):
                break
        # Liveness: every turn ended (session_closed) or was cancelled (interrupted).
        assert not self.client.turns and self.client.cancelling == 0
        assert self.server.open_turn is None and self.server.ending == [] and self.server.pipelines == {}
        assert self.server.deferred_closes == {}


StreamWorld.TestCase.settings = HYPOTHESIS
test_stream_world = StreamWorld.TestCase


CAP = 3
"""A small context cap for the multi world, so sequences reach it (M-9)."""
CIDS = st.sampled_from(["a", "b", "c", "d"])


class MultiWorld(RuleBasedStateMachine):
    """A MultiClient and a MultiServer (both capped at :data:`CAP`) joined by a socket.

    Beyond the probe's invariants: the server never raises for our client's frames; an
    illegal intent raises ``LocalProtocolError`` (or ``TooManyContextsError`` exactly when
    no slot is free) and changes nothing; the client never sees a frame of a context it
    closed immediately except ``context_closed``; without a server-side race (timeout,
    pipeline error) it sees no error at all — admission control keeps the 429 off the
    wire; at the end ``close()`` closes every context, then the socket.
    """

    def __init__(self) -> None:
        super().__init__()
        config = MultiContextConfig(default_voice_id=1, max_contexts=CAP, word_timestamps=True)
        self.client = MultiClient(config)
        self.probe = ServerProbe(MultiServer(pricing=PRICING, max_contexts=CAP))
        self.c2s: deque[str] = deque()
        self.s2c: deque[ServerFrame] = deque()
        self.raced = False
        self.events: list[Output] = []

    @property
    def server(self) -> MultiServer:
        return self.probe.server  # type: ignore[return-value]

    def _intent(self, attempt: Callable[[], list[ClientFrame]]) -> None:
        c = self.client
        before = (dict(c.contexts), c.closed, c.session_config_sent, c.free_slots)
        try:
            frames = attempt()
        except TooManyContextsError:
            assert before[3] == 0
            assert (dict(c.contexts), c.closed, c.session_config_sent, c.free_slots) == before
            return
        except LocalProtocolError:
            assert (dict(c.contexts), c.closed, c.session_config_sent, c.free_slots) == before
            return
        assert len(c.contexts) <= CAP
        self.c2s.extend(encode(f) for f in frames)

    @rule(cid=CIDS, voice=st.sampled_from([None, 2]))
    def create(self, cid: str, voice: int | None) -> None:
        self._intent(lambda: self.client.create_context(cid, voice_id=voice))

    @rule(cid=CIDS, t=TOKENS, flush=st.booleans())
    def send(self, cid: str, t: str, flush: bool) -> None:
        self._intent(lambda: self.client.send(cid, t, flush))

    @rule(cid=CIDS)
    def flush(self, cid: str) -> None:
        self._intent(lambda: self.client.flush(cid))

    @rule(cid=CIDS)
    def keep_alive(self, cid: str) -> None:
        self._intent(lambda: self.client.keep_alive(cid))

    @rule(cid=CIDS, immediate=st.booleans())
    def close_context(self, cid: str, immediate: bool) -> None:
        self._intent(lambda: self.client.close_context(cid, immediate))

    @rule(speed=st.sampled_from([0.9, 1.1]))
    def update_settings(self, speed: float) -> None:
        self._intent(lambda: self.client.update_settings(speed=speed))

    @rule()
    def close(self) -> None:
        self._intent(self.client.close)

    @precondition(lambda self: self.c2s)
    @rule()
    def deliver_to_server(self) -> None:
        frame = decode_client_frame(self.c2s.popleft(), Endpoint.MULTI)
        self.s2c.extend(f for _, f in self.probe.receive(frame))  # never raises

    @precondition(lambda self: self.s2c)
    @rule()
    def deliver_to_client(self) -> None:
        [frame] = decode_server_frames(encode(self.s2c.popleft()))
        cid = getattr(frame, "context_id", None)
        state = self.client.contexts.get(cid) if cid is not None else None
        outs = self.client.receive(frame)
        self.events.extend(outs)
        content = AudioFrame | GenerationStartedFrame | WordTimestampsFrame | ChunkCompleteFrame | FinalFrame
        if state in (ContextState.CLOSING_IMMEDIATE, None) and isinstance(frame, content):
            assert outs == []  # barge-in safe: no content of a dropped context (6.5)
        if not self.raced:
            assert not [e for e in outs if isinstance(e, RxTtsError)], outs
        if isinstance(frame, SessionClosedFrame):
            assert self.client.contexts == {}

    @precondition(lambda self: self.probe.runnable())
    @rule(data=st.data())
    def pipeline(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(self.probe.runnable()))
        emitted = self.probe.step(key, data.draw(st.integers(0, 11)))
        self.s2c.extend(f for _, f in emitted or [])

    @precondition(lambda self: any(k not in self.probe.sims for k in self.probe.dead))
    @rule(data=st.data())
    def late_result(self, data: st.DataObject) -> None:
        # A disposed pipeline may still report until its id is reused (I/O contract).
        key = data.draw(st.sampled_from(sorted(k for k in self.probe.dead if k not in self.probe.sims)))
        self.probe.late(key, data.draw(st.integers(0, 10)))

    @precondition(lambda self: self.server.open_contexts)
    @rule(data=st.data())
    def timeout(self, data: st.DataObject) -> None:
        cid = data.draw(st.sampled_from(self.server.open_contexts))
        self.raced = True  # the client may still write to it; M-1 re-creates it then
        p = self.server.pipelines[cid]
        closing = p.state.name == "ENDING"  # gracefully closing
        busy = p.pending_flushes > 0 or p.current_chunk is not None  # still speaking
        emitted = self.probe._process(core(self.server.timeout(cid)), cid)
        assert (emitted == []) is (closing or busy)  # neither is idle (M-7, M-10)
        self.s2c.extend(f for _, f in emitted)

    @precondition(lambda self: self.probe.runnable())
    @rule(data=st.data())
    def pipeline_error(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(self.probe.runnable()))
        self.raced = True
        self.s2c.extend(f for _, f in self.probe.error(key))

    @invariant()
    def slots_agree(self) -> None:
        assert len(self.server.open_contexts) <= CAP and self.client.free_slots >= 0
        if not self.raced and not self.c2s and not self.s2c:
            # Quiet socket: the client's view of open contexts is the server's.
            assert sorted(self.client.contexts) == sorted(self.server.open_contexts)

    def teardown(self) -> None:
        self._intent(self.client.close)
        for _ in range(100):
            while self.c2s:
                self.deliver_to_server()
            for key in self.probe.runnable():
                while key in self.probe.sims:
                    emitted = self.probe.step(key, 2)
                    if emitted is None:
                        break
                    self.s2c.extend(f for _, f in emitted)
            while self.s2c:
                self.deliver_to_client()
            if not (self.c2s or self.s2c or self.probe.sims):
                break
        # Liveness (M-8): every context closed, then session_closed, then close 1000.
        assert self.server.closed and self.probe.socket_done
        assert self.probe.sent[-1][1] == SessionClosedFrame()
        assert self.client.contexts == {} and isinstance(self.events[-1], SessionClosed)


MultiWorld.TestCase.settings = HYPOTHESIS
test_multi_world = MultiWorld.TestCase


@HYPOTHESIS
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(
                st.just("request"), st.sampled_from(["Hi.", "  ", "Hello there."]), st.sampled_from([None, 1])
            ),
            st.tuples(st.just("step"), st.integers(0, 11), st.none()),
            st.tuples(st.just("error"), st.none(), st.none()),
            st.tuples(st.just("deliver"), st.none(), st.none()),
        ),
        max_size=40,
    )
)
def test_tts_sequences_answer_in_arrival_order(ops: list[tuple[str, Any, Any]]) -> None:
    """T-2 under random interleavings: every request gets exactly one answer (final or
    error), in arrival order, and every frame is attributed to the request it answers."""
    client, probe = TtsClient(), ServerProbe(TtsServer(pricing=PRICING))
    s2c: deque[tuple[int, ServerFrame]] = deque()
    rids: deque[int] = deque()
    answered: list[int] = []

    def queue(emitted: Emitted) -> None:
        for _, f in emitted:
            rid = rids[0]
            s2c.append((rid, f))
            if isinstance(f, FinalFrame | ErrorFrame):
                rids.popleft()

    def deliver() -> None:
        rid, f = s2c.popleft()
        [(tag, _)] = client.receive(decode_server_frames(encode(f))[0])
        assert tag == rid
        if isinstance(f, FinalFrame | ErrorFrame):
            answered.append(rid)

    for op, a, b in ops:
        if op == "request":
            rid, [req] = client.request(a, StreamConfig(voice_id=b))
            rids.append(rid)
            queue(probe.receive(decode_client_frame(encode(req), Endpoint.TTS)))
        elif op == "step" and probe.runnable():
            queue(probe.step(probe.runnable()[0], a) or [])
        elif op == "error" and probe.runnable():
            queue(probe.error(probe.runnable()[0]))
        elif op == "deliver" and s2c:
            deliver()
    while probe.runnable():
        key = probe.runnable()[0]
        while key in probe.sims and (emitted := probe.step(key, 2)) is not None:
            queue(emitted)
    while s2c:
        deliver()
    requested = sum(1 for op, *_ in ops if op == "request")
    assert answered == list(range(requested)) and not client.pending and not rids


CONFIGS = st.builds(
    WireConfig,
    voice_id=st.none() | st.integers(1, 3),
    speed=st.none() | st.sampled_from([0.9, 1.1]),
    word_timestamps=st.none() | st.booleans(),
    inactivity_timeout=st.none() | st.sampled_from([1.0, 30.0]),
)
CTX = st.none() | st.sampled_from(["a", "b", "c"])
ANY_FRAMES = st.one_of(
    st.builds(
        TextFrame,
        st.sampled_from(["", " ", "Hi.", "ok"]),
        st.none() | st.booleans(),
        CTX,
        CONFIGS,
        st.none() | st.builds(VoiceSettings, voice_id=st.none() | st.integers(1, 3)),
    ),
    st.builds(FlushFrame, CTX, CONFIGS),
    st.builds(CloseFrame, st.booleans()),
    st.just(CancelFrame()),
    st.builds(UpdateSettingsFrame, st.builds(WireConfig, speed=st.sampled_from([0.9, 1.1]))),
    st.builds(CloseContextFrame, st.sampled_from(["a", "b", "c"]), st.booleans()),
    st.just(CloseSocketFrame()),
    st.builds(TtsRequest, st.sampled_from(["", "Hi."]), CONFIGS),
)
SERVER_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("frame"), ANY_FRAMES),
        st.tuples(st.just("step"), st.integers(0, 11)),
        st.tuples(st.just("late"), st.integers(0, 10)),
        st.tuples(st.just("timer"), st.integers(0, 3)),
        st.tuples(st.just("error"), st.integers(0, 3)),
    ),
    max_size=50,
)


@HYPOTHESIS
@given(kind=st.sampled_from(["stream", "multi", "tts"]), ops=SERVER_OPS, cap=st.integers(1, 3))
def test_server_machines_under_arbitrary_frames(kind: str, ops: list[tuple[str, Any]], cap: int) -> None:
    """Any frame sequence from any client, with a correct I/O layer: the machines raise
    nothing, answer only a wrong-endpoint frame or one after close_socket with the
    PROTOCOL_ERROR frame, and every frame
    they produce satisfies the probe's invariants."""
    server: StreamServer | MultiServer | TtsServer = {
        "stream": lambda: StreamServer(pricing=PRICING),
        "multi": lambda: MultiServer(pricing=PRICING, max_contexts=cap),
        "tts": lambda: TtsServer(pricing=PRICING),
    }[kind]()
    probe = ServerProbe(server)
    for op, arg in ops:
        if op == "frame":
            closed = getattr(server, "closed", False) or getattr(server, "closing_socket", False)
            emitted = probe.receive(arg)
            if any(isinstance(f, ErrorFrame) and f.error_code == "PROTOCOL_ERROR" for _, f in emitted):
                wrong = {
                    "stream": isinstance(arg, TtsRequest | CloseContextFrame),
                    "multi": isinstance(arg, CancelFrame | CloseFrame | TtsRequest)
                    or (isinstance(arg, FlushFrame) and arg.context_id is None),
                    "tts": not isinstance(arg, TtsRequest),
                }[kind]
                assert closed or wrong, arg
        elif op == "step" and (keys := probe.runnable()):
            probe.step(keys[arg % len(keys)], arg)
        elif op == "late" and (dead := [k for k in probe.dead if k not in probe.sims]):
            probe.late(dead[arg % len(dead)], arg)
        elif op == "error" and (keys := probe.runnable()):
            probe.error(keys[arg % len(keys)])
        elif op == "timer":
            if isinstance(server, StreamServer) and server.open_turn:
                probe._process(core(server.idle_timeout(server.open_turn)), server.open_turn)
            elif isinstance(server, MultiServer) and server.open_contexts:
                cid = server.open_contexts[arg % len(server.open_contexts)]
                probe._process(core(server.timeout(cid)), cid)


SERVER_FRAMES = st.one_of(
    st.builds(
        AudioFrame,
        st.binary(min_size=0, max_size=4),
        st.sampled_from(["pcm_s16le", "mulaw", "alaw"]),
        st.integers(0, 5),
        st.sampled_from([8000, 24000]),
        st.integers(0, 4),
        st.none() | st.integers(0, 2),
        CTX,
    ),
    st.builds(WordTimestampsFrame, st.just(HELLO_WORDS), st.none() | st.integers(0, 2), CTX),
    st.builds(GenerationStartedFrame, st.integers(0, 2), st.just("x"), CTX),
    st.builds(ChunkCompleteFrame, st.integers(0, 2), st.just(0.1), st.just(1.0), CTX),
    st.builds(FinalFrame, CTX),
    st.builds(SessionClosedFrame, st.none() | st.just(0.5), st.none() | st.just(1), st.none() | st.just(2)),
    st.just(InterruptedFrame()),
    st.just(SettingsUpdatedFrame({"speed": 1.1})),
    st.just(WarningFrame("w")),
    st.just(SessionStartedFrame("s")),
    st.builds(ContextCreatedFrame, st.sampled_from(["a", "b", "c"])),
    st.builds(ContextClosedFrame, st.sampled_from(["a", "b", "c"])),
    st.builds(ContextTimeoutFrame, st.sampled_from(["a", "b", "c"])),
    st.builds(
        ErrorFrame,
        st.just("e"),
        st.sampled_from([None, "TOO_MANY_CONTEXTS", "MISSING_VOICE_ID", "INTERNAL_ERROR", "UNAUTHORIZED"]),
        st.none() | st.sampled_from([400, 429, 500]),
        st.none(),
        st.none(),
        CTX,
    ),
)
CLIENT_INTENTS = st.one_of(
    st.tuples(st.just("send"), CTX, st.sampled_from(["", "Hi", None, 3]), st.booleans()),
    st.tuples(st.just("flush"), CTX, st.none(), st.booleans()),
    st.tuples(st.just("close_context"), CTX, st.none(), st.booleans()),
    st.tuples(st.just("cancel"), st.none(), st.none(), st.booleans()),
    st.tuples(st.just("end"), st.none(), st.none(), st.booleans()),
    st.tuples(st.just("update"), st.none(), st.sampled_from([0.9, 2.0, "x"]), st.booleans()),
)


def _intents(
    stream: StreamClient, multi: MultiClient, name: str, cid: Any, arg: Any, flag: bool
) -> list[Callable[[], object]]:
    """The client calls an intent tuple of :data:`CLIENT_INTENTS` stands for."""
    return {
        "send": [lambda: stream.send_text(arg, flag), lambda: multi.send(cid, arg, flag)],
        "flush": [stream.flush, lambda: multi.flush(cid)],
        "close_context": [lambda: multi.close_context(cid, flag)],
        "cancel": [stream.cancel, multi.close],
        "end": [stream.end_turn],
        "update": [lambda: stream.update_settings(speed=arg), lambda: multi.update_settings(speed=arg)],
    }[name]


@HYPOTHESIS
@given(ops=st.lists(st.one_of(SERVER_FRAMES, CLIENT_INTENTS), max_size=60))
def test_client_machines_under_arbitrary_server_frames(ops: list[Any]) -> None:
    """Any server frames interleaved with any intents (also ill-typed): receive never
    raises, intents raise only LocalProtocolError/TooManyContextsError, and the stream
    client's turn bookkeeping stays consistent."""
    stream, multi, tts = StreamClient(StreamConfig(voice_id=1)), MultiClient(), TtsClient()
    tts.request("Hi.", StreamConfig(voice_id=1))
    for op in ops:
        if isinstance(op, tuple):
            name, cid, arg, flag = op
            for attempt in _intents(stream, multi, name, cid, arg, flag):
                with contextlib.suppress(LocalProtocolError, TooManyContextsError):
                    attempt()
            continue
        cancelling = stream.cancelling
        outs = stream.receive(op)
        assert len(outs) <= 1
        if cancelling and not isinstance(op, InterruptedFrame | ErrorFrame | SettingsUpdatedFrame):
            assert outs == []
        assert stream.cancelling >= 0 and all(t.flushed for t in list(stream.turns)[:-1])
        for out in multi.receive(op):
            assert isinstance(out, RxTtsError) or out.context_id == getattr(op, "context_id", None)
        assert len(multi.contexts) <= multi.config.max_contexts
        [(_, _)] = tts.receive(op)


# -- timers in virtual time: the core never reads the clock ---------------------------------


def test_s8a_idle_timer_is_held_while_output_is_busy_and_counts_from_the_later_end() -> None:
    s, _ = stream_server()
    cmds = s.receive(text("Unfinished", voice_id=1), now=10.0)
    assert ArmTimer("turn-0", 15.0) in cmds  # S-8: 5 s after the last text
    assert s.receive(text(" more"), now=11.0)[-1] == ArmTimer("turn-0", 16.0)
    assert s.output_idle(False, 12.0) == [CancelTimer("turn-0")]  # audio being paced out
    assert s.timer_fired("turn-0", 16.0) == []  # held: not silence (S-8a)
    assert s.output_idle(True, 14.0) == [ArmTimer("turn-0", 19.0)]  # later of 11 and 14
    assert s.timer_fired("turn-0", 18.9) == []  # early (a stale handle): ignored
    cmds = s.timer_fired("turn-0", 19.0)
    assert core(cmds) == [Send((WarningFrame(AUTO_FLUSH_WARNING),)), Flush("turn-0")]
    assert CancelTimer("turn-0") in cmds and s.open_turn is None


def test_s8a_idle_seconds_is_the_machines_setting_and_flush_disarms() -> None:
    s = StreamServer(idle_seconds=0.5)
    assert ArmTimer("turn-0", 3.5) in s.receive(text("Hi", voice_id=1), now=3.0)
    cmds = s.receive(FlushFrame(), now=3.2)
    assert CancelTimer("turn-0") in cmds and Flush("turn-0") in cmds
    assert s.timer_fired("turn-0", 3.5) == []  # the turn is ending: nothing to time out


def test_m10_inactivity_timer_rearms_on_frames_busy_timers_and_idle_output() -> None:
    s, _ = multi_server(default_inactivity_timeout=20.0)
    assert ArmTimer("a", 20.0) in s.receive(ctx_text("a", "One.", True), now=0.0)
    assert s.timer_fired("a", 19.0) == []  # not due yet
    assert s.timer_fired("a", 20.0) == [ArmTimer("a", 40.0)]  # a flush is pending: busy
    assert s.output_idle("a", False, 21.0) == []
    assert s.output_idle("a", True, 25.0) == [ArmTimer("a", 45.0)]  # idle counts from here
    core(s.flush_done("a"))
    cmds = s.timer_fired("a", 45.0)
    assert core(cmds) == [CancelPipeline("a"), Purge(frozenset({"a"})), Send((ContextTimeoutFrame("a"),))]
    assert CancelTimer("a") in cmds and s.open_contexts == []


def test_m10_client_inactivity_timeout_beats_the_servers() -> None:
    s, _ = multi_server(default_inactivity_timeout=20.0)
    cmds = s.receive(ctx_text("a", " ", inactivity_timeout=3.0), now=1.0)
    assert ArmTimer("a", 4.0) in cmds  # PROTOCOL U-8: the client's value first
