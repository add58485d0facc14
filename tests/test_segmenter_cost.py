"""The segmenter's work per token does not grow with the text before it.

A 98k run of "." followed by one-character frames used to cost ~8 ms of event loop
per frame (every push rescanned the run), stalling every other client. These
tests push the same 1,500 one-character tokens after a short run (L) and after a
long run (8 L) of each pathological kind and compare the CPU time of the tokens
(``time.thread_time``: this thread's CPU, not wall time, so other processes on a
loaded machine barely matter; the minimum of interleaved repeats removes the
rest). Linear work gives a ratio near 1; rescanning the run gives a ratio near 8.
The bound (3) is generous either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from rxtts.operators import ChunkScheduler, SentenceSegmenter

SHORT = 12_500
LONG = 8 * SHORT  # 100k characters
TOKENS = 1_500
MAX_RATIO = 3.0

# name: (prefix, run character, token pushed afterwards)
RUNS: dict[str, tuple[str, str, str]] = {
    "dots": ("Wait ", ".", "."),
    "bangs": ("Wow", "!", "!"),
    "questions": ("What", "?", "?"),
    "digits": ("The number is ", "7", "7"),
    "hashes": ("Intro\n", "#", "#"),
    "spaces": ("Hello.", " ", " "),
    "newlines": ("Hello", "\n", "\n"),
    "url": ("See https://example.com/", "a", "a"),
    "fence body": ("```python\n", "x", "x"),
    "fence marker": ("Code:\n", "`", "`"),
    "fence closer": ("```\ncode\n", "`", "`"),
    "inline code": ("Run `x", " ", " "),
    "angles": ("Hi ", "<", "<"),
    "open tag": ("Hi <break time=", "1", "1"),
    "closers": ("He said.", ")", ")"),
    "long word": ("A ", "w", "w"),
}


def _segmenter(text: str) -> Callable[[str], object]:
    seg = SentenceSegmenter()
    seg.push(text)
    return seg.push


def _chunker(text: str) -> Callable[[str], object]:
    # The server's stage: segmentation, schedule and phrase-aware first chunk in one.
    chunker = ChunkScheduler((50, 100, 150, 250), auto_mode=True, segment=True)
    chunker.push(text)
    return chunker.push


def _token_cost(make: Callable[[str], Callable[[str], object]], text: str, token: str) -> float:
    push = make(text)
    t0 = time.thread_time()
    for _ in range(TOKENS):
        push(token)
    return time.thread_time() - t0


@pytest.mark.parametrize("stage", [_segmenter, _chunker], ids=["SentenceSegmenter", "ChunkScheduler"])
@pytest.mark.parametrize("kind", list(RUNS))
def test_cost_per_token_does_not_grow_with_the_run(
    stage: Callable[[str], Callable[[str], object]], kind: str
) -> None:
    prefix, run, token = RUNS[kind]
    short, long_ = [], []
    for _ in range(3):  # interleaved, so a burst of load hits both sides
        short.append(_token_cost(stage, prefix + run * SHORT, token))
        long_.append(_token_cost(stage, prefix + run * LONG, token))
    ratio = min(long_) / max(min(short), 1e-6)
    assert ratio < MAX_RATIO, (
        f"{kind}: {TOKENS} tokens cost {min(short) * 1e3:.2f} ms after {SHORT} chars, "
        f"{min(long_) * 1e3:.2f} ms after {LONG} (x{ratio:.1f})"
    )


def test_the_segmenter_still_decides_after_a_long_run() -> None:
    # The memo that makes waiting cheap must not change the decisions.
    seg = SentenceSegmenter()
    out = seg.push("Wait" + "." * LONG)
    for _ in range(10):
        out += seg.push(".")
    out += seg.push(" Then it ended.")
    assert out == ["Wait" + "." * (LONG + 10)]
    assert seg.flush() == ["Then it ended."]
    fence = SentenceSegmenter()
    body = "```\n" + "x" * LONG + "\n" + "`" * 2
    got = fence.push(body) + fence.push("`") + fence.push("\nAfter it.")
    assert got == [body + "`"]
    assert fence.flush() == ["After it."]
