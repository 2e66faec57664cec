"""layernorm.py: the kernels torch's compiler (Inductor) generated for
Model.forward, built with load_inline and called directly (perfsmith's compiler
candidate). The parameters are the reference's, drawn by its own __init__."""

import torch
from torch.utils.cpp_extension import load_inline

SOURCE = r"""
#define CPU_CAPABILITY_AVX2
#include <torch/csrc/inductor/cpp_prefix.h>

// perfsmith: tune PERFSMITH_THREADS=[1,2]
#define PERFSMITH_THREADS 2

// cpp_fused_native_layer_norm_0, as torch's compiler generated it
static void kernel_cpp_fused_native_layer_norm_0(const float* in_ptr0,
                       const float* in_ptr1,
                       const float* in_ptr2,
                       float* out_ptr0,
                       float* out_ptr1,
                       float* out_ptr2)
{
    std::atomic<int> inductor_cpu_integer_div_error{0};
    inductor_cpu_integer_div_error_flag = &inductor_cpu_integer_div_error;
    #pragma omp parallel num_threads(PERFSMITH_THREADS)
    {
        int tid = omp_get_thread_num();
        {
            #pragma omp for
            for(int64_t x0=static_cast<int64_t>(0L); x0<static_cast<int64_t>(512L); x0+=static_cast<int64_t>(1L))
            {
                {
                    Welford<float> tmp_acc0 = Welford<float>();
                    Welford<at::vec::Vectorized<float>> tmp_acc0_vec = Welford<at::vec::Vectorized<float>>();
                    Welford<at::vec::Vectorized<float>> masked_tmp_acc0_vec = Welford<at::vec::Vectorized<float>>();
                    static WelfordHelper<float, 4096> scalar_welford_helper0(static_cast<int64_t>(2048L));
                    static WelfordHelper<at::vec::Vectorized<float>, 4096> welford_helper0(static_cast<int64_t>(256L));
                    static WelfordHelper<at::vec::Vectorized<float>, 4096> masked_welford_helper0(static_cast<int64_t>(0L));
                    for(int64_t x1=static_cast<int64_t>(0L); x1<static_cast<int64_t>(2048L); x1+=static_cast<int64_t>(8L))
                    {
                        {
                            if(C10_LIKELY(x1 >= static_cast<int64_t>(0) && x1 < static_cast<int64_t>(2048L)))
                            {
                                auto tmp0 = at::vec::Vectorized<float>::loadu(in_ptr0 + static_cast<int64_t>(x1 + 2048L*x0), static_cast<int64_t>(8));
                                tmp_acc0_vec = welford_combine(tmp_acc0_vec, tmp0, &welford_helper0);
                            }
                        }
                    }
                    tmp_acc0 = welford_combine(tmp_acc0, &scalar_welford_helper0);
                    tmp_acc0_vec = welford_combine(tmp_acc0_vec, &welford_helper0);
                    masked_tmp_acc0_vec = welford_combine(masked_tmp_acc0_vec, &masked_welford_helper0);
                    tmp_acc0 = welford_combine(tmp_acc0, welford_vec_reduce_all(masked_tmp_acc0_vec));
                    tmp_acc0 = welford_combine(tmp_acc0, welford_vec_reduce_all(tmp_acc0_vec));
                    out_ptr0[static_cast<int64_t>(x0)] = static_cast<float>(tmp_acc0.mean);
                    out_ptr1[static_cast<int64_t>(x0)] = static_cast<float>(tmp_acc0.m2);
                }
                for(int64_t x1=static_cast<int64_t>(0L); x1<static_cast<int64_t>(2048L); x1+=static_cast<int64_t>(8L))
                {
                    {
                        if(C10_LIKELY(x1 >= static_cast<int64_t>(0) && x1 < static_cast<int64_t>(2048L)))
                        {
                            auto tmp0 = at::vec::Vectorized<float>::loadu(in_ptr0 + static_cast<int64_t>(x1 + 2048L*x0), static_cast<int64_t>(8));
                            auto tmp1 = out_ptr0[static_cast<int64_t>(x0)];
                            auto tmp4 = out_ptr1[static_cast<int64_t>(x0)];
                            auto tmp12 = at::vec::Vectorized<float>::loadu(in_ptr1 + static_cast<int64_t>(x1), static_cast<int64_t>(8));
                            auto tmp14 = at::vec::Vectorized<float>::loadu(in_ptr2 + static_cast<int64_t>(x1), static_cast<int64_t>(8));
                            auto tmp2 = at::vec::Vectorized<float>(tmp1);
                            auto tmp3 = tmp0 - tmp2;
                            auto tmp5 = static_cast<float>(2048.0);
                            auto tmp6 = tmp4 / tmp5;
                            auto tmp7 = static_cast<float>(1e-05);
                            auto tmp8 = float(tmp6 + tmp7);
                            auto tmp9 = 1 / std::sqrt(tmp8);
                            auto tmp10 = at::vec::Vectorized<float>(tmp9);
                            auto tmp11 = tmp3 * tmp10;
                            auto tmp13 = tmp11 * tmp12;
                            auto tmp15 = tmp13 + tmp14;
                            tmp15.store(out_ptr2 + static_cast<int64_t>(x1 + 2048L*x0));
                        }
                    }
                }
            }
        }
    }
    inductor_cpu_integer_div_error_flag = nullptr;
    inductor_cpu_throw_if_integer_div_error(inductor_cpu_integer_div_error);
}

void cpp_fused_native_layer_norm_0(const at::Tensor& a0, const at::Tensor& a1, const at::Tensor& a2, const at::Tensor& a3, const at::Tensor& a4, const at::Tensor& a5) {
  kernel_cpp_fused_native_layer_norm_0(reinterpret_cast<const float*>(a0.data_ptr()), reinterpret_cast<const float*>(a1.data_ptr()), reinterpret_cast<const float*>(a2.data_ptr()), reinterpret_cast<float*>(a3.data_ptr()), reinterpret_cast<float*>(a4.data_ptr()), reinterpret_cast<float*>(a5.data_ptr()));
}
"""

_ext = load_inline(
    name="perfsmith_inductor_7891a02e219b",
    cpp_sources=SOURCE,
    functions=['cpp_fused_native_layer_norm_0'],
    extra_cflags=["-mavx2", "-mfma", "-mf16c"],
)

import torch

class _Weights(torch.nn.Module):

    def __init__(self, features: int) -> None:
        super().__init__()
        self.norm = torch.nn.LayerNorm(features)
        with torch.no_grad():
            self.norm.weight.uniform_(0.5, 1.5)
            self.norm.bias.uniform_(-0.5, 0.5)
ROWS, FEATURES = (512, 2048)


class ModelNew(torch.nn.Module):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        ref = _Weights(*args, **kwargs)
        self.s0 = torch.nn.Parameter(ref.get_parameter('norm.weight').detach().clone())
        self.s1 = torch.nn.Parameter(ref.get_parameter('norm.bias').detach().clone())

    def forward(self, *inputs):
        arg0_1, arg1_1, arg2_1 = (self.s0, self.s1, *inputs,)
        buf0 = torch.empty_strided((512, 1), (1, 512), dtype=torch.float32)
        buf1 = torch.empty_strided((512, 1), (1, 512), dtype=torch.float32)
        buf3 = torch.empty_strided((512, 2048), (2048, 1), dtype=torch.float32)
        _ext.cpp_fused_native_layer_norm_0(arg2_1, arg0_1, arg1_1, buf0, buf1, buf3)
        return buf3
