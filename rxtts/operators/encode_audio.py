"""``encode_audio()``: engine blocks in, wire-ready audio frames out (PROTOCOL 3.2, 8).

Per chunk a streaming resampler converts the engine's native rate to the requested
``output_format`` rate, so block joins inside a chunk add neither gaps nor clicks; the
samples are quantised to s16le PCM, then G.711-encoded where asked (``ulaw_8000``,
``alaw_8000``), and cut into frames of ``frame_ms``. The first frame of every chunk goes
out as soon as any audio is ready, whatever its size (low time to first audio); later
frames are whole ``frame_ms`` frames, the tail of the chunk goes out with ``ChunkDone``.
A :class:`BlockAlignment` passes through at once, so word timings stay ahead of the
frames of the words they time (PROTOCOL 3.3, issue 13).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias, cast

import numpy as np
import numpy.typing as npt
from reactivex import Observable, abc

from rxtts.audio.g711 import Encoding, encode_samples
from rxtts.audio.pcm import float32_to_pcm16
from rxtts.audio.resample import StreamResampler
from rxtts.config import OutputFormat
from rxtts.operators.synthesize import (
    BlockAlignment,
    BlockAudio,
    ChunkDone,
    ChunkStarted,
    FlushReached,
    SynthEvent,
)

__all__ = ["MAX_FRAME_MS", "EncodeEvent", "EncodedAudio", "encode_audio"]

MAX_FRAME_MS = 1000
"""Upper bound of ``frame_ms``: 1 s of 24 kHz PCM is 64 KiB of base64, far below 1 MiB (G-5)."""


@dataclass(frozen=True, slots=True)
class EncodedAudio:
    """One audio frame as it goes on the wire (PROTOCOL 3.2, G-8)."""

    data: bytes
    """Raw ``audio`` bytes: s16le PCM, or one G.711 byte per sample."""
    encoding: Encoding
    """The ``enc`` value."""
    sample_rate: int
    """The ``sr`` value: the output format's rate."""
    samples: int
    """The ``samples`` value: samples in this frame at ``sample_rate``."""


EncodeEvent: TypeAlias = ChunkStarted | BlockAlignment | EncodedAudio | ChunkDone | FlushReached
"""What :func:`encode_audio` emits: its input with ``BlockAudio`` replaced by frames."""


class _Encoder:
    """Per-subscription state: the chunk's resampler and not yet framed samples."""

    def __init__(self, fmt: OutputFormat, frame_ms: int, observer: abc.ObserverBase[EncodeEvent]) -> None:
        self.rate = fmt.sample_rate
        self.encoding = cast(Encoding, fmt.encoding)
        self.frame = max(1, self.rate * frame_ms // 1000)
        self.observer = observer
        self.resampler: StreamResampler | None = None
        self.pending = np.zeros(0, dtype=np.float32)
        self.sent_in_chunk = 0
        self.first_sent = False

    def on_next(self, event: SynthEvent) -> None:
        try:
            self._on_next(event)
        except Exception as exc:  # a codec failure ends this stream, not the caller's thread
            self.observer.on_error(exc)

    def _on_next(self, event: SynthEvent) -> None:
        match event:
            case ChunkStarted():
                self._reset()
                self.observer.on_next(event)
            case BlockAudio(samples=samples, sample_rate=rate):
                self._feed(samples, rate)
            case ChunkDone(gen_ms=gen_ms):
                self._finish_chunk()
                # chunk_complete reports the audio actually sent, at the output rate.
                self.observer.on_next(ChunkDone(self.sent_in_chunk / self.rate, gen_ms))
                self._reset()
            case BlockAlignment() | FlushReached():
                # An alignment goes out before the frames of its block (and of any tail of
                # the previous block still pending): timings lead the audio they describe.
                self.observer.on_next(event)

    def _reset(self) -> None:
        self.resampler = None
        self.pending = np.zeros(0, dtype=np.float32)
        self.sent_in_chunk = 0
        self.first_sent = False

    def _feed(self, samples: npt.NDArray[np.float32], rate: int) -> None:
        if self.resampler is None or self.resampler.from_rate != rate:
            self.resampler = StreamResampler(rate, self.rate, dtype=np.float32)
        samples = np.asarray(samples, dtype=np.float32)
        head = 2 * rate * self.frame // self.rate
        if not self.first_sent and samples.size > 2 * head:
            # Low TTFA: resample and send the start of a long block before the rest.
            self._feed(samples[:head], rate)
            samples = samples[head:]
        first_block = not self.first_sent
        out = self.resampler.feed(samples)
        self.pending = np.concatenate([self.pending, out]) if self.pending.size else out
        if not self.first_sent and self.pending.size:
            self._emit(min(self.frame, self.pending.size))  # low TTFA: no waiting for a full frame
        while self.pending.size >= self.frame:
            self._emit(self.frame)
        if first_block and self.pending.size:
            # No dead air: with streaming decode the next block takes a decoder window to
            # come; the player gets all of the first block now, not one frame of it.
            self._emit(self.pending.size)

    def _finish_chunk(self) -> None:
        if self.resampler is not None:
            tail = self.resampler.flush()
            if tail.size:
                self.pending = np.concatenate([self.pending, tail])
        while self.pending.size:
            self._emit(min(self.frame, self.pending.size))

    def _emit(self, n: int) -> None:
        head, self.pending = self.pending[:n], self.pending[n:]
        data = encode_samples(float32_to_pcm16(head), self.encoding)
        self.first_sent = True
        self.sent_in_chunk += n
        self.observer.on_next(EncodedAudio(data, self.encoding, self.rate, n))


def encode_audio(
    output_format: OutputFormat | str, frame_ms: int = 80
) -> Callable[[Observable[SynthEvent]], Observable[EncodeEvent]]:
    """Resample, quantise and frame engine audio for the wire.

    ::

        events:  -S-----A(22050 Hz, 300 ms)---------A(...)--D(gen)-F-|
                     encode_audio("pcm_24000", frame_ms=80)
        out:     -S-----E E E--------------------------E E---D'-----F-|

        S = ChunkStarted, A = BlockAudio, E = EncodedAudio (first one at once, then
        whole 80 ms frames, the rest at D), D' = ChunkDone with the seconds sent,
        F = FlushReached; S, D and F keep their order. A BlockAlignment (L) passes
        through unchanged where it comes: -S-L-A- becomes -S-L-E-.

    Args:
        output_format: Codec and rate (PROTOCOL 8), e.g. ``"ulaw_8000"``.
        frame_ms: Frame length in ms, 10..1000 (default 80; every frame < 1 MiB).

    Returns:
        An operator ``Observable[SynthEvent] -> Observable[EncodeEvent]``; cold, with a
        fresh resampler per chunk and subscription.
    """
    fmt = OutputFormat.parse(output_format)
    if not 10 <= frame_ms <= MAX_FRAME_MS:
        raise ValueError(f"frame_ms must be in [10, {MAX_FRAME_MS}], got {frame_ms}")

    def _encode_audio(source: Observable[SynthEvent]) -> Observable[EncodeEvent]:
        def subscribe(
            observer: abc.ObserverBase[EncodeEvent],
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            encoder = _Encoder(fmt, frame_ms, observer)
            return source.subscribe(
                encoder.on_next, observer.on_error, observer.on_completed, scheduler=scheduler
            )

        return Observable(subscribe)

    return _encode_audio
