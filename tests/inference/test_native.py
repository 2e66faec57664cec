"""The native kernels: built once and cached, bit-identical rows whatever the batch, the
same model as torch's path, and a clean fallback where they cannot be built."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from perfsmith.inference import native
from perfsmith.inference.linear import Int8Linear, PanelLinear
from perfsmith.inference.llama_runner import LlamaRunner
from perfsmith.inference.models import LoadedModel

LIB = native.library()
needs_native = pytest.mark.skipif(
    LIB is None, reason="native kernels need AVX-512 and a C compiler on this machine"
)


@needs_native
@pytest.mark.parametrize("dtype", [torch.int8, torch.bfloat16, torch.float32])
def test_a_row_is_bit_identical_alone_or_with_any_other_rows(dtype: torch.dtype) -> None:
    assert LIB is not None
    torch.manual_seed(0)
    weight = torch.randn(96, 80)
    layer = PanelLinear.dense(LIB, weight, dtype)
    x = torch.randn(23, 80)
    full = layer(x)
    for m in range(1, 24):  # every block size and remainder of the kernel's row loop
        assert torch.equal(layer(x[:m]), full[:m]), m
        assert torch.equal(layer(x[m - 1 : m]), full[m - 1 : m]), m
    # the same model as torch's kernels: int8 per-channel, bf16-rounded or exact weights
    if dtype == torch.int8:
        reference = Int8Linear(weight, torch.float32)(x)
    else:
        reference = x @ weight.to(dtype).float().T
    assert torch.allclose(full, reference, atol=1e-4, rtol=1e-4)
    assert layer.nbytes() == 96 * 80 * torch.tensor([], dtype=dtype).element_size() + (
        96 * 4 if dtype == torch.int8 else 0
    )


def _gguf_blocks(kind: str, rows: int, columns: int) -> Any:
    """``rows`` rows of ``kind`` blocks: GGUF's own quantizer where it has one, else
    random quants and scales (every byte pattern is a valid K-quant block) with small
    positive fp16 super-block scales."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(0)
    if kind not in native.SUPER_BLOCK_BYTES:
        weight = rng.standard_normal((rows, columns)).astype(np.float32)
        return gguf.quants.quantize(weight, gguf.GGMLQuantizationType[kind])
    blocks = columns // 256
    raw = rng.integers(0, 256, (rows, blocks, native.SUPER_BLOCK_BYTES[kind]), dtype=np.uint8)

    def halves() -> Any:
        return rng.uniform(1e-3, 2e-2, (rows, blocks)).astype(np.float16).view(np.uint8)

    if kind == "Q4_K":  # d, dmin first
        raw[..., 0:2] = halves().reshape(rows, blocks, 2)
        raw[..., 2:4] = halves().reshape(rows, blocks, 2)
    else:  # Q6_K: d last
        raw[..., 208:210] = halves().reshape(rows, blocks, 2)
    return raw.reshape(rows, -1)


@needs_native
@pytest.mark.parametrize("kind", ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q6_K"])
def test_a_gguf_files_blocks_compute_as_their_reference_dequantization(kind: str) -> None:
    """The file's blocks as they are (no dequantizing at load): the file's bytes (Q4_K's
    6-bit sub-block scales unpacked to a byte each), the same products as GGUF's own
    dequantize-then-matmul (to float rounding: 1e-6 of the output's scale), and a row's
    output the same whatever rows share the pass."""
    assert LIB is not None
    import gguf

    qtype = gguf.GGMLQuantizationType[kind]
    raw = _gguf_blocks(kind, 96, 512)
    reference_weight = torch.from_numpy(gguf.quants.dequantize(raw, qtype))
    layer = PanelLinear.gguf(LIB, torch.from_numpy(raw), kind)
    unpacked = 96 * 2 * 4 if kind == "Q4_K" else 0  # 16 bytes of scales for 12
    assert layer.nbytes() == raw.nbytes + unpacked
    x = torch.randn(23, 512)
    full = layer(x)
    reference = x @ reference_weight.T
    assert (full - reference).abs().max() <= 1e-6 * reference.abs().max() * 512**0.5
    for m in range(1, 24):
        assert torch.equal(layer(x[:m]), full[:m]), m
        assert torch.equal(layer(x[m - 1 : m]), full[m - 1 : m]), m
    # stacked with parts of other types (a fused q/k/v whose parts differ): each part's
    # outputs are its own
    dense = torch.randn(32, 512)
    stacked = PanelLinear.stacked([layer, PanelLinear.dense(LIB, dense, torch.float32), layer])
    out = stacked(x)
    assert out.shape == (23, 96 + 32 + 96)
    assert torch.equal(out[:, :96], full) and torch.equal(out[:, 128:], full)
    assert torch.allclose(out[:, 96:128], x @ dense.T, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="not rows of"):
        PanelLinear.gguf(LIB, torch.from_numpy(raw[:8]), kind)
    with pytest.raises(ValueError, match="not one the kernels read"):
        PanelLinear.gguf(LIB, torch.from_numpy(raw), "IQ2_XXS")


needs_act8 = pytest.mark.skipif(
    LIB is None or not native.act8(LIB),
    reason="int8 activations need the native kernels on a CPU with AVX-512 VNNI",
)


def _quantized_activations(x: torch.Tensor) -> torch.Tensor:
    """What the int8-activation kernel multiplies: each row's blocks of 32 as int8 with
    one scale max |x| / 127, rounded to nearest (llama.cpp's Q8 quantization)."""
    blocks = x.reshape(x.shape[0], -1, 32)
    amax = blocks.abs().amax(dim=-1, keepdim=True)
    inverse = torch.where(amax > 0, 127.0 / amax, torch.zeros_like(amax))
    return (torch.round(blocks * inverse) * (amax / 127.0)).reshape(x.shape)


@needs_act8
@pytest.mark.parametrize("kind", ["Q8_0", "Q4_0", "Q4_1"])
@pytest.mark.parametrize("rows", [96, 80])  # an even and an odd number of panels
def test_int8_activations_compute_the_files_blocks_as_llama_cpp_does(kind: str, rows: int) -> None:
    """The file's blocks times activations quantized per block of 32 (integer dot
    products, scaled per block): GGUF's dequantized weights times the quantized
    activations, to float rounding; a row's output the same whatever rows share the
    pass; and the fp32-activation result within int8 rounding of it."""
    assert LIB is not None
    import gguf

    qtype = gguf.GGMLQuantizationType[kind]
    raw = _gguf_blocks(kind, rows, 512)
    weight = torch.from_numpy(gguf.quants.dequantize(raw, qtype)).double()
    layer = PanelLinear.gguf(LIB, torch.from_numpy(raw), kind, act8=True)
    assert layer.nbytes() == raw.nbytes  # the file's bytes, rearranged
    x = torch.randn(23, 512)
    full = layer(x)
    reference = _quantized_activations(x).double() @ weight.T
    scale = reference.abs().max()
    assert (full.double() - reference).abs().max() <= 1e-6 * scale
    fp32 = PanelLinear.gguf(LIB, torch.from_numpy(raw), kind)(x)
    error = (fp32 - full).abs().max() / scale
    assert 1e-5 < error < 2e-2  # int8 rounding, not another model
    for m in range(1, 24):
        assert torch.equal(layer(x[:m]), full[:m]), m
        assert torch.equal(layer(x[m - 1 : m]), full[m - 1 : m]), m
    stacked = PanelLinear.stacked(
        [layer, PanelLinear.dense(LIB, torch.randn(32, 512), torch.float32)]
    )
    assert torch.equal(stacked(x)[:, :rows], full)
    with pytest.raises(ValueError, match="no int8-activation kernel"):
        PanelLinear.gguf(LIB, torch.from_numpy(_gguf_blocks("Q5_0", 16, 512)), "Q5_0", act8=True)


@needs_act8
def test_act8_needs_a_files_own_blocks(loaded: LoadedModel) -> None:
    from perfsmith.errors import ConfigError
    from perfsmith.inference.config import compression_parts

    with pytest.raises(ValueError, match="needs a GGUF model with Q8_0, Q4_0 or Q4_1"):
        LlamaRunner(loaded.model, act8=True)  # the dequantized weights: nothing to run
    assert compression_parts("act8,drop=2") == ("fp32", False, 2, True, True)
    with pytest.raises(ConfigError, match="does not combine with int8, bf16 or fp32"):
        compression_parts("act8,fp32")


@needs_native
def test_the_embedded_model_runs_on_its_files_own_weights(loaded: LoadedModel) -> None:
    """Every linear layer of the embedded model (Q4_1, the vocabulary projection Q8_0)
    computes from the file's blocks: row for row the weights transformers dequantizes,
    at a third of the fp32 weights' bytes, the same predictions."""
    import gguf

    from perfsmith.inference import gguf_weights

    weights = loaded.file_weights()
    kinds = {w.kind for w in weights.values()}
    assert kinds == {"Q4_1", "Q8_0"}
    inner = loaded.model.model
    for name, module in (
        ("model.layers.3.self_attn.q_proj.weight", inner.layers[3].self_attn.q_proj),
        ("model.layers.3.self_attn.k_proj.weight", inner.layers[3].self_attn.k_proj),
        ("model.layers.7.mlp.down_proj.weight", inner.layers[7].mlp.down_proj),
        ("lm_head.weight", loaded.model.lm_head),
    ):
        mine = weights[name]
        rows = gguf.quants.dequantize(mine.raw.numpy(), gguf.GGMLQuantizationType[mine.kind])
        assert torch.equal(torch.from_numpy(rows), module.weight.detach()), name
    assert (gguf_weights.unpermute_rows(torch.arange(8)[:, None], 1)[:, 0]).tolist() == [
        0,
        2,
        4,
        6,
        1,
        3,
        5,
        7,
    ]
    own = LlamaRunner(loaded.model, file_weights=weights)
    assert own.path == "native" and own.file_weights_used == 7 * 30 + 1
    fp32 = LlamaRunner(loaded.model)
    assert own.weight_bytes() < fp32.weight_bytes() / 3
    tokens = torch.tensor([[1, 504, 3062, 314, 253, 2376, 30, 378, 1126, 28, 5, 9, 17]])
    a = own.forward(own.new_cache(1, 64), [0], tokens)
    b = fp32.forward(fp32.new_cache(1, 64), [0], tokens)
    assert torch.equal(a.argmax(-1), b.argmax(-1))
    assert (a - b).abs().max() < 1e-4 * b.abs().max()
    # int8 or bf16 asked for: those, not the file's
    assert LlamaRunner(loaded.model, int8=True, file_weights=weights).file_weights_used == 0


@needs_native
def test_native_layers_match_torch_and_batching_changes_nothing(loaded: LoadedModel) -> None:
    fast = LlamaRunner(loaded.model, int8=True)
    assert fast.path == "native"
    assert fast.weight_bytes() < LlamaRunner(loaded.model).weight_bytes() / 2
    # the same int8 weights through torch's kernels and torch's attention
    reference = LlamaRunner(loaded.model, int8=True, native=False)
    assert reference.path == "torch"
    tokens = torch.tensor([[1, 504, 3062, 314, 253, 2376, 30, 378, 1126, 28, 5, 9, 17]])
    a = fast.forward(fast.new_cache(1, 64), [0], tokens)
    b = reference.forward(reference.new_cache(1, 64), [0], tokens)
    assert torch.equal(a.argmax(-1), b.argmax(-1))
    assert (a - b).abs().max() < 1e-2 * b.abs().max()

    # prefill + one token at a time == the whole block at once, and three slots
    # decoded together == each alone, bit for bit
    cache = fast.new_cache(3, 64)
    slots = [cache.acquire() for _ in range(3)]
    alone = []
    for slot, cut in zip(slots, (5, 8, 11), strict=True):
        fast.forward(cache, [slot], tokens[:, :cut])
        alone.append(fast.forward(cache, [slot], tokens[:, cut : cut + 1])[0, -1])
        cache.truncate(slot, cut)
    together = fast.forward(cache, slots, torch.tensor([[tokens[0, c]] for c in (5, 8, 11)]))
    for row, logits in enumerate(alone):
        assert torch.equal(together[row, 0], logits)
    assert torch.equal(a[0, 5], alone[0])


def test_the_library_is_cached_and_a_failed_build_falls_back(
    loaded: LoadedModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("PERFSMITH_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("PERFSMITH_NATIVE", raising=False)
    native.library.cache_clear()
    try:
        monkeypatch.setenv("CC", "false")  # a compiler that always fails
        with caplog.at_level(logging.INFO, logger="perfsmith.inference.native"):
            assert native.library() is None
            assert "native kernels unavailable" in caplog.text
            if LIB is not None:  # the CPU passed; the compiler failed
                assert "false failed (exit status 1)" in caplog.text
            runner = LlamaRunner(loaded.model, int8=True)
            assert runner.path == "torch"
            logits = runner.forward(runner.new_cache(1, 8), [0], torch.tensor([[1, 2, 3]]))
            assert logits.shape == (1, 3, runner.vocab_size)

            monkeypatch.setenv("PERFSMITH_NATIVE", "0")
            native.library.cache_clear()
            assert native.library() is None
            assert "PERFSMITH_NATIVE=0" in caplog.text
    finally:
        native.library.cache_clear()
    if LIB is None:
        return
    monkeypatch.delenv("CC")
    monkeypatch.delenv("PERFSMITH_NATIVE")
    try:
        assert native.library() is not None
        built = list((tmp_path / "native").glob("qlinear-*.so"))
        assert len(built) == 1
        stamp = built[0].stat().st_mtime_ns
        native.library.cache_clear()
        assert native.library() is not None
        assert built[0].stat().st_mtime_ns == stamp  # loaded, not rebuilt
    finally:
        native.library.cache_clear()
