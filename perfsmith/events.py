"""The vocabulary every writer and reader of a run shares: its statuses and its events.

At the bottom of the house (it imports nothing of perfsmith): the engine and the
workflows write events in these shapes, the service writes the statuses, the console, the
API's event stream, its OpenAPI document and the web UI read them (a test checks that the
UI's script reads only fields defined here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

RunStatus = Literal["pending", "running", "done", "failed", "cancelled", "interrupted"]
STATUSES: tuple[str, ...] = get_args(RunStatus)
# `interrupted`: its process died (a server killed with -9); `runs resume` finishes it.
TERMINAL = frozenset({"done", "failed", "cancelled", "interrupted"})
ACTIVE = frozenset({"pending", "running"})
# What a run's listeners are called with, per event as it happens:
# {"run_id", "seq", "type", "payload" (the fields of its model), "time"}.
EventListener = Callable[[dict[str, Any]], None]


class EventPayload(BaseModel):
    """What an event says. Subclasses name their `type`; stored payloads hold the other
    fields (written in full, None included), the API's event stream adds `type` back.
    Readers written against a dict (`payload["tool"]`) may index it."""

    model_config = ConfigDict(extra="allow")
    type: str

    def __getitem__(self, name: str) -> Any:
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None

    def fields(self) -> dict[str, Any]:
        """The payload as stored (JSON values, without `type`)."""
        return self.model_dump(mode="json", exclude={"type"})


class RunStarted(EventPayload):
    type: Literal["run_started"] = "run_started"
    request: str


class UserMessage(EventPayload):
    """A follow-up: the user's new instruction, planned for after round `after_round`."""

    type: Literal["user_message"] = "user_message"
    text: str
    after_round: int


class RunResumed(EventPayload):
    type: Literal["run_resumed"] = "run_resumed"
    from_nodes: list[str]


class KeptCommit(BaseModel):
    """A speedup a repository run committed to its branch."""

    target: str
    commit: str | None
    speedup: float | None


class RunFinished(EventPayload):
    """A run's last event, stored before its status changes. `done` runs carry their
    answer and the workflow's summary (best candidate, its speedup, how many)."""

    type: Literal["run_finished"] = "run_finished"
    status: RunStatus
    answer: str | None = None
    error: str | None = None
    best: int | None = None
    speedup: float | None = None
    candidates: int | None = None
    rounds: int | None = None
    # a repository run: the commits it kept on its branch, the runs of its functions
    kept: int | None = None
    functions: int | None = None
    branch: str | None = None
    runs: list[str] | None = None
    commits: list[KeptCommit] | None = None


class RoundEvent(EventPayload):
    """An event of one planning round (`round` counts from 1)."""

    round: int


class TaskEvent(RoundEvent):
    """An event of one task of a round's plan: `idx` is its number in the plan (None for
    a line that did not parse), `tool` what it calls."""

    idx: int | None
    tool: str


class PlanStarted(RoundEvent):
    type: Literal["plan_started"] = "plan_started"
    reused: bool  # a stored plan (a resumed run) rather than a new one


class PlanFinished(RoundEvent):
    type: Literal["plan_finished"] = "plan_finished"
    tasks: int


class PlanNote(RoundEvent):
    """What became of a round's plan, and why (`reason`)."""

    reason: str


class PlanShort(PlanNote):
    """The plan guard's verdict: the plan cannot do what the workflow needs."""

    type: Literal["plan_short"] = "plan_short"


class PlanDefault(PlanNote):
    """The workflow's default plan runs instead of the planner's."""

    type: Literal["plan_default"] = "plan_default"


class InvalidPlanLine(RoundEvent):
    type: Literal["plan_line_error"] = "plan_line_error"
    idx: int | None
    line: str
    error: str | None


class TaskParsed(TaskEvent):
    type: Literal["task_parsed"] = "task_parsed"
    deps: list[int]
    line: str
    duplicate_of: int | None  # the same call earlier in the plan: it runs once


class TaskStarted(TaskEvent):
    type: Literal["task_started"] = "task_started"


class TaskFinished(TaskEvent):
    type: Literal["task_finished"] = "task_finished"
    status: str
    error: str | None
    result: str  # the first 500 characters
    run_s: float
    wait_s: float
    reused: bool  # finished before a resume: not run again


class JoinDecided(RoundEvent):
    """The joiner's decision after a round."""

    type: Literal["join"] = "join"
    action: str  # finish or replan
    thought: str | None
    text: str
    forced_finish: bool
    well_formed: bool
    short: bool
    overruled: str | None  # a finish the guard turned into a replan: the joiner's text
    repetition_cut: bool
    latency_s: float


Event = Annotated[
    RunStarted
    | UserMessage
    | RunResumed
    | RunFinished
    | PlanStarted
    | PlanFinished
    | PlanShort
    | PlanDefault
    | InvalidPlanLine
    | TaskParsed
    | TaskStarted
    | TaskFinished
    | JoinDecided,
    Field(discriminator="type"),
]
EVENT_TYPES: dict[str, type[EventPayload]] = {
    model.model_fields["type"].default: model
    for model in (
        RunStarted,
        UserMessage,
        RunResumed,
        RunFinished,
        PlanStarted,
        PlanFinished,
        PlanShort,
        PlanDefault,
        InvalidPlanLine,
        TaskParsed,
        TaskStarted,
        TaskFinished,
        JoinDecided,
    )
}


def read_event(type_: str, payload: dict[str, Any]) -> EventPayload:
    """A stored event's payload as its model. An event stored by an older perfsmith
    whose payload lacks a field added since is read as it is (never an error)."""
    model = EVENT_TYPES[type_]
    try:
        return model.model_validate({**payload, "type": type_})
    except ValidationError:
        return model.model_construct(**{**payload, "type": type_})
