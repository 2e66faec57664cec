"""The tools a kernel plan calls on one KernelBench problem.

``read_problem`` (the problem file, the device, the language to write, the operator graph
and the reference's profile), ``compile`` (the kernels torch's compiler generates, as a
candidate: no LLM), ``propose`` (one ModelNew from the LLM, given a strategy, the feedback
of earlier verdicts and the compiler's kernel as the code to beat), ``verify``
(compile in the sandbox, correctness on fresh inputs, interleaved timing) and ``tune``
(every combination of the tunables a kernel declares). Their docstrings are what the
planner reads. They work on a `KernelBench`: the run's problem and its candidate pool (the
kernel workflow's session).
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, get_args

from perfsmith.errors import PerfsmithError
from perfsmith.sandbox.base import Sandbox
from perfsmith.tools.inductor import Capture
from perfsmith.tools.proposals import Verdict, feedback_text
from perfsmith.tools.registry import Tool, make_tool
from perfsmith.verifiers.kernel.autotune import TuneError, autotune, tunables
from perfsmith.verifiers.kernel.verify import BACKENDS, KernelResult, KernelSettings

Strategy = Literal["fuse", "vectorize", "parallelize", "tile", "tunables"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
# what each strategy asks of the kernel, in the proposal's prompt
STRATEGY_TEXT = {
    "fuse": "fuse the operations into one pass over memory",
    "vectorize": "vectorize the inner loop (SIMD / wide loads)",
    "parallelize": "parallelize across rows or blocks",
    "tile": "tile for the caches (shared memory on GPUs)",
    "tunables": "declare tunables for block sizes",
}
# the tools whose results are candidate ids
PRODUCERS = frozenset({"compile", "propose"})

PROPOSE_SYSTEM = """\
You write fast kernels for PyTorch operators. You are given a Python file with \
`class Model(torch.nn.Module)`; write a Python file defining `class ModelNew(torch.nn.Module)` \
with the same constructor arguments and the same outputs, whose forward runs your own \
{backend} kernel compiled with torch.utils.cpp_extension.load_inline (for Triton: @triton.jit). \
Plain torch operators may allocate outputs (torch.empty...) but must not do the work. \
You may declare tunables in the kernel source: `// perfsmith: tune BLOCK=[64,128,256]` above \
`#define BLOCK 128`. Reply with one ```python block holding the whole file, nothing else."""


class KernelBench(Protocol):
    """What the kernel tools work on: one problem, the run's sandbox and its pool."""

    problem: str
    settings: KernelSettings
    backend: str
    sandbox: Sandbox

    async def ask_model(self, strategy: str, system: str, prompt: str, max_tokens: int) -> int: ...

    async def verify_named(self, cid: int) -> Verdict: ...

    async def source_of(self, cid: int) -> str:
        """Candidate ``cid``'s source, once a proposal still running has delivered it."""
        ...

    async def add_verified(self, code: str, origin: str, outcome: KernelResult) -> Verdict:
        """Store a candidate whose verdict is already known (a tuned variant)."""
        ...

    async def compiled(self) -> Capture | None:
        """What torch's compiler made of the problem (captured once per run; None where
        it cannot run: a GPU problem on a machine without one, the compiler failing)."""
        ...

    async def compiler_candidate(self) -> int:
        """The compiler's kernels as a candidate; returns its id (or says why none)."""
        ...


class KernelTools:
    """The kernel tools bound to one run's `KernelBench`."""

    def __init__(self, bench: KernelBench) -> None:
        self.bench = bench

    def tools(self) -> list[Tool]:
        return [
            make_tool(self.read_problem, name="read_problem", timeout_s=900),
            make_tool(self.compile, name="compile", timeout_s=900),
            make_tool(self.propose, name="propose"),
            make_tool(self.verify, name="verify", max_concurrency=1, timeout_s=1800),
            make_tool(self.tune, name="tune", max_concurrency=1, timeout_s=3600),
        ]

    async def read_problem(self) -> dict[str, Any]:
        """The problem file (class Model, get_inputs, get_init_inputs), the device, the
        kernel language to write, the operator graph of Model.forward and the
        reference's profile (the operators that take its time)."""
        out: dict[str, Any] = {
            "problem": self.bench.problem[:6000],
            "device": self.bench.settings.device,
            "backend": BACKENDS[self.bench.backend],
            "tolerance": "fp32 1e-4, fp16/bf16 1e-2 (absolute and relative)",
        }
        captured = await self.bench.compiled()
        if captured is not None:
            out["graph"] = captured.graph[:60]
            out["profile"] = captured.profile
        return out

    async def compile(self) -> int:
        """torch's compiler (Inductor) fuses the problem's operators into its own C++
        kernels: they become one candidate calling them directly (no LLM needed), with
        the threads of its parallel regions as a tunable. Returns the candidate's id."""
        return await self.bench.compiler_candidate()

    async def propose(self, strategy: Strategy, feedback: Any = "") -> int:
        """Ask the LLM for one ModelNew with its own kernel, following `strategy` (fuse,
        vectorize, parallelize, tile or tunables) and learning from `feedback` (earlier
        verdicts: compiler errors, mismatches, timings). The operator graph, the
        reference's profile and the compiler's kernel (the code to beat) are in its
        prompt. Returns the candidate's id."""
        feedback = feedback_text(feedback)
        captured = await self.bench.compiled()
        guide = ""
        if captured is not None:
            ops = "\n".join(captured.graph[:30])
            hot = ", ".join(f"{p['op']} {p['share']:.0%}" for p in captured.profile[:4])
            guide = (
                f"Operator graph of Model.forward:\n{ops}\n"
                f"Where the reference spends its time: {hot}.\n"
            )
            if captured.kernels:
                guide += (
                    "torch's compiler generated this kernel (the code to beat; yours must be "
                    f"faster):\n```cpp\n{captured.kernel_text(1500)}\n```\n"
                )
        prompt = (
            f"Strategy: {STRATEGY_TEXT.get(strategy, strategy)}.\n"
            f"Device: {self.bench.settings.device}.\n"
            + guide
            + (f"What earlier attempts showed:\n{feedback}\n" if feedback else "")
            + f"The problem:\n```python\n{self.bench.problem[:5000]}\n```"
        )
        system = PROPOSE_SYSTEM.format(backend=BACKENDS[self.bench.backend])
        return await self.bench.ask_model(strategy, system, prompt, max_tokens=1500)

    async def verify(self, candidate: int) -> dict[str, Any]:
        """Verify candidate `candidate` (an id from propose): compile it in the sandbox,
        check it on fresh random inputs, time it against the reference. Returns whether
        it compiled (else the trimmed compiler errors), whether it is correct (else the
        first mismatching elements), the speedup with its 95% interval, and flags."""
        return (await self.bench.verify_named(candidate)).as_dict()

    async def tune(self, candidate: int) -> dict[str, Any]:
        """Autotune candidate `candidate`: compile and time every combination of the
        tunables its source declares (`// perfsmith: tune BLOCK=[64,128]`); the best
        verified variant becomes a new candidate. Returns its id and verdict."""
        bench = self.bench
        source = await bench.source_of(candidate)
        if not tunables(source):
            raise PerfsmithError(f"candidate {candidate} declares no tunables")
        try:
            best, found = await autotune(bench.sandbox, bench.problem, source, bench.settings)
        except TuneError as exc:
            raise PerfsmithError(str(exc)) from exc
        tried = [
            {
                "values": v.label,
                "verdict": v.result.verdict if v.result else None,
                "speedup": v.result.speedup if v.result else None,
            }
            for v in found
        ]
        if best is None or best.result is None:
            return {"best": None, "variants": tried}
        origin = f"tune:{candidate} {best.label}"[:64]
        verdict = await bench.add_verified(best.source, origin, best.result)
        return {"best": verdict.as_dict(), "variants": tried}


def kernel_tools(bench: KernelBench) -> list[Tool]:
    """The kernel tools for one run."""
    return KernelTools(bench).tools()
