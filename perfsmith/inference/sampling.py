"""Turning logits into tokens: greedy, temperature and top-p sampling, and the speculative
sampling acceptance rule (Leviathan et al. 2023; Chen et al. 2023), under which the output
is distributed exactly as the target model's own samples."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def probabilities(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """The distribution sampled from: softmax(logits / T), restricted to the top-p nucleus
    and renormalized. ``logits`` is ``[..., vocab]``."""
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_p, order = torch.sort(probs, dim=-1, descending=True)
        cumulative = sorted_p.cumsum(dim=-1)
        # keep the smallest prefix whose mass reaches top_p (always at least one token)
        drop = (cumulative - sorted_p) >= params.top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def pick(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    """One token from ``[vocab]`` logits."""
    if params.greedy:
        return int(torch.argmax(logits))
    probs = probabilities(logits, params)
    return int(torch.multinomial(probs, 1, generator=generator))


def accept_draft(
    target_probs: torch.Tensor,
    draft_tokens: list[int],
    draft_probs: torch.Tensor | None,
    generator: torch.Generator | None,
) -> tuple[int, int]:
    """Speculative sampling over one verified draft.

    ``target_probs`` is ``[k + 1, vocab]``: row i is the target's distribution for the
    token after the i-th draft token (row 0: for the first draft token). ``draft_probs``
    is ``[k, vocab]``, or None for a deterministic drafter (the draft distribution is then
    a point mass on each draft token). Returns ``(accepted, next_token)``: how many draft
    tokens were accepted, and the token that follows them (the correction drawn from the
    residual distribution, or the bonus token drawn from the last row)."""
    for i, token in enumerate(draft_tokens):
        p = target_probs[i]
        p_tok = float(p[token])
        q_tok = 1.0 if draft_probs is None else float(draft_probs[i, token])
        u = float(torch.rand((), generator=generator))
        if q_tok > 0 and u < min(1.0, p_tok / q_tok):
            continue
        if draft_probs is None:
            residual = p.clone()
            residual[token] = 0.0
        else:
            residual = (p - draft_probs[i]).clamp(min=0.0)
        total = float(residual.sum())
        if total <= 0.0:  # p equals q: any sample from p is right
            residual, total = p, float(p.sum())
        nxt = int(torch.multinomial(residual / total, 1, generator=generator))
        return i, nxt
    last = target_probs[len(draft_tokens)]
    return len(draft_tokens), int(torch.multinomial(last, 1, generator=generator))
