"""What a batch job achieved, read back from its run: the best verified candidate with its
interval (a kernel's also against torch.compile), the commits a repository run kept, how
many candidates were tried."""

from __future__ import annotations

from typing import Any

from perfsmith.errors import RunNotFoundError
from perfsmith.storage.models import Candidate
from perfsmith.storage.runs import RunStore


def _best(candidates: list[Candidate]) -> Candidate | None:
    faster = [c for c in candidates if c.verdict == "faster" and c.speedup is not None]
    return max(faster, key=lambda c: c.speedup or 0.0, default=None)


def run_summary(store: RunStore, run_id: str) -> dict[str, Any]:
    """The job's row in the morning report: its run's best verified speedup (and, for a
    repository, over the runs of its functions), the branch and commits kept."""
    try:
        run = store.get_run(run_id)
    except RunNotFoundError:
        return {"run_id": run_id}
    finished: dict[str, Any] = {}
    for event in reversed(store.events(run_id)[-5:]):
        if event.type == "run_finished":
            finished = dict(event.payload)
            break
    runs = [run_id, *[r for r in finished.get("runs") or [] if isinstance(r, str)]]
    candidates: list[Candidate] = []
    for rid in runs:
        candidates.extend(store.candidates(rid))
    best = _best(candidates)
    summary: dict[str, Any] = {
        "run_id": run_id,
        "run_status": run.status,
        "answer": (run.answer or "")[:2000] or None,
        "candidates": len(candidates),
        "verified": sum(c.verdict is not None for c in candidates),
        "correct": sum(c.verdict in ("faster", "same", "slower") for c in candidates),
        "speedup": best.speedup if best is not None else None,
        "ci": [best.ci_low, best.ci_high] if best is not None else None,
        "best_origin": best.origin if best is not None else None,
    }
    if best is not None:
        # a kernel run's best, timed against torch.compile of the reference too
        versus = [m.meta for m in best.measurements if m.kind.endswith("-vs-compile")]
        if versus:
            summary["versus_compile"] = {
                "speedup": versus[-1].get("speedup"),
                "ci": versus[-1].get("ci"),
                "compile_s": versus[-1].get("compile_s"),
            }
    if run.kind == "repo":
        summary.update(
            branch=finished.get("branch"),
            kept=finished.get("kept"),
            commits=finished.get("commits") or [],
        )
    return summary
