"""The candidates of one run, shared by the workflows (functions, kernels).

Ids count from 1 in each run (the plan names them); each candidate is deduplicated by
its hash, stored as a database row once the run has an id, and verified once however
many tasks ask. Proposals in flight are counted, so a task that names an id before the
proposal delivering it has finished waits for it instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar

from sqlalchemy.orm import Session

from perfsmith.errors import PerfsmithError
from perfsmith.storage.db import Database
from perfsmith.storage.models import Candidate as CandidateRow
from perfsmith.storage.runs import RunStore

C = TypeVar("C")
R = TypeVar("R")


def stored_ci(row: CandidateRow) -> tuple[float, float] | None:
    """A stored candidate's speedup interval, if it was timed."""
    if row.ci_low is None or row.ci_high is None:
        return None
    return (row.ci_low, row.ci_high)


class CandidatePool(Generic[C, R]):
    def __init__(self, db: Database, verify: Callable[[int], Awaitable[R]]) -> None:
        self.db = db
        self.run_id: str | None = None
        self.items: dict[int, C] = {}
        self.results: dict[int, R] = {}
        self.by_hash: dict[str, int] = {}
        self.rows: dict[int, asyncio.Future[int]] = {}  # database ids
        self.next_id = 1
        self._verify = verify
        self._verifying: dict[int, asyncio.Future[R]] = {}
        self._proposing = 0
        self._changed = asyncio.Condition()

    async def add(
        self, digest: str, build: Callable[[int], C], row: Callable[[str], CandidateRow]
    ) -> C:
        """The candidate with this hash: the one already here, or ``build(id)`` stored
        as ``row(run_id)``."""
        if digest in self.by_hash:
            return self.items[self.by_hash[digest]]
        cid = self.next_id
        self.next_id += 1
        item = build(cid)
        self.items[cid] = item
        self.by_hash[digest] = cid  # before any await: a concurrent twin finds it
        run_id = self.run_id
        if run_id is not None:

            def write(s: Session) -> int:
                new = row(run_id)
                s.add(new)
                s.flush()
                return int(new.id)

            self.rows[cid] = asyncio.ensure_future(self.db.write(write))
            await self.rows[cid]
        return item

    def restore(self, cid: int, digest: str, item: C, row_id: int) -> None:
        """A candidate read back from the database (resuming a run)."""
        self.items[cid] = item
        self.by_hash[digest] = cid
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        done.set_result(row_id)
        self.rows[cid] = done
        self.next_id = max(self.next_id, cid + 1)

    async def restore_run(
        self,
        run_id: str,
        item: Callable[[int, CandidateRow], C],
        result: Callable[[int, CandidateRow], R | None],
    ) -> None:
        """Load a run's stored candidates (ids by insertion order, as the plan named them)
        and the verdicts they have (``result`` None: none yet), to resume the run."""

        rows = await asyncio.to_thread(RunStore(self.db).candidates, run_id)
        self.run_id = run_id
        for cid, row in enumerate(rows, start=1):
            self.restore(cid, row.source_hash, item(cid, row), int(row.id))
            if row.verdict is not None:
                verdict = result(cid, row)
                if verdict is not None:
                    self.results[cid] = verdict

    async def verified(self, cid: int) -> R:
        """The candidate's result, verifying it once (concurrent askers share the run)."""
        if cid in self.results:
            return self.results[cid]
        if cid not in self._verifying:
            self._verifying[cid] = asyncio.ensure_future(self._verify(cid))
        return await asyncio.shield(self._verifying[cid])

    async def store(self, cid: int, write: Callable[[Session, int], None]) -> None:
        """``write(session, row_id)`` for a candidate that has a database row."""
        if cid in self.rows:
            row_id = await self.rows[cid]
            await self.db.write(lambda s: write(s, row_id))

    async def row_id(self, cid: int) -> int | None:
        return await self.rows[cid] if cid in self.rows else None

    @contextlib.asynccontextmanager
    async def proposing(self) -> AsyncIterator[None]:
        """Around a proposal: tasks waiting for an id learn when it is over."""
        self._proposing += 1
        try:
            yield
        finally:
            self._proposing -= 1
            async with self._changed:
                self._changed.notify_all()

    async def wait_for(self, cid: int) -> None:
        """Until candidate ``cid`` exists or no proposal is left that could make it."""
        async with self._changed:
            await self._changed.wait_for(lambda: cid in self.items or self._proposing == 0)
        if cid not in self.items:
            raise PerfsmithError(f"no candidate {cid}; ids so far: {sorted(self.items)}")
