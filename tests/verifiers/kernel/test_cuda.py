"""The CUDA path. Compiling needs only nvcc (checked everywhere nvcc is installed);
running needs a GPU (skipped, with the reason printed, where torch sees none)."""

from __future__ import annotations

import shutil

import pytest
import torch

from perfsmith.sandbox.base import Sandbox
from perfsmith.verifiers.kernel.verify import (
    KernelSettings,
    read_candidate,
    read_problem,
    verify_kernel,
)
from tests.verifiers.kernel.cheat_corpus import SOFTMAX, model_new
from tests.verifiers.kernel.conftest import EXAMPLES

GPU = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not GPU, reason="no CUDA device visible to torch here")
GPU_KERNELS = sorted(
    f"{p.parent.name}/{p.stem}" for d in ("cuda", "triton") for p in (EXAMPLES / d).glob("*.py")
)


@pytest.mark.slow(seconds=35)
@pytest.mark.skipif(GPU, reason="a GPU is here: the full CUDA path runs instead")
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
async def test_cuda_kernels_compile_without_a_gpu(sandbox: Sandbox) -> None:
    problem = read_problem(EXAMPLES / "softmax.py")
    settings = KernelSettings(device="cuda", compile_only=True)
    good = await verify_kernel(
        sandbox, problem, read_candidate(EXAMPLES / "cuda" / "softmax.py"), settings
    )
    assert good.compiled and good.verdict == "unmeasured", good.failure
    assert "compiled only" in (good.failure or "")


@needs_gpu
@pytest.mark.parametrize("name", GPU_KERNELS)
async def test_gpu_kernels_are_correct_and_timed_on_the_gpu(sandbox: Sandbox, name: str) -> None:
    problem = read_problem(EXAMPLES / f"{name.split('/')[1]}.py")
    result = await verify_kernel(
        sandbox,
        problem,
        read_candidate(EXAMPLES / f"{name}.py"),
        KernelSettings(device="cuda", rounds=8),
    )
    assert result.compiled and result.correct, result.failure
    assert result.speedup is not None and result.ci is not None
    assert result.ci[0] <= result.speedup <= result.ci[1]
    assert "device_name" in result.details and result.details["reference_call_s"] > 0
    print(name, result.verdict, result.speedup, result.ci, result.details["device_name"])


@needs_gpu
async def test_gpu_stale_memory_and_compile_errors(sandbox: Sandbox) -> None:
    problem = read_problem(EXAMPLES / "softmax.py")
    # torch's caching allocator hands freed blocks back: an output never written can
    # hold an earlier result; the reference's outputs are kept alive, so it does not
    stale = "import torch\n" + model_new("        return torch.empty_like(x)")
    result = await verify_kernel(
        sandbox, problem, stale, KernelSettings(device="cuda", static_checks=False, time=False)
    )
    assert not result.correct and "differ" in (result.failure or ""), result
    fine = "import torch\n" + model_new(f"        return {SOFTMAX}")
    result = await verify_kernel(
        sandbox, problem, fine, KernelSettings(device="cuda", static_checks=False, time=False)
    )
    assert result.correct, result.failure
    broken = read_candidate(EXAMPLES / "cuda" / "softmax.py").replace(
        "const float inv = 1.f / s;", "const float inv = 1.f / missing_sum;"
    )
    result = await verify_kernel(sandbox, problem, broken, KernelSettings(device="cuda"))
    assert not result.compiled and "missing_sum" in (result.failure or "")


@needs_gpu
async def test_gpu_roofline_is_measured(sandbox: Sandbox) -> None:
    # torch's own matmul as the "candidate" (static checks off): same speed, no flag,
    # and the roofline's inputs measured on this GPU
    problem = read_problem(EXAMPLES / "matmul.py")
    same = (
        "import torch\nclass ModelNew(torch.nn.Module):\n"
        "    def forward(self, a, b):\n        return torch.matmul(a, b)\n"
    )
    result = await verify_kernel(
        sandbox, problem, same, KernelSettings(device="cuda", static_checks=False, rounds=5)
    )
    assert result.correct and result.flags == [], result
    assert result.details["flops"] == 2 * 384**3
    assert result.details["peak_flops"] > 1e12 and result.details["peak_bandwidth"] > 1e11
    assert result.details["roofline_s"] < result.details["candidate_call_s"]
    print(
        "roofline",
        result.details["roofline_s"],
        result.details["peak_flops"],
        result.details["peak_bandwidth"],
        result.details["device_name"],
    )
