"""Out-of-the-box wins: `perfsmith optimize` on the examples and on classic slow functions
(bench/wins/classics.py), each with its input generator, on the embedded model and no
hand-written candidate.

    python bench/wins.py [--quick] [--llm local] [--only NAME ...] [--out PATH]

Reported per target: the best verified speedup, the source of the winning candidate
(catalogue rule, ruff rules, model strategy), the run's time and the time to its first
verified win (>= 1.2x); overall: the fraction of targets with a verified win of at least
1.2x, the median best speedup, the median time to the first win. Nothing here is timed
in the test suite: this is the figure, the tests check the machinery.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "wins"))

import classics  # noqa: E402

from perfsmith.sandbox.select import open_sandbox  # noqa: E402
from perfsmith.service.library import optimize  # noqa: E402
from perfsmith.storage.db import Database  # noqa: E402
from perfsmith.storage.runs import RunStore  # noqa: E402

WIN = 1.2
CLASSICS = ROOT / "bench" / "wins" / "classics.py"
# the examples a new user meets first: (target, input generator)
EXAMPLES = [
    ("examples/dupes/dupes.py::find_duplicates", "examples/dupes/inputs.py::generate"),
    ("examples/strings/strings.py::render_rows", "examples/strings/inputs.py::generate"),
    ("examples/numeric/numeric.py::variance", "examples/numeric/inputs.py::generate"),
    (
        "examples/moving_average/moving_average.py::moving_average",
        "examples/moving_average/inputs.py::generate",
    ),
    ("examples/regex/regex_count.py::count_errors", "examples/regex/inputs.py::generate"),
]
_SPEEDUP = re.compile(r'"verdict": "faster", "speedup": ([0-9.]+)')


def targets() -> list[tuple[str, str]]:
    found = [(str(ROOT / t), str(ROOT / g)) for t, g in EXAMPLES]
    found += [(f"{CLASSICS}::{name}", f"{CLASSICS}::gen_{name}") for name in classics.TARGETS]
    return found


def first_win_s(db: Database, run_id: str) -> float | None:
    """Seconds from the run's first event to the first verify task that found >= WIN."""
    events = RunStore(db).events(run_id)
    if not events:
        return None
    start = events[0].created_at
    for e in events:
        if e.type == "task_finished" and e.payload.get("tool") == "verify":
            for match in _SPEEDUP.finditer(str(e.payload.get("result", ""))):
                if float(match.group(1)) >= WIN:
                    return (e.created_at - start).total_seconds()
    return None


async def one(target: str, inputs: str, args: argparse.Namespace, db: Database) -> dict[str, Any]:
    name = target.rpartition("::")[2]
    started = time.perf_counter()
    row: dict[str, Any] = {"target": name}
    try:
        box = await open_sandbox("auto")
        try:
            result = await optimize(
                target,
                sandbox=box,
                llm=args.llm,
                inputs=inputs,
                rounds=args.rounds,
                k=args.k,
                database=db,
                verify_rounds=args.verify_rounds,
                report=False,
            )
        finally:
            await box.close()
    except Exception as exc:  # a failed run is a result too
        row.update(error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - started)
        return row
    best = result.best
    row.update(
        run_id=result.run_id,
        seconds=round(time.perf_counter() - started, 1),
        best_speedup=best.speedup if best else None,
        best_ci=list(best.ci) if best and best.ci else None,
        best_origin=best.origin if best else None,
        win=bool(best and (best.speedup or 0) >= WIN),
        first_win_s=first_win_s(db, result.run_id),
        candidates=[
            {"origin": c.origin, "verdict": c.verdict, "speedup": c.speedup}
            for c in result.candidates
        ],
    )
    return row


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm", default="local")
    parser.add_argument("--quick", action="store_true", help="one proposal, fewer rounds")
    parser.add_argument("--only", nargs="*", help="target function names to run")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "wins.json")
    args = parser.parse_args()
    args.rounds, args.k = 1, (1 if args.quick else 3)
    args.verify_rounds = 6 if args.quick else 12
    chosen = [(t, g) for t, g in targets() if not args.only or t.rpartition("::")[2] in args.only]
    rows = []
    with tempfile.TemporaryDirectory() as home:
        db = Database(f"sqlite:///{home}/wins.db")
        try:
            for target, inputs in chosen:
                row = await one(target, inputs, args, db)
                rows.append(row)
                speedup = row.get("best_speedup")
                shown = "none" if speedup is None else f"{speedup:.2f}x"
                print(
                    f"{row['target']:<22} best {shown:>8}  "
                    f"{row.get('best_origin') or row.get('error', '')}  ({row['seconds']:.0f} s)",
                    flush=True,
                )
        finally:
            db.close()
    wins = [r for r in rows if r.get("win")]
    speedups = [r["best_speedup"] for r in rows if r.get("best_speedup")]
    firsts = [r["first_win_s"] for r in rows if r.get("first_win_s") is not None]
    by_source: dict[str, int] = {}
    for r in wins:
        source = str(r["best_origin"]).split(":")[0]
        by_source[source] = by_source.get(source, 0) + 1
    summary = {
        "targets": len(rows),
        "with_win_at_least_1.2x": len(wins),
        "fraction_with_win": round(len(wins) / len(rows), 3) if rows else 0.0,
        "median_best_speedup": round(statistics.median(speedups), 2) if speedups else None,
        "median_first_win_s": round(statistics.median(firsts), 1) if firsts else None,
        "winning_source": by_source,
    }
    out = {
        "machine": {"python": platform.python_version(), "cpu": platform.processor()},
        "settings": {
            "llm": args.llm,
            "rounds": args.rounds,
            "k": args.k,
            "verify_rounds": args.verify_rounds,
        },
        "summary": summary,
        "targets": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
