"""Profile a workload in the sandbox with cProfile: the functions where time goes, with
the target's share."""

from __future__ import annotations

import json
import sys
from typing import Any

from perfsmith.sandbox.base import Limits, Sandbox
from perfsmith.verifiers.target import Target

_PROFILER = r"""
import cProfile, importlib, json, pstats, sys, time
sys.path.insert(0, ".")
module = importlib.import_module(sys.argv[1])
workload = getattr(module, sys.argv[2])
profiler = cProfile.Profile()
started = time.perf_counter()
profiler.enable()
workload()
profiler.disable()
wall = time.perf_counter() - started
stats = pstats.Stats(profiler)
rows = []
for (path, line, name), (cc, nc, tt, ct, callers) in stats.stats.items():
    rows.append({"file": path.rsplit("/", 1)[-1], "line": line, "function": name,
                 "calls": nc, "self_s": tt, "total_s": ct})
rows.sort(key=lambda r: r["self_s"], reverse=True)
json.dump({"wall_s": wall, "functions": rows[:40]}, open("profile.json", "w"))
"""


class ProfileError(Exception):
    pass


async def profile_workload(
    sandbox: Sandbox, target: Target, workload: Target, *, limits: Limits | None = None
) -> dict[str, Any]:
    """Run ``workload()`` (a function of no arguments that exercises the target) under
    cProfile; returns wall time, the top functions by self time, and the target's share."""
    files = {
        target.module_file: target.source.encode(),
        workload.module_file: workload.source.encode(),
        "_perfsmith_profile.py": _PROFILER.encode(),
    }
    result = await sandbox.run(
        [sys.executable, "-s", "_perfsmith_profile.py", workload.path.stem, workload.function],
        files=files,
        collect=["profile.json"],
        limits=limits or Limits(wall_s=120, cpu_s=120),
    )
    data = result.files.get("profile.json")
    if not result.ok or data is None:
        tail = result.stderr.strip().splitlines()[-6:] or [result.reason or str(result.status)]
        raise ProfileError(f"the workload {workload} failed: " + " | ".join(tail))
    report: dict[str, Any] = json.loads(data)
    target_rows = [
        r
        for r in report["functions"]
        if r["function"] == target.function and r["file"] == target.module_file
    ]
    total = max(report["wall_s"], 1e-9)
    report["target"] = {
        "function": target.function,
        "total_s": target_rows[0]["total_s"] if target_rows else 0.0,
        "share": (target_rows[0]["total_s"] / total) if target_rows else 0.0,
    }
    return report


def describe(report: dict[str, Any], limit: int = 8) -> str:
    """A few lines for the LLM: the hottest functions."""
    lines = [
        f"workload wall time {report['wall_s']:.3f} s; target {report['target']['function']} "
        f"{report['target']['share']:.0%} of it"
    ]
    for r in report["functions"][:limit]:
        lines.append(
            f"{r['file']}:{r['line']} {r['function']}: {r['calls']} calls, "
            f"self {r['self_s']:.4f} s, total {r['total_s']:.4f} s"
        )
    return "\n".join(lines)
