"""A preallocated key/value cache with one slot per sequence.

Each layer holds keys and values as ``[slots, kv_heads, capacity, head_dim]`` (with
``key_blocks``, keys are ``[slots, kv_heads, ceil(capacity / 16), head_dim, 16]``: blocks of
16 positions transposed, the layout the native attention reads); a slot's length says how
many positions are valid. Rolling back rejected draft tokens is setting a
length, and batching is running several slots through one forward pass.

:class:`QuantizedSlotCache` (KIVI) keeps keys and values in 2 or 4 bits instead, all but
the most recent positions (``serve-model --kv-bits``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CacheShape:
    layers: int
    slots: int
    kv_heads: int
    head_dim: int
    capacity: int  # positions per slot


class SlotCache:
    def __init__(self, shape: CacheShape, dtype: torch.dtype, *, key_blocks: bool = False) -> None:
        slots, kv_heads, capacity = shape.slots, shape.kv_heads, shape.capacity
        dims = (slots, kv_heads, capacity, shape.head_dim)
        key_dims = (slots, kv_heads, -(-capacity // 16), shape.head_dim, 16) if key_blocks else dims
        self.keys = [torch.zeros(key_dims, dtype=dtype) for _ in range(shape.layers)]
        self.values = [torch.zeros(dims, dtype=dtype) for _ in range(shape.layers)]
        self.start_slots(slots, capacity)

    def start_slots(self, slots: int, capacity: int) -> None:
        """Every slot free and empty."""
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

    def bytes_per_token(self) -> float:
        """Bytes per position, every layer's keys and values."""
        return sum(t[0].numel() * t.element_size() for t in self.keys + self.values) / self.capacity

    def truncate(self, slot: int, length: int) -> None:
        """Forget every position from ``length`` on (rejected draft tokens)."""
        if length > self.lengths[slot]:
            raise ValueError("cannot extend a slot by truncating it")
        self.lengths[slot] = length


KIVI_GROUP = 32  # positions per key group (per channel), channels per value group
ROLLBACK = 32  # the most positions one truncation may take back (a rejected draft)


class QuantizedSlotCache(SlotCache):
    """KIVI: keys quantized per channel, values per token, to ``bits`` (2 or 4) with an
    fp16 scale and minimum per group of 32; a position is read quantized by every token
    more than ``window`` positions after it (whole groups at a time), so the most recent
    positions stay fp32 (a ring of ``ring`` positions per slot keeps them). The native
    layer kernel (csrc/qlinear.c, ``ps_kivi``) reads and writes it."""

    def __init__(self, shape: CacheShape, *, bits: int, window: int = 64) -> None:
        head_dim = shape.head_dim
        if bits not in (2, 4):
            raise ValueError(f"a quantized KV cache takes 2 or 4 bits, not {bits}")
        if head_dim % KIVI_GROUP:
            raise ValueError(
                f"a quantized KV cache needs a head size that is a multiple of {KIVI_GROUP}"
            )
        if window < ROLLBACK:
            raise ValueError(f"the fp32 window must hold a rejected draft: at least {ROLLBACK}")
        self.bits, self.window = bits, window
        self.ring = window + KIVI_GROUP + ROLLBACK
        self.padded = -(-shape.capacity // KIVI_GROUP) * KIVI_GROUP
        groups = self.padded // KIVI_GROUP
        head = (shape.slots, shape.kv_heads)
        u8, f16 = torch.uint8, torch.float16

        def each(dims: tuple[int, ...], dtype: torch.dtype) -> list[torch.Tensor]:
            return [torch.zeros(head + dims, dtype=dtype) for _ in range(shape.layers)]

        self.kcodes = each((groups, head_dim, KIVI_GROUP * bits // 8), u8)
        self.kscale = each((groups, head_dim), f16)
        self.kmin = each((groups, head_dim), f16)
        self.vcodes = each((self.padded, head_dim * bits // 8), u8)
        self.vscale = each((self.padded, head_dim // KIVI_GROUP), f16)
        self.vmin = each((self.padded, head_dim // KIVI_GROUP), f16)
        self.rkeys = each((self.ring, head_dim), torch.float32)
        self.rvalues = each((self.ring, head_dim), torch.float32)
        self.stored = torch.zeros(shape.slots, dtype=torch.int64)  # quantized, per slot
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.start_slots(shape.slots, shape.capacity)
        self.specs: list[object] = []  # the kernel's view of each layer, made by the runner

    def boundary(self, position: int) -> int:
        """How many positions a token at ``position`` reads quantized."""
        old = position - self.window + 1
        return max(0, old) // KIVI_GROUP * KIVI_GROUP

    def acquire(self) -> int:
        slot = super().acquire()
        self.stored[slot] = 0
        return slot

    def advanced(self, slot: int) -> None:
        """After a forward pass: the groups its rows quantized are kept."""
        reached = self.boundary(self.lengths[slot] - 1)
        self.stored[slot] = max(int(self.stored[slot]), reached)

    def truncate(self, slot: int, length: int) -> None:
        if self.lengths[slot] - length > ROLLBACK or length < int(self.stored[slot]):
            raise ValueError(
                f"a quantized KV cache takes back at most {ROLLBACK} positions, none it has "
                "quantized"
            )
        super().truncate(slot, length)

    def bytes_per_token(self) -> float:
        """The store's bytes per position, every layer's keys and values (the fp32 ring
        is a fixed ``ring`` positions per slot on top)."""
        parts = (self.kcodes, self.kscale, self.kmin, self.vcodes, self.vscale, self.vmin)
        one_slot = sum(t[0][0].numel() * t[0].element_size() for t in parts)
        return one_slot * len(self.kcodes) / self.padded
