"""Row softmax in C++: OpenMP threads over rows; per row a max pass, an exp-and-sum pass
and a scale pass, each vectorized (the row stays in L1/L2). exp is a Cephes-style
polynomial (relative error about 1e-7) that vectorizes, unlike std::exp without
-ffast-math."""

import torch
from torch.utils.cpp_extension import load_inline

SOURCE = r"""
#include <torch/extension.h>
#include <cmath>
#include <cstdint>

// exp(x) = 2^k * exp(r), |r| <= ln2/2, exp(r) by a degree-6 polynomial
static inline float vexp(float x) {
  x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
  const float k = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = x - k * 0.693359375f + k * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.f;
  return e * __builtin_bit_cast(float, (static_cast<int32_t>(k) + 127) << 23);
}

torch::Tensor softmax_rows(torch::Tensor x) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat32, "2-D float32 input");
  x = x.contiguous();
  auto y = torch::empty_like(x);
  const int64_t rows = x.size(0), cols = x.size(1);
  const float* in = x.data_ptr<float>();
  float* out = y.data_ptr<float>();
  #pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* a = in + r * cols;
    float* b = out + r * cols;
    float m = -INFINITY;
    #pragma omp simd reduction(max:m)
    for (int64_t c = 0; c < cols; ++c) m = a[c] > m ? a[c] : m;
    float s = 0.f;
    #pragma omp simd reduction(+:s)
    for (int64_t c = 0; c < cols; ++c) { float e = vexp(a[c] - m); b[c] = e; s += e; }
    const float inv = 1.f / s;
    #pragma omp simd
    for (int64_t c = 0; c < cols; ++c) b[c] *= inv;
  }
  return y;
}
"""

softmax_ext = load_inline(
    name="perfsmith_softmax_cpp",
    cpp_sources=SOURCE,
    functions=["softmax_rows"],
    # lets GCC vectorize vexp's floor and int conversion (no floating-point traps here)
    extra_cflags=["-fno-trapping-math"],
)


class ModelNew(torch.nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        assert dim in (1, -1), "this kernel normalizes rows"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return softmax_ext.softmax_rows(x)
