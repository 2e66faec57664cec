"""Row sum of squares in C++: one fused, vectorized pass per row (the reference writes
x * x to memory and reads it again); OpenMP threads over rows."""

import torch
from torch.utils.cpp_extension import load_inline

SOURCE = r"""
#include <torch/extension.h>

torch::Tensor row_sumsq(torch::Tensor x) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat32, "2-D float32 input");
  x = x.contiguous();
  const int64_t rows = x.size(0), cols = x.size(1);
  auto y = torch::empty({rows}, x.options());
  const float* in = x.data_ptr<float>();
  float* out = y.data_ptr<float>();
  #pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* a = in + r * cols;
    float s = 0.f;
    #pragma omp simd reduction(+:s)
    for (int64_t c = 0; c < cols; ++c) s += a[c] * a[c];
    out[r] = s;
  }
  return y;
}
"""

sumsq_ext = load_inline(name="perfsmith_row_sumsq_cpp", cpp_sources=SOURCE, functions=["row_sumsq"])


class ModelNew(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sumsq_ext.row_sumsq(x)
