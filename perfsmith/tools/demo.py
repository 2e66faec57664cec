"""Tools for the orchestration demo: time Python snippets in parallel subprocesses and rank
them. Real work, real processes; the demo's plan fans out one timing per variant."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from perfsmith.errors import ToolError
from perfsmith.tools.registry import tool

if TYPE_CHECKING:
    from perfsmith.llm.base import ChatModel

_TIMER = """
import json, sys, timeit
setup, stmt, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = timeit.Timer(stmt, setup)
loops, _ = t.autorange()
best = min(t.repeat(repeat=repeat, number=loops)) / loops
print(json.dumps({"loops": loops, "best_s": best}))
"""


# Timings that share a core disturb each other: at most one per core at a time.
@tool(timeout_s=120, max_concurrency=os.cpu_count() or 1)
async def time_snippet(stmt: str, setup: str = "", repeat: int = 5) -> dict[str, Any]:
    """Time a Python statement in a fresh interpreter (timeit: auto-ranged loops, best of
    `repeat`); returns {"best_s": seconds per loop, "loops": loops per repeat}."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        "-c",
        _TIMER,
        setup,
        stmt,
        str(repeat),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await proc.communicate()
    except asyncio.CancelledError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise ToolError(f"snippet failed: {err.decode(errors='replace').strip()[-500:]}")
    result: dict[str, Any] = json.loads(out)
    return result


@tool(inline=True)
def rank(timings: dict[str, dict[str, Any]], baseline: str) -> list[dict[str, Any]]:
    """Rank timed variants fastest first, with each one's speedup over `baseline`."""
    if baseline not in timings:
        raise ToolError(f"baseline {baseline!r} is not among {sorted(timings)}")
    base = float(timings[baseline]["best_s"])
    ranked = sorted(timings.items(), key=lambda kv: float(kv[1]["best_s"]))
    return [
        {
            "variant": name,
            "best_us": round(float(t["best_s"]) * 1e6, 2),
            "speedup": round(base / float(t["best_s"]), 2),
        }
        for name, t in ranked
    ]


TOOLS = [time_snippet, rank]

_SETUP = "import random; random.seed(1); data = [random.randrange(2000) for _ in range(4000)]"
VARIANTS = {
    "nested_loop": "out = []\nfor x in data:\n    if x not in out:\n        out.append(x)",
    "seen_set": "seen = set(); out = []\nfor x in data:\n    if x not in seen:\n"
    "        seen.add(x); out.append(x)",
    "dict_fromkeys": "out = list(dict.fromkeys(data))",
    "comprehension": "seen = set(); out = [x for x in data if not (x in seen or seen.add(x))]",
}

DEMO_REQUEST = (
    "Which way of removing duplicates from a list while keeping order is fastest in this "
    "Python, and by how much over the nested loop?"
)


def demo_plan() -> str:
    lines = ["Thought: time every variant at once, in separate interpreters, then rank them."]
    for i, (_, stmt) in enumerate(VARIANTS.items(), start=1):
        lines.append(f"{i}. time_snippet(stmt={stmt!r}, setup={_SETUP!r})")
    n = len(VARIANTS)
    mapping = ", ".join(f"{name!r}: ${i}" for i, name in enumerate(VARIANTS, start=1))
    lines.append(f"{n + 1}. rank(timings={{{mapping}}}, baseline='nested_loop')")
    lines.append(f"{n + 2}. join()")
    return "\n".join(lines) + "\n"


def demo_joiner(text: str) -> str:
    """What the demo's scripted joiner says, from the ranking in its prompt."""
    n = len(VARIANTS) + 1
    marker = f"\n{n}. rank("
    start = text.rfind(marker)  # the results section comes after the plan
    if start < 0 or "-> [done] " not in text[start:]:
        return "Thought: the ranking failed.\nAction: Finish(No ranking: see the task errors.)"
    line = text[start:].split("-> [done] ", 1)[1].split("\n", 1)[0]
    ranking = json.loads(line)
    best = ranking[0]
    listing = "; ".join(f"{r['variant']} {r['best_us']} µs ({r['speedup']}x)" for r in ranking)
    return (
        "Thought: all variants were timed in parallel and ranked.\n"
        f"Action: Finish({best['variant']} is fastest, {best['speedup']}x the nested loop. "
        f"{listing})"
    )


def demo_model() -> ChatModel:
    """The demo's planner and joiner: the scripted plan above and a joiner that reads the
    ranking (the demo and its resume build the same one)."""
    from perfsmith.llm.scripted import ScriptedChatModel

    return ScriptedChatModel(
        {"planner": [demo_plan()], "joiner": [lambda msgs, _opts: demo_joiner(msgs[-1].content)]},
        name="demo-script",
    )
