"""Compression settings and TrimLLM-style layer dropping.

Layers are ranked progressively on calibration text: the "block influence" of ShortGPT
(one minus the cosine similarity between a layer's input and output) picks the
candidates, and the one whose removal raises calibration perplexity least goes first
(:func:`loss_order`). :func:`progressive_drop` removes them one at a time in that order and
reports held-out perplexity after each step.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from perfsmith.errors import ConfigError
from perfsmith.inference import native
from perfsmith.inference.config import compression_parts
from perfsmith.inference.linear import onednn_bf16
from perfsmith.inference.quality import CALIBRATION_FILES, chunks, perplexity, stdlib_text


@dataclass(frozen=True)
class Compression:
    """``dtype`` is ``fp32`` or ``bf16``; ``int8`` quantizes the linear layers' weights;
    ``drop`` removes that many layers (ranked on calibration text); ``own``: a GGUF
    model computes with its file's own quantized weights (on the native kernels);
    ``act8``: those of type Q8_0, Q4_0 and Q4_1 multiply int8 activations."""

    dtype: str = "fp32"
    int8: bool = False
    drop: int = 0
    own: bool = True
    act8: bool = False

    @property
    def label(self) -> str:
        parts = []
        if self.act8:
            parts.append("act8")
        if self.int8:
            parts.append("int8")
        if self.dtype == "bf16":
            parts.append("bf16")
        if not (self.int8 or self.dtype == "bf16" or self.own):
            parts.append("fp32")
        if self.drop:
            parts.append(f"drop={self.drop}")
        return ",".join(parts) or "none"

    @property
    def torch_dtype(self) -> torch.dtype:
        # weight-only int8 keeps fp32 activations (``int8,bf16`` asks for bf16 ones)
        return torch.bfloat16 if self.dtype == "bf16" else torch.float32


def parse_compression(spec: str) -> Compression:
    """``none``, or a comma list of ``int8``, ``bf16``, ``fp32``, ``act8``, ``drop=N``
    (bf16 where this CPU computes in it)."""
    dtype, int8, drop, own, act8 = compression_parts(spec)
    if dtype == "bf16" and not bf16_supported():
        raise ConfigError(
            "bf16 needs the native kernels (AVX-512 and a C compiler) or a CPU with AVX-512 "
            "BF16 (or AMX); use fp32 or int8"
        )
    return Compression(dtype=dtype, int8=int8, drop=drop, own=own, act8=act8)


def bf16_supported() -> bool:
    """bf16 weights run on the native kernels (fp32 activations) or on oneDNN's bf16
    GEMM (bf16 activations, needs AVX-512 BF16 or AMX)."""
    return native.library() is not None or onednn_bf16()


def loss_order(
    runner: Any, tokenizer: Any, *, steps: int, candidates: int = 6
) -> tuple[list[int], list[float]]:
    """Greedy progressive ranking by calibration loss (TrimLLM): at each step drop the
    layer whose removal raises the calibration perplexity least, among the
    ``candidates`` least influential of the layers left (block influence pre-filters,
    the loss decides). Returns the order and the calibration perplexity after each step."""
    ids = tokenizer.encode(stdlib_text(CALIBRATION_FILES), add_special_tokens=False)
    calib = chunks(ids, 256, limit=1)
    model_layers = list(runner.layer_ids)
    influence, _ = influence_order_from_runner(runner, calib)
    kept = list(model_layers)
    order: list[int] = []
    curve: list[float] = []
    for _ in range(steps):
        pool = [i for i in influence if i in kept][:candidates]
        if not pool:
            break
        trials = {i: perplexity(runner.subset([k for k in kept if k != i]), calib) for i in pool}
        best = min(trials, key=lambda i: trials[i])
        order.append(best)
        curve.append(trials[best])
        kept.remove(best)
    rest = [i for i in influence if i not in order]
    return order + rest, curve


@torch.inference_mode()
def influence_order_from_runner(
    runner: Any, calib: list[list[int]]
) -> tuple[list[int], list[float]]:
    """Block influence measured with the fast runner's own layers (hidden state before
    and after each layer)."""
    layer_ids = list(runner.layer_ids)
    scores = [0.0] * len(layer_ids)
    for piece in calib:
        states = runner.hidden_states(torch.tensor([piece]))
        for j in range(len(layer_ids)):
            cos = torch.nn.functional.cosine_similarity(states[j][0], states[j + 1][0], dim=-1)
            scores[j] += float((1 - cos).mean())
    inner = [j for j in range(len(layer_ids)) if 0 < j < len(layer_ids) - 1]
    order = sorted(inner, key=lambda j: scores[j])
    return [layer_ids[j] for j in order], scores


def ranking(
    runner: Any, tokenizer: Any, cache_file: Path | None = None, *, steps: int = 4
) -> list[int]:
    """Layer indices, first to drop first: the loss-based progressive order of
    :func:`loss_order` (cached beside the converted weights)."""
    if cache_file is not None and cache_file.is_file():
        data = json.loads(cache_file.read_text(encoding="utf-8"))
        if data.get("method") == "loss" and int(data.get("steps", 0)) >= steps:
            return [int(i) for i in data["order"]]
    order, curve = loss_order(runner, tokenizer, steps=steps)
    record = {"method": "loss", "steps": steps, "order": order, "calibration_ppl": curve}
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return order


def kept_layers(layer_count: int, order: list[int], drop: int) -> list[int]:
    if drop > len(order):
        raise ConfigError(f"cannot drop {drop} layers: at most {len(order)} may go")
    dropped = set(order[:drop])
    return [i for i in range(layer_count) if i not in dropped]


@dataclass
class DropStep:
    dropped: int
    layers: list[int]
    perplexity: float
    ratio: float


def progressive_drop(
    make_runner: Callable[[list[int]], Any],
    layer_count: int,
    order: list[int],
    heldout: list[list[int]],
    *,
    max_drop: int,
    max_ratio: float | None = None,
) -> list[DropStep]:
    """Drop layers one at a time, least influential first; perplexity after each step.
    Stops after ``max_drop`` steps or once the ratio to the full model passes
    ``max_ratio``."""
    base = perplexity(make_runner(list(range(layer_count))), heldout)
    steps = [DropStep(0, list(range(layer_count)), base, 1.0)]
    for n in range(1, max_drop + 1):
        keep = kept_layers(layer_count, order, n)
        ppl = perplexity(make_runner(keep), heldout)
        steps.append(DropStep(n, keep, ppl, ppl / base))
        if max_ratio is not None and ppl / base > max_ratio:
            break
    return steps
