"""The speculative sampling rule leaves the target's distribution unchanged (checked by a
chi-square test on a toy distribution); top-p keeps the nucleus."""

from __future__ import annotations

import pytest
import torch

from perfsmith.inference.sampling import SamplingParams, accept_draft, probabilities

P = torch.tensor([0.5, 0.2, 0.2, 0.1])  # target
Q = torch.tensor([0.1, 0.1, 0.3, 0.5])  # draft model, deliberately far from P
CHI2_CRITICAL_DF3_P0001 = 16.27


def chi_square(counts: torch.Tensor, probs: torch.Tensor) -> float:
    expected = probs * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


def first_tokens(draft_probs: torch.Tensor | None, trials: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    counts = torch.zeros(4)
    target = torch.stack([P, P])
    for _ in range(trials):
        if draft_probs is None:
            draft = [2]  # a deterministic drafter always proposes token 2
        else:
            draft = [int(torch.multinomial(draft_probs, 1, generator=gen))]
        accepted, nxt = accept_draft(
            target, draft, None if draft_probs is None else draft_probs[None], gen
        )
        counts[draft[0] if accepted else nxt] += 1
    return counts


@pytest.mark.parametrize("draft", [None, Q], ids=["point-mass drafter", "draft model"])
def test_the_first_output_token_is_distributed_as_the_target(draft: torch.Tensor | None) -> None:
    counts = first_tokens(draft, 20000, seed=1)
    assert chi_square(counts, P) < CHI2_CRITICAL_DF3_P0001
    # the same samples are far from the draft's own distribution: the test has power
    if draft is not None:
        assert chi_square(counts, Q) > 100 * CHI2_CRITICAL_DF3_P0001


def test_a_wrong_rule_fails_the_same_check() -> None:
    """Accepting every draft token yields the draft distribution: the check must catch it."""
    gen = torch.Generator().manual_seed(2)
    counts = torch.zeros(4)
    for _ in range(20000):
        counts[int(torch.multinomial(Q, 1, generator=gen))] += 1
    assert chi_square(counts, P) > CHI2_CRITICAL_DF3_P0001


def test_all_accepted_drafts_get_a_bonus_token_from_the_last_row() -> None:
    gen = torch.Generator().manual_seed(3)
    target = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    assert accept_draft(target, [1, 2], None, gen) == (2, 3)
    assert accept_draft(target, [1, 0], None, gen) == (1, 2)


def test_top_p_keeps_the_smallest_nucleus_and_renormalizes() -> None:
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    probs = probabilities(logits, SamplingParams(temperature=1.0, top_p=0.7))
    assert probs.tolist() == pytest.approx([0.625, 0.375, 0.0, 0.0])
    probs = probabilities(logits, SamplingParams(temperature=1.0, top_p=0.4))
    assert probs.tolist() == pytest.approx([1.0, 0.0, 0.0, 0.0])
