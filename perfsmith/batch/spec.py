"""Batch files: the TOML a user writes for a night's work, read into jobs.

```toml
[batch]
name = "nightly"
until = "07:00"          # stop starting jobs then (local time; or an ISO date-time)
concurrency = 2          # jobs at once
job_wall_s = 3600        # each job's wall-time cap
tokens = 200000          # each job's LLM token cap
retries = 2              # a job whose worker dies is tried this many times more
llm = "local"            # the jobs' model unless a job names its own

[[repo]]                 # a repository: its hottest functions, kept as commits
path = "../project"      # or url = "https://host/group/project.git" (cloned first)
command = "python -m pytest -q tests/test_speed.py"
top = 3
branch = "perfsmith/nightly"

[[function]]             # one function
target = "src/dedupe.py::find_duplicates"
inputs = "src/inputs.py::generate"

[[kernels]]              # a folder of KernelBench-format problems
suite = "kernels/"
device = "cpu"
backend = "cpp"
compiler = true          # torch's compiler's kernels as a candidate (no model needed)
versus_compile = true    # the best kernel timed against torch.compile too
```

Relative paths are read from the batch file's folder. A file that cannot run is refused
whole, every problem listed (`BatchFileError`), before anything is stored.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from perfsmith.errors import BatchFileError, PerfsmithError
from perfsmith.storage.batches import NewJob

MAX_FILE_BYTES = 1 << 20
MAX_JOBS = 5000
GIT_URL = re.compile(r"^(https?://|ssh://|git://|file://|[\w.-]+@[\w.-]+:)\S+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=100_000)


class Header(_Strict):
    name: str = Field(default="batch", min_length=1, max_length=200)
    until: str | None = None
    concurrency: int = Field(default=1, ge=1, le=256)
    job_wall_s: float = Field(default=4 * 3600, gt=0, le=7 * 24 * 3600)
    tokens: int | None = Field(default=None, ge=1)
    retries: int = Field(default=2, ge=0, le=20)
    llm: str = "local"


class _Job(_Strict):
    name: str | None = Field(default=None, max_length=200)
    llm: str | None = None
    rounds: int = Field(default=1, ge=1, le=10)
    k: int = Field(default=3, ge=1, le=8)


class RepoJob(_Job):
    path: str | None = None
    url: str | None = None
    command: str = Field(min_length=1)
    top: int = Field(default=3, ge=1, le=50)
    branch: str | None = None
    verify_rounds: int = Field(default=12, ge=3, le=200)
    # FILE::FUNC (in the repository) -> candidate files verified alongside the model's
    candidates: dict[str, list[str]] = Field(default_factory=dict)


class FunctionJob(_Job):
    target: str = Field(min_length=1)
    inputs: str | None = None
    workload: str | None = None
    candidates: list[str] = Field(default_factory=list, max_length=100)
    verify_rounds: int = Field(default=12, ge=3, le=200)


class KernelSuiteJob(_Job):
    suite: str = Field(min_length=1)
    device: Literal["cpu", "cuda"] = "cpu"
    backend: str = "cpp"
    # torch's compiler's kernels as a candidate of each problem (CPU, C++)
    compiler: bool = True
    # the best kernel timed against torch.compile of the reference too
    versus_compile: bool = True
    # a problem's file name -> candidate kernel files verified alongside the model's
    candidates: dict[str, list[str]] = Field(default_factory=dict)


@dataclass(frozen=True)
class BatchSpec:
    """A batch file read and checked: what `BatchStore.create_batch` stores."""

    name: str
    source: str
    budgets: dict[str, Any]
    deadline: datetime | None
    jobs: list[NewJob]


def deadline_from(until: str, now: datetime) -> datetime:
    """``until`` as a moment in UTC: ``HH:MM`` is its next occurrence in local time after
    ``now``; an ISO date-time without a zone is local time."""
    local_now = now.astimezone()
    if re.fullmatch(r"\d{1,2}:\d{2}", until):
        try:
            clock = time.fromisoformat(until.zfill(5))
        except ValueError:
            raise ValueError(f"until = {until!r} is not a time of day (HH:MM)") from None
        moment = datetime.combine(local_now.date(), clock, tzinfo=local_now.tzinfo)
        if moment <= local_now:
            moment = datetime.combine(
                local_now.date() + timedelta(days=1), clock, tzinfo=local_now.tzinfo
            )
        return moment.astimezone(UTC)
    try:
        moment = datetime.fromisoformat(until)
    except ValueError:
        raise ValueError(
            f"until = {until!r} is neither HH:MM nor an ISO date-time (2026-12-05T07:00)"
        ) from None
    if isinstance(moment, date) and moment.tzinfo is None:
        moment = moment.replace(tzinfo=local_now.tzinfo)
    if moment <= now:
        raise ValueError(f"until = {until!r} has already passed")
    return moment.astimezone(UTC)


def check_llm(spec: str) -> str | None:
    """What is wrong with an LLM spec, or None (its file or endpoint is checked when a
    job starts: a server may come up later in the night)."""
    if spec in ("local", "none") or spec.startswith(("local:", "http://", "https://")):
        return None
    if spec.startswith("scripted:"):
        path = Path(spec.removeprefix("scripted:"))
        return None if path.is_file() else f"llm script {path} does not exist"
    return f"llm = {spec!r}: use 'local', 'none', an OpenAI-compatible base URL or scripted:FILE"


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_batch(path: Path, *, now: datetime | None = None) -> BatchSpec:
    """Read and check the batch file at ``path``; see the module docstring."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise BatchFileError(str(path), [f"cannot read it: {exc.strerror or exc}"]) from exc
    if size > MAX_FILE_BYTES:
        raise BatchFileError(
            str(path), [f"it is {size:,} bytes; a batch file may hold {MAX_FILE_BYTES:,}"]
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchFileError(str(path), [f"cannot read it: {exc}"]) from exc
    return parse_batch(text, base=path.resolve().parent, source_name=str(path), now=now)


def parse_batch(
    text: str,
    *,
    base: Path,
    source_name: str = "batch file",
    now: datetime | None = None,
    server_llm: str | None = None,
) -> BatchSpec:
    """Check a batch file's text, relative paths read from ``base``. With ``server_llm``
    it was sent to a server: its paths must lie in ``base`` (the server's workspace), it
    names no repository by URL, and its jobs use the server's model (or none)."""
    if len(text.encode("utf-8", "replace")) > MAX_FILE_BYTES:
        raise BatchFileError(source_name, [f"it is over {MAX_FILE_BYTES:,} bytes"])
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BatchFileError(source_name, [f"not valid TOML: {exc}"]) from None
    except RecursionError:
        raise BatchFileError(source_name, ["not valid TOML: nested too deeply"]) from None
    problems: list[str] = []
    header, jobs = _validated(data, problems)
    if server_llm is not None:
        _served(header, jobs, server_llm, problems)
    root = Root(base, confined=server_llm is not None)
    return _checked(header, jobs, text, root, source_name, now or datetime.now(UTC), problems)


def _served(
    header: Header, entries: list[tuple[str, _Job]], server_llm: str, problems: list[str]
) -> None:
    """What a server takes of a batch: its own model, no repository fetched by URL."""
    said = [("batch", header.llm)] if "llm" in header.model_fields_set else []
    said += [(where, job.llm) for where, job in entries if job.llm is not None]
    for where, llm in said:
        if llm != "none":
            problems.append(
                f"{where}.llm: the server runs its own model; leave llm out or say none"
            )
    if "llm" not in header.model_fields_set:
        header.llm = server_llm
    for where, job in entries:
        if isinstance(job, RepoJob) and job.url is not None:
            problems.append(f"{where}.url: a server optimizes repositories in its workspace only")


def _errors(exc: ValidationError, prefix: tuple[int | str, ...]) -> list[str]:
    return [f"{_where(prefix + tuple(e['loc']))}: {e['msg']}" for e in exc.errors()]


def _validated(data: dict[str, Any], problems: list[str]) -> tuple[Header, list[tuple[str, _Job]]]:
    """The file's tables, each checked on its own so that every problem is found; the
    valid parts are kept for the checks that follow."""
    tables: dict[str, type[_Job]] = {
        "repo": RepoJob,
        "function": FunctionJob,
        "kernels": KernelSuiteJob,
    }
    for key in data:
        if key != "batch" and key not in tables:
            problems.append(f"{key}: not a table of batch files (batch, repo, function, kernels)")
    header = Header()
    if "batch" in data:
        try:
            header = Header.model_validate(data["batch"])
        except ValidationError as exc:
            problems.extend(_errors(exc, ("batch",)))
            # the fields without errors still go on to be checked (the deadline's time)
            bad = {e["loc"][0] for e in exc.errors() if e["loc"]}
            raw = data["batch"] if isinstance(data["batch"], dict) else {}
            good = {k: v for k, v in raw.items() if k in Header.model_fields and k not in bad}
            header = Header.model_validate(good)
    jobs: list[tuple[str, _Job]] = []
    for key, model in tables.items():
        entries = data.get(key, [])
        if not isinstance(entries, list):
            problems.append(f"{key}: write [[{key}]] tables (a list of them)")
            continue
        if len(entries) > MAX_JOBS:
            problems.append(f"{key}: {len(entries)} entries; a batch may hold {MAX_JOBS}")
            continue
        for i, entry in enumerate(entries):
            try:
                jobs.append((f"{key}[{i}]", model.model_validate(entry)))
            except ValidationError as exc:
                problems.extend(_errors(exc, (key, i)))
    return header, jobs


def _checked(
    header: Header,
    entries: list[tuple[str, _Job]],
    text: str,
    base: Root,
    source_name: str,
    now: datetime,
    problems: list[str],
) -> BatchSpec:
    deadline = None
    if header.until is not None:
        try:
            deadline = deadline_from(header.until, now)
        except ValueError as exc:
            problems.append(f"batch.until: {exc}")
    jobs: list[NewJob] = []
    for where, job in entries:
        llm = job.llm or header.llm
        bad_llm = check_llm(llm)
        if bad_llm:
            problems.append(f"{where}: {bad_llm}")
        try:
            jobs.extend(_expand(where, job, llm, base))
        except _ProblemsError as exc:
            problems.extend(p if p.startswith(where) else f"{where}: {p}" for p in exc.problems)
    if not jobs and not problems:
        problems.append("no jobs: add [[repo]], [[function]] or [[kernels]] tables")
    if len(jobs) > MAX_JOBS:
        problems.append(f"{len(jobs)} jobs; a batch may hold {MAX_JOBS}")
    if problems:
        raise BatchFileError(source_name, problems)
    budgets = header.model_dump(exclude={"name", "llm"})
    return BatchSpec(name=header.name, source=text, budgets=budgets, deadline=deadline, jobs=jobs)


class _ProblemsError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Root:
    """Where a batch file's relative paths are read from; a ``confined`` one (a server's
    workspace) takes relative paths only, and none that leads outside it."""

    folder: Path
    confined: bool = False


def _path(base: Root, text: str) -> Path:
    if not base.confined:
        path = Path(text).expanduser()
        return path if path.is_absolute() else base.folder / path
    path = Path(text)
    if path.is_absolute() or ".." in path.parts:
        raise _ProblemsError([f"{text!r} must be a path relative to the server's workspace"])
    inside = (base.folder / path).resolve()
    if not inside.is_relative_to(base.folder.resolve()):
        raise _ProblemsError([f"{text!r} leads outside the server's workspace"])
    return inside


def _ref(base: Root, spec: str | None) -> str | None:
    """``FILE::NAME`` with FILE read from ``base``."""
    if spec is None:
        return None
    file, sep, name = spec.rpartition("::")
    if not sep:
        return spec  # the workflow's check says what is wrong with it
    return f"{_path(base, file)}::{name}"


def _workflow_check(where: str, kind: str, config: dict[str, Any]) -> dict[str, Any]:
    from perfsmith.service.registry import WORKFLOWS

    try:
        return WORKFLOWS[kind].check(dict(config))
    except PerfsmithError as exc:
        raise _ProblemsError([f"{where}: {exc}"]) from None


def _expand(where: str, job: _Job, llm: str, base: Root) -> list[NewJob]:
    expanders: dict[type[_Job], Callable[[str, Any, str | None, Root], list[NewJob]]] = {
        RepoJob: _repo_jobs,
        FunctionJob: _function_jobs,
        KernelSuiteJob: _kernel_jobs,
    }
    spec = None if llm == "none" else llm
    return expanders[type(job)](where, job, spec, base)


def _repo_jobs(where: str, job: RepoJob, llm: str | None, base: Root) -> list[NewJob]:
    from perfsmith.workflows.repo import repo_config

    if (job.path is None) == (job.url is None):
        raise _ProblemsError([f"{where}: give path or url (one of them)"])

    def config_for(repo: Path) -> dict[str, Any]:
        options = job.model_dump(include={"command", "top", "branch", "rounds", "k"})
        return repo_config(
            repo,
            llm=llm,
            verify_rounds=job.verify_rounds,
            candidates={f: [_path(base, p) for p in ps] for f, ps in job.candidates.items()},
            **options,
        )

    if job.url is not None:
        if not GIT_URL.match(job.url):
            raise _ProblemsError([f"{where}: url = {job.url!r} is not a git URL"])
        # cloned when the job starts (batch.worker): the night's copy, its branch there
        config = config_for(Path())
        config.update(repo=None, clone=job.url)
        name = job.name or job.url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
        return [NewJob(name=name, kind="repo", config=config, llm=llm)]
    assert job.path is not None
    repo = _path(base, job.path).resolve()
    config = _workflow_check(where, "repo", config_for(repo))
    return [NewJob(name=job.name or repo.name, kind="repo", config=config, llm=llm)]


def _function_jobs(where: str, job: FunctionJob, llm: str | None, base: Root) -> list[NewJob]:
    from perfsmith.workflows.optimize import optimize_config

    config = optimize_config(
        _ref(base, job.target) or job.target,
        llm=llm,
        workload=_ref(base, job.workload),
        inputs=_ref(base, job.inputs),
        candidates=[_path(base, c) for c in job.candidates],
        rounds=job.rounds,
        k=job.k,
        verify_rounds=job.verify_rounds,
    )
    config = _workflow_check(where, "optimize", config)
    return [NewJob(name=job.name or job.target, kind="optimize", config=config, llm=llm)]


def _kernel_jobs(where: str, job: KernelSuiteJob, llm: str | None, base: Root) -> list[NewJob]:
    from perfsmith.verifiers.kernel.verify import KernelSettings
    from perfsmith.workflows.kernels import kernel_config

    suite = _path(base, job.suite)
    if not suite.is_dir():
        raise _ProblemsError([f"{where}: suite {suite} is not a folder"])
    problems = sorted(p for p in suite.glob("*.py") if not p.name.startswith("_"))
    if not problems:
        raise _ProblemsError([f"{where}: suite {suite} holds no problem files (*.py)"])
    unknown = sorted(set(job.candidates) - {p.name for p in problems})
    found: list[str] = [
        f"{where}.candidates: {name!r} is not a problem of the suite" for name in unknown
    ]
    group = job.name or suite.name
    out: list[NewJob] = []
    for problem in problems:
        config = kernel_config(
            problem,
            llm=llm,
            settings=KernelSettings(device=job.device, versus_compile=job.versus_compile),
            backend=job.backend,
            candidates=[_path(base, c) for c in job.candidates.get(problem.name, [])],
            rounds=job.rounds,
            k=job.k,
            compiler=job.compiler,
        )
        try:
            config = _workflow_check(f"{where} ({problem.name})", "kernel", config)
        except _ProblemsError as exc:
            found.extend(exc.problems)
            continue
        name = f"{group}/{problem.stem}"
        out.append(NewJob(name=name, kind="kernel", config=config, llm=llm, group=group))
    if found:
        raise _ProblemsError(found)
    return out
