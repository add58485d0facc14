"""Simulated LLM token streams for demos, notebooks, the CLI and benchmarks.

:func:`split_tokens` cuts text the way a byte-pair tokenizer roughly does (words with
their leading space, long words in pieces, digits in groups of three, punctuation runs),
deterministically and losslessly: ``"".join(split_tokens(text)) == text``.
:func:`llm_tokens` emits those tokens at a steady rate, like a streaming chat completion::

    tokens = llm_tokens("Hello! This is streamed.", tokens_per_second=30)
    session.speak(tokens)
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import timedelta

from reactivex import Observable, abc
from reactivex.disposable import MultipleAssignmentDisposable
from reactivex.scheduler import TimeoutScheduler

DEFAULT_TOKENS_PER_SECOND = 30.0
"""Pace of the simulated LLM: a typical hosted chat model streams 30-100 tokens/s."""

MAX_WHOLE_WORD = 5
"""Words of at most this many letters stay one token."""

PIECE = 4
"""Longer words are cut into pieces of this many letters (the last may be shorter)."""

# GPT-2 style pre-tokenisation: an optional leading space glued to a letter run, a digit
# group or a punctuation run; whitespace before a word leaves its last space to the word.
_PATTERN = re.compile(r" ?[^\W\d_]+| ?\d{1,3}| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+")


def _pieces(word: str) -> list[str]:
    """Cut a (space-prefixed) letter run into word pieces."""
    space = word[:1] if word[:1] == " " else ""
    letters = word[len(space) :]
    if len(letters) <= MAX_WHOLE_WORD:
        return [word]
    cut = [letters[i : i + PIECE] for i in range(0, len(letters), PIECE)]
    cut[0] = space + cut[0]
    return cut


def split_tokens(text: str) -> list[str]:
    """Split ``text`` into LLM-like tokens; joining them gives ``text`` back exactly.

    >>> split_tokens("Hello! Streaming costs 1234 ms.")
    ['Hello', '!', ' Stre', 'amin', 'g', ' costs', ' 123', '4', ' ms', '.']
    """
    tokens: list[str] = []
    for match in _PATTERN.finditer(text):
        piece = match.group()
        if piece.strip().isalpha():
            tokens.extend(_pieces(piece))
        else:
            tokens.append(piece)
    return tokens


def llm_tokens(
    text: str | Iterable[str],
    tokens_per_second: float = DEFAULT_TOKENS_PER_SECOND,
    *,
    scheduler: abc.SchedulerBase | None = None,
) -> Observable[str]:
    """A cold observable of ``text``'s tokens at ``tokens_per_second``, then completion.

    ``text`` is split with :func:`split_tokens` (or is an iterable of ready tokens). The
    first token is emitted at subscription, token ``i`` at ``i / tokens_per_second``
    seconds (absolute due times: no drift), completion right after the last one;
    ``math.inf`` emits everything at once. Each subscription is a new stream::

        tokens_per_second=10, text "Hi there."
        result:  Hi--" there"--.|        (one token every 100 ms)

    Args:
        text: the whole answer, or its tokens.
        tokens_per_second: pace of the simulated LLM (> 0).
        scheduler: timer scheduler; default the subscribe scheduler, else a
            :class:`~reactivex.scheduler.TimeoutScheduler` (events on timer threads).

    Raises:
        ValueError: ``tokens_per_second`` is not positive.
    """
    if not tokens_per_second > 0:
        raise ValueError(f"tokens_per_second must be > 0, got {tokens_per_second}")
    tokens = split_tokens(text) if isinstance(text, str) else [t for t in text if t]
    period = 0.0 if math.isinf(tokens_per_second) else 1.0 / tokens_per_second

    def subscribe(
        observer: abc.ObserverBase[str], scheduler_: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        _scheduler = scheduler or scheduler_ or TimeoutScheduler.singleton()
        start = _scheduler.now
        index = 0
        pending = MultipleAssignmentDisposable()

        def emit(sched: abc.SchedulerBase, state: object = None) -> None:
            nonlocal index
            while index < len(tokens):
                observer.on_next(tokens[index])
                index += 1
                if period and index < len(tokens):
                    due = start + timedelta(seconds=index * period)
                    pending.disposable = sched.schedule_absolute(due, emit)
                    return
            observer.on_completed()

        pending.disposable = _scheduler.schedule(emit)
        return pending

    return Observable(subscribe)


__all__ = ["DEFAULT_TOKENS_PER_SECOND", "MAX_WHOLE_WORD", "PIECE", "llm_tokens", "split_tokens"]
