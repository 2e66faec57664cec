"""Linear layers the fast runner uses: dense (fp32 or bf16) and weight-only int8.

Weight-only int8 keeps one scale per output channel. With fp32 activations it runs on
perfsmith's own AVX-512 kernel (:mod:`perfsmith.inference.native`), which reads each
weight panel once for up to six rows; elsewhere on ``torch._weight_int8pack_mm``, the int8
weight path torch ships for CPU. Activations stay in floating point, so a row's output
does not depend on how many rows go through the pass (dynamic activation quantization
would make it depend on the batch's range).
"""

from __future__ import annotations

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
    """Weight-only int8 (per-channel scales); activations in ``compute_dtype``. fp32
    activations use the native kernel where it builds (``native=False`` forces torch's);
    the weight is then kept only in the kernel's panel layout."""

    def __init__(
        self, weight: torch.Tensor, compute_dtype: torch.dtype, *, native: bool = True
    ) -> None:
        q, scale = quantize_per_channel(weight)
        self.scale = scale.to(compute_dtype)
        self.compute_dtype = compute_dtype
        self.out_features = int(weight.shape[0])
        usable = native and compute_dtype == torch.float32 and self.out_features % 16 == 0
        self._lib = native_kernels.library() if usable else None
        self._packed = None if self._lib is None else native_kernels.pack_int8(self._lib, q)
        self._qweight = q if self._packed is None else None

    @property
    def kernel(self) -> str:
        return "native" if self._lib is not None else "torch"

    def native_weights(self) -> tuple[int, int]:
        """Addresses of the packed weight and its scales, for the native layer kernel."""
        if self._packed is None:
            raise ValueError("this layer is not on the native kernel")
        return self._packed.data_ptr(), self.scale.data_ptr()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1]).to(self.compute_dtype)
        if self._lib is not None and self._packed is not None:
            out = native_kernels.int8_linear(self._lib, flat, self._packed, self.scale)
        else:
            assert self._qweight is not None
            out = torch._weight_int8pack_mm(flat, self._qweight, self.scale)
        return out.reshape(*shape[:-1], self.out_features)

    def nbytes(self) -> int:
        weights = self._packed if self._packed is not None else self._qweight
        assert weights is not None
        return weights.numel() + self.scale.numel() * self.scale.element_size()
