"""Kernel benchmark, two modes.

Hand-written kernels: for each problem in examples/kernels, the reference's time, the
hand-written kernel's (examples/kernels/cpp or cuda) and, where a kernel declares
tunables, every autotuned variant's; speedups with 95% intervals, and fast_p (the
fraction of problems whose best verified kernel is correct and more than p times faster).

    python bench/kernel_suite.py [--device cpu|cuda] [--quick] [--out PATH]

What perfsmith finds by itself (``--optimize``): ``kernel optimize`` on the six examples
and the problems in bench/problems/kernels, with no candidate given: torch's compiler's
kernels and the model's proposals, verified, tuned; the best against eager PyTorch and
against torch.compile of the reference. fast_1.0 and fast_1.5 over each baseline, and
the compile times (torch's compiler on the problem, torch.compile of the reference, the
build of each candidate).

    python bench/kernel_suite.py --optimize [--llm local|none|SPEC] [--k 1] [--out PATH]
                            [--generated-out examples/kernels/inductor]

--quick tunes nothing and times fewer rounds. Builds are cached
(PERFSMITH_KERNEL_CACHE_DIR, else the user cache directory).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perfsmith.sandbox.process import ProcessSandbox
from perfsmith.verifiers.kernel.autotune import autotune, tunables, variants
from perfsmith.verifiers.kernel.verify import (
    KernelResult,
    KernelSettings,
    compile_candidate,
    read_problem,
    verify_kernel,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "kernels"
SUITE = Path(__file__).resolve().parent / "problems" / "kernels"
P_VALUES = (1.0, 1.5, 2.0)


def row(result: KernelResult) -> dict[str, Any]:
    d = result.details
    return {
        "verdict": result.verdict,
        "correct": result.correct,
        "speedup": result.speedup,
        "ci": result.ci,
        "flags": result.flags,
        "reference_us": round(d["reference_call_s"] * 1e6, 2) if "reference_call_s" in d else None,
        "candidate_us": round(d["candidate_call_s"] * 1e6, 2) if "candidate_call_s" in d else None,
        "failure": result.failure,
        "device_name": d.get("device_name"),
    }


def fast_p(best: list[KernelResult | None], p: float) -> float:
    ok = [r for r in best if r is not None and r.correct and not r.flags and (r.speedup or 0) > p]
    return len(ok) / len(best) if best else 0.0


async def prebuild(
    box: ProcessSandbox,
    folder: Path,
    settings: KernelSettings,
    *,
    tune: bool,
    only: list[str] | None,
    jobs_limit: int | None = None,
) -> None:
    """Every kernel and tuning variant built in parallel (half the cores) before any
    timing: builds are CPU work that must not overlap a measurement."""
    jobs: list[tuple[str, str, str]] = []
    for kernel in sorted(folder.glob("*.py")):
        if only and kernel.stem not in only:
            continue
        problem = read_problem(EXAMPLES / kernel.name)
        source = kernel.read_text()
        jobs.append((kernel.stem, problem, source))
        if tune:
            jobs += [(f"{kernel.stem} {v.label}", problem, v.source) for v in variants(source)]
    unique: dict[str, tuple[str, str, str]] = {}
    for job in jobs:  # a variant can be the kernel as written: build it once
        unique.setdefault(job[2], job)
    jobs = list(unique.values())
    limit = asyncio.Semaphore(jobs_limit or max(1, (os.cpu_count() or 2) // 2))

    async def build(label: str, problem: str, source: str) -> None:
        async with limit:
            t0 = time.perf_counter()
            built, failure, cached = await compile_candidate(box, problem, source, settings)
            state = "cached" if cached else ("built" if built else f"FAILED: {failure}")
            print(f"{label}: {state} ({time.perf_counter() - t0:.0f} s)", flush=True)

    await asyncio.gather(*(build(*job) for job in jobs))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--only", nargs="*", help="problem names (default: all)")
    parser.add_argument("--jobs", type=int, help="parallel builds (default: half the cores)")
    parser.add_argument(
        "--prebuild-only", action="store_true", help="build every kernel and variant, time none"
    )
    parser.add_argument("--optimize", action="store_true", help="perfsmith's own kernels")
    parser.add_argument("--llm", default="local", help="--optimize: the model (or none)")
    parser.add_argument("--k", type=int, default=1, help="--optimize: proposals per problem")
    parser.add_argument(
        "--generated-out", type=Path, help="--optimize: write the compiler's candidates here"
    )
    args = parser.parse_args()
    if args.optimize:
        await optimize_suite(args)
        return
    folder = EXAMPLES / ("cpp" if args.device == "cpu" else "cuda")
    settings = KernelSettings(device=args.device, rounds=5 if args.quick else 10)
    box = ProcessSandbox()
    await prebuild(box, folder, settings, tune=not args.quick, only=args.only, jobs_limit=args.jobs)
    if args.prebuild_only:
        await box.close()
        return
    problems: list[dict[str, Any]] = []
    best_results: list[KernelResult | None] = []
    started = time.perf_counter()
    for problem_path in sorted(EXAMPLES.glob("*.py")):
        name = problem_path.stem
        if args.only and name not in args.only:
            continue
        problem = read_problem(problem_path)
        kernel = folder / f"{name}.py"
        if not kernel.is_file():
            problems.append({"problem": name, "hand_written": None})
            best_results.append(None)
            continue
        source = kernel.read_text()
        t0 = time.perf_counter()
        hand = await verify_kernel(box, problem, source, settings)
        entry: dict[str, Any] = {"problem": name, "hand_written": row(hand), "variants": []}
        best = hand if hand.correct and not hand.flags else None
        if tunables(source) and not args.quick:
            winner, found = await autotune(box, problem, source, settings)
            entry["variants"] = [
                {"values": v.label, **row(v.result)} for v in found if v.result is not None
            ]
            if winner is not None and winner.result is not None:
                entry["best_variant"] = winner.label
                if best is None or (winner.result.speedup or 0) > (best.speedup or 0):
                    best = winner.result
        entry["best_speedup"] = best.speedup if best else None
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        problems.append(entry)
        best_results.append(best)
        print(json.dumps({k: entry[k] for k in ("problem", "best_speedup", "seconds")}), flush=True)
        write(args, problems, best_results, settings, started)  # partial results survive
    await box.close()
    report = write(args, problems, best_results, settings, started)
    print(json.dumps(report["fast_p"]))


def _fast(values: list[float | None], p: float) -> float:
    return sum(1 for v in values if v is not None and v > p) / len(values) if values else 0.0


async def optimize_suite(args: argparse.Namespace) -> None:
    """`kernel optimize` on every problem, no candidate given (see the module docstring)."""
    import tempfile

    from perfsmith.service.library import kernel_optimize
    from perfsmith.tools.inductor import CompilerCandidateError, capture, compiler_candidate

    paths = sorted(EXAMPLES.glob("*.py")) + sorted(SUITE.glob("*.py"))
    if args.only:
        paths = [p for p in paths if p.stem in args.only]
    settings = KernelSettings(device="cpu", rounds=5 if args.quick else 10, versus_compile=True)
    box = ProcessSandbox()
    work = Path(tempfile.mkdtemp(prefix="perfsmith-bench-kernels-"))
    entries: list[dict[str, Any]] = []
    started = time.perf_counter()
    for path in paths:
        t0 = time.perf_counter()
        result = await kernel_optimize(
            path,
            sandbox=box,
            llm=None if args.llm == "none" else args.llm,
            settings=settings,
            k=args.k,
            rounds=1,
            database=f"sqlite:///{work / 'bench.db'}",
            report_dir=work / path.stem,
        )
        seconds = time.perf_counter() - t0
        captured = None
        try:
            captured = await capture(box, path.read_text(), settings.threads)
            generated: str | None = compiler_candidate(
                path.read_text(), captured, problem_name=path.name
            )
            why_none = None
        except CompilerCandidateError as exc:
            generated, why_none = None, str(exc)
        if generated and args.generated_out and path.parent == EXAMPLES:
            args.generated_out.mkdir(parents=True, exist_ok=True)
            (args.generated_out / path.name).write_text(generated)
        best = result.best
        versus = best.result.versus_compile if best is not None else None
        entry = {
            "problem": path.stem,
            "suite": "examples" if path.parent == EXAMPLES else "bench",
            "seconds": round(seconds, 1),
            "best_origin": best.origin if best else None,
            "speedup_vs_eager": best.result.speedup if best else None,
            "ci_vs_eager": best.result.ci if best else None,
            "speedup_vs_compile": versus.speedup if versus else None,
            "ci_vs_compile": versus.ci if versus else None,
            "verdict_vs_compile": versus.verdict if versus else None,
            "torch_compile_s": versus.compile_s if versus else None,
            "compiler_capture_s": captured.compile_s if captured else None,
            "compiler_candidate": why_none or "generated",
            "candidates": [
                {
                    "origin": c.origin,
                    "verdict": c.result.verdict,
                    "speedup": c.result.speedup,
                    "build_s": c.result.details.get("build_s"),
                    "build_cached": c.result.details.get("build_cached"),
                    "failure": (c.result.failure or "")[:200] or None,
                }
                for c in result.candidates
            ],
        }
        entries.append(entry)
        print(
            json.dumps(
                {
                    k: entry[k]
                    for k in (
                        "problem",
                        "best_origin",
                        "speedup_vs_eager",
                        "speedup_vs_compile",
                        "seconds",
                    )
                }
            ),
            flush=True,
        )
        write_optimize(args, entries, settings, started)  # partial results survive
    await box.close()
    report = write_optimize(args, entries, settings, started)
    print(json.dumps(report["fast_p"]))


def write_optimize(
    args: argparse.Namespace,
    entries: list[dict[str, Any]],
    settings: KernelSettings,
    started: float,
) -> dict[str, Any]:
    eager = [e["speedup_vs_eager"] for e in entries]
    compiled = [e["speedup_vs_compile"] for e in entries]
    report = {
        "mode": "optimize",
        "llm": args.llm,
        "k": args.k,
        "device": "cpu",
        "machine": platform.processor() or platform.machine(),
        "threads": settings.threads,
        "problems": entries,
        "fast_p": {
            "eager": {str(p): _fast(eager, p) for p in (1.0, 1.5)},
            "torch_compile": {str(p): _fast(compiled, p) for p in (1.0, 1.5)},
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def write(
    args: argparse.Namespace,
    problems: list[dict[str, Any]],
    best_results: list[KernelResult | None],
    settings: KernelSettings,
    started: float,
) -> dict[str, Any]:
    report = {
        "device": args.device,
        "device_name": next(
            (
                p["hand_written"].get("device_name")
                for p in problems
                if p.get("hand_written") and p["hand_written"].get("device_name")
            ),
            None,
        ),
        "machine": platform.processor() or platform.machine(),
        "threads": settings.threads if args.device == "cpu" else None,
        "quick": args.quick,
        "problems": problems,
        "fast_p": {str(p): fast_p(best_results, p) for p in P_VALUES},
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main())
