"""Public Rx operators of rxtts (RxPY style: thin typed functions, cold, reusable).

Text side: a text stream is ``Observable[str | Flush]``; the pipeline is
``text.pipe(sentences(), chunk_schedule(schedule, auto_mode), synthesize(...),
encode_audio(...))``, or, with the segmentation inside the scheduler (idle release
that keeps partial words, phrase-aware first chunk), ``text.pipe(chunk_schedule(
schedule, auto_mode, segment=True, flush_timeout_ms=..., idle=...), ...)``.
Client side: ``turn_metrics()``, ``collect_audio()``, ``write_wav()``, ``play()``
and ``keep_alive()`` work on session event streams; ``pace()`` holds audio to a
bounded lead over real-time playback.
"""

from ._segmenter import SentenceSegmenter
from .chunk_schedule import DEFAULT_SCHEDULE, FUNCTION_WORDS, ChunkScheduler, FirstChunk, chunk_schedule
from .encode_audio import EncodedAudio, EncodeEvent, encode_audio
from .flush import FLUSH, Flush, TextItem, is_flush
from .keep_alive import KEEP_ALIVE, KeepAlivePolicy, idle_ticks, keep_alive
from .markdown import strip_markdown, strip_markdown_text
from .metrics import turn_metrics
from .pace import audio_seconds, pace
from .sentences import sentences
from .sinks import collect_audio, play, to_numpy, write_wav
from .synthesize import ChunkAudio, ChunkDone, ChunkStarted, FlushReached, SynthEvent, synthesize

__all__ = [
    "DEFAULT_SCHEDULE",
    "FLUSH",
    "FUNCTION_WORDS",
    "KEEP_ALIVE",
    "ChunkAudio",
    "ChunkDone",
    "ChunkScheduler",
    "ChunkStarted",
    "EncodeEvent",
    "EncodedAudio",
    "FirstChunk",
    "Flush",
    "FlushReached",
    "KeepAlivePolicy",
    "SentenceSegmenter",
    "SynthEvent",
    "TextItem",
    "audio_seconds",
    "chunk_schedule",
    "collect_audio",
    "encode_audio",
    "idle_ticks",
    "is_flush",
    "keep_alive",
    "pace",
    "play",
    "sentences",
    "strip_markdown",
    "strip_markdown_text",
    "synthesize",
    "to_numpy",
    "turn_metrics",
    "write_wav",
]
