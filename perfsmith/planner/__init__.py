"""Plans: the plan language (its model), the (streaming) parser, the prompts and the joiner."""

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
