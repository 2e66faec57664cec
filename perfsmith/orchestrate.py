"""Run a request end to end: store the run, drive the graph, record the answer; and resume
a run that was interrupted."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from perfsmith.config import Settings, load_settings
from perfsmith.errors import PerfsmithError, StorageError
from perfsmith.executor.observer import TaskObserver
from perfsmith.executor.trace import Trace
from perfsmith.llm.base import ChatModel
from perfsmith.planner.graph import GraphDeps, RunState, build_graph, graph_config
from perfsmith.storage.checkpoints import open_checkpointer
from perfsmith.storage.db import Database
from perfsmith.storage.runs import EventListener, RunRecorder, RunStore
from perfsmith.tools.registry import Tool, ToolRegistry


@dataclass
class RunResult:
    run_id: str
    answer: str
    status: str
    rounds: int
    traces: list[Trace] = field(default_factory=list)


def _database(database: Database | str | None, settings: Settings) -> Database:
    if isinstance(database, Database):
        return database
    return Database(database or settings.resolved_database_url())


async def _drive(
    *,
    db: Database,
    run_id: str,
    request: str,
    registry: ToolRegistry,
    llm: ChatModel,
    settings: Settings,
    max_replans: int,
    listeners: Iterable[EventListener],
    observers: Iterable[TaskObserver],
    resuming: bool,
) -> RunResult:
    store = RunStore(db)
    recorder = RunRecorder(db, run_id)
    recorder.listeners.extend(listeners)

    def stored_plan(round_: int) -> str | None:
        if not resuming:
            return None
        plan = store.plan(run_id, round_)
        return plan.text if plan is not None and plan.complete else None

    deps = GraphDeps(
        llm=llm,
        registry=registry,
        recorder=recorder,
        stored_plan=stored_plan,
        observers=list(observers),
        max_replans=max_replans,
        max_concurrency=settings.max_concurrency,
        task_timeout_s=settings.task_timeout_s,
    )
    config = graph_config(run_id, max_replans)
    store.set_status(run_id, "running")
    try:
        async with open_checkpointer(db) as checkpointer:
            graph = build_graph(deps, checkpointer)
            state_input: RunState | None = {"request": request, "rounds": []}
            if resuming:
                snapshot = await graph.aget_state(config)
                if snapshot.next:
                    state_input = None  # continue from the last checkpoint
                elif snapshot.values.get("answer") is not None:
                    state_input = None
                recorder.emit("run_resumed", from_nodes=list(snapshot.next))
            else:
                recorder.emit("run_started", request=request)
            final = await graph.ainvoke(state_input, config, durability="sync")
    except asyncio.CancelledError:
        recorder.emit("run_finished", status="cancelled")
        await asyncio.to_thread(db.flush)
        store.set_status(run_id, "cancelled", error="cancelled")
        raise
    except Exception as exc:
        message = str(exc) if isinstance(exc, PerfsmithError) else f"{type(exc).__name__}: {exc}"
        recorder.emit("run_finished", status="failed", error=message)
        await asyncio.to_thread(db.flush)
        store.set_status(run_id, "failed", error=message)
        raise
    answer = final.get("answer") or ""
    rounds = len(final.get("rounds") or [])
    recorder.emit("run_finished", status="done", answer=answer, rounds=rounds)
    await asyncio.to_thread(db.flush)
    store.set_status(run_id, "done", answer=answer)
    return RunResult(run_id=run_id, answer=answer, status="done", rounds=rounds, traces=deps.traces)


async def run(
    request: str,
    *,
    tools: Iterable[Tool | Callable[..., Any]],
    llm: ChatModel,
    database: Database | str | None = None,
    settings: Settings | None = None,
    max_replans: int | None = None,
    resume_config: dict[str, Any] | None = None,
    listeners: Iterable[EventListener] = (),
    observers: Iterable[TaskObserver] = (),
    kind: str = "orchestrate",
) -> RunResult:
    """Plan, execute and join `request` with `tools` and `llm`; every step is stored.

    `resume_config` is stored with the run so `perfsmith runs resume` can rebuild it
    (`{"tools": [module specs], "llm": spec}`); runs started with in-process tools are
    resumed from Python with `resume(run_id, tools=..., llm=...)`.
    """
    settings = settings or load_settings()
    registry = ToolRegistry(tools)
    replans = settings.max_replans if max_replans is None else max_replans
    db = _database(database, settings)
    store = RunStore(db)
    config = {**(resume_config or {}), "max_replans": replans}
    run_id = await asyncio.to_thread(store.create_run, request, kind=kind, config=config)
    try:
        return await _drive(
            db=db,
            run_id=run_id,
            request=request,
            registry=registry,
            llm=llm,
            settings=settings,
            max_replans=replans,
            listeners=listeners,
            observers=observers,
            resuming=False,
        )
    finally:
        if not isinstance(database, Database):
            db.close()


async def resume(
    run_id: str,
    *,
    tools: Iterable[Tool | Callable[..., Any]],
    llm: ChatModel,
    database: Database | str | None = None,
    settings: Settings | None = None,
    listeners: Iterable[EventListener] = (),
    observers: Iterable[TaskObserver] = (),
) -> RunResult:
    """Finish an interrupted run: completed tasks are reused, not executed again."""
    settings = settings or load_settings()
    db = _database(database, settings)
    try:
        store = RunStore(db)
        row = await asyncio.to_thread(store.get_run, run_id)
        if row.status == "done":
            raise StorageError(f"run {run_id} already finished; nothing to resume")
        replans = int(row.config.get("max_replans", settings.max_replans))
        return await _drive(
            db=db,
            run_id=run_id,
            request=row.request,
            registry=ToolRegistry(tools),
            llm=llm,
            settings=settings,
            max_replans=replans,
            listeners=listeners,
            observers=observers,
            resuming=True,
        )
    finally:
        if not isinstance(database, Database):
            db.close()
