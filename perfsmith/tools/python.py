"""The tools an optimize plan calls on one Python function.

``profile`` (the workload under the profilers in the sandbox), ``read_source`` (the
function, its module and the catalogue's findings), ``rewrite`` (the rewrite catalogue, no
LLM), ``ruff_fix`` (ruff's performance fixes), ``propose`` (one candidate from the LLM,
given a strategy and feedback) and ``verify`` (correctness first, then speed). Their
docstrings are what the planner reads. They work on a `PythonBench`: the run's target and
its candidate pool (the optimize workflow's session).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Literal, Protocol, get_args

from perfsmith.errors import CandidateError, PerfsmithError
from perfsmith.tools.profiling import describe
from perfsmith.tools.proposals import HasId, Verdict, feedback_text
from perfsmith.tools.registry import Tool, make_tool
from perfsmith.tools.rewrites import RewriteError, findings, rewrites
from perfsmith.tools.ruff_fixes import RuffError, ruff_fix
from perfsmith.verifiers.python.target import Target, function_source

Strategy = Literal["algorithm", "data structure", "builtins", "vectorize with numpy", "caching"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
# the tools whose results are candidate ids
PRODUCERS = frozenset({"propose", "rewrite", "ruff_fix"})

PROPOSE_SYSTEM = """\
You are a performance engineer. Rewrite the Python function you are given so that it \
returns exactly the same results, faster. Keep its name and signature. Reply with one \
```python block holding the function (and any imports or helpers it needs), nothing else."""


class PythonBench(Protocol):
    """What the Python tools work on: one function, its workload and the run's pool."""

    target: Target
    workload: Target | None
    profile_report: dict[str, Any] | None
    # what is known of the target's cost from outside (optimize-repo: the project's command)
    profile_note: str | None

    async def check_workload(self) -> dict[str, Any]: ...

    async def add_candidate(self, code: str, origin: str, rules: Sequence[str] = ()) -> HasId: ...

    async def ask_model(self, strategy: str, system: str, prompt: str, max_tokens: int) -> int: ...

    async def verify_named(self, cid: int) -> Verdict: ...


class PythonTools:
    """The optimize tools bound to one run's `PythonBench`."""

    def __init__(self, bench: PythonBench) -> None:
        self.bench = bench
        self._findings: list[dict[str, Any]] | None = None

    def tools(self) -> list[Tool]:
        return [
            make_tool(self.profile, name="profile", timeout_s=300),
            make_tool(self.read_source, name="read_source"),
            make_tool(self.rewrite, name="rewrite"),
            make_tool(self.ruff_fix, name="ruff_fix"),
            make_tool(self.propose, name="propose"),
            make_tool(self.verify, name="verify", max_concurrency=1, timeout_s=600),
        ]

    async def profile(self) -> dict[str, Any]:
        """Profile the workload in the sandbox: wall time, the hottest functions
        (cProfile), the target's share of the time, its hottest lines (line_profiler) and
        the call tree (pyinstrument)."""
        bench = self.bench
        if bench.workload is None:
            if bench.profile_note is not None:
                return {"summary": bench.profile_note}
            return {"note": "no workload given: nothing to profile", "summary": ""}
        if bench.profile_report is None:
            bench.profile_report = await bench.check_workload()
        report = bench.profile_report
        return {
            "summary": describe(report),
            "target_share": report["target"]["share"],
            "call_tree": str(report.get("tree", ""))[:1500],
        }

    def read_source(self) -> dict[str, Any]:
        """The target function's source, the module around it (imports, helpers) and the
        slow patterns the rewrite catalogue finds in it (rule, line, what to change)."""
        target = self.bench.target
        return {
            "function": function_source(target.source, target.function),
            "module": target.source[:6000],
            "name": target.function,
            "findings": self.findings(),
        }

    def findings(self) -> list[dict[str, Any]]:
        """The catalogue's findings in the target (computed once)."""
        if self._findings is None:
            target = self.bench.target
            try:
                found = findings(target.source, target.function)
            except RewriteError:
                found = []
            self._findings = [f.as_dict() for f in found]
        return self._findings

    async def rewrite(self) -> list[int]:
        """Rewrite the target with perfsmith's catalogue of Python performance patterns
        (no LLM needed): one candidate for each pattern found and one with all of them.
        Returns the new candidates' ids (verify each)."""
        target = self.bench.target
        try:
            found = await asyncio.to_thread(rewrites, target.source, target.function)
        except RewriteError as exc:
            raise PerfsmithError(f"the catalogue cannot read the target: {exc}") from exc
        if not found:
            raise PerfsmithError(
                "the catalogue finds none of its patterns in this function: use propose"
            )
        ids = []
        for r in found:
            try:
                ids.append((await self.bench.add_candidate(r.code, r.origin, r.rules)).id)
            except CandidateError:
                continue  # a rewrite that does not splice is no candidate
        return ids

    async def ruff_fix(self) -> int:
        """Apply ruff's performance and modernisation fixes (PERF, FURB, C4, SIM, UP,
        unsafe ones included) to the target: one candidate. Returns its id."""
        target = self.bench.target
        try:
            fixed = await ruff_fix(target.source, target.function)
        except RuffError as exc:
            raise PerfsmithError(str(exc)) from exc
        if fixed is None:
            raise PerfsmithError("ruff has no fix for this function")
        try:
            return (await self.bench.add_candidate(fixed.code, fixed.origin)).id
        except CandidateError as exc:
            raise PerfsmithError(f"ruff's fix is unusable: {exc}") from exc

    async def propose(self, strategy: Strategy, feedback: Any = "") -> int:
        """Ask the LLM for one faster version of the target, following `strategy`
        (algorithm, data structure, builtins, vectorize with numpy or caching) and
        learning from `feedback` (earlier verdicts). Returns the candidate's id."""
        target = self.bench.target
        feedback = feedback_text(feedback)
        # the catalogue's findings name the slow lines, so even a small model edits them
        hints = "".join(f"- line {f['line']}: {f['note']}\n" for f in self.findings()[:8])
        prompt = (
            f"Strategy: {strategy}.\n"
            + (f"Slow spots found in it:\n{hints}" if hints else "")
            + (f"What earlier attempts showed:\n{feedback}\n" if feedback else "")
            + (
                f"The method {target.function} ({target.kind}; keep it a "
                f"method of {target.owner}):\n"
                if target.owner
                else "The function:\n"
            )
            + f"```python\n{function_source(target.source, target.function)}```\n"
            + f"Its module (for context):\n```python\n{target.source[:4000]}\n```"
        )
        return await self.bench.ask_model(strategy, PROPOSE_SYSTEM, prompt, max_tokens=700)

    async def verify(self, candidate: int | list[int]) -> dict[str, Any] | list[dict[str, Any]]:
        """Verify candidate `candidate` (an id, or the list of ids rewrite returns):
        correctness on generated inputs first, then speed in interleaved timing rounds.
        Returns the verdict (faster, slower, same, incorrect), the speedup and its 95%
        interval, or the failing input."""
        if isinstance(candidate, list):
            return [(await self.bench.verify_named(c)).as_dict() for c in candidate]
        return (await self.bench.verify_named(candidate)).as_dict()


def python_tools(bench: PythonBench) -> list[Tool]:
    """The optimize tools for one run."""
    return PythonTools(bench).tools()
