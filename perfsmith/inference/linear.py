"""Linear layers the fast runner uses: dense (fp32 or bf16) and weight-only int8.

Where perfsmith's own AVX-512 kernels build (:mod:`perfsmith.inference.native`), every
weight (fp32, bf16, or int8 with one scale per output channel) is a :class:`PanelLinear`:
fp32 activations, weights read once per panel for up to six rows, and a row's output
bit-identical whatever other rows share the pass. Elsewhere fp32/bf16 weights use MKL or
oneDNN (:class:`DenseLinear`) and int8 ``torch._weight_int8pack_mm`` (:class:`Int8Linear`).
Activations stay in floating point throughout (dynamic activation quantization would make
a row's output depend on the batch's range).
"""

from __future__ import annotations

import ctypes
from typing import Protocol

import torch
import torch.nn.functional as F  # noqa: N812

from perfsmith.inference import native as native_kernels


class Linear(Protocol):
    out_features: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def nbytes(self) -> int: ...


def _mkl_packing() -> bool:
    available = torch.backends.mkl.is_available()  # type: ignore[no-untyped-call]
    return bool(available) and hasattr(torch.ops.mkl, "_mkl_linear")


def onednn_bf16() -> bool:
    """Whether oneDNN has a fast bf16 GEMM on this CPU (AVX-512 BF16 or AMX)."""
    available = torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
    return bool(available) and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


class DenseLinear:
    """A floating-point weight, packed once for the CPU's fastest GEMM: MKL's packed sgemm
    for fp32, oneDNN's blocked layout for bf16 (about 2.5x faster than fp32 on a CPU with
    AVX-512 BF16, measured on 425 MB of weights). Packing keeps a pass of 2-16 rows (a
    speculative draft being verified) close to the cost of one row; ``F.linear`` repacks
    the weight on every call."""

    _PACK_ROWS = 8

    def __init__(self, weight: torch.Tensor) -> None:
        self.weight = weight.contiguous()
        self.out_features = int(weight.shape[0])
        self._packed: torch.Tensor | None = None
        self._onednn: torch.Tensor | None = None
        if self.weight.dtype == torch.float32 and _mkl_packing():
            self._packed = torch.ops.mkl._mkl_reorder_linear_weight(self.weight, self._PACK_ROWS)
        elif self.weight.dtype == torch.bfloat16 and onednn_bf16():
            self._onednn = torch.ops.mkldnn._reorder_linear_weight(self.weight, self._PACK_ROWS)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._onednn is not None:
            out: torch.Tensor = torch.ops.mkldnn._linear_pointwise(
                x, self._onednn, None, "none", [], ""
            )
            return out
        if self._packed is None:
            return F.linear(x, self.weight)
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        packed: torch.Tensor = torch.ops.mkl._mkl_linear(
            flat, self._packed, self.weight, None, flat.shape[0]
        )
        return packed.reshape(*shape[:-1], self.out_features)

    def nbytes(self) -> int:
        return self.weight.numel() * self.weight.element_size()


def quantize_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 with one scale per output row: ``weight ≈ q * scale[:, None]``."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q.contiguous(), scale


class Int8Linear:
    """Weight-only int8 (per-channel scales) on torch's kernel; activations in
    ``compute_dtype``."""

    def __init__(self, weight: torch.Tensor, compute_dtype: torch.dtype) -> None:
        self.qweight, scale = quantize_per_channel(weight)
        self.scale = scale.to(compute_dtype)
        self.compute_dtype = compute_dtype
        self.out_features = int(weight.shape[0])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1]).to(self.compute_dtype)
        out = torch._weight_int8pack_mm(flat, self.qweight, self.scale)
        return out.reshape(*shape[:-1], self.out_features)

    def nbytes(self) -> int:
        return self.qweight.numel() + self.scale.numel() * self.scale.element_size()


class PanelLinear:
    """A weight on the native kernel: ``dtype`` fp32, bf16, or int8 (quantized per output
    channel here); fp32 activations in and out."""

    def __init__(self, lib: ctypes.CDLL, weight: torch.Tensor, dtype: torch.dtype) -> None:
        self._lib = lib
        self.out_features = int(weight.shape[0])
        self.scale: torch.Tensor | None = None
        if dtype == torch.int8:
            q, self.scale = quantize_per_channel(weight)
            self.packed = native_kernels.pack(lib, q)
        else:
            self.packed = native_kernels.pack(lib, weight.detach().to(dtype))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1]).float()
        out = native_kernels.linear(self._lib, flat, self.packed, self.scale)
        return out.reshape(*shape[:-1], self.out_features)

    def addresses(self) -> tuple[int, int | None]:
        """The packed weight's and the scales' addresses, for the native layer kernel."""
        return self.packed.data_ptr(), None if self.scale is None else self.scale.data_ptr()

    def nbytes(self) -> int:
        scales = 0 if self.scale is None else self.scale.numel() * 4
        return self.packed.numel() * self.packed.element_size() + scales
