from __future__ import annotations

import itertools
import math
import random
import statistics

import pytest

from perfsmith.verifiers.python.stats import (
    SpeedEstimate,
    eff_at_k,
    efficiency,
    hodges_lehmann,
    mann_whitney_u,
    paired_speedup,
    verdict,
)


def noisy_rounds(
    ratio: float, n: int, seed: int, noise: float = 0.03
) -> tuple[list[float], list[float]]:
    """Interleaved rounds: a shared per-round machine factor plus independent jitter."""
    rng = random.Random(seed)
    ref, cand = [], []
    for _ in range(n):
        machine = rng.uniform(0.8, 1.6)  # a noisy neighbour slows both sides of a round
        ref.append(1.0 * machine * (1 + rng.gauss(0, noise)))
        cand.append(1.0 / ratio * machine * (1 + rng.gauss(0, noise)))
    return ref, cand


@pytest.mark.parametrize("ratio", [0.8, 1.0, 1.05, 1.5, 3.0])
def test_interval_covers_the_true_ratio_most_of_the_time(ratio: float) -> None:
    covered = 0
    for seed in range(40):
        est = paired_speedup(*noisy_rounds(ratio, 30, seed), resamples=1000, seed=seed)
        covered += est.low <= ratio <= est.high
        assert est.low <= est.speedup <= est.high
    assert covered >= 32  # about 95 % nominal; the median's bootstrap is a bit narrow


def test_pairing_cancels_shared_noise() -> None:
    ref, cand = noisy_rounds(1.05, 30, seed=1, noise=0.01)
    est = paired_speedup(ref, cand)
    assert est.low > 1.0  # 5 % told apart although rounds vary by a factor of 2
    assert verdict(est, 0.05) in ("faster", "same")
    assert verdict(paired_speedup(*noisy_rounds(1.5, 30, seed=2))) == "faster"
    assert verdict(paired_speedup(*noisy_rounds(0.8, 30, seed=3))) == "slower"
    assert verdict(paired_speedup(*noisy_rounds(1.0, 30, seed=4))) == "same"


def test_verdict_needs_both_significance_and_size() -> None:
    assert verdict(SpeedEstimate(1.02, 1.01, 1.03, 0.95, 20), 0.05) == "same"  # too small
    assert verdict(SpeedEstimate(1.3, 0.9, 1.8, 0.95, 20), 0.05) == "same"  # too noisy
    assert verdict(SpeedEstimate(1.3, 1.1, 1.5, 0.95, 20), 0.05) == "faster"
    assert verdict(SpeedEstimate(0.7, 0.6, 0.8, 0.95, 20), 0.05) == "slower"


def test_estimates_are_deterministic_for_a_seed() -> None:
    ref, cand = noisy_rounds(1.2, 15, seed=9)
    assert paired_speedup(ref, cand, seed=3) == paired_speedup(ref, cand, seed=3)


def test_bad_samples_are_refused() -> None:
    with pytest.raises(ValueError, match="same number"):
        paired_speedup([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="at least 3"):
        paired_speedup([1.0], [1.0])
    with pytest.raises(ValueError, match="positive"):
        paired_speedup([1.0, 0.0, 1.0], [1.0, 1.0, 1.0])


def test_mann_whitney_matches_exact_enumeration() -> None:
    a = [1.1, 2.3, 3.5, 4.0, 5.2, 6.1, 7.7, 8.4]
    b = [0.5, 1.0, 1.9, 2.2, 3.1, 3.3, 4.4, 4.8]
    u, p = mann_whitney_u(a, b)
    assert u == sum(x > y for x in a for y in b)
    pooled = a + b
    count = 0
    combos = list(itertools.combinations(range(16), 8))
    for idx in combos:  # exact permutation distribution of U
        xs = [pooled[i] for i in idx]
        ys = [pooled[i] for i in range(16) if i not in idx]
        count += sum(x > y for x in xs for y in ys) >= u
    exact = count / len(combos)
    assert p == pytest.approx(exact, abs=0.01)
    assert mann_whitney_u(b, a)[1] > 0.9


def test_hodges_lehmann_finds_the_shift() -> None:
    rng = random.Random(0)
    a = [rng.gauss(10, 1) for _ in range(50)]
    b = [x - 2.5 + rng.gauss(0, 0.1) for x in a]
    assert hodges_lehmann(a, b) == pytest.approx(2.5, abs=0.4)


def test_efficiency_and_eff_at_k() -> None:
    assert efficiency(1.0, 1.0) == 1.0
    assert efficiency(2.0, 1.0) == 0.0 and efficiency(5.0, 1.0) == 0.0
    assert efficiency(0.5, 1.0) == 1.5
    scores = [0.0, 0.2, 0.9, 0.4, 0.0]
    assert eff_at_k(scores, 1) == pytest.approx(statistics.mean(scores))
    assert eff_at_k(scores, 5) == pytest.approx(0.9)
    brute = statistics.mean(max(c) for c in itertools.combinations(scores, 2))
    assert eff_at_k(scores, 2) == pytest.approx(brute)
    with pytest.raises(ValueError):
        eff_at_k(scores, 6)
    assert math.isclose(eff_at_k([1.0] * 4, 3), 1.0)
