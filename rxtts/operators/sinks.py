"""Audio sinks for event streams: collect to numpy, write a WAV file, play in real time.

Each is a thin operator over ``Observable[TtsEvent]`` (state created in ``subscribe``,
so they are cold and reusable). ``write_wav`` and ``play`` pass every event through, so
they compose anywhere in a pipe; ``collect_audio`` reduces the stream to one array::

    session.speak(tokens).pipe(
        play(player),                  # stops playback at once on barge-in
        write_wav("turn.wav"),         # whatever was received, as a valid WAV file
        ops.take_until(user_speaks),   # barge-in: disposes everything above
    ).subscribe()
"""

from __future__ import annotations

import os
import threading
import wave
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable

from rxtts.events import AudioChunk, Final, Interrupted, SessionClosed

T = TypeVar("T")
Int16Array = npt.NDArray[np.int16]


class SampleRateMismatchError(ValueError):
    """Audio frames of one stream came at different sample rates."""


def _check_rate(rate: int | None, chunk: AudioChunk) -> int:
    if rate is not None and chunk.sample_rate != rate:
        raise SampleRateMismatchError(f"audio at {chunk.sample_rate} Hz after audio at {rate} Hz")
    return chunk.sample_rate


def _pcm_bytes(chunk: AudioChunk) -> bytes:
    """Little-endian int16 bytes of a chunk: the wire bytes themselves for PCM."""
    if chunk.encoding == "pcm_s16le":
        return chunk.audio
    return np.ascontiguousarray(chunk.samples, dtype="<i2").tobytes()


# -- to numpy -----------------------------------------------------------------------------


def to_numpy(events: Iterable[object]) -> Int16Array:
    """The int16 samples of every :class:`AudioChunk` in ``events``, concatenated.

    Raises:
        SampleRateMismatchError: if the chunks have different sample rates.
    """
    rate: int | None = None
    parts: list[Int16Array] = []
    for event in events:
        if isinstance(event, AudioChunk):
            rate = _check_rate(rate, event)
            parts.append(event.samples)
    return np.concatenate(parts).astype(np.int16, copy=False) if parts else np.zeros(0, np.int16)


def collect_audio() -> Callable[[Observable[Any]], Observable[Int16Array]]:
    """Reduce a stream to one int16 array of all its audio, emitted on completion.

    Frames are kept as zero-copy views until the end, then concatenated once::

        events:  -a1--g--a2--S|
        result:  -------------x|      x = concat(a1.samples, a2.samples)

    Errors (and a sample-rate change) are forwarded; nothing is emitted then.
    """

    def _collect_audio(source: Observable[Any]) -> Observable[Int16Array]:
        def subscribe(
            observer: abc.ObserverBase[Int16Array], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            parts: list[Int16Array] = []
            rate: int | None = None

            def on_next(event: object) -> None:
                nonlocal rate
                if isinstance(event, AudioChunk):
                    try:
                        rate = _check_rate(rate, event)
                    except SampleRateMismatchError as exc:
                        observer.on_error(exc)
                        return
                    parts.append(event.samples)

            def on_completed() -> None:
                out = np.concatenate(parts).astype(np.int16, copy=False) if parts else np.zeros(0, np.int16)
                parts.clear()
                observer.on_next(out)
                observer.on_completed()

            return source.subscribe(on_next, observer.on_error, on_completed, scheduler=scheduler)

        return Observable(subscribe)

    return _collect_audio


# -- WAV ----------------------------------------------------------------------------------


class _WavWriter:
    """Streams frames into a WAV file; the header is patched when it is closed."""

    def __init__(self, path: str | os.PathLike[str], sample_rate: int | None) -> None:
        self._path = path
        self._rate = sample_rate
        self._wav: wave.Wave_write | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.frames = 0

    def _open(self, rate: int) -> wave.Wave_write:
        w = wave.open(os.fspath(self._path), "wb")  # noqa: SIM115 - open across events, closed in close()
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        self._rate = rate
        return w

    def write(self, chunk: AudioChunk) -> None:
        with self._lock:
            if self._closed:
                return
            if self._wav is None:
                self._wav = self._open(chunk.sample_rate)
            elif chunk.sample_rate != self._rate:
                raise SampleRateMismatchError(
                    f"audio at {chunk.sample_rate} Hz written to a {self._rate} Hz WAV"
                )
            data = _pcm_bytes(chunk)
            self._wav.writeframesraw(data)
            self.frames += len(data) // 2

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._wav is None:
                self._wav = self._open(self._rate or 24000)  # a valid, empty file
            self._wav.close()


def write_wav(
    path: str | os.PathLike[str], sample_rate: int | None = None
) -> Callable[[Observable[T]], Observable[T]]:
    """Write the stream's audio to ``path`` as it arrives; pass every event through.

    The file is opened at the first :class:`AudioChunk` (its rate) and finalised on
    completion, error or disposal (a barge-in leaves a valid file of what was heard).
    With no audio at all an empty file at ``sample_rate`` (default 24000) is written::

        events:  -a--a--S|
        result:  -a--a--S|        file: a + a, closed at |

    Raises (as ``on_error``):
        SampleRateMismatchError: if the rate changes mid-stream.
    """

    def _write_wav(source: Observable[T]) -> Observable[T]:
        def subscribe(
            observer: abc.ObserverBase[T], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            writer = _WavWriter(path, sample_rate)

            def on_next(event: T) -> None:
                if isinstance(event, AudioChunk):
                    try:
                        writer.write(event)
                    except (SampleRateMismatchError, OSError) as exc:
                        writer.close()
                        observer.on_error(exc)
                        return
                observer.on_next(event)

            def on_error(error: Exception) -> None:
                writer.close()
                observer.on_error(error)

            def on_completed() -> None:
                try:
                    writer.close()
                except OSError as exc:
                    observer.on_error(exc)
                    return
                observer.on_completed()

            sub = source.subscribe(on_next, on_error, on_completed, scheduler=scheduler)
            return CompositeDisposable(sub, Disposable(writer.close))

        return Observable(subscribe)

    return _write_wav


# -- playback -------------------------------------------------------------------------------


class AudioSink(Protocol):
    """What :func:`play` drives; :class:`rxtts.audio.playback.Player` is one."""

    def on_next(self, value: object) -> None:
        """Queue an ``AudioChunk`` for playback (ignore other events)."""

    def finish(self) -> None:
        """End of stream: queued audio plays out."""

    def stop(self) -> None:
        """Barge-in: drop queued audio at once."""


def play(
    player: AudioSink | None = None, stop_if_cut_short: bool = True
) -> Callable[[Observable[T]], Observable[T]]:
    """Play the stream's audio in real time; pass every event through.

    The player's device callback pulls samples on the audio clock, so chunk boundaries
    are gap-free. A turn that ends normally (``SessionClosed`` or ``Final`` seen) plays
    out; disposal (barge-in, e.g. ``take_until`` downstream), an
    :class:`~rxtts.events.Interrupted` event, or a completion *without* a terminal event
    (``take_until`` upstream) stops it at once::

        events:  -a--a--a--S|           -a--a--x (disposed / cut short)
        device:  -aaaaaaaaaaaaaa(finish) -aaaa|  (stop: queue dropped)

    Args:
        player: an :class:`AudioSink`; default a new
            :class:`~rxtts.audio.playback.Player` (needs ``pip install 'rxtts[play]'``).
        stop_if_cut_short: stop (rather than play out) when the stream completes before
            a ``SessionClosed``/``Final``; pass False for streams that never carry one.
    """

    def _play(source: Observable[T]) -> Observable[T]:
        def subscribe(
            observer: abc.ObserverBase[T], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            sink: AudioSink
            if player is None:
                from rxtts.audio.playback import Player

                sink = Player()
            else:
                sink = player
            ended = False
            complete = not stop_if_cut_short

            def on_next(event: T) -> None:
                nonlocal complete
                if isinstance(event, AudioChunk):
                    sink.on_next(event)
                elif isinstance(event, Interrupted):
                    sink.stop()
                elif isinstance(event, SessionClosed | Final):
                    complete = True
                observer.on_next(event)

            def on_error(error: Exception) -> None:
                nonlocal ended
                ended = True
                sink.finish()  # what was received is valid audio: let it play out
                observer.on_error(error)

            def on_completed() -> None:
                nonlocal ended
                ended = True
                if complete:
                    sink.finish()
                else:
                    sink.stop()  # cut short upstream (barge-in): silence now
                observer.on_completed()

            def dispose() -> None:
                if not ended:
                    sink.stop()  # barge-in: silence now, not after the queue drains

            sub = source.subscribe(on_next, on_error, on_completed, scheduler=scheduler)
            return CompositeDisposable(sub, Disposable(dispose))

        return Observable(subscribe)

    return _play


__all__ = [
    "AudioSink",
    "SampleRateMismatchError",
    "collect_audio",
    "play",
    "to_numpy",
    "write_wav",
]
