"""``heard(clock)``: what the listener actually heard of a turn, as one :class:`Heard` event.

What "heard" means
------------------
The listener heard the audio a :class:`~rxtts.audio.clock.PlaybackClock` says was played
for the turn (its *position*, in seconds of the turn's audio) at the moment of the cut.
Word times place every word of the turn on that audio timeline:

- chunk ``k``'s audio starts at the sum of the audio durations of chunks ``0..k-1``
  (``AudioChunk.duration``, in arrival order);
- a word's times are ``start_ms``/``end_ms`` of its :class:`~rxtts.events.WordTimestamp`
  on the turn's timeline (rxtts servers: monotonic over the turn, offsets into the
  turn's text), or its chunk's start plus them where a server sends them chunk-relative
  (PROTOCOL 3.3, U-18): :func:`word_time_base` decides per chunk, and the same rule maps
  the character offsets; whether the timestamps arrived before the chunk's audio or
  after it;
- without timestamps for a chunk (not requested, or not arrived yet at the cut) the
  chunk's words (``\\S+`` runs of its text) share its audio in proportion to
  ``len(word) + 1`` characters (the same rule as the local server's estimator), over the
  chunk's ``ChunkComplete.audio_seconds``; while its audio is still arriving, over its
  length times the turn's seconds per character so far (else
  :data:`SPEECH_SECONDS_PER_CHAR`), never less than the audio received: a guess errs
  towards "not heard yet";
- real vs estimated: ``score > 0.5`` is an aligner's confidence (real times);
  ``score <= 0.5`` is an estimate (the local server sends 0.5), and so is the
  proportional fallback. :attr:`Heard.estimated` says whether one decided the result.

A word is *heard* when its end time is at or before the position; the *cut word* is
the word playing at the position (``start < position < end``), ``None`` in a pause.
Words are heard in order: the first word not heard in full ends the heard part.

Offsets: chunk-relative ``char_start``/``char_end`` are mapped into the turn's text as
the client sent it (``text``: the concatenated tokens) by walking each chunk's text
(``GenerationStarted.text``) against the sent text in order, matching non-space
characters and skipping whitespace on both sides. Assumption: the server speaks the sent
text verbatim up to whitespace (the :func:`~rxtts.operators.sentences` invariant); where a
chunk differs (a server normalising text), it is re-synchronised at the next word found
verbatim, else its offsets collapse to the cursor. ``heard_text = text[:char_end]``
therefore always is a prefix of the sent text ending at the end of a word (trailing
punctuation attached to the word included).

History policy (the "± cut word" question): commit :attr:`Heard.heard_text` (words
heard in full) by default; :meth:`Heard.history_text` with ``include_cut_word=True``
adds the cut word. Both are exposed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SerialDisposable
from reactivex.scheduler import TimeoutScheduler

from rxtts.audio.clock import EPSILON, PlaybackClock, TurnKey, learn_key
from rxtts.events import (
    AudioChunk,
    ChunkComplete,
    ContextClosed,
    ContextTimeout,
    Final,
    GenerationStarted,
    Heard,
    HeardReason,
    Interrupted,
    SessionClosed,
    WordTimestamp,
    WordTimestamps,
)

T = TypeVar("T")

_WORD = re.compile(r"\S+")
REAL_SCORE = 0.5
"""``WordTimestamp.score`` above this is an aligner's confidence; at or below, an estimate."""
SPEECH_SECONDS_PER_CHAR = 0.065
"""Prior for an incomplete chunk without alignment: ~15 characters/s of English speech."""
PLAYED_OUT_TOLERANCE = 0.01
"""A turn whose position is this close to its received audio played out (resampling in a
:class:`~rxtts.audio.playback.Player` may shift the frame count by a few samples)."""
POLL_SECONDS = 0.05
"""While a finished turn plays out, the clock is re-read at least this often."""
_TERMINAL = (SessionClosed, Final, ContextClosed, ContextTimeout)
"""Events after which the turn's audio is complete (it plays out)."""


# -- the pure core -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Chunk:
    text: str = ""
    received: float = 0.0
    complete_seconds: float | None = None
    words: tuple[WordTimestamp, ...] | None = None


@dataclass(frozen=True, slots=True)
class _Word:
    start: float
    end: float
    char_start: int
    char_end: int
    estimated: bool


@dataclass(slots=True)
class HeardLedger:
    """Accumulates one turn's events; :meth:`result` says what was heard at a position.

    Pure (no clock, no Rx): the :func:`heard` operator feeds it, and code holding a list
    of events can use it directly (see :func:`heard_at`).
    """

    chunks: dict[int, _Chunk] = field(default_factory=dict)
    """Chunks by id, in order of first appearance (= audio order)."""
    key: TurnKey | None = None
    """The turn, from the first event that names one."""
    _current: int | None = None

    def on_event(self, event: object) -> None:
        """Account for one event of the turn (others are ignored)."""
        self.key = self.key or learn_key(event)
        if isinstance(event, GenerationStarted):
            self._chunk(event.chunk_id).text = event.text
            self._current = event.chunk_id
        elif isinstance(event, AudioChunk):
            self._chunk(self._chunk_id(event.chunk_id)).received += event.duration
        elif isinstance(event, WordTimestamps):
            self._chunk(self._chunk_id(event.chunk_id)).words = event.words
        elif isinstance(event, ChunkComplete):
            self._chunk(event.chunk_id).complete_seconds = event.audio_seconds

    def _chunk_id(self, chunk_id: int | None) -> int:
        # Frames without a chunk id belong to the chunk generated last (PROTOCOL 3.2).
        if chunk_id is not None:
            return chunk_id
        return self._current if self._current is not None else -1

    def _chunk(self, chunk_id: int) -> _Chunk:
        chunk = self.chunks.get(chunk_id)
        if chunk is None:
            chunk = self.chunks[chunk_id] = _Chunk()
        return chunk

    @property
    def received_seconds(self) -> float:
        """Seconds of audio received for the turn."""
        return sum(c.received for c in self.chunks.values())

    def chunk_text(self) -> str:
        """The chunk texts joined (a space where a boundary has none): the turn's text
        when the sent text is not known."""
        out = ""
        for chunk in self.chunks.values():
            if out and chunk.text and not out[-1].isspace() and not chunk.text[0].isspace():
                out += " "
            out += chunk.text
        return out

    def result(
        self,
        position: float,
        text: str | None = None,
        reason: HeardReason = "completed",
        key: TurnKey | None = None,
    ) -> Heard:
        """The :class:`Heard` event for a playback ``position`` (seconds of the turn).

        Args:
            position: seconds of the turn's audio played (clamped to what was received).
            text: the turn's text as sent; default :meth:`chunk_text`.
            reason: why the turn ended.
            key: the turn's identity, default :attr:`key`.
        """
        full = self.chunk_text() if text is None else text
        played = max(0.0, min(position, self.received_seconds))
        words = self._timeline(full)
        heard_words, cut, estimated = _split(words, played)
        char_end = _word_end(full, heard_words[-1].char_end) if heard_words else 0
        cut_range = None if cut is None else (cut.char_start, _word_end(full, cut.char_end))
        context_id, turn = key or self.key or (None, None)
        return Heard(
            text=full,
            heard_text=full[:char_end],
            unheard_text=full[char_end:],
            char_end=char_end,
            cut_word=None if cut_range is None else full[cut_range[0] : cut_range[1]],
            cut_char_start=None if cut_range is None else cut_range[0],
            cut_char_end=None if cut_range is None else cut_range[1],
            heard_seconds=round(played, 6),
            received_seconds=round(self.received_seconds, 6),
            words_heard=len(heard_words),
            estimated=estimated,
            reason=reason,
            context_id=context_id,
            turn=turn,
        )

    def _timeline(self, full: str) -> list[_Word]:
        """Every word of the turn on its audio timeline, offsets into ``full``."""
        out: list[_Word] = []
        start = 0.0
        cursor = 0
        per_char = self._seconds_per_char()
        for chunk in self.chunks.values():
            chunk_at = cursor
            mapping, cursor = align(chunk.text, full, cursor)
            words = _chunk_words(chunk, per_char)
            stamps = chunk.words or ()
            base = word_time_base(stamps, start) if stamps else start
            turn_chars = bool(stamps) and stamps[0].char_start >= chunk_at > 0
            for word in words:
                if turn_chars:  # offsets already index the turn's text (rxtts servers)
                    char_start, char_end = min(word.char_start, len(full)), min(word.char_end, len(full))
                else:
                    char_start = mapping[min(word.char_start, len(chunk.text))]
                    char_end = mapping[min(word.char_end, len(chunk.text))]
                out.append(_Word(base + word.start, base + word.end, char_start, char_end, word.estimated))
            start += chunk.received  # rule: chunk k starts after chunks 0..k-1's audio
        return out

    def _seconds_per_char(self) -> float | None:
        done = [c for c in self.chunks.values() if c.complete_seconds is not None and c.text.strip()]
        chars = sum(len(c.text.strip()) for c in done)
        return sum(c.complete_seconds or 0.0 for c in done) / chars if chars else None


def word_time_base(words: Sequence[WordTimestamp], chunk_start: float) -> float:
    """Seconds to add to a chunk's word times to put them on the turn's timeline.

    rxtts servers send times monotonic over the turn (a chunk's words start at or after
    the chunk's audio start): nothing to add. A server that sends them from the chunk's
    audio start (PROTOCOL U-18) gets ``chunk_start`` added. The two are told apart by the
    first word: at or after ``chunk_start`` (less 50 ms of rounding) means turn-based.
    """
    if not words or chunk_start <= 0.0:
        return 0.0
    return 0.0 if words[0].start_ms / 1000 >= chunk_start - 0.05 else chunk_start


def _chunk_words(chunk: _Chunk, per_char: float | None) -> list[_Word]:
    """A chunk's words in chunk time, offsets into the chunk text."""
    if chunk.words:
        return [
            _Word(w.start_ms / 1000, w.end_ms / 1000, w.char_start, w.char_end, w.score <= REAL_SCORE)
            for w in chunk.words
        ]
    return _proportional(chunk, per_char)


def _proportional(chunk: _Chunk, per_char: float | None) -> list[_Word]:
    """No alignment: words share the chunk's audio by ``len(word) + 1`` (estimated)."""
    matches = list(_WORD.finditer(chunk.text))
    if not matches:
        return []
    if chunk.complete_seconds is not None:
        duration = chunk.complete_seconds
    else:  # audio still arriving: extrapolate, never less than what was received
        rate = SPEECH_SECONDS_PER_CHAR if per_char is None else per_char
        duration = max(chunk.received, rate * len(chunk.text.strip()))
    weights = [len(m.group()) + 1 for m in matches]
    scale = duration / sum(weights)
    out: list[_Word] = []
    at = 0.0
    for m, w in zip(matches, weights, strict=True):
        out.append(_Word(at, at + w * scale, m.start(), m.end(), True))
        at += w * scale
    return out


def _split(words: Sequence[_Word], played: float) -> tuple[list[_Word], _Word | None, bool]:
    """(words heard in full, the cut word, whether an estimate decided it)."""
    heard: list[_Word] = []
    estimated = False
    for word in words:
        estimated = estimated or word.estimated
        if word.end <= played + EPSILON:  # rule: heard = ended by the position
            heard.append(word)
            continue
        cut = word if word.start < played - EPSILON else None
        return heard, cut, estimated
    return heard, None, estimated


def _word_end(text: str, end: int) -> int:
    """Extend an end offset over punctuation glued to the word (``Hello`` -> ``Hello,``)."""
    while end < len(text) and not text[end].isspace() and not text[end].isalnum():
        end += 1
    return end


def align(chunk_text: str, text: str, cursor: int = 0) -> tuple[list[int], int]:
    """Map every offset of ``chunk_text`` (0..len inclusive) into ``text`` from ``cursor``.

    Non-space characters are matched in order, whitespace is skipped on both sides; a
    mismatch re-synchronises at the chunk's next word found verbatim in ``text``, else
    the rest of the chunk maps to the cursor. Returns the mapping and the new cursor.
    """
    mapping = [cursor] * (len(chunk_text) + 1)
    i, j = 0, cursor
    n = len(chunk_text)
    while i < n:
        ch = chunk_text[i]
        if ch.isspace():
            mapping[i] = j
            i += 1
            continue
        while j < len(text) and text[j].isspace():
            j += 1
        if j < len(text) and text[j] == ch:
            mapping[i] = j
            i += 1
            j += 1
            continue
        i, j = _resync(chunk_text, text, i, j, mapping)
    mapping[n] = j
    return mapping, j


def _resync(chunk_text: str, text: str, i: int, j: int, mapping: list[int]) -> tuple[int, int]:
    """Skip to the next chunk word found verbatim in ``text``; map the skipped span to ``j``."""
    for m in _WORD.finditer(chunk_text, i + 1):
        if m.start() <= i:
            continue
        found = text.find(m.group(), j)
        if found >= 0:
            for k in range(i, m.start()):
                mapping[k] = j
            return m.start(), found
    for k in range(i, len(chunk_text)):
        mapping[k] = j
    return len(chunk_text), j


def heard_at(
    events: Iterable[object], position: float, text: str | None = None, reason: HeardReason = "completed"
) -> Heard:
    """What was heard of a recorded turn at playback ``position`` seconds (pure helper)."""
    ledger = HeardLedger()
    for event in events:
        ledger.on_event(event)
    return ledger.result(position, text, reason)


# -- the operator -----------------------------------------------------------------------------------


TextSource = str | Callable[[], str] | None
"""The turn's sent text: a string, a function read at the cut (tokens still streaming),
or ``None`` (use the chunk texts)."""


def heard(
    clock: PlaybackClock,
    text: TextSource = None,
    *,
    on_heard: Callable[[Heard], None] | None = None,
    stop_if_cut_short: bool = True,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[T]], Observable[T | Heard]]:
    """Pass a turn's events through and add one :class:`~rxtts.events.Heard` at its end.

    What was heard is read off ``clock`` (the playback position of the turn, see the
    module docstring) at the cut::

        events:  -g--a--a--w--c--f--S|            (completed: waits for the playout)
        result:  -g--a--a--w--c--f--S--------H|   H when the clock has played it all

        events:  -g--a--a--I--|                   (Interrupted event)
        result:  -g--a--a--IH-|                   clock.stop(turn), H at that position

        events:  -g--a--a--S|  clock.stop(turn)   (stopped by the clock while playing out)
        result:  -g--a--a--S-----H|               H within POLL_SECONDS of the stop

        events:  -g--a--a|                        (completed early: take_until upstream)
        result:  -g--a--aH|                       clock.stop(turn), H at that position

        events:  -g--a--a--#                      (error)
        result:  -g--a--a--H#                     clock.stop(turn), H, then the error

        events:  -g--a--a--                       (disposed: take_until downstream)
        result:  -g--a--a--                       clock.stop(turn), H to on_heard only

    Both barge-in orders work: ``turn.pipe(heard(clock), ops.take_until(user_speaks))``
    (disposal; get the result with ``on_heard``; this one also catches a barge-in while
    a finished turn is still playing out) and ``turn.pipe(ops.take_until(user_speaks),
    heard(clock))`` (early completion; ``H`` is the last event). In the second order a
    barge-in after the server finished (the audio still playing out) never reaches the
    pipeline: stop the turn on the clock then (``clock.stop(key)``, or ``Player.stop()``)
    and ``H`` follows with reason ``stopped`` (``Player.close()`` stops every turn too,
    so a closed device never leaves the wait hanging).

    Args:
        clock: the playback clock the turn's audio plays on (a
            :class:`~rxtts.audio.playback.Player`, a
            :class:`~rxtts.audio.clock.SimulatedClock`, ...).
        text: the turn's text as sent (see :data:`TextSource`), so offsets index it and
            ``unheard_text`` includes chunks never synthesised.
        on_heard: called once with the result, whatever ended the turn (disposal too).
        stop_if_cut_short: stop the turn on the clock when the stream completes without
            a ``SessionClosed``/``Final``/``ContextClosed``; False to let it play out.
        scheduler: schedules the playout wait; default the subscribe scheduler, else
            a timeout scheduler.
    """

    def _heard(source: Observable[T]) -> Observable[T | Heard]:
        def subscribe(
            observer: abc.ObserverBase[T | Heard], scheduler_: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            _scheduler = scheduler or scheduler_ or TimeoutScheduler.singleton()
            ledger = HeardLedger()
            timer = SerialDisposable()
            done = False
            terminal = False

            def key() -> TurnKey:
                return ledger.key or (None, None)

            def result(reason: HeardReason) -> Heard | None:
                nonlocal done
                if done:
                    return None
                done = True
                sent = text() if callable(text) else text
                out = ledger.result(clock.position(key()), sent, reason, key())
                if on_heard is not None:
                    on_heard(out)
                return out

            def cut(reason: HeardReason) -> Heard | None:
                clock.stop(key())  # rule: a cut freezes the position; the rest is dropped
                return result(reason)

            def on_next(event: T) -> None:
                nonlocal terminal
                if not done:
                    ledger.on_event(event)
                    terminal = terminal or isinstance(event, _TERMINAL)
                observer.on_next(event)
                if isinstance(event, Interrupted) and not done:
                    out = cut("interrupted")
                    if out is not None:
                        observer.on_next(out)

            def on_error(error: Exception) -> None:
                out = cut("error")
                if out is not None:
                    observer.on_next(out)
                observer.on_error(error)

            def finish() -> None:
                played_out = clock.position(key()) >= ledger.received_seconds - PLAYED_OUT_TOLERANCE
                out = result("completed" if played_out else "stopped")
                if out is not None:
                    observer.on_next(out)
                observer.on_completed()

            def wait_playout(sched: abc.SchedulerBase, _: object = None) -> None:
                # rule: a finished turn is heard when its queued audio has played out
                left = clock.remaining(key())
                if left <= EPSILON:
                    finish()
                else:
                    timer.disposable = sched.schedule_relative(min(left, POLL_SECONDS), wait_playout)

            def on_completed() -> None:
                if done:
                    observer.on_completed()
                elif terminal:
                    wait_playout(_scheduler)
                elif stop_if_cut_short:
                    out = cut("cut_short")
                    if out is not None:
                        observer.on_next(out)
                    observer.on_completed()
                else:
                    wait_playout(_scheduler)

            def dispose() -> None:
                if not done:
                    cut("disposed")  # barge-in by disposal: nobody downstream to tell

            sub = source.subscribe(on_next, on_error, on_completed, scheduler=scheduler_)
            return CompositeDisposable(Disposable(dispose), timer, sub)

        return Observable(subscribe)

    return _heard


__all__ = [
    "REAL_SCORE",
    "SPEECH_SECONDS_PER_CHAR",
    "HeardLedger",
    "TextSource",
    "align",
    "heard",
    "heard_at",
    "word_time_base",
]
