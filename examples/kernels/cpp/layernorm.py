"""LayerNorm in C++: per row, the mean and the variance in one vectorized pass (sum and
sum of squares in double-free float with a shifted origin for accuracy), then the
normalize-scale-shift pass; OpenMP threads over rows."""

import torch
from torch.utils.cpp_extension import load_inline

SOURCE = r"""
#include <torch/extension.h>
#include <cmath>

torch::Tensor layer_norm_rows(torch::Tensor x, torch::Tensor w, torch::Tensor b, double eps) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat32, "2-D float32 input");
  x = x.contiguous();
  auto y = torch::empty_like(x);
  const int64_t rows = x.size(0), cols = x.size(1);
  const float* in = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  const float* bp = b.data_ptr<float>();
  float* out = y.data_ptr<float>();
  #pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* a = in + r * cols;
    float* o = out + r * cols;
    const float shift = a[0];  // sums around a nearby value: no catastrophic cancellation
    float s = 0.f, ss = 0.f;
    #pragma omp simd reduction(+:s, ss)
    for (int64_t c = 0; c < cols; ++c) { float d = a[c] - shift; s += d; ss += d * d; }
    const float mean_d = s / cols;
    const float var = ss / cols - mean_d * mean_d;
    const float mean = shift + mean_d;
    const float inv = 1.f / std::sqrt(var + static_cast<float>(eps));
    #pragma omp simd
    for (int64_t c = 0; c < cols; ++c) o[c] = (a[c] - mean) * inv * wp[c] + bp[c];
  }
  return y;
}
"""

norm_ext = load_inline(
    name="perfsmith_layernorm_cpp", cpp_sources=SOURCE, functions=["layer_norm_rows"]
)


class ModelNew(torch.nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(features))
        self.bias = torch.nn.Parameter(torch.empty(features))
        # the same parameters as the reference's LayerNorm (same seed, same draws)
        torch.nn.init.ones_(self.weight)
        torch.nn.init.zeros_(self.bias)
        with torch.no_grad():
            self.weight.uniform_(0.5, 1.5)
            self.bias.uniform_(-0.5, 0.5)
        self.eps = 1e-5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return norm_ext.layer_norm_rows(x, self.weight, self.bias, self.eps)
