"""The candidate pool both workflows share: ids from 1, duplicates stored once, each
candidate verified once however many ask, a named id awaited while proposals run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from perfsmith.errors import PerfsmithError
from perfsmith.storage.db import Database
from perfsmith.storage.models import Candidate
from perfsmith.storage.runs import RunStore
from perfsmith.workflows.pool import CandidatePool


async def test_dedupe_rows_single_verification_and_waiting(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'pool.db'}")
    calls: list[int] = []

    async def verify(cid: int) -> str:
        calls.append(cid)
        await asyncio.sleep(0.05)
        pool.results[cid] = f"verdict {cid}"
        return pool.results[cid]

    pool: CandidatePool[str, str] = CandidatePool(db, verify)
    pool.run_id = await asyncio.to_thread(RunStore(db).create_run, "pool", kind="optimize")

    def row(source: str) -> object:
        return lambda run_id: Candidate(
            run_id=run_id, origin="t", source=source, source_hash=source
        )

    first = await pool.add("aaa", lambda cid: f"cand {cid}", row("aaa"))  # type: ignore[arg-type]
    twin = await pool.add("aaa", lambda cid: f"other {cid}", row("aaa"))  # type: ignore[arg-type]
    assert first == twin == "cand 1" and pool.next_id == 2
    # three askers at once: one verification
    results = await asyncio.gather(*(pool.verified(1) for _ in range(3)))
    assert results == ["verdict 1"] * 3 and calls == [1]

    # a task naming id 2 waits for the proposal that makes it
    async def propose() -> None:
        async with pool.proposing():
            await asyncio.sleep(0.05)
            await pool.add("bbb", lambda cid: f"cand {cid}", row("bbb"))  # type: ignore[arg-type]

    proposal = asyncio.create_task(propose())
    await asyncio.sleep(0)  # the proposal has started
    await pool.wait_for(2)
    await proposal
    assert pool.items[2] == "cand 2"
    # an id no proposal can make is a clear error once none is running
    with pytest.raises(PerfsmithError, match="no candidate 7; ids so far: \\[1, 2\\]"):
        await pool.wait_for(7)
    await pool.store(1, lambda s, row_id: setattr(s.get(Candidate, row_id), "verdict", "same"))
    with db.session() as s:
        rows = s.scalars(select(Candidate).order_by(Candidate.id)).all()
        assert [(r.source, r.verdict) for r in rows] == [("aaa", "same"), ("bbb", None)]
        first_row = rows[0].id
    assert await pool.row_id(1) == first_row and await pool.row_id(9) is None
    # restored from the database: ids continue after it
    again: CandidatePool[str, str] = CandidatePool(db, verify)
    again.restore(1, "aaa", "cand 1", first_row)
    assert again.next_id == 2 and await again.row_id(1) == first_row
    db.close()
