"""What ``speak()`` accepts as tokens, normalised to an observable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Iterable
from typing import Any, TypeAlias

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable

Tokens: TypeAlias = "Observable[Any] | AsyncIterable[str] | Iterable[str] | str"
"""What ``speak`` accepts: an observable of ``str`` (``FLUSH`` items are skipped), an
async iterator (e.g. an LLM stream; consumed by the first subscription only), an
iterable of tokens, or one string."""


def _from_async_iterable(source: AsyncIterable[str], loop: asyncio.AbstractEventLoop) -> Observable[str]:
    """An async iterator as a cold observable driven by a task on ``loop``."""

    def subscribe(
        observer: abc.ObserverBase[str], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        async def pump() -> None:
            try:
                async for item in source:
                    observer.on_next(item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                observer.on_error(exc)
            else:
                observer.on_completed()

        task = asyncio.run_coroutine_threadsafe(pump(), loop)

        def cancel() -> None:
            task.cancel()

        return Disposable(cancel)

    return Observable(subscribe)


def as_token_observable(tokens: Tokens, loop: asyncio.AbstractEventLoop) -> Observable[Any]:
    """Normalise what ``speak`` accepts to an observable of tokens."""
    if isinstance(tokens, Observable):
        return tokens
    if isinstance(tokens, str):
        return reactivex.just(tokens)
    if isinstance(tokens, AsyncIterable):
        return _from_async_iterable(tokens, loop)
    if isinstance(tokens, Iterable):
        return reactivex.from_iterable(tokens)
    raise TypeError(
        f"speak() takes an Observable, iterable or async iterable of str, not {type(tokens).__name__}"
    )


__all__ = ["Tokens", "as_token_observable"]
