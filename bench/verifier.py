"""Verifier benchmark: pairs of functions with a known true speed ratio, verified with and
without a competing CPU load on the other core.

    python bench/verifier.py [--quick] [--out PATH]

Each pair returns the same values; the candidate burns `1/ratio` of the reference's
loop, so the true ratio is the nominal one up to a small fixed cost (the instruction
counts, also reported, give it exactly). Reported: the fraction of correct verdicts
(at 1.05 both `faster` and `same` count, it sits on the 5 % threshold), how often the
95 % interval covers the true ratio, the measurement time per verdict, whether a 5 %
difference is told apart (interval above 1), and instruction counts run to run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perfsmith.sandbox.process import ProcessSandbox
from perfsmith.verifiers.python.correctness import GeneratedInputs
from perfsmith.verifiers.python.instructions import count_instructions
from perfsmith.verifiers.python.target import parse_target
from perfsmith.verifiers.python.verify import verify

RATIOS = [1.0, 1.05, 1.10, 1.5, 3.0, 0.8]
BURN = 300_000
SOURCE = """
def work(n: int) -> int:
    acc = 0
    for i in range({burn}):
        acc ^= i
    return n * 2
"""
GENERATOR = "def gen(seed):\n    return [(seed,), (seed + 1,)]\n"


def expected(ratio: float) -> set[str]:
    if ratio >= 1.10:
        return {"faster"}
    if ratio >= 1.05:
        return {"faster", "same"}
    if ratio <= 1 / 1.05:
        return {"slower"}
    return {"same"}


def write_pair(d: Path, ratio: float) -> tuple[str, str]:
    ref = d / "ref.py"
    ref.write_text(SOURCE.format(burn=BURN))
    cand = d / f"cand_{ratio:g}.py"
    cand.write_text(SOURCE.format(burn=round(BURN / ratio)))
    return f"{ref}::work", f"{cand}::work"


async def run(quick: bool) -> dict[str, Any]:
    d = Path(tempfile.mkdtemp(prefix="perfsmith-bench-verifier-"))
    (d / "gen.py").write_text(GENERATOR)
    gen = parse_target(f"{d}/gen.py::gen")
    box = ProcessSandbox()
    repeats = 1 if quick else 3
    rows: list[dict[str, Any]] = []
    for load in (False, True):
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load else None
        try:
            for _ in range(repeats):
                for ratio in RATIOS:
                    ref, cand = write_pair(d, ratio)
                    res = await verify(
                        box, parse_target(ref), parse_target(cand), generator=gen, rounds=12
                    )
                    low, high = res.ci or (0.0, 0.0)
                    row = {
                        "ratio": ratio,
                        "load": load,
                        "verdict": res.verdict,
                        "verdict_ok": res.verdict in expected(ratio),
                        "speedup": res.speedup,
                        "ci": res.ci,
                        "covers_ratio": low <= ratio <= high,
                        "measurement_s": res.details.get("measurement_s"),
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
    # Instruction counts twice for one pair: how exactly they repeat, and the true ratio.
    ref, cand = write_pair(d, 1.5)
    counts = [
        await count_instructions(box, parse_target(ref), parse_target(cand), GeneratedInputs(gen))
        for _ in range(2)
    ]
    a, b = counts[0], counts[1]
    five = [r for r in rows if r["ratio"] == 1.05]
    summary = {
        "verdicts": len(rows),
        "correct_fraction": round(sum(r["verdict_ok"] for r in rows) / len(rows), 3),
        "correct_fraction_loaded": round(
            sum(r["verdict_ok"] for r in rows if r["load"]) / max(1, len(rows) // 2), 3
        ),
        "interval_coverage": round(sum(r["covers_ratio"] for r in rows) / len(rows), 3),
        "median_measurement_s": statistics.median(r["measurement_s"] for r in rows),
        "max_measurement_s": max(r["measurement_s"] for r in rows),
        "five_percent_told_apart_fraction": round(
            sum(bool(r["ci"] and r["ci"][0] > 1) for r in five) / len(five), 3
        ),
    }
    instructions = {
        "reference": [a.reference, b.reference],
        "candidate": [a.candidate, b.candidate],
        "speedup": [a.speedup, b.speedup],
        "max_relative_difference": max(
            abs(a.reference - b.reference) / a.reference,
            abs(a.candidate - b.candidate) / a.candidate,
        ),
    }
    return {
        "quick": quick,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cpus",
        "pairs": rows,
        "summary": summary,
        "instructions": instructions,
        "targets": {
            "5%_told_apart_in_<=10s": summary["five_percent_told_apart_fraction"] >= 0.5
            and summary["max_measurement_s"] <= 10,
            "instructions_exact": instructions["max_relative_difference"] == 0,
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("bench/results/verifier.json"))
    args = ap.parse_args()
    report = asyncio.run(run(args.quick))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        json.dumps(
            {
                "summary": report["summary"],
                "instructions": report["instructions"],
                "targets": report["targets"],
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
