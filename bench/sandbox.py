"""Sandbox benchmark: per-run overhead of each backend for a trivial command, and the
throughput of 200 short runs with 2 in flight.

    python bench/sandbox.py [--quick] [--out PATH]

Backends run interleaved (round-robin, one run each in turn) so that machine noise hits
them alike; medians and 90th percentiles of the wall time seen by the caller.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perfsmith.sandbox.base import Limits, Sandbox
from perfsmith.sandbox.select import open_sandbox

TARGETS_MS = {"process": 20.0, "bubblewrap": 30.0, "docker": 100.0}


async def available() -> dict[str, Sandbox]:
    boxes: dict[str, Sandbox] = {}
    for name in ("process", "bubblewrap", "docker"):
        try:
            boxes[name] = await open_sandbox(name)
        except Exception as exc:
            print(f"{name}: skipped ({exc})", flush=True)
    return boxes


async def overhead(boxes: dict[str, Sandbox], n: int) -> dict[str, Any]:
    samples: dict[str, list[float]] = {name: [] for name in boxes}
    limits = Limits(wall_s=10)
    for _ in range(5):  # warm: docker starts its containers, caches fill
        for box in boxes.values():
            await box.run(["/bin/true"], limits=limits)
    for _ in range(n):
        for name, box in boxes.items():
            t0 = time.perf_counter()
            result = await box.run(["/bin/true"], limits=limits)
            samples[name].append(time.perf_counter() - t0)
            assert result.ok, result
    out = {}
    for name, s in samples.items():
        s.sort()
        out[name] = {
            "median_ms": round(statistics.median(s) * 1000, 3),
            "p90_ms": round(s[int(0.9 * (len(s) - 1))] * 1000, 3),
            "n": len(s),
        }
    return out


async def throughput(box: Sandbox, runs: int, in_flight: int) -> dict[str, Any]:
    slots = asyncio.Semaphore(in_flight)
    limits = Limits(wall_s=10)

    async def one() -> bool:
        async with slots:
            r = await box.run(
                [sys.executable, "-I", "-S", "-c", "print(sum(range(1000)))"], limits=limits
            )
            return r.ok and r.stdout.strip() == "499500"

    t0 = time.perf_counter()
    ok = await asyncio.gather(*(one() for _ in range(runs)))
    wall = time.perf_counter() - t0
    return {
        "runs": runs,
        "in_flight": in_flight,
        "all_ok": all(ok),
        "wall_s": round(wall, 3),
        "runs_per_s": round(runs / wall, 2),
    }


async def main_async(quick: bool) -> dict[str, Any]:
    boxes = await available()
    try:
        report: dict[str, Any] = {
            "quick": quick,
            "python": platform.python_version(),
            "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cpus",
            "overhead": await overhead(boxes, 20 if quick else 100),
            "throughput": {},
        }
        print(json.dumps(report["overhead"]), flush=True)
        for name, box in boxes.items():
            report["throughput"][name] = await throughput(box, 50 if quick else 200, 2)
            print(name, json.dumps(report["throughput"][name]), flush=True)
        report["targets"] = {
            f"{name}_median_ms<={limit:g}": report["overhead"][name]["median_ms"] <= limit
            for name, limit in TARGETS_MS.items()
            if name in report["overhead"]
        }
        return report
    finally:
        for box in boxes.values():
            await box.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("bench/results/sandbox.json"))
    args = ap.parse_args()
    report = asyncio.run(main_async(args.quick))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["targets"], indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
