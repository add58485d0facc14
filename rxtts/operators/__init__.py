"""Public Rx operators of rxtts (RxPY style: thin typed functions, cold, reusable).

Text side: a text stream is ``Observable[str | Flush]``; the pipeline is
``text.pipe(sentences(), chunk_schedule(schedule, auto_mode), synthesize(...),
encode_audio(...))``, or, with the segmentation inside the scheduler (idle release
that keeps partial words, phrase-aware first chunk), ``text.pipe(chunk_schedule(
schedule, auto_mode, segment=True, flush_timeout_ms=..., idle=...), ...)``; text
normalisation: ``normalize(language)``. Client side: ``turn_metrics()``,
``collect_audio()``, ``write_wav()``, ``play()`` and ``keep_alive()`` work on session
event streams; ``heard(clock)`` reports what the listener heard, ``playout(clock)``
paces network sinks; ``pace()`` holds audio to a bounded lead over real-time playback.
"""

from ._segmenter import SentenceSegmenter
from .chunk_schedule import DEFAULT_SCHEDULE, FUNCTION_WORDS, ChunkScheduler, FirstChunk, chunk_schedule
from .encode_audio import EncodedAudio, EncodeEvent, encode_audio
from .flush import FLUSH, Flush, TextItem, is_flush
from .heard import HeardLedger, heard, heard_at
from .keep_alive import KEEP_ALIVE, KeepAlivePolicy, idle_ticks, keep_alive
from .markdown import strip_markdown, strip_markdown_text
from .metrics import turn_metrics
from .normalize import NormalizedText, normalize, normalize_text
from .pace import audio_seconds, pace
from .playout import playout
from .sentences import sentences
from .sinks import collect_audio, play, to_numpy, write_wav
from .synthesize import BlockAudio, ChunkDone, ChunkStarted, FlushReached, SynthEvent, synthesize

__all__ = [
    "DEFAULT_SCHEDULE",
    "FLUSH",
    "FUNCTION_WORDS",
    "KEEP_ALIVE",
    "BlockAudio",
    "ChunkDone",
    "ChunkScheduler",
    "ChunkStarted",
    "EncodeEvent",
    "EncodedAudio",
    "FirstChunk",
    "Flush",
    "FlushReached",
    "HeardLedger",
    "KeepAlivePolicy",
    "NormalizedText",
    "SentenceSegmenter",
    "SynthEvent",
    "TextItem",
    "audio_seconds",
    "chunk_schedule",
    "collect_audio",
    "encode_audio",
    "heard",
    "heard_at",
    "idle_ticks",
    "is_flush",
    "keep_alive",
    "normalize",
    "normalize_text",
    "pace",
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
