"""perfsmith's own CPU kernels (``csrc/qlinear.c``), built on first use with the system C
compiler and loaded with ctypes.

The shared library is cached under the user's cache directory, keyed by the source, the
compiler and the CPU, and rebuilt only when one of them changes. Where it cannot be built
(no AVX-512, no C compiler, ``PERFSMITH_NATIVE=0``) :func:`library` returns None, says why
once in the log, and callers use torch's kernels instead.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.resources
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

log = logging.getLogger(__name__)

FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC")
LIBS = ("-lm",)
REQUIRED_CPU_FLAGS = ("avx512f", "avx512bw")


class NativeUnavailableError(RuntimeError):
    """The native kernels cannot be used on this machine (the message says why)."""


def _source() -> str:
    return (
        importlib.resources.files("perfsmith.inference")
        .joinpath("csrc", "qlinear.c")
        .read_text(encoding="utf-8")
    )


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _compiler() -> str:
    for name in (os.environ.get("CC", ""), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    raise NativeUnavailableError("no C compiler (cc, gcc or clang) on PATH")


def _build(cache: Path) -> Path:
    if os.environ.get("PERFSMITH_NATIVE", "1") == "0":
        raise NativeUnavailableError("PERFSMITH_NATIVE=0")
    flags = _cpu_flags()
    missing = [f for f in REQUIRED_CPU_FLAGS if f not in flags]
    if missing:
        raise NativeUnavailableError(f"the CPU lacks {', '.join(missing)}")
    cc = _compiler()
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    source = _source()
    key = hashlib.sha256(
        "\0".join([source, " ".join(FLAGS + LIBS), version, " ".join(sorted(flags))]).encode()
    ).hexdigest()[:16]
    target = cache / f"qlinear-{key}.so"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        src = Path(tmp) / "qlinear.c"
        src.write_text(source, encoding="utf-8")
        out = Path(tmp) / "qlinear.so"
        done = subprocess.run(
            [cc, *FLAGS, str(src), "-o", str(out), *LIBS], capture_output=True, text=True
        )
        if done.returncode != 0:
            detail = done.stderr.strip()[-400:]
            raise NativeUnavailableError(
                f"{cc} failed (exit status {done.returncode}){': ' + detail if detail else ''}"
            )
        out.replace(target)  # atomic: concurrent builders each install a whole file
    return target


@functools.cache
def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None (logged once) where they cannot be built here."""
    from perfsmith.paths import cache_dir

    try:
        path = _build(cache_dir() / "native")
        lib = ctypes.CDLL(str(path))
    except (NativeUnavailableError, OSError) as exc:
        log.info("native kernels unavailable (%s); using torch's", exc)
        return None
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    lib.ps_matmul.argtypes = [ptr, i64, i64, ctypes.POINTER(Matrix), ptr, ctypes.c_int]
    lib.ps_matmul.restype = None
    lib.ps_pack.argtypes = [ptr, i64, i64, i64, ptr]
    lib.ps_pack.restype = None
    lib.ps_rms_norm.argtypes = [ptr, i64, i64, ptr, ctypes.c_float, ptr]
    lib.ps_rms_norm.restype = None
    lib.ps_layer_forward.argtypes = [
        ctypes.POINTER(LayerSpec),
        ptr,
        i64,
        ptr,
        ptr,
        ptr,
        ptr,
        ptr,
        ctypes.POINTER(Kivi),
        i64,
        ctypes.c_int,
    ]
    lib.ps_layer_forward.restype = None
    lib.ps_kivi_roundtrip.argtypes = [ptr, i64, i64, ptr]
    lib.ps_kivi_roundtrip.restype = None
    lib.ps_features.argtypes = []
    lib.ps_features.restype = ctypes.c_int
    return lib


# the kernel's weight types (csrc/qlinear.c: W_INT8, W_BF16, W_F32, then GGUF's blocks)
WEIGHT_TYPES = {torch.int8: 0, torch.bfloat16: 1, torch.float32: 2}
BLOCK_TYPES = {"Q8_0": 3, "Q4_0": 4, "Q4_1": 5, "Q4_K": 6, "Q6_K": 7, "Q5_0": 8, "Q5_1": 9}
# the block types the kernels also multiply with int8 activations (AVX-512 VNNI)
ACT8_TYPES = {"Q8_0": 10, "Q4_0": 11, "Q4_1": 12}
# GGUF's block of 32 weights: bytes in the file, the bytes of its fp16 scale (and fp16
# minimum: Q4_1, Q5_1), and of its fifth bits (Q5), before its quants
BLOCK_LAYOUT = {
    "Q8_0": (34, 2, 0),
    "Q4_0": (18, 2, 0),
    "Q4_1": (20, 4, 0),
    "Q5_0": (22, 2, 4),
    "Q5_1": (24, 4, 4),
}
# the K-quants' super-block of 256 weights: bytes in the file
SUPER_BLOCK_BYTES = {"Q4_K": 144, "Q6_K": 210}


def pack(lib: ctypes.CDLL, weight: torch.Tensor) -> torch.Tensor:
    """``[N, K]`` int8, bf16 or fp32 weights (N a multiple of 16) into the kernel's
    ``[N/16, K, 16]`` panels."""
    n, k = weight.shape
    if n % 16:
        raise ValueError(f"{n} output channels: the kernel needs a multiple of 16")
    if weight.dtype not in WEIGHT_TYPES:
        raise ValueError(f"the kernel takes int8, bf16 or fp32 weights, not {weight.dtype}")
    src = weight.contiguous()
    packed = torch.empty((n // 16, k, 16), dtype=weight.dtype)
    lib.ps_pack(src.data_ptr(), n, k, src.element_size(), packed.data_ptr())
    return packed


def act8(lib: ctypes.CDLL) -> bool:
    """Whether this build multiplies Q8_0/Q4_0/Q4_1 blocks with int8 activations (the CPU
    has AVX-512 VNNI)."""
    return bool(lib.ps_features() & 1)


def pack_blocks(raw: torch.Tensor, kind: str, *, act8: bool = False) -> torch.Tensor:
    """A GGUF tensor's rows of blocks (uint8 ``[N, row bytes]``, N a multiple of 16) into
    the kernel's panels, the file's values rearranged, none recomputed: per panel of 16
    rows and block, the rows' scales, then their quants (see csrc/qlinear.c). ``act8``:
    the layout the int8-activation kernel reads (Q8_0, Q4_0, Q4_1)."""
    if act8:
        return _pack_act8(raw, kind)
    if kind in SUPER_BLOCK_BYTES:
        return _pack_k(raw, kind)
    if kind not in BLOCK_LAYOUT:
        raise ValueError(f"GGUF type {kind} is not one the kernels read")
    blocks, parts = _scales(raw, kind)
    panels, count = blocks.shape[:2]
    _, head, bits = BLOCK_LAYOUT[kind]
    if bits:  # Q5: each row's 32-bit word of fifth bits, rows in order
        parts.append(blocks[..., head : head + bits].reshape(panels, count, 16 * bits))
    # the quants, rows last: Q8_0 [32 k][16 rows]; else the file's bytes qs[j] [16 j][16 rows]
    parts.append(_rows_last(blocks[..., head + bits :]))
    return torch.cat(parts, dim=-1).contiguous()


def _pack_act8(raw: torch.Tensor, kind: str) -> torch.Tensor:
    """Per panel and block: the rows' fp16 d (and Q4_1's fp16 m), then the quants (Q8_0's
    plus 128) in groups of 4 k with the 16 rows inside (csrc/qlinear.c, ablock)."""
    if kind not in ACT8_TYPES:
        raise ValueError(f"GGUF type {kind} has no int8-activation kernel (Q8_0, Q4_0, Q4_1 do)")
    blocks, parts = _scales(raw, kind)
    panels, count = blocks.shape[:2]
    quants = blocks[..., BLOCK_LAYOUT[kind][1] :]  # [P, B, 16 rows, 32 (Q8_0) or 16 bytes]
    if kind == "Q8_0":  # unsigned: the file's int8 plus 128
        quants = quants ^ 0x80
    groups = quants.shape[-1] // 4
    grouped = quants.reshape(panels, count, 16, groups, 4).permute(0, 1, 3, 2, 4)
    parts.append(grouped.reshape(panels, count, groups * 64))
    packed = torch.cat(parts, dim=-1)  # [P, B, block bytes]
    # panels in pairs, each pair's blocks interleaved (an odd last panel alone): the two
    # panels a step of the kernel reads are one stream
    paired = panels // 2 * 2
    pairs = packed[:paired].reshape(paired // 2, 2, count, -1).transpose(1, 2)
    return torch.cat([pairs.reshape(-1), packed[paired:].reshape(-1)]).contiguous()


def _scales(raw: torch.Tensor, kind: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``raw``'s blocks ``[P, B, 16 rows, bytes]``, and the parts every layout starts
    with: the fp16 scales of the 16 rows together, then (Q4_1, Q5_1) their minimums."""
    size, head, _ = BLOCK_LAYOUT[kind]
    blocks = _panels(raw, kind, size)
    return blocks, [_rows_last(blocks[..., i : i + 2]) for i in range(0, head, 2)]


def _panels(raw: torch.Tensor, kind: str, size: int) -> torch.Tensor:
    """``raw`` as ``[N/16 panels, blocks per row, 16 rows, size]``."""
    n, width = raw.shape
    if n % 16 or width % size:
        raise ValueError(f"[{n}, {width}] bytes are not rows of {kind} blocks in 16s")
    return raw.reshape(n // 16, 16, width // size, size).permute(0, 2, 1, 3)


def _rows_last(part: torch.Tensor) -> torch.Tensor:
    """``[P, B, 16 rows, bytes]`` as ``[P, B, bytes * 16]`` with the 16 rows innermost
    (fp16 pairs of bytes kept together: 2-byte fields come in as ``[..., 2]``)."""
    panels, count, rows, width = part.shape
    if width == 2:
        return part.reshape(panels, count, rows * 2)
    return part.transpose(2, 3).reshape(panels, count, width * rows)


def _pack_k(raw: torch.Tensor, kind: str) -> torch.Tensor:
    blocks = _panels(raw, kind, SUPER_BLOCK_BYTES[kind])  # [P, S, 16 rows, bytes]
    if kind == "Q4_K":
        d, dmin, packed, qs = (
            blocks[..., 0:2],
            blocks[..., 2:4],
            blocks[..., 4:16],
            blocks[..., 16:],
        )
        # the 6-bit scales and minimums of the 8 sub-blocks (llama.cpp's get_scale_min_k4)
        a, b, c = packed[..., 0:4].int(), packed[..., 4:8].int(), packed[..., 8:12].int()
        scales = torch.cat([a & 63, (c & 15) | ((a >> 6) << 4)], dim=-1).to(torch.uint8)
        mins = torch.cat([b & 63, (c >> 4) | ((b >> 6) << 4)], dim=-1).to(torch.uint8)
        parts = [d, dmin, scales, mins, qs]
    else:  # Q6_K: ql[128], qh[64], int8 scales[16], fp16 d
        ql, qh, scales, d = (
            blocks[..., :128],
            blocks[..., 128:192],
            blocks[..., 192:208],
            blocks[..., 208:],
        )
        parts = [d, scales, ql, qh]
    return torch.cat([_rows_last(part) for part in parts], dim=-1).contiguous()


_PTR, _I64 = ctypes.c_void_p, ctypes.c_int64


class Part(ctypes.Structure):
    """``ps_part`` in csrc/qlinear.c: packed weights of one type for ``rows`` outputs."""

    _fields_ = [("w", _PTR), ("scale", _PTR), ("type", _I64), ("rows", _I64)]


class Matrix(ctypes.Structure):
    """``ps_matrix``: up to three parts stacked along the outputs (a fused q/k/v)."""

    _fields_ = [("part", Part * 3), ("parts", ctypes.c_int64)]


def linear(lib: ctypes.CDLL, x: torch.Tensor, matrix: Matrix) -> torch.Tensor:
    """``x [M, K]`` fp32 times a packed weight matrix: fp32 ``[M, N]``."""
    flat = x if x.is_contiguous() else x.contiguous()
    m, k = flat.shape
    n = sum(int(matrix.part[i].rows) for i in range(matrix.parts))
    out = torch.empty((m, n), dtype=torch.float32)
    lib.ps_matmul(
        flat.data_ptr(), m, k, ctypes.byref(matrix), out.data_ptr(), torch.get_num_threads()
    )
    return out


class LayerSpec(ctypes.Structure):
    """``ps_layer`` in csrc/qlinear.c: one decoder layer's shapes and weights."""

    _fields_ = [
        *[(name, _I64) for name in ("hidden", "heads", "kv_heads", "head_dim", "inter")],
        ("eps", ctypes.c_float),
        *[(name, _PTR) for name in ("ln1", "ln2")],
        *[(name, Matrix) for name in ("qkv", "o", "gate_up", "down")],
        *[(name, _PTR) for name in ("cos", "sin", "qkv_bias", "q_norm", "k_norm")],
        *[(name, _PTR) for name in ("post_attn", "post_mlp")],
        *[(name, _I64) for name in ("act", "window")],
        ("attn_scale", ctypes.c_float),
    ]


class Kivi(ctypes.Structure):
    """``ps_kivi`` in csrc/qlinear.c: one layer's quantized key/value cache
    (:class:`perfsmith.inference.kv_cache.QuantizedSlotCache`)."""

    _fields_ = [
        *[(name, _I64) for name in ("bits", "window", "ring")],
        *[
            (name, _PTR)
            for name in ("stored", "kcodes", "kscale", "kmin", "vcodes", "vscale", "vmin")
        ],
        *[(name, _PTR) for name in ("rkeys", "rvalues")],
    ]


def rms_norm(lib: ctypes.CDLL, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMS norm of each row of a contiguous fp32 ``[R, H]``."""
    rows, hidden = x.shape
    out = torch.empty_like(x)
    lib.ps_rms_norm(x.data_ptr(), rows, hidden, weight.data_ptr(), eps, out.data_ptr())
    return out


def layer_forward(
    lib: ctypes.CDLL,
    spec: LayerSpec,
    x: torch.Tensor,
    slots: torch.Tensor,
    positions: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    capacity: int,
    kivi: Kivi | None = None,
    prefix: torch.Tensor | None = None,
) -> None:
    """Run one decoder layer over the rows of ``x`` (fp32 ``[R, hidden]``, in place):
    row r is the token at ``positions[r]`` of cache slot ``slots[r]``; its key and value
    are written to the layer's cache: keys ``[slots, kv_heads, ceil(capacity / 16),
    head_dim, 16]``, values ``[slots, kv_heads, capacity, head_dim]``, or with ``kivi``
    to that quantized cache (``keys`` and ``values`` unused). ``prefix`` (int64 ``[R,
    2]``): row r reads its first ``prefix[r, 1]`` positions (a multiple of 16) from slot
    ``prefix[r, 0]``'s cache, a prompt prefix it shares with that slot."""
    lib.ps_layer_forward(
        ctypes.byref(spec),
        x.data_ptr(),
        x.shape[0],
        slots.data_ptr(),
        positions.data_ptr(),
        None if prefix is None else prefix.data_ptr(),
        keys.data_ptr(),
        values.data_ptr(),
        None if kivi is None else ctypes.byref(kivi),
        capacity,
        torch.get_num_threads(),
    )
