"""The optimize and kernel tools over their bench protocols: what each tool hands the
planner, what it asks of the model, and its clear errors. The benches here are plain
in-memory ones; the workflows' sessions are exercised end to end in tests/workflows."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from perfsmith.errors import PerfsmithError
from perfsmith.sandbox.base import Sandbox
from perfsmith.sandbox.process import ProcessSandbox
from perfsmith.tools.inductor import Capture
from perfsmith.tools.kernel import KernelTools
from perfsmith.tools.python import PROPOSE_SYSTEM, PythonTools
from perfsmith.verifiers.kernel.verify import KernelResult, KernelSettings
from perfsmith.verifiers.python.target import Target, parse_target

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@dataclass
class Stored:
    id: int
    origin: str

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "origin": self.origin, "verdict": "faster"}


@dataclass
class Bench:
    """Candidates kept in a list; the model's prompts recorded."""

    target: Target
    workload: Target | None = None
    profile_report: dict[str, Any] | None = None
    profile_note: str | None = None
    added: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)
    prompts: list[tuple[str, str, str]] = field(default_factory=list)

    async def check_workload(self) -> dict[str, Any]:
        raise AssertionError("no workload in these tests")

    async def add_candidate(self, code: str, origin: str, rules: Sequence[str] = ()) -> Stored:
        self.added.append((code, origin, tuple(rules)))
        return Stored(len(self.added), origin)

    async def ask_model(self, strategy: str, system: str, prompt: str, max_tokens: int) -> int:
        self.prompts.append((strategy, system, prompt))
        return 99

    async def verify_named(self, cid: int) -> Stored:
        return Stored(cid, "verified")


def dupes_bench() -> Bench:
    return Bench(target=parse_target(f"{EXAMPLES / 'dupes' / 'dupes.py'}::find_duplicates"))


async def test_the_python_tools_turn_the_catalogue_and_feedback_into_candidates() -> None:
    bench = dupes_bench()
    tools = PythonTools(bench)
    assert [t.name for t in tools.tools()] == [
        "profile",
        "read_source",
        "rewrite",
        "ruff_fix",
        "propose",
        "verify",
    ]
    source = tools.read_source()
    assert "def find_duplicates" in source["function"] and source["findings"]
    ids = await tools.rewrite()
    assert ids == list(range(1, len(bench.added) + 1)) and ids
    assert all(origin.startswith("catalogue:") for _, origin, _ in bench.added)
    # the proposal names the catalogue's slow lines and the earlier verdicts
    assert await tools.propose("algorithm", feedback=[{"verdict": "slower"}]) == 99
    [(strategy, system, prompt)] = bench.prompts
    line = source["findings"][0]["line"]
    assert strategy == "algorithm" and system == PROPOSE_SYSTEM
    assert f"- line {line}:" in prompt and '"verdict": "slower"' in prompt
    # verify takes an id or rewrite's list of ids
    assert await tools.verify([1, 2]) == [
        Stored(1, "verified").as_dict(),
        Stored(2, "verified").as_dict(),
    ]
    # without a workload, profile says so plainly instead of failing
    assert (await tools.profile())["note"] == "no workload given: nothing to profile"


async def test_a_function_without_patterns_is_a_clear_error_for_the_catalogue(
    tmp_path: Path,
) -> None:
    module = tmp_path / "plain.py"
    module.write_text("def add(a, b):\n    return a + b\n")
    tools = PythonTools(Bench(target=parse_target(f"{module}::add")))
    with pytest.raises(PerfsmithError, match="none of its patterns"):
        await tools.rewrite()
    with pytest.raises(PerfsmithError, match="ruff has no fix"):
        await tools.ruff_fix()


@dataclass
class KBench:
    problem: str
    sandbox: Sandbox
    settings: KernelSettings = field(default_factory=KernelSettings)
    backend: str = "cpp"
    timing: asyncio.Lock = field(default_factory=asyncio.Lock)
    sources: dict[int, str] = field(default_factory=dict)
    prompts: list[str] = field(default_factory=list)
    captured: Capture | None = None

    async def ask_model(self, strategy: str, system: str, prompt: str, max_tokens: int) -> int:
        self.prompts.append(system + "\n" + prompt)
        return 1

    async def compiled(self) -> Capture | None:
        return self.captured

    async def compiler_candidate(self) -> int:
        return 7

    async def verify_named(self, cid: int) -> Stored:
        return Stored(cid, "verified")

    async def source_of(self, cid: int) -> str:
        return self.sources[cid]

    async def add_verified(self, code: str, origin: str, outcome: KernelResult) -> Stored:
        raise AssertionError("nothing is tuned in these tests")


async def test_the_kernel_tools_read_the_problem_and_refuse_to_tune_without_tunables() -> None:
    problem = (EXAMPLES / "kernels" / "softmax.py").read_text()
    bench = KBench(problem=problem, sandbox=ProcessSandbox(), sources={3: "class ModelNew: ...\n"})
    tools = KernelTools(bench)
    names = [t.name for t in tools.tools()]
    assert names == ["read_problem", "compile", "propose", "verify", "tune"]
    read = await tools.read_problem()
    assert read["device"] == "cpu" and "C++" in read["backend"] and "class Model" in read["problem"]
    assert "graph" not in read  # the compiler gave nothing: no graph, no profile
    assert await tools.propose("fuse", feedback={"failure": "error: undeclared"}) == 1
    assert "undeclared" in bench.prompts[0] and "class Model" in bench.prompts[0]
    assert "one pass over memory" in bench.prompts[0]  # the strategy, spelled out
    assert await tools.compile() == 7
    # with the compiler's capture: the graph and profile read, and in the proposal's prompt
    bench.captured = Capture(
        code="",
        state=[],
        inputs=1,
        output="tensor",
        graph=["%softmax = aten._softmax(%arg0_1, 1, False) -> float32[512, 2048]"],
        profile=[{"op": "aten::_softmax", "share": 0.99, "us_per_call": 1750.0}],
        compile_s=13.0,
        cflags=[],
        threads=2,
        kernels=['extern "C" void kernel(const float* in_ptr0) { /* fused */ }'],
    )
    read = await tools.read_problem()
    assert read["graph"] == bench.captured.graph and read["profile"] == bench.captured.profile
    await tools.propose("vectorize")
    assert "aten._softmax" in bench.prompts[1] and "aten::_softmax 99%" in bench.prompts[1]
    assert "/* fused */" in bench.prompts[1] and "the code to beat" in bench.prompts[1]
    with pytest.raises(PerfsmithError, match="candidate 3 declares no tunables"):
        await tools.tune(3)
