"""Exact GELU in C++: 0.5 x (1 + erf(x / sqrt 2)), one vectorized pass with OpenMP;
-ffast-math lets GCC call glibc's vector erf."""

import torch
from torch.utils.cpp_extension import load_inline

SOURCE = r"""
#include <torch/extension.h>
#include <cmath>

torch::Tensor gelu(torch::Tensor x) {
  TORCH_CHECK(x.scalar_type() == torch::kFloat32, "float32 input");
  x = x.contiguous();
  auto y = torch::empty_like(x);
  const int64_t n = x.numel();
  const float* a = x.data_ptr<float>();
  float* o = y.data_ptr<float>();
  #pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) o[i] = 0.5f * a[i] * (1.f + std::erf(a[i] * 0.70710678118654752f));
  return y;
}
"""

gelu_ext = load_inline(
    name="perfsmith_gelu_cpp",
    cpp_sources=SOURCE,
    functions=["gelu"],
    extra_cflags=["-ffast-math"],
)


class ModelNew(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gelu_ext.gelu(x)
