"""The server's runs: each one an asyncio task on the server's loop working through the
run service (which stores, settles and resumes every kind of run); requests are turned into
run configs and event streams woken when their events land."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from perfsmith.api.intake import RequestError, TypedRequest, Workspace
from perfsmith.api.schemas import KernelRunCreate, OptimizeRunCreate, PlanRunCreate
from perfsmith.batch.service import BatchService
from perfsmith.config import Settings, data_dir
from perfsmith.errors import PerfsmithError
from perfsmith.events import TERMINAL
from perfsmith.llm.base import ChatModel
from perfsmith.llm.factory import model_from_spec
from perfsmith.sandbox.base import Sandbox
from perfsmith.service.resources import Resources
from perfsmith.service.runs import RunService, error_text
from perfsmith.storage.db import Database
from perfsmith.storage.models import Run
from perfsmith.storage.runs import RunStore

log = logging.getLogger(__name__)


class ConflictError(PerfsmithError):
    """The run is not in a state that allows this (HTTP 409)."""


@dataclass
class ServerConfig:
    """What `perfsmith serve` was started with."""

    llm: str
    workspace: Workspace
    tools: list[str] = field(default_factory=list)
    sandbox: str = "auto"
    # work the batch queue in the server (`serve --work-batches`)
    work_batches: bool = False


def plan_config(req: PlanRunCreate, config: ServerConfig, max_replans: int) -> dict[str, Any]:
    return {"tools": list(config.tools), "llm": config.llm, "max_replans": max_replans}


class RunManager:
    def __init__(self, db: Database, settings: Settings, config: ServerConfig) -> None:
        self.db = db
        self.store = RunStore(db)
        self.service = RunService(db, settings)
        self.settings = settings
        self.config = config
        self.active: dict[str, asyncio.Task[None]] = {}
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sandbox: Sandbox | None = None
        self._sandbox_lock = asyncio.Lock()
        self._shared_model: ChatModel | None = None
        self._scripts: dict[str, ChatModel] = {}
        self.batches = BatchService(db, settings)
        self._batch_wake = asyncio.Event()
        self._batch_worker: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.db.event_hooks.append(self._on_committed)
        orphans = await self.service.interrupt_orphans()
        if orphans:
            log.warning(
                "%d run(s) left running by a process that stopped are now interrupted "
                "(resume them to finish): %s",
                len(orphans),
                ", ".join(orphans),
            )
        if self.config.work_batches:
            self._batch_worker = asyncio.create_task(self._work_batches(), name="batches")

    async def shutdown(self) -> None:
        """Cancel the runs in flight (they are stored as cancelled and can be resumed)."""
        if self._on_committed in self.db.event_hooks:
            self.db.event_hooks.remove(self._on_committed)
        tasks = list(self.active.values())
        if self._batch_worker is not None:  # its jobs go back to the queue, resumable
            tasks.append(self._batch_worker)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        if self._sandbox is not None:
            await self._sandbox.close()
            self._sandbox = None

    # -- batches ---------------------------------------------------------------------

    def batches_submitted(self) -> None:
        """A batch was submitted or resumed: the server's batch worker looks at once."""
        self._batch_wake.set()

    async def _work_batches(self) -> None:
        """Work the batch queue with the server's sandbox and model, then wait for the
        next submission (or look again every 30 s: another process may queue jobs)."""
        while True:
            self._batch_wake.clear()
            try:
                llm = self.config.llm
                shared = llm != "none" and not llm.startswith("scripted:")
                models = {llm: self.model("batches")} if shared else None
                await self.batches.work(
                    backend=self.config.sandbox, sandbox=await self.sandbox(), models=models
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("working the batch queue failed; trying again in 30 s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._batch_wake.wait(), timeout=30)

    # -- event wake-ups --------------------------------------------------------------

    def _on_committed(self, event: dict[str, Any]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake, str(event["run_id"]))

    def _wake(self, run_id: str) -> None:
        for waiter in self._waiters.get(run_id, ()):
            waiter.set()

    def subscribe(self, run_id: str) -> asyncio.Event:
        waiter = asyncio.Event()
        self._waiters.setdefault(run_id, set()).add(waiter)
        return waiter

    def unsubscribe(self, run_id: str, waiter: asyncio.Event) -> None:
        waiters = self._waiters.get(run_id)
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                del self._waiters[run_id]

    def is_active(self, run_id: str) -> bool:
        return run_id in self.active

    # -- shared resources ------------------------------------------------------------

    async def sandbox(self) -> Sandbox:
        async with self._sandbox_lock:
            if self._sandbox is None:
                from perfsmith.sandbox.select import open_sandbox

                self._sandbox = await open_sandbox(self.config.sandbox)
            return self._sandbox

    def model(self, run_id: str) -> ChatModel:
        """The server's LLM: one shared client, but a script of its own per run for scripted
        models (a script is a queue of replies; a follow-up goes on where it stopped)."""
        if self.config.llm.startswith("scripted:"):
            if run_id not in self._scripts:
                self._scripts[run_id] = model_from_spec(self.config.llm, self.settings)
            return self._scripts[run_id]
        if self._shared_model is None:
            self._shared_model = model_from_spec(self.config.llm, self.settings)
        return self._shared_model

    # -- runs ------------------------------------------------------------------------

    def check(self, req: TypedRequest) -> None:
        """Reject a request whose files or tools do not exist, before a run is stored."""
        ws = self.config.workspace
        if isinstance(req, OptimizeRunCreate):
            if req.target is not None:
                ws.target(req.target, field="target")
            elif req.source is not None:
                _check_source(req.source, req.function, field="source")
            if req.inputs_source is not None:
                _check_source(req.inputs_source, req.inputs_function, field="inputs_source")
            name = _function_name(req)
            for i, code in enumerate(req.user_candidates):
                _check_source(code, name, field=f"user_candidates.{i}")
            if req.inputs is not None:
                ws.target(req.inputs, field="inputs")
            if req.workload is not None:
                ws.target(req.workload, field="workload")
        elif isinstance(req, KernelRunCreate):
            ws.problem(req.problem, field="problem")
        elif not self.config.tools:
            raise RequestError(
                "this server has no tools for free-form plans (start it with --tools)", field="kind"
            )

    async def create(self, req: TypedRequest, *, tenant: str, message: str | None = None) -> Run:
        await asyncio.to_thread(self.check, req)
        kind, config, request = await asyncio.to_thread(self._config, req)
        extra: dict[str, Any] = {"api": req.model_dump(mode="json")}
        if message is not None:
            extra["message"] = message
        run_id = await self.service.create(
            kind, config, request=request, tenant=tenant, extra=extra
        )
        self._spawn(
            run_id,
            lambda resources: self.service.start(kind, config, run_id=run_id, resources=resources),
        )
        return await asyncio.to_thread(self.store.get_run, run_id)

    def _config(self, req: TypedRequest) -> tuple[str, dict[str, Any], str | None]:
        """A request as a run: its kind, its config and its text (None: the workflow's)."""
        ws = self.config.workspace
        if isinstance(req, OptimizeRunCreate):
            from perfsmith.workflows.optimize import optimize_config

            folder = uuid.uuid4().hex  # pasted code becomes modules of their own
            if req.target is not None:
                target = ws.target(req.target, field="target")
            else:
                assert req.source is not None
                target = _write_source(folder, "pasted.py", req.source, req.function)
            inputs = ws.target(req.inputs, field="inputs") if req.inputs else None
            if req.inputs_source is not None:
                inputs = _write_source(
                    folder, "pasted_inputs.py", req.inputs_source, req.inputs_function
                )
            users = [
                _write_source(folder, f"user_candidate_{i + 1}.py", code, None).split("::")[0]
                for i, code in enumerate(req.user_candidates)
            ]
            return (
                "optimize",
                optimize_config(
                    target,
                    llm=self.config.llm,
                    workload=ws.target(req.workload, field="workload") if req.workload else None,
                    inputs=inputs,
                    candidates=users,
                    rounds=req.rounds,
                    k=req.candidates,
                    verify_rounds=req.verify_rounds,
                ),
                None,
            )
        if isinstance(req, KernelRunCreate):
            from perfsmith.verifiers.kernel.verify import KernelSettings
            from perfsmith.workflows.kernels import kernel_config

            device: Literal["cpu", "cuda"] = "cpu" if req.backend == "cpp" else "cuda"
            return (
                "kernel",
                kernel_config(
                    ws.problem(req.problem, field="problem"),
                    llm=self.config.llm,
                    settings=KernelSettings(device=device, versus_compile=req.versus_compile),
                    backend=req.backend,
                    rounds=req.rounds,
                    k=req.candidates,
                    compiler=req.compiler,
                ),
                None,
            )
        assert isinstance(req, PlanRunCreate)
        return (
            "orchestrate",
            plan_config(req, self.config, self.settings.max_replans),
            req.request,
        )

    def _spawn(self, run_id: str, work: Callable[[Resources], Coroutine[Any, Any, Any]]) -> None:
        """Work on a run in a task of the server's loop, with the server's sandbox and its
        model for the run; the service settles the run however the work ends."""

        async def guarded() -> None:
            try:
                resources = Resources(
                    self.settings, sandbox=await self.sandbox(), llm=self.model(run_id)
                )
                await work(resources)
            except asyncio.CancelledError:
                pass  # settled `cancelled` by the service
            except Exception as exc:
                if not isinstance(exc, PerfsmithError):
                    log.exception("run %s failed", run_id)
                # settled `failed` by the service; a failure before it started is settled here
                await self.service.settle(run_id, "failed", error=error_text(exc))
            finally:
                self.active.pop(run_id, None)
                self._wake(run_id)

        self.active[run_id] = asyncio.create_task(guarded(), name=f"run-{run_id}")

    async def cancel(self, run_id: str) -> None:
        task = self.active.get(run_id)
        if task is not None:
            task.cancel()
            await asyncio.wait([task], timeout=60)
            return
        row = await asyncio.to_thread(self.store.get_run, run_id)
        if row.status in TERMINAL:
            raise ConflictError(f"run {run_id} has already ended ({row.status})")
        # left running by a server or CLI process that is gone: it ends here
        await self.service.cancel(run_id)

    async def resume(self, run_id: str) -> None:
        """Finish an interrupted run; finished tasks and verdicts are reused."""
        row = await self._idle_run(run_id)
        if row.status == "done":
            raise ConflictError(
                f"run {run_id} has finished; send a follow-up message to continue it"
            )
        self._resumable(row)
        await asyncio.to_thread(self.store.set_status, run_id, "running")
        self._spawn(run_id, lambda resources: self.service.resume(run_id, resources=resources))

    async def follow_up(self, run_id: str, text: str) -> None:
        """Continue an ended run with the user's new instruction (a chat follow-up)."""
        row = await self._idle_run(run_id)
        if row.status not in TERMINAL:
            raise ConflictError(
                f"run {run_id} is {row.status} but not in progress here; resume it first"
            )
        self._resumable(row)
        self._spawn(
            run_id,
            lambda resources: self.service.resume(run_id, resources=resources, follow_up=text),
        )

    def _resumable(self, row: Run) -> None:
        """Refuse, before any work, a run no workflow here can go on with: a kind this
        server has no workflow for, or a free-form run whose tools were in-process."""
        try:
            self.service.workflow(row.kind)
        except PerfsmithError as exc:
            raise ConflictError(str(exc)) from exc
        if row.kind in ("orchestrate", "demo") and not row.config.get("tools"):
            raise ConflictError(
                f"{row.kind} run {row.id} was started with in-process tools; "
                "resume it from Python with perfsmith.resume(run_id, tools=...)"
            )

    async def _idle_run(self, run_id: str) -> Run:
        if run_id in self.active:
            raise ConflictError(f"run {run_id} is in progress; wait for it or cancel it")
        return await asyncio.to_thread(self.store.get_run, run_id)


def _function_name(req: OptimizeRunCreate) -> str:
    """The name of the function an optimize request is about."""
    import ast

    if req.target is not None:
        return req.target.rpartition("::")[2]
    assert req.source is not None
    return req.function or _functions(ast.parse(req.source))[0]


def _functions(tree: Any) -> list[str]:
    import ast

    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _check_source(source: str, function: str | None, *, field: str) -> None:
    import ast

    from perfsmith.verifiers.python.target import defined_names

    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise RequestError(
            f"the code has a syntax error on line {exc.lineno}: {exc.msg}", field=field
        ) from exc
    except ValueError as exc:  # e.g. NUL bytes
        raise RequestError(f"the code cannot be parsed: {exc}", field=field) from exc
    names = _functions(tree)
    if not names:
        raise RequestError("the code defines no function", field=field)
    if function is not None and function not in defined_names(tree):
        raise RequestError(
            f"the code defines no function {function!r} (it defines: {', '.join(names)})",
            field=field.replace("source", "function"),
        )


def _write_source(folder_name: str, name: str, source: str, function: str | None) -> str:
    """Pasted code becomes a module in the run's folder; returns its FILE::FUNC."""
    import ast

    chosen = function or _functions(ast.parse(source))[0]
    folder = data_dir() / "api-sources" / folder_name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(source if source.endswith("\n") else source + "\n", encoding="utf-8")
    return f"{Path(path)}::{chosen}"
