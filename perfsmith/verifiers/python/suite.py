"""eff@k over a suite: each problem (a run) has several candidates, each scored with
ENAMEL's efficiency; eff@k per problem with the unbiased estimator, averaged over the
problems that have at least k scored candidates."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from perfsmith.verifiers.python.stats import eff_at_k, efficiency

FAILED = {"incorrect", "uncompiled"}


def candidate_efficiency(verdict: str | None, speedup: float | None) -> float | None:
    """0 for a wrong candidate; ENAMEL's efficiency (1 at the reference's speed, 2 - 1/s
    for a speedup s, 0 at half its speed or slower) for a timed one; None when it has no
    verdict on speed (not scored)."""
    if verdict in FAILED:
        return 0.0
    if speedup is None or speedup <= 0:
        return None
    return efficiency(1.0 / speedup, 1.0)


@dataclass(frozen=True)
class SuiteScore:
    k: int
    eff: float | None  # None: no problem has k scored candidates
    problems: int


def suite_eff_at_k(problems: Sequence[Sequence[float]], ks: Iterable[int]) -> list[SuiteScore]:
    out: list[SuiteScore] = []
    for k in ks:
        if k < 1:
            raise ValueError("k must be at least 1")
        values = [eff_at_k(list(p), k) for p in problems if len(p) >= k]
        out.append(SuiteScore(k, statistics.fmean(values) if values else None, len(values)))
    return out
