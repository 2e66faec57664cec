"""What `import perfsmith` offers: `run`, `resume`, `optimize`, `optimize_repo` and
`kernel_optimize` as
coroutines, each a run through the `RunService` (stored, settled, resumable)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack, cast

from perfsmith.config import Settings, load_settings
from perfsmith.service.resources import Resources, open_database
from perfsmith.service.runs import RunService

if TYPE_CHECKING:
    from perfsmith.engine.drive import RunResult
    from perfsmith.engine.guard import PlanGuard
    from perfsmith.events import EventListener
    from perfsmith.executor.observer import TaskObserver
    from perfsmith.llm.base import ChatModel
    from perfsmith.sandbox.base import Sandbox
    from perfsmith.storage.db import Database
    from perfsmith.tools.registry import Tool
    from perfsmith.verifiers.python.capture import RecordedCalls
    from perfsmith.verifiers.python.target import Target
    from perfsmith.workflows.kernels import KernelOptimizeResult, KernelOptions
    from perfsmith.workflows.optimize import OptimizeOptions, OptimizeResult
    from perfsmith.workflows.repo import RepoOptions, RepoResult


async def run(
    request: str,
    *,
    tools: Iterable[Tool | Callable[..., Any]],
    llm: ChatModel | str,
    database: Database | str | None = None,
    settings: Settings | None = None,
    max_replans: int | None = None,
    resume_config: dict[str, Any] | None = None,
    listeners: Iterable[EventListener] = (),
    observers: Iterable[TaskObserver] = (),
    kind: str = "orchestrate",
    guard: PlanGuard | None = None,
) -> RunResult:
    """Plan, execute and join `request` with `tools` and `llm`; every step is stored.

    `resume_config` is stored with the run so that `perfsmith runs resume` can rebuild it
    (`{"tools": [module specs], "llm": spec}`); runs started with in-process tools are
    resumed from Python with `resume(run_id, tools=..., llm=...)`. `guard` says what the
    caller needs of a plan (see planner.guard)."""
    settings = settings or load_settings()
    replans = settings.max_replans if max_replans is None else max_replans
    config = {"tools": None, "llm": None, **(resume_config or {}), "max_replans": replans}
    where = _Where(database, settings, None, "auto", llm, listeners)
    extras = {"tools": list(tools), "observers": list(observers), "guard": guard}
    return cast("RunResult", await _start(kind, config, where, extras=extras, request=request))


async def resume(
    run_id: str,
    *,
    tools: Iterable[Tool | Callable[..., Any]] | None = None,
    llm: ChatModel | str | None = None,
    database: Database | str | None = None,
    settings: Settings | None = None,
    sandbox: Sandbox | None = None,
    listeners: Iterable[EventListener] = (),
    observers: Iterable[TaskObserver] = (),
    follow_up: str | None = None,
    guard: PlanGuard | None = None,
) -> Any:
    """Finish an interrupted run of any kind: completed tasks and verdicts are reused, not
    done again. With ``follow_up``, continue an ended run with the user's new instruction
    instead: the planner sees the earlier rounds and plans again. ``tools``: the
    in-process tools a run started from Python had. Returns the kind's result (a
    `RunResult`, an `OptimizeResult`, a `KernelOptimizeResult`)."""
    settings = settings or load_settings()
    resources = Resources(settings, sandbox=sandbox, llm=llm)
    extras: dict[str, Any] = {"observers": list(observers), "guard": guard}
    if tools is not None:
        extras["tools"] = list(tools)
    async with _service(database, settings, resources) as service:
        outcome = await service.resume(
            run_id, resources=resources, follow_up=follow_up, listeners=listeners, extras=extras
        )
    return outcome.result


async def optimize(
    target: str | Target,
    *,
    sandbox: Sandbox | None = None,
    llm: ChatModel | str | None = "local",
    database: Database | str | None = None,
    settings: Settings | None = None,
    backend: str = "auto",
    listeners: Iterable[EventListener] = (),
    recorded: RecordedCalls | None = None,
    **options: Unpack[OptimizeOptions],
) -> OptimizeResult:
    """Make ``target`` (``FILE::FUNC`` or ``FILE::Class.method``) faster: plan, propose
    candidates, verify each in the sandbox, keep the fastest verified one (written over
    FILE with ``apply``). ``llm``: a ChatModel, a spec (``local``, a URL,
    ``scripted:FILE``) or None (perfsmith's own rewrites and the ``candidates`` only).
    ``options`` are `OptimizeOptions` (workload, inputs, candidates, rounds, k, apply,
    report_dir, verify_rounds, profile_note, report); ``recorded`` are calls to the target
    recorded elsewhere, replayed as the inputs. Without a ``sandbox`` one of ``backend``
    (auto: the best available) is opened and closed."""
    from perfsmith.workflows.optimize import optimize_config

    config = optimize_config(target, llm=llm if isinstance(llm, str) else None, **options)
    where = _Where(database, settings, sandbox, backend, llm, listeners)
    extras = {"recorded": recorded} if recorded is not None else None
    return cast("OptimizeResult", await _start("optimize", config, where, extras=extras))


async def optimize_repo(
    repo: str | Path,
    *,
    command: str,
    llm: ChatModel | str | None = "local",
    database: Database | str | None = None,
    settings: Settings | None = None,
    sandbox: Sandbox | None = None,
    backend: str = "auto",
    listeners: Iterable[EventListener] = (),
    **options: Unpack[RepoOptions],
) -> RepoResult:
    """Profile ``command`` in the git repository ``repo``, optimize its hottest functions
    (each an optimize run), and commit each verified speedup the command still accepts to
    a new branch; see `perfsmith.workflows.repo`. ``options`` are `RepoOptions` (top,
    branch, rounds, k, candidates, verify_rounds, report_dir). Resumable as one run."""
    from perfsmith.workflows.repo import repo_config

    spec = llm if isinstance(llm, str) else None
    config = repo_config(Path(repo), command=command, llm=spec, **options)
    where = _Where(database, settings, sandbox, backend, llm, listeners)
    return cast("RepoResult", await _start("repo", config, where))


async def kernel_optimize(
    problem: str | Path,
    *,
    sandbox: Sandbox | None = None,
    llm: ChatModel | str | None = "local",
    database: Database | str | None = None,
    app_settings: Settings | None = None,
    sandbox_backend: str = "auto",
    listeners: Iterable[EventListener] = (),
    **options: Unpack[KernelOptions],
) -> KernelOptimizeResult:
    """A faster kernel for the operator of ``problem`` (a KernelBench file), verified
    against eager PyTorch (and the best against torch.compile of the reference when
    ``settings.versus_compile``). ``options`` are `KernelOptions` (settings, backend,
    candidates, rounds, k, report_dir, compiler: torch's compiler's kernels are a
    candidate). See `perfsmith.workflows.kernels`."""
    from perfsmith.workflows.kernels import kernel_config

    config = kernel_config(problem, llm=llm if isinstance(llm, str) else None, **options)
    where = _Where(database, app_settings, sandbox, sandbox_backend, llm, listeners)
    return cast("KernelOptimizeResult", await _start("kernel", config, where))


@dataclass(frozen=True)
class _Where:
    """Where a run started from Python runs: its database and settings (opened and loaded
    when None), its sandbox (or the backend to open one), its model and its listeners."""

    database: Database | str | None
    settings: Settings | None
    sandbox: Sandbox | None
    backend: str
    llm: ChatModel | str | None
    listeners: Iterable[EventListener]


async def _start(
    kind: str,
    config: dict[str, Any],
    where: _Where,
    *,
    extras: dict[str, Any] | None = None,
    request: str | None = None,
) -> Any:
    """A run of ``kind`` through the service, with the database, sandbox and model opened
    here unless given; its workflow's result."""
    settings = where.settings or load_settings()
    resources = Resources(settings, sandbox=where.sandbox, backend=where.backend, llm=where.llm)
    async with _service(where.database, settings, resources) as service:
        outcome = await service.start(
            kind,
            config,
            request=request,
            resources=resources,
            listeners=where.listeners,
            extras=extras,
        )
    return outcome.result


@asynccontextmanager
async def _service(
    database: Database | str | None, settings: Settings, resources: Resources
) -> AsyncIterator[RunService]:
    """The run service over ``database``; on the way out the sandbox ``resources`` opened
    and the database opened here are closed (those given by the caller stay open)."""
    db, owned = open_database(database, settings)
    try:
        yield RunService(db, settings)
    finally:
        await resources.close()
        if owned:
            db.close()
