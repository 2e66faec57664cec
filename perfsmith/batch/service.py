"""`BatchService`: what the CLI, the API and `serve` do with batches. Submit a file (checked
whole, then stored), work the queue (the local pool or a Ray cluster), cancel, resume, and
the morning report (written when a batch's last job ends; built live before that)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from perfsmith.batch.report import html_report, markdown_report
from perfsmith.batch.spec import BatchSpec, deadline_from, load_batch, parse_batch
from perfsmith.batch.worker import LEASE_S, JobListener, WorkerContext
from perfsmith.config import Settings
from perfsmith.errors import StorageError
from perfsmith.storage.batches import BatchStore
from perfsmith.storage.db import Database
from perfsmith.storage.models import Batch, utcnow

if TYPE_CHECKING:
    from perfsmith.llm.base import ChatModel
    from perfsmith.sandbox.base import Sandbox
    from perfsmith.workflows.base import Workflow

log = logging.getLogger(__name__)


class BatchService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.store = BatchStore(db)

    # -- submitting ------------------------------------------------------------------

    def submit_file(self, path: Path, *, tenant: str | None = None) -> str:
        return self._store(load_batch(path), tenant)

    def submit_text(
        self, text: str, *, workspace: Path, server_llm: str, tenant: str | None = None
    ) -> str:
        """A batch sent to a server: its paths lie in the server's ``workspace``, its
        jobs use the server's model."""
        spec = parse_batch(text, base=workspace, source_name="batch", server_llm=server_llm)
        return self._store(spec, tenant)

    def _store(self, spec: BatchSpec, tenant: str | None) -> str:
        batch_id = self.store.create_batch(
            name=spec.name,
            source=spec.source,
            budgets=spec.budgets,
            deadline=spec.deadline,
            jobs=spec.jobs,
            tenant=tenant,
        )
        log.info("batch %s (%s): %d jobs submitted", batch_id, spec.name, len(spec.jobs))
        return batch_id

    # -- reading ---------------------------------------------------------------------

    def get(self, batch_id: str, *, tenant: str | None = None) -> Batch:
        return self.store.get_batch(batch_id, tenant=tenant)

    def batches(self, *, limit: int = 20, tenant: str | None = None) -> list[Batch]:
        return self.store.list_batches(limit=limit, tenant=tenant)

    def report(self, batch_id: str, fmt: str = "md", *, tenant: str | None = None) -> str:
        """The batch's report: the stored one once it ended, else as it stands now."""
        batch = self.get(batch_id, tenant=tenant)
        if fmt not in ("md", "html"):
            raise StorageError(f"report format must be md or html, not {fmt!r}")
        stored = batch.report_md if fmt == "md" else batch.report_html
        if stored is not None and batch.status == "ended":
            return stored
        return markdown_report(batch) if fmt == "md" else html_report(batch)

    # -- ending and resuming ---------------------------------------------------------

    def cancel(self, batch_id: str) -> int:
        cancelled = self.store.cancel_batch(batch_id)
        self.finish(batch_id)
        return cancelled

    def requeue(self, batch_id: str, *, until: str | None = None) -> int:
        """Queue a stopped batch's unfinished jobs again (see `BatchStore.resume_batch`);
        ``until`` sets a new deadline."""
        deadline = deadline_from(until, datetime.now(UTC)) if until else None
        return self.store.resume_batch(batch_id, deadline=deadline)

    def finish(self, batch_id: str) -> bool:
        """End the batch if no job is left to run, with its report stored; True when this
        call ended it."""
        batch = self.get(batch_id)
        if batch.status == "ended" or self.store.unfinished(batch_id):
            return False
        batch.status, batch.ended_at = "ended", utcnow()
        ended = self.store.end(
            batch_id,
            ended_at=batch.ended_at,
            report_md=markdown_report(batch),
            report_html=html_report(batch),
        )
        if ended:
            log.info("batch %s ended; its report is stored", batch_id)
        return ended

    # -- working ---------------------------------------------------------------------

    def workers_for(self, batch_ids: Sequence[str] | None) -> int:
        """The concurrency the active batches ask for (the largest)."""
        budgets = self.store.active_budgets(batch_ids or None)
        return max((int(b.get("concurrency", 1)) for b in budgets), default=1)

    async def work(
        self,
        batch_ids: Sequence[str] | None = None,
        *,
        workers: int | None = None,
        ray: str | None = None,
        backend: str = "auto",
        listeners: Sequence[JobListener] = (),
        lease_s: float = LEASE_S,
        sandbox: Sandbox | None = None,
        models: dict[str, ChatModel] | None = None,
        workflows: Mapping[str, Workflow] | None = None,
    ) -> list[str]:
        """Work the queue until no job is left to start (here, or on the Ray cluster at
        ``ray``); returns the batches that ended. A ``sandbox`` and ``models`` (by spec)
        given are shared with the caller (a server's)."""
        import asyncio

        count = workers if workers else await asyncio.to_thread(self.workers_for, batch_ids)
        ctx = WorkerContext(
            db=self.db,
            settings=self.settings,
            backend=backend,
            lease_s=lease_s,
            listeners=list(listeners),
            shared_sandbox=sandbox,
            workflows=workflows,
        )
        ctx.models.update(models or {})
        try:
            if ray:
                from perfsmith.batch.ray_pool import work_on_ray

                touched = await work_on_ray(ctx, address=ray, workers=count, batch_ids=batch_ids)
            else:
                from perfsmith.batch.pool import work_locally

                touched = await work_locally(ctx, workers=count, batch_ids=batch_ids)
        finally:
            await ctx.close()
        ended = []
        for batch_id in sorted(touched | set(batch_ids or ())):
            if await asyncio.to_thread(self.finish, batch_id):
                ended.append(batch_id)
        return ended
