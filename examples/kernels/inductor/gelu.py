"""gelu.py: the kernels torch's compiler (Inductor) generated for
Model.forward, built with load_inline and called directly (perfsmith's compiler
candidate). The parameters are the reference's, drawn by its own __init__."""

import torch
from torch.utils.cpp_extension import load_inline

SOURCE = r"""
#define CPU_CAPABILITY_AVX2
#include <torch/csrc/inductor/cpp_prefix.h>

// perfsmith: tune PERFSMITH_THREADS=[1,2]
#define PERFSMITH_THREADS 2

// cpp_fused_gelu_0, as torch's compiler generated it
static void kernel_cpp_fused_gelu_0(const float* in_ptr0,
                       float* out_ptr0)
{
    std::atomic<int> inductor_cpu_integer_div_error{0};
    inductor_cpu_integer_div_error_flag = &inductor_cpu_integer_div_error;
    #pragma omp parallel num_threads(PERFSMITH_THREADS)
    {
        int tid = omp_get_thread_num();
        {
            #pragma omp for
            for(int64_t x0=static_cast<int64_t>(0L); x0<static_cast<int64_t>(1048576L); x0+=static_cast<int64_t>(8L))
            {
                {
                    if(C10_LIKELY(x0 >= static_cast<int64_t>(0) && x0 < static_cast<int64_t>(1048576L)))
                    {
                        auto tmp0 = at::vec::Vectorized<float>::loadu(in_ptr0 + static_cast<int64_t>(x0), static_cast<int64_t>(8));
                        auto tmp1 = static_cast<float>(0.5);
                        auto tmp2 = at::vec::Vectorized<float>(tmp1);
                        auto tmp3 = tmp0 * tmp2;
                        auto tmp4 = static_cast<float>(0.7071067811865476);
                        auto tmp5 = at::vec::Vectorized<float>(tmp4);
                        auto tmp6 = tmp0 * tmp5;
                        auto tmp7 = tmp6.erf();
                        auto tmp8 = static_cast<float>(1.0);
                        auto tmp9 = at::vec::Vectorized<float>(tmp8);
                        auto tmp10 = tmp7 + tmp9;
                        auto tmp11 = tmp3 * tmp10;
                        tmp11.store(out_ptr0 + static_cast<int64_t>(x0));
                    }
                }
            }
        }
    }
    inductor_cpu_integer_div_error_flag = nullptr;
    inductor_cpu_throw_if_integer_div_error(inductor_cpu_integer_div_error);
}

void cpp_fused_gelu_0(const at::Tensor& a0, const at::Tensor& a1) {
  kernel_cpp_fused_gelu_0(reinterpret_cast<const float*>(a0.data_ptr()), reinterpret_cast<float*>(a1.data_ptr()));
}
"""

_ext = load_inline(
    name="perfsmith_inductor_6eab73a37dea",
    cpp_sources=SOURCE,
    functions=['cpp_fused_gelu_0'],
    extra_cflags=["-mavx2", "-mfma", "-mf16c"],
)

import torch

class _Weights(torch.nn.Module):

    def __init__(self) -> None:
        super().__init__()
SHAPE = (1024, 1024)


class ModelNew(torch.nn.Module):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        ref = _Weights(*args, **kwargs)

    def forward(self, *inputs):
        arg0_1, = (*inputs,)
        buf0 = torch.empty_strided((1024, 1024), (1024, 1), dtype=torch.float32)
        _ext.cpp_fused_gelu_0(arg0_1, buf0)
        return buf0
