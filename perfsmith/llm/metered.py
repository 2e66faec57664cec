"""A ChatModel that counts the tokens it spends and refuses calls past a cap (a batch
job's LLM budget)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from perfsmith.errors import PerfsmithError
from perfsmith.llm.base import ChatMessage, ChatModel, ChatResult, GenerationOptions


class TokenBudgetError(PerfsmithError):
    """The job's LLM token cap is spent: no further model calls."""


def _prompt_tokens(messages: Sequence[ChatMessage]) -> int:
    # streams report no usage: about four characters a token, as tokenizers of English
    # and code average
    return sum(len(m.content) for m in messages) // 4 + 1


class MeteredModel:
    """``inner`` with its spending counted in ``used`` (prompt and completion tokens, as
    the backend reports them; streamed replies count a token per chunk). Once ``used``
    reaches ``cap`` every call raises `TokenBudgetError`; the call that crosses it
    finishes, so the cap is exceeded by at most one reply."""

    def __init__(self, inner: ChatModel, cap: int | None = None) -> None:
        self.inner = inner
        self.cap = cap
        self.used = 0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def supports_grammar(self) -> bool:
        """Whether the model honours grammars (the planner then constrains its plans)."""
        return bool(getattr(self.inner, "supports_grammar", False))

    def _check(self) -> None:
        if self.cap is not None and self.used >= self.cap:
            raise TokenBudgetError(
                f"the job's LLM token cap is spent ({self.used:,} of {self.cap:,} tokens)"
            )

    async def complete(
        self, messages: Sequence[ChatMessage], options: GenerationOptions | None = None
    ) -> ChatResult:
        self._check()
        result = await self.inner.complete(messages, options)
        usage = result.usage
        spent = usage.prompt_tokens + usage.completion_tokens
        if spent == 0:  # a backend that reports none
            spent = _prompt_tokens(messages) + len(result.text) // 4 + 1
        self.used += spent
        return result

    async def stream(
        self, messages: Sequence[ChatMessage], options: GenerationOptions | None = None
    ) -> AsyncIterator[str]:
        self._check()
        self.used += _prompt_tokens(messages)
        async for chunk in self.inner.stream(messages, options):
            self.used += 1
            yield chunk
