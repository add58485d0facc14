"""Public Rx operators of rxtts (RxPY style: thin typed functions, cold, reusable).

Text side: a text stream is ``Observable[str | Flush]``; the server pipeline is
``text.pipe(sentences(), chunk_schedule(schedule, auto_mode), synthesize(...),
encode_audio(...))``. Client side: ``turn_metrics()``, ``collect_audio()``,
``write_wav()``, ``play()`` and ``keep_alive()`` work on session event streams;
``heard(clock)`` reports what the listener heard, ``playout(clock)`` paces network sinks.
"""

from ._segmenter import SentenceSegmenter
from .chunk_schedule import DEFAULT_SCHEDULE, ChunkScheduler, chunk_schedule
from .encode_audio import EncodedAudio, EncodeEvent, encode_audio
from .flush import FLUSH, Flush, TextItem, is_flush
from .heard import HeardLedger, heard, heard_at
from .keep_alive import KEEP_ALIVE, KeepAlivePolicy, idle_ticks, keep_alive
from .markdown import strip_markdown, strip_markdown_text
from .metrics import turn_metrics
from .playout import playout
from .sentences import sentences
from .sinks import collect_audio, play, to_numpy, write_wav
from .synthesize import ChunkAudio, ChunkDone, ChunkStarted, FlushReached, SynthEvent, synthesize

__all__ = [
    "DEFAULT_SCHEDULE",
    "FLUSH",
    "KEEP_ALIVE",
    "ChunkAudio",
    "ChunkDone",
    "ChunkScheduler",
    "ChunkStarted",
    "EncodeEvent",
    "EncodedAudio",
    "Flush",
    "FlushReached",
    "HeardLedger",
    "KeepAlivePolicy",
    "SentenceSegmenter",
    "SynthEvent",
    "TextItem",
    "chunk_schedule",
    "collect_audio",
    "encode_audio",
    "heard",
    "heard_at",
    "idle_ticks",
    "is_flush",
    "keep_alive",
    "play",
    "playout",
    "sentences",
    "strip_markdown",
    "strip_markdown_text",
    "synthesize",
    "to_numpy",
    "turn_metrics",
    "write_wav",
]
