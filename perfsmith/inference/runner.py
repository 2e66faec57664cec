"""The Runner interface the engine decodes with, and a generic runner over any transformers
causal LM (used for architectures the fast runner does not cover: Mistral, Phi, ...)."""

from __future__ import annotations

from typing import Any, Protocol

import torch

from perfsmith.inference.kv_cache import SlotCache


class Runner(Protocol):
    vocab_size: int
    max_context: int
    batched: bool  # several slots in one forward pass

    def new_cache(self, slots: int, capacity: int) -> SlotCache: ...

    def forward(
        self, cache: SlotCache, slots: list[int], tokens: torch.Tensor, *, last_only: bool = False
    ) -> torch.Tensor:
        """Logits ``[B, T, vocab]`` (fp32) for ``tokens`` ``[B, T]`` appended to each slot."""
        ...


class HFCache(SlotCache):
    """A slot cache whose slots are transformers ``DynamicCache`` objects."""

    def __init__(self, config: Any, slots: int, capacity: int) -> None:
        from transformers import DynamicCache

        self.keys, self.values = [], []
        self.start_slots(slots, capacity)
        self._config = config
        self.dynamic = [DynamicCache(config=config) for _ in range(slots)]

    def acquire(self) -> int:
        slot = super().acquire()
        from transformers import DynamicCache

        self.dynamic[slot] = DynamicCache(config=self._config)
        return slot

    def truncate(self, slot: int, length: int) -> None:
        current = self.lengths[slot]
        super().truncate(slot, length)
        if length < current:
            self.dynamic[slot].crop(length - current)


class HFRunner:
    """One slot per forward pass through the model's own ``forward``."""

    batched = False

    def __init__(self, model: Any, *, dtype: torch.dtype = torch.float32) -> None:
        self.model = model.to(dtype) if dtype != torch.float32 else model
        self.dtype = dtype
        config = model.config
        text = getattr(config, "text_config", None) or config
        self.vocab_size = int(text.vocab_size)
        self.max_context = int(getattr(text, "max_position_embeddings", 4096))
        self.layer_count = int(text.num_hidden_layers)

    def weight_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.model.parameters())

    def new_cache(self, slots: int, capacity: int) -> SlotCache:
        return HFCache(self.model.config, slots, min(capacity, self.max_context))

    @torch.inference_mode()
    def forward(
        self, cache: SlotCache, slots: list[int], tokens: torch.Tensor, *, last_only: bool = False
    ) -> torch.Tensor:
        if not isinstance(cache, HFCache):
            raise TypeError("HFRunner needs the cache it made")
        if len(slots) != 1:
            raise ValueError("this runner takes one slot per forward pass")
        slot = slots[0]
        start = cache.lengths[slot]
        steps = int(tokens.shape[1])
        if start + steps > cache.capacity:
            raise ValueError(
                f"context of {start + steps} tokens exceeds the cache ({cache.capacity})"
            )
        positions = torch.arange(start, start + steps)[None]
        out = self.model(
            input_ids=tokens,
            past_key_values=cache.dynamic[slot],
            use_cache=True,
            position_ids=positions,
            cache_position=positions[0],
            logits_to_keep=1 if last_only else steps,
        )
        cache.lengths[slot] += steps
        logits: torch.Tensor = out.logits.float()
        return logits
