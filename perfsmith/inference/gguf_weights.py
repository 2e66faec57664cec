"""A GGUF file's own quantized weights, by the names transformers gives the model's
parameters, for the native kernels to compute with as they are (no dequantization).

Only the block types the kernels read are taken (``native.BLOCK_TYPES``); other
tensors (norms in fp32, types the kernels do not read) come from the transformers model
as before. llama.cpp stores a Llama model's query and key rows permuted for its rotary
embedding; the rows (each a run of whole blocks) are put back in transformers' order, so a
row here is the same row of the same weight, byte for byte the file's.

Reading a file's metadata takes seconds (its vocabulary), so the blocks are kept beside
the converted weights (``blocks.safetensors``) and read from there next time.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from perfsmith.inference.native import BLOCK_TYPES

log = logging.getLogger(__name__)

CACHE_NAME = "blocks.safetensors"

# GGUF's tensor names (llama.cpp's) to transformers' parameter names
_LAYER = re.compile(r"^blk\.(\d+)\.(\w+)\.weight$")
_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output.weight": "lm_head.weight",
}


@dataclass(frozen=True)
class FileWeight:
    """One weight as the file holds it: ``kind`` (``Q4_1``...), ``raw`` uint8 ``[rows,
    row bytes]`` in transformers' row order; ``columns`` is the input width."""

    kind: str
    raw: torch.Tensor
    columns: int

    @property
    def rows(self) -> int:
        return int(self.raw.shape[0])


def hf_name(name: str) -> str | None:
    """transformers' name for a GGUF tensor name (None for ones it has no linear for)."""
    if name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[name]
    match = _LAYER.match(name)
    if match is None or match.group(2) not in _LAYER_NAMES:
        return None
    return f"model.layers.{match.group(1)}.{_LAYER_NAMES[match.group(2)]}.weight"


def unpermute_rows(raw: torch.Tensor, heads: int) -> torch.Tensor:
    """Undo llama.cpp's rotary permutation of query/key rows (``permute`` in its
    converter): its row (h, t, s) is transformers' row (h, s, t), t < head_dim / 2."""
    rows, width = raw.shape
    half = rows // heads // 2
    return raw.reshape(heads, half, 2, width).transpose(1, 2).reshape(rows, width).contiguous()


def read(path: Path, config: Any) -> dict[str, FileWeight]:
    """The weights of the GGUF file ``path`` the native kernels read, by transformers'
    names; ``lm_head.weight`` is the embedding table where the file ties them."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    llama = getattr(config, "model_type", "") == "llama"
    heads = int(getattr(config, "num_attention_heads", 0) or 0)
    kv_heads = int(getattr(config, "num_key_value_heads", 0) or heads)
    found: dict[str, FileWeight] = {}
    for tensor in reader.tensors:
        kind = tensor.tensor_type.name
        name = hf_name(tensor.name)
        if name is None or kind not in BLOCK_TYPES or len(tensor.shape) != 2:
            continue
        raw = torch.from_numpy(tensor.data.copy()).reshape(int(tensor.shape[1]), -1)
        if llama and name.endswith("q_proj.weight"):
            raw = unpermute_rows(raw, heads)
        elif llama and name.endswith("k_proj.weight"):
            raw = unpermute_rows(raw, kv_heads)
        found[name] = FileWeight(kind, raw, int(tensor.shape[0]))
    tied = getattr(config, "tie_word_embeddings", True)
    if tied and "lm_head.weight" not in found and "model.embed_tokens.weight" in found:
        found["lm_head.weight"] = found["model.embed_tokens.weight"]
    return found


def load(path: Path, config: Any, cache: Path | None) -> dict[str, FileWeight]:
    """:func:`read`, kept in the folder ``cache`` and read from there next time."""
    from safetensors.torch import load_file, save_file

    if cache is None:
        return read(path, config)
    stored, index = cache / CACHE_NAME, cache / "blocks.json"
    if stored.is_file():
        try:
            tensors = load_file(str(stored))
            meta = json.loads(index.read_text(encoding="utf-8"))
            return {
                name: FileWeight(str(info["kind"]), tensors[info["tensor"]], int(info["columns"]))
                for name, info in meta.items()
            }
        except (OSError, ValueError, KeyError) as exc:
            log.warning("re-reading the GGUF file's blocks: %s is unusable (%s)", stored, exc)
    found = read(path, config)
    if cache.is_dir():
        tensors, meta = {}, {}
        for name, weight in found.items():
            key = next((k for k, v in tensors.items() if v is weight.raw), None)
            if key is None:
                key = f"t{len(tensors)}"
                tensors[key] = weight.raw
            meta[name] = {"kind": weight.kind, "tensor": key, "columns": weight.columns}
        # the index first, then the tensors in one rename: a reader that finds the
        # tensors finds their index (concurrent writers write the same index)
        index.write_text(json.dumps(meta), encoding="utf-8")
        staged = stored.with_name(f"{stored.name}.tmp{os.getpid()}")
        save_file(tensors, str(staged))
        staged.replace(stored)
    return found
