"""Shared prompt prefixes (Hydragen): a sequence whose prompt begins as another's reads
that prefix from the other's slot, and its logits are bit for bit what it computes with
its own copy, prefilled or decoding, alone or beside the sequences it shares with; the
slot it reads from is kept until it is done; the engine's concurrent requests share."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import torch

from perfsmith.inference import native
from perfsmith.inference.build import build_engine
from perfsmith.inference.config import EngineConfig
from perfsmith.inference.engine import Scheduler
from perfsmith.inference.kv_cache import MIN_SHARED, QuantizedSlotCache
from perfsmith.inference.llama_runner import LlamaRunner
from perfsmith.inference.models import LoadedModel
from perfsmith.inference.sampling import SamplingParams
from tests.inference.conftest import tiny_llama

pytestmark = pytest.mark.skipif(native.library() is None, reason="native kernels unavailable")

PREFIX = 150  # shared: 144 positions, nine whole key blocks


def _runner() -> LlamaRunner:
    # head size 32, three query heads per KV head
    return LlamaRunner(tiny_llama(hidden=192, heads=6, kv_heads=2))


def _prompts(count: int) -> list[list[int]]:
    """``count`` prompts: one prefix, then each its own 3 to 3 + count tokens."""
    g = torch.Generator().manual_seed(1)
    prefix = torch.randint(0, 256, (PREFIX,), generator=g).tolist()
    return [prefix + torch.randint(0, 256, (3 + i,), generator=g).tolist() for i in range(count)]


def _alone(runner: LlamaRunner, prompt: list[int], steps: list[int]) -> list[torch.Tensor]:
    """The prompt's logits, then each step's, in a cache of its own."""
    cache = runner.new_cache(1, 256)
    slot = cache.acquire()
    out = [runner.forward(cache, [slot], torch.tensor([prompt]))[0]]
    for token in steps:
        out.append(runner.forward(cache, [slot], torch.tensor([[token]]))[0, 0])
    return out


def test_a_shared_prefix_changes_no_logit_prefilled_or_decoding_beside_the_others() -> None:
    runner = _runner()
    assert runner.shares_prefixes
    prompts = _prompts(6)  # a holder and five sequences sharing its prefix
    steps = [7, 11, 13]
    alone = [_alone(runner, p, steps) for p in prompts]

    cache = runner.new_cache(8, 256)
    slots = []
    for i, prompt in enumerate(prompts):
        slot = cache.acquire()
        start = cache.share(slot, prompt)
        assert start == (0 if i == 0 else PREFIX // 16 * 16)
        logits = runner.forward(cache, [slot], torch.tensor([prompt[start:]]))[0]
        assert torch.equal(logits, alone[i][0][start:]), i  # prefilled from the holder's
        cache.hold(slot, prompt)
        slots.append(slot)
    assert cache.prefix_slot[slots[3]] == slots[0] and cache.shared[slots[0]] == 0
    # decoding together: the shared prefix's attention is read once per part for all
    # six sequences (tasks in parts), each sequence's own positions from its slot
    for k, token in enumerate(steps):
        logits = runner.forward(cache, slots, torch.tensor([[token]] * len(slots)))[:, 0]
        for i in range(len(slots)):
            assert torch.equal(logits[i], alone[i][k + 1]), (i, k)
    # a draft of several tokens on a sharing slot: its own run, still the same logits
    draft = runner.forward(cache, [slots[2]], torch.tensor([[7, 11]]))[0]
    more = _alone(runner, prompts[2], [*steps, 7, 11])
    assert torch.equal(draft[0], more[4]) and torch.equal(draft[1], more[5])


def test_the_slot_shared_from_is_kept_until_its_readers_are_done() -> None:
    runner = _runner()
    cache = runner.new_cache(3, 256)
    prompts = _prompts(2)
    holder = cache.acquire()
    runner.forward(cache, [holder], torch.tensor([prompts[0]]))
    cache.hold(holder, prompts[0])
    reader = cache.acquire()
    assert cache.share(reader, prompts[1]) == PREFIX // 16 * 16
    with pytest.raises(ValueError, match="into the prefix it shares"):
        cache.truncate(reader, 10)
    cache.release(holder)  # its sequence is done, the reader still reads its prefix
    assert cache.free_slots == 1
    third = cache.acquire()  # a later prompt may still share the retired holder's prefix
    assert cache.share(third, prompts[0][:100]) == 96 and cache.prefix_slot[third] == holder
    cache.release(third)
    cache.release(reader)
    assert cache.free_slots == 3  # the holder freed with its last reader
    fresh = cache.acquire()
    assert cache.share(fresh, prompts[1]) == 0  # nothing is held any more
    # short common prefixes are computed again; a quantized cache shares nothing
    cache.hold(fresh, prompts[1])
    short = cache.acquire()
    assert cache.share(short, prompts[1][: MIN_SHARED - 1]) == 0
    assert not QuantizedSlotCache.sharing


def test_concurrent_requests_share_their_prompt_prefix_and_answer_the_same(
    loaded: LoadedModel,
) -> None:
    """The engine's scheduler: four requests with one long prompt prefix, prefilled as
    they arrive: the first computes it, the others read it; their greedy answers are the
    same as with sharing turned off."""
    context = "Here is a module to optimize.\n\n" + "def f(x):\n    return x * 2\n" * 40
    asks = [f"{context}\nProposal {i}: make f faster." for i in range(4)]

    def answers(share: bool) -> list[Any]:
        engine = build_engine(
            EngineConfig(speculate="none", share_prefixes=share, context=1024), loaded=loaded
        )
        scheduler = Scheduler(engine)
        params = SamplingParams(max_tokens=12)
        prompts = [engine.encode_chat([{"role": "user", "content": a}]) for a in asks]

        async def together() -> list[Any]:
            return list(await asyncio.gather(*(scheduler.complete(p, params) for p in prompts)))

        try:
            return asyncio.run(together())
        finally:
            scheduler.close()

    shared, separate = answers(True), answers(False)
    assert [g.tokens for g in shared] == [g.tokens for g in separate]
    read = sorted(g.stats.shared_prefix for g in shared)
    assert read[0] == 0 and read[1] >= 256  # one computed the prefix, three read it
    assert all(g.stats.shared_prefix == 0 for g in separate)
