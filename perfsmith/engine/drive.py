"""The engine's entry: drive a stored run's plan-execute-join graph to its answer.

It records plans, tasks and events, and never a run's status: the run service
(`perfsmith.service`) creates runs, marks them running and settles them (done, failed,
cancelled, interrupted), whatever stops them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from perfsmith.config import Settings
from perfsmith.engine.graph import GraphDeps, RunState, build_graph, graph_config
from perfsmith.engine.guard import PlanGuard
from perfsmith.engine.recorder import RunRecorder
from perfsmith.events import EventListener, RunResumed, RunStarted, UserMessage
from perfsmith.executor.observer import TaskObserver
from perfsmith.executor.trace import Trace
from perfsmith.llm.base import ChatModel
from perfsmith.storage.checkpoints import open_checkpointer
from perfsmith.storage.db import Database
from perfsmith.storage.runs import RunStore
from perfsmith.tools.registry import Tool, ToolRegistry


@dataclass
class RunResult:
    run_id: str
    answer: str
    status: str
    rounds: int
    traces: list[Trace] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "answer": self.answer,
            "rounds": self.rounds,
        }


async def drive(
    *,
    db: Database,
    run_id: str,
    request: str,
    tools: Iterable[Tool | Callable[..., Any]],
    llm: ChatModel,
    settings: Settings,
    max_replans: int,
    listeners: Iterable[EventListener] = (),
    observers: Iterable[TaskObserver] = (),
    resuming: bool = False,
    follow_up: str | None = None,
    guard: PlanGuard | None = None,
) -> RunResult:
    """Plan, execute and join `request` for the stored run `run_id` until the joiner
    finishes (or the replans run out). ``resuming``: go on from the run's last checkpoint,
    reusing every finished task; ``follow_up``: plan again after the run's earlier rounds
    with the user's new instruction. `guard` says what the workflow needs of a plan (see
    planner.guard). Errors and cancellation propagate: the caller settles the run."""
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
        registry=ToolRegistry(tools),
        recorder=recorder,
        stored_plan=stored_plan,
        observers=list(observers),
        max_replans=max_replans,
        max_concurrency=settings.max_concurrency,
        task_timeout_s=settings.task_timeout_s,
        guard=guard,
    )
    config = graph_config(run_id, max_replans)
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
            recorder.emit(UserMessage(text=follow_up, after_round=len(earlier)))
        elif resuming:
            snapshot = await graph.aget_state(config)
            if snapshot.next or snapshot.values.get("answer") is not None:
                state_input = None  # continue from the last checkpoint
            recorder.emit(RunResumed(from_nodes=list(snapshot.next)))
        else:
            recorder.emit(RunStarted(request=request))
        final = await graph.ainvoke(state_input, config, durability="sync")
    answer = final.get("answer") or ""
    rounds = len(final.get("rounds") or [])
    return RunResult(run_id=run_id, answer=answer, status="done", rounds=rounds, traces=deps.traces)
