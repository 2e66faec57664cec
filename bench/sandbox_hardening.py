"""What the sandbox's hardening costs: the start-up of a trivial command on each backend,
today's code against an earlier revision's, in one run.

    python bench/sandbox_hardening.py [--before REV] [--runs N] [--out PATH]

Each side runs in its own worker process (the earlier revision's `perfsmith/sandbox`
extracted from git, the same interpreter and packages); the benchmark asks them in turn,
one run each, alternating which goes first, so machine noise falls on both alike. It
reports the median and 90th percentile of the wall time per run and the ratio of
medians (after / before) per backend.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The last revision before the hardening (read-only mounts, PID namespace, root launcher).
DEFAULT_BEFORE = "e34596c"

WORKER = r"""
import asyncio, sys, time
from perfsmith.sandbox.base import Limits
from perfsmith.sandbox.select import open_sandbox

async def main():
    boxes = {}
    for name in sys.argv[1].split(","):
        try:
            boxes[name] = await open_sandbox(name)
        except Exception as exc:
            print(f"skip {name} {type(exc).__name__}", flush=True)
    print("ready " + ",".join(boxes), flush=True)
    limits = Limits(wall_s=10)
    for line in sys.stdin:
        name = line.strip()
        if not name:
            break
        t0 = time.perf_counter()
        result = await boxes[name].run(["/bin/true"], limits=limits)
        print(f"{time.perf_counter() - t0:.6f} {result.status.value}", flush=True)
    for box in boxes.values():
        await box.close()

asyncio.run(main())
"""


def extract(rev: str, into: Path) -> Path:
    """The `perfsmith` package at `rev`, as files under `into`."""
    data = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "perfsmith"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


class Worker:
    def __init__(self, tree: Path, backends: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, ",".join(backends)],
            cwd=tree,
            env={"PYTHONPATH": str(tree), "PATH": "/usr/local/bin:/usr/bin:/bin"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        while line.startswith("skip "):
            print(f"{tree.name}: {line.strip()}", flush=True)
            line = self.proc.stdout.readline()
        self.backends = line.split()[1].split(",") if line.startswith("ready ") else []

    def run(self, backend: str) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(backend + "\n")
        self.proc.stdin.flush()
        seconds, status = self.proc.stdout.readline().split()
        if status != "ok":
            raise RuntimeError(f"{backend}: /bin/true ended {status}")
        return float(seconds)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def summary(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {
        "median_ms": round(statistics.median(s) * 1000, 3),
        "p90_ms": round(s[int(0.9 * (len(s) - 1))] * 1000, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", default=DEFAULT_BEFORE, help="the earlier revision")
    ap.add_argument("--runs", type=int, default=100, help="runs per side and backend")
    ap.add_argument("--out", type=Path, default=Path("bench/results/sandbox_hardening.json"))
    args = ap.parse_args()
    wanted = ["process", "bubblewrap", "docker"]
    with tempfile.TemporaryDirectory(prefix="perfsmith-before-") as tmp:
        Path(tmp).chmod(0o755)  # the sandbox's uids read the package from there
        before_tree = extract(args.before, Path(tmp))
        sides = {"before": Worker(before_tree, wanted), "after": Worker(ROOT, wanted)}
        try:
            backends = [b for b in wanted if all(b in w.backends for w in sides.values())]
            samples: dict[str, dict[str, list[float]]] = {
                b: {"before": [], "after": []} for b in backends
            }
            for i in range(args.runs + 5):
                for backend in backends:
                    order = ["before", "after"] if i % 2 == 0 else ["after", "before"]
                    for side in order:
                        seconds = sides[side].run(backend)
                        if i >= 5:  # the first runs warm caches (docker's containers)
                            samples[backend][side].append(seconds)
        finally:
            for worker in sides.values():
                worker.close()
    report: dict[str, Any] = {
        "before": args.before,
        "after": subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "runs": args.runs,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cpus",
        "backends": {},
    }
    for backend, sides_samples in samples.items():
        before, after = summary(sides_samples["before"]), summary(sides_samples["after"])
        report["backends"][backend] = {
            "before": before,
            "after": after,
            "ratio_of_medians": round(after["median_ms"] / before["median_ms"], 3),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["backends"], indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
