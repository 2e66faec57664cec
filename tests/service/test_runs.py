"""`RunService` owns a run's life: it stores the run, marks it running, settles it however
the work ends (its last event written before its status), and resumes any kind of run."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from perfsmith.config import load_settings
from perfsmith.errors import StorageError
from perfsmith.llm.scripted import ScriptedChatModel
from perfsmith.service.resources import Resources
from perfsmith.service.runs import RunService, UnknownKindError
from perfsmith.storage.db import Database
from perfsmith.storage.runs import RunStore
from perfsmith.tools.registry import tool
from perfsmith.workflows.base import Finished, Job

STARTED: list[str] = []
GATE: dict[str, asyncio.Event] = {}


@tool
async def wait_for(name: str) -> str:
    """Returns `name` once its gate opens."""
    STARTED.append(name)
    if name in GATE:
        await GATE[name].wait()
    return name


PLAN = "1. wait_for('a')\n2. wait_for('b')\njoin()\n"
JOIN = "Thought: both came back.\nAction: Finish(a and b)"


def model() -> ScriptedChatModel:
    return ScriptedChatModel({"planner": [PLAN], "joiner": [JOIN]})


async def test_a_cancelled_run_is_settled_and_resumes_reusing_its_finished_tasks(
    db: Database,
) -> None:
    STARTED.clear()
    GATE["b"] = asyncio.Event()
    service = RunService(db, load_settings())
    resources = Resources(load_settings(), llm=model())
    statuses: list[str] = []

    def watch(event: dict[str, Any]) -> None:
        if event["type"] == "task_started":
            statuses.append(RunStore(db).get_run(str(event["run_id"])).status)

    work = asyncio.create_task(
        service.start(
            "orchestrate",
            {"tools": None, "llm": None, "max_replans": 0},
            request="a then b",
            resources=resources,
            listeners=[watch],
            extras={"tools": [wait_for]},
        )
    )
    while STARTED.count("b") < 1 or STARTED.count("a") < 1:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # `a` finishes and is stored
    work.cancel()
    with pytest.raises(asyncio.CancelledError):
        await work
    [row] = RunStore(db).list_runs()
    assert statuses and set(statuses) == {"running"}
    assert row.status == "cancelled" and row.error == "cancelled"
    last = RunStore(db).events(row.id)[-1]
    assert last.type == "run_finished" and last.payload["status"] == "cancelled"

    GATE["b"].set()
    done = await service.resume(
        row.id, resources=Resources(load_settings(), llm=model()), extras={"tools": [wait_for]}
    )
    assert done.answer == "a and b" and RunStore(db).get_run(row.id).status == "done"
    assert STARTED.count("a") == 1 and STARTED.count("b") == 2  # only the unfinished task again
    tasks = {t.idx: t for t in RunStore(db).tasks(row.id)}
    assert tasks[1].reused and not tasks[2].reused
    with pytest.raises(StorageError, match="already finished"):
        await service.resume(row.id, resources=Resources(load_settings(), llm=model()))
    with pytest.raises(StorageError, match="already ended"):
        await service.cancel(row.id)


class Failing:
    """A workflow whose work raises: the service stores the reason, once."""

    kind = "failing"

    def request_text(self, config: dict[str, Any]) -> str:
        return "fail please"

    def check(self, config: dict[str, Any]) -> dict[str, Any]:
        if config.get("refuse"):
            raise ValueError("refused before anything is stored")
        return config

    async def start(self, job: Job) -> Finished:
        raise RuntimeError("the disk is full")

    async def resume(self, job: Job, follow_up: str | None) -> Finished:
        return Finished(answer=f"resumed {job.request}", result=None, summary={"rounds": 1})


async def test_failures_are_stored_once_with_their_reason_and_unknown_kinds_refused(
    db: Database, tmp_path: Path
) -> None:
    service = RunService(db, load_settings(), {"failing": Failing()})
    resources = Resources(load_settings())
    with pytest.raises(UnknownKindError, match="no workflow for 'optimise' runs"):
        await service.start("optimise", {}, resources=resources)
    with pytest.raises(ValueError, match="refused"):
        await service.start("failing", {"refuse": True}, resources=resources)
    assert RunStore(db).list_runs() == []  # a refused request stores nothing
    with pytest.raises(RuntimeError, match="disk is full"):
        await service.start("failing", {}, resources=resources)
    [row] = RunStore(db).list_runs()
    assert row.status == "failed" and row.error == "RuntimeError: the disk is full"
    finished = [e for e in RunStore(db).events(row.id) if e.type == "run_finished"]
    assert len(finished) == 1 and finished[0].payload["error"] == row.error
    resumed = await service.resume(row.id, resources=resources)
    assert resumed.answer == "resumed fail please"
    end = RunStore(db).events(row.id)[-1]
    assert end.type == "run_finished"
    assert (end.payload["status"], end.payload["answer"], end.payload["rounds"]) == (
        "done",
        "resumed fail please",
        1,
    )
