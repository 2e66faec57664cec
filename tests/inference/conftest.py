"""The embedded model, loaded once per test session (from the user's cache after the
first conversion), and engines built on it."""

from __future__ import annotations

import pytest

from perfsmith.inference import models
from perfsmith.inference.build import build_engine
from perfsmith.inference.config import EngineConfig
from perfsmith.inference.engine import Engine


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
