"""Plans decoded under the plan grammar parse cleanly, even from the 135M local model."""

from __future__ import annotations

import pytest

from perfsmith.inference import models
from perfsmith.inference.build import build_engine
from perfsmith.inference.config import EngineConfig
from perfsmith.inference.constrain import ConstraintSpec
from perfsmith.inference.engine import Engine
from perfsmith.inference.sampling import SamplingParams
from perfsmith.llm.base import ChatMessage, GenerationOptions
from perfsmith.llm.local import LocalChatModel
from perfsmith.planner.grammar import plan_grammar
from perfsmith.planner.parser import parse_plan
from perfsmith.planner.plan import Join, PlanLineError, TaskSpec
from perfsmith.planner.prompts import planner_messages
from perfsmith.tools.demo import TOOLS
from perfsmith.tools.registry import ToolRegistry


def test_the_grammar_names_every_tool_and_refuses_an_empty_registry() -> None:
    registry = ToolRegistry(TOOLS)
    grammar = plan_grammar(registry)
    assert '"time_snippet(" "stmt=" (string | ref)' in grammar
    assert '(", " "repeat=" (integer | ref))?' in grammar
    # dict[str, dict[str, Any]]: a dict whose values are dicts
    assert '"rank(" "timings=" (t1 | ref)' in grammar
    assert 't1 ::= "{" (string ": " t0 (", " string ": " t0){0,7})? "}"' in grammar
    with pytest.raises(ValueError, match="at least one tool"):
        plan_grammar(ToolRegistry())


@pytest.fixture(scope="module")
def engine(loaded: models.LoadedModel) -> Engine:
    return build_engine(EngineConfig(context=2048), loaded=loaded)


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_constrained_plans_from_the_local_model_parse_without_errors(
    engine: Engine, temperature: float
) -> None:
    registry = ToolRegistry(TOOLS)
    messages = planner_messages(
        "Time three ways to sum a list of a million ints and rank them.", registry, []
    )
    prompt = engine.encode_chat([m.model_dump() for m in messages])
    for seed in range(1):
        gen = engine.generate(
            prompt,
            SamplingParams(max_tokens=600, temperature=temperature, seed=seed),
            # at most four calls: the same rules, a shorter plan to decode
            constraint=ConstraintSpec("grammar", plan_grammar(registry, max_calls=4)),
        )
        assert gen.finish_reason == "stop", gen.text
        items = parse_plan(gen.text, registry)
        assert isinstance(items[-1], Join), gen.text
        assert not [i for i in items if isinstance(i, PlanLineError)], gen.text
        assert any(isinstance(i, TaskSpec) for i in items)


async def test_local_chat_model_honours_json_schema_and_streams() -> None:
    model = LocalChatModel(context=1024)
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    }
    result = await model.complete(
        [ChatMessage(role="user", content="Is Python fun?")],
        GenerationOptions(json_schema=schema, max_tokens=20),
    )
    assert result.text in ('{"ok": true}', '{"ok": false}', '{"ok":true}', '{"ok":false}')
    assert result.usage.completion_tokens > 0
    chunks = [
        c
        async for c in model.stream(
            [ChatMessage(role="user", content="Say hi")], GenerationOptions(max_tokens=12)
        )
    ]
    assert len(chunks) > 1
    whole = await model.complete(
        [ChatMessage(role="user", content="Say hi")], GenerationOptions(max_tokens=12)
    )
    assert "".join(chunks) == whole.text
