"""A preallocated key/value cache with one slot per sequence.

Each layer holds keys and values as ``[slots, kv_heads, capacity, head_dim]`` (with
``key_blocks``, keys are ``[slots, kv_heads, ceil(capacity / 16), head_dim, 16]``: blocks of
16 positions transposed, the layout the native attention reads); a slot's length says how
many positions are valid. Rolling back rejected draft tokens is setting a
length, and batching is running several slots through one forward pass.
"""

from __future__ import annotations

import torch


class SlotCache:
    def __init__(
        self,
        *,
        layers: int,
        slots: int,
        kv_heads: int,
        head_dim: int,
        capacity: int,
        dtype: torch.dtype,
        key_blocks: bool = False,
    ) -> None:
        shape = (slots, kv_heads, capacity, head_dim)
        key_shape = (slots, kv_heads, -(-capacity // 16), head_dim, 16) if key_blocks else shape
        self.keys = [torch.zeros(key_shape, dtype=dtype) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype) for _ in range(layers)]
        self.lengths = [0] * slots
        self.capacity = capacity
        self.slots = slots
        self._free = list(range(slots - 1, -1, -1))

    def acquire(self) -> int:
        """A free slot, emptied."""
        if not self._free:
            raise RuntimeError("no free cache slot")
        slot = self._free.pop()
        self.lengths[slot] = 0
        return slot

    def release(self, slot: int) -> None:
        self.lengths[slot] = 0
        self._free.append(slot)

    @property
    def free_slots(self) -> int:
        return len(self._free)

    def truncate(self, slot: int, length: int) -> None:
        """Forget every position from ``length`` on (rejected draft tokens)."""
        if length > self.lengths[slot]:
            raise ValueError("cannot extend a slot by truncating it")
        self.lengths[slot] = length
