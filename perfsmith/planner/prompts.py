"""Planner, replanner and joiner prompts (after LLMCompiler's, with perfsmith's rules)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from perfsmith.llm.base import ChatMessage
from perfsmith.tools.registry import ToolRegistry

PLANNER_SYSTEM = """\
You are perfsmith's planner. Given a request, write a plan: numbered tool calls that run \
in parallel wherever their inputs allow. Available tools:
{tools}

Write the plan in exactly this form, one call per line:
Thought: <optional: why the next call is needed>
1. tool_name(argument, name=value)
2. other_tool(data=$1)
3. join()

Rules:
- Ids start at 1 and strictly increase; each call is on its own line.
- Arguments are Python literals (strings, numbers, lists, dicts, True/False/None).
- `$N` (or `${{N}}`) stands for the result of call N; it may appear as an argument, inside \
a list or dict, or inside a string. A call may only use results of earlier calls.
- Calls that do not depend on each other run at the same time: do not chain them.
- Use only the tools above, with the arguments their signatures name.
- End the plan with `join()` on its own line and write nothing after it.
"""

REPLAN_ADDENDUM = """\
This is planning round {round}. Earlier rounds, their results and why they did not \
finish the request are below. Plan only the work still needed: never repeat a call that \
already succeeded, use what you learned from failures, and number calls from 1 again.
"""

JOINER_SYSTEM = """\
You are perfsmith's joiner. You see a request, the plan that ran and each call's result. \
Decide whether the results answer the request.

Answer in exactly this form:
Thought: <your reasoning about the results>
Action: Finish(<the final answer for the user>)
or
Thought: <what is missing or failed>
Action: Replan(<what the next plan must do differently>)

Choose Replan only if another plan can do better; you have {replans_left} replan(s) left.
"""


MAX_PROMPT_OBSERVATIONS = 100
MAX_PROMPT_PLAN_CHARS = 20_000


def _shown(observations: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
    """Which results a prompt shows: all of them for normal plans; for huge ones the first
    and last results and the failures, plus a count by status."""
    if len(observations) <= MAX_PROMPT_OBSERVATIONS:
        return observations, None
    head, tail = observations[:30], observations[-30:]
    middle = observations[30:-30]
    failed = [o for o in middle if o["status"] != "done"][:40]
    counts: dict[str, int] = {}
    for o in observations:
        counts[o["status"]] = counts.get(o["status"], 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    note = (
        f"({len(observations)} results: {summary}; showing the first 30, the last 30 and failures)"
    )
    return head + failed + tail, note


def _format_round(record: dict[str, Any]) -> str:
    plan = record["plan"].strip()
    if len(plan) > MAX_PROMPT_PLAN_CHARS:
        plan = (
            plan[:MAX_PROMPT_PLAN_CHARS]
            + f"\n... [{len(plan) - MAX_PROMPT_PLAN_CHARS} more characters]"
        )
    shown, note = _shown(record["observations"])
    lines = [f"Plan (round {record['round']}):", plan, "", "Results:"]
    if note:
        lines.append(note)
    for obs in shown:
        idx = obs["idx"] if obs["idx"] is not None else "-"
        call = obs["call"] if obs["tool"] else "(invalid line)"
        lines.append(f"{idx}. {call} -> [{obs['status']}] {obs['result']}")
    if record.get("thought"):
        lines.append(f"Joiner thought: {record['thought']}")
    if record.get("replan_reason"):
        lines.append(f"Joiner asked to replan: {record['replan_reason']}")
    return "\n".join(lines)


def planner_messages(
    request: str, registry: ToolRegistry, history: Sequence[dict[str, Any]]
) -> list[ChatMessage]:
    system = PLANNER_SYSTEM.format(tools=registry.render())
    if history:
        system += "\n" + REPLAN_ADDENDUM.format(round=len(history) + 1)
    parts = [f"Request: {request}"]
    if history:
        parts.append("\n\n".join(_format_round(r) for r in history))
    parts.append("Plan:")
    return [
        ChatMessage(role="system", content=system),
        ChatMessage(role="user", content="\n\n".join(parts)),
    ]


def joiner_messages(
    request: str, record: dict[str, Any], history: Sequence[dict[str, Any]], replans_left: int
) -> list[ChatMessage]:
    system = JOINER_SYSTEM.format(replans_left=replans_left)
    parts = [f"Request: {request}"]
    if history:
        parts.append("Earlier rounds:\n" + "\n\n".join(_format_round(r) for r in history))
    parts.append(_format_round(record))
    return [
        ChatMessage(role="system", content=system),
        ChatMessage(role="user", content="\n\n".join(parts)),
    ]
