"""The CLI driving a remote `perfsmith serve` through `perfsmith.Client` (`--server URL`):
the same commands and output, the work done on the server."""

from __future__ import annotations

import ast
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from perfsmith.api.client import ApiError, Client
from perfsmith.api.schemas import EventOut, OptimizeRunCreate, RunOut
from perfsmith.console import LiveProgress, dag_rows, dag_table

T = TypeVar("T")


class RemoteUsageError(Exception):
    """A command line that cannot work against a server (exit code 2)."""


def call(
    server: str, token: str | None, err: Console, work: Callable[[Client], Coroutine[Any, Any, T]]
) -> T:
    """Run `work` with a client; API errors become one line and exit code 1."""

    async def go() -> T:
        async with Client(server, token) as client:
            return await work(client)

    try:
        return asyncio.run(go())
    except ApiError as exc:
        hint = " (pass --token or set PERFSMITH_TOKEN)" if exc.status == 401 else ""
        err.print(f"[red]error:[/] {escape(str(exc))}{hint}")
        raise typer.Exit(1) from exc


def as_event(run_id: str, event: EventOut) -> dict[str, Any]:
    """An event from the server in the shape local listeners get."""
    return {**event.model_dump(mode="json"), "run_id": run_id, "payload": event.payload.fields()}


async def follow(
    client: Client, run_id: str, listeners: list[Callable[[dict[str, Any]], None]]
) -> RunOut:
    async for event in client.runs.events(run_id):
        for listener in listeners:
            listener(as_event(run_id, event))
    return await client.runs.get(run_id)


def runs_list(
    server: str,
    token: str | None,
    out: Console,
    err: Console,
    *,
    limit: int,
    offset: int,
    status: str | None,
    as_json: bool,
) -> None:
    page = call(
        server,
        token,
        err,
        lambda c: c.runs.list(limit=min(limit, 200), offset=offset, status=status),
    )
    if as_json:
        sys.stdout.write(json.dumps([r.model_dump(mode="json") for r in page.items]) + "\n")
        return
    from rich.table import Table

    table = Table("id", "kind", "status", "created", "request")
    for r in page.items:
        table.add_row(
            r.id,
            r.kind,
            r.status,
            f"{r.created_at:%Y-%m-%d %H:%M:%S}",
            (r.message or r.request)[:60],
        )
    out.print(table if page.items else "no runs yet")


def runs_show(
    server: str, token: str | None, out: Console, err: Console, run_id: str, as_json: bool
) -> None:
    async def load(c: Client) -> tuple[Any, ...]:
        return await asyncio.gather(
            c.runs.get(run_id),
            c.runs.plans(run_id),
            c.runs.tasks(run_id),
            c.runs.candidates(run_id),
        )

    run, plans, tasks, candidates = call(server, token, err, load)
    if as_json:
        sys.stdout.write(
            json.dumps(
                {
                    **run.model_dump(mode="json"),
                    "plans": [p.model_dump(mode="json") for p in plans],
                    "tasks": [t.model_dump(mode="json") for t in tasks],
                    "candidates": [
                        c.model_dump(mode="json", exclude={"measurements"}) for c in candidates
                    ],
                }
            )
            + "\n"
        )
        return
    rows = dag_rows(tasks, [t.result for t in tasks])
    out.print(f"[bold]run {run.id}[/] ({run.kind}) · [bold]{run.status}[/]")
    out.print(f"request: {escape(run.message or run.request)}")
    for p in plans:
        out.print(f"round {p.round}: joiner said {p.decision or '-'}")
    out.print(dag_table(rows, title="tasks"))
    for c in candidates:
        speed = "-" if c.speedup is None else f"{c.speedup:.2f}x"
        out.print(f"candidate {c.id} ({c.origin}): {c.verdict} {speed}", markup=False)
    if run.answer:
        out.print(f"[bold]answer:[/] {escape(run.answer)}")
    if run.error:
        out.print(f"[red]error:[/] {escape(run.error)}")


def read_function(spec: str, what: str) -> tuple[str, str]:
    """`FILE::FUNC` read here, to send its file's code to the server."""
    path_text, sep, func = spec.rpartition("::")
    if not sep or not func.isidentifier():
        raise RemoteUsageError(f"{spec!r} is not FILE::FUNCTION")
    path = Path(path_text)
    try:
        code = path.read_text(encoding="utf-8")
        tree = ast.parse(code)
    except (OSError, UnicodeDecodeError) as exc:
        raise RemoteUsageError(f"cannot read {what} file {path}: {exc}") from exc
    except SyntaxError as exc:
        raise RemoteUsageError(f"{path} has a syntax error on line {exc.lineno}") from exc
    if func not in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}:
        raise RemoteUsageError(f"{path} defines no function {func!r}")
    return code, func


def optimize(
    server: str,
    token: str | None,
    out: Console,
    err: Console,
    *,
    target: str,
    inputs: str | None,
    rounds: int,
    k: int,
    verify_rounds: int,
    as_json: bool,
) -> None:
    """Send the function's file (and the input generator's) to the server, follow the run
    live, print the verdicts and the winning diff."""
    source, function = read_function(target, "target")
    inputs_source = inputs_function = None
    if inputs is not None:
        inputs_source, inputs_function = read_function(inputs, "input generator")
    request = OptimizeRunCreate(
        source=source,
        function=function,
        inputs_source=inputs_source,
        inputs_function=inputs_function,
        rounds=rounds,
        candidates=k,
        verify_rounds=verify_rounds,
    )

    async def work(client: Client) -> tuple[RunOut, list[Any], str]:
        run = await client.runs.create(request)
        if not as_json:
            err.print(f"run {run.id} on {server}")
        if as_json or not out.is_terminal:
            done = await follow(client, run.id, [])
        else:
            with LiveProgress(out) as live:
                done = await follow(client, run.id, [live])
        candidates = await client.runs.candidates(run.id)
        diff = ""
        for artifact in await client.runs.artifacts(run.id):
            if artifact.kind == "diff":
                diff = (await client.runs.artifact(run.id, artifact.id)).decode()
        return done, candidates, diff

    done, candidates, diff = call(server, token, err, work)
    if as_json:
        sys.stdout.write(
            json.dumps(
                {
                    "run_id": done.id,
                    "status": done.status,
                    "answer": done.answer,
                    "error": done.error,
                    "candidates": [
                        c.model_dump(mode="json", exclude={"measurements", "source"})
                        for c in candidates
                    ],
                    "diff": diff,
                }
            )
            + "\n"
        )
    else:
        for c in candidates:
            speed = "-" if c.speedup is None else f"{c.speedup:.2f}x"
            if c.ci_low is not None and c.ci_high is not None:
                speed += f" [{c.ci_low:.2f}, {c.ci_high:.2f}]"
            out.print(f"candidate {c.id} ({c.origin}): {c.verdict} {speed}", markup=False)
        if diff:
            out.print(diff, markup=False, highlight=False)
        out.print(f"{done.status}: {done.answer or done.error or ''}", markup=False)
    if done.status != "done":
        raise typer.Exit(1)
