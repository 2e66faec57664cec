"""Differential testing: the candidate must do what the reference does on every input.

The reference and the candidate run in separate sandbox runs (the candidate never sees
the reference's outputs); each input is called twice on fresh copies. The verdict
compares results (tolerances for floats and arrays), exceptions (same type), the
arguments after the call (the candidate must mutate them exactly as the reference does),
and the candidate's two calls (determinism). The first failure names the input and the
first difference, so it can go back to the LLM.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from perfsmith.sandbox.base import Limits, Sandbox, SandboxResult
from perfsmith.verifiers.python.compare import Difference, Tolerance, first_difference
from perfsmith.verifiers.python.encode import decode
from perfsmith.verifiers.python.target import Target, TargetError

HERE = Path(__file__).parent
HARNESS = (HERE / "harness.py").read_bytes()
WIRE = (HERE / "encode.py").read_bytes()


def harness_command(*args: str) -> list[str]:
    """The harness, run by perfsmith's interpreter. Not `-I`: that would ignore the
    sandbox's PYTHONHASHSEED=0, which makes runs repeatable (the environment is already
    scrubbed by the sandbox)."""
    return [sys.executable, "-s", "-P", "_perfsmith_harness.py", *args]


def harness_files(target: Target, **extra: bytes) -> dict[str, bytes]:
    return {
        "_perfsmith_harness.py": HARNESS,
        "_perfsmith_encode.py": WIRE,
        target.module_file: target.source.encode(),
        **extra,
    }


async def run_harness(
    sandbox: Sandbox,
    target: Target,
    args: list[str],
    *,
    collect: str,
    inputs: bytes | None = None,
    limits: Limits | None = None,
    wrapper: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> SandboxResult:
    """One harness run on `target` (with `inputs.pkl` when given), bringing back `collect`;
    `wrapper` goes in front of the interpreter (valgrind)."""
    extra = {"inputs.pkl": inputs} if inputs is not None else {}
    return await sandbox.run(
        [*wrapper, *harness_command(*args)],
        files=harness_files(target, **extra),
        collect=[collect],
        limits=limits,
        env=env,
    )


class InputError(TargetError):
    """The input generator failed or returned something unusable (a usage error)."""


@dataclass(frozen=True)
class CorrectnessReport:
    correct: bool
    failure: str | None
    n_inputs: int


def output_tail(result: SandboxResult, lines: int = 12) -> str:
    """The end of what a failed run printed, for error messages."""
    text = (result.stderr or result.stdout).strip().splitlines()
    return "\n".join(text[-lines:]) if text else f"({result.status.value}, no output)"


class InputSource(Protocol):
    """Where a run's inputs come from: pickled argument tuples, made in the sandbox."""

    description: str

    async def make(
        self, sandbox: Sandbox, seeds: list[int], limits: Limits | None = None
    ) -> bytes: ...


class GeneratedInputs:
    """The user's generator: FUNC(seed) returns a list of argument tuples."""

    def __init__(self, generator: Target) -> None:
        self.generator = generator
        self.description = f"generator {generator}"

    async def make(self, sandbox: Sandbox, seeds: list[int], limits: Limits | None = None) -> bytes:
        g = self.generator
        return await _make_inputs(
            sandbox,
            g,
            ["generate", g.module_file, g.function, ",".join(map(str, seeds))],
            limits,
            self.description,
        )


class InferredInputs:
    """Drawn with hypothesis from the reference's type hints, `per_seed` per seed."""

    def __init__(self, reference: Target, per_seed: int = 25) -> None:
        self.reference = reference
        self.per_seed = per_seed
        self.description = f"inputs inferred from the type hints of {reference}"

    async def make(self, sandbox: Sandbox, seeds: list[int], limits: Limits | None = None) -> bytes:
        # One seeded hypothesis run draws for all the seeds at once.
        r, count = self.reference, self.per_seed * len(seeds)
        return await _make_inputs(
            sandbox,
            r,
            ["infer", r.module_file, r.function, str(seeds[0]), str(count)],
            limits,
            self.description,
        )


async def _make_inputs(
    sandbox: Sandbox, source: Target, args: list[str], limits: Limits | None, what: str
) -> bytes:
    result = await run_harness(sandbox, source, args, collect="inputs.pkl", limits=limits)
    if not result.ok or "inputs.pkl" not in result.files:
        raise InputError(f"{what} failed: {output_tail(result)}")
    if result.stdout.strip() == "0":
        raise InputError(f"{what} produced no inputs")
    return result.files["inputs.pkl"]


async def generate_inputs(
    sandbox: Sandbox, generator: Target, seeds: list[int], limits: Limits | None = None
) -> bytes:
    """Pickled argument tuples from the user's generator, made inside the sandbox."""
    return await GeneratedInputs(generator).make(sandbox, seeds, limits)


async def run_target(
    sandbox: Sandbox, target: Target, inputs: bytes, limits: Limits | None = None
) -> tuple[list[dict[str, Any]] | None, str | None]:
    """The target's outputs on every input, or why there are none."""
    result = await run_harness(
        sandbox,
        target,
        ["call", target.module_file, target.function],
        collect="outputs.json",
        inputs=inputs,
        limits=limits,
    )
    if not result.ok or "outputs.json" not in result.files:
        return None, f"{target} did not run to the end ({result.status.value}" + (
            f", {result.reason}" if result.reason else ""
        ) + f"): {output_tail(result)}"
    try:
        outputs = json.loads(result.files["outputs.json"])
    except ValueError:
        return None, f"{target} wrote unreadable outputs"
    if not isinstance(outputs, list):
        return None, f"{target} wrote malformed outputs"
    return outputs, None


def _describe(index: int, what: str, diff: Difference) -> str:
    return f"input #{index}: {what}: {diff}"


def compare_outputs(
    reference: list[dict[str, Any]], candidate: list[dict[str, Any]], tol: Tolerance
) -> str | None:
    """The first failure, in words, or None when the candidate matches everywhere."""
    if len(reference) != len(candidate):
        return f"the candidate answered {len(candidate)} inputs, not {len(reference)}"
    for i, (ref, cand) in enumerate(zip(reference, candidate, strict=True)):
        try:
            ref_result, cand_result = decode(ref["result"]), decode(cand["result"])
            cand_again = decode(cand["again"])
            ref_args, cand_args = decode(ref["args_after"]), decode(cand["args_after"])
        except (KeyError, ValueError, TypeError) as exc:
            return f"input #{i}: unreadable output ({exc})"
        if cand.get("leftover") and not ref.get("leftover"):
            return (
                f"input #{i}: left {cand['leftover']} running after returning "
                "(work that outlives the call escapes the clock)"
            )
        if ref["raised"] != cand["raised"]:
            if ref["raised"]:
                return (
                    f"input #{i}: the reference raised {ref_result.type_name} "
                    f"but the candidate returned {str(cand_result)[:80]}"
                )
            return (
                f"input #{i}: the candidate raised {cand_result.type_name}: "
                f"{cand_result.message[:200]}"
            )
        if ref["raised"]:
            if ref_result.type_name != cand_result.type_name:
                return (
                    f"input #{i}: raised {cand_result.type_name} instead of {ref_result.type_name}"
                )
        else:
            diff = first_difference(ref_result, cand_result, tol)
            if diff is not None:
                return _describe(i, "wrong result", diff)
        diff = first_difference(ref_args, cand_args, tol, path="args")
        if diff is not None:
            return _describe(i, "arguments changed differently from the reference", diff)
        diff = first_difference(cand_result, cand_again, tol)
        if diff is not None:
            return _describe(i, "not deterministic (a second call on the same input differs)", diff)
    return None


async def check_correctness(
    sandbox: Sandbox,
    reference: Target,
    candidate: Target,
    inputs: bytes,
    *,
    tol: Tolerance | None = None,
    limits: Limits | None = None,
) -> CorrectnessReport:
    ref_out, ref_error = await run_target(sandbox, reference, inputs, limits)
    if ref_out is None:
        if ref_error is not None and "perfsmith cannot record" in ref_error:
            raise InputError(ref_error)  # the wire format's limit, not the reference's fault
        raise InputError(f"the reference itself fails on these inputs: {ref_error}")
    cand_out, cand_error = await run_target(sandbox, candidate, inputs, limits)
    if cand_out is None:
        return CorrectnessReport(False, cand_error, len(ref_out))
    failure = compare_outputs(ref_out, cand_out, tol or Tolerance())
    return CorrectnessReport(failure is None, failure, len(ref_out))
