"""torch's compiler's kernels as candidates: captured in the sandbox, turned into a
ModelNew that builds and calls them, verified against eager PyTorch and torch.compile;
the kernel workflow takes them without a model and falls back to them when the planner's
plans fall short."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from perfsmith.sandbox.base import Sandbox, SandboxResult
from perfsmith.sandbox.process import ProcessSandbox
from perfsmith.tools.inductor import CompilerCandidateError, capture, compiler_candidate
from perfsmith.verifiers.kernel.cheats import check_kernel_source
from perfsmith.verifiers.kernel.verify import KernelSettings, verify_kernel
from tests.cli_runner import cli

KERNELS = Path(__file__).resolve().parents[2] / "examples" / "kernels"
ROW_SUMSQ = (KERNELS / "row_sumsq.py").read_text()


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    box = ProcessSandbox()
    yield box
    await box.close()


@pytest.mark.slow(seconds=95)
async def test_the_compilers_kernels_verify_against_eager_and_torch_compile(
    sandbox: Sandbox,
) -> None:
    captured = await capture(sandbox, ROW_SUMSQ, threads=2)
    # what guides the model's proposals: the operator graph and the reference's profile
    assert any("aten.mul" in line for line in captured.graph)
    assert any("aten.sum" in line for line in captured.graph)
    assert captured.profile and captured.profile[0]["op"].startswith("aten::")
    assert captured.kernels and "#pragma omp" in captured.kernels[0]
    candidate = compiler_candidate(ROW_SUMSQ, captured, problem_name="row_sumsq.py")
    # its forward allocates and calls the kernels: the anti-cheat rules see nothing
    assert check_kernel_source(candidate) == []
    assert "// perfsmith: tune PERFSMITH_THREADS=[1,2]" in candidate
    # the compiler's macros are in the source, its build flags only name vector features
    assert "#define CPU_CAPABILITY_" in candidate and '"-DCPU_CAPABILITY' not in candidate
    settings = KernelSettings(device="cpu", rounds=5, threads=2, versus_compile=True)
    result = await verify_kernel(sandbox, ROW_SUMSQ, candidate, settings)
    assert result.correct, result.failure
    assert result.speedup is not None and result.ci is not None
    baseline = result.versus_compile
    assert baseline is not None and baseline.compile_s > 0
    assert baseline.ci[0] <= baseline.speedup <= baseline.ci[1]
    assert len(result.details["reference_s"]) == result.details["rounds"]
    # a second capture of the same problem comes from the cache, the same code
    again = await capture(sandbox, ROW_SUMSQ, threads=2)
    assert again.code == captured.code


@pytest.mark.slow(seconds=30)
async def test_parameters_are_drawn_as_the_reference_draws_them(sandbox: Sandbox) -> None:
    problem = (KERNELS / "layernorm.py").read_text()
    captured = await capture(sandbox, problem, threads=2)
    assert [s["name"] for s in captured.state] == ["norm.weight", "norm.bias"]
    candidate = compiler_candidate(problem, captured)
    assert (
        "class _Weights(torch.nn.Module)" in candidate
        and "def forward" not in (candidate.split("class _Weights")[1].split("class ModelNew")[0])
    )
    settings = KernelSettings(device="cpu", threads=2, time=False)
    result = await verify_kernel(sandbox, problem, candidate, settings)
    assert result.correct, result.failure


@pytest.mark.slow(seconds=10)
async def test_work_the_compiler_hands_to_aten_is_no_candidate(sandbox: Sandbox) -> None:
    problem = (KERNELS / "linear_relu.py").read_text()
    captured = await capture(sandbox, problem, threads=2)
    with pytest.raises(CompilerCandidateError, match=r"extern_kernels\.addmm"):
        compiler_candidate(problem, captured)


class _SlowCompiler:
    """A sandbox whose one job is a compiler run taking a while: how many it was given."""

    name = "counting"

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, cmd: list[str], **kwargs: object) -> SandboxResult:
        import asyncio

        self.runs += 1
        await asyncio.sleep(0.5)
        out = {"code": "", "state": [], "inputs": 1, "output": "tensor", "graph": ["aten.mul"]}
        out |= {"profile": [], "compile_s": 1.0, "cflags": ["-O3"], "threads": 2}
        result = {"status": "ok", "exit_code": 0, "stdout": "", "stderr": "", "wall_s": 0.5}
        result |= {"cpu_s": 0.5, "max_rss_mb": 1.0, "backend": self.name}
        return SandboxResult(**result, files={"result.json": json.dumps(out).encode()})

    async def close(self) -> None:
        pass


async def test_processes_sharing_the_cache_capture_a_problem_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kernel jobs of a night on the same problem, at once: one runs the compiler, the
    others wait for its result (each capture costs tens of seconds of CPU)."""
    import asyncio

    monkeypatch.setenv("PERFSMITH_KERNEL_CACHE_DIR", str(tmp_path))
    box = _SlowCompiler()
    got = await asyncio.gather(*(capture(box, ROW_SUMSQ, threads=2) for _ in range(3)))  # type: ignore[arg-type]
    assert box.runs == 1
    assert got[0] == got[1] == got[2] and got[0].graph == ["aten.mul"]


def test_simd_vector_methods_pass_and_tensor_methods_are_still_caught() -> None:
    def kernel(body: str) -> str:
        return (
            "import torch\nfrom torch.utils.cpp_extension import load_inline\n"
            f'SRC = r"""\n#include <torch/extension.h>\n{body}\n"""\n'
            'ext = load_inline(name="k", cpp_sources=SRC, functions=["f"])\n'
            "class ModelNew(torch.nn.Module):\n"
            "    def forward(self, x):\n        return ext.f(x)\n"
        )

    vector = """void f(const float* in, float* out) {
  auto tmp0 = at::vec::Vectorized<float>::loadu(in);
  auto tmp1 = tmp0.exp();
  auto tmp2 = tmp1.sqrt();
  tmp2.store(out);
}"""
    assert check_kernel_source(kernel(vector)) == []
    tensor = "torch::Tensor f(torch::Tensor x) {\n  auto y = x.exp();\n  return y;\n}"
    assert any(".exp()" in f.trick for f in check_kernel_source(kernel(tensor)))
    # a tensor given a vector's name is still a tensor
    shadowed = (
        "torch::Tensor f(torch::Tensor tmp0) {\n"
        "  { auto tmp0 = at::vec::Vectorized<float>(0.f); }\n"
        "  return tmp0.exp();\n}"
    )
    assert any(".exp()" in f.trick for f in check_kernel_source(kernel(shadowed)))


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PERFSMITH_HOME": str(tmp_path / "home")}


@pytest.mark.slow(seconds=35)
def test_kernel_optimize_without_a_model_takes_and_tunes_the_compilers_kernel(
    tmp_path: Path,
) -> None:
    done = cli(
        _env(tmp_path),
        "kernel",
        "optimize",
        str(KERNELS / "row_sumsq.py"),
        "--llm",
        "none",
        "--sandbox",
        "process",
        "--verify-rounds",
        "5",
        "--eager-only",
        "--report-dir",
        str(tmp_path / "report"),
        "--json",
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    origins = [c["origin"] for c in result["candidates"]]
    assert origins[0] == "compiler:inductor"
    # a variant with other threads is a new candidate unless the default threads won
    assert all(o.startswith("tune:1 PERFSMITH_THREADS=") for o in origins[1:])
    compiled = result["candidates"][0]
    assert compiled["compiled"] and compiled["correct"], compiled
    # the compiler's vector flags are ones -march=native turns on here: its build took
    # perfsmith's own precompiled header (unless an earlier test built this candidate
    # already), and no header was built for them
    from perfsmith.verifiers.kernel.verify import CPU_FLAGS, pch_root

    headers = [json.loads(p.read_text()) for p in pch_root().glob("*/meta.json")]
    assert headers and all(h["cflags"] == CPU_FLAGS for h in headers), headers
    assert compiled["build"]["build_cached"] or compiled["build"]["pch"], compiled["build"]
    from perfsmith.storage.db import Database
    from perfsmith.storage.runs import RunStore

    db = Database(f"sqlite:///{tmp_path / 'home' / 'perfsmith.db'}")
    try:
        tasks = {t.tool: t for t in RunStore(db).tasks(result["run_id"])}
    finally:
        db.close()
    assert set(tasks) == {"read_problem", "compile", "verify", "tune"}
    tuned = json.loads(tasks["tune"].result_json or "{}")
    assert len(tuned["variants"]) == 2  # PERFSMITH_THREADS=1 and 2
    assert compiled["versus_compile"] is None  # --eager-only
    report = Path(result["report"]).read_text()
    assert "compiler:inductor" in report


DEGENERATE_PLANS = [
    "".join(f"{i}. read_problem()\n" for i in range(1, 5)) + "join()\n",
    '1. read_problem()\n2. propose(strategy="")\n3. verify(candidate=4)\njoin()\n',
]


@pytest.mark.slow(seconds=25)
async def test_kernel_plans_that_fall_short_are_replaced_by_the_default_plan(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    """What a small model writes for kernels (only reads; a proposal without a strategy
    and a verify of a candidate that never existed): the guard replans twice, then the
    default plan takes the compiler's kernel and a proposal guided by the graph, the
    profile and the compiler's code, verifies both and tunes the compiler's."""
    import perfsmith
    from perfsmith.llm.scripted import ScriptedChatModel
    from perfsmith.storage.db import Database
    from perfsmith.storage.runs import RunStore

    good = (KERNELS / "cpp" / "row_sumsq.py").read_text()
    model = ScriptedChatModel(
        {
            "planner": DEGENERATE_PLANS,
            "propose": [f"```python\n{good}```"] * 3,
            "joiner": ["Thought: done.\nAction: Finish(done)"] * 3,
        }
    )
    db = Database(f"sqlite:///{tmp_path / 'guard.db'}")
    try:
        result = await perfsmith.kernel_optimize(
            KERNELS / "row_sumsq.py",
            llm=model,
            sandbox=sandbox,
            settings=KernelSettings(device="cpu", rounds=5, threads=2),
            k=1,
            rounds=1,
            database=db,
            report_dir=tmp_path / "report",
        )
        events = RunStore(db).events(result.run_id)
    finally:
        db.close()
    shorts = [e.payload["reason"] for e in events if e.type == "plan_short"]
    assert len(shorts) == 2 and all("produced no candidate" in r for r in shorts)
    # the second plan's strategy was refused at parse time; the reason names the values
    assert "strategy" in shorts[1] and "fuse" in shorts[1]
    assert [e.type for e in events].count("plan_default") == 1
    origins = [c.origin for c in result.candidates]
    assert set(origins[:2]) == {"compiler:inductor", "llm:fuse"}
    assert all(c.result.correct for c in result.candidates), [
        c.as_dict() for c in result.candidates
    ]
    # the report compares every kernel with the compiler's (a ratio of their speedups)
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| vs the compiler's kernel |" in report
    fuse = next(line for line in report.splitlines() if "| llm:fuse |" in line)
    compiled = next(c for c in result.candidates if c.origin == "compiler:inductor")
    proposed = next(c for c in result.candidates if c.origin == "llm:fuse")
    assert compiled.result.speedup is not None and proposed.result.speedup is not None
    ratio = proposed.result.speedup / compiled.result.speedup
    assert f"| {ratio:.2f}x |" in fuse
    # the proposal was guided: the operator graph, the profile and the code to beat
    prompts = [m[-1].content for m, o in model.calls if o.purpose == "propose"]
    assert len(prompts) == 1
    assert "aten.mul" in prompts[0] and "Where the reference spends its time: aten::" in prompts[0]
    assert "torch's compiler generated this kernel" in prompts[0] and "#pragma omp" in prompts[0]


def test_the_compilers_candidates_for_the_examples_are_clean_modelnew_files() -> None:
    """examples/kernels/inductor: what `compile()` writes for the examples, beside the
    hand-written kernels; each passes the static checks a candidate meets first."""
    from perfsmith.verifiers.kernel.verify import read_candidate

    generated = sorted((KERNELS / "inductor").glob("*.py"))
    assert {p.stem for p in generated} == {"gelu", "layernorm", "row_sumsq", "softmax"}
    for path in generated:
        source = read_candidate(path)
        assert check_kernel_source(source) == [], path.name
        assert "// perfsmith: tune PERFSMITH_THREADS=" in source
