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
from perfsmith.planner.guard import PlanGuard
from perfsmith.storage.checkpoints import open_checkpointer
from perfsmith.storage.db import Database
from perfsmith.storage.runs import EventListener, RunRecorder, RunStore
from perfsmith.tools.registry import Tool, ToolRegistry

# `interrupted`: its process died (a server killed with -9); `runs resume` finishes it.
TERMINAL = frozenset({"done", "failed", "cancelled", "interrupted"})


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
    settle: bool = True,
    follow_up: str | None = None,
    guard: PlanGuard | None = None,
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
        guard=guard,
    )
    config = graph_config(run_id, max_replans)
    store.set_status(run_id, "running")
    try:
        async with open_checkpointer(db) as checkpointer:
            graph = build_graph(deps, checkpointer)
            state_input: RunState | None = {"request": request, "rounds": []}
            if follow_up is not None:
                before = (await graph.aget_state(config)).values
                earlier = list(before.get("rounds") or [])
                state_input = {
                    "request": f"{before.get('request') or request}\n\n"
                    f"Follow-up from the user: {follow_up}",
                    "rounds": earlier,
                    "answer": None,
                    "first_round": len(earlier),
                }
                recorder.emit("user_message", text=follow_up, after_round=len(earlier))
            elif resuming:
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
    if settle:
        await finish_run(db, run_id, answer=answer, recorder=recorder, rounds=rounds)
    return RunResult(run_id=run_id, answer=answer, status="done", rounds=rounds, traces=deps.traces)


async def finish_run(
    db: Database,
    run_id: str,
    *,
    answer: str,
    recorder: RunRecorder | None = None,
    **summary: Any,
) -> None:
    """Mark a run done: its last event (`run_finished`, with `summary`) is stored before
    the status changes, so whoever sees a finished run has seen all its events."""
    rec = recorder if recorder is not None else await asyncio.to_thread(RunRecorder, db, run_id)
    rec.emit("run_finished", status="done", answer=answer, **summary)
    await asyncio.to_thread(db.flush)
    await asyncio.to_thread(RunStore(db).set_status, run_id, "done", answer=answer)


async def fail_run(db: Database, run_id: str, *, error: str, status: str = "failed") -> None:
    """Mark a run that stopped outside the graph (a bad target, a crash while concluding)
    failed or cancelled, with its `run_finished` event, unless it already ended."""
    row = await asyncio.to_thread(RunStore(db).get_run, run_id)
    if row.status in TERMINAL:
        return
    recorder = await asyncio.to_thread(RunRecorder, db, run_id)
    recorder.emit("run_finished", status=status, error=error)
    await asyncio.to_thread(db.flush)
    await asyncio.to_thread(RunStore(db).set_status, run_id, status, error=error)


async def interrupt_orphaned_runs(db: Database) -> list[str]:
    """Runs left pending or running by a process of this machine that is gone become
    `interrupted`, each with its `run_finished` event (so that their streams end);
    `runs resume` finishes them, reusing every finished task."""
    orphans = await asyncio.to_thread(RunStore(db).orphaned_runs)
    for run_id in orphans:
        await fail_run(
            db,
            run_id,
            error="interrupted: the process working on it stopped; resume it to finish",
            status="interrupted",
        )
    return orphans


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
    run_id: str | None = None,
    settle: bool = True,
    guard: PlanGuard | None = None,
) -> RunResult:
    """Plan, execute and join `request` with `tools` and `llm`; every step is stored.

    `run_id` names a run created ahead (`RunStore.create_run`) to fill in, as the API does.
    With `settle=False` the run stays "running" when the graph ends: a workflow that has
    more to do (verify the rest, write the report) calls `finish_run` itself.

    `guard` says what the workflow needs of a plan (see planner.guard).

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
    if run_id is None:
        run_id = await asyncio.to_thread(store.create_run, request, kind=kind, config=config)
    else:
        await asyncio.to_thread(store.claim_run, run_id, request, kind=kind, config=config)
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
            settle=settle,
            guard=guard,
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
    settle: bool = True,
    follow_up: str | None = None,
    guard: PlanGuard | None = None,
) -> RunResult:
    """Finish an interrupted run: completed tasks are reused, not executed again. With
    ``follow_up``, continue an ended run with the user's new instruction instead: the
    planner sees the earlier rounds and plans again (with a fresh replan budget); the
    answer replaces the old one."""
    settings = settings or load_settings()
    db = _database(database, settings)
    try:
        row = await asyncio.to_thread(RunStore(db).get_run, run_id)
        if follow_up is None and row.status == "done":
            raise StorageError(f"run {run_id} already finished; nothing to resume")
        if follow_up is not None and row.status not in TERMINAL:
            raise StorageError(f"run {run_id} is {row.status}; a follow-up waits for it to end")
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
            resuming=follow_up is None,
            settle=settle,
            follow_up=follow_up,
            guard=guard,
        )
    finally:
        if not isinstance(database, Database):
            db.close()
