"""`perfsmith ...`: the command line.

One small module per group of commands (`run`, `runs`, `optimize`, `verify`, `kernel`,
`sandbox`, `server`, `model`, `batch`); each imports only typer and `cli.common` when it loads and
what its command uses when it runs, so `perfsmith --help` starts in a fraction of a second.
Exit codes: 0 done, 1 the work failed, 2 the command line is wrong, 130 interrupted."""

from __future__ import annotations

import logging
import os
import sys

import typer

from perfsmith.cli import batch, kernel, model, optimize, run, runs, sandbox, server, verify
from perfsmith.cli.common import err

app = typer.Typer(
    name="perfsmith",
    help="Agentic LLM orchestration that makes Python and kernels faster, with proof.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("run")(run.run_cmd)
app.command("demo")(run.demo)
app.command("verify")(verify.verify_cmd)
app.command("optimize")(optimize.optimize_cmd)
app.command("optimize-repo")(optimize.optimize_repo_cmd)
app.command("serve")(server.serve_cmd)
app.command("serve-model")(model.serve_model)
app.add_typer(runs.runs_app, name="runs")
app.add_typer(sandbox.sandbox_app, name="sandbox")
app.add_typer(kernel.kernel_app, name="kernel")
app.add_typer(server.tokens_app, name="tokens")
app.add_typer(batch.batch_app, name="batch")


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
