"""The durable queue: one worker per job, leases that run out, bounded retries, the
deadline, cancel and resume (SQLite, and PostgreSQL where the tests have one)."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import update

from perfsmith.storage.batches import BatchStore, Claim, NewJob
from perfsmith.storage.db import Database
from perfsmith.storage.models import BatchJob, utcnow


def _batch(store: BatchStore, n: int, *, retries: int = 2, deadline_s: float | None = None) -> str:
    jobs = [NewJob(name=f"job{i}", kind="optimize", config={"i": i}, llm=None) for i in range(n)]
    deadline = utcnow() + timedelta(seconds=deadline_s) if deadline_s is not None else None
    return store.create_batch(
        name="b", source="", budgets={"retries": retries}, deadline=deadline, jobs=jobs
    )


def _status(store: BatchStore, batch_id: str) -> list[str]:
    return [j.status for j in store.get_batch(batch_id).jobs]


def test_concurrent_claims_never_share_a_job(db: Database) -> None:
    store = BatchStore(db)
    batch_id = _batch(store, 12)
    with ThreadPoolExecutor(8) as pool:
        claims = list(pool.map(lambda _: store.claim(lease_s=60), range(20)))
    taken = [c.job_id for c in claims if c is not None]
    assert len(taken) == 12 and len(set(taken)) == 12
    assert _status(store, batch_id) == ["running"] * 12


def test_a_lapsed_lease_is_claimed_again_and_the_old_worker_can_no_longer_write(
    db: Database,
) -> None:
    store = BatchStore(db)
    batch_id = _batch(store, 1)
    first = store.claim(lease_s=60)
    assert first is not None and first.attempt == 1
    assert store.claim(lease_s=60) is None  # held
    store.set_run(first, "run1")
    # the lease runs out (the worker's machine went away)
    again = store.claim(lease_s=60, now=utcnow() + timedelta(seconds=61))
    assert again is not None and again.job_id == first.job_id
    assert again.attempt == 2 and again.run_id == "run1"  # its run is resumed, not redone
    assert store.renew(first, lease_s=60) == "lost"
    assert store.settle(first, "done") == "lost"
    assert store.renew(again, lease_s=60) == "held"
    assert store.settle(again, "done", summary={"speedup": 2.0}, tokens=5) == "done"
    job = store.get_batch(batch_id).jobs[0]
    assert (job.status, job.attempts, job.tokens, job.summary) == ("done", 2, 5, {"speedup": 2.0})
    assert not store.unfinished(batch_id)
    assert store.end(batch_id, ended_at=utcnow(), report_md="# r", report_html="<p>r</p>")
    assert not store.end(batch_id, ended_at=utcnow(), report_md="", report_html="")
    assert store.get_batch(batch_id).report_md == "# r"


def test_a_job_whose_worker_was_killed_is_claimed_at_once(db: Database) -> None:
    store = BatchStore(db)
    _batch(store, 1)
    dead = subprocess.run(
        [
            sys.executable,
            "-c",
            "from perfsmith.storage.owners import this_process as t; print(t())",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    claim = store.claim(lease_s=3600)
    assert claim is not None
    with db.session() as s:  # as if that process had claimed it, and was killed
        s.execute(update(BatchJob).values(lease_owner=dead))
    again = store.claim(lease_s=3600)  # the lease has an hour left: the owner is gone
    assert again is not None and again.attempt == 2


def test_retries_are_bounded_and_the_last_reason_is_kept(db: Database) -> None:
    store = BatchStore(db)
    batch_id = _batch(store, 1, retries=1)
    first = store.claim(lease_s=60)
    assert first is not None
    assert store.settle(first, "failed", error="boom", retry=True) == "queued"
    second = store.claim(lease_s=60)
    assert second is not None and second.attempt == 2
    assert store.settle(second, "failed", error="boom again", retry=True) == "failed"
    job = store.get_batch(batch_id).jobs[0]
    assert job.error == "gave up after 2 attempts: boom again"
    # a job abandoned by its workers as often ends failed when next claimed
    batch2 = _batch(store, 1, retries=0)
    lapsed = store.claim(lease_s=1, batch_ids=[batch2])
    assert lapsed is not None
    assert store.claim(lease_s=1, batch_ids=[batch2], now=utcnow() + timedelta(seconds=5)) is None
    job = store.get_batch(batch2).jobs[0]
    assert job.status == "failed" and "its worker stopped" in (job.error or "")


def test_the_deadline_skips_what_has_not_started_and_release_is_free(db: Database) -> None:
    store = BatchStore(db)
    batch_id = _batch(store, 3, deadline_s=3600)
    running = store.claim(lease_s=4 * 3600)
    assert isinstance(running, Claim)
    released = store.claim(lease_s=60)
    assert released is not None
    store.release(released)  # its worker stopped: back in the queue, the attempt uncounted
    assert store.get_batch(batch_id).jobs[1].attempts == 0
    assert store.claim(lease_s=60, now=utcnow() + timedelta(hours=2)) is None
    assert _status(store, batch_id) == ["running", "skipped", "skipped"]
    assert store.settle(running, "done") == "done"  # running work finishes past it


def test_cancel_stops_the_queue_and_resume_takes_it_up(db: Database) -> None:
    store = BatchStore(db)
    batch_id = _batch(store, 3)
    running = store.claim(lease_s=60)
    assert running is not None
    assert store.cancel_batch(batch_id) == 2
    assert store.claim(lease_s=60) is None
    assert store.renew(running, lease_s=60) == "cancelled"
    assert store.settle(running, "failed", error="x", retry=True) == "cancelled"
    assert store.end(batch_id, ended_at=utcnow(), report_md="", report_html="")
    assert store.resume_batch(batch_id) == 3
    assert store.get_batch(batch_id).status == "active"
    claims = [store.claim(lease_s=60) for _ in range(4)]
    assert [c is not None for c in claims] == [True, True, True, False]


def test_the_workers_asked_for_are_the_active_batches_largest_concurrency(db: Database) -> None:
    store = BatchStore(db)
    jobs = [NewJob(name="j", kind="optimize", config={}, llm=None)]
    small = store.create_batch(
        name="s", source="", budgets={"concurrency": 2}, deadline=None, jobs=jobs
    )
    big = store.create_batch(
        name="b", source="", budgets={"concurrency": 5}, deadline=None, jobs=jobs
    )
    assert sorted(b["concurrency"] for b in store.active_budgets()) == [2, 5]
    assert [b["concurrency"] for b in store.active_budgets([small])] == [2]
    store.cancel_batch(big)  # no longer active
    assert [b["concurrency"] for b in store.active_budgets()] == [2]
