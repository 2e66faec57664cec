"""Overnight batches: what the queue costs per job, and what the timing slot buys.

1. Scheduling overhead: 1,000 no-op jobs (a run kind that does nothing) through the durable
   queue, the run service and back: on the local pool, and on a Ray cluster (one started
   here unless --ray names one). The cost per job is everything but the work: the claim,
   the run stored, started and settled, the summary, the job settled.
2. The timing-slot rule: one pair (a function and a faster rewrite) measured by several
   verifications at once on the same cores, with the machine's timing slot (measurements
   take turns) and without it (they overlap), interleaved round by round. The spread of
   the speedups each condition reports, their intervals' widths, their verdicts.

Writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from perfsmith.batch.service import BatchService
from perfsmith.config import load_settings
from perfsmith.storage.batches import BatchStore, NewJob
from perfsmith.storage.db import Database
from perfsmith.workflows.base import Finished, Job

REFERENCE = """
def sum_squares(xs: list[int]) -> int:
    total = 0
    for x in xs:
        total += x * x
    return total
"""
CANDIDATE = """
import operator


def sum_squares(xs: list[int]) -> int:
    return sum(map(operator.mul, xs, xs))
"""
INPUTS = """
import random

def generate(seed: int) -> list[tuple[list[int]]]:
    rng = random.Random(seed)
    return [([rng.randrange(1000) for _ in range(20_000)],)]
"""


class NoopWorkflow:
    """A run kind that does nothing: what is left of a job's time is the queue's."""

    kind = "noop"

    def request_text(self, config: dict[str, Any]) -> str:
        return "nothing"

    def check(self, config: dict[str, Any]) -> dict[str, Any]:
        return config

    async def start(self, job: Job) -> Finished:
        return Finished(answer="nothing done", result=None)

    async def resume(self, job: Job, follow_up: str | None) -> Finished:
        return Finished(answer="nothing done", result=None)


def _noop_batch(db: Database, n: int) -> str:
    jobs = [NewJob(name=f"noop-{i}", kind="noop", config={}, llm=None) for i in range(n)]
    return BatchStore(db).create_batch(
        name="noop", source="", budgets={"retries": 0}, deadline=None, jobs=jobs
    )


def scheduling(n: int, workers: int, ray_address: str | None, rounds: int) -> dict[str, Any]:
    settings = load_settings()
    workflows = {"noop": NoopWorkflow()}
    results: dict[str, list[float]] = {"local": [], "ray": []}
    started_ray = False
    if ray_address is None:
        import ray

        ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False)
        ray_address, started_ray = "auto", True
    try:
        for r in range(rounds):
            for where in ("local", "ray") if r % 2 == 0 else ("ray", "local"):
                with tempfile.TemporaryDirectory() as tmp:
                    db = Database(f"sqlite:///{tmp}/bench.db")
                    batch_id = _noop_batch(db, n)
                    service = BatchService(db, settings)
                    t0 = time.perf_counter()
                    asyncio.run(
                        service.work(
                            [batch_id],
                            workers=workers,
                            ray=ray_address if where == "ray" else None,
                            backend="process",
                            workflows=workflows,
                        )
                    )
                    seconds = time.perf_counter() - t0
                    jobs = BatchStore(db).get_batch(batch_id).jobs
                    assert all(j.status == "done" for j in jobs), {j.status for j in jobs}
                    db.close()
                results[where].append(seconds)
                print(f"  {where}: {n} no-op jobs in {seconds:.1f} s", flush=True)
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    out: dict[str, Any] = {"jobs": n, "workers": workers, "rounds": rounds}
    for where, times in results.items():
        med = statistics.median(times)
        out[where] = {
            "seconds": [round(t, 2) for t in times],
            "median_s": round(med, 2),
            "ms_per_job": round(1000 * med / n, 2),
            "jobs_per_s": round(n / med, 1),
        }
    out["ray_over_local"] = round(out["ray"]["median_s"] / out["local"]["median_s"], 2)
    return out


async def _measure(
    concurrent: int, folder: Path, verify_rounds: int
) -> tuple[list[float], list[float], list[str], float]:
    from perfsmith.sandbox.process import ProcessSandbox
    from perfsmith.verifiers.python.target import parse_target
    from perfsmith.verifiers.python.verify import verify

    reference = parse_target(f"{folder / 'ref.py'}::sum_squares")
    candidate = parse_target(f"{folder / 'cand.py'}::sum_squares")
    generator = parse_target(f"{folder / 'inputs.py'}::generate")
    box = ProcessSandbox()
    t0 = time.perf_counter()
    try:
        outs = await asyncio.gather(
            *(
                verify(box, reference, candidate, generator=generator, rounds=verify_rounds)
                for _ in range(concurrent)
            )
        )
    finally:
        await box.close()
    wall = time.perf_counter() - t0
    speedups = [o.speedup for o in outs if o.speedup is not None]
    widths = [o.ci[1] - o.ci[0] for o in outs if o.ci is not None]
    return speedups, widths, [o.verdict for o in outs], wall


def _spread(values: list[float]) -> dict[str, float]:
    med = statistics.median(values)
    q = statistics.quantiles(values, n=4) if len(values) >= 4 else [min(values), med, max(values)]
    return {
        "median": round(med, 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "iqr_over_median": round((q[-1] - q[0]) / med, 4),
        "range_over_median": round((max(values) - min(values)) / med, 4),
    }


def timing_slot(concurrent: int, rounds: int, verify_rounds: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="perfsmith-slot-"))
    (folder / "ref.py").write_text(REFERENCE)
    (folder / "cand.py").write_text(CANDIDATE)
    (folder / "inputs.py").write_text(INPUTS)
    slot = folder / "timing.slot"
    got: dict[str, dict[str, list[Any]]] = {
        c: {"speedups": [], "widths": [], "verdicts": [], "wall_s": []} for c in ("slot", "no_slot")
    }
    for r in range(rounds):
        for cond in ("slot", "no_slot") if r % 2 == 0 else ("no_slot", "slot"):
            os.environ["PERFSMITH_TIMING_SLOT"] = str(slot) if cond == "slot" else "off"
            speedups, widths, verdicts, wall = asyncio.run(
                _measure(concurrent, folder, verify_rounds)
            )
            got[cond]["speedups"] += speedups
            got[cond]["widths"] += widths
            got[cond]["verdicts"] += verdicts
            got[cond]["wall_s"].append(wall)
            print(
                f"  {cond}: speedups {', '.join(f'{s:.2f}' for s in speedups)} in {wall:.1f} s",
                flush=True,
            )
    out: dict[str, Any] = {
        "concurrent_measurements": concurrent,
        "rounds": rounds,
        "verify_rounds": verify_rounds,
        "cores": os.cpu_count(),
    }
    for cond, data in got.items():
        out[cond] = {
            "speedup": _spread(data["speedups"]),
            "ci_width_median": round(statistics.median(data["widths"]), 4),
            "verdicts": {v: data["verdicts"].count(v) for v in sorted(set(data["verdicts"]))},
            "wall_s_median": round(statistics.median(data["wall_s"]), 2),
            "speedups": [round(s, 4) for s in data["speedups"]],
        }
    out["spread_ratio_no_slot_over_slot"] = round(
        out["no_slot"]["speedup"]["iqr_over_median"]
        / max(1e-9, out["slot"]["speedup"]["iqr_over_median"]),
        2,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ray", default=None, help="a Ray cluster's address (default: start one)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/batch.json"))
    args = parser.parse_args()
    jobs = 200 if args.quick else args.jobs
    print(f"scheduling overhead: {jobs} no-op jobs, {args.workers} workers", flush=True)
    sched = scheduling(jobs, args.workers, args.ray, rounds=1 if args.quick else 2)
    print("timing slot: one pair, measured concurrently with and without the slot", flush=True)
    slot = timing_slot(
        concurrent=3, rounds=2 if args.quick else 4, verify_rounds=6 if args.quick else 10
    )
    result = {"scheduling": sched, "timing_slot": slot}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in sched.items()}, indent=2))
    print(
        "timing slot: spread (IQR/median) with the slot "
        f"{slot['slot']['speedup']['iqr_over_median']}, without "
        f"{slot['no_slot']['speedup']['iqr_over_median']}"
    )


if __name__ == "__main__":
    main()
