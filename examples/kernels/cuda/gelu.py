"""Exact GELU in CUDA: a grid-stride loop over float4s with erff."""

import torch
from torch.utils.cpp_extension import load_inline

CUDA = r"""
#include <torch/extension.h>
#include <cuda_runtime.h>

// perfsmith: tune THREADS=[128,256,512]
#define THREADS 256

__device__ __forceinline__ float gelu1(float v) {
  return 0.5f * v * (1.f + erff(v * 0.70710678118654752f));
}

__global__ void gelu_kernel(const float4* __restrict__ x, float4* __restrict__ y, long n4) {
  for (long i = blockIdx.x * (long)THREADS + threadIdx.x; i < n4; i += (long)gridDim.x * THREADS) {
    float4 v = x[i];
    y[i] = make_float4(gelu1(v.x), gelu1(v.y), gelu1(v.z), gelu1(v.w));
  }
}

__global__ void gelu_tail(const float* __restrict__ x, float* __restrict__ y, long start, long n) {
  long i = start + blockIdx.x * (long)THREADS + threadIdx.x;
  if (i < n) y[i] = gelu1(x[i]);
}

torch::Tensor gelu(torch::Tensor x) {
  TORCH_CHECK(x.is_cuda() && x.scalar_type() == torch::kFloat32, "float32 CUDA input");
  x = x.contiguous();
  auto y = torch::empty_like(x);
  const long n = x.numel(), n4 = n / 4;
  if (n4 > 0) {
    const int blocks = (int)std::min<long>((n4 + THREADS - 1) / THREADS, 65535);
    gelu_kernel<<<blocks, THREADS>>>(reinterpret_cast<const float4*>(x.data_ptr<float>()),
                                     reinterpret_cast<float4*>(y.data_ptr<float>()), n4);
  }
  if (n - n4 * 4 > 0) gelu_tail<<<1, THREADS>>>(x.data_ptr<float>(), y.data_ptr<float>(), n4 * 4, n);
  return y;
}
"""

CPP = "torch::Tensor gelu(torch::Tensor x);"

gelu_ext = load_inline(
    name="perfsmith_gelu_cuda", cpp_sources=CPP, cuda_sources=CUDA, functions=["gelu"]
)


class ModelNew(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gelu_ext.gelu(x)
