"""How long a C++ candidate's build takes with and without the precompiled torch header.

For each C++ kernel in examples/kernels/cpp and examples/kernels/inductor, one build with
the header and one without, interleaved (which goes first alternates), each in an empty
build cache, one build at a time; the headers' own one-time builds (perfsmith's flags,
and torch's compiler's vector flags as a kernel run builds it) are timed apart. A kernel
that adds flags of its own (the hand-written GELU: -ffast-math) has no header. Reports
each pair, the median of the per-kernel ratios (without / with) and the medians of both
sides.

    python bench/builds.py [--only NAME ...] [--repeat 1] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perfsmith.sandbox.process import ProcessSandbox
from perfsmith.verifiers.kernel.pch import header_flags, precompiled_header
from perfsmith.verifiers.kernel.verify import (
    CPU_FLAGS,
    KernelSettings,
    compile_candidate,
    literal_cflags,
    read_problem,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "kernels"


async def build_s(box: ProcessSandbox, problem: str, source: str, *, pch: bool) -> float:
    """One build in an empty cache (the header's folder stays where it is)."""
    with tempfile.TemporaryDirectory() as cache:
        os.environ["PERFSMITH_KERNEL_CACHE_DIR"] = cache
        os.environ["PERFSMITH_KERNEL_PCH"] = "on" if pch else "off"
        started = time.perf_counter()
        built, failure, cached = await compile_candidate(box, problem, source, KernelSettings())
        elapsed = time.perf_counter() - started
    if built is None or cached:
        raise SystemExit(f"the build failed: {failure}")
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", help="kernel names (default: all)")
    parser.add_argument("--repeat", type=int, default=1, help="pairs per kernel")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as pch_dir:
        os.environ["PERFSMITH_KERNEL_PCH_DIR"] = pch_dir
        started = time.perf_counter()
        header = await precompiled_header(Path(pch_dir), CPU_FLAGS)
        header_s = time.perf_counter() - started
        if header is None:
            raise SystemExit("no precompiled header here (GCC missing, or it failed: see log)")
        header_bytes = (header / "torch" / "extension.h.gch").stat().st_size
        print(f"precompiled header: {header_s:.1f} s (once), {header_bytes / 1e9:.2f} GB")
        # torch's compiler's candidates add its vector flags: where they are more than
        # -march=native's, kernel runs build a header for them with the first compiler
        # candidate (workflows/kernels.py); so here
        compiler_flags = literal_cflags((EXAMPLES / "inductor" / "softmax.py").read_text())
        flags = header_flags(CPU_FLAGS, compiler_flags or [])
        started = time.perf_counter()
        await precompiled_header(Path(pch_dir), flags)
        compiler_header_s = time.perf_counter() - started
        print(
            "the compiler's candidates take the same header"
            if flags == CPU_FLAGS
            else f"precompiled header for the compiler's flags: {compiler_header_s:.1f} s (once)"
        )
        box = ProcessSandbox()
        rows: list[dict[str, Any]] = []
        kernels = sorted((EXAMPLES / "cpp").glob("*.py")) + sorted(
            (EXAMPLES / "inductor").glob("*.py")
        )
        for i, kernel in enumerate(kernels):
            name = f"{kernel.parent.name}/{kernel.stem}"
            if args.only and kernel.stem not in args.only and name not in args.only:
                continue
            problem = read_problem(EXAMPLES / kernel.name)
            source = kernel.read_text()
            for r in range(args.repeat):
                order = [True, False] if (i + r) % 2 == 0 else [False, True]
                times = {pch: await build_s(box, problem, source, pch=pch) for pch in order}
                row = {
                    "kernel": name,
                    "with_pch_s": round(times[True], 2),
                    "without_pch_s": round(times[False], 2),
                    "ratio": round(times[False] / times[True], 3),
                    "first": "with" if order[0] else "without",
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
        await box.close()
    summary = {
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "header_build_s": round(header_s, 1),
        "compiler_header_build_s": round(compiler_header_s, 1),
        "compiler_takes_the_same_header": flags == CPU_FLAGS,
        "header_bytes": header_bytes,
        "median_ratio": round(statistics.median(r["ratio"] for r in rows), 3),
        "median_with_s": round(statistics.median(r["with_pch_s"] for r in rows), 2),
        "median_without_s": round(statistics.median(r["without_pch_s"] for r in rows), 2),
        "builds": rows,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "builds"}, indent=2))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
