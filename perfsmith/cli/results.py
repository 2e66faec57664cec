"""How a finished run's result is printed, for every kind: one JSON object with --json,
else the lines a person reads. `perfsmith run`, `optimize`, `optimize-repo`, `kernel
optimize` and `runs resume` all print through `print_outcome`."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from perfsmith.cli.common import out

if TYPE_CHECKING:
    from perfsmith.engine.drive import RunResult
    from perfsmith.workflows.kernels import KernelOptimizeResult
    from perfsmith.workflows.optimize import OptimizeResult
    from perfsmith.workflows.repo import RepoResult


def print_outcome(result: Any, as_json: bool) -> None:
    """A finished run's result (a `RunResult`, `OptimizeResult`, `RepoResult` or
    `KernelOptimizeResult`)."""
    if as_json:
        sys.stdout.write(json.dumps(result.as_json()) + "\n")
        return
    from perfsmith.engine.drive import RunResult
    from perfsmith.workflows.kernels import KernelOptimizeResult
    from perfsmith.workflows.optimize import OptimizeResult
    from perfsmith.workflows.repo import RepoResult

    if isinstance(result, OptimizeResult):
        _optimize(result)
    elif isinstance(result, RepoResult):
        _repo(result)
    elif isinstance(result, KernelOptimizeResult):
        _kernel(result)
    else:
        assert isinstance(result, RunResult), type(result)
        _run(result)


def _plain(text: str) -> None:
    out.print(text, markup=False, highlight=False, soft_wrap=True)


def _candidate(
    cid: int, origin: str, verdict: str, speedup: float | None, ci: Any, failure: str | None
) -> None:
    speed = "-" if speedup is None else f"{speedup:.2f}x"
    if ci:
        speed += f" [{ci[0]:.2f}, {ci[1]:.2f}]"
    line = f"candidate {cid} ({origin}): {verdict} {speed}"
    if failure:
        line += f" · {failure.splitlines()[0][:140]}"
    _plain(line)


def _run(result: RunResult) -> None:
    out.print(f"\n[bold]answer:[/] {escape(result.answer)}")
    out.print(
        f"[dim]run {result.run_id} · {result.rounds} round(s) · "
        f"`perfsmith runs show {result.run_id}`[/]"
    )


def _optimize(result: OptimizeResult) -> None:
    for c in result.candidates:
        _candidate(c.id, c.origin, c.verdict, c.speedup, c.ci, c.failure)
    if result.best is None:
        # perfsmith's summary: every candidate's verdict, or why none was produced
        summary = result.answer.splitlines()[0] if result.answer else "no candidate was verified"
        _plain(f"{summary} Nothing to apply.")
    else:
        out.print(result.diff, markup=False, highlight=False)
        applied = " (applied)" if result.applied else " (not applied: pass --apply)"
        _plain(f"best: candidate {result.best.id}, {result.best.speedup:.2f}x{applied}")
    if result.report:
        _plain(f"report: {result.report}")


def _repo(result: RepoResult) -> None:
    for o in result.outcomes:
        mark = f"kept {o.commit[:10]}" if o.kept and o.commit else "not kept"
        where = f"{o.hotspot.file}::{o.hotspot.function} ({o.hotspot.total_s:.3f} s)"
        _plain(f"{where}: {mark} · {o.note}")
    kept = sum(o.kept for o in result.outcomes)
    _plain(f"branch {result.branch}: {kept} commit(s) on {result.base[:10]}")
    if result.report:
        _plain(f"report: {result.report}")


def _kernel(result: KernelOptimizeResult) -> None:
    for c in result.candidates:
        r = c.result
        _candidate(c.id, c.origin, r.verdict, r.speedup, r.ci, r.failure)
    if result.best is None:
        _plain("no kernel was verified faster")
    else:
        _plain(f"best: candidate {result.best.id}, written to {result.best_file}")
        v = result.best.result.versus_compile
        if v is not None:
            _plain(
                f"best against torch.compile: {v.verdict}, {v.speedup:.2f}x "
                f"[{v.ci[0]:.2f}, {v.ci[1]:.2f}] (compiling took {v.compile_s:.1f} s)"
            )
    _plain(f"report: {result.report}")
