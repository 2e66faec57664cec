"""`perfsmith kernel ...`: verify, tune and optimize kernels for KernelBench problems."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from perfsmith.errors import PerfsmithError

kernel_app = typer.Typer(
    help="Kernels for PyTorch operators (KernelBench problems): verify, tune, optimize.",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)

DeviceOption = Annotated[str, typer.Option(help="cpu (C++/OpenMP) or cuda.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
BackendOption = Annotated[str, typer.Option(help="Sandbox: auto, process, bubblewrap, docker.")]


def usage_error(message: str) -> typer.Exit:
    err.print(f"[red]error:[/] {escape(message)}")
    return typer.Exit(2)


def check_device(device: str, compile_only: bool) -> None:
    from perfsmith.kernels.verify import cuda_available

    if device not in ("cpu", "cuda"):
        raise usage_error(f"--device must be cpu or cuda, not {device!r}")
    if device == "cuda" and not compile_only and not cuda_available():
        raise usage_error(
            "--device cuda: no CUDA device is visible to torch here; "
            "--compile-only checks that the CUDA sources compile without running them"
        )


def check_backend(backend: str) -> None:
    from perfsmith.sandbox.select import BACKENDS

    if backend not in BACKENDS:
        raise usage_error(f"--backend must be one of {', '.join(BACKENDS)}, not {backend!r}")


def print_result(result: Any, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(result.model_dump_json() + "\n")
        return
    if not result.compiled:
        out.print(f"[red]did not compile[/]: {escape(result.failure or '')}")
    elif not result.correct:
        out.print(f"[red]{result.verdict}[/]: {escape(result.failure or '')}")
    else:
        low, high = result.ci or (0.0, 0.0)
        details = result.details
        out.print(
            f"[bold]{result.verdict}[/]: speedup {result.speedup:.3f}x (95% interval "
            f"{low:.3f}-{high:.3f}) on {result.device}, {details.get('threads')} threads, "
            f"{details.get('rounds')} rounds of {details.get('calls')} calls"
        )
    for flag in result.flags:
        out.print(f"[yellow]flag:[/] {escape(flag)}")


@kernel_app.command("verify")
def verify_cmd(
    problem: Annotated[Path, typer.Argument(help="KernelBench problem: class Model, get_inputs.")],
    candidate: Annotated[Path, typer.Argument(help="Candidate file: class ModelNew.")],
    device: DeviceOption = "cpu",
    trials: Annotated[int, typer.Option(min=1, max=100, help="Correctness trials.")] = 5,
    rounds: Annotated[int, typer.Option(min=3, max=200, help="Timing rounds.")] = 10,
    threshold: Annotated[float, typer.Option(min=0.0, max=10.0)] = 0.05,
    threads: Annotated[
        int | None, typer.Option(min=1, max=1024, help="CPU threads (default: all cores).")
    ] = None,
    atol: Annotated[
        float | None, typer.Option(min=0.0, help="Absolute tolerance (default by dtype).")
    ] = None,
    rtol: Annotated[
        float | None, typer.Option(min=0.0, help="Relative tolerance (default by dtype).")
    ] = None,
    compile_only: Annotated[
        bool, typer.Option("--compile-only", help="Only compile (CUDA without a GPU).")
    ] = False,
    backend: BackendOption = "auto",
    as_json: JsonOption = False,
) -> None:
    """Does CANDIDATE compile, match PROBLEM's Model on fresh inputs, and run faster?"""
    from perfsmith.kernels.verify import (
        KernelInputError,
        KernelSettings,
        read_candidate,
        read_problem,
        verify_kernel,
    )
    from perfsmith.sandbox.select import open_sandbox

    check_device(device, compile_only)
    check_backend(backend)
    try:
        problem_source = read_problem(problem)
        candidate_source = read_candidate(candidate)
    except KernelInputError as exc:
        raise usage_error(str(exc)) from exc
    settings = KernelSettings(
        device="cuda" if device == "cuda" else "cpu",
        trials=trials,
        rounds=rounds,
        threshold=threshold,
        atol=atol,
        rtol=rtol,
        compile_only=compile_only,
    )
    if threads is not None:
        settings.threads = threads

    async def go() -> Any:
        box = await open_sandbox(backend)
        try:
            return await verify_kernel(box, problem_source, candidate_source, settings)
        finally:
            await box.close()

    try:
        result = asyncio.run(go())
    except PerfsmithError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    print_result(result, as_json)
