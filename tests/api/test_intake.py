"""Chat messages read as typed requests; paths held inside the workspace."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfsmith.api.intake import RequestError, Workspace, interpret
from perfsmith.api.schemas import KernelRunCreate, OptimizeRunCreate, PlanRunCreate


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "slow.py").write_text("def f(x):\n    return x\n")
    suite = tmp_path / "kernels"
    suite.mkdir()
    for name in ("softmax", "layernorm"):
        (suite / f"{name}.py").write_text("# problem\n")
    (tmp_path / "outside.py").write_text("")
    return Workspace(root=tmp_path / "lib", kernel_suite=suite)


def test_a_named_function_with_inputs_and_workload(ws: Workspace) -> None:
    req = interpret(
        "please make lib/slow.py::f faster; inputs: gen.py::generate, workload run.py::main",
        ws,
        has_tools=False,
    )
    assert isinstance(req, OptimizeRunCreate)
    assert (req.target, req.inputs, req.workload) == (
        "lib/slow.py::f",
        "gen.py::generate",
        "run.py::main",
    )


def test_pasted_code_fenced_or_bare(ws: Workspace) -> None:
    fenced = interpret(
        "speed this up:\n```python\ndef g(a, b):\n    return a\n```", ws, has_tools=False
    )
    assert isinstance(fenced, OptimizeRunCreate) and fenced.function == "g"
    assert fenced.source is not None and fenced.source.startswith("def g(a, b):")
    bare = interpret("def h(n):\n    return sum(range(n))\n", ws, has_tools=False)
    assert isinstance(bare, OptimizeRunCreate) and bare.function == "h"


def test_kernel_requests_pick_the_problem_and_backend(ws: Workspace) -> None:
    cuda = interpret("write a faster softmax kernel in CUDA", ws, has_tools=False)
    assert cuda == KernelRunCreate(problem="softmax", backend="cuda")
    cpu = interpret("a LayerNorm kernel please", ws, has_tools=False)
    assert cpu == KernelRunCreate(problem="layernorm", backend="cpp")


def test_anything_else_is_a_plan_or_a_clear_error(ws: Workspace) -> None:
    assert interpret("rank these snippets", ws, has_tools=True) == PlanRunCreate(
        request="rank these snippets"
    )
    with pytest.raises(RequestError) as info:
        interpret("hello there", ws, has_tools=False)
    assert info.value.field == "message" and "softmax" in str(info.value)
    with pytest.raises(RequestError, match="no FILE::FUNCTION"):
        interpret("use inputs gen.py::g", ws, has_tools=False)
    with pytest.raises(RequestError, match="defines no function"):
        interpret("```python\nx = 1\n```", ws, has_tools=False)


def test_paths_stay_inside_the_workspace(ws: Workspace) -> None:
    assert ws.file("slow.py", field="target").name == "slow.py"
    for bad in ("../outside.py", "/etc/hostname", "slow.py/../../outside.py"):
        with pytest.raises(RequestError) as info:
            ws.file(bad, field="target")
        assert info.value.field == "target"
    link = ws.root / "escape.py"
    link.symlink_to(ws.root.parent / "outside.py")
    with pytest.raises(RequestError, match="outside"):
        ws.file("escape.py", field="target")
    with pytest.raises(RequestError, match="known problems: layernorm, softmax"):
        ws.problem("matmul", field="problem")
