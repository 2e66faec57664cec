"""Row sum of squares in CUDA: one block per row, float4 loads, warp-shuffle reduction."""

import torch
from torch.utils.cpp_extension import load_inline

CUDA = r"""
#include <torch/extension.h>
#include <cuda_runtime.h>

// perfsmith: tune THREADS=[128,256,512]
#define THREADS 256

__global__ void sumsq_kernel(const float* __restrict__ x, float* __restrict__ y, int cols) {
  __shared__ float shared[32];
  const float* row = x + (size_t)blockIdx.x * cols;
  float s = 0.f;
  const int vec = cols / 4;
  const float4* row4 = reinterpret_cast<const float4*>(row);
  for (int c = threadIdx.x; c < vec; c += THREADS) {
    float4 v = row4[c];
    s += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
  }
  for (int c = vec * 4 + threadIdx.x; c < cols; c += THREADS) s += row[c] * row[c];
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffff, s, o);
  if ((threadIdx.x & 31) == 0) shared[threadIdx.x >> 5] = s;
  __syncthreads();
  if (threadIdx.x < 32) {
    s = threadIdx.x < THREADS / 32 ? shared[threadIdx.x] : 0.f;
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffff, s, o);
    if (threadIdx.x == 0) y[blockIdx.x] = s;
  }
}

torch::Tensor row_sumsq(torch::Tensor x) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 2 && x.scalar_type() == torch::kFloat32, "2-D float32 CUDA input");
  x = x.contiguous();
  auto y = torch::empty({x.size(0)}, x.options());
  sumsq_kernel<<<x.size(0), THREADS>>>(x.data_ptr<float>(), y.data_ptr<float>(), x.size(1));
  return y;
}
"""

CPP = "torch::Tensor row_sumsq(torch::Tensor x);"

sumsq_ext = load_inline(
    name="perfsmith_row_sumsq_cuda", cpp_sources=CPP, cuda_sources=CUDA, functions=["row_sumsq"]
)


class ModelNew(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sumsq_ext.row_sumsq(x)
