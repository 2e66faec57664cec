"""Autotuning without an LLM: a kernel declares its tunables, perfsmith tries them all.

A candidate declares tunables in a comment of its source::

    // perfsmith: tune BLOCK=[32,64,128] UNROLL=[1,2,4]
    #define BLOCK 64
    #define UNROLL 2

(``#`` comments work too, and Python constants ``BLOCK = 64`` are rewritten like
``#define`` lines, for Triton kernels.) Every combination is a variant: all are compiled
in parallel (bounded by the cores, builds are CPU work), then verified one after another
(timings must not share the machine), and the fastest verified one that is not flagged
wins.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from perfsmith.errors import PerfsmithError
from perfsmith.sandbox.base import Sandbox
from perfsmith.verifiers.kernel.verify import (
    KernelResult,
    KernelSettings,
    compile_candidate,
    failed_result,
    verify_kernel,
)

TUNE = re.compile(r"perfsmith:\s*tune\s+(.+)")
ASSIGNMENT = re.compile(r"([A-Za-z_]\w*)\s*=\s*\[([^\]]*)\]")
MAX_VARIANTS = 64


class TuneError(PerfsmithError):
    """The tunables declared in a source are unusable."""


@dataclass
class Variant:
    values: dict[str, str]
    source: str
    result: KernelResult | None = None

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.values.items())


def tunables(source: str) -> dict[str, list[str]]:
    """The declared tunables and their values, in declaration order."""
    found: dict[str, list[str]] = {}
    for line in TUNE.findall(source):
        for name, values in ASSIGNMENT.findall(line):
            items = [v.strip() for v in values.split(",") if v.strip()]
            if not items:
                raise TuneError(f"tunable {name} lists no values")
            found[name] = items
    return found


def _set(source: str, name: str, value: str) -> str:
    define = re.compile(rf"^(\s*#\s*define\s+{name}\s+)\S+", re.M)
    constant = re.compile(rf"^({name}\s*(?::\s*\w+)?\s*=\s*)[^\n#]+", re.M)
    if define.search(source):
        return define.sub(lambda m: m.group(1) + value, source)
    if constant.search(source):
        return constant.sub(lambda m: m.group(1) + value, source)
    raise TuneError(f"tunable {name} is declared but no `#define {name}` or `{name} = ` sets it")


def variants(source: str) -> list[Variant]:
    """Every combination of the declared values, as rewritten sources."""
    spec = tunables(source)
    if not spec:
        return []
    names = list(spec)
    combos = list(itertools.product(*(spec[n] for n in names)))
    if len(combos) > MAX_VARIANTS:
        raise TuneError(f"{len(combos)} variants: more than {MAX_VARIANTS}; declare fewer values")
    out: list[Variant] = []
    for combo in combos:
        text = source
        for name, value in zip(names, combo, strict=True):
            text = _set(text, name, value)
        out.append(Variant(dict(zip(names, combo, strict=True)), text))
    return out


async def autotune(
    sandbox: Sandbox,
    problem: str,
    source: str,
    settings: KernelSettings | None = None,
    *,
    parallel_builds: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[Variant | None, list[Variant]]:
    """Compile every variant (in parallel), verify each (in turn); returns the best
    verified, unflagged variant (or None) and all variants with their results."""
    settings = settings or KernelSettings()
    found = variants(source)
    if not found:
        raise TuneError("the source declares no tunables (`// perfsmith: tune NAME=[a,b]`)")
    limit = asyncio.Semaphore(parallel_builds or max(1, (os.cpu_count() or 2) // 2))

    async def build(v: Variant) -> None:
        async with limit:
            folder, failure, _ = await compile_candidate(sandbox, problem, v.source, settings)
            if folder is None:
                v.result = failed_result(settings, compiled=False, failure=failure or "")
            if progress:
                progress(f"built {v.label}" if folder else f"{v.label} did not compile")

    await asyncio.gather(*(build(v) for v in found))
    for v in found:  # timing: one at a time
        if v.result is None:
            v.result = await verify_kernel(sandbox, problem, v.source, settings)
        if progress:
            progress(f"{v.label}: {v.result.verdict} {v.result.speedup or 0:.3f}x")
    # the best verified variant: correct, timed, not flagged for review (it may still be
    # slower than the reference; its verdict says so)
    verified = [
        v
        for v in found
        if v.result is not None and v.result.correct and v.result.speedup and not v.result.flags
    ]
    best = max(verified, key=lambda v: v.result.speedup or 0.0 if v.result else 0.0, default=None)
    return best, found
