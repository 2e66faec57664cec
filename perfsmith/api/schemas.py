"""The API's request and response bodies: one set of pydantic models shared by the server,
the Python client and the committed OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, model_validator

from perfsmith.events import Event as EventPayloadOut
from perfsmith.events import RunStatus
from perfsmith.storage.models import utc

MAX_SOURCE_CHARS = 200_000
_TARGET = r"^[^\s:][^:]*::[A-Za-z_][A-Za-z0-9_]*$"


StoredTime = Annotated[datetime, AfterValidator(utc)]


class _Row(BaseModel):
    """A response read from a stored row, attribute by attribute."""

    model_config = ConfigDict(from_attributes=True)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ChatRunCreate(_Body):
    """A request in words; perfsmith works out what to run (see `GET /` for examples)."""

    kind: Literal["chat"] = "chat"
    message: str = Field(min_length=1, max_length=MAX_SOURCE_CHARS)


class OptimizeRunCreate(_Body):
    """Make one Python function faster: a `target` in the server's workspace, or pasted
    `source` (with the `function` to optimize, default the first one defined)."""

    kind: Literal["optimize"] = "optimize"
    target: str | None = Field(
        default=None,
        pattern=_TARGET,
        max_length=1000,
        description="FILE::FUNCTION, FILE relative to the server's workspace",
    )
    source: str | None = Field(default=None, min_length=1, max_length=MAX_SOURCE_CHARS)
    function: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=200)
    inputs: str | None = Field(
        default=None,
        pattern=_TARGET,
        max_length=1000,
        description="input generator FILE::FUNC (FUNC(seed) returns argument tuples)",
    )
    inputs_source: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SOURCE_CHARS,
        description="code defining an input generator (its first function, or "
        "`inputs_function`), for pasted `source`",
    )
    inputs_function: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=200
    )
    workload: str | None = Field(
        default=None,
        pattern=_TARGET,
        max_length=1000,
        description="FILE::FUNC of no arguments that exercises the target",
    )
    user_candidates: list[Annotated[str, Field(min_length=1, max_length=MAX_SOURCE_CHARS)]] = Field(
        default_factory=list,
        max_length=8,
        description="your own rewrites of the function (code), verified alongside the "
        "model's proposals",
    )
    rounds: int = Field(default=2, ge=1, le=10, description="planning rounds at most")
    candidates: int = Field(default=3, ge=1, le=8, description="proposals per round")
    verify_rounds: int = Field(default=12, ge=3, le=200)

    @model_validator(mode="after")
    def _one_target(self) -> OptimizeRunCreate:
        if (self.target is None) == (self.source is None):
            raise ValueError("give exactly one of `target` (FILE::FUNCTION) and `source` (code)")
        if self.function is not None and self.source is None:
            raise ValueError("`function` picks a function of `source`; with `target` leave it out")
        if self.inputs is not None and self.inputs_source is not None:
            raise ValueError("give at most one of `inputs` (FILE::FUNC) and `inputs_source`")
        if self.inputs_function is not None and self.inputs_source is None:
            raise ValueError("`inputs_function` picks a function of `inputs_source`")
        return self


class KernelRunCreate(_Body):
    """Write a faster kernel for a problem of the server's kernel suite (or a problem file
    in its workspace)."""

    kind: Literal["kernel"] = "kernel"
    problem: str = Field(
        min_length=1,
        max_length=1000,
        description="a problem's name in the suite (e.g. softmax) or FILE.py in the workspace",
    )
    backend: Literal["cpp", "cuda", "triton"] = "cpp"
    rounds: int = Field(default=2, ge=1, le=10)
    candidates: int = Field(default=3, ge=1, le=8)
    compiler: bool = Field(
        default=True, description="torch's compiler's kernels as a candidate (CPU problems)"
    )
    versus_compile: bool = Field(
        default=False,
        description="also time the best kernel against torch.compile of the reference "
        "(about 15 s more)",
    )


class PlanRunCreate(_Body):
    """A free-form request planned over the tools the server was started with (`--tools`)."""

    kind: Literal["plan"] = "plan"
    request: str = Field(min_length=1, max_length=MAX_SOURCE_CHARS)


RunCreate = Annotated[
    ChatRunCreate | OptimizeRunCreate | KernelRunCreate | PlanRunCreate, Field(discriminator="kind")
]


class MessageCreate(_Body):
    """A follow-up in the run's chat: the run plans again with this instruction."""

    text: str = Field(min_length=1, max_length=MAX_SOURCE_CHARS)


class RunOut(BaseModel):
    id: str
    kind: str
    status: RunStatus
    request: str = Field(description="what the planner was asked")
    message: str | None = Field(description="the user's own words, for runs started by chat")
    answer: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    active: bool = Field(description="being worked on by this server now")


class RunPage(BaseModel):
    items: list[RunOut]
    total: int
    limit: int
    offset: int
    next_offset: int | None


class PlanOut(_Row):
    round: int
    text: str
    complete: bool
    thought: str | None
    decision: str | None


class TaskOut(_Row):
    round: int
    idx: int
    tool: str
    line: str
    args: str
    deps: list[int]
    status: str
    error: str | None
    result: str | None = Field(validation_alias=AliasChoices("result", "result_text"))
    attempts: int
    reused: bool
    started_at: float | None
    ended_at: float | None
    wait_s: float
    run_s: float


class MeasurementOut(_Row):
    kind: str
    subject: str
    value: float
    unit: str
    meta: dict[str, Any]


class CandidateOut(_Row):
    id: int
    origin: str
    language: str
    source: str
    verdict: str | None
    speedup: float | None
    ci_low: float | None
    ci_high: float | None
    failure: str | None
    created_at: StoredTime
    measurements: list[MeasurementOut]


class ArtifactOut(BaseModel):
    id: int
    kind: str
    name: str
    media_type: str
    size: int
    candidate_id: int | None
    created_at: StoredTime

    @classmethod
    def of(cls, row: Any, size: int) -> ArtifactOut:
        """A stored artifact (its row, without the content) and its size in bytes."""
        return cls(size=size, **{f: getattr(row, f) for f in cls.model_fields if f != "size"})


class EventOut(BaseModel):
    seq: int
    type: str
    payload: EventPayloadOut = Field(
        description="the event's fields, by type (perfsmith.events); `type` repeats the event's"
    )
    time: datetime


class Health(BaseModel):
    status: Literal["ok"]
    version: str


class Problem(BaseModel):
    """RFC 9457 problem details; `errors` lists each invalid field of a request."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


# -- batches ---------------------------------------------------------------------------

MAX_BATCH_CHARS = 1_000_000

BatchStatus = Literal["active", "cancelled", "ended"]
BatchJobStatus = Literal["queued", "running", "done", "failed", "cancelled", "skipped"]


class BatchCreate(_Body):
    """A batch file (TOML, as `perfsmith batch submit` reads): its paths relative to the
    server's workspace, its jobs run with the server's model."""

    toml: str = Field(min_length=1, max_length=MAX_BATCH_CHARS)


class BatchResume(_Body):
    until: str | None = Field(
        default=None, max_length=40, description="a new deadline: HH:MM or an ISO date-time"
    )


class BatchJobOut(_Row):
    id: int
    position: int
    name: str
    kind: str
    group: str | None
    status: BatchJobStatus
    run_id: str | None
    attempts: int
    error: str | None
    tokens: int
    elapsed_s: float
    summary: dict[str, Any]
    started_at: StoredTime | None
    ended_at: StoredTime | None


class BatchOut(_Row):
    id: str
    name: str
    status: BatchStatus
    budgets: dict[str, Any]
    deadline: StoredTime | None
    created_at: StoredTime
    ended_at: StoredTime | None
    jobs: list[BatchJobOut]
