"""Plans: the plan model, the (streaming) parser, prompts, joiner, and the LangGraph graph."""

from perfsmith.planner.parser import PlanParser, parse_plan
from perfsmith.planner.plan import Join, PlanItem, PlanLineError, Ref, TaskSpec, Template
from perfsmith.planner.stream import StreamingPlanParser

__all__ = [
    "Join",
    "PlanItem",
    "PlanLineError",
    "PlanParser",
    "Ref",
    "StreamingPlanParser",
    "TaskSpec",
    "Template",
    "parse_plan",
]
