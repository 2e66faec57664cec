"""`perfsmith kernel ...`: verify, tune and optimize kernels for KernelBench problems."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from perfsmith.cli.common import (
    JsonOption,
    err,
    execute,
    in_sandbox,
    model_spec,
    settings_for,
    usage_error,
)
from perfsmith.cli.results import print_outcome

kernel_app = typer.Typer(
    help="Kernels for PyTorch operators (KernelBench problems): verify, tune, optimize.",
    no_args_is_help=True,
)
out = Console(soft_wrap=True)  # one result, one line: easy to grep

DeviceOption = Annotated[str, typer.Option(help="cpu (C++/OpenMP) or cuda.")]
SandboxOption = Annotated[
    str, typer.Option("--sandbox", help="Sandbox: auto, process, bubblewrap, docker.")
]
VersusCompileOption = Annotated[
    bool,
    typer.Option(
        "--versus-compile/--eager-only",
        help="Also time torch.compile of the reference (compiling it takes about 10 s, "
        "left out of the timing).",
    ),
]


def check_device(device: str, compile_only: bool) -> None:
    if device not in ("cpu", "cuda"):
        usage_error(f"--device must be cpu or cuda, not {device!r}")
    if device == "cuda" and not compile_only:
        from perfsmith.verifiers.kernel.verify import cuda_available  # imports torch

        if not cuda_available():
            usage_error(
                "--device cuda: no CUDA device is visible to torch here; "
                "--compile-only checks that the CUDA sources compile without running them"
            )


def check_sandbox(name: str) -> None:
    from perfsmith.sandbox.select import BACKENDS

    if name not in BACKENDS:
        usage_error(f"--sandbox must be one of {', '.join(BACKENDS)}, not {name!r}")


def read_inputs(
    problem: Path,
    candidates: Sequence[Path],
    *,
    device: str,
    sandbox: str,
    compile_only: bool = False,
) -> tuple[str, list[str]]:
    """The command line checked (device, sandbox) and the problem's and candidates'
    sources read; anything wrong is a usage error (exit 2)."""
    from perfsmith.verifiers.kernel.verify import KernelInputError, read_candidate, read_problem

    check_device(device, compile_only)
    check_sandbox(sandbox)
    try:
        return read_problem(problem), [read_candidate(path) for path in candidates]
    except KernelInputError as exc:
        usage_error(str(exc))


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
        v = result.versus_compile
        if v is not None:
            out.print(
                f"against torch.compile: {v.verdict}, {v.speedup:.3f}x (95% interval "
                f"{v.ci[0]:.3f}-{v.ci[1]:.3f}); compiling the reference took {v.compile_s:.1f} s"
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
    versus_compile: VersusCompileOption = True,
    sandbox: SandboxOption = "auto",
    as_json: JsonOption = False,
) -> None:
    """Does CANDIDATE compile, match PROBLEM's Model on fresh inputs, and run faster than
    eager PyTorch (and than torch.compile of the reference)?"""
    from perfsmith.verifiers.kernel.verify import KernelSettings, verify_kernel

    problem_source, [candidate_source] = read_inputs(
        problem, [candidate], device=device, sandbox=sandbox, compile_only=compile_only
    )
    settings = KernelSettings(
        device="cuda" if device == "cuda" else "cpu",
        trials=trials,
        rounds=rounds,
        threshold=threshold,
        atol=atol,
        rtol=rtol,
        compile_only=compile_only,
        versus_compile=versus_compile and not compile_only,
    )
    if threads is not None:
        settings.threads = threads
    # a terminal sees that something happens (the first C++ build on a machine also
    # precompiles torch's header: about a minute more); logs get the steps as lines
    with err.status("building and verifying the candidate", spinner="dots"):
        result = in_sandbox(
            sandbox, lambda box: verify_kernel(box, problem_source, candidate_source, settings)
        )
    print_result(result, as_json)


@kernel_app.command("tune")
def tune_cmd(
    problem: Annotated[Path, typer.Argument(help="KernelBench problem: class Model, get_inputs.")],
    candidate: Annotated[Path, typer.Argument(help="A ModelNew file declaring tunables.")],
    device: DeviceOption = "cpu",
    rounds: Annotated[int, typer.Option(min=3, max=200, help="Timing rounds.")] = 10,
    jobs: Annotated[
        int | None, typer.Option(min=1, max=256, help="Parallel builds (default: half the cores).")
    ] = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write the best variant's source here.")
    ] = None,
    sandbox: SandboxOption = "auto",
    as_json: JsonOption = False,
) -> None:
    """Compile and time every combination of the tunables CANDIDATE declares
    (`// perfsmith: tune BLOCK=[32,64]` above `#define BLOCK 64`); keep the best verified."""
    from perfsmith.verifiers.kernel.autotune import TuneError, autotune, variants
    from perfsmith.verifiers.kernel.verify import KernelSettings

    problem_source, [source] = read_inputs(problem, [candidate], device=device, sandbox=sandbox)
    try:
        found = variants(source)
    except TuneError as exc:
        usage_error(str(exc))
    if not found:
        usage_error(f"{candidate} declares no tunables (`// perfsmith: tune NAME=[a,b]`)")
    settings = KernelSettings(device="cuda" if device == "cuda" else "cpu", rounds=rounds)
    if not as_json:
        err.print(f"{len(found)} variants of {candidate.name}")

    def progress(line: str) -> None:
        if not as_json:
            err.print(escape(line))

    best, tried = in_sandbox(
        sandbox,
        lambda box: autotune(
            box, problem_source, source, settings, parallel_builds=jobs, progress=progress
        ),
    )
    if best is not None and out_file is not None:
        out_file.write_text(best.source, encoding="utf-8")
    rows = [{"values": v.values, **(v.result.model_dump() if v.result else {})} for v in tried]
    if as_json:
        payload = {
            "best": None if best is None else {"values": best.values, **rows[tried.index(best)]},
            "variants": rows,
            "out": str(out_file) if best is not None and out_file else None,
        }
        sys.stdout.write(json.dumps(payload) + "\n")
        return
    for v in tried:
        r = v.result
        speed = "-" if r is None or r.speedup is None else f"{r.speedup:.3f}x"
        out.print(f"{v.label}: {r.verdict if r else '?'} {speed}", markup=False)
    if best is None:
        out.print("no variant was verified")
    else:
        out.print(f"best: {best.label}" + (f" (written to {out_file})" if out_file else ""))


@kernel_app.command("optimize")
def optimize_cmd(
    problem: Annotated[Path, typer.Argument(help="KernelBench problem: class Model, get_inputs.")],
    device: DeviceOption = "cpu",
    backend: Annotated[
        str | None,
        typer.Option(help="Kernel language: cpp (CPU), cuda or triton (GPU). Default by device."),
    ] = None,
    llm: Annotated[
        str | None, typer.Option("--llm", help="none, or an LLM spec (see optimize)")
    ] = None,
    candidate: Annotated[
        list[Path] | None,
        typer.Option("--candidate", help="A ModelNew file to verify alongside (repeatable)."),
    ] = None,
    rounds: Annotated[int, typer.Option(min=1, max=10)] = 2,
    candidates_k: Annotated[
        int, typer.Option("--candidates", min=1, max=8, help="Proposals per round.")
    ] = 3,
    verify_rounds: Annotated[int, typer.Option("--verify-rounds", min=3, max=200)] = 10,
    versus_compile: VersusCompileOption = True,
    compiler: Annotated[
        bool,
        typer.Option(
            "--compiler/--no-compiler",
            help="torch's compiler's kernels as a candidate (cpp backend; no model needed).",
        ),
    ] = True,
    report_dir: Annotated[Path | None, typer.Option("--report-dir")] = None,
    sandbox: SandboxOption = "auto",
    db: Annotated[str | None, typer.Option("--db", help="SQLAlchemy database URL.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Write faster kernels for PROBLEM's operator: plan, take torch's compiler's kernels
    and propose kernels with the LLM, compile, verify and time each in the sandbox, tune,
    report the fastest verified (against eager PyTorch and torch.compile)."""
    from perfsmith.verifiers.kernel.verify import BACKENDS, KernelSettings

    read_inputs(problem, candidate or [], device=device, sandbox=sandbox)
    language = backend or ("cpp" if device == "cpu" else "cuda")
    if language not in BACKENDS:
        usage_error(f"--backend must be one of {', '.join(BACKENDS)}, not {language!r}")
    if (language == "cpp") != (device == "cpu"):
        usage_error(f"--backend {language} does not write kernels for --device {device}")
    # the command line is right: now load what the run needs
    from perfsmith.service.library import kernel_optimize

    settings = settings_for(db)
    spec = model_spec(llm, settings)
    kernel_settings = KernelSettings(
        device="cuda" if device == "cuda" else "cpu",
        rounds=verify_rounds,
        versus_compile=versus_compile,
    )

    result = execute(
        lambda listeners: kernel_optimize(
            problem,
            sandbox_backend=sandbox,
            llm=spec,
            settings=kernel_settings,
            backend=language,
            candidates=candidate or [],
            rounds=rounds,
            k=candidates_k,
            compiler=compiler,
            app_settings=settings,
            report_dir=report_dir,
            listeners=listeners,
        ),
        as_json,
    )
    print_outcome(result, as_json)
