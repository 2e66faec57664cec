"""Profile a workload in the sandbox: where its time goes, by function and by line.

Three passes, each in its own sandboxed process so that one profiler's overhead never
shows up in another's figures and nothing the workload caches carries from one pass to
the next:

1. cProfile: every function's calls, self and total time (exact counts), the target's
   share of the wall time.
2. pyinstrument: the sampled call tree (which call paths the time goes down), rendered as
   text.
3. line_profiler: per-line hits and time in the target and in the hottest other functions
   of the target's module.

The first pass must work (a workload that fails is the user's error); the other two add
detail, and a failure of either is kept in the report as a note rather than failing the
run.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from perfsmith.sandbox.base import Limits, Sandbox
from perfsmith.verifiers.python.target import Target

_PROFILER = r"""
import importlib, json, sys, time
sys.path.insert(0, ".")
mode = sys.argv[1]
module = importlib.import_module(sys.argv[2])
workload = getattr(module, sys.argv[3])
out = {}
if mode == "functions":
    import cProfile, pstats
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    workload()
    profiler.disable()
    out["wall_s"] = time.perf_counter() - started
    rows = []
    for (path, line, name), (cc, nc, tt, ct, callers) in pstats.Stats(profiler).stats.items():
        rows.append({"file": path.rsplit("/", 1)[-1], "line": line, "function": name,
                     "calls": nc, "self_s": tt, "total_s": ct})
    rows.sort(key=lambda r: r["self_s"], reverse=True)
    out["functions"] = rows[:40]
elif mode == "tree":
    from pyinstrument import Profiler
    from pyinstrument.renderers import ConsoleRenderer
    profiler = Profiler(interval=0.001)
    profiler.start()
    workload()
    profiler.stop()
    session = profiler.last_session
    out["sample_s"] = session.duration
    out["samples"] = session.sample_count
    text = ConsoleRenderer(unicode=False, color=False, short_mode=True).render(session)
    tree = []  # the tree's rows without the renderer's frame and banner
    for row in text.splitlines():
        row = row[2:] if row.startswith(". ") else row
        if row.strip() and row.lstrip(" |`-")[:1].isdigit():
            tree.append(row.rstrip())
    out["text"] = "\n".join(tree)
else:  # lines: per-line time in the named functions of the target's module
    from line_profiler import LineProfiler
    target = importlib.import_module(sys.argv[4])
    profiler = LineProfiler()
    names = []
    for name in sys.argv[5].split(","):
        fn = target
        for part in name.split("."):  # FUNC or Class.method
            fn = getattr(fn, part, None)
        fn = getattr(fn, "__func__", fn)  # a class method: its function
        if hasattr(fn, "__code__"):
            profiler.add_function(fn)
            names.append(name)
    profiler.enable_by_count()
    workload()
    profiler.disable_by_count()
    stats = profiler.get_stats()
    source = open(target.__file__, encoding="utf-8").read().splitlines()
    functions = []
    for (path, first, name), timings in stats.timings.items():
        total = sum(t for _, _, t in timings) * stats.unit
        lines = [{"line": n, "hits": hits, "time_s": t * stats.unit,
                  "code": source[n - 1].strip() if 0 < n <= len(source) else ""}
                 for n, hits, t in timings]
        lines.sort(key=lambda r: r["time_s"], reverse=True)
        functions.append({"function": name, "first_line": first, "total_s": total,
                          "lines": lines[:12]})
    functions.sort(key=lambda f: f["total_s"], reverse=True)
    out["functions"] = functions
json.dump(out, open("profile.json", "w"))
"""

# Other functions of the target's module worth a line profile: the hottest few by total
# time in the cProfile pass.
_LINE_FUNCTIONS = 3


class ProfileError(Exception):
    pass


async def _pass(
    sandbox: Sandbox, target: Target, workload: Target, mode: str, extra: list[str], limits: Limits
) -> dict[str, Any]:
    files = {
        target.module_file: target.source.encode(),
        workload.module_file: workload.source.encode(),
        "_perfsmith_profile.py": _PROFILER.encode(),
    }
    result = await sandbox.run(
        [
            sys.executable,
            "-s",
            "_perfsmith_profile.py",
            mode,
            workload.path.stem,
            workload.function,
            *extra,
        ],
        files=files,
        collect=["profile.json"],
        limits=limits,
    )
    data = result.files.get("profile.json")
    if not result.ok or data is None:
        tail = result.stderr.strip().splitlines()[-6:] or [result.reason or str(result.status)]
        raise ProfileError(f"the workload {workload} failed: " + " | ".join(tail))
    out: dict[str, Any] = json.loads(data)
    return out


async def profile_workload(
    sandbox: Sandbox,
    target: Target,
    workload: Target,
    *,
    limits: Limits | None = None,
    detail: bool = True,
) -> dict[str, Any]:
    """Profile ``workload()`` (a function of no arguments that exercises the target).

    Returns ``wall_s``, ``functions`` (cProfile's top functions by self time), ``target``
    (its total time and share), and with ``detail`` also ``tree`` (pyinstrument's call
    tree as text) and ``lines`` (line_profiler's hottest lines per function of the
    target's module), or ``tree_error`` / ``lines_error`` saying why one is missing."""
    limits = limits or Limits(wall_s=120, cpu_s=120)
    report = await _pass(sandbox, target, workload, "functions", [], limits)
    own = [
        r
        for r in report["functions"]
        if r["file"] == target.module_file and r["function"] == target.name
    ]
    total = max(report["wall_s"], 1e-9)
    report["target"] = {
        "function": target.function,
        "total_s": own[0]["total_s"] if own else 0.0,
        "share": (own[0]["total_s"] / total) if own else 0.0,
    }
    if not detail:
        return report
    try:
        tree = await _pass(sandbox, target, workload, "tree", [], limits)
        report["tree"] = tree["text"]
    except (ProfileError, KeyError) as exc:
        report["tree_error"] = str(exc)
    neighbours = sorted(
        (
            r
            for r in report["functions"]
            if r["file"] == target.module_file and r["function"] != target.name
        ),
        key=lambda r: r["total_s"],
        reverse=True,
    )
    names = [target.function] + [r["function"] for r in neighbours[:_LINE_FUNCTIONS]]
    try:
        lines = await _pass(
            sandbox, target, workload, "lines", [target.path.stem, ",".join(names)], limits
        )
        report["lines"] = lines["functions"]
    except (ProfileError, KeyError) as exc:
        report["lines_error"] = str(exc)
    return report


def hot_lines(report: dict[str, Any], limit: int = 5) -> list[str]:
    """The hottest lines of each line-profiled function, as text."""
    out: list[str] = []
    for fn in report.get("lines", []):
        total = max(fn["total_s"], 1e-12)
        if fn["total_s"] <= 0:
            continue
        out.append(f"{fn['function']} (line {fn['first_line']}): {fn['total_s']:.4f} s")
        for row in fn["lines"][:limit]:
            out.append(
                f"  line {row['line']}: {row['time_s'] / total:.0%} of it, "
                f"{row['hits']} hits: {row['code'][:100]}"
            )
    return out


def describe(report: dict[str, Any], limit: int = 8) -> str:
    """A few lines for the LLM: the hottest functions, then the hottest lines."""
    lines = [
        f"workload wall time {report['wall_s']:.3f} s; target {report['target']['function']} "
        f"{report['target']['share']:.0%} of it"
    ]
    for r in report["functions"][:limit]:
        lines.append(
            f"{r['file']}:{r['line']} {r['function']}: {r['calls']} calls, "
            f"self {r['self_s']:.4f} s, total {r['total_s']:.4f} s"
        )
    hot = hot_lines(report, limit=4)
    if hot:
        lines += ["hottest lines (line_profiler):", *hot]
    return "\n".join(lines)
