"""Linear layers the fast runner uses: dense (fp32 or bf16) and weight-only int8.

Where perfsmith's own AVX-512 kernels build (:mod:`perfsmith.inference.native`), every
weight (fp32, bf16, or int8 with one scale per output channel) is a :class:`PanelLinear`:
fp32 activations, weights read once per panel for up to six rows, and a row's output
bit-identical whatever other rows share the pass. Elsewhere fp32/bf16 weights use MKL or
oneDNN (:class:`DenseLinear`) and int8 ``torch._weight_int8pack_mm`` (:class:`Int8Linear`).
Activations stay in floating point, except that a GGUF file's Q8_0/Q4_0/Q4_1 blocks may
multiply int8 activations (``act8``), each row quantized from its own values per block of
32, never from the batch's range, so a row's output still does not depend on its batch.
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
    """A weight on the native kernels, fp32 activations in and out (int8 inside for
    ``act8`` blocks): parts stacked along
    the outputs (one, or a fused q/k/v or gate/up), each fp32, bf16, int8 (quantized per
    output channel here) or a GGUF file's own blocks (:meth:`gguf`)."""

    def __init__(
        self, lib: ctypes.CDLL, parts: list[tuple[torch.Tensor, torch.Tensor | None, int, int]]
    ) -> None:
        """``parts``: (packed weights, int8 scales or None, kernel type, output rows)."""
        if not 1 <= len(parts) <= 3:
            raise ValueError("a matrix on the native kernels has one to three parts")
        self._lib = lib
        self._parts = parts  # the matrix points into these tensors: they stay alive here
        self.out_features = sum(rows for _, _, _, rows in parts)
        self.matrix = native_kernels.Matrix()
        self.matrix.parts = len(parts)
        for i, (packed, scale, kind, rows) in enumerate(parts):
            part = self.matrix.part[i]
            part.w = packed.data_ptr()
            part.scale = None if scale is None else scale.data_ptr()
            part.type = kind
            part.rows = rows

    @classmethod
    def dense(cls, lib: ctypes.CDLL, weight: torch.Tensor, dtype: torch.dtype) -> PanelLinear:
        """``weight`` as ``dtype``: fp32, bf16, or int8 quantized per output channel."""
        rows = int(weight.shape[0])
        if dtype == torch.int8:
            q, scale = quantize_per_channel(weight)
            return cls(lib, [(native_kernels.pack(lib, q), scale, 0, rows)])
        packed = native_kernels.pack(lib, weight.detach().to(dtype))
        return cls(lib, [(packed, None, native_kernels.WEIGHT_TYPES[dtype], rows)])

    @classmethod
    def gguf(
        cls, lib: ctypes.CDLL, raw: torch.Tensor, kind: str, *, act8: bool = False
    ) -> PanelLinear:
        """A GGUF tensor's own blocks (uint8 ``[N, row bytes]``, type ``kind``). ``act8``:
        multiplied with int8 activations (Q8_0, Q4_0, Q4_1 on a CPU with AVX-512 VNNI;
        ValueError otherwise), as llama.cpp computes these types."""
        if act8 and not native_kernels.act8(lib):
            raise ValueError("int8 activations need AVX-512 VNNI, which this CPU lacks")
        packed = native_kernels.pack_blocks(raw, kind, act8=act8)
        kinds = native_kernels.ACT8_TYPES if act8 else native_kernels.BLOCK_TYPES
        return cls(lib, [(packed, None, kinds[kind], int(raw.shape[0]))])

    @classmethod
    def stacked(cls, linears: list[PanelLinear]) -> PanelLinear:
        """One matrix of ``linears`` stacked along the outputs, each part as it was."""
        return cls(linears[0]._lib, [part for lin in linears for part in lin._parts])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1]).float()
        out = native_kernels.linear(self._lib, flat, self.matrix)
        return out.reshape(*shape[:-1], self.out_features)

    def nbytes(self) -> int:
        total = 0
        for packed, scale, _, _ in self._parts:
            total += packed.numel() * packed.element_size()
            total += 0 if scale is None else scale.numel() * scale.element_size()
        return total
