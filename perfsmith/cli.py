"""`perfsmith ...`: the command line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from perfsmith import cli_remote as remote
from perfsmith.api.client import Client
from perfsmith.api.schemas import RunOut
from perfsmith.cli_kernel import kernel_app
from perfsmith.cli_remote import ServerOption, TokenOption
from perfsmith.cli_server import serve_cmd, tokens_app
from perfsmith.config import load_settings
from perfsmith.console import DagRow, LiveProgress, PlainProgress, dag_rows, dag_table
from perfsmith.errors import PerfsmithError
from perfsmith.llm.factory import SPEC_HELP, default_spec, model_from_settings, model_from_spec
from perfsmith.llm.scripted import ScriptedChatModel
from perfsmith.storage.db import Database
from perfsmith.storage.models import Task
from perfsmith.storage.runs import RunStore
from perfsmith.tools.loader import load_tools

if TYPE_CHECKING:
    from perfsmith.orchestrate import RunResult
    from perfsmith.workflows.optimize import OptimizeResult

T = TypeVar("T")

app = typer.Typer(
    name="perfsmith",
    help="Agentic LLM orchestration that makes Python and kernels faster, with proof.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
runs_app = typer.Typer(help="Inspect and resume stored runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
sandbox_app = typer.Typer(help="Run untrusted code under hard limits.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(kernel_app, name="kernel")
app.add_typer(tokens_app, name="tokens")
app.command("serve")(serve_cmd)

out = Console()
if not out.is_terminal and "COLUMNS" not in os.environ:
    out = Console(width=120)  # logs and pipes: wide enough for the task table
err = Console(stderr=True, soft_wrap=True)  # error messages stay on one line: easy to grep

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="SQLAlchemy database URL (default: PERFSMITH_DATABASE_URL or "
        "SQLite under the data directory)",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def _guard(fn: Callable[[], T]) -> T:
    """Run a command body; known errors become a message and exit code 1."""
    try:
        return fn()
    except PerfsmithError as exc:
        _fail(str(exc))
        raise AssertionError("unreachable") from exc
    except (typer.Exit, KeyboardInterrupt):
        raise
    except Exception as exc:
        if os.environ.get("PERFSMITH_DEBUG"):
            raise
        _fail(f"{type(exc).__name__}: {exc} (set PERFSMITH_DEBUG=1 for a traceback)")
        raise AssertionError("unreachable") from exc


def _run_async(coro: Coroutine[Any, Any, T]) -> T:
    return _guard(lambda: asyncio.run(coro))


def _db(url: str | None) -> Database:
    settings = load_settings(database_url=url)
    return Database(settings.resolved_database_url())


def _print_result(result: RunResult, as_json: bool) -> None:
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "run_id": result.run_id,
                    "status": result.status,
                    "answer": result.answer,
                    "rounds": result.rounds,
                }
            )
        )
        return
    out.print(f"\n[bold]answer:[/] {escape(result.answer)}")
    out.print(
        f"[dim]run {result.run_id} · {result.rounds} round(s) · "
        f"`perfsmith runs show {result.run_id}`[/]"
    )


def _plain_line(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _execute(
    coro_factory: Callable[[list[Callable[[dict[str, Any]], None]]], Coroutine[Any, Any, T]],
    as_json: bool,
) -> T:
    if as_json:
        return _run_async(coro_factory([]))
    if not out.is_terminal:  # a log or a pipe: one plain line per step, as it happens
        return _run_async(coro_factory([PlainProgress(_plain_line)]))
    with LiveProgress(out) as live:
        return _run_async(coro_factory([live]))


@app.command("run")
def run_cmd(
    request: Annotated[str, typer.Argument(help="What to do, in words.")],
    tools: Annotated[
        list[str],
        typer.Option("--tools", help="Module or .py file with @tool functions (repeatable)."),
    ],
    llm: Annotated[str | None, typer.Option("--llm", help=SPEC_HELP)] = None,
    max_replans: Annotated[int | None, typer.Option("--max-replans", min=0)] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Plan and execute a request with the given tools, storing every step."""
    from perfsmith.orchestrate import run

    settings = load_settings(database_url=db)
    llm_spec = llm or default_spec(settings)
    tool_list = _guard(lambda: load_tools(tools))
    model = _guard(
        lambda: model_from_spec(llm_spec, settings) if llm_spec else model_from_settings(settings)
    )
    config = {"tools": tools, "llm": llm_spec}
    result = _execute(
        lambda listeners: run(
            request,
            tools=tool_list,
            llm=model,
            settings=settings,
            max_replans=max_replans,
            resume_config=config,
            listeners=listeners,
        ),
        as_json,
    )
    _print_result(result, as_json)


@app.command()
def demo(db: DbOption = None) -> None:
    """Orchestration demo: a plan that times four ways to deduplicate a list in parallel
    interpreters, ranks them, and prints the DAG with its timings."""
    from perfsmith.orchestrate import run
    from perfsmith.tools import demo as demo_tools

    settings = load_settings(database_url=db)
    model = ScriptedChatModel(
        {
            "planner": [demo_tools.demo_plan()],
            "joiner": [lambda msgs, _opts: demo_tools.demo_joiner(msgs[-1].content)],
        },
        name="demo-script",
    )
    out.print("[bold]perfsmith demo[/]: " + escape(demo_tools.DEMO_REQUEST))
    out.print(
        "[dim]planner: scripted plan (the LLM-driven optimize workflow replaces it); "
        "tools: real subprocesses[/]\n"
    )
    out.print(demo_tools.demo_plan(), markup=False, highlight=False)
    started = time.perf_counter()
    result = _execute(
        lambda listeners: run(
            demo_tools.DEMO_REQUEST,
            tools=demo_tools.TOOLS,
            llm=model,
            settings=settings,
            listeners=listeners,
            resume_config={"tools": ["perfsmith.tools.demo"]},
            kind="demo",
        ),
        False,
    )
    trace = result.traces[-1]
    serial = sum(r.run_s for r in trace.rows)
    if not out.is_terminal:  # no live table was drawn: print the final one
        rows = RunStore(Database(settings.resolved_database_url())).tasks(result.run_id)
        out.print(dag_table(_dag_rows(rows), title="tasks"))
    out.print(
        f"\nwall {time.perf_counter() - started:.2f} s · tasks' summed run time "
        f"{serial:.2f} s · critical path {trace.critical_path_s:.2f} s "
        f"({' -> '.join(f'${i}' for i in trace.critical_path)})"
    )
    _print_result(result, False)


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
        remote.runs_list(
            server, token, out, err, limit=limit, offset=offset, status=status, as_json=as_json
        )
        return
    rows = _guard(lambda: RunStore(_db(db)).list_runs(limit=limit, offset=offset, status=status))
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


def _dag_rows(tasks: list[Task]) -> list[DagRow]:
    return dag_rows(tasks, [t.result_text for t in tasks])


def _show_run(url: str, run_id: str, as_json: bool) -> None:
    store = RunStore(Database(url))
    row = store.get_run(run_id)
    plans = store.plans(run_id)
    dag = _dag_rows(store.tasks(run_id))
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
    from sqlalchemy import select

    from perfsmith.storage.models import Candidate, Run
    from perfsmith.verifiers.suite import candidate_efficiency, suite_eff_at_k

    if kind not in ("optimize", "kernel"):
        raise typer.BadParameter("choose optimize or kernel", param_hint="--kind")
    ks = sorted(set(k or [1, 3, 5]))

    def load() -> list[list[float]]:
        database = _db(db)
        with database.session() as s:
            runs = s.scalars(
                select(Run.id).where(Run.kind == kind).order_by(Run.created_at.desc()).limit(last)
            ).all()
            problems = []
            for run_id in runs:
                rows = s.execute(
                    select(Candidate.verdict, Candidate.speedup).where(Candidate.run_id == run_id)
                ).all()
                scores = [candidate_efficiency(v, sp) for v, sp in rows]
                scored = [x for x in scores if x is not None]
                if scored:
                    problems.append(scored)
            return problems

    problems = _guard(load)
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
        remote.runs_show(server, token, out, err, run_id, as_json)
        return
    settings = load_settings(database_url=db)
    _guard(lambda: _show_run(settings.resolved_database_url(), run_id, as_json))


@runs_app.command("cancel")
def runs_cancel(
    run_id: str,
    db: DbOption = None,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Stop a run: on a server, its work stops; here, a run whose process is gone (killed,
    crashed) is marked cancelled. Either way `runs resume` can finish it later."""
    if server:
        run = remote.call(server, token, err, lambda c: c.runs.cancel(run_id))
        out.print(f"{run.id}: {run.status}")
        return
    from perfsmith.orchestrate import TERMINAL, fail_run

    database = _guard(lambda: _db(db))
    row = _guard(lambda: RunStore(database).get_run(run_id))
    if row.status in TERMINAL:
        _fail(f"run {run_id} has already ended ({row.status})")
    _run_async(fail_run(database, run_id, error="cancelled", status="cancelled"))
    out.print(f"{run_id}: cancelled")


@runs_app.command("resume")
def runs_resume(
    run_id: str,
    llm: Annotated[
        str | None, typer.Option("--llm", help="Override the stored LLM: " + SPEC_HELP)
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Finish an interrupted run; tasks that completed are not executed again."""
    from perfsmith.orchestrate import resume

    if server:
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
    settings = load_settings(database_url=db)

    def prepare() -> tuple[list[Any], Any]:
        row = RunStore(Database(settings.resolved_database_url())).get_run(run_id)
        if row.kind == "optimize":
            return [], None
        tool_specs = row.config.get("tools")
        if not tool_specs:
            raise PerfsmithError(
                f"run {run_id} was started from Python with in-process tools; resume it with "
                "`await perfsmith.resume(run_id, tools=..., llm=...)`"
            )
        spec = llm or row.config.get("llm")
        if row.kind == "demo" and not spec:
            from perfsmith.tools import demo as demo_tools

            model: Any = ScriptedChatModel(
                {
                    "planner": [demo_tools.demo_plan()],
                    "joiner": [lambda msgs, _o: demo_tools.demo_joiner(msgs[-1].content)],
                }
            )
        else:
            model = model_from_spec(spec, settings) if spec else model_from_settings(settings)
        return load_tools(list(tool_specs)), model

    tool_list, model = _guard(prepare)
    if model is None:  # an optimize run: its tools are rebuilt from its stored config
        from perfsmith.workflows.optimize import resume_optimize
        from perfsmith.workflows.report import write_report

        outcome = _execute(
            lambda listeners: resume_optimize(
                run_id,
                llm=llm,
                settings=settings,
                listeners=listeners,
                write_report=write_report,
            ),
            as_json,
        )
        _print_optimize(outcome, as_json)
        return
    result = _execute(
        lambda listeners: resume(
            run_id, tools=tool_list, llm=model, settings=settings, listeners=listeners
        ),
        as_json,
    )
    _print_result(result, as_json)


@sandbox_app.command(
    "run",
    context_settings={"allow_interspersed_args": False},
)
def sandbox_run(
    command: Annotated[list[str], typer.Argument(help="The command and its arguments (after --).")],
    backend: Annotated[str, typer.Option(help="auto, process, bubblewrap or docker.")] = "auto",
    timeout: Annotated[float, typer.Option(min=0.01, help="Wall-clock limit, seconds.")] = 30.0,
    memory: Annotated[int, typer.Option(min=16, help="Memory limit, MB.")] = 1024,
    file: Annotated[
        list[Path] | None, typer.Option("--file", help="Copy into the working directory.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run COMMAND in a fresh sandbox; exits 0 whatever the command did."""
    from perfsmith.sandbox.base import Limits
    from perfsmith.sandbox.select import BACKENDS, open_sandbox

    if backend not in BACKENDS:
        raise typer.BadParameter(f"choose one of {', '.join(BACKENDS)}", param_hint="--backend")
    files: dict[str, bytes] = {}
    for path in file or []:
        if not path.is_file():
            raise typer.BadParameter(f"{path} is not a readable file", param_hint="--file")
        files[path.name] = path.read_bytes()
    limits = Limits(wall_s=timeout, cpu_s=timeout, memory_mb=memory)

    async def go() -> Any:
        box = await open_sandbox(backend)
        try:
            return await box.run(command, files=files, limits=limits)
        finally:
            await box.close()

    result = _run_async(go())
    if as_json:
        sys.stdout.write(json.dumps(result.to_json_dict()) + "\n")
        return
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    err.print(
        f"[dim]{result.backend}: {result.status.value}"
        + (f" (exit {result.exit_code})" if result.exit_code is not None else "")
        + (f" · {escape(result.reason)}" if result.reason else "")
        + f" · wall {result.wall_s:.3f} s · cpu {result.cpu_s:.3f} s · "
        f"peak {result.max_rss_mb:.1f} MB[/]"
    )


@app.command("verify")
def verify_cmd(
    reference: Annotated[str, typer.Argument(help="The original: FILE::FUNCTION.")],
    candidate: Annotated[str, typer.Argument(help="The candidate: FILE::FUNCTION.")],
    inputs: Annotated[
        str | None,
        typer.Option(
            "--inputs",
            help="Input generator FILE::FUNC; FUNC(seed) returns a list "
            "of argument tuples. Default: drawn from the reference's type hints.",
        ),
    ] = None,
    workload: Annotated[
        str | None,
        typer.Option(
            "--workload",
            help="FILE::FUNC of no arguments that calls the reference: its calls, recorded "
            "in the sandbox, are replayed as the inputs.",
        ),
    ] = None,
    mode: Annotated[str, typer.Option(help="time (seconds) or instructions (callgrind).")] = "time",
    threshold: Annotated[
        float, typer.Option(min=0.0, max=10.0, help="Smallest speedup that counts.")
    ] = 0.05,
    rounds: Annotated[int, typer.Option(min=3, max=1000, help="Timing rounds.")] = 12,
    rtol: Annotated[float, typer.Option(min=0.0, help="Relative tolerance for floats.")] = 1e-9,
    atol: Annotated[float, typer.Option(min=0.0, help="Absolute tolerance for floats.")] = 0.0,
    backend: Annotated[
        str, typer.Option(help="Sandbox: auto, process, bubblewrap, docker.")
    ] = "auto",
    as_json: JsonOption = False,
) -> None:
    """Is CANDIDATE correct (same results as REFERENCE on every input) and faster?"""
    from perfsmith.sandbox.select import BACKENDS, open_sandbox
    from perfsmith.verifiers.compare import Tolerance
    from perfsmith.verifiers.correctness import InputError
    from perfsmith.verifiers.target import TargetError, parse_target
    from perfsmith.verifiers.verify import verify

    if mode not in ("time", "instructions"):
        raise typer.BadParameter("choose time or instructions", param_hint="--mode")
    if backend not in BACKENDS:
        raise typer.BadParameter(f"choose one of {', '.join(BACKENDS)}", param_hint="--backend")
    try:
        ref = parse_target(reference, what="function")
        cand = parse_target(candidate, what="function")
        gen = parse_target(inputs, what="input generator") if inputs else None
        work = parse_target(workload, what="workload function") if workload else None
    except TargetError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    if gen is not None and work is not None:
        err.print("[red]error:[/] give --inputs or --workload, not both")
        raise typer.Exit(2)

    async def go() -> Any:
        box = await open_sandbox(backend)
        try:
            return await verify(
                box,
                ref,
                cand,
                generator=gen,
                workload=work,
                mode=mode,  # type: ignore[arg-type]
                threshold=threshold,
                rounds=rounds,
                tol=Tolerance(rtol=rtol, atol=atol),
            )
        finally:
            await box.close()

    def checked() -> Any:
        try:
            return asyncio.run(go())
        except InputError as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}")
            raise typer.Exit(2) from exc

    # any other failure: one line and exit 1 (a traceback with PERFSMITH_DEBUG=1)
    result = _guard(checked)
    if as_json:
        sys.stdout.write(result.model_dump_json() + "\n")
        return
    if not result.correct:
        out.print(f"[red]incorrect[/]: {escape(result.failure or '')}")
        return
    low, high = result.ci or (0.0, 0.0)
    out.print(
        f"[bold]{result.verdict}[/]: speedup {result.speedup:.3f}x "
        f"(95% interval {low:.3f}-{high:.3f}, {result.mode}), correct on "
        f"{result.n_inputs} inputs"
    )
    for flag in result.flags:
        out.print(f"[yellow]flag:[/] {escape(flag)}")


@app.command("optimize")
def optimize_cmd(
    target: Annotated[str, typer.Argument(help="The function to speed up: FILE::FUNCTION.")],
    workload: Annotated[
        str | None,
        typer.Option("--workload", help="FILE::FUNC of no arguments that exercises the target."),
    ] = None,
    inputs: Annotated[
        str | None,
        typer.Option(
            "--inputs",
            help="Input generator FILE::FUNC; FUNC(seed) returns a list "
            "of argument tuples. Default: drawn from the type hints.",
        ),
    ] = None,
    candidate: Annotated[
        list[Path] | None,
        typer.Option("--candidate", help="A file defining the same function (repeatable)."),
    ] = None,
    llm: Annotated[str | None, typer.Option("--llm", help="none, or " + SPEC_HELP)] = None,
    rounds: Annotated[int, typer.Option("--rounds", min=1, max=10)] = 2,
    candidates_k: Annotated[
        int, typer.Option("--candidates", min=1, max=8, help="Proposals per round.")
    ] = 3,
    apply: Annotated[
        bool, typer.Option("--apply", help="Rewrite FILE with the best verified candidate.")
    ] = False,
    report_dir: Annotated[Path | None, typer.Option("--report-dir")] = None,
    backend: Annotated[
        str, typer.Option(help="Sandbox: auto, process, bubblewrap, docker.")
    ] = "auto",
    verify_rounds: Annotated[int, typer.Option("--verify-rounds", min=3, max=200)] = 12,
    db: DbOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    token: TokenOption = None,
) -> None:
    """Make FUNCTION faster: plan, propose candidates with the LLM, verify each in the
    sandbox, report the fastest verified one (and apply it with --apply)."""
    if server:
        unsupported = [
            flag
            for flag, given in (
                ("--workload", workload),
                ("--candidate", candidate),
                ("--llm", llm),
                ("--apply", apply),
                ("--report-dir", report_dir),
            )
            if given
        ]
        if unsupported:
            _fail(
                f"{', '.join(unsupported)} cannot be used with --server: the server runs its "
                "own LLM and sandbox on the code sent to it (the diff comes back)",
                code=2,
            )
        try:
            remote.optimize(
                server,
                token,
                out,
                err,
                target=target,
                inputs=inputs,
                rounds=rounds,
                k=candidates_k,
                verify_rounds=verify_rounds,
                as_json=as_json,
            )
        except remote.RemoteUsageError as exc:
            _fail(str(exc), code=2)
        return
    from perfsmith.sandbox.select import BACKENDS, open_sandbox
    from perfsmith.verifiers.target import TargetError, parse_target
    from perfsmith.workflows.optimize import optimize
    from perfsmith.workflows.report import write_report

    if backend not in BACKENDS:
        raise typer.BadParameter(f"choose one of {', '.join(BACKENDS)}", param_hint="--backend")
    settings = load_settings(database_url=db)
    try:
        ref = parse_target(target, what="function")
        work = parse_target(workload, what="workload function") if workload else None
        gen = parse_target(inputs, what="input generator") if inputs else None
    except TargetError as exc:
        _fail(str(exc), code=2)
        return
    spec = None if llm == "none" else (llm or default_spec(settings))
    if spec is not None:
        _guard(lambda: model_from_spec(spec, settings))  # a bad spec fails before any work

    async def go(listeners: list[Callable[[dict[str, Any]], None]]) -> OptimizeResult:
        box = await open_sandbox(backend)
        try:
            return await optimize(
                ref,
                sandbox=box,
                llm=spec,
                workload=work,
                inputs=gen,
                candidates=candidate or [],
                rounds=rounds,
                k=candidates_k,
                apply=apply,
                settings=settings,
                report_dir=report_dir,
                verify_rounds=verify_rounds,
                write_report=write_report,
                listeners=listeners,
            )
        finally:
            await box.close()

    # the live task table while the plan runs (not with --json or when piped)
    result = _execute(go, as_json)
    _print_optimize(result, as_json)


def _print_optimize(result: OptimizeResult, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result.as_json()) + "\n")
        return
    for c in result.candidates:
        speed = "-" if c.speedup is None else f"{c.speedup:.2f}x"
        if c.ci:
            speed += f" [{c.ci[0]:.2f}, {c.ci[1]:.2f}]"
        line = f"candidate {c.id} ({c.origin}): {c.verdict} {speed}"
        if c.failure:
            line += f" · {c.failure.splitlines()[0][:140]}"
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    if result.best is None:
        # perfsmith's summary: every candidate's verdict, or why none was produced
        summary = result.answer.splitlines()[0] if result.answer else "no candidate was verified"
        out.print(f"{summary} Nothing to apply.", markup=False, highlight=False, soft_wrap=True)
    else:
        out.print(result.diff, markup=False, highlight=False)
        out.print(
            f"best: candidate {result.best.id}, {result.best.speedup:.2f}x"
            + (" (applied)" if result.applied else " (not applied: pass --apply)"),
            markup=False,
            highlight=False,
        )
    if result.report:
        out.print(f"report: {result.report}", markup=False, highlight=False, soft_wrap=True)


@app.command("optimize-repo")
def optimize_repo_cmd(
    path: Annotated[Path, typer.Argument(help="A git repository.")],
    command: Annotated[
        str, typer.Option("--command", help="The project's own check, e.g. 'pytest -q'.")
    ],
    top: Annotated[int, typer.Option("--top", min=1, max=20, help="Functions to optimize.")] = 3,
    branch: Annotated[str | None, typer.Option("--branch", help="New branch name.")] = None,
    llm: Annotated[str | None, typer.Option("--llm", help="none, or " + SPEC_HELP)] = None,
    candidate: Annotated[
        list[str] | None,
        typer.Option(
            "--candidate",
            help="FILE::FUNC=PATH: a candidate for one function, FILE relative to the "
            "repository (repeatable).",
        ),
    ] = None,
    rounds: Annotated[int, typer.Option("--rounds", min=1, max=10)] = 1,
    candidates_k: Annotated[int, typer.Option("--candidates", min=1, max=8)] = 3,
    backend: Annotated[
        str, typer.Option(help="Sandbox: auto, process, bubblewrap, docker.")
    ] = "auto",
    verify_rounds: Annotated[int, typer.Option("--verify-rounds", min=3, max=200)] = 12,
    report_dir: Annotated[Path | None, typer.Option("--report-dir")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Profile COMMAND in the repository, optimize its hottest functions, and commit each
    verified speedup that COMMAND still accepts to a new branch (the working tree is not
    touched)."""
    from perfsmith.sandbox.select import BACKENDS, open_sandbox
    from perfsmith.workflows.repo import optimize_repo

    if backend not in BACKENDS:
        raise typer.BadParameter(f"choose one of {', '.join(BACKENDS)}", param_hint="--backend")
    settings = load_settings(database_url=db)
    given: dict[str, list[Path]] = {}
    for item in candidate or []:
        spec, sep, file = item.partition("=")
        if not sep or "::" not in spec or not file:
            raise typer.BadParameter(f"{item!r} is not FILE::FUNC=PATH", param_hint="--candidate")
        given.setdefault(spec, []).append(Path(file))
    model_spec = None if llm == "none" else (llm or default_spec(settings))
    if model_spec is not None:
        _guard(lambda: model_from_spec(model_spec, settings))

    async def go() -> Any:
        box = await open_sandbox(backend)
        database = Database(settings.resolved_database_url())
        try:
            return await optimize_repo(
                path,
                command=command,
                sandbox=box,
                llm=model_spec,
                top=top,
                branch=branch,
                rounds=rounds,
                k=candidates_k,
                candidates=given,
                database=database,
                verify_rounds=verify_rounds,
                report_dir=report_dir,
            )
        finally:
            database.close()
            await box.close()

    result = _guard(lambda: asyncio.run(go()))
    if as_json:
        sys.stdout.write(json.dumps(result.as_json()) + "\n")
        return
    for o in result.outcomes:
        mark = f"kept {o.commit[:10]}" if o.kept and o.commit else "not kept"
        out.print(
            f"{o.hotspot.file}::{o.hotspot.function} ({o.hotspot.total_s:.3f} s): "
            f"{mark} · {o.note}",
            markup=False,
            highlight=False,
        )
    kept = sum(o.kept for o in result.outcomes)
    out.print(f"branch {result.branch}: {kept} commit(s) on {result.base[:10]}", markup=False)
    if result.report:
        out.print(f"report: {result.report}", markup=False, highlight=False, soft_wrap=True)


@app.command("serve-model")
def serve_model(
    model: Annotated[
        str,
        typer.Option(
            "--model", help="embedded (SmolLM2-135M), gemma3-270m, a .gguf file or an HF dir"
        ),
    ] = "embedded",
    compress: Annotated[
        str, typer.Option("--compress", help="none, int8, bf16, drop=N, or a comma list")
    ] = "none",
    speculate: Annotated[
        str, typer.Option("--speculate", help="none, ngram, adaptive or draft")
    ] = "adaptive",
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8008,
    context: Annotated[int, typer.Option("--context", min=16, help="tokens per sequence")] = 2048,
    slots: Annotated[
        int, typer.Option("--slots", min=1, max=64, help="sequences decoded together")
    ] = 8,
    threads: Annotated[int | None, typer.Option("--threads", min=1)] = None,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=1, help="default max_tokens of a request")
    ] = 512,
    chat_template: Annotated[
        Path | None, typer.Option("--chat-template", help="Jinja chat template file")
    ] = None,
) -> None:
    """Serve a local model over an OpenAI-compatible API (/v1/chat/completions)."""
    from perfsmith.inference.build import EngineConfig
    from perfsmith.inference.serve import serve

    config = EngineConfig(
        model=model,
        compress=compress,
        speculate=speculate,
        context=context,
        slots=slots,
        threads=threads,
        chat_template=chat_template,
    )
    _guard(
        lambda: serve(
            config,
            host=host,
            port=port,
            default_max_tokens=max_tokens,
            announce=lambda line: out.print(line, markup=False, highlight=False),
        )
    )


@sandbox_app.command("build-image")
def sandbox_build_image(
    force: Annotated[bool, typer.Option(help="Rebuild even if the image exists.")] = False,
) -> None:
    """Build the docker backend's image locally (no registry needed): an empty root
    filesystem with users, loader cache and mount points, made with `docker import`; the
    host's /usr and Python runtime are mounted read-only when containers start."""
    from perfsmith.sandbox.docker_backend import build_image, docker_unavailable_reason

    reason = docker_unavailable_reason()
    if reason:
        _fail(f"cannot build the sandbox image: {reason}")
    out.print(f"built {_guard(lambda: build_image(force=force))}")


def main() -> None:
    # long steps say what they do: on stderr, as plain lines, when the output is a log or
    # a pipe (a terminal has the live table; warnings only there)
    logging.basicConfig(
        level=logging.INFO if not sys.stderr.isatty() else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpcore", "urllib3", "alembic", "filelock", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if os.environ.get("PERFSMITH_DEBUG"):
        app()
        return
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
