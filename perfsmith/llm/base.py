"""The ChatModel interface every LLM backend implements, and its message types."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class GenerationOptions(BaseModel):
    """Per-call options. `purpose` and `round` are metadata: they name the call in traces
    (and let a scripted model answer by purpose); backends send only the sampling fields."""

    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    stop: list[str] | None = None
    # Constrained output (honoured by perfsmith's engine and servers that accept them):
    # a JSON schema the reply must match, or an EBNF grammar (root rule ``root``).
    json_schema: dict[str, Any] | None = None
    grammar: str | None = None
    purpose: str = "chat"
    round: int | None = None


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ChatResult(BaseModel):
    text: str
    model: str
    usage: Usage = Field(default_factory=Usage)


@runtime_checkable
class ChatModel(Protocol):
    """An async chat model: whole responses and token streams."""

    @property
    def name(self) -> str: ...

    async def complete(
        self, messages: Sequence[ChatMessage], options: GenerationOptions | None = None
    ) -> ChatResult: ...

    def stream(
        self, messages: Sequence[ChatMessage], options: GenerationOptions | None = None
    ) -> AsyncIterator[str]: ...


def user(content: str) -> ChatMessage:
    return ChatMessage(role="user", content=content)


def system(content: str) -> ChatMessage:
    return ChatMessage(role="system", content=content)
