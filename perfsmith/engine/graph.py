"""The LangGraph graph: `plan_and_schedule` (the planner streams into the task fetching
unit) -> `join` -> back to planning or to the end.

The scheduler lives inside one node because Pregel's supersteps would otherwise hold a
ready task back until its whole step finished. Task-level durability comes from the run
recorder (finished tasks are reused on resume); graph-level durability (which round, what
the joiner decided) from LangGraph's checkpointer.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from perfsmith.engine.guard import MAX_SHORT_PLANS, PlanGuard
from perfsmith.errors import LLMError
from perfsmith.events import (
    EventPayload,
    JoinDecided,
    PlanDefault,
    PlanFinished,
    PlanShort,
    PlanStarted,
)
from perfsmith.executor.fetching_unit import TaskFetchingUnit
from perfsmith.executor.observer import FanoutObserver, TaskObserver
from perfsmith.executor.trace import Trace, build_trace
from perfsmith.llm.base import ChatModel, GenerationOptions
from perfsmith.llm.degenerate import cut_repetition
from perfsmith.planner.grammar import plan_grammar
from perfsmith.planner.joiner import JoinDecision, parse_join
from perfsmith.planner.plan import Join, PlanItem
from perfsmith.planner.prompts import joiner_messages, planner_messages
from perfsmith.planner.stream import StreamingPlanParser
from perfsmith.tools.registry import ToolRegistry


class RunState(TypedDict, total=False):
    request: str
    rounds: list[dict[str, Any]]
    answer: str | None
    # rounds that came before this invocation (a follow-up continues a finished run with a
    # fresh replan budget)
    first_round: int


class RunRecording(TaskObserver, Protocol):
    """Where the graph records a run (the engine's `RunRecorder` over the database):
    its plans, the joiner's decisions and its events, beside the tasks it observes."""

    async def load_round(self, round_: int) -> None: ...

    def emit(self, payload: EventPayload) -> None: ...

    def save_plan(self, round_: int, text: str, *, complete: bool) -> None: ...

    def save_decision(self, round_: int, decision: str, thought: str | None) -> None: ...


@dataclass
class GraphDeps:
    """What the nodes need that is not graph state (and must not be checkpointed)."""

    llm: ChatModel
    registry: ToolRegistry
    recorder: RunRecording | None = None
    # Returns a complete stored plan for a round (resume), or None to ask the planner.
    stored_plan: Callable[[int], str | None] | None = None
    observers: list[TaskObserver] = field(default_factory=list)
    max_replans: int = 3
    max_concurrency: int = 16
    task_timeout_s: float | None = 600.0
    planner_max_tokens: int | None = 4096
    # what the workflow needs of a plan (None: any plan goes)
    guard: PlanGuard | None = None
    traces: list[Trace] = field(default_factory=list)
    units: list[TaskFetchingUnit] = field(default_factory=list)


async def _one_chunk(text: str) -> AsyncIterator[str]:
    yield text


def _short_in_a_row(rounds: list[dict[str, Any]]) -> int:
    n = 0
    for r in reversed(rounds):
        if not r.get("short"):
            break
        n += 1
    return n


def replans_used(rounds: list[dict[str, Any]], first_round: int) -> int:
    """Replans spent since ``first_round``: rounds whose plan fell short are replanned
    by the guard and cost none."""
    later = rounds[first_round:-1] if rounds else []
    return sum(1 for r in later if not r.get("short"))


def build_graph(
    deps: GraphDeps, checkpointer: BaseCheckpointSaver[str] | None = None
) -> CompiledStateGraph[RunState, None, RunState, RunState]:
    async def plan_and_schedule(state: RunState) -> dict[str, Any]:
        rounds = list(state.get("rounds") or [])
        round_ = len(rounds) + 1
        rec = deps.recorder
        observers: list[TaskObserver] = ([rec] if rec else []) + deps.observers
        if rec is not None:
            await rec.load_round(round_)
        stored = deps.stored_plan(round_) if deps.stored_plan else None
        fallback = (
            stored is None and deps.guard is not None and _short_in_a_row(rounds) >= MAX_SHORT_PLANS
        )
        if fallback and deps.guard is not None:
            stored = deps.guard.default_plan()
            if rec is not None:
                rec.emit(
                    PlanDefault(
                        round=round_,
                        reason=f"{MAX_SHORT_PLANS} plans in a row fell short: running the "
                        "workflow's default plan",
                    )
                )
        if rec is not None:
            rec.emit(PlanStarted(round=round_, reused=stored is not None and not fallback))
        unit = TaskFetchingUnit(
            deps.registry,
            max_concurrency=deps.max_concurrency,
            task_timeout_s=deps.task_timeout_s,
            observer=FanoutObserver(*observers),
        )
        deps.units.append(unit)
        parser = StreamingPlanParser(deps.registry)

        def dispatch(items: list[PlanItem]) -> None:
            for item in items:
                if not isinstance(item, Join):
                    unit.add(item)

        source = (
            _one_chunk(stored)
            if stored is not None
            else deps.llm.stream(
                planner_messages(state["request"], deps.registry, rounds),
                GenerationOptions(
                    purpose="planner",
                    round=round_,
                    max_tokens=deps.planner_max_tokens,
                    # constrained decoding where the model offers it (the local engine)
                    grammar=plan_grammar(deps.registry)
                    if getattr(deps.llm, "supports_grammar", False)
                    else None,
                ),
            )
        )
        try:
            try:
                async for chunk in source:
                    dispatch(parser.feed(chunk))
                    if parser.joined:
                        break  # nothing after join() matters; stop paying for tokens
            except LLMError as exc:
                # a planner that fails (a prompt past a small model's context, an
                # endpoint gone) does not end the run when the workflow has a plan of its
                # own: what streamed so far stands, or the default plan runs
                if deps.guard is None or fallback or not exc.refused:
                    raise  # no plan of its own, or an endpoint that cannot be reached
                if not unit.records:
                    fallback = True
                    parser = StreamingPlanParser(deps.registry)
                    dispatch(parser.feed(deps.guard.default_plan()))
                if rec is not None:
                    reason = f"the planner failed ({exc})"
                    rec.emit(
                        PlanDefault(
                            round=round_, reason=reason + ": running the workflow's default plan"
                        )
                        if fallback
                        else PlanShort(round=round_, reason=reason)
                    )
            finally:
                aclose = getattr(source, "aclose", None)
                if aclose is not None:
                    await aclose()  # close the stream (and its HTTP response) now
            dispatch(parser.close())
            if rec is not None:
                rec.save_plan(round_, parser.text, complete=True)
                rec.emit(PlanFinished(round=round_, tasks=len(unit.records)))
            unit.close()
            records = await unit.wait()
        except BaseException:
            unit.cancel()
            unit.close()
            raise
        deps.traces.append(build_trace(records, unit.started_at))
        # the default plan is never judged short: it is what runs when plans are
        short = None
        if deps.guard is not None and not fallback:
            short = await deps.guard.review(records)
            if short is not None and rec is not None:
                rec.emit(PlanShort(round=round_, reason=short))
        rounds.append(
            {
                "round": round_,
                "plan": parser.text,
                "observations": [r.observation() for r in records],
                "thought": None,
                "replan_reason": None,
                "short": short,
                "default": fallback,
            }
        )
        return {"rounds": rounds}

    async def join(state: RunState) -> dict[str, Any]:
        rounds = list(state["rounds"])
        record = dict(rounds[-1])
        replans_left = deps.max_replans - replans_used(rounds, state.get("first_round", 0))
        started = time.perf_counter()
        overruled: str | None = None
        if record.get("short"):
            # the guard already knows what is missing: no joiner call, no replan spent
            decision = JoinDecision(
                action="replan", thought=None, text=record["short"], well_formed=True
            )
        else:
            messages = joiner_messages(state["request"], record, rounds[:-1], replans_left)
            try:
                result = await deps.llm.complete(
                    messages, GenerationOptions(purpose="joiner", round=record["round"])
                )
                decision = parse_join(result.text)
            except LLMError as exc:
                if deps.guard is None or not exc.refused:
                    raise
                # the workflow concludes from its verdicts: a joiner that fails ends the
                # planning, not the run
                decision = JoinDecision(
                    action="finish",
                    thought=None,
                    text=f"(the joiner failed: {exc})",
                    well_formed=False,
                )
            blocker = deps.guard.finish_blocker() if deps.guard is not None else None
            if decision.action == "finish" and replans_left > 0 and blocker is not None:
                overruled = decision.text
                decision = JoinDecision(
                    action="replan", thought=decision.thought, text=blocker, well_formed=True
                )
        answer: str | None = None
        repetition_cut = False
        if record.get("short"):
            record["replan_reason"] = decision.text
        elif decision.action == "finish":
            # small models loop: the answer keeps what it said once, and says it was cut
            cut = cut_repetition(decision.text)
            answer = cut.text
            repetition_cut = cut.cut
        elif replans_left <= 0:
            answer = (
                f"Stopped after {deps.max_replans} replan(s) without a final answer. "
                f"Last joiner note: {decision.text}"
            )
        else:
            record["replan_reason"] = decision.text
        record["thought"] = decision.thought
        rounds[-1] = record
        if deps.recorder is not None:
            deps.recorder.save_decision(record["round"], decision.action, decision.thought)
            deps.recorder.emit(
                JoinDecided(
                    round=record["round"],
                    action=decision.action,
                    thought=decision.thought,
                    text=decision.text,
                    forced_finish=decision.action == "replan" and answer is not None,
                    well_formed=decision.well_formed,
                    short=bool(record.get("short")),
                    overruled=overruled,
                    repetition_cut=repetition_cut,
                    latency_s=round(time.perf_counter() - started, 4),
                )
            )
        return {"rounds": rounds, "answer": answer}

    def route(state: RunState) -> str:
        return END if state.get("answer") is not None else "plan_and_schedule"

    graph = StateGraph(RunState)
    graph.add_node("plan_and_schedule", plan_and_schedule)
    graph.add_node("join", join)
    graph.add_edge(START, "plan_and_schedule")
    graph.add_edge("plan_and_schedule", "join")
    graph.add_conditional_edges("join", route, ["plan_and_schedule", END])
    return graph.compile(checkpointer=checkpointer)


def graph_config(run_id: str, max_replans: int) -> RunnableConfig:
    return {
        "configurable": {"thread_id": run_id},
        # two nodes per round, the guard's short rounds and default plan, plus slack
        "recursion_limit": 2 * (max_replans + 1) * (MAX_SHORT_PLANS + 1) + 4,
    }
