"""Adapters from real LLM token streams to ``Observable[str]``.

Any async iterator of strings, or of OpenAI-style chat-completion stream chunks (objects
or dicts with ``choices[0].delta.content``), becomes a cold observable of text tokens
that :meth:`rxtts.StreamingSession.speak` can consume::

    stream = await openai.chat.completions.create(..., stream=True)
    session.speak(rxtts.from_llm(stream))

Chunks without text (role headers, tool calls, the final usage chunk) are skipped;
nothing else is dropped or reordered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from typing import Any

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable


def token_text(chunk: object) -> str | None:
    """The text a stream item carries: a string, or an OpenAI-style chunk's delta content."""
    if isinstance(chunk, str):
        return chunk
    choices = chunk.get("choices") if isinstance(chunk, Mapping) else getattr(chunk, "choices", None)
    if not choices:
        return None
    first = choices[0]
    delta = first.get("delta") if isinstance(first, Mapping) else getattr(first, "delta", None)
    if delta is None:
        return None
    content = delta.get("content") if isinstance(delta, Mapping) else getattr(delta, "content", None)
    if content is None:
        return None
    if not isinstance(content, str):
        raise TypeError(f"delta.content must be a string, got {type(content).__name__}")
    return content


def from_llm(
    stream: AsyncIterable[Any] | Iterable[Any],
    loop: asyncio.AbstractEventLoop | None = None,
) -> Observable[str]:
    """A token observable from an LLM stream (async or sync iterable).

    Subscribing starts iterating on ``loop`` (default: the running loop at subscribe
    time); disposing cancels the iteration, so a barge-in also stops reading the LLM::

        chunks:  --c1--c2--(role only)--c3--|
        from_llm: --"Hel"--"lo"----------" there"--|
    """
    if not isinstance(stream, AsyncIterable):
        return reactivex.from_iterable(stream).pipe(_texts())

    def subscribe(observer: abc.ObserverBase[str], scheduler: abc.SchedulerBase | None = None) -> Disposable:
        run_loop = loop or asyncio.get_running_loop()

        async def pump() -> None:
            try:
                async for chunk in stream:
                    text = token_text(chunk)
                    if text:
                        observer.on_next(text)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # forwarded, never swallowed
                observer.on_error(exc)
                return
            observer.on_completed()

        task = run_loop.create_task(pump())

        def cancel() -> None:
            run_loop.call_soon_threadsafe(task.cancel)

        return Disposable(cancel)

    return reactivex.create(subscribe)


def _texts() -> Callable[[Observable[Any]], Observable[str]]:
    from reactivex import operators as ops

    def texts(source: Observable[Any]) -> Observable[str]:
        tokens: Observable[str | None] = source.pipe(ops.map(token_text))
        return tokens.pipe(ops.filter(bool))  # type: ignore[arg-type]

    return texts


__all__ = ["from_llm", "token_text"]
