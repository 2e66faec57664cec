"""Row softmax in CUDA: one block per row; the row's max and sum of exponentials by warp
shuffles then shared memory, the row read three times from L1/L2 (written once)."""

import torch
from torch.utils.cpp_extension import load_inline

CUDA = r"""
#include <torch/extension.h>
#include <cuda_runtime.h>

// perfsmith: tune THREADS=[128,256,512]
#define THREADS 256

__device__ float block_reduce(float v, bool is_max, float* shared) {
  for (int o = 16; o > 0; o >>= 1) {
    float other = __shfl_xor_sync(0xffffffff, v, o);
    v = is_max ? fmaxf(v, other) : v + other;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < (THREADS / 32) ? shared[lane] : (is_max ? -INFINITY : 0.f);
    for (int o = 16; o > 0; o >>= 1) {
      float other = __shfl_xor_sync(0xffffffff, v, o);
      v = is_max ? fmaxf(v, other) : v + other;
    }
    if (lane == 0) shared[0] = v;
  }
  __syncthreads();
  float out = shared[0];
  __syncthreads();
  return out;
}

__global__ void softmax_kernel(const float* __restrict__ x, float* __restrict__ y, int cols) {
  __shared__ float shared[32];
  const float* row = x + (size_t)blockIdx.x * cols;
  float* out = y + (size_t)blockIdx.x * cols;
  float m = -INFINITY;
  for (int c = threadIdx.x; c < cols; c += THREADS) m = fmaxf(m, row[c]);
  m = block_reduce(m, true, shared);
  float s = 0.f;
  for (int c = threadIdx.x; c < cols; c += THREADS) s += __expf(row[c] - m);
  s = block_reduce(s, false, shared);
  const float inv = 1.f / s;
  for (int c = threadIdx.x; c < cols; c += THREADS) out[c] = __expf(row[c] - m) * inv;
}

torch::Tensor softmax_rows(torch::Tensor x) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 2 && x.scalar_type() == torch::kFloat32, "2-D float32 CUDA input");
  x = x.contiguous();
  auto y = torch::empty_like(x);
  softmax_kernel<<<x.size(0), THREADS>>>(x.data_ptr<float>(), y.data_ptr<float>(), x.size(1));
  return y;
}
"""

CPP = "torch::Tensor softmax_rows(torch::Tensor x);"

softmax_ext = load_inline(
    name="perfsmith_softmax_cuda", cpp_sources=CPP, cuda_sources=CUDA, functions=["softmax_rows"]
)


class ModelNew(torch.nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        assert dim in (1, -1), "this kernel normalizes rows"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return softmax_ext.softmax_rows(x)
