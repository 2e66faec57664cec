"""What every kind of run implements, and what it is given to work with.

A `Workflow` does a run's work and returns what it found; it never writes the run's
status: the run service (`perfsmith.service.runs.RunService`) creates the run, marks it
running, calls `start` or `resume`, and settles it from what they return or raise. A
workflow stores in the run's config everything its `resume` needs, so every kind of run can
be finished by another process after a crash.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from perfsmith.config import Settings
    from perfsmith.engine.drive import RunResult
    from perfsmith.engine.guard import PlanGuard
    from perfsmith.events import EventListener
    from perfsmith.llm.base import ChatModel
    from perfsmith.sandbox.base import Sandbox
    from perfsmith.storage.db import Database
    from perfsmith.tools.registry import Tool


class RunResources(Protocol):
    """The machine's parts a run works with, built in one place (the service's
    `Resources`): the sandbox, opened once and shared, and the LLM."""

    async def sandbox(self) -> Sandbox: ...

    def model(self, stored_spec: str | None) -> ChatModel | None:
        """The LLM for a run whose config names ``stored_spec``: the one given for this
        run if any, else the stored spec's model; None when neither names one."""
        ...

    @property
    def llm_spec(self) -> str | None:
        """The spec of the LLM given for this run, if it was given as a spec."""
        ...


class Runs(Protocol):
    """Runs a workflow starts itself (a repository run's optimize runs): the run service."""

    async def create(self, kind: str, config: dict[str, Any]) -> str: ...

    async def start(
        self,
        kind: str,
        config: dict[str, Any],
        *,
        resources: RunResources,
        run_id: str | None = None,
        listeners: Iterable[EventListener] = (),
        extras: dict[str, Any] | None = None,
    ) -> Any: ...

    async def resume(
        self,
        run_id: str,
        *,
        resources: RunResources,
        listeners: Iterable[EventListener] = (),
        extras: dict[str, Any] | None = None,
    ) -> Any: ...


@dataclass
class Job:
    """One run being worked on: what its workflow reads and writes."""

    run_id: str
    request: str
    config: dict[str, Any]  # stored with the run: everything `resume` needs
    status: str  # the run's stored status when this process picked it up
    db: Database
    settings: Settings
    resources: RunResources
    listeners: list[EventListener] = field(default_factory=list)
    # in-process inputs that cannot be stored (Python tools, recorded calls): a resume
    # from another process goes without them
    extras: dict[str, Any] = field(default_factory=dict)
    runs: Runs | None = None  # the service, for workflows whose work is runs of their own

    def report_folder(self, name: str | None = None) -> Path:
        """Where the run's report goes: the configured ``report_dir``, else a folder
        ``name`` (the run's id by default) under the data directory's ``reports``."""
        from perfsmith.config import data_dir

        given = self.config.get("report_dir")
        return Path(given) if given else data_dir() / "reports" / (name or self.run_id)


@dataclass
class Finished:
    """What a run's work ended with: the answer shown to the user, the summary stored on
    its last event, and the workflow's own result object."""

    answer: str
    result: Any
    summary: dict[str, Any] = field(default_factory=dict)


class Workflow(Protocol):
    """One kind of run (`orchestrate`, `demo`, `optimize`, `kernel`)."""

    kind: str

    def request_text(self, config: dict[str, Any]) -> str:
        """The run's request in words, from its config."""
        ...

    def check(self, config: dict[str, Any]) -> dict[str, Any]:
        """The config completed and checked before the run is stored (a missing file or
        a bad option is refused here, with nothing stored)."""
        ...

    async def start(self, job: Job) -> Finished: ...

    async def resume(self, job: Job, follow_up: str | None) -> Finished:
        """Finish an interrupted run (``follow_up`` None: reusing every finished task and
        verdict), or continue an ended one with the user's new instruction."""
        ...


async def drive_job(
    job: Job,
    *,
    tools: list[Tool],
    llm: ChatModel,
    max_replans: int,
    resuming: bool = False,
    follow_up: str | None = None,
    guard: PlanGuard | None = None,
) -> RunResult:
    """The engine's plan-execute-join rounds for the job's run, with its tools and LLM:
    a fresh start, a resume (finished tasks reused) or a follow-up."""
    from perfsmith.engine.drive import drive

    return await drive(
        db=job.db,
        run_id=job.run_id,
        request=job.request,
        tools=tools,
        llm=llm,
        settings=job.settings,
        max_replans=max_replans,
        listeners=job.listeners,
        resuming=resuming,
        follow_up=follow_up,
        guard=guard,
    )
