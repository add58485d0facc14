"""Real-time playback: a gap-free sample queue drained by the audio device clock.

:class:`SampleQueue` is the pure core: producers :meth:`~SampleQueue.feed` int16 chunks
whenever they arrive, the device's callback pulls exactly the frames it needs, so chunk
boundaries are invisible in the output (no gaps, no clicks). When the queue runs dry the
callback pads with zeros and counts an underrun. :meth:`~SampleQueue.stop` drops all queued
audio at once (barge-in): the very next callback is silence. Each fed chunk may carry a
turn key (:data:`~rxtts.audio.clock.TurnKey`): the queue counts frames played per turn and
``stop(key)`` drops one turn's frames only, so :class:`Player` is a
:class:`~rxtts.audio.clock.PlaybackClock` whose position is what the device played.

:class:`Player` opens a ``sounddevice`` output stream (optional extra ``rxtts[play]``,
imported lazily) around a :class:`SampleQueue` and is an Rx observer of session events::

    turn.pipe(ops.take_until(user_speaks)).subscribe(player)
"""

from __future__ import annotations

import importlib
import threading
from collections import deque
from types import ModuleType, TracebackType
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from reactivex.abc import ObserverBase

from rxtts.audio.clock import TurnKey, turn_key
from rxtts.audio.g711 import decode_alaw, decode_ulaw
from rxtts.audio.pcm import FULL_SCALE, Int16Array, as_pcm16
from rxtts.audio.resample import StreamResampler

INSTALL_HINT: Final = "pip install 'rxtts[play]'"
"""How to install the optional playback dependency."""


def import_sounddevice() -> ModuleType:
    """Import ``sounddevice`` lazily, or fail with an install hint.

    Raises:
        ImportError: if ``sounddevice`` or its PortAudio library is missing.
    """
    try:
        return importlib.import_module("sounddevice")
    except ImportError as exc:
        raise ImportError(
            f"Real-time playback needs the optional 'sounddevice' package: {INSTALL_HINT}"
        ) from exc
    except OSError as exc:  # sounddevice raises OSError when libportaudio is absent
        raise ImportError(
            f"sounddevice is installed but PortAudio is missing ({exc}); "
            "install libportaudio2 (e.g. apt-get install libportaudio2)"
        ) from exc


class SampleQueue:
    """Thread-safe FIFO of int16 frames, drained by an audio callback.

    ``feed`` runs on the producer's thread, ``callback`` on the audio thread; one lock
    guards the queue. An *underrun* is a callback that had to pad with zeros while a
    stream is active (fed since the last :meth:`finish` / :meth:`stop`); the zeros after
    the end of a finished stream, or while idle, are not underruns.
    """

    def __init__(self, channels: int = 1) -> None:
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.channels: Final = channels
        """Channels per frame of the output buffer."""
        self._chunks: deque[tuple[Int16Array, TurnKey | None]] = deque()
        self._played_by: dict[TurnKey, int] = {}  # frames played per turn
        self._queued_by: dict[TurnKey, int] = {}  # frames queued per turn
        self._stopped: set[TurnKey] = set()  # turns whose later audio is dropped
        self._offset = 0  # frames of self._chunks[0] already played
        self._queued = 0
        self._played = 0
        self._dropped = 0
        self._underruns = 0
        self._underrun_frames = 0
        self._active = False
        self._cond = threading.Condition(threading.Lock())

    def _frames(self, samples: npt.ArrayLike) -> Int16Array:
        pcm = as_pcm16(samples)
        if pcm.ndim == 1:
            return np.repeat(pcm[:, np.newaxis], self.channels, axis=1)
        if pcm.ndim == 2 and pcm.shape[1] == self.channels:
            return pcm.copy()
        raise ValueError(f"expected 1-D samples or shape (n, {self.channels}), got shape {pcm.shape}")

    def feed(self, samples: npt.ArrayLike, key: TurnKey | None = None) -> None:
        """Append samples (1-D mono, broadcast to every channel, or ``(n, channels)``).

        int16 is queued as is (copied); float input is converted to int16. ``key`` names
        the turn the samples belong to; samples of a turn stopped with ``stop(key)`` are
        dropped (a barge-in is final).
        """
        frames = self._frames(samples)
        n = frames.shape[0]
        if n == 0:
            return
        with self._cond:
            if key is not None and key in self._stopped:
                self._dropped += n
                return
            self._chunks.append((frames, key))
            self._queued += n
            if key is not None:
                self._queued_by[key] = self._queued_by.get(key, 0) + n
                self._played_by.setdefault(key, 0)
            self._active = True

    def finish(self) -> None:
        """Mark the end of the current stream: queued audio still plays, then silence
        without counting underruns. A later :meth:`feed` starts a new stream."""
        with self._cond:
            self._active = False

    def stop(self, key: TurnKey | None = None) -> int:
        """Barge-in: drop queued frames at once; returns how many were dropped.

        Without ``key`` every queued frame goes (later audio still plays, as before turn
        keys existed); with ``key`` only that turn's frames, and its later ones too: the
        turn's played-frame count freezes.
        """
        with self._cond:
            if key is None:
                dropped = self._queued
                self._chunks.clear()
                self._offset = 0
                self._queued = 0
                self._queued_by = dict.fromkeys(self._queued_by, 0)
                self._active = False
            else:
                dropped = self._drop_turn(key)
            self._dropped += dropped
            self._cond.notify_all()
        return dropped

    def _drop_turn(self, key: TurnKey) -> int:
        """Remove one turn's queued frames; caller holds the lock."""
        self._stopped.add(key)
        kept: deque[tuple[Int16Array, TurnKey | None]] = deque()
        dropped = 0
        for i, (frames, owner) in enumerate(self._chunks):
            if owner != key:
                kept.append((frames, owner))
                continue
            done = self._offset if i == 0 else 0  # the head may be partly played
            dropped += frames.shape[0] - done
        if self._chunks and self._chunks[0][1] == key:
            self._offset = 0
        self._chunks = kept
        self._queued -= dropped
        self._queued_by[key] = 0
        if self._queued == 0:
            self._active = False
        return dropped

    def callback(self, outdata: npt.NDArray[Any], frames: int) -> None:
        """Fill ``outdata[:frames]`` (shape ``(frames, channels)``, int16 or float32).

        Queued frames are copied in order; a shortfall is padded with zeros.
        """
        direct = outdata.dtype == np.int16
        block = outdata[:frames] if direct else np.empty((frames, self.channels), np.int16)
        with self._cond:
            filled = self._pull(block)
            if filled < frames and self._active:
                self._underruns += 1
                self._underrun_frames += frames - filled
            if self._queued == 0:
                self._cond.notify_all()
        block[filled:] = 0  # underrun / idle: silence, never stale data
        if not direct:
            outdata[:frames] = block.astype(np.float32) / np.float32(FULL_SCALE)

    def _pull(self, block: Int16Array) -> int:
        """Copy queued frames into ``block``; caller holds the lock. Returns frames filled."""
        filled = 0
        wanted = block.shape[0]
        while filled < wanted and self._chunks:
            head, key = self._chunks[0]
            n = min(head.shape[0] - self._offset, wanted - filled)
            block[filled : filled + n] = head[self._offset : self._offset + n]
            filled += n
            self._offset += n
            if key is not None:
                self._played_by[key] += n
                self._queued_by[key] -= n
            if self._offset == head.shape[0]:
                self._chunks.popleft()
                self._offset = 0
        self._queued -= filled
        self._played += filled
        return filled

    def wait_empty(self, timeout: float | None = None) -> bool:
        """Block until every queued frame has been pulled; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._queued == 0, timeout)

    @property
    def queued_frames(self) -> int:
        """Frames waiting to be played."""
        return self._queued

    @property
    def played_frames(self) -> int:
        """Frames of real audio handed to the device so far (zero padding excluded)."""
        return self._played

    def played_frames_of(self, key: TurnKey) -> int:
        """Frames of one turn handed to the device so far (0 for unknown turns)."""
        return self._played_by.get(key, 0)

    def queued_frames_of(self, key: TurnKey) -> int:
        """Frames of one turn waiting to be played."""
        return self._queued_by.get(key, 0)

    def is_stopped(self, key: TurnKey) -> bool:
        """Whether ``stop`` dropped the turn (its later audio is ignored)."""
        return key in self._stopped

    @property
    def dropped_frames(self) -> int:
        """Frames discarded by :meth:`stop` so far."""
        return self._dropped

    @property
    def underruns(self) -> int:
        """Callbacks that padded with zeros while a stream was active."""
        return self._underruns

    @property
    def underrun_frames(self) -> int:
        """Zero frames inserted by underruns."""
        return self._underrun_frames


class Player(ObserverBase[object]):
    """Plays int16 audio on the default (or given) output device, gap-free.

    It is also a :class:`~rxtts.audio.clock.PlaybackClock`: every ``AudioChunk`` is fed
    under its turn key (``(context_id, turn)``), :meth:`position` is the frames of that
    turn the device callback pulled (device truth, not an estimate) and ``stop(key)``
    drops one turn. :meth:`queued` is a no-op: the player counts the audio it is fed.

    The device stream opens lazily on the first :meth:`feed` at ``sample_rate`` (or, if
    that is None, at the first chunk's rate); chunks at another rate are resampled. As an
    Rx observer it plays every event with an int16 ``.samples`` array (an ``AudioChunk``)
    and ignores other events; completion (or an error) finishes the stream, queued audio
    still plays out. Dispose your subscription and call :meth:`stop` to barge in.
    """

    def __init__(
        self,
        sample_rate: int | None = None,
        *,
        channels: int = 1,
        device: int | str | None = None,
        blocksize: int = 0,
        latency: float | str = "low",
    ) -> None:
        self._sd = import_sounddevice()
        self._rate = sample_rate
        self._device = device
        self._blocksize = blocksize
        self._latency = latency
        self.queue: Final = SampleQueue(channels)
        """The sample queue drained by the device callback."""
        self._stream: Any = None
        self._resampler: StreamResampler | None = None
        self._lock = threading.Lock()
        self._xruns = 0
        self._closed = False
        self.error: Exception | None = None
        """The error that ended the observed sequence, if any."""

    # -- device -------------------------------------------------------------------------

    def _device_callback(self, outdata: npt.NDArray[Any], frames: int, time: Any, status: Any) -> None:
        if status:  # PortAudio-level xrun (device-side), distinct from queue underruns
            self._xruns += 1
        self.queue.callback(outdata, frames)

    def _ensure_open(self, rate: int) -> int:
        with self._lock:
            if self._closed:
                raise RuntimeError("Player is closed")
            if self._stream is None:
                self._rate = self._rate or rate
                self._stream = self._sd.OutputStream(
                    samplerate=self._rate,
                    channels=self.queue.channels,
                    dtype="int16",
                    callback=self._device_callback,
                    blocksize=self._blocksize,
                    device=self._device,
                    latency=self._latency,
                )
                self._stream.start()
            assert self._rate is not None
            return self._rate

    # -- public API ---------------------------------------------------------------------

    @property
    def sample_rate(self) -> int | None:
        """Device sample rate (None until the stream opens)."""
        return self._rate

    def feed(
        self, samples: npt.ArrayLike, sample_rate: int | None = None, key: TurnKey | None = None
    ) -> None:
        """Queue samples for playback; ``sample_rate`` defaults to the device rate;
        ``key`` is the turn they belong to (for :meth:`position`)."""
        device_rate = self._ensure_open(sample_rate or self._rate or 24000)
        rate = sample_rate or device_rate
        pcm = as_pcm16(samples)
        if rate != device_rate:
            pcm = self._resample(pcm, rate, device_rate)
        self.queue.feed(pcm, key)

    def _resample(self, pcm: Int16Array, rate: int, device_rate: int) -> Int16Array:
        channels = 1 if pcm.ndim == 1 else int(pcm.shape[1])
        r = self._resampler
        if r is None or r.from_rate != rate or r.channels != channels:
            r = self._resampler = StreamResampler(rate, device_rate, channels=channels)
        return as_pcm16(r.feed(pcm))

    def finish(self) -> None:
        """End of the current stream: flush the resampler; queued audio plays out."""
        if self._resampler is not None:
            self.queue.feed(self._resampler.flush())
            self._resampler = None
        self.queue.finish()

    def stop(self, key: TurnKey | None = None) -> None:
        """Barge-in: drop all queued audio (or one turn's) at once; the device keeps
        running (silence)."""
        if key is None:
            self._resampler = None
        self.queue.stop(key)

    # -- PlaybackClock ------------------------------------------------------------------

    def position(self, key: TurnKey) -> float:
        """Seconds of the turn's audio the device has played (frozen once stopped)."""
        return self.queue.played_frames_of(key) / self._rate if self._rate else 0.0

    def remaining(self, key: TurnKey) -> float:
        """Seconds of the turn's audio queued and not yet played."""
        return self.queue.queued_frames_of(key) / self._rate if self._rate else 0.0

    def queued(self, key: TurnKey, seconds: float) -> None:
        """No-op: the player learns what is queued from the audio it is fed."""

    def wait(self, timeout: float | None = None) -> bool:
        """Block until queued audio has been handed to the device; False on timeout."""
        return self.queue.wait_empty(timeout)

    def close(self) -> None:
        """Stop playback and release the device. Idempotent."""
        with self._lock:
            self._closed = True
            stream, self._stream = self._stream, None
        self.stop()
        if stream is not None:
            stream.stop()
            stream.close()

    @property
    def played_seconds(self) -> float:
        """Seconds of real audio handed to the device (excludes zero padding)."""
        return self.queue.played_frames / self._rate if self._rate else 0.0

    @property
    def underruns(self) -> int:
        """Queue underruns (see :class:`SampleQueue`)."""
        return self.queue.underruns

    @property
    def device_xruns(self) -> int:
        """Callbacks in which PortAudio reported an xrun status."""
        return self._xruns

    def __enter__(self) -> Player:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- Rx observer ----------------------------------------------------------------------

    def on_next(self, value: object) -> None:
        """Play an ``AudioChunk`` (any object with an ndarray ``.samples``); ignore others."""
        samples = getattr(value, "samples", None)
        if not isinstance(samples, np.ndarray):
            return
        rate = getattr(value, "sample_rate", None)
        if samples.dtype == np.uint8:  # raw G.711 codes (PROTOCOL §8 enc mulaw/alaw)
            encoding = getattr(value, "encoding", None)
            if encoding == "mulaw":
                samples = decode_ulaw(samples)
            elif encoding == "alaw":
                samples = decode_alaw(samples)
            else:
                return
        if samples.size:
            self.feed(samples, rate if isinstance(rate, int) else None, turn_key(value))

    def on_error(self, error: Exception) -> None:
        """Remember the error and finish the stream; queued audio still plays."""
        self.error = error
        self.finish()

    def on_completed(self) -> None:
        """Finish the stream; queued audio still plays."""
        self.finish()
