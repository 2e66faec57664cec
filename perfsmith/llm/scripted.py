"""A ChatModel with fixed replies and a configurable latency, for tests and benchmarks.

Latency is modelled like a served LLM: a fixed delay before the first token plus a fixed
delay per output token. Token times are scheduled against a deadline, so sleeping many
small intervals does not accumulate the event loop's wake-up overhead.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

from perfsmith.errors import LLMError
from perfsmith.llm.base import ChatMessage, ChatResult, GenerationOptions, Usage

Reply = str | Callable[[Sequence[ChatMessage], GenerationOptions], str]
_TOKEN = re.compile(r"\s*\S+|\s+")


def split_tokens(text: str) -> list[str]:
    """Whitespace-led words: a crude but deterministic stand-in for a tokenizer."""
    return _TOKEN.findall(text)


class ScriptedChatModel:
    """Answers from a script.

    `replies` is a list (answered in order), a mapping from an option's `purpose` to a list
    (indexed by `options.round` when the call names one, else in order), or a callable.
    """

    def __init__(
        self,
        replies: Sequence[Reply] | Mapping[str, Sequence[Reply]] | Reply,
        *,
        latency_s: float = 0.0,
        per_token_s: float = 0.0,
        name: str = "scripted",
    ) -> None:
        self._replies = replies
        self.latency_s = latency_s
        self.per_token_s = per_token_s
        self._name = name
        self._cursor: dict[str, int] = defaultdict(int)
        self.calls: list[tuple[list[ChatMessage], GenerationOptions]] = []

    @property
    def name(self) -> str:
        return self._name

    def _pick(self, messages: Sequence[ChatMessage], options: GenerationOptions) -> str:
        self.calls.append((list(messages), options))
        replies = self._replies
        if isinstance(replies, str) or callable(replies):
            chosen: Reply = replies
        elif isinstance(replies, Mapping):
            script = replies.get(options.purpose)
            if script is None:
                raise LLMError(f"scripted model has no replies for purpose {options.purpose!r}")
            if options.round is not None:
                index = options.round - 1
            else:
                index = self._cursor[options.purpose]
                self._cursor[options.purpose] += 1
            if not 0 <= index < len(script):
                raise LLMError(
                    f"scripted model ran out of {options.purpose!r} replies "
                    f"(asked for #{index + 1})"
                )
            chosen = script[index]
        else:
            index = self._cursor[""]
            self._cursor[""] += 1
            if index >= len(replies):
                raise LLMError(f"scripted model ran out of replies (asked for #{index + 1})")
            chosen = replies[index]
        return chosen if isinstance(chosen, str) else chosen(messages, options)

    async def complete(
        self, messages: Sequence[ChatMessage], options: GenerationOptions | None = None
    ) -> ChatResult:
        opts = options or GenerationOptions()
        text = self._pick(messages, opts)
        tokens = split_tokens(text)
        delay = self.latency_s + self.per_token_s * len(tokens)
        if delay > 0:
            await asyncio.sleep(delay)
        prompt_tokens = sum(len(split_tokens(m.content)) for m in messages)
        usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=len(tokens))
        return ChatResult(text=text, model=self._name, usage=usage)

    async def stream(
        self, messages: Sequence[ChatMessage], options: GenerationOptions | None = None
    ) -> AsyncIterator[str]:
        opts = options or GenerationOptions()
        text = self._pick(messages, opts)
        start = time.perf_counter()
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        for i, token in enumerate(split_tokens(text), start=1):
            if self.per_token_s > 0:
                ahead = start + self.latency_s + i * self.per_token_s - time.perf_counter()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            elif "\n" in token:
                # Let consumers (the task fetching unit) run between lines, as a network
                # stream would.
                await asyncio.sleep(0)
            yield token
