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
from perfsmith.inference.kv_cache import KIVI_GROUP, CacheShape, QuantizedSlotCache, SlotCache
from perfsmith.inference.linear import DenseLinear, Int8Linear, Linear, PanelLinear

ARCHITECTURES = ("llama", "qwen2", "qwen3", "gemma3_text")
GEMMA = "gemma3_text"
MAX_POSITIONS = 8192  # the rotary tables' length: the longest context the runner takes


def _rope_types(config: Any) -> list[str]:
    """The RoPE types of the model (Gemma 3 gives one per kind of layer)."""
    rope = getattr(config, "rope_parameters", None) or {}
    if not isinstance(rope, dict):
        return ["default"]
    nested = [v for v in rope.values() if isinstance(v, dict)]
    return [str(v.get("rope_type", "default")) for v in nested] or [
        str(rope.get("rope_type", "default"))
    ]


def supports(config: Any) -> bool:
    """Whether this runner reproduces the model's forward pass exactly: Llama, Qwen2 or
    Qwen3 (SiLU, full attention in every layer), Gemma 3's text model (GELU, sliding
    windows, no soft-capping); no MLP or output-projection bias, plain RoPE."""
    kind = getattr(config, "model_type", "")
    layer_types = getattr(config, "layer_types", None) or ["full_attention"]
    common = (
        kind in ARCHITECTURES
        and not getattr(config, "mlp_bias", False)
        and all(t == "default" for t in _rope_types(config))
    )
    if kind == GEMMA:
        return (
            common
            and getattr(config, "hidden_activation", "") == "gelu_pytorch_tanh"
            and not getattr(config, "attention_bias", False)
            and not getattr(config, "attn_logit_softcapping", None)
            and not getattr(config, "final_logit_softcapping", None)
            and not getattr(config, "use_bidirectional_attention", False)
            and all(t in ("full_attention", "sliding_attention") for t in layer_types)
        )
    return (
        common
        and getattr(config, "hidden_act", "") == "silu"
        # Llama's and Qwen3's attention_bias puts a bias on the output projection too;
        # Qwen2's q/k/v biases are always there, its output projection has none
        and (kind == "qwen2" or not getattr(config, "attention_bias", False))
        and not getattr(config, "use_sliding_window", False)
        and all(t == "full_attention" for t in layer_types)
    )


@dataclass
class _Layer:
    ln1: torch.Tensor
    qkv: Linear
    o: Linear
    ln2: torch.Tensor
    gate_up: Linear
    down: Linear
    cos: torch.Tensor  # the layer's rotary tables [positions, head_dim]
    sin: torch.Tensor
    qkv_bias: torch.Tensor | None = None  # Qwen2
    q_norm: torch.Tensor | None = None  # Qwen3, Gemma 3: RMS norm of each q and k head
    k_norm: torch.Tensor | None = None
    post_attn: torch.Tensor | None = None  # Gemma 3: norms of the attention's and the
    post_mlp: torch.Tensor | None = None  # MLP's outputs
    window: int = 0  # Gemma 3's sliding layers: each position sees its last `window`


_NONE = torch.empty(0)


def _kivi(cache: QuantizedSlotCache, layer: int) -> native_kernels.Kivi:
    """The native kernel's view of one layer of a quantized cache (made once)."""
    while len(cache.specs) <= layer:
        i = len(cache.specs)
        cache.specs.append(
            native_kernels.Kivi(
                bits=cache.bits,
                window=cache.window,
                ring=cache.ring,
                stored=cache.stored.data_ptr(),
                **{
                    name: getattr(cache, name)[i].data_ptr()
                    for name in ("kcodes", "kscale", "kmin", "vcodes", "vscale", "vmin")
                },
                rkeys=cache.rkeys[i].data_ptr(),
                rvalues=cache.rvalues[i].data_ptr(),
            )
        )
    spec = cache.specs[layer]
    assert isinstance(spec, native_kernels.Kivi)
    return spec


def _address(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


def _theta(config: Any, layer_type: str) -> float:
    """The RoPE base of a layer: per kind of layer (Gemma 3) or one for all."""
    rope = getattr(config, "rope_parameters", None) or {}
    if isinstance(rope.get(layer_type), dict):
        rope = rope[layer_type]
    return float(rope.get("rope_theta", 10000.0))


def _rope_tables(
    theta: float, head_dim: int, positions: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    freqs = torch.outer(torch.arange(positions, dtype=torch.float32), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype).contiguous(), emb.sin().to(dtype).contiguous()


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
        kv_bits: int = 0,
        act8: bool = False,
    ) -> None:
        """``dtype`` and ``int8`` choose the weights. Where the native kernels build (and
        ``native`` is left on), whole layers run in C with fp32 activations whatever the
        weights are; otherwise in Python on torch's kernels, with activations in
        ``dtype`` (bf16 weights multiply bf16 activations there). ``file_weights`` (a
        GGUF file's own blocks, :mod:`gguf_weights`) replace the fp32 weights they name
        on the native path, unless ``int8`` or bf16 weights are asked for. ``kv_bits`` (2
        or 4) quantizes the KV cache (KIVI, :class:`QuantizedSlotCache`; native path).
        ``act8``: the file's Q8_0, Q4_0 and Q4_1 blocks multiply int8 activations (AVX-512
        VNNI), as llama.cpp computes them; the other weights keep fp32 activations."""
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
        self.max_context = min(int(config.max_position_embeddings), MAX_POSITIONS)
        self.gemma = config.model_type == GEMMA
        # Gemma 3: GELU, its attention scale, its embeddings scaled
        self.act = 1 if self.gemma else 0
        self.attn_scale = float(config.query_pre_attn_scalar) ** -0.5 if self.gemma else 0.0
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
        self.act8_used = 0  # how many of them multiply int8 activations
        if act8:
            # the ValueError's words are the user's: the option and what it needs
            if lib is None or not native_kernels.act8(lib):
                raise ValueError(
                    "--compress act8 needs perfsmith's native kernels on a CPU with AVX-512 VNNI"
                )
            if not any(w.kind in native_kernels.ACT8_TYPES for w in own.values()):
                raise ValueError(
                    "--compress act8 needs a GGUF model with Q8_0, Q4_0 or Q4_1 weights"
                )

        def panel(name: str, weight: torch.Tensor) -> PanelLinear:
            assert lib is not None
            mine = own.get(name)
            if mine is not None and mine.rows % 16 == 0 and mine.columns % 32 == 0:
                self.file_weights_used += 1
                if act8 and mine.kind in native_kernels.ACT8_TYPES:
                    self.act8_used += 1
                    return PanelLinear.gguf(lib, mine.raw, mine.kind, act8=True)
                return PanelLinear.gguf(lib, mine.raw, mine.kind)
            return PanelLinear.dense(lib, weight.detach(), weight_dtype)

        def linear(names: list[str], weights: list[torch.Tensor]) -> Linear:
            if lib is not None:
                parts = [panel(n, w) for n, w in zip(names, weights, strict=True)]
                return parts[0] if len(parts) == 1 else PanelLinear.stacked(parts)
            w = torch.cat([w.detach() for w in weights])
            return Int8Linear(w, dtype) if int8 else DenseLinear(w.to(dtype))

        def norm(module: Any) -> torch.Tensor:
            """A norm's weight as it multiplies: Gemma's scale by 1 + weight (in fp32)."""
            w: torch.Tensor = module.weight.detach().float()
            return ((1.0 + w) if self.gemma else w).to(dtype).contiguous()

        def maybe_norm(module: Any) -> torch.Tensor | None:
            return None if module is None else norm(module)

        tables: dict[float, tuple[torch.Tensor, torch.Tensor]] = {}

        def rope(theta: float) -> tuple[torch.Tensor, torch.Tensor]:
            if theta not in tables:
                tables[theta] = _rope_tables(theta, self.head_dim, self.max_context, dtype)
            return tables[theta]

        layer_types = list(getattr(config, "layer_types", None) or [])
        self.layers: list[_Layer] = []
        for i in keep:
            block = inner.layers[i]
            att, mlp = block.self_attn, block.mlp
            at, ml = f"model.layers.{i}.self_attn.", f"model.layers.{i}.mlp."
            kind = layer_types[i] if i < len(layer_types) else "full_attention"
            cos, sin = rope(_theta(config, kind))
            self.layers.append(
                _Layer(
                    cos=cos,
                    sin=sin,
                    window=int(config.sliding_window) if kind == "sliding_attention" else 0,
                    post_attn=norm(block.post_attention_layernorm) if self.gemma else None,
                    post_mlp=norm(block.post_feedforward_layernorm) if self.gemma else None,
                    ln1=norm(block.input_layernorm),
                    qkv=linear(
                        [at + "q_proj.weight", at + "k_proj.weight", at + "v_proj.weight"],
                        [att.q_proj.weight, att.k_proj.weight, att.v_proj.weight],
                    ),
                    o=linear([at + "o_proj.weight"], [att.o_proj.weight]),
                    ln2=norm(
                        block.pre_feedforward_layernorm
                        if self.gemma
                        else block.post_attention_layernorm
                    ),
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
                    q_norm=maybe_norm(getattr(att, "q_norm", None)),
                    k_norm=maybe_norm(getattr(att, "k_norm", None)),
                )
            )
        self.embed = inner.embed_tokens.weight.detach().to(dtype)
        scale = getattr(inner.embed_tokens, "embed_scale", None)
        self.embed_scale = None if scale is None else scale.detach().to(dtype)
        self.norm = norm(inner.norm)
        self.lm_head = linear(["lm_head.weight"], [model.lm_head.weight])
        self._native = None if lib is None else self._native_layers()
        self.kv_bits = kv_bits
        if kv_bits:
            # the ValueError's words are the user's: the option and what it needs
            if kv_bits not in (2, 4):
                raise ValueError(f"--kv-bits takes 2 or 4, not {kv_bits}")
            if self._native is None:
                raise ValueError(
                    "--kv-bits needs perfsmith's native kernels (AVX-512 and a C compiler)"
                )
            if self.head_dim % KIVI_GROUP:
                raise ValueError(
                    f"--kv-bits needs a head size that is a multiple of {KIVI_GROUP}, not "
                    f"{self.head_dim}"
                )

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
                    cos=layer.cos.data_ptr(),
                    sin=layer.sin.data_ptr(),
                    qkv_bias=_address(layer.qkv_bias),
                    q_norm=_address(layer.q_norm),
                    k_norm=_address(layer.k_norm),
                    post_attn=_address(layer.post_attn),
                    post_mlp=_address(layer.post_mlp),
                    act=self.act,
                    window=layer.window,
                    attn_scale=self.attn_scale,
                    **parts,
                )
            )
        return specs

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        x = F.embedding(tokens, self.embed)
        return x if self.embed_scale is None else x * self.embed_scale

    @property
    def shares_prefixes(self) -> bool:
        """Whether a slot may read a prompt prefix from another's (the native layers on
        an fp32 cache)."""
        return self._native is not None and not self.kv_bits

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
        shape = CacheShape(
            len(self.layers), slots, self.kv_heads, self.head_dim, min(capacity, self.max_context)
        )
        if self.kv_bits:
            return QuantizedSlotCache(shape, bits=self.kv_bits)
        return SlotCache(shape, self.dtype, key_blocks=self._native is not None)

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
        x = self._embed(tokens)
        key_pos = torch.arange(end)
        if batch == 1:
            pos = torch.arange(starts[0], starts[0] + steps)
            seen = key_pos[None, :] <= pos[:, None]
        else:
            pos = torch.tensor(starts)
            seen = key_pos[None, :] <= pos[:, None]
            rows = torch.arange(batch)
        masks: dict[int, torch.Tensor | None] = {}

        def mask_for(window: int) -> torch.Tensor | None:
            """Causal, and for a sliding layer its window; None where nothing is hidden
            (one new token seeing the whole cache)."""
            if window not in masks:
                m = seen if not window else seen & (key_pos[None, :] > pos[:, None] - window)
                if bool(m.all()):
                    masks[window] = None
                else:
                    masks[window] = m[None, None] if batch == 1 else m[:, None, None, :]
            return masks[window]

        rotary: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

        def angles_for(layer: _Layer) -> tuple[torch.Tensor, torch.Tensor]:
            key = layer.cos.data_ptr()
            if key not in rotary:
                cos, sin = layer.cos[pos], layer.sin[pos]
                if batch == 1:
                    rotary[key] = (cos[None, None], sin[None, None])
                else:
                    rotary[key] = (cos[:, None, None], sin[:, None, None])
            return rotary[key]

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
            cos, sin = angles_for(layer)
            q = _rotate(q, cos, sin)
            k = _rotate(k, cos, sin)
            keys = cache.keys[li][lo : lo + batch]
            values = cache.values[li][lo : lo + batch]
            if batch == 1:
                start = starts[0]
                keys[0, :, start : start + steps] = k[0]
                values[0, :, start : start + steps] = v[0]
            else:
                keys[rows, :, pos] = k[:, :, 0]
                values[rows, :, pos] = v[:, :, 0]
            kk, vv = keys[:, :, :end], values[:, :, :end]
            att = F.scaled_dot_product_attention(
                q,
                kk,
                vv,
                attn_mask=mask_for(layer.window),
                enable_gqa=True,
                scale=self.attn_scale or None,
            )
            out = layer.o(att.transpose(1, 2).reshape(batch, steps, q_size))
            if layer.post_attn is not None:
                out = _rms_norm(out, layer.post_attn, self.eps)
            x = x + out
            h = _rms_norm(x, layer.ln2, self.eps)
            gu = layer.gate_up(h)
            gate, up = gu[..., : self.intermediate], gu[..., self.intermediate :]
            act = F.gelu(gate, approximate="tanh") if self.act else F.silu(gate)
            out = layer.down(act * up)
            if layer.post_mlp is not None:
                out = _rms_norm(out, layer.post_mlp, self.eps)
            x = x + out
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
        x = self._embed(tokens.reshape(-1)).contiguous()
        slot_t = torch.tensor(row_slots, dtype=torch.int64)
        pos_t = torch.tensor(positions, dtype=torch.int64)
        prefix = None
        if cache.reads_shared(slots):
            prefix = torch.tensor(
                [[cache.prefix_slot[s], cache.shared[s]] for s in row_slots], dtype=torch.int64
            )
        for li, spec in enumerate(specs):
            if collect is not None:
                collect.append(x.view(batch, steps, hidden).clone())
            if isinstance(cache, QuantizedSlotCache):
                native_kernels.layer_forward(
                    lib, spec, x, slot_t, pos_t, _NONE, _NONE, cache.padded, _kivi(cache, li)
                )
            else:
                native_kernels.layer_forward(
                    lib,
                    spec,
                    x,
                    slot_t,
                    pos_t,
                    cache.keys[li],
                    cache.values[li],
                    cache.values[li].shape[2],
                    prefix=prefix,
                )
        for s in slots:
            cache.lengths[s] += steps
            if isinstance(cache, QuantizedSlotCache):
                cache.advanced(s)
        if collect is not None:
            collect.append(x.view(batch, steps, hidden).clone())
        if last_only:
            x = x.view(batch, steps, hidden)[:, -1].contiguous()
        x = native_kernels.rms_norm(lib, x, self.norm, self.eps)
        logits = self.lm_head(x)
        return logits.view(batch, -1, logits.shape[-1])
