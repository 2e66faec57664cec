"""A preallocated key/value cache with one slot per sequence.

Each layer holds keys and values as ``[slots, kv_heads, capacity, head_dim]`` (with
``key_blocks``, keys are ``[slots, kv_heads, ceil(capacity / 16), head_dim, 16]``: blocks of
16 positions transposed, the layout the native attention reads); a slot's length says how
many positions are valid. Rolling back rejected draft tokens is setting a
length, and batching is running several slots through one forward pass.

Sequences whose prompts begin alike share that prefix (Hydragen): the first to be
prefilled holds it, a later one reads those positions from the holder's slot and
computes only the rest of its prompt; the native attention reads a shared prefix once
for all the sequences in a pass. A slot others read from stays held until they finish.

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


SHARE_BLOCK = 16  # shared prefixes are whole key blocks of 16 positions
MIN_SHARED = 64  # shorter common prefixes are computed again


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class SlotCache:
    sharing = True  # whether slots may read a prompt prefix from another slot

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
        # where each slot's first positions are, and how many (0: in its own slot)
        self.prefix_slot = list(range(slots))
        self.shared = [0] * slots
        self._held: dict[int, list[int]] = {}  # slots others may share: their prompts
        self._readers = [0] * slots  # how many slots read from each
        self._retired: set[int] = set()  # released, still read by others

    def acquire(self) -> int:
        """A free slot, emptied."""
        if not self._free:
            raise RuntimeError("no free cache slot")
        slot = self._free.pop()
        self.lengths[slot] = 0
        return slot

    def release(self, slot: int) -> None:
        """The slot's sequence is done; a slot others still read from is kept until they
        are."""
        if self.shared[slot]:
            holder = self.prefix_slot[slot]
            self._readers[holder] -= 1
            if holder in self._retired and not self._readers[holder]:
                self._retired.discard(holder)
                self._free_slot(holder)
        if self._readers[slot]:
            self._retired.add(slot)
            return
        self._free_slot(slot)

    def _free_slot(self, slot: int) -> None:
        self.lengths[slot] = 0
        self.prefix_slot[slot] = slot
        self.shared[slot] = 0
        self._held.pop(slot, None)
        self._free.append(slot)

    def share(self, slot: int, tokens: list[int]) -> int:
        """Point a newly acquired ``slot`` at the longest prefix of ``tokens`` (the
        positions its prompt puts in the cache) that another slot holds, in whole blocks
        of 16 and at least MIN_SHARED positions; returns how many positions it shares
        (its length now), 0 for none."""
        if not self.sharing or self.lengths[slot]:
            return 0
        best, holder = 0, -1
        for other, held in self._held.items():
            n = common_prefix(held, tokens)
            if n > best:
                best, holder = n, other
        shared = best // SHARE_BLOCK * SHARE_BLOCK
        if shared < MIN_SHARED:
            return 0
        self.prefix_slot[slot] = holder
        self.shared[slot] = shared
        self._readers[holder] += 1
        self.lengths[slot] = shared
        return shared

    def hold(self, slot: int, tokens: list[int]) -> None:
        """``slot`` has ``tokens`` at positions 0.. (a prefilled prompt): later prompts that
        begin alike may share them. A slot that shares another's prefix holds nothing."""
        if self.sharing and not self.shared[slot]:
            self._held[slot] = list(tokens)

    def reads_shared(self, slots: list[int]) -> bool:
        """Whether any of ``slots`` reads another's prefix or is read by another."""
        return any(self.shared[s] or self._readers[s] for s in slots)

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
        if length < self.shared[slot]:
            raise ValueError("cannot truncate a slot into the prefix it shares")
        self.lengths[slot] = length


KIVI_GROUP = 32  # positions per key group (per channel), channels per value group
ROLLBACK = 32  # the most positions one truncation may take back (a rejected draft)


class QuantizedSlotCache(SlotCache):
    """KIVI: keys quantized per channel, values per token, to ``bits`` (2 or 4) with an
    fp16 scale and minimum per group of 32; a position is read quantized by every token
    more than ``window`` positions after it (whole groups at a time), so the most recent
    positions stay fp32 (a ring of ``ring`` positions per slot keeps them). The native
    layer kernel (csrc/qlinear.c, ``ps_kivi``) reads and writes it. Its slots share no
    prefixes."""

    sharing = False

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
