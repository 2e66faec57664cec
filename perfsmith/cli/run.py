"""`perfsmith run` (a free-form plan over your tools) and `perfsmith demo`."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.markup import escape

from perfsmith.cli.common import (
    LLM_HELP,
    DbOption,
    JsonOption,
    dag_table_of,
    execute,
    guard,
    out,
    settings_for,
)
from perfsmith.cli.results import print_outcome


def run_cmd(
    request: Annotated[str, typer.Argument(help="What to do, in words.")],
    tools: Annotated[
        list[str],
        typer.Option("--tools", help="Module or .py file with @tool functions (repeatable)."),
    ],
    llm: Annotated[str | None, typer.Option("--llm", help=LLM_HELP)] = None,
    max_replans: Annotated[int | None, typer.Option("--max-replans", min=0)] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Plan and execute a request with the given tools, storing every step."""
    from perfsmith.llm.factory import default_spec, model_from_spec
    from perfsmith.service.library import run
    from perfsmith.tools.loader import load_tools

    settings = settings_for(db)
    llm_spec = llm or default_spec(settings)
    tool_list = guard(lambda: load_tools(tools))
    model = guard(lambda: model_from_spec(llm_spec, settings))
    config = {"tools": tools, "llm": llm_spec}
    result = execute(
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
    print_outcome(result, as_json)


def demo(db: DbOption = None) -> None:
    """Orchestration demo: a plan that times four ways to deduplicate a list in parallel
    interpreters, ranks them, and prints the DAG with its timings."""
    from perfsmith.service.library import run
    from perfsmith.tools import demo as demo_tools

    settings = settings_for(db)
    out.print("[bold]perfsmith demo[/]: " + escape(demo_tools.DEMO_REQUEST))
    out.print(
        "[dim]planner: scripted plan (the LLM-driven optimize workflow replaces it); "
        "tools: real subprocesses[/]\n"
    )
    out.print(demo_tools.demo_plan(), markup=False, highlight=False)
    started = time.perf_counter()
    result = execute(
        lambda listeners: run(
            demo_tools.DEMO_REQUEST,
            tools=demo_tools.TOOLS,
            llm=demo_tools.demo_model(),
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
        out.print(dag_table_of(settings.resolved_database_url(), result.run_id))
    out.print(
        f"\nwall {time.perf_counter() - started:.2f} s · tasks' summed run time "
        f"{serial:.2f} s · critical path {trace.critical_path_s:.2f} s "
        f"({' -> '.join(f'${i}' for i in trace.critical_path)})"
    )
    print_outcome(result, False)
