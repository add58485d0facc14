"""``normalize()``: rewrite each segment the way a voice should say it."""

from __future__ import annotations

from collections.abc import Callable

from reactivex import Observable, abc

from ._normalize import NormalizedText, Span, normalize_text
from .flush import FLUSH, TextItem

__all__ = ["NormalizedText", "Span", "normalize", "normalize_text"]


def normalize(language: str = "en") -> Callable[[Observable[TextItem]], Observable[TextItem]]:
    """Rewrites numbers, currency, dates, units, abbreviations and addresses for speech.

    Place it after :func:`sentences` / :func:`chunk_schedule`: it works on complete
    segments (a number split across two tokens would be read as two numbers).
    Each segment is replaced by :attr:`NormalizedText.text` of
    :func:`normalize_text`; FLUSH passes through unchanged; no segment is dropped
    or added. Languages other than English pass through unchanged. Cost: a few
    tens of microseconds per chunk (``python -m rxtts.bench.normalize``).

    .. marble::
        :alt: normalize

        --"Dr. Smith paid $3.50."---------------------------F--|
        [                       normalize()                     ]
        --"Doctor Smith paid three dollars and fifty cents."-F--|

    Args:
        language: Language of the text (``"en"``, ``"en-US"``...); others are identity.

    Returns:
        An operator function from a segment stream to a segment stream.
    """

    def _normalize(source: Observable[TextItem]) -> Observable[TextItem]:
        def subscribe(
            observer: abc.ObserverBase[TextItem],
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            def on_next(item: TextItem) -> None:
                if item is FLUSH:
                    observer.on_next(item)
                    return
                if not isinstance(item, str):
                    observer.on_error(TypeError(f"normalize() expects str or FLUSH, got {item!r}"))
                    return
                try:
                    spoken = normalize_text(item, language).text
                except Exception as exc:  # forwarded to the observer, never raised into the source
                    observer.on_error(exc)
                    return
                observer.on_next(spoken)

            return source.subscribe(on_next, observer.on_error, observer.on_completed, scheduler=scheduler)

        return Observable(subscribe)

    return _normalize
