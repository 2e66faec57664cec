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
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from perfsmith.config import Settings, data_dir, load_settings
from perfsmith.errors import PerfsmithError
from perfsmith.kernels.autotune import TuneError, autotune, tunables
from perfsmith.kernels.verify import (
    KernelInputError,
    KernelResult,
    KernelSettings,
    check_candidate_source,
    read_candidate,
    read_problem,
    verify_kernel,
)
from perfsmith.llm.base import ChatModel
from perfsmith.orchestrate import fail_run, finish_run, run
from perfsmith.sandbox.base import Sandbox
from perfsmith.storage.artifacts import report_artifacts
from perfsmith.storage.db import Database
from perfsmith.storage.models import Artifact, Measurement
from perfsmith.storage.models import Candidate as CandidateRow
from perfsmith.storage.runs import EventListener, RunStore
from perfsmith.tools.registry import Tool, make_tool
from perfsmith.workflows.candidates import CandidateError, ask_for_code, source_hash
from perfsmith.workflows.pool import CandidatePool

STRATEGIES = (
    "fuse the operations into one pass over memory",
    "vectorize the inner loop (SIMD / wide loads)",
    "parallelize across rows or blocks",
    "tile for the caches (shared memory on GPUs)",
    "declare tunables for block sizes",
)

BACKENDS = {"cpp": "C++ with OpenMP and SIMD", "cuda": "CUDA C++", "triton": "Triton"}

PROPOSE_SYSTEM = """\
You write fast kernels for PyTorch operators. You are given a Python file with \
`class Model(torch.nn.Module)`; write a Python file defining `class ModelNew(torch.nn.Module)` \
with the same constructor arguments and the same outputs, whose forward runs your own \
{backend} kernel compiled with torch.utils.cpp_extension.load_inline (for Triton: @triton.jit). \
Plain torch operators may allocate outputs (torch.empty...) but must not do the work. \
You may declare tunables in the kernel source: `// perfsmith: tune BLOCK=[64,128,256]` above \
`#define BLOCK 128`. Reply with one ```python block holding the whole file, nothing else."""


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
            "compiled": r.compiled,
            "correct": r.correct,
            "verdict": r.verdict,
            "speedup": r.speedup,
            "ci": list(r.ci) if r.ci else None,
            "failure": r.failure,
            "flags": r.flags,
        }


@dataclass
class KernelOptimizeResult:
    run_id: str
    problem: str
    best: KernelCandidateResult | None
    candidates: list[KernelCandidateResult]
    best_file: Path | None
    report: Path | None
    answer: str = ""

    def as_json(self) -> dict[str, Any]:
        best = None
        if self.best is not None:
            best = {
                "source": self.best.source,
                "speedup": self.best.result.speedup,
                "ci": list(self.best.result.ci) if self.best.result.ci else None,
                "origin": self.best.origin,
            }
        return {
            "run_id": self.run_id,
            "problem": self.problem,
            "best": best,
            "best_file": str(self.best_file) if self.best_file else None,
            "candidates": [c.as_dict() for c in self.candidates],
            "report": str(self.report) if self.report else None,
        }


@dataclass
class KernelSession:
    """The state the tools of one kernel optimize run share."""

    problem_path: Path
    problem: str
    sandbox: Sandbox
    db: Database
    settings: KernelSettings
    backend: str = "cpp"
    llm: ChatModel | None = None
    pool: CandidatePool[KernelCandidate, KernelCandidateResult] = field(init=False)
    _timing: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.pool = CandidatePool(self.db, self._verify)

    @property
    def candidates(self) -> dict[int, KernelCandidate]:
        return self.pool.items

    @property
    def results(self) -> dict[int, KernelCandidateResult]:
        return self.pool.results

    def on_event(self, event: dict[str, Any]) -> None:
        if self.pool.run_id is None:
            self.pool.run_id = str(event["run_id"])

    async def add_candidate(self, source: str, origin: str) -> KernelCandidate:
        """Store ``source`` (a ModelNew file); a duplicate returns the one stored."""
        try:
            check_candidate_source(source)
        except KernelInputError as exc:
            raise CandidateError(str(exc)) from exc
        digest = source_hash(source)
        language = self.backend
        return await self.pool.add(
            digest,
            lambda cid: KernelCandidate(cid, origin, source, digest),
            lambda run_id: CandidateRow(
                run_id=run_id,
                origin=origin[:64],
                language=language,
                source=source,
                source_hash=digest,
            ),
        )

    async def verify_candidate(self, cid: int) -> KernelCandidateResult:
        return await self.pool.verified(cid)

    async def _verify(self, cid: int) -> KernelCandidateResult:
        candidate = self.candidates[cid]
        async with self._timing:  # one timing at a time: they must not share the machine
            outcome = await verify_kernel(
                self.sandbox, self.problem, candidate.source, self.settings
            )
        return await self._record(cid, outcome)

    async def _record(self, cid: int, outcome: KernelResult) -> KernelCandidateResult:
        candidate = self.candidates[cid]
        result = KernelCandidateResult(cid, candidate.origin, outcome, candidate.source)
        self.results[cid] = result
        await self.pool.store(cid, lambda s, row_id: _store_verdict(s, row_id, outcome))
        return result

    # -- tools -----------------------------------------------------------------------

    def read_problem(self) -> dict[str, Any]:
        """The problem file (class Model, get_inputs, get_init_inputs), the device and
        the kernel language to write."""
        return {
            "problem": self.problem[:6000],
            "device": self.settings.device,
            "backend": BACKENDS[self.backend],
            "tolerance": "fp32 1e-4, fp16/bf16 1e-2 (absolute and relative)",
        }

    async def propose(self, strategy: str, feedback: Any = "") -> int:
        """Ask the LLM for one ModelNew with its own kernel, following `strategy` and
        learning from `feedback` (earlier verdicts: compiler errors, mismatches, timings).
        Returns the candidate's id."""
        if self.llm is None:
            raise PerfsmithError("no LLM configured: propose needs one")
        async with self.pool.proposing():
            if not isinstance(feedback, str):
                feedback = json.dumps(feedback, default=str)[:3000]
            prompt = (
                f"Strategy: {strategy}.\nDevice: {self.settings.device}.\n"
                + (f"What earlier attempts showed:\n{feedback}\n" if feedback else "")
                + f"The problem:\n```python\n{self.problem[:5000]}\n```"
            )
            system = PROPOSE_SYSTEM.format(backend=BACKENDS[self.backend])
            try:
                code = await ask_for_code(self.llm, system, prompt, max_tokens=1500)
                candidate = await self.add_candidate(code, f"llm:{strategy}"[:64])
            except CandidateError as exc:
                raise PerfsmithError(f"proposal ({strategy}) unusable: {exc}") from exc
            return candidate.id

    async def verify_tool(self, candidate: int) -> dict[str, Any]:
        """Verify candidate `candidate` (an id from propose): compile it in the sandbox,
        check it on fresh random inputs, time it against the reference. Returns whether
        it compiled (else the trimmed compiler errors), whether it is correct (else the
        first mismatching elements), the speedup with its 95% interval, and flags."""
        await self.pool.wait_for(candidate)
        return (await self.verify_candidate(candidate)).as_dict()

    async def tune(self, candidate: int) -> dict[str, Any]:
        """Autotune candidate `candidate`: compile and time every combination of the
        tunables its source declares (`// perfsmith: tune BLOCK=[64,128]`); the best
        verified variant becomes a new candidate. Returns its id and verdict."""
        await self.pool.wait_for(candidate)
        source = self.candidates[candidate].source
        if not tunables(source):
            raise PerfsmithError(f"candidate {candidate} declares no tunables")
        try:
            async with self._timing:
                best, found = await autotune(self.sandbox, self.problem, source, self.settings)
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
        new = await self.add_candidate(best.source, f"tune:{candidate} {best.label}"[:64])
        if new.id not in self.results:
            await self._record(new.id, best.result)
        return {"best": self.results[new.id].as_dict(), "variants": tried}

    def tools(self) -> list[Tool]:
        return [
            make_tool(self.read_problem, name="read_problem", inline=True),
            make_tool(self.propose, name="propose"),
            make_tool(self.verify_tool, name="verify", max_concurrency=1, timeout_s=1800),
            make_tool(self.tune, name="tune", max_concurrency=1, timeout_s=3600),
        ]


def _store_verdict(s: Session, cid: int, outcome: KernelResult) -> None:
    row = s.get(CandidateRow, cid)
    if row is None:
        return
    row.verdict = outcome.verdict
    row.speedup = outcome.speedup
    row.failure = outcome.failure
    if outcome.ci is not None:
        row.ci_low, row.ci_high = outcome.ci
    if outcome.speedup is not None:
        s.add(
            Measurement(
                candidate_id=cid,
                kind=f"kernel-{outcome.device}",
                subject="ratio",
                value=outcome.speedup,
                unit="x",
                meta={"ci": outcome.ci, "flags": outcome.flags, **outcome.details},
            )
        )


def best_of(results: Iterable[KernelCandidateResult]) -> KernelCandidateResult | None:
    """The fastest candidate that is correct, verified faster and not flagged."""
    wins = [r for r in results if r.result.win and r.result.speedup is not None]
    return max(wins, key=lambda r: r.result.speedup or 0.0, default=None)


def request_text(problem: Path, backend: str, device: str, k: int) -> str:
    return (
        f"Write a faster {BACKENDS[backend]} kernel for the PyTorch operator in "
        f"{problem.name} on {device}: read the problem, propose {k} candidates in parallel "
        f"with different strategies ({'; '.join(STRATEGIES[:k])}), verify each, tune those "
        "that declare tunables, and finish with the fastest verified kernel."
    )


def write_report(result: KernelOptimizeResult, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# perfsmith kernel optimize: {result.problem}",
        "",
        f"run `{result.run_id}`",
        "",
    ]
    if result.best is not None:
        r = result.best.result
        ci = f" [{r.ci[0]:.2f}, {r.ci[1]:.2f}]" if r.ci else ""
        lines += [
            f"**Best: candidate {result.best.id} ({result.best.origin}), "
            f"{r.speedup:.2f}x{ci} faster; written to `{result.best_file}`.**",
            "",
        ]
    else:
        lines += ["**No kernel was verified faster.**", ""]
    lines += [
        "| id | origin | verdict | speedup [95% CI] | flags | failure |",
        "|---|---|---|---|---|---|",
    ]
    for c in result.candidates:
        r = c.result
        speed = "-" if r.speedup is None else f"{r.speedup:.2f}x"
        if r.ci:
            speed += f" [{r.ci[0]:.2f}, {r.ci[1]:.2f}]"
        failure = (r.failure or "").replace("\n", " ").replace("|", "\\|")[:200]
        flags = "; ".join(r.flags).replace("|", "\\|")[:160]
        lines.append(f"| {c.id} | {c.origin} | {r.verdict} | {speed} | {flags} | {failure} |")
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def kernel_optimize(
    problem: str | Path,
    *,
    sandbox: Sandbox,
    llm: ChatModel | str | None = "local",
    settings: KernelSettings | None = None,
    backend: str = "cpp",
    candidates: Iterable[str | Path] = (),
    rounds: int = 2,
    k: int = 3,
    database: Database | None = None,
    app_settings: Settings | None = None,
    report_dir: Path | None = None,
    listeners: Iterable[EventListener] = (),
    run_id: str | None = None,
) -> KernelOptimizeResult:
    """Optimize the operator of ``problem`` (a KernelBench file); see the module docstring.
    ``run_id`` names a run created ahead to fill in (the API's runs)."""
    if backend not in BACKENDS:
        raise KernelInputError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    settings = settings or KernelSettings(device="cuda" if backend in ("cuda", "triton") else "cpu")
    if backend == "cpp" and settings.device != "cpu":
        raise KernelInputError("the cpp backend writes CPU kernels: use --device cpu")
    if backend in ("cuda", "triton") and settings.device != "cuda":
        raise KernelInputError(f"the {backend} backend writes GPU kernels: use --device cuda")
    app_settings = app_settings or load_settings()
    path = Path(problem)
    source = read_problem(path)
    user = [(Path(p), read_candidate(p)) for p in candidates]
    if isinstance(llm, str):
        from perfsmith.llm.factory import model_from_spec

        llm = model_from_spec(llm, app_settings)
    if llm is None and not user:
        raise PerfsmithError("nothing to verify: give --candidate files or an LLM")
    db = database or Database(app_settings.resolved_database_url())
    session = KernelSession(
        problem_path=path,
        problem=source,
        sandbox=sandbox,
        db=db,
        settings=settings,
        backend=backend,
        llm=llm,
    )
    session.pool.run_id = run_id
    try:
        answer = ""
        if llm is not None:
            outcome = await run(
                request_text(path, backend, settings.device, k),
                tools=session.tools(),
                llm=llm,
                database=db,
                settings=app_settings,
                max_replans=max(0, rounds - 1),
                listeners=[session.on_event, *listeners],
                kind="kernel",
                run_id=run_id,
                settle=False,
            )
            run_id, answer = outcome.run_id, outcome.answer
        else:
            request = f"verify kernels for {path}"
            if run_id is None:
                run_id = await asyncio.to_thread(RunStore(db).create_run, request, kind="kernel")
            else:
                await asyncio.to_thread(RunStore(db).claim_run, run_id, request, kind="kernel")
            session.pool.run_id = run_id
        for p, code in user:
            cand = await session.add_candidate(code, f"user:{p.name}")
            await session.verify_candidate(cand.id)
        for cid in sorted(session.candidates):  # every candidate gets a verdict
            await session.verify_candidate(cid)
        results = sorted(session.results.values(), key=lambda r: r.id)
        best = best_of(results)
        folder = report_dir or data_dir() / "reports" / run_id
        folder.mkdir(parents=True, exist_ok=True)
        best_file = None
        if best is not None:
            best_file = folder / f"{path.stem}_best.py"
            best_file.write_text(best.source, encoding="utf-8")
            row = await session.pool.row_id(best.id)
            await db.write(
                lambda s: s.add(
                    Artifact(
                        run_id=run_id,
                        candidate_id=row,
                        kind="kernel",
                        name=best_file.name if best_file else "best.py",
                        content=best.source.encode(),
                    )
                )
            )
        result = KernelOptimizeResult(
            run_id=run_id,
            problem=str(path),
            best=best,
            candidates=results,
            best_file=best_file,
            report=None,
            answer=answer,
        )
        result.report = write_report(result, folder)
        reports = report_artifacts(run_id, folder)
        if reports:
            await db.write(lambda s: s.add_all(reports))
        summary = (
            f"best: candidate {best.id} ({best.origin}), {best.result.speedup:.2f}x"
            if best is not None and best.result.speedup is not None
            else "no kernel was verified faster"
        )
        await finish_run(
            db,
            run_id,
            answer=answer or summary,
            best=best.id if best is not None else None,
            speedup=best.result.speedup if best is not None else None,
            candidates=len(results),
        )
        return result
    except BaseException as exc:
        if session.pool.run_id is not None:
            status = "cancelled" if isinstance(exc, asyncio.CancelledError) else "failed"
            await fail_run(
                db, session.pool.run_id, error=str(exc) or type(exc).__name__, status=status
            )
        raise
    finally:
        if database is None:
            db.close()
