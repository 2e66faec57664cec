"""``perfsmith kernel optimize``: a faster kernel for a PyTorch operator, with proof.

After CUDA-LLM's feature search and reinforcement: the planner LLM plans over tools bound
to one KernelBench problem: ``read_problem``, ``propose`` (one ModelNew from the LLM,
given a strategy and the feedback of earlier verdicts: compiler errors trimmed to what
matters, the first mismatching elements, timings), ``verify`` (compile in the sandbox,
correctness on fresh inputs, interleaved timing) and ``tune`` (every combination of the
tunables a kernel declares). The joiner sees every verdict and replans up to ``rounds``.
Builds are cached by source hash; identical candidates are verified once; every candidate
is stored with its source, verdict and measurements.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, Unpack

from perfsmith.errors import CandidateError, PerfsmithError
from perfsmith.llm.base import ChatModel
from perfsmith.sandbox.base import Sandbox
from perfsmith.storage.artifacts import report_artifacts
from perfsmith.storage.models import Artifact, Measurement
from perfsmith.storage.models import Candidate as CandidateRow
from perfsmith.tools.inductor import Capture, CompilerCandidateError, capture, compiler_candidate
from perfsmith.tools.kernel import PRODUCERS, STRATEGIES, STRATEGY_TEXT, kernel_tools
from perfsmith.tools.registry import Tool
from perfsmith.verifiers.kernel.pch import header_flags, precompiled_header
from perfsmith.verifiers.kernel.verify import (
    BACKENDS,
    CPU_FLAGS,
    CompileBaseline,
    KernelInputError,
    KernelResult,
    KernelSettings,
    check_candidate_source,
    pch_root,
    read_candidate,
    read_problem,
    verify_kernel,
)
from perfsmith.verifiers.python.target import source_hash
from perfsmith.workflows.base import Finished, Job
from perfsmith.workflows.guard import CandidateGuard
from perfsmith.workflows.pool import stored_ci
from perfsmith.workflows.session import (
    CandidateSession,
    CandidateWorkflow,
    best_json,
    record_verdict,
)

log = logging.getLogger(__name__)


@dataclass
class KernelCandidate:
    id: int
    origin: str
    source: str
    hash: str


@dataclass
class KernelCandidateResult:
    id: int
    origin: str
    result: KernelResult
    source: str

    def as_dict(self) -> dict[str, Any]:
        r = self.result
        return {
            "id": self.id,
            "origin": self.origin,
            "versus_compile": r.versus_compile.model_dump() if r.versus_compile else None,
            "compiled": r.compiled,
            "correct": r.correct,
            "verdict": r.verdict,
            "speedup": r.speedup,
            "ci": list(r.ci) if r.ci else None,
            "failure": r.failure,
            "flags": r.flags,
            # the build: seconds, found in the cache, with the precompiled torch header
            "build": {k: r.details.get(k) for k in ("build_s", "build_cached", "pch")},
        }


@dataclass
class KernelOptimizeResult:
    run_id: str
    problem: str
    best: KernelCandidateResult | None
    candidates: list[KernelCandidateResult]
    best_file: Path | None
    answer: str = ""
    report: Path | None = None

    def as_json(self) -> dict[str, Any]:
        best = None
        if self.best is not None:
            r = self.best.result
            versus = r.versus_compile.model_dump() if r.versus_compile else None
            best = {
                **best_json(self.best.source, r.speedup, r.ci, self.best.origin),
                "versus_compile": versus,
            }
        return {
            "run_id": self.run_id,
            "problem": self.problem,
            "best": best,
            "best_file": str(self.best_file) if self.best_file else None,
            "candidates": [c.as_dict() for c in self.candidates],
            "report": str(self.report) if self.report else None,
        }


@dataclass(kw_only=True)
class KernelSession(CandidateSession[KernelCandidate, KernelCandidateResult]):
    """The state the tools of one kernel optimize run share."""

    problem_path: Path
    problem: str
    settings: KernelSettings
    backend: str = "cpp"
    compiler: bool = True
    _capture: Capture | None = field(default=None, init=False)
    _capture_error: str | None = field(default=None, init=False)
    _capture_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    async def compiled(self) -> Capture | None:
        """What torch's compiler made of the problem, captured once in the sandbox; None
        (and the reason kept) where it cannot: GPU problems, a compiler failure."""
        async with self._capture_lock:
            if self._capture is None and self._capture_error is None:
                if self.settings.device != "cpu" or self.backend != "cpp":
                    self._capture_error = (
                        "the compiler candidate is built for CPU problems (--device cpu, "
                        "--backend cpp)"
                    )
                else:
                    name = self.problem_path.name
                    log.info("running torch's compiler on %s in the sandbox", name)
                    try:
                        self._capture = await capture(
                            self.sandbox, self.problem, self.settings.threads
                        )
                    except CompilerCandidateError as exc:
                        self._capture_error = str(exc)
            return self._capture

    async def compiler_candidate(self) -> int:
        if not self.compiler:
            raise PerfsmithError("torch's compiler's candidate is turned off for this run")
        captured = await self.compiled()
        if captured is None:
            raise PerfsmithError(self._capture_error or "torch's compiler gave nothing")
        try:
            code = compiler_candidate(self.problem, captured, problem_name=self.problem_path.name)
        except CompilerCandidateError as exc:
            raise PerfsmithError(str(exc)) from exc
        # every compiler candidate on this machine builds with the compiler's vector
        # flags: where they are more than -march=native's, a precompiled header for them
        # pays for itself from the second build
        await precompiled_header(pch_root(), header_flags(CPU_FLAGS, captured.flags))
        return (await self.add_candidate(code, COMPILER_ORIGIN)).id

    @property
    def uses_compiler(self) -> bool:
        """Does this run take torch's compiler's kernels (turned on, C++ for CPUs)?"""
        return self.compiler and self.backend == "cpp" and self.settings.device == "cpu"

    producers = PRODUCERS

    def default_plan(self, k: int) -> str:
        return default_plan(k, True, self.uses_compiler)

    async def add_candidate(self, code: str, origin: str) -> KernelCandidate:
        """Store ``code`` (a ModelNew file); a duplicate returns the one stored."""
        try:
            check_candidate_source(code)
        except KernelInputError as exc:
            raise CandidateError(str(exc)) from exc
        digest = source_hash(code)
        language = self.backend
        return await self.pool.add(
            digest,
            lambda cid: KernelCandidate(cid, origin, code, digest),
            lambda run_id: CandidateRow(
                run_id=run_id,
                origin=origin[:64],
                language=language,
                source=code,
                source_hash=digest,
            ),
        )

    async def _verify(self, cid: int) -> KernelCandidateResult:
        candidate = self.candidates[cid]
        # the timing itself holds the machine's timing slot; the build runs beside others
        # each candidate against eager PyTorch; the best also against torch.compile, once
        settings = dataclasses.replace(self.settings, versus_compile=False)
        outcome = await verify_kernel(self.sandbox, self.problem, candidate.source, settings)
        return await self._record(cid, outcome)

    async def versus_compile(self, best: KernelCandidateResult) -> None:
        """Time ``best`` against torch.compile of the reference too (the second baseline)
        and keep what it shows on its result and as a measurement."""
        if best.result.versus_compile is not None:
            return
        log.info("timing candidate %d against torch.compile of the reference", best.id)
        outcome = await verify_kernel(self.sandbox, self.problem, best.source, self.settings)
        baseline = outcome.versus_compile
        if baseline is None:
            log.warning("no torch.compile baseline for candidate %d: %s", best.id, outcome.failure)
            return
        best.result.versus_compile = baseline
        row_id = await self.pool.row_id(best.id)

        def store(s: Any) -> None:
            s.add(
                Measurement(
                    candidate_id=row_id,
                    kind=f"kernel-{outcome.device}-vs-compile",
                    subject="ratio",
                    value=baseline.speedup,
                    unit="x",
                    meta=baseline.model_dump(),
                )
            )

        await self.db.write(store)

    async def _record(self, cid: int, outcome: KernelResult) -> KernelCandidateResult:
        candidate = self.candidates[cid]
        result = KernelCandidateResult(cid, candidate.origin, outcome, candidate.source)
        self.results[cid] = result
        await self.pool.store(
            cid,
            lambda s, row_id: record_verdict(
                s,
                row_id,
                verdict=outcome.verdict,
                speedup=outcome.speedup,
                ci=outcome.ci,
                failure=outcome.failure,
                kind=f"kernel-{outcome.device}",
                meta={"flags": outcome.flags, **outcome.details},
            ),
        )
        return result

    async def source_of(self, cid: int) -> str:
        await self.pool.wait_for(cid)
        return self.candidates[cid].source

    async def add_verified(
        self, code: str, origin: str, outcome: KernelResult
    ) -> KernelCandidateResult:
        new = await self.add_candidate(code, origin)
        if new.id not in self.results:
            await self._record(new.id, outcome)
        return self.results[new.id]


def best_of(results: Iterable[KernelCandidateResult]) -> KernelCandidateResult | None:
    """The fastest candidate that is correct, verified faster and not flagged."""
    wins = [r for r in results if r.result.win and r.result.speedup is not None]
    return max(wins, key=lambda r: r.result.speedup or 0.0, default=None)


def request_text(problem: Path, backend: str, device: str, k: int, *, compiler: bool) -> str:
    take = "take torch's compiler's kernel (compile), " if compiler else ""
    strategies = "; ".join(f"{s}: {STRATEGY_TEXT[s]}" for s in STRATEGIES[:k])
    return (
        f"Write a faster {BACKENDS[backend]} kernel for the PyTorch operator in "
        f"{problem.name} on {device}: read the problem, {take}propose {k} candidates "
        f"in parallel with different strategies ({strategies}), verify each, tune those "
        "that declare tunables, and finish with the fastest verified kernel."
    )


def default_plan(k: int, with_model: bool, compiler: bool) -> str:
    """The plan that runs when the planner's plans fall short (or without a model): the
    compiler's candidate and k proposals, each verified; the compiler's kernel tuned."""
    lines: list[str] = []

    def add(call: str) -> int:
        lines.append(f"{len(lines) + 1}. {call}")
        return len(lines)

    add("read_problem()")  # for the joiner: the problem, its graph and profile
    sources = [add("compile()")] if compiler else []
    if with_model:
        # a proposal's prompt holds the problem, its graph and profile: no feedback needed
        sources += [add(f'propose(strategy="{s}")') for s in STRATEGIES[: max(1, k)]]
    for n in sources:
        add(f"verify(candidate=${n})")
    if compiler:
        add(f"tune(candidate=${sources[0]})")
    thought = "Thought: every candidate source in parallel, then verify each candidate.\n"
    return thought + "\n".join(lines) + "\njoin()\n"


MODEL_FREE_FINISH = (
    "Thought: the model-free plan ran.\n"
    "Action: Finish(torch's compiler's kernel was verified and tuned)"
)


def model_free_model() -> ChatModel:
    """The planner and joiner of a kernel run without a model: the compiler's kernel,
    verified and tuned, then finish."""
    from perfsmith.llm.scripted import ScriptedChatModel

    return ScriptedChatModel(
        {"planner": [default_plan(0, False, True)], "joiner": [MODEL_FREE_FINISH]},
        name="no model (torch's compiler)",
    )


COMPILER_ORIGIN = "compiler:inductor"


def compiler_speedup(results: Iterable[KernelCandidateResult]) -> float | None:
    """The speedup of torch's compiler's kernel in a run, when it was verified correct."""
    for r in results:
        if r.origin == COMPILER_ORIGIN and r.result.correct and r.result.speedup is not None:
            return r.result.speedup
    return None


def write_report(result: KernelOptimizeResult, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"# perfsmith kernel optimize: {result.problem}", "", f"run `{result.run_id}`", ""]
    if result.best is not None:
        r = result.best.result
        ci = f" [{r.ci[0]:.2f}, {r.ci[1]:.2f}]" if r.ci else ""
        lines += [
            f"**Best: candidate {result.best.id} ({result.best.origin}), "
            f"{r.speedup:.2f}x{ci} faster; written to `{result.best_file}`.**",
            "",
        ]
        v = r.versus_compile
        if v is not None:
            lines += [
                f"Against `torch.compile` of the reference: {v.speedup:.2f}x "
                f"[{v.ci[0]:.2f}, {v.ci[1]:.2f}] ({v.verdict}; compiling took {v.compile_s:.1f} s, "
                "left out of the timing).",
                "",
            ]
    else:
        lines += ["**No kernel was verified faster.**", ""]
    # every kernel against torch's compiler's (the code to beat), as a ratio of speedups
    compiler = compiler_speedup(result.candidates)
    lines += [
        "| id | origin | verdict | speedup [95% CI] | vs the compiler's kernel | flags | failure |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in result.candidates:
        r = c.result
        speed = "-" if r.speedup is None else f"{r.speedup:.2f}x"
        if r.ci:
            speed += f" [{r.ci[0]:.2f}, {r.ci[1]:.2f}]"
        versus = "-"
        if compiler and r.speedup is not None and c.origin != COMPILER_ORIGIN:
            versus = f"{r.speedup / compiler:.2f}x"
        failure = (r.failure or "").replace("\n", " ").replace("|", "\\|")[:200]
        flags = "; ".join(r.flags).replace("|", "\\|")[:160]
        lines.append(
            f"| {c.id} | {c.origin} | {r.verdict} | {speed} | {versus} | {flags} | {failure} |"
        )
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class KernelOptions(TypedDict, total=False):
    """What a kernel run is asked to do, beyond its problem and model (each optional; the
    defaults are `kernel_config`'s)."""

    settings: KernelSettings | None  # the verifier's (default: for the backend's device)
    backend: str  # the candidates' language: cpp, cuda or triton (cpp)
    candidates: Iterable[str | Path]  # the user's own ModelNew files (default: none)
    rounds: int  # planning rounds (2)
    k: int  # candidates the model writes per round (3)
    report_dir: Path | None  # the report's folder (default: under the data directory)
    compiler: bool  # torch's compiler's kernels become a candidate (True; CPU problems)


def kernel_config(
    problem: str | Path, *, llm: str | None, **options: Unpack[KernelOptions]
) -> dict[str, Any]:
    """A kernel run's config: everything `resume` needs to rebuild it."""
    backend = options.get("backend", "cpp")
    settings = options.get("settings") or KernelSettings(
        device="cuda" if backend in ("cuda", "triton") else "cpu"
    )
    report_dir = options.get("report_dir")
    return {
        "problem": str(problem),
        "backend": backend,
        "settings": dataclasses.asdict(settings),
        "candidates": [str(p) for p in options.get("candidates", ())],
        "rounds": options.get("rounds", 2),
        "k": options.get("k", 3),
        "compiler": options.get("compiler", True),
        "llm": llm,
        "report_dir": str(report_dir) if report_dir else None,
    }


class KernelWorkflow(CandidateWorkflow[KernelSession]):
    """``perfsmith kernel optimize``'s runs; see the module docstring. Its config is
    `kernel_config`'s."""

    kind = "kernel"

    def request_text(self, config: dict[str, Any]) -> str:
        settings = KernelSettings(**config["settings"])
        compiler = config["backend"] == "cpp" and config.get("compiler", True)
        return request_text(
            Path(config["problem"]),
            config["backend"],
            settings.device,
            int(config.get("k", 3)),
            compiler=compiler,
        )

    def check(self, config: dict[str, Any]) -> dict[str, Any]:
        backend = config.get("backend", "cpp")
        if backend not in BACKENDS:
            raise KernelInputError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        device = KernelSettings(**config["settings"]).device
        if backend == "cpp" and device != "cpu":
            raise KernelInputError("the cpp backend writes CPU kernels: use --device cpu")
        if backend in ("cuda", "triton") and device != "cuda":
            raise KernelInputError(f"the {backend} backend writes GPU kernels: use --device cuda")
        read_problem(config["problem"])
        for path in config.get("candidates") or []:
            read_candidate(path)
        return config

    def tools(self, session: KernelSession) -> list[Tool]:
        return kernel_tools(session)

    def session(self, job: Job, sandbox: Sandbox, llm: ChatModel | None) -> KernelSession:
        config = job.config
        path = Path(config["problem"])
        session = KernelSession(
            problem_path=path,
            problem=read_problem(path),
            sandbox=sandbox,
            db=job.db,
            settings=KernelSettings(**config["settings"]),
            backend=config.get("backend", "cpp"),
            compiler=bool(config.get("compiler", True)),
            llm=llm,
        )
        session.run_id = job.run_id
        return session

    def planner(self, job: Job, llm: ChatModel | None, *, resuming: bool) -> ChatModel | None:
        if llm is not None:
            return llm
        config = job.config
        if config.get("candidates"):
            return None  # only the user's candidates are verified
        if config.get("backend", "cpp") == "cpp" and config.get("compiler", True):
            return model_free_model()
        if resuming:
            return None
        also = ", or let torch's compiler write one" if config.get("backend") == "cpp" else ""
        raise PerfsmithError(f"nothing to verify: give --candidate files or an LLM{also}")

    def guard(self, job: Job, session: KernelSession) -> CandidateGuard | None:
        # without a model the model-free plan is the whole plan: nothing to guard or replan
        if session.llm is None:
            return None
        return session.guard(int(job.config.get("k", 3)))

    def max_replans(self, job: Job, session: KernelSession) -> int:
        return 0 if session.llm is None else super().max_replans(job, session)

    async def restore(self, job: Job, session: KernelSession) -> None:
        device = session.settings.device
        await session.pool.restore_run(
            job.run_id,
            lambda cid, row: KernelCandidate(cid, row.origin, row.source, row.source_hash),
            lambda cid, row: KernelCandidateResult(
                cid, row.origin, _stored_result(row, device), row.source
            ),
        )

    async def given(self, job: Job, session: KernelSession) -> list[tuple[str, str]]:
        paths = job.config.get("candidates") or []
        return [(f"user:{Path(p).name}", read_candidate(p)) for p in paths]

    async def conclude(
        self, job: Job, session: KernelSession, results: list[KernelCandidateResult], answer: str
    ) -> Finished:
        """Keep the best kernel and write the report."""
        run_id = job.run_id
        path = session.problem_path
        best = best_of(results)
        if best is not None and session.settings.versus_compile:
            await session.versus_compile(best)
        folder = job.report_folder()
        folder.mkdir(parents=True, exist_ok=True)
        best_file = None
        artifacts: list[Artifact] = []
        if best is not None:
            best_file = folder / f"{path.stem}_best.py"
            best_file.write_text(best.source, encoding="utf-8")
            artifacts.append(
                await session.candidate_artifact(
                    best.id, kind="kernel", name=best_file.name, content=best.source.encode()
                )
            )
        result = KernelOptimizeResult(run_id, str(path), best, results, best_file, answer)
        result.report = write_report(result, folder)
        await session.keep([*artifacts, *report_artifacts(run_id, folder)])
        summary = (
            f"best: candidate {best.id} ({best.origin}), {best.result.speedup:.2f}x"
            if best is not None and best.result.speedup is not None
            else "no kernel was verified faster"
        )
        return Finished(
            answer=answer or summary,
            result=result,
            summary={
                "best": best.id if best is not None else None,
                "speedup": best.result.speedup if best is not None else None,
                "candidates": len(results),
            },
        )


def _stored_result(row: CandidateRow, device: str) -> KernelResult:
    """A verdict read back from the database (resuming a run), with the torch.compile
    baseline when the run measured it."""
    verdicts = [m for m in row.measurements if m.kind == f"kernel-{device}"]
    meta = verdicts[-1].meta if verdicts else {}
    baselines = [m.meta for m in row.measurements if m.kind == f"kernel-{device}-vs-compile"]
    return KernelResult(
        compiled=row.verdict != "uncompiled",
        correct=row.verdict not in ("incorrect", "uncompiled"),
        failure=row.failure,
        verdict=row.verdict,
        speedup=row.speedup,
        ci=stored_ci(row),
        flags=list(meta.get("flags") or []),
        device=device,
        versus_compile=CompileBaseline(**baselines[-1]) if baselines else None,
    )
