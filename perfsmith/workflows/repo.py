"""``perfsmith optimize-repo``: profile a project's own command, optimize its hottest
functions, keep each speedup the project's command still accepts, one commit each, on a
new branch. The user's working tree is never touched: all work happens in a git worktree.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import pstats
import shlex
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from perfsmith.config import data_dir
from perfsmith.errors import PerfsmithError
from perfsmith.events import EventListener
from perfsmith.llm.base import ChatModel
from perfsmith.sandbox.base import Sandbox
from perfsmith.storage.db import Database
from perfsmith.verifiers.python.capture import RECORDER, RecordedCalls
from perfsmith.workflows.optimize import OptimizeResult


class OptimizeOne(Protocol):
    """How a repository run optimizes one function: an optimize run of its own (the run
    service's `optimize`)."""

    def __call__(
        self,
        target: str,
        *,
        sandbox: Sandbox,
        llm: ChatModel | str | None,
        candidates: Iterable[str | Path],
        recorded: RecordedCalls | None,
        profile_note: str,
        rounds: int,
        k: int,
        apply: bool,
        database: Database | None,
        listeners: Iterable[EventListener],
        verify_rounds: int,
    ) -> Awaitable[OptimizeResult]: ...


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
    result: OptimizeResult | None
    kept: bool
    commit: str | None
    note: str


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
                    "speedup": o.result.best.speedup if o.result and o.result.best else None,
                    "note": o.note,
                    "run_id": o.result.run_id if o.result else None,
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


def _check_repo(repo: Path, branch: str | None) -> tuple[str, str]:
    """The base commit and the new branch's name; the repository must be a git work tree
    and the branch must not exist yet."""
    if not repo.is_dir():
        raise RepoError(f"{repo} is not a directory")
    if not (repo / ".git").exists():
        raise RepoError(f"{repo} is not a git repository (no .git)")
    base = _git(repo, "rev-parse", "HEAD")
    name = branch or f"perfsmith/optimize-{base[:8]}"
    existing = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"refs/heads/{name}"],
        capture_output=True,
    )
    if existing.returncode == 0:
        raise RepoError(f"branch {name!r} already exists; pass --branch NAME")
    return base, name


async def optimize_repo(
    repo: Path,
    *,
    command: str,
    sandbox: Sandbox,
    llm: ChatModel | str | None,
    top: int = 3,
    branch: str | None = None,
    rounds: int = 1,
    k: int = 3,
    candidates: dict[str, list[Path]] | None = None,
    database: Database | None = None,
    listeners: Iterable[EventListener] = (),
    verify_rounds: int = 12,
    report_dir: Path | None = None,
    optimize: OptimizeOne,
) -> RepoResult:
    """See the module docstring. ``candidates`` maps ``FILE::FUNC`` (relative to the
    repository) to candidate files verified alongside the LLM's; ``optimize`` optimizes
    each hot function as a run of its own."""
    base, name = await asyncio.to_thread(_check_repo, repo, branch)
    repo = await asyncio.to_thread(repo.resolve)
    with tempfile.TemporaryDirectory(prefix="perfsmith-repo-") as tmp:
        work = Path(tmp) / "worktree"
        await asyncio.to_thread(_git, repo, "worktree", "add", "-b", name, str(work), base)
        failed = True
        try:
            outcome = await _in_worktree(
                repo,
                work,
                base,
                name,
                command=command,
                sandbox=sandbox,
                llm=llm,
                top=top,
                rounds=rounds,
                k=k,
                candidates=candidates or {},
                database=database,
                listeners=listeners,
                verify_rounds=verify_rounds,
                report_dir=report_dir,
                profile_dir=Path(tmp) / "profile",
                optimize=optimize,
            )
            failed = False
            return outcome
        finally:
            await asyncio.to_thread(
                subprocess.run,
                ["git", "-C", str(repo), "worktree", "remove", "--force", str(work)],
                capture_output=True,
            )
            if failed:  # leave no half-made branch behind
                await asyncio.to_thread(
                    subprocess.run,
                    ["git", "-C", str(repo), "branch", "-D", name],
                    capture_output=True,
                )


async def _in_worktree(
    repo: Path,
    work: Path,
    base: str,
    branch: str,
    *,
    command: str,
    sandbox: Sandbox,
    llm: ChatModel | str | None,
    top: int,
    rounds: int,
    k: int,
    candidates: dict[str, list[Path]],
    database: Database | None,
    listeners: Iterable[EventListener],
    verify_rounds: int,
    report_dir: Path | None,
    profile_dir: Path,
    optimize: OptimizeOne,
) -> RepoResult:
    await asyncio.to_thread(profile_dir.mkdir, parents=True)
    code, seconds, tail = await asyncio.to_thread(
        run_command, command, work, profile_dir=profile_dir
    )
    if code != 0:
        raise RepoError(f"{command!r} fails before any change (exit {code}): {tail}")
    result = RepoResult(branch=branch, base=base, baseline_s=seconds)
    spots = hotspots(work, profile_dir, top)
    # A second run records the hot functions' real arguments: verification replays them
    # (falling back to inputs inferred from type hints for a function never captured).
    capture_dir = profile_dir / "capture"
    specs = [f"{spot.file}::{spot.function}" for spot in spots]
    if specs:
        code, _, tail = await asyncio.to_thread(
            run_command, command, work, profile_dir=capture_dir, capture=specs
        )
        if code != 0:
            raise RepoError(f"{command!r} fails while its calls are recorded: {tail}")
    for spot in spots:
        spec = f"{spot.file}::{spot.function}"
        target = f"{work / spot.file}::{spot.function}"
        calls = captured_inputs(capture_dir, spec) if specs else RecordedCalls((), 0)
        original = (work / spot.file).read_text(encoding="utf-8")
        try:
            outcome = await optimize(
                target,
                sandbox=sandbox,
                llm=llm,
                candidates=candidates.get(spec, []),
                recorded=calls if calls.count else None,
                profile_note=(
                    f"The project's command `{command}` ran in {seconds:.2f} s; under "
                    f"cProfile {spot.function} took {spot.total_s:.3f} s (cumulative) over "
                    f"{spot.calls} call(s). "
                    + (
                        f"{calls.count} of its calls were recorded from the command and "
                        "are replayed as verification inputs."
                        if calls.count
                        else calls.why_none(spec, f"`{command}`") + "; inputs come from type hints."
                    )
                ),
                rounds=rounds,
                k=k,
                apply=True,
                database=database,
                listeners=listeners,
                verify_rounds=verify_rounds,
            )
        except PerfsmithError as exc:
            result.outcomes.append(
                FunctionOutcome(spot, None, False, None, f"not optimized: {exc}")
            )
            continue
        if outcome.best is None or not outcome.applied:
            result.outcomes.append(
                FunctionOutcome(spot, outcome, False, None, "no candidate was verified faster")
            )
            continue
        # the winner must also pass the project's own command
        code, _, tail = await asyncio.to_thread(run_command, command, work)
        if code != 0:
            (work / spot.file).write_text(original, encoding="utf-8")
            result.outcomes.append(
                FunctionOutcome(spot, outcome, False, None, f"{command!r} failed with it: {tail}")
            )
            continue
        speed = outcome.best.speedup or 0.0
        _git(work, "add", str(spot.file))
        _git(
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
        commit = _git(work, "rev-parse", "HEAD")
        result.outcomes.append(FunctionOutcome(spot, outcome, True, commit, f"{speed:.2f}x"))
    folder = report_dir or data_dir() / "reports" / f"repo-{branch.replace('/', '-')}"
    result.report = write_repo_report(result, folder, command)
    return result


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
