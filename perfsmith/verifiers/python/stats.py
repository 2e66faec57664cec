"""Statistics for speed verdicts: speedups with bootstrap confidence intervals from
interleaved (paired) rounds, a one-sided Mann-Whitney U test, the Hodges-Lehmann shift
estimate, the verdict rule, and ENAMEL's eff@k.

Everything here is pure and deterministic for a given seed, so verdicts reproduce.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["faster", "slower", "same"]


@dataclass(frozen=True, slots=True)
class SpeedEstimate:
    """Reference time / candidate time: above 1 means the candidate is faster."""

    speedup: float
    low: float
    high: float
    confidence: float
    samples: int

    @property
    def ci(self) -> tuple[float, float]:
        return (self.low, self.high)


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile of an already sorted sequence (q in [0, 1])."""
    if not sorted_values:
        raise ValueError("no values")
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] * (1 - frac) + sorted_values[hi] * frac


def paired_speedup(
    reference: Sequence[float],
    candidate: Sequence[float],
    *,
    confidence: float = 0.95,
    resamples: int = 4000,
    seed: int = 0,
) -> SpeedEstimate:
    """Median of per-round ratios ref_i / cand_i with a percentile-bootstrap interval.

    Rounds are paired because they were interleaved (A B A B ...): machine noise that hits
    one round hits both sides of it, and the ratio cancels it out.
    """
    if len(reference) != len(candidate):
        raise ValueError("paired samples need the same number of rounds on both sides")
    if len(reference) < 3:
        raise ValueError("at least 3 rounds are needed for an interval")
    if min(reference) <= 0 or min(candidate) <= 0:
        raise ValueError("times must be positive")
    ratios = [r / c for r, c in zip(reference, candidate, strict=True)]
    rng = random.Random(seed)
    n = len(ratios)
    boots = sorted(statistics.median(rng.choices(ratios, k=n)) for _ in range(resamples))
    alpha = (1 - confidence) / 2
    return SpeedEstimate(
        speedup=statistics.median(ratios),
        low=_percentile(boots, alpha),
        high=_percentile(boots, 1 - alpha),
        confidence=confidence,
        samples=n,
    )


def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """U statistic of `a` and the one-sided p-value that `a` tends to be larger than `b`
    (normal approximation with tie correction; fine from about 8 samples a side)."""
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples need values")
    pooled = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks = [0.0] * len(pooled)
    tie_term = 0.0
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        avg = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[k] = avg
        t = j - i + 1
        tie_term += t**3 - t
        i = j + 1
    r1 = sum(rank for rank, (_, side) in zip(ranks, pooled, strict=True) if side == 0)
    u1 = r1 - n1 * (n1 + 1) / 2
    n = n1 + n2
    mean = n1 * n2 / 2
    var = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1)))
    if var <= 0:
        return u1, 0.5
    z = (u1 - mean - 0.5) / math.sqrt(var)  # continuity correction
    return u1, 0.5 * math.erfc(z / math.sqrt(2))


def hodges_lehmann(a: Sequence[float], b: Sequence[float]) -> float:
    """The median of all pairwise differences a_i - b_j: a robust shift estimate."""
    return statistics.median(x - y for x in a for y in b)


def verdict(estimate: SpeedEstimate, threshold: float = 0.05) -> Verdict:
    """`faster` when the whole interval is above 1 and the speedup reaches 1 + threshold;
    `slower` when the whole interval is below 1 and the slowdown reaches the same margin;
    `same` otherwise (too small to matter, or not told apart from noise)."""
    if threshold < 0:
        raise ValueError("threshold must be >= 0")
    if estimate.low > 1.0 and estimate.speedup >= 1.0 + threshold:
        return "faster"
    if estimate.high < 1.0 and estimate.speedup <= 1.0 / (1.0 + threshold):
        return "slower"
    return "same"


def efficiency(t: float, t_ref: float, timeout_factor: float = 2.0) -> float:
    """ENAMEL's efficiency of one run: (T - t) / (T - t_ref) with T = factor * t_ref,
    floored at 0: 1 at the expert's time, above 1 when faster, 0 at the timeout."""
    if t_ref <= 0:
        raise ValueError("the reference time must be positive")
    limit = timeout_factor * t_ref
    return max(0.0, limit - t) / (limit - t_ref)


def eff_at_k(scores: Sequence[float], k: int) -> float:
    """Unbiased (Rao-Blackwellized) estimate of the expected best efficiency among k
    samples drawn without replacement from n scored samples (0 for incorrect ones)."""
    n = len(scores)
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the number of samples ({n})")
    ordered = sorted(scores)
    total = math.comb(n, k)
    # the i-th smallest (1-based) is the max of a k-subset in C(i - 1, k - 1) subsets
    return sum(ordered[i - 1] * math.comb(i - 1, k - 1) for i in range(k, n + 1)) / total
