"""Shapes jobs take across the API, the CLI and the Celery tasks."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from credits.jobs.models import JobState
from credits.jobs.spec import JobSpec

MAX_PAGE = 200
DEFAULT_PAGE = 50


class PlacementOut(BaseModel):
    node: str
    gpus: int


class JobEventOut(BaseModel):
    from_state: JobState | None
    to_state: JobState
    at: datetime
    actor: str
    reason: str | None


class JobRunOut(BaseModel):
    attempt: int
    placement: list[PlacementOut]
    gpus: int
    started_at: datetime | None
    finished_at: datetime | None
    outcome: str | None


class JobMoveOut(BaseModel):
    """One move of a checkpointable job: stopped with its grace, restarted elsewhere."""

    number: int
    requested_at: datetime = Field(description="when the scheduler decided it")
    reason: str
    for_job_id: int | None = Field(description="the blocked job the move made room for")
    from_attempt: int
    from_placement: list[PlacementOut]
    to_placement: list[PlacementOut]
    stopped_at: datetime | None = Field(description="when its old run was seen stopped")
    to_attempt: int | None = Field(description="the attempt that restarted it on the target")


class JobOut(BaseModel):
    """A job as its owner sees it; amounts are micro-credits (1 credit = 1,000,000)."""

    id: int
    project_id: int
    name: str
    state: JobState
    flavour: str
    gpus: int
    max_runtime_seconds: int
    rate_version_id: int
    micro_credits_per_gpu_hour: int
    hold_key: str
    hold_micro: int = Field(description="credits held at admission for the worst case")
    charged_micro: int
    overage_micro: int = Field(description="usage beyond the hold: recorded, never overdrawn")
    attempt: int
    placement: list[PlacementOut]
    submitted_by: str
    submitted_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested_at: datetime | None
    exit_code: int | None
    reason: str | None
    settled_at: datetime | None
    checkpointable: bool = Field(
        default=False, description="the platform may stop it with its grace and restart it"
    )
    checkpoint_grace_seconds: int = Field(default=0, description="SIGTERM to SIGKILL")
    move_count: int = Field(default=0, description="times the scheduler has moved it")
    replayed: bool = Field(default=False, description="true when an Idempotency-Key was reused")


class JobDetail(JobOut):
    spec: JobSpec
    events: list[JobEventOut]
    runs: list[JobRunOut]
    moves: list[JobMoveOut] = Field(default_factory=list)


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: int | None = Field(description="pass as `cursor` for the next page")


class JobQuery(BaseModel):
    """Filters for listing jobs, in submission order (by id)."""

    model_config = ConfigDict(extra="forbid")

    project: int | None = Field(default=None, ge=1, le=2**62)
    state: JobState | None = None
    flavour: str | None = Field(default=None, max_length=63)
    cursor: int | None = Field(default=None, ge=1, le=2**62)
    limit: int = Field(default=DEFAULT_PAGE, ge=1, le=MAX_PAGE)


class JobLogs(BaseModel):
    job_id: int
    tail_lines: int
    text: str


class FlavourStatus(BaseModel):
    flavour: str
    nodes: int
    gpus: int
    gpus_in_use: int
    gpus_free: int
    queued_jobs: int
    queued_gpus: int
    running_jobs: int


class PoolStatus(BaseModel):
    executor: str
    flavours: list[FlavourStatus]


class SchedulePassOut(BaseModel):
    started: list[int]
    queued: int
    moved: list[int] = Field(
        default_factory=list, description="checkpointable jobs being moved to make room"
    )


class ReconcileOut(BaseModel):
    launched: list[int] = Field(default_factory=list)
    cancelled: list[int] = Field(default_factory=list)
    moving: list[int] = Field(
        default_factory=list, description="jobs the executor was asked to stop for a move"
    )
    transitions: list[str] = Field(default_factory=list)
    metered: int = Field(default=0, description="usage records written for running jobs")
    settled: list[int] = Field(default_factory=list)
    released: list[int] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list, description="jobs that could not be handled")
    skipped: bool = Field(default=False, description="another reconcile was running")
