"""``perfsmith optimize-repo``: profile a project's own command, optimize its hottest
functions, keep each speedup the project's command still accepts, one commit each, on a
new branch. The user's working tree is never touched: all work happens in a git worktree.

A repository run is a run of its own (kind ``repo``) whose functions are optimize runs
started through the run service. Its worktree and its progress (the profile, the hot
functions, each function's optimize run and outcome) are kept in the data directory until
it ends, so a killed repository run resumes where it stopped: functions already committed
or refused are not done again, an interrupted optimize run is resumed, not restarted.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import pstats
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, Unpack, cast

from perfsmith.config import data_dir
from perfsmith.errors import PerfsmithError
from perfsmith.storage.runs import RunStore
from perfsmith.verifiers.python.capture import RECORDER, RecordedCalls
from perfsmith.workflows.base import Finished, Job
from perfsmith.workflows.checkout import not_a_repository
from perfsmith.workflows.optimize import OptimizeResult, apply_atomically, optimize_config

# Imported by every Python process the command starts (through PYTHONPATH): profiles the
# whole process and leaves one pstats file per process.
_SITECUSTOMIZE = (
    RECORDER
    + r"""
import atexit, os, sys
_out = os.environ.get("PERFSMITH_PROFILE_DIR")
_want = os.environ.get("PERFSMITH_CAPTURE")
if _out and not _want:
    import cProfile
    _profiler = cProfile.Profile()
    _profiler.enable()

    def _dump():
        _profiler.disable()
        _profiler.dump_stats(os.path.join(_out, f"{os.getpid()}.pstats"))

    atexit.register(_dump)
elif _out:
    # Capture: the arguments of the named functions (first calls of each), so that
    # verification replays the inputs the project really passes.
    import pickle
    _targets = {}
    for _item in _want.split(","):
        _file, _, _name = _item.rpartition("::")
        _targets[_name] = _file
    _hook, _calls = _recorder(_targets, 24)

    def _save():
        # one pickle per target (opaque to perfsmith: only sandboxes unpickle it) and an
        # index with the counts and the first recording error
        import json
        sys.setprofile(None)
        index = {}
        errors = _calls.pop("!errors", {})
        modules = _calls.pop("!modules", {})
        for n, (key, args) in enumerate(_calls.items()):
            name = f"{os.getpid()}-{n}.calls"
            with open(os.path.join(_out, name), "wb") as f:
                pickle.dump(args, f)
            index[key] = {"file": name, "count": len(args)}
        with open(os.path.join(_out, f"{os.getpid()}.index.json"), "w") as f:
            json.dump({"calls": index, "errors": errors, "modules": modules}, f)

    sys.setprofile(_hook)
    atexit.register(_save)
"""
)


class RepoError(PerfsmithError):
    """The repository or its command cannot be used."""


@dataclass
class Hotspot:
    file: Path  # relative to the repository root
    function: str
    total_s: float
    calls: int


@dataclass
class FunctionOutcome:
    hotspot: Hotspot
    kept: bool
    commit: str | None
    note: str
    speedup: float | None = None  # the best verified candidate's
    run_id: str | None = None  # the function's optimize run

    @classmethod
    def stored(cls, hotspot: Hotspot, entry: dict[str, Any]) -> FunctionOutcome:
        """The outcome a repository run's progress holds for the function."""
        return cls(
            hotspot,
            bool(entry["kept"]),
            entry["commit"],
            entry["note"],
            entry.get("speedup"),
            entry.get("run_id"),
        )


@dataclass
class RepoResult:
    branch: str
    base: str
    baseline_s: float
    outcomes: list[FunctionOutcome] = field(default_factory=list)
    report: Path | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "branch": self.branch,
            "base": self.base,
            "baseline_s": self.baseline_s,
            "functions": [
                {
                    "target": f"{o.hotspot.file}::{o.hotspot.function}",
                    "profile_s": o.hotspot.total_s,
                    "kept": o.kept,
                    "commit": o.commit,
                    "speedup": o.speedup,
                    "note": o.note,
                    "run_id": o.run_id,
                }
                for o in self.outcomes
            ],
            "report": str(self.report) if self.report else None,
        }


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RepoError(
            f"git {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}"
        )
    return done.stdout.strip()


def run_command(
    command: str,
    cwd: Path,
    *,
    profile_dir: Path | None = None,
    capture: list[str] | None = None,
    timeout_s: float = 900,
) -> tuple[int, float, str]:
    """Run the project's command; with ``profile_dir``, every Python process it starts
    leaves a cProfile dump there. Returns (exit code, seconds, output tail)."""
    env = dict(os.environ)
    if profile_dir is not None:
        hook = profile_dir / "_hook"
        hook.mkdir(parents=True, exist_ok=True)
        (hook / "sitecustomize.py").write_text(_SITECUSTOMIZE, encoding="utf-8")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hook), env.get("PYTHONPATH")]))
        env["PERFSMITH_PROFILE_DIR"] = str(profile_dir)
        if capture:
            env["PERFSMITH_CAPTURE"] = ",".join(capture)
    t0 = time.perf_counter()
    try:
        done = subprocess.run(
            shlex.split(command),
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except FileNotFoundError as exc:
        raise RepoError(f"cannot run {command!r}: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise RepoError(f"{command!r} ran past {timeout_s:.0f} s") from exc
    tail = (done.stdout + done.stderr).strip().splitlines()[-8:]
    return done.returncode, time.perf_counter() - t0, "\n".join(tail)


def captured_inputs(capture_dir: Path, spec: str) -> RecordedCalls:
    """The calls recorded for ``spec`` (``FILE::FUNC`` or ``FILE::Class.method``) by a
    capture run, over all the command's processes."""
    blobs: list[bytes] = []
    count, error, module = 0, None, None
    for index_file in sorted(capture_dir.glob("*.index.json")):
        index = json.loads(index_file.read_text(encoding="utf-8"))
        entry = index["calls"].get(spec)
        if entry and entry["count"]:
            blobs.append((capture_dir / entry["file"]).read_bytes())
            count += int(entry["count"])
        error = error or index["errors"].get(spec)
        module = module or index["modules"].get(spec)
    return RecordedCalls(tuple(blobs), count, error, module)


def _definitions(path: Path) -> dict[int, str]:
    """The module's top-level functions and the methods of its top-level classes, by the
    line their ``def`` is on (what cProfile names them by): line -> FUNC or Class.method."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return {}
    found: dict[int, str] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            found[node.lineno] = node.name
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                # __init__ and friends build the instance a method needs: not targets
                if isinstance(item, ast.FunctionDef) and not item.name.startswith("__"):
                    found[item.lineno] = f"{node.name}.{item.name}"
    return found


def _is_test_file(rel: Path) -> bool:
    return (
        any(p in ("tests", "test") for p in rel.parts[:-1])
        or rel.name.startswith(("test_", "conftest"))
        or rel.name.endswith("_test.py")
    )


def hotspots(root: Path, profile_dir: Path, top: int) -> list[Hotspot]:
    """The project's own top-level functions and methods (tests excluded), by cumulative
    time."""
    dumps = sorted(profile_dir.glob("*.pstats"))
    if not dumps:
        raise RepoError("the command started no Python process that could be profiled")
    stats = pstats.Stats(str(dumps[0]))
    for extra in dumps[1:]:
        stats.add(str(extra))
    root = root.resolve()
    found: dict[tuple[Path, str], Hotspot] = {}
    functions_by_file: dict[Path, dict[int, str]] = {}
    for (filename, line, _name), (_cc, calls, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        path = Path(filename)
        if not path.is_absolute():
            path = root / path
        try:
            rel = path.resolve().relative_to(root)
        except (ValueError, OSError):
            continue
        if rel.suffix != ".py" or _is_test_file(rel):
            continue
        if rel not in functions_by_file:
            functions_by_file[rel] = _definitions(root / rel)
        name = functions_by_file[rel].get(line)
        if name is None:
            continue
        key = (rel, name)
        if key not in found or found[key].total_s < ct:
            found[key] = Hotspot(rel, name, float(ct), int(calls))
    ranked = sorted(found.values(), key=lambda h: h.total_s, reverse=True)
    return ranked[:top]


def _branch_exists(repo: Path, name: str) -> bool:
    found = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"refs/heads/{name}"],
        capture_output=True,
    )
    return found.returncode == 0


def _check_repo(repo: Path, branch: str | None) -> tuple[str, str]:
    """The base commit and the new branch's name; the repository must be a git work tree
    and the branch must not exist yet."""
    problem = not_a_repository(repo)
    if problem is not None:
        raise RepoError(problem)
    base = _git(repo, "rev-parse", "HEAD")
    name = branch or f"perfsmith/optimize-{base[:8]}"
    if _branch_exists(repo, name):
        raise RepoError(f"branch {name!r} already exists; pass --branch NAME")
    return base, name


class RepoOptions(TypedDict, total=False):
    """What a repository run is asked to do, beyond its repository, command and model
    (each optional; the defaults are `repo_config`'s)."""

    top: int  # the hottest functions to optimize (3)
    branch: str | None  # the branch to commit to (default: perfsmith/<date>)
    rounds: int  # planning rounds per function (1)
    k: int  # candidates per round (3)
    candidates: dict[str, list[Path]] | None  # FILE::FUNC (in the repository) -> files
    verify_rounds: int  # timing rounds per verdict (12)
    report_dir: Path | None  # the report's folder (default: under the data directory)


def repo_config(
    repo: Path, *, command: str, llm: str | None, **options: Unpack[RepoOptions]
) -> dict[str, Any]:
    """A repository run's config: everything `resume` needs. ``candidates`` maps
    ``FILE::FUNC`` (relative to the repository) to candidate files verified alongside."""
    report_dir = options.get("report_dir")
    return {
        "repo": str(repo),
        "command": command,
        "llm": llm,
        "top": options.get("top", 3),
        "branch": options.get("branch"),
        "rounds": options.get("rounds", 1),
        "k": options.get("k", 3),
        "candidates": {
            f: [str(p) for p in ps] for f, ps in (options.get("candidates") or {}).items()
        },
        "verify_rounds": options.get("verify_rounds", 12),
        "report_dir": str(report_dir) if report_dir else None,
    }


class Progress:
    """What a repository run has done so far, kept in a JSON file beside its worktree
    (written whole, atomically, after every step)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "progress.json"
        self.data: dict[str, Any] = {}
        if self.path.exists():
            self.data = json.loads(self.path.read_text(encoding="utf-8"))

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data), encoding="utf-8")
        tmp.replace(self.path)

    def function(self, spec: str) -> dict[str, Any]:
        entry: dict[str, Any] = self.data.setdefault("functions", {}).setdefault(spec, {})
        return entry


class RepoWorkflow:
    """``perfsmith optimize-repo``'s runs; see the module docstring. Its config is
    `repo_config`'s; each hot function is an ``optimize`` run through ``job.runs``."""

    kind = "repo"

    def request_text(self, config: dict[str, Any]) -> str:
        return (
            f"Profile `{config['command']}` in {config['repo']}, optimize its "
            f"{config.get('top', 3)} hottest functions, and commit each verified speedup "
            "the command still accepts to a new branch."
        )

    def check(self, config: dict[str, Any]) -> dict[str, Any]:
        repo = Path(config["repo"]).resolve()
        base, name = _check_repo(repo, config.get("branch"))
        for function, paths in (config.get("candidates") or {}).items():
            if "::" not in function:
                raise RepoError(f"{function!r} is not FILE::FUNC")
            for path in paths:
                if not Path(path).is_file():
                    raise RepoError(f"candidate file {path} does not exist")
        return {**config, "repo": str(repo), "base": base, "branch": name}

    async def start(self, job: Job) -> Finished:
        return await self._work(job)

    async def resume(self, job: Job, follow_up: str | None) -> Finished:
        if follow_up is not None:
            raise PerfsmithError(
                "a repository run takes no follow-up: resume it, or optimize one function"
            )
        return await self._work(job)

    async def _work(self, job: Job) -> Finished:
        config = job.config
        repo, base, branch = Path(config["repo"]), str(config["base"]), str(config["branch"])
        folder = data_dir() / "repo-runs" / job.run_id
        work = folder / "worktree"
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        progress = await asyncio.to_thread(Progress, folder)
        try:
            await asyncio.to_thread(_open_worktree, repo, work, base, branch)
            result = await self._functions(job, progress, work, folder / "profile")
        except BaseException:
            if not progress.data.get("functions"):
                # nothing done that a resume could reuse: leave no half-made branch
                await asyncio.to_thread(_drop_worktree, repo, work, branch)
                await asyncio.to_thread(shutil.rmtree, folder, True)
            raise
        report_folder = job.report_folder(f"repo-{branch.replace('/', '-')}")
        result.report = await asyncio.to_thread(
            write_repo_report, result, report_folder, str(config["command"])
        )
        await asyncio.to_thread(_drop_worktree, repo, work, None)
        await asyncio.to_thread(shutil.rmtree, folder, True)
        kept = sum(o.kept for o in result.outcomes)
        return Finished(
            answer=f"branch {branch}: {kept} commit(s) on {base[:10]}",
            result=result,
            summary={
                "kept": kept,
                "functions": len(result.outcomes),
                "branch": branch,
                "runs": [o.run_id for o in result.outcomes if o.run_id],
                "commits": [
                    {
                        "target": f"{o.hotspot.file}::{o.hotspot.function}",
                        "commit": o.commit,
                        "speedup": o.speedup,
                    }
                    for o in result.outcomes
                    if o.kept
                ],
            },
        )

    async def _functions(
        self, job: Job, progress: Progress, work: Path, profile_dir: Path
    ) -> RepoResult:
        config = job.config
        command = str(config["command"])
        if "spots" not in progress.data:
            await asyncio.to_thread(shutil.rmtree, profile_dir, True)
            await asyncio.to_thread(profile_dir.mkdir, parents=True)
            code, seconds, tail = await asyncio.to_thread(
                run_command, command, work, profile_dir=profile_dir
            )
            if code != 0:
                raise RepoError(f"{command!r} fails before any change (exit {code}): {tail}")
            spots = hotspots(work, profile_dir, int(config.get("top", 3)))
            # A second run records the hot functions' real arguments: verification replays
            # them (inputs inferred from type hints for a function never captured).
            specs = [f"{spot.file}::{spot.function}" for spot in spots]
            if specs:
                code, _, tail = await asyncio.to_thread(
                    run_command, command, work, profile_dir=profile_dir / "capture", capture=specs
                )
                if code != 0:
                    raise RepoError(f"{command!r} fails while its calls are recorded: {tail}")
            progress.data["baseline_s"] = seconds
            progress.data["spots"] = [[str(h.file), h.function, h.total_s, h.calls] for h in spots]
            await asyncio.to_thread(progress.save)
        result = RepoResult(
            branch=str(config["branch"]),
            base=str(config["base"]),
            baseline_s=float(progress.data["baseline_s"]),
        )
        for file, function, total_s, calls in progress.data["spots"]:
            spot = Hotspot(Path(file), function, float(total_s), int(calls))
            result.outcomes.append(await self._function(job, progress, work, profile_dir, spot))
        return result

    async def _function(
        self, job: Job, progress: Progress, work: Path, profile_dir: Path, spot: Hotspot
    ) -> FunctionOutcome:
        """One hot function: its optimize run (started, or resumed where it stopped), then
        the winner applied, checked by the project's command and committed."""
        config = job.config
        command = str(config["command"])
        spec = f"{spot.file}::{spot.function}"
        entry = progress.function(spec)
        if "kept" in entry:  # done before the run stopped
            return FunctionOutcome.stored(spot, entry)
        # whatever a stopped step left in the worktree goes: the branch holds what was kept
        await asyncio.to_thread(_git, work, "reset", "-q", "--hard")
        calls = captured_inputs(profile_dir / "capture", spec)
        extras = {"recorded": calls} if calls.count else {}
        outcome = await self._optimize(job, progress, entry, spot, work, calls, extras)
        if isinstance(outcome, str):
            return await self._settle_function(progress, entry, spot, None, False, None, outcome)
        if outcome.best is None:
            note = "no candidate was verified faster"
            return await self._settle_function(progress, entry, spot, outcome, False, None, note)
        # the winner must also pass the project's own command
        await asyncio.to_thread(apply_atomically, work / spot.file, outcome.best.module)
        code, _, tail = await asyncio.to_thread(run_command, command, work)
        if code != 0:
            await asyncio.to_thread(_git, work, "reset", "-q", "--hard")
            note = f"{command!r} failed with it: {tail}"
            return await self._settle_function(progress, entry, spot, outcome, False, None, note)
        speed = outcome.best.speedup or 0.0
        await asyncio.to_thread(_git, work, "add", str(spot.file))
        await asyncio.to_thread(
            _git,
            work,
            "-c",
            "user.name=perfsmith",
            "-c",
            "user.email=perfsmith@localhost",
            "commit",
            "-q",
            "-m",
            f"perfsmith: {spec} {speed:.2f}x faster\n\nVerified by perfsmith (run "
            f"{outcome.run_id}); {command!r} passes.",
        )
        commit = await asyncio.to_thread(_git, work, "rev-parse", "HEAD")
        return await self._settle_function(
            progress, entry, spot, outcome, True, commit, f"{speed:.2f}x"
        )

    async def _optimize(
        self,
        job: Job,
        progress: Progress,
        entry: dict[str, Any],
        spot: Hotspot,
        work: Path,
        calls: RecordedCalls,
        extras: dict[str, Any],
    ) -> OptimizeResult | str:
        """The function's optimize run: resumed when an earlier attempt was interrupted,
        else started. A string: why the function was not optimized."""
        runs = job.runs
        if runs is None:
            raise PerfsmithError("a repository run needs the run service to start its runs")
        config = job.config
        spec = f"{spot.file}::{spot.function}"
        child: str | None = entry.get("run_id")
        try:
            if child is not None:
                row = await asyncio.to_thread(RunStore(job.db).get_run, child)
                # an optimize run that stopped is finished, not restarted (a done one whose
                # result was not kept before the stop is started anew)
                if row.status != "done":
                    resumed = await runs.resume(
                        child, resources=job.resources, listeners=job.listeners, extras=extras
                    )
                    return cast(OptimizeResult, resumed.result)
            seconds = float(progress.data["baseline_s"])
            note = (
                f"The project's command `{config['command']}` ran in {seconds:.2f} s; under "
                f"cProfile {spot.function} took {spot.total_s:.3f} s (cumulative) over "
                f"{spot.calls} call(s). "
                + (
                    f"{calls.count} of its calls were recorded from the command and are "
                    "replayed as verification inputs."
                    if calls.count
                    else calls.why_none(spec, f"`{config['command']}`")
                    + "; inputs come from type hints."
                )
            )
            child_config = optimize_config(
                f"{work / spot.file}::{spot.function}",
                llm=config.get("llm"),
                candidates=(config.get("candidates") or {}).get(spec, []),
                rounds=int(config.get("rounds", 1)),
                k=int(config.get("k", 3)),
                verify_rounds=int(config.get("verify_rounds", 12)),
                profile_note=note,
            )
            child = await runs.create("optimize", child_config)
            entry["run_id"] = child
            await asyncio.to_thread(progress.save)
            started = await runs.start(
                "optimize",
                child_config,
                run_id=child,
                resources=job.resources,
                listeners=job.listeners,
                extras=extras,
            )
            return cast(OptimizeResult, started.result)
        except PerfsmithError as exc:
            return f"not optimized: {exc}"

    async def _settle_function(
        self,
        progress: Progress,
        entry: dict[str, Any],
        spot: Hotspot,
        outcome: OptimizeResult | None,
        kept: bool,
        commit: str | None,
        note: str,
    ) -> FunctionOutcome:
        speedup = outcome.best.speedup if outcome and outcome.best else None
        entry.update(kept=kept, commit=commit, note=note, speedup=speedup)
        await asyncio.to_thread(progress.save)
        return FunctionOutcome.stored(spot, entry)


def _open_worktree(repo: Path, work: Path, base: str, branch: str) -> None:
    """The run's worktree on its branch: made (with the branch, at ``base``), found as a
    stopped run left it, or made again from the branch where it was removed."""
    if (work / ".git").exists():
        return
    _git(repo, "worktree", "prune")
    if _branch_exists(repo, branch):
        _git(repo, "worktree", "add", str(work), branch)
    else:
        _git(repo, "worktree", "add", "-b", branch, str(work), base)


def _drop_worktree(repo: Path, work: Path, branch: str | None) -> None:
    """Remove the run's worktree (and ``branch`` with it, when given)."""
    subprocess.run(
        ["git", "-C", str(repo), "worktree", "remove", "--force", str(work)], capture_output=True
    )
    subprocess.run(["git", "-C", str(repo), "worktree", "prune"], capture_output=True)
    if branch is not None:
        subprocess.run(["git", "-C", str(repo), "branch", "-D", branch], capture_output=True)


def write_repo_report(result: RepoResult, folder: Path, command: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# perfsmith optimize-repo: branch `{result.branch}`",
        "",
        f"base `{result.base[:12]}` · command `{command}` ({result.baseline_s:.2f} s before)",
        "",
        "| function | profiled s | kept | commit | note |",
        "|---|---|---|---|---|",
    ]
    for o in result.outcomes:
        lines.append(
            f"| {o.hotspot.file}::{o.hotspot.function} | {o.hotspot.total_s:.3f} | "
            f"{'yes' if o.kept else 'no'} | {(o.commit or '-')[:12]} | "
            f"{o.note.splitlines()[0][:120] if o.note else ''} |"
        )
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
