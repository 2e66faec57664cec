"""KIVI, the quantized KV cache: its arithmetic against a reference, and the properties
decoding needs from it on a small random Llama whose prompt runs past the fp32 window:
a token's logits do not depend on how it was fed (a whole prompt, one at a time, with a
rejected draft, beside another sequence), the window itself is exact, and quality falls
with the bits as little as KIVI promises."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from perfsmith.inference import native
from perfsmith.inference.kv_cache import ROLLBACK, QuantizedSlotCache
from perfsmith.inference.llama_runner import LlamaRunner
from tests.inference.conftest import tiny_llama

pytestmark = pytest.mark.skipif(native.library() is None, reason="native kernels unavailable")

PROMPT = 200  # past the 64-position window: most of it is read quantized


def _reference(x: np.ndarray, bits: int) -> np.ndarray:
    """KIVI's asymmetric quantization of groups of 32, fp16 scale and minimum, then back."""
    groups = x.reshape(-1, 32).astype(np.float32)
    top = np.float32(2**bits - 1)
    lo, hi = groups.min(1, keepdims=True), groups.max(1, keepdims=True)
    scale = ((hi - lo) / top).astype(np.float16).astype(np.float32)
    low = lo.astype(np.float16).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        codes = np.where(scale > 0, np.rint((groups - low) / scale), 0)
    codes = np.clip(codes, 0, top)
    back: np.ndarray = (codes.astype(np.float64) * scale + low).astype(np.float32)
    return back.reshape(x.shape)


@pytest.mark.parametrize("bits", [2, 4])
def test_the_kernels_quantize_as_the_reference_does(bits: int) -> None:
    lib = native.library()
    assert lib is not None
    rng = np.random.default_rng(bits)
    x = rng.standard_normal(32 * 64).astype(np.float32) * 3
    x[:32] = 1.25  # a constant group: scale 0
    x[32:64] *= 1000  # a wide one
    out = np.empty_like(x)
    lib.ps_kivi_roundtrip(x.ctypes.data, len(x) // 32, bits, out.ctypes.data)
    assert np.array_equal(out, _reference(x, bits))
    assert np.all(out[:32] == 1.25)
    # within half a step of the group's range (and the fp16 rounding of its ends)
    groups, back = x.reshape(-1, 32), out.reshape(-1, 32)
    step = (groups.max(1) - groups.min(1)) / (2**bits - 1)
    assert np.all(np.abs(groups - back).max(1) <= step * 0.5 + np.abs(groups).max(1) * 2e-3)


def _model() -> Any:
    return tiny_llama()  # head size 32


@pytest.fixture(scope="module")
def runners() -> dict[int, LlamaRunner]:
    model = _model()
    return {bits: LlamaRunner(model, kv_bits=bits) for bits in (0, 2, 4)}


def _tokens() -> torch.Tensor:
    return torch.randint(0, 256, (1, PROMPT), generator=torch.Generator().manual_seed(1))


def _whole(runner: LlamaRunner, tokens: torch.Tensor) -> torch.Tensor:
    cache = runner.new_cache(1, 256)
    return runner.forward(cache, [cache.acquire()], tokens)[0]


def _one_by_one(runner: LlamaRunner, tokens: torch.Tensor) -> torch.Tensor:
    cache = runner.new_cache(1, 256)
    slot = cache.acquire()
    rows = [runner.forward(cache, [slot], tokens[:, i : i + 1])[0, 0] for i in range(PROMPT)]
    return torch.stack(rows)


@pytest.mark.parametrize("bits", [2, 4])
def test_a_tokens_logits_do_not_depend_on_how_it_was_fed(
    runners: dict[int, LlamaRunner], bits: int
) -> None:
    runner, tokens = runners[bits], _tokens()
    assert runner.path == "native"
    whole = _whole(runner, tokens)
    assert torch.equal(whole, _one_by_one(runner, tokens))
    # with a rejected draft of 5 tokens at every 7th step (taken back by truncation)
    cache = runner.new_cache(1, 256)
    slot = cache.acquire()
    junk = torch.randint(0, 256, (1, 5), generator=torch.Generator().manual_seed(2))
    for i in range(PROMPT):
        fed = tokens[:, i : i + 1]
        if i % 7 == 3:
            fed = torch.cat([fed, junk], dim=1)
        row = runner.forward(cache, [slot], fed)[0, 0]
        cache.truncate(slot, i + 1)
        assert torch.equal(row, whole[i]), i
    # beside another sequence, one token each per forward pass
    cache = runner.new_cache(2, 256)
    a, b = cache.acquire(), cache.acquire()
    runner.forward(cache, [b], tokens[:, :37])
    for i in range(PROMPT):
        rows = runner.forward(cache, [a, b], torch.tensor([[int(tokens[0, i])], [7]]))
        assert torch.equal(rows[0, 0], whole[i]), i
    assert isinstance(cache, QuantizedSlotCache)
    assert int(cache.stored[a]) == cache.boundary(PROMPT - 1) > 0


def _kivi_reference(model: Any, tokens: torch.Tensor, bits: int, window: int) -> torch.Tensor:
    """KIVI as its definition reads, on torch's path one token at a time: before each
    token, the fp32 cache's positions that token reads quantized are replaced by their
    quantized-then-restored values (keys per channel, values per token, groups of 32)."""
    runner = LlamaRunner(model, native=False)
    cache = runner.new_cache(1, 256)
    slot = cache.acquire()
    clean_k = [k.clone() for k in cache.keys]
    clean_v = [v.clone() for v in cache.values]
    rows = []
    for p in range(tokens.shape[1]):
        edge = max(0, p - window + 1) // 32 * 32
        for li in range(len(cache.keys)):
            k, v = clean_k[li][0, :, :p].clone(), clean_v[li][0, :, :p].clone()
            if edge:
                # [heads, positions, dims]: keys in groups of 32 positions per channel
                old = k[:, :edge].reshape(k.shape[0], edge // 32, 32, -1).transpose(2, 3)
                k[:, :edge] = (
                    torch.from_numpy(_reference(old.numpy(), bits))
                    .transpose(2, 3)
                    .reshape(k.shape[0], edge, -1)
                )
                v[:, :edge] = torch.from_numpy(_reference(v[:, :edge].numpy(), bits))
            cache.keys[li][0, :, :p] = k
            cache.values[li][0, :, :p] = v
        rows.append(runner.forward(cache, [slot], tokens[:, p : p + 1])[0, 0])
        for li in range(len(cache.keys)):
            clean_k[li][0, :, p] = cache.keys[li][0, :, p]
            clean_v[li][0, :, p] = cache.values[li][0, :, p]
    return torch.stack(rows)


def test_the_kernels_attend_as_kivis_definition_reads_and_the_window_is_exact(
    runners: dict[int, LlamaRunner],
) -> None:
    tokens = _tokens()
    full = _whole(runners[0], tokens)
    window = runners[4].new_cache(1, 64).window  # type: ignore[attr-defined]
    errors = {}
    for bits in (2, 4):
        got = _whole(runners[bits], tokens)
        # positions whose every earlier position is within the window: exactly fp32's
        assert torch.equal(got[:window], full[:window])
        assert not torch.equal(got[window + 32 :], full[window + 32 :])
        reference = _kivi_reference(_model(), tokens, bits, window)
        scale = float(full.abs().max())
        assert float((got - reference).abs().max()) <= 2e-4 * scale, bits
        errors[bits] = float((got - full).abs().mean() / full.abs().mean())
    # (a random model's logits: far more sensitive than a trained model's, whose figures
    # bench/inference.py --kivi-only measures)
    assert errors[4] < errors[2], errors


def test_memory_per_token_and_what_the_cache_refuses(runners: dict[int, LlamaRunner]) -> None:
    fp32 = runners[0].new_cache(1, 256).bytes_per_token()
    assert fp32 == 2 * 2 * 2 * 32 * 4  # layers, keys and values, kv heads, head size, fp32
    per = {bits: runners[bits].new_cache(1, 256).bytes_per_token() for bits in (2, 4)}
    # codes plus an fp16 scale and minimum per 32 values
    assert per[4] == fp32 * (0.5 + 4 / 32) / 4 and per[2] == fp32 * (0.25 + 4 / 32) / 4
    runner = runners[4]
    cache = runner.new_cache(1, 256)
    slot = cache.acquire()
    runner.forward(cache, [slot], _tokens()[:, :150])
    with pytest.raises(ValueError, match="takes back at most"):
        cache.truncate(slot, 150 - ROLLBACK - 1)
    with pytest.raises(ValueError, match="2 or 4"):
        LlamaRunner(_model(), kv_bits=3)
    with pytest.raises(ValueError, match="native kernels"):
        LlamaRunner(_model(), kv_bits=4, native=False)


@pytest.mark.slow(seconds=10)
def test_speculative_greedy_output_is_the_quantized_caches_own(loaded: Any) -> None:
    """The embedded model with a 4-bit cache, a prompt past the window: the adaptive
    drafter's output is token for token the same cache's plain greedy output, and the
    engine refuses bits it does not take, clearly."""
    from perfsmith.errors import ConfigError
    from perfsmith.inference.build import build_engine
    from perfsmith.inference.config import EngineConfig
    from perfsmith.inference.sampling import SamplingParams
    from tests.inference.conftest import PROMPTS

    engine = build_engine(EngineConfig(kv_bits=4, context=1024), loaded=loaded)
    assert isinstance(engine.runner.new_cache(1, 16), QuantizedSlotCache)
    prompt = engine.encode_chat([{"role": "user", "content": PROMPTS[0] + PROMPTS[1]}])
    assert len(prompt) > 2 * 64
    params = SamplingParams(max_tokens=64)
    plain = engine.generate(prompt, params, speculate=False)
    fast = engine.generate(prompt, params, speculate=True)
    assert fast.tokens == plain.tokens and fast.stats.drafted > 0
    with pytest.raises(ConfigError, match="--kv-bits takes 2 or 4"):
        EngineConfig(kv_bits=3).check()
