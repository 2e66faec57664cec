"""LayerNorm in CUDA: one block per row; the sum and sum of squares (around the row's
first value) by warp shuffles, then normalize, scale and shift."""

import torch
from torch.utils.cpp_extension import load_inline

CUDA = r"""
#include <torch/extension.h>
#include <cuda_runtime.h>

// perfsmith: tune THREADS=[128,256,512]
#define THREADS 256

__global__ void layer_norm_kernel(const float* __restrict__ x, const float* __restrict__ w,
                                  const float* __restrict__ b, float* __restrict__ y,
                                  int cols, float eps) {
  __shared__ float s_sum[32], s_sq[32];
  const float* row = x + (size_t)blockIdx.x * cols;
  float* out = y + (size_t)blockIdx.x * cols;
  const float shift = row[0];
  float s = 0.f, ss = 0.f;
  for (int c = threadIdx.x; c < cols; c += THREADS) { float d = row[c] - shift; s += d; ss += d * d; }
  for (int o = 16; o > 0; o >>= 1) {
    s += __shfl_xor_sync(0xffffffff, s, o);
    ss += __shfl_xor_sync(0xffffffff, ss, o);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) { s_sum[warp] = s; s_sq[warp] = ss; }
  __syncthreads();
  if (warp == 0) {
    s = lane < THREADS / 32 ? s_sum[lane] : 0.f;
    ss = lane < THREADS / 32 ? s_sq[lane] : 0.f;
    for (int o = 16; o > 0; o >>= 1) {
      s += __shfl_xor_sync(0xffffffff, s, o);
      ss += __shfl_xor_sync(0xffffffff, ss, o);
    }
    if (lane == 0) { s_sum[0] = s; s_sq[0] = ss; }
  }
  __syncthreads();
  const float mean_d = s_sum[0] / cols;
  const float var = s_sq[0] / cols - mean_d * mean_d;
  const float mean = shift + mean_d;
  const float inv = rsqrtf(var + eps);
  for (int c = threadIdx.x; c < cols; c += THREADS) out[c] = (row[c] - mean) * inv * w[c] + b[c];
}

torch::Tensor layer_norm_rows(torch::Tensor x, torch::Tensor w, torch::Tensor b, double eps) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 2 && x.scalar_type() == torch::kFloat32, "2-D float32 CUDA input");
  x = x.contiguous();
  auto y = torch::empty_like(x);
  layer_norm_kernel<<<x.size(0), THREADS>>>(x.data_ptr<float>(), w.data_ptr<float>(),
      b.data_ptr<float>(), y.data_ptr<float>(), x.size(1), (float)eps);
  return y;
}
"""

CPP = "torch::Tensor layer_norm_rows(torch::Tensor x, torch::Tensor w, torch::Tensor b, double eps);"

norm_ext = load_inline(
    name="perfsmith_layernorm_cuda", cpp_sources=CPP, cuda_sources=CUDA,
    functions=["layer_norm_rows"],
)


class ModelNew(torch.nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(features))
        self.bias = torch.nn.Parameter(torch.zeros(features))
        with torch.no_grad():  # drawn like the reference's (same seed, same order)
            self.weight.uniform_(0.5, 1.5)
            self.bias.uniform_(-0.5, 0.5)
        self.eps = 1e-5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return norm_ext.layer_norm_rows(x, self.weight, self.bias, self.eps)
