"""`perfsmith batch ...`: overnight batches. Submit a batch file, work the queue (here or
on a Ray cluster), watch it, cancel or resume it, read the morning report."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from perfsmith.cli.common import (
    BackendOption,
    DbOption,
    JsonOption,
    check_backend,
    fail,
    guard,
    out,
    plain_line,
    run_async,
    settings_for,
    usage_error,
)

if TYPE_CHECKING:
    from perfsmith.batch.service import BatchService
    from perfsmith.storage.models import Batch

batch_app = typer.Typer(
    help="Overnight batches: many repositories, functions and kernel suites, unattended.",
    no_args_is_help=True,
)

WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers", min=1, max=256, help="Jobs at once (default: the batch's concurrency)."
    ),
]
RayOption = Annotated[
    str | None,
    typer.Option(
        "--ray",
        help="Run the jobs on a Ray cluster: 'auto' (the one this machine is part of) or "
        "its address (host:6379). Default: a local pool in this process.",
    ),
]


def _service(db: str | None) -> BatchService:
    from perfsmith.batch.service import BatchService
    from perfsmith.storage.db import Database

    settings = settings_for(db)
    return BatchService(Database(settings.resolved_database_url()), settings)


def _batch_json(batch: Batch) -> dict[str, Any]:
    from perfsmith.batch.report import totals

    return {
        "id": batch.id,
        "name": batch.name,
        "status": batch.status,
        "deadline": batch.deadline.isoformat() if batch.deadline else None,
        "created_at": batch.created_at.isoformat(),
        "totals": totals(batch),
        "jobs": [
            {
                "name": j.name,
                "kind": j.kind,
                "status": j.status,
                "attempts": j.attempts,
                "run_id": j.run_id,
                "error": j.error,
                "elapsed_s": round(j.elapsed_s, 1),
                "tokens": j.tokens,
                "summary": j.summary,
            }
            for j in batch.jobs
        ],
    }


@batch_app.command("submit")
def batch_submit(
    file: Annotated[Path, typer.Argument(help="The batch file (TOML).")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check a batch file and store it (every problem listed, nothing stored, when it
    cannot run); prints its id. `perfsmith batch run` works it."""
    from perfsmith.errors import BatchFileError

    service = guard(lambda: _service(db))

    def submit() -> str:
        try:
            return service.submit_file(file)
        except BatchFileError as exc:  # the user's input: exit 2
            usage_error(str(exc))

    batch_id = guard(submit)
    if as_json:
        sys.stdout.write(json.dumps({"id": batch_id}) + "\n")
        return
    batch = service.get(batch_id)
    out.print(f"batch {batch_id}: {len(batch.jobs)} jobs queued")
    out.print(f"work it with: perfsmith batch run {batch_id}")


class _Progress:
    """A job's progress, as the workers report it: a bar per batch in a terminal, one
    plain line per job start and end in a log or a pipe."""

    def __init__(self, service: BatchService, batch_ids: list[str] | None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        batches = [service.get(b) for b in batch_ids] if batch_ids else service.batches()
        active = [b for b in batches if b.status == "active"]
        self.live = out.is_terminal
        self.progress = Progress(
            "[bold]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=out,
            disable=not self.live,
        )
        self.bar = self.progress.add_task(
            ", ".join(b.name for b in active) or "queue",
            total=sum(len(b.jobs) for b in active),
            completed=sum(
                1 for b in active for j in b.jobs if j.status not in ("queued", "running")
            ),
        )

    def __call__(self, name: str, status: str, detail: str) -> None:
        line = f"{status:>9}  {name}" + (f"  ({detail})" if detail else "")
        if not self.live:
            plain_line(line)
            return
        colour = {"done": "green", "failed": "red", "running": "blue"}.get(status, "white")
        self.progress.console.print(f"[{colour}]{escape(line)}[/]")
        if status in ("done", "failed", "cancelled", "skipped"):
            self.progress.advance(self.bar)


def _work(
    service: BatchService,
    batch_ids: list[str] | None,
    *,
    workers: int | None,
    ray: str | None,
    backend: str,
    as_json: bool,
) -> None:
    check_backend(backend)
    progress = _Progress(service, batch_ids)
    listeners = [] if as_json else [progress]
    with progress.progress:
        ended = run_async(
            service.work(
                batch_ids or None, workers=workers, ray=ray, backend=backend, listeners=listeners
            )
        )
    shown = batch_ids or ended
    batches = [service.get(b) for b in shown]
    if as_json:
        sys.stdout.write(json.dumps([_batch_json(b) for b in batches]) + "\n")
    else:
        for batch in batches:
            _print_batch(batch)
    if any(j.status == "failed" for b in batches for j in b.jobs):
        raise typer.Exit(1)


@batch_app.command("run")
def batch_run(
    batch_ids: Annotated[
        list[str] | None, typer.Argument(help="The batches to work (default: every one).")
    ] = None,
    workers: WorkersOption = None,
    ray: RayOption = None,
    backend: BackendOption = "auto",
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Work the queue until no job is left to start (or the deadline passes); several
    `batch run` processes may share one queue. Exit 1 when a job failed."""
    service = guard(lambda: _service(db))
    for batch_id in batch_ids or []:
        guard(lambda b=batch_id: service.get(b))  # type: ignore[misc]
    _work(service, batch_ids, workers=workers, ray=ray, backend=backend, as_json=as_json)


def _print_batch(batch: Batch) -> None:
    from rich.table import Table

    from perfsmith.batch.report import speed_text, totals

    t = totals(batch)
    status = ", ".join(f"{n} {s}" for s, n in t["by_status"].items())
    out.print(f"[bold]batch {batch.id}[/] ({escape(batch.name)}) · {batch.status} · {status}")
    table = Table("job", "kind", "status", "speedup [95% CI]", "tries", "time", "note")
    for j in batch.jobs:
        table.add_row(
            escape(j.name[:50]),
            j.kind,
            j.status,
            speed_text(j.summary or {}),
            str(j.attempts),
            f"{j.elapsed_s:.0f}s",
            escape((j.error or "")[:80]),
        )
    out.print(table)


@batch_app.command("status")
def batch_status(
    batch_id: Annotated[str | None, typer.Argument(help="A batch (default: list them).")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """A batch's jobs with their status and best verified speedup; without an id, the
    most recent batches."""
    service = guard(lambda: _service(db))
    if batch_id is None:
        batches = guard(service.batches)
        if as_json:
            sys.stdout.write(json.dumps([_batch_json(b) for b in batches]) + "\n")
            return
        from rich.table import Table

        from perfsmith.batch.report import totals

        table = Table("id", "name", "status", "jobs", "created")
        for b in batches:
            t = totals(b)
            counts = ", ".join(f"{n} {s}" for s, n in t["by_status"].items())
            table.add_row(b.id, escape(b.name), b.status, counts, f"{b.created_at:%Y-%m-%d %H:%M}")
        out.print(table if batches else "no batches yet")
        return
    batch = guard(lambda: service.get(batch_id))
    if as_json:
        sys.stdout.write(json.dumps(_batch_json(batch)) + "\n")
        return
    _print_batch(batch)


@batch_app.command("report")
def batch_report(
    batch_id: str,
    fmt: Annotated[str, typer.Option("--format", help="md or html.")] = "md",
    output: Annotated[Path | None, typer.Option("--out", help="Write it to this file.")] = None,
    db: DbOption = None,
) -> None:
    """The morning report: a row per job (best verified speedup with its interval, kept
    commits, time, tokens, failures), kernel suites' fast_1, and plots (HTML)."""
    if fmt not in ("md", "html"):
        raise typer.BadParameter("choose md or html", param_hint="--format")
    service = guard(lambda: _service(db))
    text = guard(lambda: service.report(batch_id, fmt))
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    out.print(f"report written to {output}")


@batch_app.command("cancel")
def batch_cancel(batch_id: str, db: DbOption = None) -> None:
    """Stop a batch: queued jobs are cancelled at once, running ones when their worker
    next renews its lease (within 20 s). `batch resume` takes it up again."""
    service = guard(lambda: _service(db))
    queued = guard(lambda: service.cancel(batch_id))
    out.print(f"batch {batch_id}: cancelled ({queued} queued job(s) will not start)")


@batch_app.command("resume")
def batch_resume(
    batch_id: str,
    until: Annotated[
        str | None, typer.Option("--until", help="A new deadline: HH:MM or an ISO date-time.")
    ] = None,
    queue_only: Annotated[
        bool, typer.Option("--queue-only", help="Queue its jobs again; do not work them here.")
    ] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
    workers: WorkersOption = None,
    ray: RayOption = None,
    backend: BackendOption = "auto",
) -> None:
    """Take up a stopped batch (cancelled, past its deadline, its `batch run` killed):
    unfinished jobs are queued again and their runs resumed, reusing finished tasks and
    verified candidates; then the queue is worked as `batch run` does."""
    service = guard(lambda: _service(db))

    def requeue() -> int:
        try:
            return service.requeue(batch_id, until=until)
        except ValueError as exc:  # the new deadline: the user's input, exit 2
            usage_error(str(exc))

    queued = guard(requeue)
    if not as_json:
        out.print(f"batch {batch_id}: {queued} job(s) queued again")
    if queue_only:
        return
    _work(service, [batch_id], workers=workers, ray=ray, backend=backend, as_json=as_json)
