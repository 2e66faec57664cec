"""LLM clients: the ChatModel interface, the OpenAI-compatible client, a scripted model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from perfsmith.llm.base import ChatMessage, ChatModel, ChatResult, GenerationOptions, Usage
    from perfsmith.llm.factory import model_from_settings, model_from_spec
    from perfsmith.llm.openai_compatible import OpenAICompatible
    from perfsmith.llm.scripted import ScriptedChatModel

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
    # Loaded on first use: `perfsmith --help` and the light commands import
    # `perfsmith.llm.specs` alone; the openai SDK takes a noticeable time to import.
    if name in ("ChatMessage", "ChatModel", "ChatResult", "GenerationOptions", "Usage"):
        from perfsmith.llm import base

        return getattr(base, name)
    if name == "ScriptedChatModel":
        from perfsmith.llm import scripted

        return scripted.ScriptedChatModel
    if name == "OpenAICompatible":
        from perfsmith.llm import openai_compatible

        return openai_compatible.OpenAICompatible
    if name in ("model_from_spec", "model_from_settings"):
        from perfsmith.llm import factory

        return getattr(factory, name)
    raise AttributeError(f"module 'perfsmith.llm' has no attribute {name!r}")
