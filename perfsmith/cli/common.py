"""What every command shares: the consoles, the options, errors as one line, progress.

Light on purpose: a command module imports this and typer at load time and everything
else inside its command, so `perfsmith --help` and a usage error pay for nothing they do
not use."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from perfsmith.llm.specs import SPEC_HELP

if TYPE_CHECKING:
    from rich.table import Table

    from perfsmith.config import Settings
    from perfsmith.sandbox.base import Sandbox
    from perfsmith.storage.db import Database

T = TypeVar("T")

# Exit codes: 0 done, 1 the work failed (one line on stderr), 2 the command line is wrong
# (a missing file or function, a bad option), 130 interrupted.
EXIT_FAILED = 1
EXIT_USAGE = 2

out = Console()
if not out.is_terminal:
    # logs and pipes: tables wide enough for the task table, and no line of text broken
    # (a verdict stays on one line for grep and scripts)
    out = Console(width=None if "COLUMNS" in os.environ else 120, soft_wrap=True)
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
ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="PERFSMITH_SERVER",
        help="Drive a remote `perfsmith serve` at this URL instead of working here.",
    ),
]
TokenOption = Annotated[
    str | None, typer.Option("--token", envvar="PERFSMITH_TOKEN", help="API token for --server.")
]
BackendOption = Annotated[str, typer.Option(help="Sandbox: auto, process, bubblewrap, docker.")]
LLM_HELP = SPEC_HELP
LLM_OR_NONE_HELP = "none, or " + SPEC_HELP


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """One line on stderr, then exit with `code`."""
    err.print(f"[red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def usage_error(message: str) -> NoReturn:
    """The command line cannot work as given: one line, exit code 2."""
    fail(message, EXIT_USAGE)


def guard(fn: Callable[[], T]) -> T:
    """Run a command body; known errors become a message and exit code 1."""
    from perfsmith.errors import PerfsmithError

    try:
        return fn()
    except PerfsmithError as exc:
        fail(str(exc))
    except (typer.Exit, KeyboardInterrupt):
        raise
    except Exception as exc:
        if os.environ.get("PERFSMITH_DEBUG"):
            raise
        fail(f"{type(exc).__name__}: {exc} (set PERFSMITH_DEBUG=1 for a traceback)")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    return guard(lambda: asyncio.run(coro))


def in_sandbox(
    backend: str,
    work: Callable[[Sandbox], Awaitable[T]],
    usage_errors: tuple[type[Exception], ...] = (),
) -> T:
    """``work`` done in a sandbox of ``backend`` opened for it and closed after; a
    failure is one line and exit code 1 (2 for ``usage_errors``: the user's input)."""
    from perfsmith.sandbox.select import open_sandbox

    async def go() -> T:
        box = await open_sandbox(backend)
        try:
            return await work(box)
        finally:
            await box.close()

    def checked() -> T:
        try:
            return asyncio.run(go())
        except usage_errors as exc:
            usage_error(str(exc))

    return guard(checked)


def check_backend(name: str, option: str = "--backend") -> None:
    from perfsmith.sandbox.select import BACKENDS

    if name not in BACKENDS:
        raise typer.BadParameter(f"choose one of {', '.join(BACKENDS)}", param_hint=option)


def settings_for(db: str | None) -> Settings:
    from perfsmith.config import load_settings

    return load_settings(database_url=db)


def model_spec(llm: str | None, settings: Settings) -> str | None:
    """The LLM spec a command runs with (None for `--llm none`), checked before any work:
    a bad spec or script file is one line and exit 1 here."""
    from perfsmith.llm.factory import default_spec, model_from_spec

    spec = None if llm == "none" else (llm or default_spec(settings))
    if spec is not None:
        guard(lambda: model_from_spec(spec, settings))
    return spec


def open_database(db: str | None) -> Database:
    from perfsmith.storage.db import Database

    return Database(settings_for(db).resolved_database_url())


def plain_line(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


Listener = Callable[[dict[str, Any]], None]


def execute(coro_factory: Callable[[list[Listener]], Coroutine[Any, Any, T]], as_json: bool) -> T:
    """Run a run's coroutine with progress: the live task table in a terminal, one plain
    line per step in a log or a pipe, nothing with --json."""
    from perfsmith.console import LiveProgress, PlainProgress

    if as_json:
        return run_async(coro_factory([]))
    if not out.is_terminal:  # a log or a pipe: one plain line per step, as it happens
        return run_async(coro_factory([PlainProgress(plain_line)]))
    with LiveProgress(out) as live:
        return run_async(coro_factory([live]))


def dag_table_of(url: str, run_id: str) -> Table:
    """A stored run's task DAG as the table the live view draws."""
    from perfsmith.console import dag_rows, dag_table
    from perfsmith.storage.db import Database
    from perfsmith.storage.runs import RunStore

    tasks = RunStore(Database(url)).tasks(run_id)
    return dag_table(dag_rows(tasks, [t.result_text for t in tasks]), title="tasks")
