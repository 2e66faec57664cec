from __future__ import annotations

from perfsmith.planner.prompts import joiner_messages, planner_messages
from perfsmith.tools.registry import ToolRegistry, tool


@tool
def probe(x: int) -> int:
    """Probe a value."""
    return x


def observation(i: int, status: str = "done") -> dict[str, object]:
    return {
        "idx": i,
        "tool": "probe",
        "call": f"probe({i})",
        "status": status,
        "result": str(i),
        "run_s": 0.0,
    }


def test_planner_prompt_lists_tools_and_replanner_sees_history() -> None:
    first = planner_messages("do it", ToolRegistry([probe]), [])
    assert "probe(x: int) -> int: Probe a value." in first[0].content
    assert "round" not in first[0].content.lower().split("rules")[0]
    history = [
        {
            "round": 1,
            "plan": "1. probe(1)\njoin()",
            "observations": [observation(1, "error")],
            "thought": "it broke",
            "replan_reason": "use 2",
        }
    ]
    again = planner_messages("do it", ToolRegistry([probe]), history)
    assert "planning round 2" in again[0].content
    assert "1. probe(1) -> [error] 1" in again[1].content and "use 2" in again[1].content


def test_huge_plans_are_summarized_in_the_joiner_prompt() -> None:
    observations = [observation(i, "error" if i == 500 else "done") for i in range(1, 1001)]
    record = {"round": 1, "plan": "x" * 50_000, "observations": observations}
    text = joiner_messages("r", record, [], 0)[1].content
    assert "(1000 results: 999 done, 1 error;" in text
    assert "500. probe(500) -> [error]" in text and "1000. probe(1000)" in text
    assert "31. probe(31)" not in text.split("Results:")[1]
    assert len(text) < 20_000 + 10_000
