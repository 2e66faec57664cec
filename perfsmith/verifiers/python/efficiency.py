"""Is the candidate faster, and by how much: timing rounds in the sandbox.

Each side times itself in its own sandboxed process, never together with the other
(a candidate cannot touch the reference's clock). The number of loops is calibrated on
the reference so one value lasts about `target_s`; the same loops serve both sides.
Rounds are interleaved A B, B A, ... and every round uses fresh inputs (a new seed), so
results cached from an earlier round cannot pass for speed. Each round is also checked
against the clock outside the sandbox: a reported time far below what the outside saw
(after subtracting the side's measured start-up) means the timer was tampered with.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field

from perfsmith.errors import PerfsmithError
from perfsmith.sandbox.base import Limits, Sandbox
from perfsmith.verifiers.python.correctness import InputSource, output_tail, run_harness
from perfsmith.verifiers.python.stats import SpeedEstimate, Verdict, paired_speedup, verdict
from perfsmith.verifiers.python.target import Target
from perfsmith.verifiers.slot import timing_slot


class TimingError(PerfsmithError):
    """A timing round did not produce a time (the candidate crashed or ran out of time
    while it was timed): one line for the user, exit status 1."""


@dataclass
class Timing:
    estimate: SpeedEstimate
    verdict: Verdict
    loops: int
    reference_s: list[float]
    candidate_s: list[float]
    flags: list[str] = field(default_factory=list)
    measurement_s: float = 0.0
    peak_mb: tuple[float, float] = (0.0, 0.0)  # reference, candidate
    # Set when the candidate's calls raised where the reference's did not (or the other
    # way): its time is not the reference's work, whatever the correctness inputs said.
    failure: str | None = None


@dataclass(frozen=True)
class Round:
    """One side's timing round: what its harness reported and what the outside saw."""

    elapsed_s: float  # the harness's clock over every timed call
    wall_s: float  # the sandbox run, seen from outside
    peak_mb: float
    raised: int = 0  # calls that raised (the function's own behaviour on those inputs)
    passes: tuple[float, ...] = ()  # the time of each pass over the inputs
    cold_s: float = 0.0  # calls no earlier call in the process could have answered


async def _round(
    sandbox: Sandbox,
    target: Target,
    inputs: bytes,
    loops: int,
    limits: Limits | None,
    *,
    dry: bool = False,
) -> Round:
    args = ["time", target.module_file, target.function, str(loops), *(["dry"] if dry else [])]
    result = await run_harness(
        sandbox, target, args, collect="timing.json", inputs=inputs, limits=limits
    )
    if not result.ok or "timing.json" not in result.files:
        raise TimingError(
            f"timing {target} failed ({result.status.value}): {output_tail(result, 5)}"
        )
    try:
        data = json.loads(result.files["timing.json"])
        elapsed = float(data["elapsed_s"])
        raised = int(data.get("raised", 0))
        passes = tuple(float(x) for x in data.get("passes", []))
        cold = float(data.get("cold_s", 0.0))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TimingError(f"timing {target} wrote an unreadable time") from exc
    if not math.isfinite(elapsed) or elapsed < 0 or (elapsed == 0 and not dry):
        raise TimingError(f"timing {target} reported an impossible time ({elapsed!r})")
    return Round(elapsed, result.wall_s, result.max_rss_mb, raised, passes, cold)


def cached_between_calls(rounds: list[tuple[Round, Round]]) -> str | None:
    """Whether the candidate answers repeated inputs from a cache: in most rounds its first
    pass over the inputs is over 3x its later passes while the reference's is not (a
    memo filled by the first pass). Then only cold calls measure its work."""
    hits = []
    for ref, cand in rounds:
        if len(cand.passes) < 2 or len(ref.passes) < 2:  # one pass: nothing repeated
            continue
        c_ratio = cand.passes[0] / max(statistics.median(cand.passes[1:]), 1e-9)
        r_ratio = ref.passes[0] / max(statistics.median(ref.passes[1:]), 1e-9)
        hits.append((c_ratio > 3.0 and c_ratio > 2.0 * r_ratio, c_ratio, r_ratio))
    if not hits or sum(h for h, _, _ in hits) * 2 <= len(hits):
        return None
    c = statistics.median(x for _, x, _ in hits)
    r = statistics.median(x for _, _, x in hits)
    return (
        f"cache: its first pass over the inputs takes {c:.1f}x its later passes "
        f"(the reference: {r:.1f}x): repeated inputs are answered from a cache, so only "
        "calls no earlier call answered are compared"
    )


MIN_ROUNDS = 5


def undecided(estimate: SpeedEstimate, threshold: float) -> bool:
    """The interval holds 1 while the estimate is at least halfway to the threshold: more
    rounds may tell the difference apart."""
    half = 1.0 + threshold / 2
    near = estimate.speedup >= half or estimate.speedup <= 1.0 / half
    return estimate.low <= 1.0 <= estimate.high and near


def hidden_work(seen: list[tuple[tuple[float, float], tuple[float, float]]]) -> list[str]:
    """Rounds where the candidate's timer reported under half of what the clock outside saw,
    by more than 50 ms beyond the reference's own gap in that round. Flagged only when
    most rounds show it: one slow process start on a busy machine is not a cheat, a timer
    that misses work (a thread, work at import) misses it every round."""
    suspicious = [
        (r, cand)
        for r, (ref, cand) in enumerate(seen)
        if cand[0] < 0.5 * cand[1] and (cand[1] - cand[0]) - max(0.0, ref[1] - ref[0]) > 0.05
    ]
    if not seen or len(suspicious) * 2 <= len(seen):
        return []
    return [
        f"timer: round {r} reported {reported:.4f} s but the clock outside saw "
        f"{outside:.4f} s of work"
        for r, (reported, outside) in suspicious
    ]


def adapt_to_slow_calls(
    value_s: float, rounds: int, limits: Limits | None, *, budget_s: float
) -> tuple[int, Limits]:
    """Rounds and limits for values that each take ``value_s`` on the reference.

    When one value is long (a slow original on big inputs), fewer rounds keep both sides'
    rounds within ``budget_s`` (never fewer than MIN_ROUNDS, the least that gives an
    interval worth reading), and each round's time limit grows to fit a value that is up to
    5x slower than the reference's plus start-up, so a slower candidate is measured as
    slower rather than killed."""
    base = limits or Limits(wall_s=30, cpu_s=30)
    per_pair = 2 * value_s
    if per_pair * rounds > budget_s:
        rounds = max(MIN_ROUNDS, min(rounds, int(budget_s / per_pair)))
    need = 5 * value_s + 10
    if need > base.wall_s:
        base = base.model_copy(update={"wall_s": need, "cpu_s": max(base.cpu_s, need)})
    return rounds, base


async def measure_speed(
    sandbox: Sandbox,
    reference: Target,
    candidate: Target,
    inputs: InputSource,
    *,
    rounds: int = 12,
    target_s: float = 0.1,
    threshold: float = 0.05,
    first_seed: int = 1000,
    limits: Limits | None = None,
    budget_s: float = 120.0,
    extend_s: float | None = 10.0,
) -> Timing:
    """Interleaved timing rounds with fresh inputs; the speedup with its interval.

    ``rounds`` rounds first; while the verdict is undecided near the threshold, pairs of
    rounds more, as long as the whole measurement stays within ``extend_s`` (at most 3x
    the rounds; None: never)."""
    import time

    started = time.perf_counter()
    flags: list[str] = []
    # Calibrate on the calibration seed and on the first two rounds' seeds, keeping the
    # slowest: a generator whose input sizes vary by seed must not give loops calibrated
    # on its smallest inputs to rounds that get its largest.
    calibration_inputs = b""
    one = 0.0
    for seed in (first_seed - 1, first_seed, first_seed + 1)[: 1 + min(2, rounds)]:
        data = await inputs.make(sandbox, [seed], limits)
        async with timing_slot():
            t = (await _round(sandbox, reference, data, 1, limits)).elapsed_s
        if t >= one:
            one, calibration_inputs = t, data
    loops = max(1, math.ceil(target_s / one))
    rounds, limits = adapt_to_slow_calls(one * loops, rounds, limits, budget_s=budget_s)
    # Everything but the calls (start-up, imports, the copies), per side: what the clock
    # outside sees on top of the timed part.
    overhead: list[float] = []
    baseline_mb: list[float] = []  # peak memory without the calls (inputs, copies)
    async with timing_slot():
        for side in (reference, candidate):
            dry = await _round(sandbox, side, calibration_inputs, loops, limits, dry=True)
            overhead.append(dry.wall_s)
            baseline_mb.append(dry.peak_mb)
    ref_times: list[float] = []
    cand_times: list[float] = []
    peaks: tuple[list[float], list[float]] = ([], [])

    # Work the timer did not see, per round: (reported, outside) for each side.
    seen: list[tuple[tuple[float, float], tuple[float, float]]] = []
    pairs: list[tuple[Round, Round]] = []  # (reference, candidate) per round
    failure: str | None = None

    async def one_round(r: int) -> None:
        nonlocal failure
        round_inputs = await inputs.make(sandbox, [first_seed + r], limits)
        order = [(reference, ref_times, 0), (candidate, cand_times, 1)]
        if r % 2:
            order.reverse()  # A B, B A: drift during a round falls on both sides alike
        got: dict[int, Round] = {}
        async with timing_slot():  # the pair alone on the machine's cores
            for side, times, idx in order:
                got[idx] = res = await _round(sandbox, side, round_inputs, loops, limits)
                peaks[idx].append(res.peak_mb)
                times.append(res.elapsed_s)
        ref, cand = got[0], got[1]
        seen.append(
            ((ref.elapsed_s, ref.wall_s - overhead[0]), (cand.elapsed_s, cand.wall_s - overhead[1]))
        )
        pairs.append((ref, cand))
        if failure is None and ref.raised != cand.raised:
            failure = (
                f"on the inputs of timing round {r} the candidate's calls raised "
                f"{cand.raised} time(s) and the reference's {ref.raised}: it does not do "
                "the reference's work on every input"
            )

    rounds_started = time.perf_counter()
    for r in range(rounds):
        await one_round(r)
    # Undecided near the threshold (the interval holds 1, the estimate does not sit at 1):
    # more pairs of rounds while the measurement stays within extend_s.
    done = rounds
    while extend_s and done < 3 * rounds:
        if not undecided(paired_speedup(ref_times, cand_times), threshold):
            break
        per_round = (time.perf_counter() - rounds_started) / done
        if time.perf_counter() - started + 2 * per_round > extend_s:
            break
        for _ in range(2):
            await one_round(done)
            done += 1
    estimate = paired_speedup(ref_times, cand_times)
    cache = cached_between_calls(pairs)
    if cache is not None:
        cold = [(ref.cold_s, cand.cold_s) for ref, cand in pairs if ref.cold_s and cand.cold_s]
        estimate = paired_speedup([a for a, _ in cold], [b for _, b in cold])
        flags.append(cache)
    flags += hidden_work(seen)
    if flags:
        flags = sorted(set(flags))[:3] + ([f"... {len(flags) - 3} more"] if len(flags) > 3 else [])
    return Timing(
        estimate=estimate,
        verdict=verdict(estimate, threshold),
        loops=loops,
        reference_s=ref_times,
        candidate_s=cand_times,
        flags=flags,
        measurement_s=time.perf_counter() - started,
        # What the calls add to the process's peak, beyond the inputs and their copies.
        peak_mb=(max(peaks[0]) - baseline_mb[0], max(peaks[1]) - baseline_mb[1]),
        failure=failure,
    )
