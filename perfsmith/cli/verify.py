"""`perfsmith verify`: is a candidate correct and faster than the original?"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from perfsmith.cli.common import (
    BackendOption,
    JsonOption,
    check_backend,
    in_sandbox,
    out,
    usage_error,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from perfsmith.sandbox.base import Sandbox


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
    backend: BackendOption = "auto",
    as_json: JsonOption = False,
) -> None:
    """Is CANDIDATE correct (same results as REFERENCE on every input) and faster?"""
    from perfsmith.verifiers.python.compare import Tolerance
    from perfsmith.verifiers.python.correctness import InputError
    from perfsmith.verifiers.python.target import TargetError, parse_target
    from perfsmith.verifiers.python.verify import VerifyResult, verify

    if mode not in ("time", "instructions"):
        raise typer.BadParameter("choose time or instructions", param_hint="--mode")
    check_backend(backend)
    try:
        ref = parse_target(reference, what="function")
        cand = parse_target(candidate, what="function")
        gen = parse_target(inputs, what="input generator") if inputs else None
        work_fn = parse_target(workload, what="workload function") if workload else None
    except TargetError as exc:
        usage_error(str(exc))
    if gen is not None and work_fn is not None:
        usage_error("give --inputs or --workload, not both")

    def work(box: Sandbox) -> Awaitable[VerifyResult]:
        return verify(
            box,
            ref,
            cand,
            generator=gen,
            workload=work_fn,
            mode=mode,  # type: ignore[arg-type]
            threshold=threshold,
            rounds=rounds,
            tol=Tolerance(rtol=rtol, atol=atol),
        )

    # bad inputs: exit 2; any other failure: one line and exit 1 (a traceback with
    # PERFSMITH_DEBUG=1)
    result = in_sandbox(backend, work, usage_errors=(InputError,))
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
