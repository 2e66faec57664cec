"""A fast forward pass for Llama-architecture models (SmolLM2, Llama; Qwen2 with its
q/k/v biases, Qwen3 with its per-head q/k norms): fused QKV and gate/up projections, a
slot KV cache, one SDPA call per layer.

The weights come from a transformers model; nothing here downloads or converts files.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from perfsmith.inference import native as native_kernels
from perfsmith.inference.gguf_weights import FileWeight
from perfsmith.inference.kv_cache import SlotCache
from perfsmith.inference.linear import DenseLinear, Int8Linear, Linear, PanelLinear

ARCHITECTURES = ("llama", "qwen2", "qwen3")


def supports(config: Any) -> bool:
    """Whether this runner reproduces the model's forward pass exactly: Llama, Qwen2 or
    Qwen3, SiLU, no MLP or output-projection bias, plain RoPE, full attention in every
    layer."""
    rope = getattr(config, "rope_parameters", None) or {}
    rope_type = rope.get("rope_type", "default") if isinstance(rope, dict) else "default"
    kind = getattr(config, "model_type", "")
    layer_types = getattr(config, "layer_types", None) or ["full_attention"]
    return (
        kind in ARCHITECTURES
        and getattr(config, "hidden_act", "") == "silu"
        # Llama's and Qwen3's attention_bias puts a bias on the output projection too;
        # Qwen2's q/k/v biases are always there, its output projection has none
        and (kind == "qwen2" or not getattr(config, "attention_bias", False))
        and not getattr(config, "mlp_bias", False)
        and not getattr(config, "use_sliding_window", False)
        and all(t == "full_attention" for t in layer_types)
        and rope_type == "default"
    )


@dataclass
class _Layer:
    ln1: torch.Tensor
    qkv: Linear
    o: Linear
    ln2: torch.Tensor
    gate_up: Linear
    down: Linear
    qkv_bias: torch.Tensor | None = None  # Qwen2
    q_norm: torch.Tensor | None = None  # Qwen3: RMS norm of each query and key head
    k_norm: torch.Tensor | None = None


def _weight(module: Any) -> torch.Tensor | None:
    return None if module is None else module.weight.detach().float().contiguous()


def weights_of(dtype: torch.dtype) -> torch.dtype:
    """The weights' type on the native path: bf16 compression stores bf16 weights (fp32
    activations); everything else fp32."""
    return torch.bfloat16 if dtype == torch.bfloat16 else torch.float32


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return F.rms_norm(x, (x.shape[-1],), weight, eps)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class LlamaRunner:
    """Runs token blocks through the model, reading and extending a :class:`SlotCache`."""

    batched = True

    def __init__(
        self,
        model: Any,
        *,
        dtype: torch.dtype = torch.float32,
        int8: bool = False,
        layers: list[int] | None = None,
        native: bool = True,
        file_weights: Mapping[str, FileWeight] | None = None,
    ) -> None:
        """``dtype`` and ``int8`` choose the weights. Where the native kernels build (and
        ``native`` is left on), whole layers run in C with fp32 activations whatever the
        weights are; otherwise in Python on torch's kernels, with activations in
        ``dtype`` (bf16 weights multiply bf16 activations there). ``file_weights`` (a
        GGUF file's own blocks, :mod:`gguf_weights`) replace the fp32 weights they name
        on the native path, unless ``int8`` or bf16 weights are asked for."""
        config = model.config
        if not supports(config):
            raise ValueError(
                f"{config.model_type} is not a Llama-architecture model this runner takes"
            )
        self.config = config
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(config.num_key_value_heads)
        self.head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // self.heads)
        self.eps = float(config.rms_norm_eps)
        self.vocab_size = int(config.vocab_size)
        self.max_context = int(config.max_position_embeddings)
        theta = float((getattr(config, "rope_parameters", None) or {}).get("rope_theta", 10000.0))
        inner = model.model
        keep = list(range(len(inner.layers))) if layers is None else list(layers)
        self.layer_ids = keep
        self.intermediate = int(config.intermediate_size)
        lib = native_kernels.library() if native else None
        if lib is not None and not self._native_shapes():
            lib = None
        weight_dtype = torch.int8 if int8 else weights_of(dtype)
        # activations (and the KV cache): fp32 on the native path
        self.dtype = dtype = torch.float32 if lib is not None else dtype

        own = dict(file_weights or {}) if weight_dtype == torch.float32 else {}
        self.file_weights_used = 0  # how many weights are the file's own blocks

        def panel(name: str, weight: torch.Tensor) -> PanelLinear:
            assert lib is not None
            mine = own.get(name)
            if mine is not None and mine.rows % 16 == 0 and mine.columns % 32 == 0:
                self.file_weights_used += 1
                return PanelLinear.gguf(lib, mine.raw, mine.kind)
            return PanelLinear.dense(lib, weight.detach(), weight_dtype)

        def linear(names: list[str], weights: list[torch.Tensor]) -> Linear:
            if lib is not None:
                parts = [panel(n, w) for n, w in zip(names, weights, strict=True)]
                return parts[0] if len(parts) == 1 else PanelLinear.stacked(parts)
            w = torch.cat([w.detach() for w in weights])
            return Int8Linear(w, dtype) if int8 else DenseLinear(w.to(dtype))

        self.layers: list[_Layer] = []
        for i in keep:
            block = inner.layers[i]
            att, mlp = block.self_attn, block.mlp
            at, ml = f"model.layers.{i}.self_attn.", f"model.layers.{i}.mlp."
            self.layers.append(
                _Layer(
                    ln1=block.input_layernorm.weight.detach().to(dtype),
                    qkv=linear(
                        [at + "q_proj.weight", at + "k_proj.weight", at + "v_proj.weight"],
                        [att.q_proj.weight, att.k_proj.weight, att.v_proj.weight],
                    ),
                    o=linear([at + "o_proj.weight"], [att.o_proj.weight]),
                    ln2=block.post_attention_layernorm.weight.detach().to(dtype),
                    gate_up=linear(
                        [ml + "gate_proj.weight", ml + "up_proj.weight"],
                        [mlp.gate_proj.weight, mlp.up_proj.weight],
                    ),
                    down=linear([ml + "down_proj.weight"], [mlp.down_proj.weight]),
                    qkv_bias=None
                    if att.q_proj.bias is None
                    else torch.cat([att.q_proj.bias, att.k_proj.bias, att.v_proj.bias])
                    .detach()
                    .to(dtype)
                    .contiguous(),
                    q_norm=_weight(getattr(att, "q_norm", None)),
                    k_norm=_weight(getattr(att, "k_norm", None)),
                )
            )
        self.embed = inner.embed_tokens.weight.detach().to(dtype)
        self.norm = inner.norm.weight.detach().to(dtype)
        self.lm_head = linear(["lm_head.weight"], [model.lm_head.weight])
        inv_freq = 1.0 / (
            theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim)
        )
        positions = torch.arange(self.max_context, dtype=torch.float32)
        freqs = torch.outer(positions, inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self._cos = emb.cos().to(dtype)
        self._sin = emb.sin().to(dtype)
        self._native = None if lib is None else self._native_layers()

    def _native_shapes(self) -> bool:
        """Whether the native layer kernel takes this model's shapes: head size a multiple
        of 16, at most 16 query heads per key head, every output width a multiple of 16."""
        widths = (
            int(self.config.hidden_size),
            (self.heads + 2 * self.kv_heads) * self.head_dim,
            2 * self.intermediate,
            self.vocab_size,
        )
        return (
            self.head_dim % 16 == 0
            and self.heads // self.kv_heads <= 16
            and all(w % 16 == 0 for w in widths)
        )

    def _native_layers(self) -> list[native_kernels.LayerSpec]:
        """Every layer's shapes and weights for the C layer kernel."""
        specs = []
        for layer in self.layers:
            parts = {}
            for name in ("qkv", "o", "gate_up", "down"):
                lin = getattr(layer, name)
                assert isinstance(lin, PanelLinear)
                parts[name] = lin.matrix
            specs.append(
                native_kernels.LayerSpec(
                    hidden=int(self.config.hidden_size),
                    heads=self.heads,
                    kv_heads=self.kv_heads,
                    head_dim=self.head_dim,
                    inter=self.intermediate,
                    eps=self.eps,
                    ln1=layer.ln1.data_ptr(),
                    ln2=layer.ln2.data_ptr(),
                    cos=self._cos.data_ptr(),
                    sin=self._sin.data_ptr(),
                    qkv_bias=None if layer.qkv_bias is None else layer.qkv_bias.data_ptr(),
                    q_norm=None if layer.q_norm is None else layer.q_norm.data_ptr(),
                    k_norm=None if layer.k_norm is None else layer.k_norm.data_ptr(),
                    **parts,
                )
            )
        return specs

    @property
    def path(self) -> str:
        """``native`` (whole layers in C) or ``torch``."""
        return "torch" if self._native is None else "native"

    def subset(self, keep: list[int]) -> LlamaRunner:
        """This runner with only the layers ``keep`` (original indices); weights are
        shared, not copied."""
        missing = set(keep) - set(self.layer_ids)
        if missing:
            raise ValueError(f"layers {sorted(missing)} are not in this runner")
        clone = copy.copy(self)
        clone.layers = [
            layer for i, layer in zip(self.layer_ids, self.layers, strict=True) if i in keep
        ]
        clone.layer_ids = [i for i in self.layer_ids if i in keep]
        if self._native is not None:
            clone._native = [
                spec for i, spec in zip(self.layer_ids, self._native, strict=True) if i in keep
            ]
        return clone

    def hidden_states(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """The residual stream ``[1, T, hidden]`` before each layer and after the last."""
        cache = self.new_cache(1, int(tokens.shape[1]))
        states: list[torch.Tensor] = []
        self.forward(cache, [cache.acquire()], tokens, last_only=True, collect=states)
        return states

    @property
    def layer_count(self) -> int:
        return len(self.layers)

    def weight_bytes(self) -> int:
        total: int = self.embed.numel() * self.embed.element_size() + self.lm_head.nbytes()
        for layer in self.layers:
            total += sum(lin.nbytes() for lin in (layer.qkv, layer.o, layer.gate_up, layer.down))
        return total

    def new_cache(self, slots: int, capacity: int) -> SlotCache:
        return SlotCache(
            layers=len(self.layers),
            slots=slots,
            kv_heads=self.kv_heads,
            head_dim=self.head_dim,
            capacity=min(capacity, self.max_context),
            dtype=self.dtype,
            key_blocks=self._native is not None,
        )

    @torch.inference_mode()
    def forward(
        self,
        cache: SlotCache,
        slots: list[int],
        tokens: torch.Tensor,
        *,
        last_only: bool = False,
        collect: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Run ``tokens`` ``[B, T]`` at the end of each slot; returns fp32 logits
        ``[B, T, vocab]`` (``[B, 1, vocab]`` with ``last_only``) and advances the slots.
        Several slots need ``T == 1``."""
        batch, steps = tokens.shape
        if batch != len(slots):
            raise ValueError("one row of tokens per slot")
        if batch > 1 and steps != 1:
            raise ValueError("batched forward passes take one token per slot")
        if self._native is not None:
            return self._forward_native(self._native, cache, slots, tokens, last_only, collect)
        wanted: list[int] | None = None
        if batch > 1:
            # Run the contiguous slot range lo..hi, so the cache is read through views,
            # never copied; rows of idle slots in between compute a throwaway token.
            lo, hi = min(slots), max(slots)
            row_of = {slot: slot - lo for slot in slots}
            wanted = [row_of[slot] for slot in slots]
            full = torch.zeros((hi - lo + 1, 1), dtype=tokens.dtype)
            full[wanted] = tokens
            tokens, batch = full, hi - lo + 1
            starts = [min(cache.lengths[r], cache.capacity - 1) for r in range(lo, hi + 1)]
        else:
            lo = slots[0]
            starts = [cache.lengths[lo]]
        end = max(starts) + steps
        if end > cache.capacity:
            raise ValueError(f"context of {end} tokens exceeds the cache ({cache.capacity})")
        x = F.embedding(tokens, self.embed)
        if batch == 1:
            pos = torch.arange(starts[0], starts[0] + steps)
            cos, sin = self._cos[pos][None, None], self._sin[pos][None, None]
            mask = None
            if steps > 1:
                key_pos = torch.arange(end)
                mask = (key_pos[None, :] <= pos[:, None])[None, None]
        else:
            pos_t = torch.tensor(starts)
            cos, sin = self._cos[pos_t][:, None, None], self._sin[pos_t][:, None, None]
            key_pos = torch.arange(end)
            mask = (key_pos[None, :] <= pos_t[:, None])[:, None, None, :]
            rows = torch.arange(batch)
        q_size = self.heads * self.head_dim
        kv_size = self.kv_heads * self.head_dim
        for li, layer in enumerate(self.layers):
            if collect is not None:
                collect.append(x.float())
            h = _rms_norm(x, layer.ln1, self.eps)
            qkv = layer.qkv(h)
            if layer.qkv_bias is not None:
                qkv = qkv + layer.qkv_bias
            q = qkv[..., :q_size].view(batch, steps, self.heads, self.head_dim).transpose(1, 2)
            k = (
                qkv[..., q_size : q_size + kv_size]
                .view(batch, steps, self.kv_heads, self.head_dim)
                .transpose(1, 2)
            )
            v = (
                qkv[..., q_size + kv_size :]
                .view(batch, steps, self.kv_heads, self.head_dim)
                .transpose(1, 2)
            )
            if layer.q_norm is not None and layer.k_norm is not None:
                q = _rms_norm(q, layer.q_norm.to(q.dtype), self.eps)
                k = _rms_norm(k, layer.k_norm.to(k.dtype), self.eps)
            q = _rotate(q, cos, sin)
            k = _rotate(k, cos, sin)
            keys = cache.keys[li][lo : lo + batch]
            values = cache.values[li][lo : lo + batch]
            if batch == 1:
                start = starts[0]
                keys[0, :, start : start + steps] = k[0]
                values[0, :, start : start + steps] = v[0]
            else:
                keys[rows, :, pos_t] = k[:, :, 0]
                values[rows, :, pos_t] = v[:, :, 0]
            kk, vv = keys[:, :, :end], values[:, :, :end]
            att = F.scaled_dot_product_attention(q, kk, vv, attn_mask=mask, enable_gqa=True)
            x = x + layer.o(att.transpose(1, 2).reshape(batch, steps, q_size))
            h = _rms_norm(x, layer.ln2, self.eps)
            gu = layer.gate_up(h)
            x = x + layer.down(F.silu(gu[..., : self.intermediate]) * gu[..., self.intermediate :])
        for s in slots:
            cache.lengths[s] += steps
        if collect is not None:
            collect.append(x.float())
        if wanted is not None:
            x = x[wanted]
        if last_only:
            x = x[:, -1:]
        x = _rms_norm(x, self.norm, self.eps)
        return self.lm_head(x).float()

    def _forward_native(
        self,
        specs: list[native_kernels.LayerSpec],
        cache: SlotCache,
        slots: list[int],
        tokens: torch.Tensor,
        last_only: bool,
        collect: list[torch.Tensor] | None,
    ) -> torch.Tensor:
        lib = native_kernels.library()
        assert lib is not None
        batch, steps = tokens.shape
        if batch == 1:
            start = cache.lengths[slots[0]]
            row_slots, positions = [slots[0]] * steps, list(range(start, start + steps))
        else:
            row_slots, positions = list(slots), [cache.lengths[s] for s in slots]
        end = max(positions) + 1
        if end > cache.capacity:
            raise ValueError(f"context of {end} tokens exceeds the cache ({cache.capacity})")
        hidden = int(self.config.hidden_size)
        x = F.embedding(tokens.reshape(-1), self.embed).contiguous()
        slot_t = torch.tensor(row_slots, dtype=torch.int64)
        pos_t = torch.tensor(positions, dtype=torch.int64)
        for li, spec in enumerate(specs):
            if collect is not None:
                collect.append(x.view(batch, steps, hidden).clone())
            native_kernels.layer_forward(
                lib, spec, x, slot_t, pos_t, cache.keys[li], cache.values[li]
            )
        for s in slots:
            cache.lengths[s] += steps
        if collect is not None:
            collect.append(x.view(batch, steps, hidden).clone())
        if last_only:
            x = x.view(batch, steps, hidden)[:, -1].contiguous()
        x = native_kernels.rms_norm(lib, x, self.norm, self.eps)
        logits = self.lm_head(x)
        return logits.view(batch, -1, logits.shape[-1])
