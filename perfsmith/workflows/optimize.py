"""``perfsmith optimize``: make one Python function faster, with proof.

The planner LLM plans over four tools bound to the target: ``profile`` (the workload under
cProfile in the sandbox), ``read_source`` (the function and its module), ``propose`` (one
candidate from the LLM, given a strategy and feedback) and ``verify`` (correctness first,
then speed, in the sandbox). The joiner sees every verdict and replans a new round from the
best candidates and the failures, up to ``rounds``. Candidates given by the user are
verified alongside. Every candidate is stored with its source, verdict and measurements;
identical candidates are verified once.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, Unpack

from perfsmith.errors import CandidateError, PerfsmithError
from perfsmith.llm.base import ChatModel
from perfsmith.llm.degenerate import cut_repetition
from perfsmith.sandbox.base import Sandbox
from perfsmith.storage.artifacts import report_artifacts
from perfsmith.storage.models import Artifact
from perfsmith.storage.models import Candidate as CandidateRow
from perfsmith.tools.profiling import ProfileError, profile_workload
from perfsmith.tools.python import PRODUCERS, STRATEGIES, python_tools
from perfsmith.tools.registry import Tool
from perfsmith.verifiers.python.capture import (
    CaptureError,
    RecordedCalls,
    ReplayedInputs,
    capture_calls,
)
from perfsmith.verifiers.python.efficiency import TimingError
from perfsmith.verifiers.python.target import Target, parse_target, source_hash
from perfsmith.verifiers.python.verify import VerifyResult, verify
from perfsmith.workflows.base import Finished, Job
from perfsmith.workflows.candidates import Candidate, splice
from perfsmith.workflows.guard import CandidateGuard
from perfsmith.workflows.pool import stored_ci
from perfsmith.workflows.session import (
    CandidateSession,
    CandidateWorkflow,
    best_json,
    record_verdict,
)

log = logging.getLogger(__name__)


def describe_source(origin: str, rules: Sequence[str] = ()) -> dict[str, Any]:
    """Which source produced a candidate, from its origin (``catalogue:RULE``,
    ``ruff:RULES``, ``llm:STRATEGY``, ``user:FILE``) and, for a catalogue candidate that
    applies several rules, their ids."""
    kind, _, detail = origin.partition(":")
    if kind == "catalogue":
        return {"kind": "catalogue", "rules": list(rules) or [detail]}
    if kind == "ruff":
        return {"kind": "ruff", "rules": detail.split(",")}
    if kind == "llm":
        return {"kind": "model", "strategy": detail}
    if kind == "user":
        return {"kind": "user", "file": detail}
    return {"kind": kind, "detail": detail}


def source_text(source: dict[str, Any]) -> str:
    """One line for a report: "catalogue: rule-a + rule-b", "model: algorithm"."""
    kind = source.get("kind", "")
    if "rules" in source:
        return f"{kind}: {' + '.join(source['rules'])}"
    detail = source.get("strategy") or source.get("file") or source.get("detail") or ""
    return f"{kind}: {detail}" if detail else str(kind)


@dataclass
class CandidateResult:
    id: int
    origin: str
    verdict: str
    speedup: float | None
    ci: tuple[float, float] | None
    failure: str | None
    code: str
    module: str
    source: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "origin": self.origin,
            "source": self.source or describe_source(self.origin),
            "verdict": self.verdict,
            "speedup": self.speedup,
            "ci": list(self.ci) if self.ci else None,
            "failure": self.failure,
        }


@dataclass
class OptimizeResult:
    run_id: str
    target: str
    best: CandidateResult | None
    candidates: list[CandidateResult]
    diff: str
    applied: bool
    answer: str = ""
    report: Path | None = None

    def as_json(self) -> dict[str, Any]:
        b = self.best
        best = best_json(b.code, b.speedup, b.ci, b.origin) if b is not None else None
        return {
            "run_id": self.run_id,
            "target": self.target,
            "best": best,
            "candidates": [c.as_dict() for c in self.candidates],
            "diff": self.diff,
            "report": str(self.report) if self.report else None,
            "applied": self.applied,
        }


@dataclass(kw_only=True)
class OptimizeSession(CandidateSession[Candidate, CandidateResult]):
    """The state the tools of one optimize run share."""

    target: Target
    workload: Target | None = None
    generator: Target | None = None
    verify_rounds: int = 12
    profile_report: dict[str, Any] | None = None
    replayed: ReplayedInputs | None = None  # the workload's calls, when no generator
    # what is known of the target's cost from outside (optimize-repo: the project's command)
    profile_note: str | None = None
    rule_sets: dict[int, tuple[str, ...]] = field(default_factory=dict, init=False)

    # -- candidates ------------------------------------------------------------------

    async def add_candidate(self, code: str, origin: str, rules: Sequence[str] = ()) -> Candidate:
        """Splice ``code`` into the target module and store it; a duplicate returns the
        candidate already stored. ``rules``: the catalogue rules a rewrite applies."""
        module = splice(self.target.source, self.target.function, code)
        digest = source_hash(module)
        if rules and digest not in self.pool.by_hash:
            self.rule_sets[self.pool.next_id] = tuple(rules)
        return await self.pool.add(
            digest,
            lambda cid: Candidate(id=cid, origin=origin, code=code, module=module, hash=digest),
            lambda run_id: CandidateRow(
                run_id=run_id, origin=origin[:64], source=code, source_hash=digest
            ),
        )

    async def _verify(self, cid: int) -> CandidateResult:
        candidate = self.candidates[cid]
        try:
            outcome: VerifyResult = await verify(
                self.sandbox,
                self.target,
                candidate.target(self.target.function),
                generator=self.generator,
                given_inputs=self.replayed,
                rounds=self.verify_rounds,
            )
        except TimingError as exc:
            # the timing rounds themselves failed (e.g. the original is too slow on these
            # inputs for the round's limits): no verdict on speed, said plainly
            outcome = VerifyResult(
                correct=True,
                failure=f"not timed: {exc}",
                verdict="same",
                speedup=None,
                ci=None,
                n_inputs=0,
                mode="time",
                flags=["unmeasured"],
            )
        verdict = "unmeasured" if "unmeasured" in outcome.flags else outcome.verdict
        result = CandidateResult(
            id=cid,
            origin=candidate.origin,
            verdict=verdict,
            speedup=outcome.speedup,
            ci=outcome.ci,
            failure=outcome.failure,
            code=candidate.code,
            module=candidate.module,
            source=describe_source(candidate.origin, self.rule_sets.get(cid, ())),
        )
        self.results[cid] = result
        await self.pool.store(
            cid,
            lambda s, row_id: record_verdict(
                s,
                row_id,
                verdict=verdict,
                speedup=outcome.speedup,
                ci=outcome.ci,
                failure=outcome.failure,
                kind=outcome.mode,
                meta={"n_inputs": outcome.n_inputs, **outcome.details},
            ),
        )
        return result

    # -- preparation ---------------------------------------------------------------

    async def check_workload(self) -> dict[str, Any]:
        """Run the workload once under the profiler; a workload that fails is the user's
        error, reported before any LLM call."""
        assert self.workload is not None
        try:
            return await profile_workload(self.sandbox, self.target, self.workload)
        except ProfileError as exc:
            raise PerfsmithError(str(exc)) from exc

    async def replay_inputs(self) -> None:
        """Without a generator, the calls the workload really makes to the target become
        the inputs (recorded in the sandbox); with none recorded, type hints remain."""
        if self.generator is not None or self.workload is None or self.replayed is not None:
            return
        try:
            calls = await capture_calls(self.sandbox, self.target, self.workload)
        except CaptureError as exc:
            raise PerfsmithError(str(exc)) from exc
        if calls.count:
            self.replayed = ReplayedInputs(self.target, calls, str(self.workload))
        elif calls.error is not None:  # a method whose instance cannot be recorded, say
            raise PerfsmithError(calls.why_none(str(self.target), f"the workload {self.workload}"))

    producers = PRODUCERS

    def default_plan(self, k: int) -> str:
        return default_plan(k, self.workload is not None)


def request_text(target: Target, k: int, has_workload: bool) -> str:
    steps = "profile it, " if has_workload else ""
    return (
        f"Make the Python function {target.function} (in {target.path.name}) faster without "
        f"changing its results: {steps}read its source, rewrite it with the catalogue, apply "
        f"ruff's fixes, propose {k} candidates in parallel with different strategies "
        f"({', '.join(STRATEGIES[:k])}), verify every candidate, and finish with the fastest "
        "verified candidate."
    )


def default_plan(k: int, has_workload: bool) -> str:
    """The plan that runs when the planner's plans fall short: every candidate source,
    every candidate verified."""
    lines: list[str] = []

    def add(call: str) -> int:
        lines.append(f"{len(lines) + 1}. {call}")
        return len(lines)

    profile = add("profile()") if has_workload else None
    add("read_source()")
    sources = [add("rewrite()"), add("ruff_fix()")]
    feedback = f", feedback=${profile}" if profile else ""
    sources += [add(f'propose(strategy="{s}"{feedback})') for s in STRATEGIES[: max(1, k)]]
    for n in sources:
        add(f"verify(candidate=${n})")
    thought = "Thought: every candidate source in parallel, then verify each candidate.\n"
    return thought + "\n".join(lines) + "\njoin()\n"


MODEL_FREE_NAME = "no model (the rewrite catalogue and ruff's fixes)"
MODEL_FREE_FINISH = (
    "Thought: the model-free plan ran.\n"
    "Action: Finish(the catalogue's rewrites and ruff's fixes were verified)"
)


def model_free_plan(has_workload: bool) -> str:
    """What runs without a model (`--llm none`): the rewrite catalogue and ruff's fixes,
    each candidate verified."""
    lines = ["profile()"] if has_workload else []
    lines += ["read_source()", "rewrite()", "ruff_fix()"]
    first = len(lines) - 1  # rewrite's task number
    lines += [f"verify(candidate=${first})", f"verify(candidate=${first + 1})"]
    numbered = "\n".join(f"{i}. {call}" for i, call in enumerate(lines, start=1))
    return f"Thought: no model: the catalogue's rewrites and ruff's fixes.\n{numbered}\njoin()\n"


def model_free_model(has_workload: bool) -> ChatModel:
    """The planner and joiner of a run without a model: the fixed plan, then finish."""
    from perfsmith.llm.scripted import ScriptedChatModel

    return ScriptedChatModel(
        {"planner": [model_free_plan(has_workload)], "joiner": [MODEL_FREE_FINISH]},
        name=MODEL_FREE_NAME,
    )


def outcome_summary(
    best: CandidateResult | None, results: list[CandidateResult], shortfalls: list[str]
) -> str:
    """What the run found, in plain words: the winner, or why there is none (every
    candidate's verdict, or why no candidate was produced)."""
    if best is not None and best.speedup is not None:
        ci = f" (95% interval {best.ci[0]:.2f}-{best.ci[1]:.2f})" if best.ci else ""
        return f"best: candidate {best.id} ({best.origin}), {best.speedup:.2f}x faster{ci}."
    if not results:
        why = f" {shortfalls[-1]}" if shortfalls else ""
        return f"No candidate was produced, so nothing was verified.{why}"

    def line(r: CandidateResult) -> str:
        speed = f" {r.speedup:.2f}x" if r.speedup is not None else ""
        failure = f" ({' '.join((r.failure or '').split())[:120]})" if r.failure else ""
        return f"{r.id} {r.origin}: {r.verdict}{speed}{failure}"

    tried = "; ".join(line(r) for r in results[:12])
    more = f"; and {len(results) - 12} more" if len(results) > 12 else ""
    return f"No candidate was verified faster. Tried {len(results)}: {tried}{more}."


def best_of(results: Iterable[CandidateResult]) -> CandidateResult | None:
    faster = [r for r in results if r.verdict == "faster" and r.speedup is not None]
    return max(faster, key=lambda r: r.speedup or 0.0, default=None)


def unified_diff(target: Target, module: str) -> str:
    return "".join(
        difflib.unified_diff(
            target.source.splitlines(keepends=True),
            module.splitlines(keepends=True),
            fromfile=f"a/{target.path.name}",
            tofile=f"b/{target.path.name}",
        )
    )


def apply_atomically(path: Path, text: str) -> None:
    """Replace ``path``'s content all at once (a crash leaves the old or the new file)."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        tmp.chmod(path.stat().st_mode & 0o7777)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


ReportWriter = Callable[["OptimizeResult", OptimizeSession, Path], Path]


class OptimizeOptions(TypedDict, total=False):
    """What an optimize run is asked to do, beyond its target and model (each optional;
    the defaults are `optimize_config`'s)."""

    workload: str | Target | None  # FILE::FUNC run under the profiler (default: none)
    inputs: str | Target | None  # FILE::FUNC generating the inputs (default: inferred)
    candidates: Iterable[str | Path]  # the user's own candidate files (default: none)
    rounds: int  # planning rounds (2)
    k: int  # candidates the model writes per round (3)
    apply: bool  # write the best over the file (False)
    report_dir: Path | None  # the report's folder (default: under the data directory)
    verify_rounds: int  # timing rounds per verdict (12)
    profile_note: str | None  # the target's cost measured elsewhere (optimize-repo)
    report: bool  # write a report (True)


def optimize_config(
    target: str | Target, *, llm: str | None, **options: Unpack[OptimizeOptions]
) -> dict[str, Any]:
    """An optimize run's config: everything `resume` needs to rebuild it (``llm`` is a
    spec, or None for a run with an in-process model or none)."""
    workload, inputs = options.get("workload"), options.get("inputs")
    report_dir = options.get("report_dir")
    return {
        "target": str(target),
        "workload": str(workload) if workload else None,
        "inputs": str(inputs) if inputs else None,
        "candidates": [str(p) for p in options.get("candidates", ())],
        "rounds": options.get("rounds", 2),
        "k": options.get("k", 3),
        "llm": llm,
        "verify_rounds": options.get("verify_rounds", 12),
        "apply": options.get("apply", False),
        "report_dir": str(report_dir) if report_dir else None,
        "profile_note": options.get("profile_note"),
        "report": options.get("report", True),
    }


class OptimizeWorkflow(CandidateWorkflow[OptimizeSession]):
    """``perfsmith optimize``'s runs; see the module docstring. Its config is
    `optimize_config`'s; ``extras["recorded"]`` are calls to the target recorded elsewhere
    (optimize-repo: from the project's command), replayed as the inputs."""

    kind = "optimize"

    def __init__(self, write_report: ReportWriter | None = None) -> None:
        self.write_report = write_report

    def request_text(self, config: dict[str, Any]) -> str:
        ref = parse_target(str(config["target"]))
        return request_text(ref, int(config.get("k", 3)), config.get("workload") is not None)

    def check(self, config: dict[str, Any]) -> dict[str, Any]:
        ref = parse_target(str(config["target"]))
        _load(config.get("workload"), "workload function")
        _load(config.get("inputs"), "input generator")
        for path in config.get("candidates") or []:
            _read_candidate(ref, path)
        return config

    def tools(self, session: OptimizeSession) -> list[Tool]:
        return python_tools(session)

    def session(self, job: Job, sandbox: Sandbox, llm: ChatModel | None) -> OptimizeSession:
        config = job.config
        session = OptimizeSession(
            target=parse_target(str(config["target"])),
            sandbox=sandbox,
            db=job.db,
            workload=_load(config.get("workload"), "workload function"),
            generator=_load(config.get("inputs"), "input generator"),
            llm=llm,
            verify_rounds=int(config.get("verify_rounds", 12)),
            profile_note=config.get("profile_note"),
        )
        session.run_id = job.run_id
        recorded: RecordedCalls | None = job.extras.get("recorded")
        if recorded is not None:
            session.replayed = ReplayedInputs(session.target, recorded, "the project's command")
        return session

    def planner(self, job: Job, llm: ChatModel | None, *, resuming: bool) -> ChatModel | None:
        # without a model, the model-free plan: the catalogue and ruff's fixes
        return llm or model_free_model(job.config.get("workload") is not None)

    def guard(self, job: Job, session: OptimizeSession) -> CandidateGuard | None:
        # without a model the model-free plan is the whole plan: nothing to guard or replan
        return None if session.llm is None else session.guard(int(job.config.get("k", 3)))

    def max_replans(self, job: Job, session: OptimizeSession) -> int:
        return 0 if session.llm is None else super().max_replans(job, session)

    async def prepare(self, job: Job, session: OptimizeSession, *, resuming: bool) -> None:
        work = session.workload
        if work is not None and not resuming:
            log.info("profiling the workload %s in the sandbox", work)
            session.profile_report = await session.check_workload()
            if session.generator is None:
                log.info("recording the calls the workload makes to %s", session.target.function)
        await session.replay_inputs()
        if not resuming:
            log.info("planning with %s", getattr(session.llm, "name", None) or MODEL_FREE_NAME)

    async def restore(self, job: Job, session: OptimizeSession) -> None:
        ref = session.target

        def item(cid: int, row: CandidateRow) -> Candidate:
            module = splice(ref.source, ref.function, row.source)
            return Candidate(cid, row.origin, row.source, module, row.source_hash)

        def result(cid: int, row: CandidateRow) -> CandidateResult:
            return CandidateResult(
                id=cid,
                origin=row.origin,
                verdict=row.verdict or "",
                speedup=row.speedup,
                ci=stored_ci(row),
                failure=row.failure,
                code=row.source,
                module=session.pool.items[cid].module,
            )

        await session.pool.restore_run(job.run_id, item, result)

    async def given(self, job: Job, session: OptimizeSession) -> list[tuple[str, str]]:
        paths = job.config.get("candidates") or []
        read = [await asyncio.to_thread(_read_candidate, session.target, p) for p in paths]
        return [(f"user:{path.name}", code) for path, code in read]

    async def conclude(
        self, job: Job, session: OptimizeSession, results: list[CandidateResult], answer: str
    ) -> Finished:
        """Pick the best, write the report, apply it if asked."""
        config, run_id = job.config, job.run_id
        ref = session.target
        best = best_of(results)
        diff = unified_diff(ref, best.module) if best else ""
        # perfsmith's own words first (what won, or why nothing did), then the model's
        summary = outcome_summary(best, results, session.shortfalls)
        note = cut_repetition(answer).text if answer else ""
        final = summary + (f"\n{note}" if note and note != summary else "")
        outcome = OptimizeResult(
            run_id=run_id,
            target=str(ref),
            best=best,
            candidates=results,
            diff=diff,
            applied=False,
            answer=final,
        )
        if self.write_report is not None and config.get("report", True):
            outcome.report = self.write_report(outcome, session, job.report_folder())
        if config.get("apply") and best is not None:
            apply_atomically(ref.path, best.module)
            outcome.applied = True
        artifacts: list[Artifact] = []
        if best is not None:
            artifacts.append(
                await session.candidate_artifact(
                    best.id,
                    kind="diff",
                    name=f"{ref.path.name}.diff",
                    media_type="text/x-diff",
                    content=diff.encode(),
                )
            )
        if outcome.report is not None:
            artifacts.extend(report_artifacts(run_id, outcome.report.parent))
        await session.keep(artifacts)
        return Finished(
            answer=final,
            result=outcome,
            summary={
                "best": best.id if best is not None else None,
                "speedup": best.speedup if best is not None else None,
                "candidates": len(results),
            },
        )


def _load(spec: str | Target | None, what: str) -> Target | None:
    if spec is None or isinstance(spec, Target):
        return spec
    return parse_target(spec, what=what)


def _read_candidate(ref: Target, path: str | Path) -> tuple[Path, str]:
    """A user's candidate file, checked to define the function."""
    try:
        code = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CandidateError(f"cannot read candidate {path}: {exc}") from exc
    splice(ref.source, ref.function, code)
    return Path(path), code
