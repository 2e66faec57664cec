"""ChatModel over perfsmith's own engine, in this process (``PERFSMITH_LLM=local``).

The engine loads on first use (seconds: the weights come from the user's cache after the
first load) and is shared by every LocalChatModel built with the same configuration. To
reach the engine through HTTP instead, run ``perfsmith serve-model`` and point an
OpenAI-compatible ChatModel at it.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from perfsmith.errors import LLMError
from perfsmith.llm.base import ChatMessage, ChatResult, GenerationOptions, Usage

if TYPE_CHECKING:
    from perfsmith.inference.constrain import ConstraintSpec
    from perfsmith.inference.engine import Scheduler
    from perfsmith.inference.sampling import SamplingParams

_engines: dict[object, object] = {}
_engines_lock = threading.Lock()


class LocalChatModel:
    supports_grammar = True  # GenerationOptions.grammar / json_schema are honoured

    def __init__(
        self,
        *,
        model: str = "embedded",
        compress: str = "none",
        speculate: str = "adaptive",
        context: int = 2048,
        default_max_tokens: int = 512,
    ) -> None:
        from perfsmith.inference import models
        from perfsmith.inference.config import EngineConfig

        models.resolve(model)  # an unknown model is a configuration error, now
        self.config = EngineConfig(
            model=model, compress=compress, speculate=speculate, context=context
        )
        self.default_max_tokens = default_max_tokens
        self._scheduler: object | None = None

    @property
    def name(self) -> str:
        return f"local:{self.config.model}"

    def _get_scheduler(self) -> object:
        from perfsmith.inference.build import build_engine
        from perfsmith.inference.engine import Scheduler

        if self._scheduler is None:
            with _engines_lock:
                scheduler = _engines.get(self.config)
                if scheduler is None:
                    scheduler = Scheduler(build_engine(self.config))
                    _engines[self.config] = scheduler
            self._scheduler = scheduler
        return self._scheduler

    async def _scheduler_ready(self) -> object:
        if self._scheduler is None:
            await asyncio.to_thread(self._get_scheduler)
        return self._scheduler

    async def _request(
        self, messages: Sequence[ChatMessage], options: GenerationOptions | None
    ) -> tuple[Scheduler, list[int], SamplingParams, ConstraintSpec | None]:
        """The engine's scheduler (started on first use) and the request for it: the
        chat encoded, the sampling parameters, the output's grammar or schema."""
        from perfsmith.inference.constrain import ConstraintSpec
        from perfsmith.inference.engine import Scheduler
        from perfsmith.inference.sampling import SamplingParams

        options = options or GenerationOptions()
        constraint = None
        if options.grammar is not None:
            constraint = ConstraintSpec("grammar", options.grammar)
        elif options.json_schema is not None:
            constraint = ConstraintSpec("json_schema", json.dumps(options.json_schema))
        params = SamplingParams(
            max_tokens=options.max_tokens or self.default_max_tokens,
            temperature=options.temperature,
            stop=tuple(options.stop or ()),
        )
        scheduler = await self._scheduler_ready()
        assert isinstance(scheduler, Scheduler)
        try:
            prompt = scheduler.engine.encode_chat([m.model_dump() for m in messages])
        except Exception as exc:
            raise LLMError(f"local model {self.config.model} failed: {exc}", refused=True) from exc
        return scheduler, prompt, params, constraint

    async def complete(
        self, messages: Sequence[ChatMessage], options: GenerationOptions | None = None
    ) -> ChatResult:
        scheduler, prompt, params, constraint = await self._request(messages, options)
        try:
            gen = await scheduler.complete(prompt, params, constraint=constraint)
        except Exception as exc:
            raise LLMError(f"local model {self.config.model} failed: {exc}", refused=True) from exc
        return ChatResult(
            text=gen.text,
            model=self.name,
            usage=Usage(prompt_tokens=gen.prompt_tokens, completion_tokens=len(gen.tokens)),
        )

    async def stream(
        self, messages: Sequence[ChatMessage], options: GenerationOptions | None = None
    ) -> AsyncIterator[str]:
        scheduler, prompt, params, constraint = await self._request(messages, options)
        try:
            async for kind, value in scheduler.stream(prompt, params, constraint=constraint):
                if kind == "text":
                    yield value
        except LLMError:
            raise
        except Exception as exc:
            raise LLMError(f"local model {self.config.model} failed: {exc}", refused=True) from exc
