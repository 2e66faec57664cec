from __future__ import annotations

import time

import pytest

from perfsmith.errors import LLMError
from perfsmith.llm.base import ChatMessage, GenerationOptions
from perfsmith.llm.scripted import ScriptedChatModel, split_tokens

MSGS = [ChatMessage(role="user", content="question")]


async def test_replies_by_purpose_and_round() -> None:
    llm = ScriptedChatModel({"planner": ["p1", "p2"], "joiner": ["j1"]})
    assert (await llm.complete(MSGS, GenerationOptions(purpose="planner", round=2))).text == "p2"
    assert (await llm.complete(MSGS, GenerationOptions(purpose="joiner"))).text == "j1"
    with pytest.raises(LLMError, match="ran out of 'joiner' replies"):
        await llm.complete(MSGS, GenerationOptions(purpose="joiner"))
    with pytest.raises(LLMError, match="no replies for purpose 'other'"):
        await llm.complete(MSGS, GenerationOptions(purpose="other"))


async def test_stream_latency_follows_first_token_and_per_token_cost() -> None:
    text = "a b c d e f g h i j"
    llm = ScriptedChatModel([text], latency_s=0.1, per_token_s=0.02)
    t0 = time.perf_counter()
    chunks = [c async for c in llm.stream(MSGS)]
    elapsed = time.perf_counter() - t0
    assert "".join(chunks) == text and len(chunks) == len(split_tokens(text)) == 10
    assert elapsed >= 0.1 + 10 * 0.02 - 0.01


async def test_callable_replies_see_the_messages() -> None:
    llm = ScriptedChatModel(lambda msgs, opts: f"{opts.purpose}:{msgs[-1].content}")
    assert (await llm.complete(MSGS)).text == "chat:question"
