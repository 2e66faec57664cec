"""Exact mode: instruction counts under valgrind's callgrind instead of seconds.

Counts are repeatable to the instruction for the same binary, inputs and environment
(the sandbox fixes PYTHONHASHSEED), whatever else the machine is doing. Each side runs
the harness twice under callgrind, once making the calls and once doing all but the
calls; the difference is the instructions of the calls alone. The harness's `count` mode
reads no clock, so nothing time-dependent enters the count.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass

from perfsmith.sandbox.base import Limits, Sandbox
from perfsmith.verifiers.python.correctness import InputSource, output_tail, run_harness
from perfsmith.verifiers.python.stats import Verdict
from perfsmith.verifiers.python.target import Target

_TOTALS = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


class InstructionsError(Exception):
    """callgrind did not produce a count."""


@dataclass(frozen=True)
class InstructionCount:
    reference: int
    candidate: int
    loops: int

    @property
    def speedup(self) -> float:
        return self.reference / self.candidate


def valgrind_missing() -> str | None:
    if shutil.which("valgrind") is None:
        return "valgrind is not installed (Debian: apt-get install valgrind)"
    return None


async def _count(
    sandbox: Sandbox, target: Target, inputs: bytes, loops: int, limits: Limits, dry: bool
) -> int:
    args = ["count", target.module_file, target.function, str(loops), *(["dry"] if dry else [])]
    callgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=cg.out", "--quiet"]
    result = await run_harness(
        sandbox,
        target,
        args,
        collect="cg.out",
        inputs=inputs,
        limits=limits,
        wrapper=callgrind,
        env={"PERFSMITH_NO_ASLR": "1"},  # with PYTHONHASHSEED=0: exact, repeatable counts
    )
    found = _TOTALS.search(result.files.get("cg.out", b""))
    if not result.ok or found is None:
        raise InstructionsError(
            f"counting instructions of {target} failed ({result.status.value}): "
            f"{output_tail(result, 5)}"
        )
    return int(found.group(1))


LOOPS = 3  # passes over the inputs per count
SEED = 1000  # the inputs' seed: the same inputs for both sides, every time


async def count_instructions(
    sandbox: Sandbox, reference: Target, candidate: Target, inputs: InputSource
) -> InstructionCount:
    """Instructions of `LOOPS` passes over the inputs, for each side (the harness's own
    work counted without the calls and taken off)."""
    missing = valgrind_missing()
    if missing:
        raise InstructionsError(missing)
    # valgrind multiplies memory and time: give it room.
    lim = Limits(wall_s=600, cpu_s=600, memory_mb=4096)
    data = await inputs.make(sandbox, [SEED], lim)
    counts = []
    for side in (reference, candidate):
        work = await _count(sandbox, side, data, LOOPS, lim, dry=False)
        base = await _count(sandbox, side, data, LOOPS, lim, dry=True)
        counts.append(max(1, work - base))
    return InstructionCount(reference=counts[0], candidate=counts[1], loops=LOOPS)


def instructions_verdict(count: InstructionCount, threshold: float = 0.05) -> Verdict:
    s = count.speedup
    if s >= 1 + threshold:
        return "faster"
    if s <= 1 / (1 + threshold):
        return "slower"
    return "same"
