"""One batch job worked to its end through the `RunService`: a new job starts its run, a
job claimed again (its worker died) resumes it, so finished tasks and verified candidates
are reused, not redone. The worker renews the job's lease while the run goes, stops it at
the job's wall-time cap or when its batch is cancelled, and settles the job with what the
run achieved."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfsmith.batch.report import speed_text
from perfsmith.batch.results import run_summary
from perfsmith.config import Settings
from perfsmith.errors import LLMError, PerfsmithError
from perfsmith.llm.metered import MeteredModel
from perfsmith.paths import data_dir
from perfsmith.service.resources import Resources
from perfsmith.service.runs import RunService, error_text
from perfsmith.storage.batches import BatchStore, Claim
from perfsmith.storage.db import Database
from perfsmith.storage.runs import RunStore

if TYPE_CHECKING:
    from perfsmith.llm.base import ChatModel
    from perfsmith.sandbox.base import Sandbox
    from perfsmith.workflows.base import Workflow

log = logging.getLogger(__name__)

LEASE_S = 60.0
# what a job's progress line is called with: (job name, status, detail)
JobListener = Callable[[str, str, str], None]


class _StoppedError(Exception):
    """Why this worker stopped a job's run before it ended."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class WorkerContext:
    """What the workers of one process share: the database, the settings, one sandbox
    (opened on first use) and one model per LLM spec (a local model loads once)."""

    db: Database
    settings: Settings
    backend: str = "auto"
    lease_s: float = LEASE_S
    workdir: Path = field(default_factory=lambda: data_dir() / "batches")
    listeners: list[JobListener] = field(default_factory=list)
    shared_sandbox: Sandbox | None = None  # the caller's (a server's): never closed here
    # the run kinds jobs may have (None: every kind perfsmith has)
    workflows: Mapping[str, Workflow] | None = None
    models: dict[str, ChatModel] = field(default_factory=dict)
    _sandbox: Resources | None = None

    def model(self, spec: str | None) -> ChatModel | None:
        if spec is None or spec == "none":
            return None
        if spec not in self.models:
            from perfsmith.llm.factory import model_from_spec

            self.models[spec] = model_from_spec(spec, self.settings)
        return self.models[spec]

    async def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = Resources(
                self.settings, sandbox=self.shared_sandbox, backend=self.backend
            )
        return await self._sandbox.sandbox()

    async def close(self) -> None:
        if self._sandbox is not None:
            await self._sandbox.close()

    def tell(self, name: str, status: str, detail: str = "") -> None:
        for listener in self.listeners:
            listener(name, status, detail)


def _clone(url: str, into: Path) -> Path:
    """The night's copy of a repository named by URL (cloned once; a retry reuses it)."""
    if (into / ".git").exists():
        return into
    into.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["git", "clone", "--quiet", url, str(into)],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if done.returncode != 0:
        raise PerfsmithError(f"cannot clone {url}: {done.stderr.strip()[-500:]}")
    return into


async def _prepare(ctx: WorkerContext, claim: Claim) -> dict[str, Any]:
    """The run's config, with a repository named by URL cloned first."""
    config = dict(claim.config)
    url = config.pop("clone", None)
    if url:
        folder = ctx.workdir / claim.batch_id / f"job-{claim.job_id}"
        config["repo"] = str(await asyncio.to_thread(_clone, str(url), folder))
    return config


async def work(ctx: WorkerContext, claim: Claim) -> tuple[str, str]:
    """Work the claimed job to its end; returns the status it was settled with (`lost`:
    another worker holds it now, nothing was written) and a word on it (the speedup, or
    why it failed)."""
    store = BatchStore(ctx.db)
    started = time.monotonic()
    ctx.tell(claim.name, "running", f"attempt {claim.attempt}")
    log.info("job %s (%s): attempt %d", claim.name, claim.kind, claim.attempt)
    model: MeteredModel | None = None
    run_id = claim.run_id
    status, error, retry = "done", None, False
    try:
        config = await _prepare(ctx, claim)
        base = ctx.model(claim.llm)
        cap = claim.budgets.get("tokens")
        model = MeteredModel(base, int(cap) if cap else None) if base is not None else None
        resources = Resources(ctx.settings, sandbox=await ctx.sandbox(), llm=model or "none")
        service = RunService(ctx.db, ctx.settings, ctx.workflows)
        if run_id is None:
            run_id = await service.create(claim.kind, config, tenant=claim.tenant)
            await asyncio.to_thread(store.set_run, claim, run_id)
        await _run_leased(ctx, store, claim, service, run_id, resources)
    except _StoppedError as stop:
        status, error = stop.status, stop.reason
    except (asyncio.CancelledError, KeyboardInterrupt):
        # this worker is stopping (the process is shutting down): the job goes back to
        # the queue for the next worker, its run resumable
        await asyncio.shield(
            asyncio.to_thread(
                store.release,
                claim,
                tokens=model.used if model else 0,
                elapsed_s=time.monotonic() - started,
            )
        )
        raise
    except LLMError as exc:
        status, error, retry = "failed", error_text(exc), not exc.refused
    except PerfsmithError as exc:
        status, error = "failed", error_text(exc)
    except Exception as exc:  # a fault of this worker, not of the job: try it again
        log.exception("job %s failed", claim.name)
        status, error, retry = "failed", error_text(exc), True
    summary = await asyncio.to_thread(run_summary, RunStore(ctx.db), run_id) if run_id else None
    written = await asyncio.to_thread(
        store.settle,
        claim,
        status,
        error=error,
        summary=summary,
        tokens=model.used if model else 0,
        elapsed_s=time.monotonic() - started,
        retry=retry,
    )
    detail = error or speed_text(summary or {})
    ctx.tell(claim.name, written, detail)
    log.info("job %s: %s%s", claim.name, written, f" ({detail})" if detail else "")
    return written, detail


async def _run_leased(
    ctx: WorkerContext,
    store: BatchStore,
    claim: Claim,
    service: RunService,
    run_id: str,
    resources: Resources,
) -> None:
    """The run to its end, resumed when an earlier attempt began it; the lease renewed
    every third of its length; stopped at the wall-time cap or when the batch is
    cancelled (`_StoppedError`)."""
    row = await asyncio.to_thread(service.store.get_run, run_id)
    if row.status == "done":
        return  # an earlier attempt finished it and died before settling the job
    if row.status == "pending":  # stored, never begun (its worker died in between)
        coro = service.start(claim.kind, {}, run_id=run_id, resources=resources)
    else:
        coro = service.resume(run_id, resources=resources)
    task: asyncio.Task[Any] = asyncio.ensure_future(coro)
    cap_s = float(claim.budgets.get("job_wall_s") or 0) - claim.elapsed_s
    deadline = time.monotonic() + cap_s if cap_s > 0 else None
    stop: _StoppedError | None = None
    try:
        while not task.done():
            wait = ctx.lease_s / 3
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - time.monotonic()))
            await asyncio.wait({task}, timeout=wait)
            if task.done():
                break
            if deadline is not None and time.monotonic() >= deadline:
                stop = _StoppedError(
                    "failed", f"wall-time cap reached ({claim.budgets['job_wall_s']:g} s)"
                )
                break
            state = await asyncio.to_thread(store.renew, claim, lease_s=ctx.lease_s)
            if state == "cancelled":
                stop = _StoppedError("cancelled", "cancelled")
                break
            if state == "lost":
                stop = _StoppedError("lost", "another worker took the job over")
                break
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if stop is not None:
        raise stop
    task.result()
