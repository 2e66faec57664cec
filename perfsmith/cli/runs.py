"""`perfsmith runs ...`: list, show, cancel and resume stored runs; eff@k over a suite."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from perfsmith.cli.common import (
    LLM_HELP,
    DbOption,
    JsonOption,
    ServerOption,
    TokenOption,
    err,
    execute,
    fail,
    guard,
    open_database,
    out,
    run_async,
    settings_for,
)
from perfsmith.cli.results import print_outcome

if TYPE_CHECKING:
    from perfsmith.api.client import Client
    from perfsmith.api.schemas import RunOut

runs_app = typer.Typer(help="Inspect and resume stored runs.", no_args_is_help=True)


@runs_app.command("list")
def runs_list(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """The most recent runs."""
    if server:
        from perfsmith.cli import remote

        remote.runs_list(
            server, token, out, err, limit=limit, offset=offset, status=status, as_json=as_json
        )
        return
    from perfsmith.storage.runs import RunStore

    rows = guard(
        lambda: RunStore(open_database(db)).list_runs(limit=limit, offset=offset, status=status)
    )
    if as_json:
        out.print_json(
            json.dumps(
                [
                    {
                        "id": r.id,
                        "kind": r.kind,
                        "status": r.status,
                        "request": r.request,
                        "created_at": r.created_at.isoformat(),
                        "answer": r.answer,
                    }
                    for r in rows
                ]
            )
        )
        return
    from rich.table import Table

    table = Table("id", "kind", "status", "created", "request")
    for r in rows:
        table.add_row(
            r.id, r.kind, r.status, r.created_at.strftime("%Y-%m-%d %H:%M:%S"), r.request[:60]
        )
    out.print(table if rows else "no runs yet")


def known_run(url: str, run_id: str) -> None:
    """A run id that is surely not in the database is a clear error at once, before the
    database layer loads."""
    from perfsmith.errors import RunNotFoundError
    from perfsmith.storage.probe import run_missing

    if run_missing(url, run_id):
        fail(str(RunNotFoundError(run_id)))


def _show_run(url: str, run_id: str, as_json: bool) -> None:
    from perfsmith.console import dag_rows, dag_table
    from perfsmith.storage.db import Database
    from perfsmith.storage.runs import RunStore

    store = RunStore(Database(url))
    row = store.get_run(run_id)
    plans = store.plans(run_id)
    tasks = store.tasks(run_id)
    dag = dag_rows(tasks, [t.result_text for t in tasks])
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "id": row.id,
                    "status": row.status,
                    "request": row.request,
                    "answer": row.answer,
                    "error": row.error,
                    "plans": [
                        {
                            "round": p.round,
                            "text": p.text,
                            "decision": p.decision,
                            "thought": p.thought,
                        }
                        for p in plans
                    ],
                    "tasks": [
                        {
                            "round": d.round,
                            "idx": d.idx,
                            "tool": d.tool,
                            "deps": d.deps,
                            "status": d.status,
                            "start_s": d.start_s,
                            "run_s": d.run_s,
                            "wait_s": d.wait_s,
                            "reused": d.reused,
                            "result": d.note[:2000],
                        }
                        for d in dag
                    ],
                }
            )
        )
        return
    out.print(f"[bold]run {row.id}[/] ({row.kind}) · [bold]{row.status}[/]")
    out.print(f"request: {escape(row.request)}")
    for p in plans:
        out.print(
            f"round {p.round}: joiner said {p.decision or '-'}"
            + (f" · {escape(p.thought)}" if p.thought else "")
        )
    out.print(dag_table(dag, title="tasks"))
    if row.answer:
        out.print(f"[bold]answer:[/] {escape(row.answer)}")
    if row.error:
        out.print(f"[red]error:[/] {escape(row.error)}")


@runs_app.command("eff-at-k")
def runs_eff_at_k(
    kind: Annotated[
        str, typer.Option(help="Which runs form the suite: optimize or kernel.")
    ] = "optimize",
    last: Annotated[int, typer.Option(min=1, max=100_000, help="The most recent N runs.")] = 100,
    k: Annotated[
        list[int] | None, typer.Option("-k", min=1, max=1000, help="k values (repeatable).")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """eff@k (ENAMEL) over a suite of stored runs: each run is a problem, its candidates the
    samples; a wrong candidate scores 0, a timed one its efficiency (1 at the original's
    speed, up to 2)."""
    from perfsmith.storage.runs import RunStore
    from perfsmith.verifiers.python.suite import candidate_efficiency, suite_eff_at_k

    if kind not in ("optimize", "kernel"):
        raise typer.BadParameter("choose optimize or kernel", param_hint="--kind")
    ks = sorted(set(k or [1, 3, 5]))

    def load() -> list[list[float]]:
        problems = []
        for verdicts in RunStore(open_database(db)).verdicts_by_run(kind=kind, last=last):
            scores = [candidate_efficiency(v, sp) for v, sp in verdicts]
            scored = [x for x in scores if x is not None]
            if scored:
                problems.append(scored)
        return problems

    problems = guard(load)
    results = suite_eff_at_k(problems, ks)
    if as_json:
        sys.stdout.write(
            json.dumps(
                {
                    "kind": kind,
                    "problems": len(problems),
                    "eff_at_k": [{"k": r.k, "eff": r.eff, "problems": r.problems} for r in results],
                }
            )
            + "\n"
        )
        return
    out.print(f"{len(problems)} {kind} runs with scored candidates")
    for r in results:
        value = "-" if r.eff is None else f"{r.eff:.3f}"
        out.print(f"eff@{r.k}: {value} (over {r.problems} runs with at least {r.k} candidates)")


@runs_app.command("show")
def runs_show(
    run_id: str,
    db: DbOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """A run's plans and its task DAG with each task's status and timings."""
    if server:
        from perfsmith.cli import remote

        remote.runs_show(server, token, out, err, run_id, as_json)
        return
    settings = settings_for(db)
    known_run(settings.resolved_database_url(), run_id)
    guard(lambda: _show_run(settings.resolved_database_url(), run_id, as_json))


@runs_app.command("cancel")
def runs_cancel(
    run_id: str, db: DbOption = None, server: ServerOption = None, token: TokenOption = None
) -> None:
    """Stop a run: on a server, its work stops; here, a run whose process is gone (killed,
    crashed) is marked cancelled. Either way `runs resume` can finish it later."""
    if server:
        from perfsmith.cli import remote

        run = remote.call(server, token, err, lambda c: c.runs.cancel(run_id))
        out.print(f"{run.id}: {run.status}")
        return
    known_run(settings_for(db).resolved_database_url(), run_id)
    from perfsmith.service.runs import RunService

    database = guard(lambda: open_database(db))
    run_async(RunService(database, settings_for(db)).cancel(run_id))
    out.print(f"{run_id}: cancelled")


@runs_app.command("resume")
def runs_resume(
    run_id: str,
    llm: Annotated[
        str | None, typer.Option("--llm", help="Override the stored LLM: " + LLM_HELP)
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Finish an interrupted run; tasks that completed are not executed again."""
    if server:
        from perfsmith.cli import remote

        if llm:
            raise typer.BadParameter("the server runs its own LLM", param_hint="--llm")

        async def go(client: Client) -> RunOut:
            await client.runs.resume(run_id)
            return await remote.follow(client, run_id, [])

        done = remote.call(server, token, err, go)
        out.print(f"{done.status}: {done.answer or done.error or ''}", markup=False)
        if done.status != "done":
            raise typer.Exit(1)
        return
    settings = settings_for(db)
    known_run(settings.resolved_database_url(), run_id)
    from perfsmith.service.library import resume

    result = execute(
        lambda listeners: resume(run_id, llm=llm, settings=settings, listeners=listeners), as_json
    )
    print_outcome(result, as_json)
