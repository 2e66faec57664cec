"""One verification: correctness first (differential testing), then speed (timing rounds
or instruction counts), all in the sandbox. The result is what `perfsmith verify` prints."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from perfsmith.sandbox.base import Sandbox
from perfsmith.verifiers.python.capture import CaptureError, ReplayedInputs, capture_calls
from perfsmith.verifiers.python.cheats import static_findings
from perfsmith.verifiers.python.compare import Tolerance
from perfsmith.verifiers.python.correctness import (
    GeneratedInputs,
    InferredInputs,
    InputError,
    InputSource,
    check_correctness,
)
from perfsmith.verifiers.python.efficiency import measure_speed
from perfsmith.verifiers.python.instructions import count_instructions, instructions_verdict
from perfsmith.verifiers.python.target import Target

Mode = Literal["time", "instructions"]


class VerifyResult(BaseModel):
    correct: bool
    failure: str | None
    verdict: Literal["faster", "slower", "same", "incorrect"]
    speedup: float | None
    ci: tuple[float, float] | None
    n_inputs: int
    mode: Mode
    flags: list[str] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)


async def verify(
    sandbox: Sandbox,
    reference: Target,
    candidate: Target,
    *,
    generator: Target | None = None,
    workload: Target | None = None,
    given_inputs: InputSource | None = None,
    mode: Mode = "time",
    threshold: float = 0.05,
    rounds: int = 12,
    tol: Tolerance | None = None,
) -> VerifyResult:
    findings = static_findings(candidate.source)
    if findings:
        return VerifyResult(
            correct=False,
            failure=f"rejected before running: the candidate {findings[0].trick} "
            f"(line {findings[0].line})",
            verdict="incorrect",
            speedup=None,
            ci=None,
            n_inputs=0,
            mode=mode,
            flags=[str(f) for f in findings],
        )
    inputs: InputSource
    if given_inputs is not None:
        inputs = given_inputs
    elif generator is not None:
        inputs = GeneratedInputs(generator)
    elif workload is not None:
        try:
            calls = await capture_calls(sandbox, reference, workload)
        except CaptureError as exc:
            raise InputError(str(exc)) from exc
        if not calls.count:
            raise InputError(calls.why_none(str(reference), f"the workload {workload}"))
        inputs = ReplayedInputs(reference, calls, str(workload))
    else:
        inputs = InferredInputs(reference)
    seeds = [0] if isinstance(inputs, ReplayedInputs) else [0, 1, 2]  # replayed: all at once
    data = await inputs.make(sandbox, seeds)
    report = await check_correctness(sandbox, reference, candidate, data, tol=tol)
    details: dict[str, Any] = {"inputs": inputs.description, "backend": sandbox.name}

    def incorrect(failure: str | None) -> VerifyResult:
        return VerifyResult(
            correct=False,
            failure=failure,
            verdict="incorrect",
            speedup=None,
            ci=None,
            n_inputs=report.n_inputs,
            mode=mode,
            details=details,
        )

    if not report.correct:
        return incorrect(report.failure)
    if mode == "instructions":
        count = await count_instructions(sandbox, reference, candidate, inputs)
        details.update(
            reference_instructions=count.reference,
            candidate_instructions=count.candidate,
            loops=count.loops,
        )
        s = round(count.speedup, 6)
        return VerifyResult(
            correct=True,
            failure=None,
            verdict=instructions_verdict(count, threshold),
            speedup=s,
            ci=(s, s),
            n_inputs=report.n_inputs,
            mode=mode,
            details=details,
        )
    timing = await measure_speed(
        sandbox, reference, candidate, inputs, rounds=rounds, threshold=threshold
    )
    est = timing.estimate
    if timing.failure is not None:  # raised where the reference did not, or the reverse
        return incorrect(timing.failure)
    details.update(
        reference_peak_mb=round(timing.peak_mb[0], 3),
        candidate_peak_mb=round(timing.peak_mb[1], 3),
        loops=timing.loops,
        rounds=est.samples,
        measurement_s=round(timing.measurement_s, 3),
        reference_s=timing.reference_s,
        candidate_s=timing.candidate_s,
    )
    return VerifyResult(
        correct=True,
        failure=None,
        verdict=timing.verdict,
        speedup=round(est.speedup, 6),
        ci=(round(est.low, 6), round(est.high, 6)),
        n_inputs=report.n_inputs,
        mode=mode,
        flags=timing.flags,
        details=details,
    )
