"""row_sumsq.py: the kernels torch's compiler (Inductor) generated for
Model.forward, built with load_inline and called directly (perfsmith's compiler
candidate). The parameters are the reference's, drawn by its own __init__."""

import torch
from torch.utils.cpp_extension import load_inline

SOURCE = r"""
#define CPU_CAPABILITY_AVX2
#include <torch/csrc/inductor/cpp_prefix.h>

// perfsmith: tune PERFSMITH_THREADS=[1,2]
#define PERFSMITH_THREADS 2

// cpp_fused_mul_sum_0, as torch's compiler generated it
static void kernel_cpp_fused_mul_sum_0(const float* in_ptr0,
                       float* out_ptr0)
{
    std::atomic<int> inductor_cpu_integer_div_error{0};
    inductor_cpu_integer_div_error_flag = &inductor_cpu_integer_div_error;
    #pragma omp parallel num_threads(PERFSMITH_THREADS)
    {
        int tid = omp_get_thread_num();
        {
            #pragma omp for
            for(int64_t x0=static_cast<int64_t>(0L); x0<static_cast<int64_t>(1024L); x0+=static_cast<int64_t>(1L))
            {
                {
                    float tmp_acc0 = 0;
                    at::vec::Vectorized<float> tmp_acc0_vec = at::vec::Vectorized<float>(0);
                    for(int64_t x1=static_cast<int64_t>(0L); x1<static_cast<int64_t>(4096L); x1+=static_cast<int64_t>(8L))
                    {
                        {
                            if(C10_LIKELY(x1 >= static_cast<int64_t>(0) && x1 < static_cast<int64_t>(4096L)))
                            {
                                auto tmp0 = at::vec::Vectorized<float>::loadu(in_ptr0 + static_cast<int64_t>(x1 + 4096L*x0), static_cast<int64_t>(8));
                                auto tmp1 = tmp0 * tmp0;
                                tmp_acc0_vec = tmp_acc0_vec + tmp1;
                            }
                        }
                    }
                    tmp_acc0 = tmp_acc0 + at::vec::vec_reduce_all<float, 1>([](at::vec::Vectorized<float>& x, at::vec::Vectorized<float>& y) { return x + y; }, tmp_acc0_vec);
                    out_ptr0[static_cast<int64_t>(x0)] = static_cast<float>(tmp_acc0);
                }
            }
        }
    }
    inductor_cpu_integer_div_error_flag = nullptr;
    inductor_cpu_throw_if_integer_div_error(inductor_cpu_integer_div_error);
}

void cpp_fused_mul_sum_0(const at::Tensor& a0, const at::Tensor& a1) {
  kernel_cpp_fused_mul_sum_0(reinterpret_cast<const float*>(a0.data_ptr()), reinterpret_cast<float*>(a1.data_ptr()));
}
"""

_ext = load_inline(
    name="perfsmith_inductor_9d6b46efcee6",
    cpp_sources=SOURCE,
    functions=['cpp_fused_mul_sum_0'],
    extra_cflags=["-mavx2", "-mfma", "-mf16c"],
)

import torch

class _Weights(torch.nn.Module):

    def __init__(self) -> None:
        super().__init__()
ROWS, COLS = (1024, 4096)


class ModelNew(torch.nn.Module):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        ref = _Weights(*args, **kwargs)

    def forward(self, *inputs):
        arg0_1, = (*inputs,)
        buf0 = torch.empty_strided((1024,), (1,), dtype=torch.float32)
        _ext.cpp_fused_mul_sum_0(arg0_1, buf0)
        return buf0
