"""ChatModel for any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, perfsmith's own
server) through the official `openai` SDK, with rate limits, a concurrency cap, and retries
with exponential backoff and jitter."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import openai
from asyncio_throttle.throttler import Throttler

from perfsmith.errors import LLMError
from perfsmith.llm.base import ChatMessage, ChatResult, GenerationOptions, Usage

T = TypeVar("T")

_RETRYABLE = (
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APIConnectionError,  # includes APITimeoutError
)


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, _RETRYABLE):
        return True
    return isinstance(exc, openai.APIStatusError) and exc.status_code >= 500


def _describe(exc: BaseException) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {exc.message}"
    if isinstance(exc, openai.APITimeoutError):
        return "request timed out"
    if isinstance(exc, openai.APIConnectionError):
        return f"connection failed ({exc.__cause__ or exc})"
    return f"{type(exc).__name__}: {exc}"


class OpenAICompatible:
    """Chat completions against `base_url` with model `model`."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        requests_per_second: float = 10.0,
        max_concurrency: int = 8,
        max_retries: int = 4,
        timeout_s: float = 120.0,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 20.0,
        supports_grammar: bool = False,
    ) -> None:
        self.supports_grammar = supports_grammar
        # The SDK's own retries are off: ours share the rate limiter and report attempts.
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key or "not-needed", max_retries=0, timeout=timeout_s
        )
        self.base_url = base_url
        self.model = model
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        # asyncio-throttle counts requests per period; a period of 1 s with a fractional
        # rate is expressed as `n` requests per `n / rps` seconds.
        per = max(1, round(requests_per_second))
        self._throttler = Throttler(rate_limit=per, period=per / requests_per_second)
        self._slots = asyncio.Semaphore(max_concurrency)

    @property
    def name(self) -> str:
        return self.model

    async def aclose(self) -> None:
        await self._client.close()

    def _backoff(self, attempt: int) -> float:
        # Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2^attempt)].
        return random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2**attempt))

    def _request(
        self, messages: Sequence[ChatMessage], options: GenerationOptions
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [m.model_dump() for m in messages],
            "temperature": options.temperature,
        }
        if options.max_tokens is not None:
            body["max_tokens"] = options.max_tokens
        if options.stop:
            body["stop"] = options.stop
        if options.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": options.json_schema},
            }
        if options.grammar is not None:
            body["extra_body"] = {"grammar": options.grammar}
        return body

    async def _with_retries(self, call: Callable[[], Awaitable[T]], *, take_slot: bool = True) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                async with AsyncExitStack() as held:
                    if take_slot:
                        await held.enter_async_context(self._slots)
                    await held.enter_async_context(self._throttler)
                    return await call()
            except openai.APIError as exc:
                status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
                if not _is_retryable(exc):
                    raise LLMError(
                        f"LLM request to {self.base_url} (model {self.model!r}) failed: "
                        f"{_describe(exc)}; check the URL, model name and API key",
                        attempts=attempt,
                        status_code=status,
                    ) from exc
                if attempt > self.max_retries:
                    raise LLMError(
                        f"LLM request to {self.base_url} (model {self.model!r}) failed after "
                        f"{attempt} attempts: {_describe(exc)}; is the endpoint up?",
                        attempts=attempt,
                        status_code=status,
                    ) from exc
                await asyncio.sleep(self._backoff(attempt - 1))

    async def complete(
        self, messages: Sequence[ChatMessage], options: GenerationOptions | None = None
    ) -> ChatResult:
        body = self._request(messages, options or GenerationOptions())

        async def call() -> ChatResult:
            response = await self._client.chat.completions.create(**body)
            text = (response.choices[0].message.content or "") if response.choices else ""
            usage = Usage()
            if response.usage is not None:
                usage = Usage(
                    prompt_tokens=response.usage.prompt_tokens,
                    completion_tokens=response.usage.completion_tokens,
                )
            return ChatResult(text=text, model=response.model or self.model, usage=usage)

        return await self._with_retries(call)

    async def stream(
        self, messages: Sequence[ChatMessage], options: GenerationOptions | None = None
    ) -> AsyncIterator[str]:
        body = self._request(messages, options or GenerationOptions())
        body["stream"] = True
        # The concurrency slot is held for the whole stream, not just its opening.
        async with self._slots, AsyncExitStack() as stack:
            # Retries cover opening the stream; once tokens flowed, a broken stream is an
            # error (replaying it would duplicate what the caller already consumed).
            async def open_stream() -> Any:
                return await self._client.chat.completions.create(**body)

            response = await self._with_retries(open_stream, take_slot=False)
            stack.push_async_callback(response.close)
            try:
                async for chunk in response:
                    if chunk.choices and chunk.choices[0].delta.content:
                        yield chunk.choices[0].delta.content
            except openai.APIError as exc:
                raise LLMError(
                    f"LLM stream from {self.base_url} broke off: {_describe(exc)}"
                ) from exc
