"""``strip_markdown()``: make LLM markdown speakable, one segment at a time.

Kept apart from segmentation: :func:`sentences` keeps the raw text (and uses the
markdown to find boundaries); this operator, placed after it, removes the markup
that a voice would otherwise read aloud ("asterisk asterisk bold").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from reactivex import Observable, abc

from .flush import FLUSH, TextItem

__all__ = ["strip_markdown", "strip_markdown_text"]

_FENCE: Final = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*\n?(.*?)(?:\n[ \t]*\1[ \t]*)?$", re.S)
_HEADING: Final = re.compile(r"^[ \t]*#{1,6}[ \t]+(.*?)[ \t#]*$", re.M)
_BULLET: Final = re.compile(r"^[ \t]*[-*+•][ \t]+", re.M)
_QUOTE: Final = re.compile(r"^[ \t]*>[ \t]?", re.M)
_RULE: Final = re.compile(r"^[ \t]*([-*_])(?:[ \t]*\1){2,}[ \t]*$", re.M)
_IMAGE: Final = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK: Final = re.compile(r"\[([^\]]+)\]\((?:[^()]|\([^)]*\))*\)")
_AUTOLINK: Final = re.compile(r"<((?:https?|mailto):[^>\s]+)>")
_STRONG: Final = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_STRONG_UNDER: Final = re.compile(r"(?<![\w_])__(?=\S)(.+?)(?<=\S)__(?![\w_])")
_EM_STAR: Final = re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])")
_EM_UNDER: Final = re.compile(r"(?<![\w_])_(?=[^\s_])(.+?)(?<=[^\s_])_(?![\w_])")
_STRIKE: Final = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_CODE: Final = re.compile(r"(`+)(.+?)\1", re.S)
_TABLE_SEP: Final = re.compile(r"^[\s|:\-]+$")


def _table_row(line: str) -> str:
    if _TABLE_SEP.match(line):
        return ""
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    return ", ".join(c for c in cells if c)


def strip_markdown_text(segment: str, code_blocks: bool = True) -> str:
    """Remove markdown markup from one segment; ``""`` if nothing speakable remains.

    Headings, bullets, block quotes, rules, emphasis (``**b**``, ``*i*``,
    ``__b__``, ``_i_``, ``~~s~~``), inline code backticks, links and images
    (their text is kept) and table pipes are removed. A fenced code block keeps
    its body (``code_blocks=True``) or is dropped. SSML/XML tags are kept: they
    are meant for the engine.

    Example:
        >>> strip_markdown_text("- **Bold** move: see [docs](https://x.io).")
        'Bold move: see docs.'
    """
    fence = _FENCE.match(segment)
    if fence is not None and segment.lstrip()[:3] in ("```", "~~~"):
        return fence.group(2).strip() if code_blocks else ""
    text = _RULE.sub("", segment)
    if text.lstrip().startswith("|"):
        text = "\n".join(_table_row(line) for line in text.splitlines())
    text = _HEADING.sub(r"\1", text)
    text = _QUOTE.sub("", text)
    text = _BULLET.sub("", text)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _AUTOLINK.sub(r"\1", text)
    text = _CODE.sub(lambda m: m.group(2).strip(), text)
    text = _STRONG.sub(r"\1", text)
    text = _STRONG_UNDER.sub(r"\1", text)
    text = _STRIKE.sub(r"\1", text)
    text = _EM_STAR.sub(r"\1", text)
    text = _EM_UNDER.sub(r"\1", text)
    return text.strip()


def strip_markdown(code_blocks: bool = True) -> Callable[[Observable[TextItem]], Observable[TextItem]]:
    """Removes markdown markup from each segment of a segment stream.

    Place it after :func:`sentences` (markup can span tokens, never segments).
    Segments left empty (a horizontal rule, a dropped code block) are skipped;
    FLUSH passes through.

    .. marble::
        :alt: strip_markdown

        --"# Intro"--"**Hi** there."--"---"--F--|
        [           strip_markdown()            ]
        --"Intro"----"Hi there."-------------F--|

    Args:
        code_blocks: Keep the body of fenced code blocks (else drop them).

    Returns:
        An operator function from a segment stream to a segment stream.
    """

    def _strip_markdown(source: Observable[TextItem]) -> Observable[TextItem]:
        def subscribe(
            observer: abc.ObserverBase[TextItem],
            scheduler: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            def on_next(item: TextItem) -> None:
                if item is FLUSH:
                    observer.on_next(item)
                    return
                if not isinstance(item, str):
                    observer.on_error(TypeError(f"strip_markdown() expects str or FLUSH, got {item!r}"))
                    return
                text = strip_markdown_text(item, code_blocks)
                if text:
                    observer.on_next(text)

            return source.subscribe(on_next, observer.on_error, observer.on_completed, scheduler=scheduler)

        return Observable(subscribe)

    return _strip_markdown
