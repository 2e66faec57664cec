"""The whole spine through `perfsmith.run`: planner -> task fetching unit -> joiner ->
replan or finish, stored, on the LangGraph graph with a scripted model."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import perfsmith
from perfsmith.errors import LLMError
from perfsmith.llm.base import GenerationOptions
from perfsmith.llm.scripted import ScriptedChatModel
from perfsmith.storage.db import Database
from perfsmith.storage.runs import RunStore

CALLS: list[str] = []


@perfsmith.tool
async def fetch(key: str, seconds: float = 0.0) -> dict[str, Any]:
    """Fetch a record by key."""
    CALLS.append(key)
    await asyncio.sleep(seconds)
    if key == "missing":
        raise KeyError(key)
    return {"key": key, "size": len(key)}


@perfsmith.tool
def total(records: list[dict[str, Any]]) -> int:
    """Sum the records' sizes."""
    return sum(r["size"] for r in records)


TOOLS = [fetch, total]


def joiner_prompts(llm: ScriptedChatModel) -> list[str]:
    return [m[-1].content for m, o in llm.calls if o.purpose == "joiner"]


async def test_replan_after_failure_then_finish(db: Database) -> None:
    CALLS.clear()
    llm = ScriptedChatModel(
        {
            "planner": [
                "1. fetch('missing')\n2. total([$1])\njoin()\n",
                "Thought: use another key\n1. fetch('abc')\n2. total([$1])\njoin()\n",
            ],
            "joiner": [
                "Thought: fetch failed\nAction: Replan(the key 'missing' does not exist)",
                "Thought: got it\nAction: Finish(The total is 3.)",
            ],
        }
    )
    result = await perfsmith.run("total size", tools=TOOLS, llm=llm, database=db)
    assert result.answer == "The total is 3." and result.rounds == 2
    replan_prompt = next(m for m, o in llm.calls if o.purpose == "planner" and o.round == 2)
    text = replan_prompt[-1].content
    assert "fetch('missing')" in text and "[error]" in text and "KeyError" in text
    assert "does not exist" in text  # the joiner's reason reaches the replanner
    assert "never repeat" in replan_prompt[0].content
    store = RunStore(db)
    run = store.get_run(result.run_id)
    assert (run.status, run.answer) == ("done", "The total is 3.")
    assert [(p.round, p.decision) for p in store.plans(result.run_id)] == [
        (1, "replan"),
        (2, "finish"),
    ]
    tasks = {(t.round, t.idx): t for t in store.tasks(result.run_id)}
    assert tasks[(1, 1)].status == "error" and tasks[(1, 2)].status == "skipped"
    assert tasks[(2, 2)].status == "done" and tasks[(2, 2)].result_json == "3"
    types = [e.type for e in store.events(result.run_id)]
    assert types[0] == "run_started" and types[-1] == "run_finished"
    assert types.count("join") == 2 and types.count("plan_started") == 2


async def test_replans_are_bounded(sqlite_url: str) -> None:
    llm = ScriptedChatModel(
        {
            "planner": ["1. fetch('x')\njoin()\n"] * 5,
            "joiner": ["Thought: not sure\nAction: Replan(try again)"] * 5,
        }
    )
    result = await perfsmith.run(
        "loop forever", tools=TOOLS, llm=llm, database=sqlite_url, max_replans=2
    )
    assert result.rounds == 3
    assert result.answer.startswith("Stopped after 2 replan(s)")
    assert "1 replan(s) left" in llm.calls[3][0][0].content
    assert "0 replan(s) left" in [m for m, o in llm.calls if o.purpose == "joiner"][-1][0].content


async def test_invalid_plan_lines_reach_the_joiner(sqlite_url: str) -> None:
    llm = ScriptedChatModel(
        {
            "planner": ["1. fetch('a')\n2. teleport('b')\n3. total([$1, $2])\n"],
            "joiner": ["Action: Finish(done)"],
        }
    )
    await perfsmith.run("r", tools=TOOLS, llm=llm, database=sqlite_url)
    prompt = joiner_prompts(llm)[0]
    assert "unknown tool 'teleport'" in prompt
    assert "skipped: input $2 invalid" in prompt
    assert "without join()" in prompt


async def test_tasks_run_while_the_plan_streams(sqlite_url: str) -> None:
    plan = (
        "1. fetch('a', 0.3)\n2. fetch('b', 0.3)\n3. fetch('c', 0.3)\n"
        "4. total([$1, $2, $3])\njoin()\n"
    )
    llm = ScriptedChatModel(
        {"planner": [plan], "joiner": ["Action: Finish(ok)"]}, latency_s=0.05, per_token_s=0.02
    )
    t0 = time.perf_counter()
    result = await perfsmith.run("r", tools=TOOLS, llm=llm, database=sqlite_url)
    elapsed = time.perf_counter() - t0
    trace = result.traces[0]
    starts = [r.start_s for r in trace.rows]
    assert all(s is not None for s in starts)
    # Task 1 started long before the plan finished streaming (about 0.5 s of tokens).
    assert starts[0] is not None and starts[0] < 0.2
    assert starts[0] < starts[1] < starts[2]  # type: ignore[operator]
    stream_s = 0.05 + 0.02 * 26
    assert elapsed < stream_s + 0.3 + 0.4  # the fetches overlap the stream and each other


async def test_planner_failure_marks_the_run_failed(sqlite_url: str) -> None:
    def broken(_m: Any, _o: GenerationOptions) -> str:
        raise LLMError("endpoint down")

    llm = ScriptedChatModel({"planner": [broken]})
    with pytest.raises(LLMError, match="endpoint down"):
        await perfsmith.run("r", tools=TOOLS, llm=llm, database=sqlite_url)
    run = RunStore(Database(sqlite_url)).list_runs()[0]
    assert run.status == "failed" and run.error == "endpoint down"


async def test_cancelling_a_run_cancels_its_tasks(sqlite_url: str) -> None:
    CALLS.clear()
    llm = ScriptedChatModel(
        {
            "planner": ["1. fetch('slow', 30)\n2. total([$1])\njoin()\n"],
            "joiner": ["Action: Finish(x)"],
        }
    )
    job = asyncio.create_task(perfsmith.run("r", tools=TOOLS, llm=llm, database=sqlite_url))
    while "slow" not in CALLS:
        await asyncio.sleep(0.01)
    t0 = time.perf_counter()
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert time.perf_counter() - t0 < 2
    store = RunStore(Database(sqlite_url))
    run = store.list_runs()[0]
    assert run.status == "cancelled"
    assert {t.idx: t.status for t in store.tasks(run.id)} == {1: "cancelled", 2: "cancelled"}


async def test_joiner_reply_out_of_form_still_finishes(sqlite_url: str) -> None:
    llm = ScriptedChatModel(
        {"planner": ["1. fetch('a')\njoin()\n"], "joiner": ["I think the answer is 1 (probably)."]}
    )
    result = await perfsmith.run("r", tools=TOOLS, llm=llm, database=sqlite_url)
    assert result.answer == "I think the answer is 1 (probably)."
