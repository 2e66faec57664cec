"""`perfsmith serve` (the REST API and the web UI) and `perfsmith tokens ...`."""

from __future__ import annotations

import ipaddress
import json
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from perfsmith.cli.common import DbOption, err, fail, out, settings_for
from perfsmith.errors import PerfsmithError

if TYPE_CHECKING:
    from perfsmith.api.tokens import TokenStore

tokens_app = typer.Typer(help="API tokens for `perfsmith serve`.", no_args_is_help=True)


def _tokens(db: str | None) -> TokenStore:
    from perfsmith.api.tokens import TokenStore
    from perfsmith.storage.db import Database

    return TokenStore(Database(settings_for(db).resolved_database_url()))


@tokens_app.command("create")
def tokens_create(
    name: Annotated[str, typer.Argument(help="A name for the token (who or what uses it).")],
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Whose runs it sees (default: NAME).")
    ] = None,
    db: DbOption = None,
) -> None:
    """Make an API token; the secret is printed once and stored only as a hash."""
    try:
        secret = _tokens(db).create(name, tenant=tenant)
    except PerfsmithError as exc:
        fail(str(exc))
    sys.stdout.write(secret + "\n")
    err.print(
        f"token {escape(name)} for tenant {escape(tenant or name)}: keep it, it is not shown again"
    )


@tokens_app.command("list")
def tokens_list(
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The tokens (never their secrets)."""
    try:
        rows = _tokens(db).list()
    except PerfsmithError as exc:
        fail(str(exc))
    if as_json:
        sys.stdout.write(
            json.dumps(
                [
                    {
                        "name": r.name,
                        "tenant": r.tenant,
                        "prefix": r.prefix,
                        "created_at": r.created_at.isoformat(),
                        "last_used_at": r.last_used_at.isoformat() if r.last_used_at else None,
                        "revoked": r.revoked,
                    }
                    for r in rows
                ]
            )
            + "\n"
        )
        return
    from rich.table import Table

    table = Table("name", "tenant", "starts with", "created", "last used", "state")
    for r in rows:
        table.add_row(
            r.name,
            r.tenant,
            r.prefix + "…",
            f"{r.created_at:%Y-%m-%d %H:%M}",
            f"{r.last_used_at:%Y-%m-%d %H:%M}" if r.last_used_at else "-",
            "revoked" if r.revoked else "active",
        )
    out.print(table)


@tokens_app.command("revoke")
def tokens_revoke(name: str, db: DbOption = None) -> None:
    """Revoke a token: requests with it fail from now on."""
    try:
        _tokens(db).revoke(name)
    except PerfsmithError as exc:
        fail(str(exc))
    out.print(f"revoked {escape(name)}")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_cmd(
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8080,
    llm: Annotated[
        str | None,
        typer.Option("--llm", help="The LLM runs use (default: PERFSMITH_LLM, else local)."),
    ] = None,
    workspace: Annotated[
        Path, typer.Option("--workspace", help="Folder requests may name files in.")
    ] = Path(),
    kernels: Annotated[
        Path | None,
        typer.Option(
            "--kernels", help="Kernel problem suite (default: WORKSPACE/examples/kernels)."
        ),
    ] = None,
    tools: Annotated[
        list[str] | None,
        typer.Option("--tools", help="Tool module or .py file for free-form plans (repeatable)."),
    ] = None,
    sandbox: Annotated[
        str, typer.Option("--sandbox", help="Sandbox: auto, process, bubblewrap, docker.")
    ] = "auto",
    allow_remote: Annotated[
        bool, typer.Option("--allow-remote", help="Allow binding an address other machines reach.")
    ] = False,
    work_batches: Annotated[
        bool,
        typer.Option(
            "--work-batches", help="Work the batch queue here too (as `perfsmith batch run`)."
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    """Serve the REST API, its event streams and the web UI (uvicorn)."""
    import uvicorn

    from perfsmith.api.app import create_app
    from perfsmith.api.intake import Workspace
    from perfsmith.api.manager import RunManager, ServerConfig
    from perfsmith.llm.factory import default_spec, model_from_spec
    from perfsmith.sandbox.select import BACKENDS
    from perfsmith.storage.db import Database
    from perfsmith.tools.loader import load_tools

    if not _loopback(host) and not allow_remote:
        fail(
            f"--host {host} is reachable from other machines; pass --allow-remote to bind it "
            "(every request still needs a token)",
            2,
        )
    if sandbox not in BACKENDS:
        fail(f"--sandbox must be one of {', '.join(BACKENDS)}, not {sandbox!r}", 2)
    if not workspace.is_dir():
        fail(f"--workspace {workspace} is not a folder", 2)
    suite = kernels if kernels is not None else workspace / "examples" / "kernels"
    if kernels is not None and not kernels.is_dir():
        fail(f"--kernels {kernels} is not a folder", 2)
    settings = settings_for(db)
    spec = llm or default_spec(settings)
    if spec == "none":
        fail(
            "perfsmith serve needs a model: chat messages, plans and kernel runs are planned "
            "by one. Give --llm local (the embedded model), an OpenAI-compatible URL, or "
            "run model-free optimizations with `perfsmith optimize TARGET --llm none`",
            2,
        )
    try:
        if spec.startswith("scripted:"):
            model_from_spec(spec, settings)  # a bad script file fails here, not per run
        if tools:
            load_tools(list(tools))
        database = Database(settings.resolved_database_url())
    except PerfsmithError as exc:
        fail(str(exc), 2)
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            fail(f"cannot listen on {host}:{port}: {exc.strerror}", 2)
    manager = RunManager(
        database,
        settings,
        ServerConfig(
            llm=spec,
            workspace=Workspace(root=workspace.resolve(), kernel_suite=suite.resolve()),
            tools=list(tools or []),
            sandbox=sandbox,
            work_batches=work_batches,
        ),
    )
    app = create_app(manager)
    out.print(
        f"perfsmith API on http://{host}:{port} (docs at /docs, UI at /); LLM {spec}; "
        f"workspace {workspace.resolve()}" + ("; working the batch queue" if work_batches else ""),
        markup=False,
        highlight=False,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=10)
