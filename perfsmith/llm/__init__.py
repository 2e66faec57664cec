"""LLM clients: the ChatModel interface, the OpenAI-compatible client, a scripted model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from perfsmith.llm.base import ChatMessage, ChatModel, ChatResult, GenerationOptions, Usage
from perfsmith.llm.scripted import ScriptedChatModel

if TYPE_CHECKING:
    from perfsmith.llm.factory import model_from_settings, model_from_spec
    from perfsmith.llm.openai_compatible import OpenAICompatible

__all__ = [
    "ChatMessage",
    "ChatModel",
    "ChatResult",
    "GenerationOptions",
    "OpenAICompatible",
    "ScriptedChatModel",
    "Usage",
    "model_from_settings",
    "model_from_spec",
]


def __getattr__(name: str) -> Any:
    # The openai SDK takes a noticeable time to import: only when a client is wanted.
    if name == "OpenAICompatible":
        from perfsmith.llm import openai_compatible

        return openai_compatible.OpenAICompatible
    if name in ("model_from_spec", "model_from_settings"):
        from perfsmith.llm import factory

        return getattr(factory, name)
    raise AttributeError(f"module 'perfsmith.llm' has no attribute {name!r}")
