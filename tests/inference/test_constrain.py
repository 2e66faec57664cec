"""Constrained output always parses: JSON schemas (greedy and sampled) and grammars."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest

from perfsmith.inference.constrain import ConstraintError, ConstraintSpec
from perfsmith.inference.engine import Engine
from perfsmith.inference.sampling import SamplingParams
from perfsmith.planner.grammar import plan_grammar
from perfsmith.planner.prompts import planner_messages
from perfsmith.tools.demo import TOOLS
from perfsmith.tools.registry import ToolRegistry

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "speedup": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}, "maxItems": 3},
    },
    "required": ["name", "speedup", "tags"],
    "additionalProperties": False,
}
PLAN_GRAMMAR = r"""
root ::= line line? line? "join()"
line ::= [1-9] ". " tool "(" arg ")\n"
tool ::= "profile" | "propose" | "verify"
arg ::= "$" [1-9] | "\"" [a-z_]{1,12} "\""
"""


@pytest.mark.slow(seconds=15)
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_json_schema_output_always_parses_and_validates(
    engine_for: Callable[..., Engine], temperature: float
) -> None:
    engine = engine_for("none", "adaptive")
    for i, ask in enumerate(["Describe a fast sort.", "Name a GPU kernel.", "hello"]):
        prompt = engine.encode_chat([{"role": "user", "content": ask}])
        gen = engine.generate(
            prompt,
            SamplingParams(max_tokens=160, temperature=temperature, seed=i),
            constraint=ConstraintSpec("json_schema", json.dumps(SCHEMA)),
        )
        assert gen.finish_reason == "stop", gen.text
        value = json.loads(gen.text)
        assert set(value) == {"name", "speedup", "tags"}
        assert isinstance(value["speedup"], int | float)
        assert all(isinstance(t, str) for t in value["tags"])


def test_grammar_output_matches_the_grammar(engine_for: Callable[..., Engine]) -> None:
    engine = engine_for("none", "adaptive")
    prompt = engine.encode_chat([{"role": "user", "content": "Plan: profile, then propose."}])
    for seed in range(3):
        gen = engine.generate(
            prompt,
            SamplingParams(max_tokens=120, temperature=0.8, seed=seed),
            constraint=ConstraintSpec("grammar", PLAN_GRAMMAR),
        )
        pattern = r'([1-9]\. (profile|propose|verify)\((\$[1-9]|"[a-z_]{1,12}")\)\n){1,3}join\(\)'
        assert re.fullmatch(pattern, gen.text), gen.text


def test_a_bad_grammar_or_schema_is_a_clear_error(engine_for: Callable[..., Engine]) -> None:
    engine = engine_for("none", "adaptive")
    with pytest.raises(ConstraintError, match="grammar"):
        engine.constraint(ConstraintSpec("grammar", "root ::= undefined_rule"))
    with pytest.raises(ConstraintError, match="json_schema"):
        engine.constraint(ConstraintSpec("json_schema", "{not json"))


@pytest.mark.slow(seconds=15)
def test_greedy_constrained_decoding_speculates_and_stays_the_same(
    engine_for: Callable[..., Engine],
) -> None:
    """The local planner's plans decode under the plan grammar with drafts: each draft is
    checked as far as the grammar allows it, the output is plain constrained greedy's, in
    fewer forward passes."""
    engine = engine_for("none", "adaptive")
    registry = ToolRegistry(TOOLS)
    messages = planner_messages("Time two ways to sum a list and rank them.", registry, [])
    prompt = engine.encode_chat([m.model_dump() for m in messages])
    params = SamplingParams(max_tokens=160)
    grammar = ConstraintSpec("grammar", plan_grammar(registry))
    plain = engine.generate(prompt, params, constraint=grammar, speculate=False)
    fast = engine.generate(prompt, params, constraint=grammar, speculate=True)
    assert fast.tokens == plain.tokens, (fast.text, plain.text)
    assert plain.stats.drafted == 0 and fast.stats.accepted > 0
    assert fast.stats.forward_passes < plain.stats.forward_passes
