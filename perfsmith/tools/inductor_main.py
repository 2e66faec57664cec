"""Runs in the sandbox: what torch's compiler makes of a KernelBench problem.

Reads ``config.json`` (the problem file, the threads) and writes ``result.json``: the
operator graph of ``Model.forward`` (aten operators with shapes, from ``make_fx``), the
reference's profile (torch's profiler: the operators that take the time), and the code
Inductor generates for the forward (its Python wrapper with the C++ kernels), with the
compiler flags the kernels need and how long compiling took. The model's parameters and
buffers are the graph's first inputs, in ``named_parameters`` then ``named_buffers``
order, so the generated code can be called with them.

Imports nothing of perfsmith: the kernel harness is copied beside it as
``_perfsmith_kernel.py`` (it loads the problem and answers as the harness does).
"""

from __future__ import annotations

import json
import operator
import os
import sys
import time
from types import ModuleType
from typing import Any

import torch
from _perfsmith_kernel import answer, load_module  # type: ignore[import-not-found]

CONFIG: dict[str, Any] = {}


def load_problem(path: str) -> ModuleType:
    module: ModuleType = load_module("problem", path)
    return module


def describe_value(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"{str(value.dtype).removeprefix('torch.')}{list(value.shape)}"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(describe_value(v) for v in value) + ")"
    return type(value).__name__


def graph_text(gm: torch.fx.GraphModule, names: list[str]) -> list[str]:
    """One line per node: ``%relu = aten.relu(%addmm) -> float32[256, 512]``."""
    inputs = iter(names)
    lines = []
    for node in gm.graph.nodes:
        shape = describe_value(node.meta.get("val"))
        if node.op == "placeholder":
            lines.append(f"%{node.name}: {next(inputs, 'input')} {shape}")
        elif node.op == "call_function" and node.target is operator.getitem:
            lines.append(f"%{node.name} = %{node.args[0]}[{node.args[1]}] -> {shape}")
        elif node.op == "call_function":
            target = str(node.target).removeprefix("aten.").removesuffix(".default")
            args = ", ".join(str(a) if not hasattr(a, "name") else f"%{a.name}" for a in node.args)
            lines.append(f"%{node.name} = aten.{target}({args}) -> {shape}")
        elif node.op == "output":
            lines.append(f"return {node.args[0]}")
    return lines[:200]


def profile_of(model: torch.nn.Module, inputs: list[Any]) -> list[dict[str, Any]]:
    """The reference's operators by self CPU time over a few calls."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad():
        model(*inputs)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                model(*inputs)
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in rows) or 1.0
    return [
        {
            "op": e.key,
            "share": round(e.self_cpu_time_total / total, 3),
            "us_per_call": round(e.self_cpu_time_total / max(1, e.count), 1),
        }
        for e in rows[:8]
    ]


def capture(problem_file: str) -> dict[str, Any]:
    from torch._inductor import cpu_vec_isa
    from torch._inductor.utils import run_and_get_code
    from torch.fx.experimental.proxy_tensor import make_fx

    problem = load_problem(problem_file)
    torch.manual_seed(0)
    model = problem.Model(*problem.get_init_inputs()).eval()
    torch.manual_seed(1)
    inputs = list(problem.get_inputs())
    if not all(isinstance(x, torch.Tensor) for x in inputs):
        kinds = ", ".join(type(x).__name__ for x in inputs)
        return {"error": f"get_inputs() returns {kinds}: the compiler's kernels take tensors only"}
    params = [(n, "parameter", t.detach()) for n, t in model.named_parameters()]
    buffers = [(n, "buffer", t) for n, t in model.named_buffers()]
    state = params + buffers
    names = [n for n, _, _ in state]
    flat = [t for _, _, t in state] + inputs

    def functional(*args: torch.Tensor) -> Any:
        weights = dict(zip(names, args[: len(names)], strict=True))
        return torch.func.functional_call(model, weights, tuple(args[len(names) :]))

    from torch._inductor import async_compile

    # The code is what is kept: the kernels are built later, as a candidate, in
    # perfsmith's own build (its precompiled header). The CPU's features pick the vector
    # ISA, without a test build of each one (there is no Inductor cache to keep them in
    # the sandbox: about 9 s of builds every time).
    def unbuilt(self: Any, argtypes: list[str], source_code: str) -> Any:
        return lambda *args: None

    async_compile.AsyncCompile.cpp_pybinding = unbuilt  # type: ignore[method-assign]
    torch._inductor.config.cpp.vec_isa_ok = True
    with torch.no_grad():
        expected = model(*inputs)
        gm = make_fx(functional)(*flat)
        start = time.perf_counter()
        _compiled, codes = run_and_get_code(lambda: torch._inductor.compile(gm, flat))
        compile_s = time.perf_counter() - start
    if isinstance(expected, torch.Tensor):
        output = "tensor"
    elif isinstance(expected, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in expected):
        output = f"{type(expected).__name__}:{len(expected)}"
    else:
        return {"error": f"Model.forward returns {type(expected).__name__}: not a tensor or tuple"}
    isa = cpu_vec_isa.pick_vec_isa()
    macros = [f"-D{m}" for m in isa.build_macro()] if isa else []
    arch = str(isa.build_arch_flags()).split() if isa else []
    return {
        "code": codes[0] if codes else "",
        "state": [{"name": n, "kind": k} for n, k, _ in state],
        "inputs": len(inputs),
        "output": output,
        "graph": graph_text(gm, [*names, *(f"input {i}" for i in range(len(inputs)))]),
        "profile": profile_of(model, inputs),
        "compile_s": round(compile_s, 3),
        "cflags": macros + arch,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    with open("config.json") as f:
        CONFIG.update(json.load(f))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(os.getcwd(), "_inductor"))
    sys.path.insert(0, os.getcwd())
    torch.set_num_threads(int(CONFIG.get("threads") or torch.get_num_threads()))
    answer(lambda: capture(CONFIG["problem"]), cap=2000)


if __name__ == "__main__":
    main()
