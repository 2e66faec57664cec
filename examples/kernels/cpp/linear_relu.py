"""relu(x W^T + b) in C++, fused: each output is a vectorized dot product of a row of x
with a row of W (both contiguous), plus the bias, clamped at zero in the same pass;
OpenMP threads over the batch."""

import torch
from torch.utils.cpp_extension import load_inline

SOURCE = r"""
#include <torch/extension.h>

torch::Tensor linear_relu(torch::Tensor x, torch::Tensor w, torch::Tensor bias) {
  TORCH_CHECK(x.dim() == 2 && w.dim() == 2 && x.size(1) == w.size(1), "shapes");
  x = x.contiguous();
  w = w.contiguous();
  const int64_t n = x.size(0), k = x.size(1), m = w.size(0);
  auto y = torch::empty({n, m}, x.options());
  const float* X = x.data_ptr<float>();
  const float* W = w.data_ptr<float>();
  const float* Bv = bias.data_ptr<float>();
  float* Y = y.data_ptr<float>();
  #pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float* xr = X + i * k;
    for (int64_t j = 0; j < m; ++j) {
      const float* wr = W + j * k;
      float s = 0.f;
      #pragma omp simd reduction(+:s)
      for (int64_t kk = 0; kk < k; ++kk) s += xr[kk] * wr[kk];
      s += Bv[j];
      Y[i * m + j] = s > 0.f ? s : 0.f;
    }
  }
  return y;
}
"""

linear_ext = load_inline(
    name="perfsmith_linear_relu_cpp", cpp_sources=SOURCE, functions=["linear_relu"]
)


class ModelNew(torch.nn.Module):
    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        # the reference's nn.Linear parameters, drawn the same way (same seed, same order)
        ref = torch.nn.Linear(in_features, out_features)
        self.weight = torch.nn.Parameter(ref.weight.detach().clone())
        self.bias = torch.nn.Parameter(ref.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear_ext.linear_relu(x, self.weight, self.bias)
