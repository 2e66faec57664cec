"""Drafters propose the next tokens cheaply; the target model verifies them in one pass.

- :class:`PromptLookupDrafter`: the continuation of the latest earlier occurrence of the
  last n tokens in the prompt or the text generated so far (prompt lookup decoding).
- :class:`AdaptiveNgramDrafter`: n-gram statistics over the context, updated online as
  tokens are accepted, with the draft length following the running acceptance rate (in
  the spirit of ADED, Yang et al. 2024).
- :class:`ModelDrafter`: a smaller model with the same tokenizer (for instance a
  layer-dropped copy of the target) decoding greedily with its own KV cache.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Protocol

import torch

from perfsmith.inference.kv_cache import SlotCache
from perfsmith.inference.runner import Runner


class Drafter(Protocol):
    name: str

    def propose(self, context: list[int]) -> tuple[list[int], torch.Tensor | None]:
        """Draft tokens to follow ``context`` and their draft distributions ``[k, vocab]``
        (None: deterministic, a point mass on each token)."""
        ...

    def feedback(self, proposed: int, accepted: int) -> None:
        """How many of the last proposal's tokens the target accepted."""
        ...

    def reset(self) -> None:
        """Forget per-sequence state before a new sequence."""
        ...


class PromptLookupDrafter:
    name = "ngram"

    def __init__(self, *, max_ngram: int = 4, min_ngram: int = 1, max_draft: int = 10) -> None:
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram
        self.max_draft = max_draft

    def propose(self, context: list[int]) -> tuple[list[int], torch.Tensor | None]:
        n_ctx = len(context)
        for n in range(min(self.max_ngram, n_ctx - 1), self.min_ngram - 1, -1):
            tail = context[n_ctx - n :]
            # latest earlier occurrence of the tail
            for start in range(n_ctx - n - 1, -1, -1):
                if context[start : start + n] == tail:
                    follow = context[start + n : start + n + self.max_draft]
                    if follow:
                        return follow, None
        return [], None

    def feedback(self, proposed: int, accepted: int) -> None:
        return None

    def reset(self) -> None:
        return None


@dataclass(kw_only=True, eq=False)
class AdaptiveNgramDrafter:
    """Continuation counts for every n-gram (n = 1..max_ngram) of the sequence so far.

    The draft extends token by token with the most frequent continuation of the longest
    context suffix seen before, and stops where that continuation is not dominant
    (``min_share``). The draft length is ``max_draft`` scaled by an exponential moving
    average of the acceptance rate, so long drafts go out only while they pay."""

    name = "adaptive"
    max_ngram: int = 4
    min_draft: int = 2
    max_draft: int = 24
    min_share: float = 0.3
    smoothing: float = 0.3

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._table: dict[tuple[int, ...], Counter[int]] = defaultdict(Counter)
        self._seen = 0
        self.acceptance = 0.6

    def _learn(self, context: list[int]) -> None:
        for end in range(max(self._seen, 1), len(context)):
            nxt = context[end]
            for n in range(1, self.max_ngram + 1):
                if end - n < 0:
                    break
                self._table[tuple(context[end - n : end])][nxt] += 1
        self._seen = len(context)

    def _next(self, seq: list[int]) -> int | None:
        for n in range(min(self.max_ngram, len(seq)), 0, -1):
            counts = self._table.get(tuple(seq[len(seq) - n :]))
            if counts:
                token, count = counts.most_common(1)[0]
                if count / sum(counts.values()) >= self.min_share or n >= 3:
                    return token
                return None
        return None

    @property
    def draft_length(self) -> int:
        span = self.max_draft - self.min_draft
        return self.min_draft + round(span * self.acceptance**2)

    def propose(self, context: list[int]) -> tuple[list[int], torch.Tensor | None]:
        if len(context) < self._seen:
            self.reset()
        self._learn(context)
        seq = list(context)
        draft: list[int] = []
        for _ in range(self.draft_length):
            token = self._next(seq)
            if token is None:
                break
            draft.append(token)
            seq.append(token)
        return draft, None

    def feedback(self, proposed: int, accepted: int) -> None:
        if proposed:
            rate = accepted / proposed
            self.acceptance += self.smoothing * (rate - self.acceptance)


class ModelDrafter:
    """Greedy drafts from a smaller model sharing the target's tokenizer."""

    name = "draft"

    def __init__(self, runner: Runner, *, max_draft: int = 4, capacity: int = 4096) -> None:
        self.runner = runner
        self.max_draft = max_draft
        self.capacity = capacity
        self._cache: SlotCache = runner.new_cache(1, capacity)
        self._slot = self._cache.acquire()
        self._synced: list[int] = []

    def reset(self) -> None:
        self._cache.truncate(self._slot, 0)
        self._synced = []

    def _common_prefix(self, context: list[int]) -> int:
        n = 0
        for a, b in zip(self._synced, context, strict=False):
            if a != b:
                break
            n += 1
        return n

    def propose(self, context: list[int]) -> tuple[list[int], torch.Tensor | None]:
        keep = self._common_prefix(context)
        # the cache holds every token of the synced prefix except the last
        keep = min(keep, len(context) - 1)
        self._cache.truncate(self._slot, min(keep, self._cache.lengths[self._slot]))
        done = self._cache.lengths[self._slot]
        pending = context[done:]
        if done + len(pending) + self.max_draft >= self._cache.capacity:
            return [], None
        logits = self.runner.forward(
            self._cache, [self._slot], torch.tensor([pending]), last_only=True
        )[0, -1]
        draft: list[int] = []
        for i in range(self.max_draft):
            token = int(torch.argmax(logits))
            draft.append(token)
            if i + 1 < self.max_draft:
                logits = self.runner.forward(self._cache, [self._slot], torch.tensor([[token]]))[
                    0, -1
                ]
        self._synced = list(context) + draft[:-1]
        # greedy drafts are deterministic: the acceptance rule treats each as a point mass
        return draft, None

    def feedback(self, proposed: int, accepted: int) -> None:
        return None
