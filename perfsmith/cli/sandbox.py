"""`perfsmith sandbox ...`: run a command in a fresh sandbox; build the docker image."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from perfsmith.cli.common import JsonOption, check_backend, err, fail, guard, in_sandbox, out

sandbox_app = typer.Typer(help="Run untrusted code under hard limits.", no_args_is_help=True)


@sandbox_app.command("run", context_settings={"allow_interspersed_args": False})
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

    check_backend(backend)
    files: dict[str, bytes] = {}
    for path in file or []:
        if not path.is_file():
            raise typer.BadParameter(f"{path} is not a readable file", param_hint="--file")
        files[path.name] = path.read_bytes()
    limits = Limits(wall_s=timeout, cpu_s=timeout, memory_mb=memory)

    result = in_sandbox(backend, lambda box: box.run(command, files=files, limits=limits))
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
        fail(f"cannot build the sandbox image: {reason}")
    out.print(f"built {guard(lambda: build_image(force=force))}")
