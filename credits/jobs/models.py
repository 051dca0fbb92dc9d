"""Job tables: the job itself, one event per state change, one run per attempt.

The database is the source of truth for every job: what the scheduler decided
(state ``starting`` with a placement and an attempt number) is written before
anything is launched, so a reconciler that starts after a crash can finish
the work by job id alone.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from credits.db import Base, BigId, UtcDateTime, in_values, utcnow


class JobState(StrEnum):
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES

    @property
    def is_active(self) -> bool:
        """Holding GPUs, or about to."""
        return self in {JobState.STARTING, JobState.RUNNING}


FINAL_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLED}
)


class Job(Base):
    """One GPU job: its spec, the rate and hold it was admitted with, where it stands."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(in_values("state", JobState), name="state"),
        CheckConstraint("gpus >= 1", name="gpus_positive"),
        CheckConstraint("max_runtime_seconds >= 1", name="max_runtime_positive"),
        CheckConstraint("hold_micro > 0", name="hold_positive"),
        CheckConstraint("attempt >= 0", name="attempt_not_negative"),
        UniqueConstraint("request_key", name="uq_jobs_request_key"),
        Index("ix_jobs_state_id", "state", "id"),
        Index("ix_jobs_project_id_id", "project_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(String(63))
    # The validated JobSpec as JSON: what the executor launches.
    spec_json: Mapped[str] = mapped_column(Text)
    flavour_id: Mapped[int] = mapped_column(ForeignKey("pool_flavours.id"), index=True)
    gpus: Mapped[int] = mapped_column(Integer)
    max_runtime_seconds: Mapped[int] = mapped_column(Integer)
    # The rate version the hold was computed at; usage is charged at it too.
    rate_version_id: Mapped[int] = mapped_column(ForeignKey("pool_rate_versions.id"))
    micro_credits_per_gpu_hour: Mapped[int] = mapped_column(BigInteger)
    hold_key: Mapped[str] = mapped_column(String(200), unique=True)
    hold_micro: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED.value)
    # Incremented each time the scheduler starts the job; a preempted job runs again.
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    # JSON list of [node, gpus] while starting or running; the last one afterwards.
    placement_json: Mapped[str | None] = mapped_column(Text)
    submitted_by: Mapped[str] = mapped_column(String(200))
    # "<actor label>:<Idempotency-Key>", so keys of different callers never collide.
    request_key: Mapped[str | None] = mapped_column(String(400))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    submitted_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    cancel_requested_by: Mapped[str | None] = mapped_column(String(200))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    charged_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    # Usage a hold no longer covered (one released early), recorded, never overdrawn.
    overage_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    settled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # When the executor was told it may forget the job (after settlement).
    released_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The platform may stop it with this grace (SIGTERM, grace, SIGKILL) and restart it.
    checkpointable: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    checkpoint_grace_seconds: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Moves the scheduler has decided for it; at the policy's max_moves it stays put.
    move_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # While a move is in flight (decided, old run not yet stopped): the placement its
    # next attempt starts on. Its old slices are ``placement_json`` until then.
    move_target_json: Mapped[str | None] = mapped_column(Text)


class JobEvent(Base):
    """One state change of a job; the job's timeline."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)


class JobRun(Base):
    """One attempt of a job on the pool: the span metering charges for."""

    __tablename__ = "job_runs"
    __table_args__ = (
        UniqueConstraint("job_id", "attempt"),
        CheckConstraint("gpus >= 1", name="gpus_positive"),
        CheckConstraint(
            "finished_at IS NULL OR started_at IS NULL OR finished_at >= started_at",
            name="finished_after_started",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    placement_json: Mapped[str] = mapped_column(Text)
    gpus: Mapped[int] = mapped_column(Integer)
    # As observed by the executor, not when the reconciler noticed.
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    # The executor phase that ended it: succeeded, failed, preempted, ...
    outcome: Mapped[str | None] = mapped_column(String(16))
    # The executor last reported it running at or after this moment; a running job
    # is metered no further than this, so a finish noticed late is never overcharged.
    seen_running_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Usage records cover this run from started_at up to here.
    metered_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # When the platform asked the executor to stop it for a move: charging ends here,
    # so the checkpoint grace and the restart are never charged.
    stop_requested_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class JobMove(Base):
    """One move of a checkpointable job: stopped on its nodes, restarted on others."""

    __tablename__ = "job_moves"
    __table_args__ = (UniqueConstraint("job_id", "number"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    # 1 for the job's first move, and so on (its move_count when it was decided).
    number: Mapped[int] = mapped_column(Integer)
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime)
    reason: Mapped[str] = mapped_column(Text)
    # The blocked job the move makes room for.
    for_job_id: Mapped[int | None] = mapped_column(BigInteger)
    from_attempt: Mapped[int] = mapped_column(Integer)
    from_placement_json: Mapped[str] = mapped_column(Text)
    to_placement_json: Mapped[str] = mapped_column(Text)
    # When its old run was seen stopped, and the attempt that restarted it (both None
    # while the move is in flight, and the attempt stays None if the job ended first).
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    to_attempt: Mapped[int | None] = mapped_column(Integer)


class ProjectGpuLimit(Base):
    """An ops-set cap on the GPUs one project may hold at once."""

    __tablename__ = "job_project_limits"
    __table_args__ = (CheckConstraint("max_concurrent_gpus >= 0", name="cap_not_negative"),)

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    max_concurrent_gpus: Mapped[int] = mapped_column(Integer)
    set_by: Mapped[str] = mapped_column(String(200))
    set_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
