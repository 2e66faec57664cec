"""The fast runner on the architectures users bring with ``--llm local:PATH`` and the
second embedded model's: a small randomly initialised Llama, Qwen2 (q/k/v biases), Qwen3
(per-head q/k norms) and Gemma 3 (GELU, norms of each sub-layer's output, sliding windows
of positions, two RoPE bases, scaled embeddings), built here, decode token for token as
transformers' own greedy ``generate`` does, on the native kernels and on torch's."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from perfsmith.inference import native
from perfsmith.inference.llama_runner import LlamaRunner, supports

SHAPES: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 256,
    "max_position_embeddings": 128,
    "initializer_range": 0.2,  # logits far apart: no near-ties for argmax to split
    "tie_word_embeddings": False,
}


def _model(kind: str) -> Any:
    from transformers import (
        AutoModelForCausalLM,
        Gemma3TextConfig,
        LlamaConfig,
        Qwen2Config,
        Qwen3Config,
    )

    config_class = {
        "llama": LlamaConfig,
        "qwen2": Qwen2Config,
        "qwen3": Qwen3Config,
        "gemma3": Gemma3TextConfig,
    }[kind]
    extra: dict[str, Any] = {"head_dim": 16} if kind == "qwen3" else {}
    if kind == "gemma3":
        # a window of 5 positions, shorter than the prompt and its answer: the sliding
        # layers hide the start, the full one does not
        extra = {
            "head_dim": 16,
            "num_hidden_layers": 3,
            "num_key_value_heads": 1,
            "layer_types": ["sliding_attention", "sliding_attention", "full_attention"],
            "sliding_window": 5,
            "query_pre_attn_scalar": 24,
        }
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config_class(**{**SHAPES, **extra}))
    # biases start at 0 and norms at 1: random ones, so that each must be applied right
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("bias", "norm.weight")):
                param.copy_(torch.randn_like(param) * 0.5 + (name.endswith("weight")))
    model.eval()
    return model


def _greedy(runner: LlamaRunner, prompt: list[int], steps: int) -> list[int]:
    cache = runner.new_cache(1, 64)
    slot = cache.acquire()
    logits = runner.forward(cache, [slot], torch.tensor([prompt]), last_only=True)
    out = []
    for _ in range(steps):
        token = int(logits[0, -1].argmax())
        out.append(token)
        logits = runner.forward(cache, [slot], torch.tensor([[token]]), last_only=True)
    return out


@pytest.mark.parametrize("kind", ["llama", "qwen2", "qwen3", "gemma3"])
@pytest.mark.parametrize(
    "on_native",
    [
        pytest.param(
            True,
            marks=pytest.mark.skipif(
                native.library() is None, reason="native kernels need AVX-512 and a C compiler"
            ),
        ),
        False,
    ],
)
def test_greedy_decoding_is_transformers_token_for_token(kind: str, on_native: bool) -> None:
    model = _model(kind)
    assert supports(model.config)
    att = model.model.layers[0].self_attn
    assert (att.q_proj.bias is not None) == (kind == "qwen2")
    assert hasattr(att, "q_norm") == (kind in ("qwen3", "gemma3"))
    runner = LlamaRunner(model, native=on_native)
    assert runner.path == ("native" if on_native else "torch")
    prompt = [5, 17, 99, 3, 250, 42, 7, 64]
    with torch.inference_mode():
        expected = model.generate(
            torch.tensor([prompt]),
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            max_new_tokens=24,
            do_sample=False,
        )[0, len(prompt) :].tolist()
        reference = model(torch.tensor([prompt])).logits[0]
    assert _greedy(runner, prompt, 24) == expected
    logits = runner.forward(runner.new_cache(1, 64), [0], torch.tensor([prompt]))[0]
    assert (logits - reference).abs().max() < 1e-4 * reference.abs().max()


def test_architectures_the_runner_cannot_reproduce_are_left_to_transformers() -> None:
    from transformers import LlamaConfig, Qwen2Config

    assert not supports(LlamaConfig(**SHAPES, attention_bias=True))  # an o_proj bias
    assert not supports(Qwen2Config(**SHAPES, use_sliding_window=True, max_window_layers=0))
    assert not supports(LlamaConfig(**SHAPES, hidden_act="gelu"))
    with pytest.raises(ValueError, match="not a Llama-architecture model"):
        LlamaRunner(_model("llama").__class__(LlamaConfig(**SHAPES, mlp_bias=True)))
