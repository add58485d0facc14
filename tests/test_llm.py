"""The LLM adapter turns recorded OpenAI-style stream chunks into text tokens."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from reactivex import operators as ops

from rxtts.integrations.llm import from_llm, token_text

RECORDED = Path(__file__).parent / "data" / "openai_stream.json"


def recorded_chunks() -> list[dict[str, Any]]:
    chunks: list[dict[str, Any]] = json.loads(RECORDED.read_text())
    return chunks


def as_objects(chunk: dict[str, Any]) -> Any:
    """The same chunk as attribute objects, like the openai client's pydantic models."""
    return json.loads(json.dumps(chunk), object_hook=lambda d: SimpleNamespace(**d))


async def agen(items: list[Any], delay: float = 0.0) -> Any:
    for item in items:
        if delay:
            await asyncio.sleep(delay)
        yield item


def expected_text() -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in recorded_chunks() if c["choices"])


def collect(obs: Any) -> tuple[list[str], asyncio.Future[None]]:
    out: list[str] = []
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    obs.subscribe(out.append, done.set_exception, lambda: done.set_result(None))
    return out, done


def test_token_text_shapes() -> None:
    assert token_text("hi") == "hi"
    assert token_text({"choices": [{"delta": {"content": "x"}}]}) == "x"
    assert token_text({"choices": [{"delta": {"role": "assistant"}}]}) is None
    assert token_text({"choices": []}) is None
    assert token_text(as_objects({"choices": [{"delta": {"content": "y"}}]})) == "y"
    with pytest.raises(TypeError):
        token_text({"choices": [{"delta": {"content": 3}}]})


@pytest.mark.parametrize("shape", ["dicts", "objects"])
def test_recorded_openai_stream_keeps_every_token_in_order(shape: str) -> None:
    chunks = recorded_chunks()
    items = chunks if shape == "dicts" else [as_objects(c) for c in chunks]

    async def main() -> list[str]:
        out, done = collect(from_llm(agen(items)))
        await done
        return out

    tokens = asyncio.run(main())
    assert "".join(tokens) == expected_text()
    assert all(tokens), "empty tokens are skipped"
    assert len(tokens) == sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content"))


def test_sync_iterables_work_too() -> None:
    out: list[str] = []
    from_llm(["a", "", "b"]).subscribe(out.append)
    assert out == ["a", "b"]


def test_dispose_stops_reading_the_llm() -> None:
    read: list[int] = []

    async def slow() -> Any:
        for i in range(100):
            read.append(i)
            await asyncio.sleep(0.01)
            yield f"t{i} "

    async def main() -> list[str]:
        out: list[str] = []
        sub = from_llm(slow()).subscribe(out.append)
        await asyncio.sleep(0.055)
        sub.dispose()
        n = len(read)
        await asyncio.sleep(0.05)
        assert len(read) <= n + 1
        return out

    out = asyncio.run(main())
    assert 2 <= len(out) < 20


def test_errors_are_forwarded() -> None:
    async def broken() -> Any:
        yield {"choices": [{"delta": {"content": "Hi"}}]}
        raise RuntimeError("llm went away")

    async def main() -> tuple[list[str], BaseException | None]:
        out, done = collect(from_llm(broken()))
        try:
            await done
        except RuntimeError as exc:
            return out, exc
        return out, None

    out, err = asyncio.run(main())
    assert out == ["Hi"]
    assert isinstance(err, RuntimeError)


def test_take_until_like_truncation_keeps_prefix() -> None:
    out: list[str] = []
    from_llm(["a", "b", "c", "d"]).pipe(ops.take(2)).subscribe(out.append)
    assert out == ["a", "b"]
