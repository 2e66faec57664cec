"""The ORM models: every run, plan, task, event, candidate, measurement and artifact."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; they were stored in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(32), default="orchestrate")
    request: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    answer: Mapped[str | None] = mapped_column(Text, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    # How to rebuild the run elsewhere (tool modules, LLM spec, limits) for `runs resume`.
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tenant: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    # The process working on it (storage.owners): a run left `running` by a process that
    # is gone becomes `interrupted` when a server starts.
    owner: Mapped[str | None] = mapped_column(String(160), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    plans: Mapped[list[Plan]] = relationship(back_populates="run", order_by="Plan.round")
    tasks: Mapped[list[Task]] = relationship(back_populates="run")


class Plan(Base):
    """One planning round's plan text (streamed in; `complete` once join() arrived)."""

    __tablename__ = "plans"
    __table_args__ = (UniqueConstraint("run_id", "round"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    round: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text, default="")
    complete: Mapped[bool] = mapped_column(default=False)
    thought: Mapped[str | None] = mapped_column(Text, default=None)
    decision: Mapped[str | None] = mapped_column(String(16), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    run: Mapped[Run] = relationship(back_populates="plans")


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (UniqueConstraint("run_id", "round", "idx"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    round: Mapped[int] = mapped_column(Integer)
    idx: Mapped[int] = mapped_column(Integer)
    tool: Mapped[str] = mapped_column(String(128))
    line: Mapped[str] = mapped_column(Text, default="")
    args: Mapped[str] = mapped_column(Text, default="")
    deps: Mapped[list[Any]] = mapped_column(default=list)
    fingerprint: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(16), default="waiting")
    # JSON-encoded result when it can be encoded (then it can be reused on resume).
    result_json: Mapped[str | None] = mapped_column(Text, default=None)
    result_text: Mapped[str | None] = mapped_column(Text, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    reused: Mapped[bool] = mapped_column(default=False)
    started_at: Mapped[float | None] = mapped_column(Float, default=None)  # epoch seconds
    ended_at: Mapped[float | None] = mapped_column(Float, default=None)
    wait_s: Mapped[float] = mapped_column(Float, default=0.0)
    run_s: Mapped[float] = mapped_column(Float, default=0.0)

    run: Mapped[Run] = relationship(back_populates="tasks")


class Event(Base):
    """Append-only: the one stream the CLI, the API and the UI render."""

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("run_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Candidate(Base):
    __tablename__ = "candidates"
    __table_args__ = (Index("ix_candidates_run_hash", "run_id", "source_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"), default=None)
    origin: Mapped[str] = mapped_column(String(64))  # "llm:<model>", "user:<file>", ...
    language: Mapped[str] = mapped_column(String(16), default="python")
    source: Mapped[str] = mapped_column(Text)
    source_hash: Mapped[str] = mapped_column(String(64))
    verdict: Mapped[str | None] = mapped_column(String(16), default=None)
    speedup: Mapped[float | None] = mapped_column(Float, default=None)
    ci_low: Mapped[float | None] = mapped_column(Float, default=None)
    ci_high: Mapped[float | None] = mapped_column(Float, default=None)
    failure: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    measurements: Mapped[list[Measurement]] = relationship(back_populates="candidate")


class Measurement(Base):
    __tablename__ = "measurements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    candidate_id: Mapped[int] = mapped_column(
        ForeignKey("candidates.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32))  # time, instructions, memory
    subject: Mapped[str] = mapped_column(String(16), default="candidate")  # or "reference"
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(16))
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    candidate: Mapped[Candidate] = relationship(back_populates="measurements")


class Artifact(Base):
    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    candidate_id: Mapped[int | None] = mapped_column(ForeignKey("candidates.id"), default=None)
    kind: Mapped[str] = mapped_column(String(32))  # diff, report-md, report-html, kernel
    name: Mapped[str] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(128), default="text/plain")
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiToken(Base):
    """A bearer token for the REST API; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # shown in listings, never the secret
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class Batch(Base):
    """An overnight batch: its file as submitted, its budgets and, once it ended, its
    morning report. Its jobs are `BatchJob` rows (the durable queue)."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    # active (jobs left to run), cancelled (asked to stop), ended (every job ended)
    status: Mapped[str] = mapped_column(String(16), default="active", index=True)
    source: Mapped[str] = mapped_column(Text)  # the batch file as submitted
    budgets: Mapped[dict[str, Any]] = mapped_column(default=dict)
    deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    tenant: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    report_md: Mapped[str | None] = mapped_column(Text, default=None)
    report_html: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)

    jobs: Mapped[list[BatchJob]] = relationship(
        back_populates="batch", order_by="BatchJob.position"
    )


class BatchJob(Base):
    """One job of a batch: a run to start (or resume), claimed by one worker at a time
    under a lease that the worker renews; a dead worker's lease runs out and the job is
    claimed again."""

    __tablename__ = "batch_jobs"
    __table_args__ = (UniqueConstraint("batch_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))  # the run's kind
    group: Mapped[str | None] = mapped_column(String(200), default=None)  # its kernel suite
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the run's config
    llm: Mapped[str | None] = mapped_column(String(500), default=None)
    # queued, running, done, failed, cancelled, skipped (the deadline came first)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    run_id: Mapped[str | None] = mapped_column(String(32), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(160), default=None)
    lease_expires: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    tokens: Mapped[int] = mapped_column(Integer, default=0)
    elapsed_s: Mapped[float] = mapped_column(Float, default=0.0)  # over all attempts
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)

    batch: Mapped[Batch] = relationship(back_populates="jobs")
