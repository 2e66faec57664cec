"""The embedded model, loaded once per test session (from the user's cache after the
first conversion), and engines built on it."""

from __future__ import annotations

from typing import Any

import pytest

from perfsmith.inference import models
from perfsmith.inference.build import build_engine
from perfsmith.inference.config import EngineConfig
from perfsmith.inference.engine import Engine


def tiny_llama(*, hidden: int = 128, heads: int = 4, kv_heads: int = 2) -> Any:
    """A small random Llama (2 layers, 256 tokens, head size hidden / heads), the same
    weights on every call."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=hidden,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        vocab_size=256,
        max_position_embeddings=512,
        initializer_range=0.2,
        tie_word_embeddings=False,
    )
    return AutoModelForCausalLM.from_config(config).eval()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="session")
def engines(loaded: models.LoadedModel) -> dict[tuple[str, str], Engine]:
    """Engines by (compress, speculate), built on demand and shared."""
    return {}


@pytest.fixture
def engine_for(loaded: models.LoadedModel, engines: dict[tuple[str, str], Engine]):  # type: ignore[no-untyped-def]
    def make(compress: str = "none", speculate: str = "adaptive") -> Engine:
        key = (compress, speculate)
        if key not in engines:
            engines[key] = build_engine(
                EngineConfig(compress=compress, speculate=speculate, context=1024), loaded=loaded
            )
        return engines[key]

    return make


CODE = """def total_price(items, tax):
    result = 0
    for i in range(len(items)):
        item = items[i]
        result = result + item["price"] * item["qty"]
    result = result * (1 + tax)
    return result
"""

PROMPTS = [
    "Rewrite this function with type hints. Reply with the code only.\n\n" + CODE,
    "Fix the bug: the tax is applied twice.\n\n" + CODE + "\nprint(total_price([], 0.2) * 1.2)\n",
    "Write a haiku about compilers.",
    "List three uses of a hash map.",
]
