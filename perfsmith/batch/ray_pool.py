"""Batch jobs on an existing Ray cluster: this process (the driver) claims jobs from the
durable queue and starts each as a Ray task, which works it through the run service on
whichever node Ray picks and writes its results to the shared database (PostgreSQL when
the nodes are machines of their own; one SQLite file serves nodes of one machine).

A task lost with its node (or its worker process) puts the job back in the queue; its run
is resumed by the next attempt, reusing its finished tasks and verified candidates. The
driver holds the jobs' leases (its tasks renew them), so a driver killed with -9 leaves
them to `batch resume`, and Ray stops the driver's tasks with it.

Timing follows the machine's timing slot (`perfsmith.verifiers.slot`): a per-machine lock
held for each measurement only. A Ray resource would be held for a task's whole life, and
so would keep builds, profiling and LLM calls from running beside a measurement.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from perfsmith.batch.worker import WorkerContext, work
from perfsmith.config import Settings
from perfsmith.errors import PerfsmithError
from perfsmith.storage.batches import BatchStore, Claim

if TYPE_CHECKING:
    from perfsmith.storage.db import Database
    from perfsmith.workflows.base import Workflow

log = logging.getLogger(__name__)

# one event loop and one context per Ray worker process, kept across its tasks: its
# sandbox and its models (a local model loads once per process)
_LOOP: asyncio.AbstractEventLoop | None = None
_CONTEXTS: dict[tuple[str, str, float], WorkerContext] = {}


def _context(db_url: str, settings: dict[str, Any], backend: str, lease_s: float) -> WorkerContext:
    from perfsmith.storage.db import Database

    key = (db_url, backend, lease_s)
    if key not in _CONTEXTS:
        db: Database = Database(db_url)
        _CONTEXTS[key] = WorkerContext(
            db=db, settings=Settings(**settings), backend=backend, lease_s=lease_s
        )
    return _CONTEXTS[key]


def ray_job(
    db_url: str,
    settings: dict[str, Any],
    backend: str,
    lease_s: float,
    claim: Claim,
    workflows: Mapping[str, Workflow] | None = None,
) -> tuple[str, str]:
    """A Ray task: one claimed job worked to its end on this node."""
    global _LOOP
    if _LOOP is None:
        _LOOP = asyncio.new_event_loop()
    ctx = _context(db_url, settings, backend, lease_s)
    ctx.workflows = workflows
    return _LOOP.run_until_complete(work(ctx, claim))


def connect(address: str) -> None:
    """Join the Ray cluster at ``address`` (``auto``: the one this machine belongs to)."""
    try:
        import ray
    except ImportError:
        raise PerfsmithError(
            "--ray needs Ray: pip install 'ray>=2.40' (on every node of the cluster)"
        ) from None
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, namespace="perfsmith", log_to_driver=False)
    except ConnectionError as exc:
        raise PerfsmithError(
            f"cannot reach the Ray cluster at {address!r}: {exc}; start one with "
            "`ray start --head` or give its address (host:6379)"
        ) from None


async def work_on_ray(
    ctx: WorkerContext, *, address: str, workers: int, batch_ids: Sequence[str] | None = None
) -> set[str]:
    """Work the queue on the Ray cluster at ``address``, ``workers`` jobs at once;
    returns the batches whose jobs were worked on."""
    import ray
    from ray.exceptions import RayError

    await asyncio.to_thread(connect, address)
    remote = ray.remote(max_retries=0, num_cpus=1)(ray_job)
    store = BatchStore(ctx.db)
    settings = ctx.settings.model_dump()
    running: dict[Any, tuple[Claim, float]] = {}
    touched: set[str] = set()
    try:
        while True:
            while len(running) < max(1, workers):
                claim = await asyncio.to_thread(
                    store.claim, lease_s=ctx.lease_s, batch_ids=batch_ids
                )
                if claim is None:
                    break
                touched.add(claim.batch_id)
                ctx.tell(claim.name, "running", f"attempt {claim.attempt} on Ray")
                ref = remote.remote(
                    ctx.db.url, settings, ctx.backend, ctx.lease_s, claim, ctx.workflows
                )
                running[ref] = (claim, time.monotonic())
            if not running:
                return touched
            done, _ = await asyncio.to_thread(
                ray.wait, list(running), num_returns=1, timeout=ctx.lease_s / 3
            )
            for ref in done:
                claim, started = running.pop(ref)
                try:
                    status, detail = await asyncio.to_thread(ray.get, ref)
                except RayError as exc:
                    # Ray's messages run to paragraphs: their first sentence says it
                    first = str(exc).split(". ", 1)[0][:300]
                    why = f"its Ray task was lost ({type(exc).__name__}: {first})"
                    log.warning("job %s: %s", claim.name, why)
                    status = await asyncio.to_thread(
                        store.settle,
                        claim,
                        "failed",
                        error=why,
                        elapsed_s=time.monotonic() - started,
                        retry=True,
                    )
                    ctx.tell(claim.name, status, why)
                else:
                    ctx.tell(claim.name, status, detail)
    finally:
        for ref in running:
            ray.cancel(ref, force=True)
