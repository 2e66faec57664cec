"""The local worker pool: ``workers`` jobs at once in this process, each claimed from the
durable queue, until none is left to start. No service to run beside it; several `batch
run` processes (or machines sharing a PostgreSQL database) may work one queue together."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from perfsmith.batch.worker import WorkerContext, work
from perfsmith.storage.batches import BatchStore


async def work_locally(
    ctx: WorkerContext, *, workers: int, batch_ids: Sequence[str] | None = None
) -> set[str]:
    """Work the queue with ``workers`` concurrent jobs; returns the batches whose jobs
    this process worked on."""
    store = BatchStore(ctx.db)
    touched: set[str] = set()

    async def worker() -> None:
        while True:
            claim = await asyncio.to_thread(store.claim, lease_s=ctx.lease_s, batch_ids=batch_ids)
            if claim is None:
                return
            touched.add(claim.batch_id)
            await work(ctx, claim)

    await asyncio.gather(*(worker() for _ in range(max(1, workers))))
    return touched
