from __future__ import annotations

import asyncio
import socket
import time

import pytest

from perfsmith.errors import LLMError
from perfsmith.llm.base import ChatMessage, GenerationOptions
from perfsmith.llm.openai_compatible import OpenAICompatible
from tests.llm.fake_openai import Script, fake_openai

MSGS = [ChatMessage(role="user", content="hi")]


def client(url: str, **kw: float) -> OpenAICompatible:
    defaults = {"backoff_base_s": 0.01, "backoff_max_s": 0.05}
    return OpenAICompatible(base_url=url, model="m", **{**defaults, **kw})  # type: ignore[arg-type]


async def test_complete_and_stream_through_the_openai_sdk() -> None:
    script = Script(reply="one two three")
    with fake_openai(script) as url:
        llm = client(url)
        result = await llm.complete(MSGS, GenerationOptions(max_tokens=9, stop=["x"]))
        chunks = [c async for c in llm.stream(MSGS)]
        await llm.aclose()
    assert result.text == "one two three"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (7, 4)
    assert "".join(chunks).split() == ["one", "two", "three"] and len(chunks) == 3
    assert script.requests[0]["max_tokens"] == 9 and script.requests[0]["stop"] == ["x"]
    assert script.requests[1]["stream"] is True


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_transient_errors_are_retried(status: int) -> None:
    script = Script(statuses=[status, status])
    with fake_openai(script) as url:
        result = await client(url, max_retries=3).complete(MSGS)
    assert result.text == script.reply
    assert len(script.requests) == 3


async def test_stream_opening_is_retried() -> None:
    script = Script(statuses=[429], reply="a b")
    with fake_openai(script) as url:
        chunks = [c async for c in client(url).stream(MSGS)]
    assert "".join(chunks).split() == ["a", "b"] and len(script.requests) == 2


async def test_retries_run_out_with_a_typed_error() -> None:
    script = Script(statuses=[500] * 10)
    with (
        fake_openai(script) as url,
        pytest.raises(LLMError, match="after 3 attempts: HTTP 500") as info,
    ):
        await client(url, max_retries=2).complete(MSGS)
    assert info.value.attempts == 3 and info.value.status_code == 500
    assert len(script.requests) == 3


@pytest.mark.parametrize("status", [400, 401, 404])
async def test_client_errors_are_not_retried(status: int) -> None:
    script = Script(statuses=[status] * 5)
    with fake_openai(script) as url, pytest.raises(LLMError, match=f"HTTP {status}") as info:
        await client(url).complete(MSGS)
    assert info.value.attempts == 1 and len(script.requests) == 1


async def test_unreachable_endpoint_gives_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(LLMError, match=r"connection failed.*is the endpoint up"):
            await client(f"http://127.0.0.1:{port}/v1", max_retries=1).complete(MSGS)


async def test_concurrency_cap_holds_across_requests() -> None:
    script = Script(delay_s=0.15)
    with fake_openai(script) as url:
        llm = client(url, max_concurrency=2, requests_per_second=1000)
        await asyncio.gather(*(llm.complete(MSGS) for _ in range(6)))
    assert script.peak_in_flight == 2


async def test_request_rate_is_limited() -> None:
    script = Script()
    with fake_openai(script) as url:
        llm = client(url, requests_per_second=4, max_concurrency=8)
        t0 = time.perf_counter()
        await asyncio.gather(*(llm.complete(MSGS) for _ in range(6)))
        elapsed = time.perf_counter() - t0
    # 4 requests per second: the 5th and 6th wait for the next one-second window.
    assert elapsed >= 0.9
