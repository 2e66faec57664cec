"""One worker's job to its end: the caps (wall time, LLM tokens), a batch cancelled under
it, a fault of the worker retried and bounded. Runs of a kind made for the test, through
the real queue, run service and database."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from perfsmith.batch.service import BatchService
from perfsmith.config import load_settings
from perfsmith.errors import PerfsmithError
from perfsmith.llm.base import ChatMessage
from perfsmith.storage.batches import BatchStore, NewJob
from perfsmith.storage.db import Database
from perfsmith.storage.runs import RunStore
from perfsmith.workflows.base import Finished, Job


class Chatty:
    """A run kind that asks its model a question every 50 ms (``calls`` at most, or
    forever), or breaks with ``config["fault"]``."""

    kind = "chatty"

    def request_text(self, config: dict[str, Any]) -> str:
        return "talk"

    def check(self, config: dict[str, Any]) -> dict[str, Any]:
        return config

    async def start(self, job: Job) -> Finished:
        if job.config.get("fault"):
            raise RuntimeError("the worker's disk is full")
        model = job.resources.model(None)
        calls = int(job.config.get("calls", 10**9))
        for _ in range(calls):
            if model is not None:
                await model.complete([ChatMessage(role="user", content="word " * 200)])
            await asyncio.sleep(0.05)
        return Finished(answer=f"{calls} calls", result=None)

    async def resume(self, job: Job, follow_up: str | None) -> Finished:
        finished = await self.start(job)
        return Finished(answer=f"resumed: {finished.answer}", result=None)


def _run(db: Database, jobs: list[NewJob], **budgets: Any) -> str:
    store = BatchStore(db)
    batch_id = store.create_batch(
        name="t", source="", budgets={"retries": 1, **budgets}, deadline=None, jobs=jobs
    )
    service = BatchService(db, load_settings())

    async def go() -> None:
        work = asyncio.create_task(
            service.work(
                [batch_id],
                workers=len(jobs),
                backend="process",
                lease_s=0.3,
                workflows={"chatty": Chatty()},
            )
        )
        if budgets.get("cancel_after_s"):
            await asyncio.sleep(budgets["cancel_after_s"])
            await asyncio.to_thread(service.cancel, batch_id)
        await work

    asyncio.run(go())
    return batch_id


def test_caps_cancellation_and_faults_end_jobs_with_their_reasons(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps(["an answer of some length"] * 1000))
    db = Database(f"sqlite:///{tmp_path / 'b.db'}")
    llm = f"scripted:{script}"
    batch_id = _run(
        db,
        [
            NewJob(name="short", kind="chatty", config={"calls": 2}, llm=llm),
            NewJob(name="endless", kind="chatty", config={}, llm=None),
            NewJob(name="spender", kind="chatty", config={}, llm=llm),
            NewJob(name="faulty", kind="chatty", config={"fault": True}, llm=None),
        ],
        job_wall_s=1.5,
        tokens=500,
    )
    jobs = {j.name: j for j in BatchStore(db).get_batch(batch_id).jobs}
    assert jobs["short"].status == "done" and 0 < jobs["short"].tokens <= 500
    assert jobs["endless"].status == "failed"
    assert jobs["endless"].error == "wall-time cap reached (1.5 s)"
    assert jobs["spender"].status == "failed"
    assert "token cap is spent" in (jobs["spender"].error or "")
    assert jobs["spender"].tokens >= 500
    # a fault of the worker is tried again (retries = 1), then given up with its reason
    assert jobs["faulty"].status == "failed" and jobs["faulty"].attempts == 2
    assert jobs["faulty"].error == (
        "gave up after 2 attempts: RuntimeError: the worker's disk is full"
    )
    # the runs themselves were settled by the run service: the capped one cancelled
    runs = RunStore(db)
    assert runs.get_run(jobs["short"].run_id or "").status == "done"
    assert runs.get_run(jobs["endless"].run_id or "").status == "cancelled"
    assert BatchStore(db).get_batch(batch_id).status == "ended"
    db.close()


def test_a_batch_cancelled_under_its_workers_stops_them(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'b.db'}")
    jobs = [NewJob(name=f"endless{i}", kind="chatty", config={}, llm=None) for i in range(3)]
    batch_id = _run(db, jobs, job_wall_s=60, cancel_after_s=0.8)
    batch = BatchStore(db).get_batch(batch_id)
    assert [j.status for j in batch.jobs] == ["cancelled"] * 3
    assert all(j.error == "cancelled" for j in batch.jobs)
    assert batch.status == "ended" and batch.report_md is not None
    db.close()


def test_a_repository_named_by_url_is_cloned_once_for_the_night(tmp_path: Path) -> None:
    import subprocess

    from perfsmith.batch.worker import WorkerContext, _prepare
    from perfsmith.storage.batches import Claim

    origin = tmp_path / "origin"
    origin.mkdir()
    (origin / "a.py").write_text("def f():\n    return 1\n")
    for args in (["init", "-q"], ["add", "-A"]):
        subprocess.run(["git", "-C", str(origin), *args], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(origin),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "x",
        ],
        check=True,
    )
    db = Database(f"sqlite:///{tmp_path / 'b.db'}")
    ctx = WorkerContext(db=db, settings=load_settings(), workdir=tmp_path / "work")
    claim = Claim(
        job_id=7,
        batch_id="b1",
        attempt=1,
        owner="me",
        name="origin",
        kind="repo",
        config={"repo": None, "clone": f"file://{origin}", "command": "true"},
        llm=None,
        run_id=None,
        elapsed_s=0.0,
        budgets={},
        deadline=None,
    )
    config = asyncio.run(_prepare(ctx, claim))
    clone = Path(config["repo"])
    assert clone == tmp_path / "work" / "b1" / "job-7" and (clone / "a.py").is_file()
    assert "clone" not in config
    (clone / "mine.txt").write_text("kept")  # a retry reuses the night's copy
    assert asyncio.run(_prepare(ctx, claim))["repo"] == str(clone)
    assert (clone / "mine.txt").exists()
    bad = dataclasses.replace(claim, job_id=8, config={"clone": "file:///nowhere/x.git"})
    with pytest.raises(PerfsmithError, match=r"cannot clone file:///nowhere/x\.git"):
        asyncio.run(_prepare(ctx, bad))
    db.close()


def test_a_run_stored_by_a_worker_that_died_before_starting_it_is_started(tmp_path: Path) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from perfsmith.service.runs import RunService
    from perfsmith.storage.models import BatchJob, utcnow

    db = Database(f"sqlite:///{tmp_path / 'b.db'}")
    store = BatchStore(db)
    batch_id = store.create_batch(
        name="t",
        source="",
        budgets={"retries": 1},
        deadline=None,
        jobs=[NewJob(name="short", kind="chatty", config={"calls": 1}, llm=None)],
    )
    claim = store.claim(lease_s=60)
    assert claim is not None
    runs = RunService(db, load_settings(), {"chatty": Chatty()})
    run_id = asyncio.run(runs.create("chatty", {"calls": 1}))
    store.set_run(claim, run_id)
    with db.session() as s:  # and then its worker died: the lease runs out
        s.execute(update(BatchJob).values(lease_expires=utcnow() - timedelta(seconds=1)))
    service = BatchService(db, load_settings())
    asyncio.run(service.work([batch_id], workers=1, backend="process", workflows=runs.workflows))
    job = store.get_batch(batch_id).jobs[0]
    assert (job.status, job.attempts, job.run_id) == ("done", 2, run_id)
    assert RunStore(db).get_run(run_id).answer == "1 calls"  # started, not resumed
    db.close()
