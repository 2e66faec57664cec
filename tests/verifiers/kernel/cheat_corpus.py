"""Kernel candidates that try to pass without being a correct, fast kernel: each with the
words its rejection must contain. STATIC ones are caught before anything compiles;
DYNAMIC ones are written so that the static checks would not catch them all (they run
with the static checks off) and must be caught in the harness."""

from __future__ import annotations

HEAD = "import torch\nfrom torch.utils.cpp_extension import load_inline\n"
KERNEL = '''
SRC = r"""
#include <torch/extension.h>
torch::Tensor ident(torch::Tensor x) { return x; }
"""
ext = load_inline(name="ident_ext", cpp_sources=SRC, functions=["ident"])
'''


def model_new(forward: str, init: str = "", bases: str = "torch.nn.Module") -> str:
    return (
        f"class ModelNew({bases}):\n    def __init__(self, dim=1):\n        super().__init__()\n"
        f"{init}\n    def forward(self, x):\n{forward}\n"
    )


def _ind(code: str) -> str:
    return "\n".join("        " + line for line in code.strip().splitlines())


STATIC: list[tuple[str, str, str]] = [
    (
        "torch_function",
        HEAD + KERNEL + model_new(_ind("return torch.softmax(x, dim=1)")),
        "calls torch operator torch.softmax",
    ),
    (
        "functional",
        HEAD
        + "import torch.nn.functional as F\n"
        + KERNEL
        + model_new(_ind("return F.softmax(x, dim=1)")),
        "calls torch operator F.softmax",
    ),
    (
        "tensor_method",
        HEAD + KERNEL + model_new(_ind("return x.softmax(dim=1)")),
        "calls tensor method .softmax()",
    ),
    (
        "matmul_operator",
        HEAD + KERNEL + model_new(_ind("return ext.ident(x) @ x.t()")),
        "torch's @",
    ),
    (
        "inherits",
        HEAD
        + KERNEL
        + "from problem import Model\n"
        + model_new(_ind("return ext.ident(x)"), bases="Model"),
        "inherits the reference Model",
    ),
    (
        "imports_problem",
        HEAD + KERNEL + "import problem\n" + model_new(_ind("return ext.ident(x)")),
        "imports the reference problem",
    ),
    (
        "calls_reference",
        HEAD + KERNEL + model_new(_ind("return Model(1)(x)")),
        "calls the reference Model",
    ),
    (
        "try_fallback",
        HEAD
        + KERNEL
        + model_new(_ind("try:\n    return ext.ident(x)\nexcept RuntimeError:\n    return x")),
        "try/except in ModelNew",
    ),
    (
        "extra_stream",
        HEAD + KERNEL + model_new(_ind("s = torch.cuda.Stream()\nreturn ext.ident(x)")),
        "extra CUDA streams",
    ),
    (
        "threads",
        HEAD + "import threading\n" + KERNEL + model_new(_ind("return ext.ident(x)")),
        "starts threads",
    ),
    (
        "torch_in_cpp",
        HEAD + 'SRC = r"""\n#include <torch/extension.h>\n'
        'torch::Tensor f(torch::Tensor x) { return torch::softmax(x, 1); }\n"""\n'
        'ext = load_inline(name="f_ext", cpp_sources=SRC, functions=["f"])\n'
        + model_new(_ind("return ext.f(x)")),
        "kernel source calls torch operator torch::softmax",
    ),
    (
        "method_in_cpp",
        HEAD + 'SRC = r"""\n#include <torch/extension.h>\n'
        'torch::Tensor f(torch::Tensor x) { return x.matmul(x.t()); }\n"""\n'
        'ext = load_inline(name="f_ext", cpp_sources=SRC, functions=["f"])\n'
        + model_new(_ind("return ext.f(x)")),
        "kernel source calls tensor method .matmul()",
    ),
    (
        "thread_in_cpp",
        HEAD + 'SRC = r"""\n#include <torch/extension.h>\n#include <thread>\n'
        "torch::Tensor f(torch::Tensor x) { std::thread t([]{}); t.detach(); return x; }\n"
        '"""\next = load_inline(name="f_ext", cpp_sources=SRC, functions=["f"])\n'
        + model_new(_ind("return ext.f(x)")),
        "uses std::thread",
    ),
    (
        "stream_in_cuda",
        HEAD + 'SRC = r"""\n#include <torch/extension.h>\n'
        "torch::Tensor f(torch::Tensor x) { cudaStream_t s; cudaStreamCreate(&s); return x; }\n"
        '"""\next = load_inline(name="f_ext", cpp_sources=SRC, functions=["f"])\n'
        + model_new(_ind("return ext.f(x)")),
        "uses cudaStreamCreate",
    ),
    (
        "nn_layer",
        HEAD
        + KERNEL
        + model_new(
            _ind("return self.lin(ext.ident(x))"), init="        self.lin = torch.nn.Linear(4, 4)"
        ),
        "calls the torch module self.lin",
    ),
    (
        "no_kernel",
        "import torch\n"
        + model_new(
            _ind(
                "out = torch.empty_like(x)\nfor i in range(x.shape[0]):\n    out[i] = x[i]\nreturn out"
            )
        ),
        "no custom kernel",
    ),
    (
        "heap_search",
        HEAD + "import gc\n" + KERNEL + model_new(_ind("return ext.ident(x)")),
        "searches the heap",
    ),
    (
        "frames",
        HEAD
        + "import sys\n"
        + KERNEL
        + model_new(_ind("f = sys._getframe(1)\nreturn ext.ident(x)")),
        "walks the interpreter's frames",
    ),
    (
        "early_exit",
        HEAD + "import os\n" + KERNEL + model_new(_ind("os._exit(0)\nreturn ext.ident(x)")),
        "os._exit",
    ),
    (
        "global_cache",
        HEAD
        + KERNEL
        + "_last = None\n"
        + model_new(_ind("global _last\n_last = ext.ident(x)\nreturn _last")),
        "state across calls",
    ),
    (
        "linalg",
        HEAD + KERNEL + model_new(_ind("return torch.linalg.norm(ext.ident(x))")),
        "torch.linalg.norm",
    ),
    (
        "ctypes",
        HEAD + "import ctypes\n" + KERNEL + model_new(_ind("return ext.ident(x)")),
        "uses ctypes",
    ),
]

# Pure torch, run with static checks off: each must still be rejected by the harness.
SOFTMAX = "torch.softmax(x, dim=1)"
DYNAMIC: list[tuple[str, str, str]] = [
    (
        "stale_memory",
        "import torch\n" + model_new(_ind("return torch.empty_like(x)")),
        "elements differ",
    ),
    (
        "mutates_input",
        "import torch\n" + model_new(_ind(f"y = {SOFTMAX}\nx.zero_()\nreturn y")),
        "mutation",
    ),
    (
        "patches_torch",
        "import torch\n_real = torch.softmax\n"
        "torch.softmax = lambda x, dim=None, **k: _real(x, dim=dim)\n"
        + model_new(_ind(f"return {SOFTMAX}")),
        "replaced torch functions",
    ),
    (
        "patches_reference",
        "import sys, torch\n"
        "sys.modules['problem'].Model.forward = lambda self, x: torch.softmax(x, dim=1) * 1\n"
        + model_new(_ind(f"return {SOFTMAX}")),
        "replaced the reference Model's forward",
    ),
    (
        "caches_by_pointer",
        "import torch\n_seen = {}\n"
        + model_new(
            _ind(
                f"key = (x.data_ptr(), tuple(x.shape))\nif key not in _seen:\n    _seen[key] = {SOFTMAX}\n"
                "return _seen[key]"
            )
        ),
        "differ",
    ),
    (
        "wrong_dtype",
        "import torch\n" + model_new(_ind(f"return {SOFTMAX}.double()")),
        "dtype torch.float64",
    ),
    (
        "not_contiguous",
        "import torch\n" + model_new(_ind(f"return {SOFTMAX}.t().contiguous().t()")),
        "not contiguous",
    ),
    ("wrong_shape", "import torch\n" + model_new(_ind(f"return {SOFTMAX}[:-1]")), "shape"),
    (
        "leaves_thread",
        "import threading, time, torch\n"
        + model_new(
            _ind(
                "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
                f"return {SOFTMAX}"
            )
        ),
        "threads left running",
    ),
    (
        "dynamic_subclass",
        "import sys, torch\nModelNew = type('ModelNew', (sys.modules['problem'].Model,), {})\n",
        "inherits the reference Model",
    ),
    (
        "raises",
        "import torch\n" + model_new(_ind("raise MemoryError('out of registers')")),
        "candidate raised MemoryError",
    ),
    (
        "approximate",
        "import torch\n" + model_new(_ind(f"return ({SOFTMAX} * 1.01)")),
        "differ beyond atol",
    ),
]
