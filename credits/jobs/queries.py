"""Reading jobs: one job with its timeline and runs, pages of jobs, the pool's state."""

from __future__ import annotations

from functools import partial
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import ColumnElement, Connection, bindparam, func, select
from sqlalchemy.orm import Session

from credits.db import StatementCache, core_connection
from credits.driver_reads import DriverRead
from credits.identity.actor import Actor
from credits.identity.rules import visible_jobs
from credits.jobs.errors import JobNotFound
from credits.jobs.executors.base import Capacity
from credits.jobs.models import Job, JobEvent, JobMove, JobRun, JobState
from credits.jobs.schemas import (
    FlavourStatus,
    JobDetail,
    JobEventOut,
    JobMoveOut,
    JobOut,
    JobPage,
    JobQuery,
    JobRunOut,
    PlacementOut,
    PoolStatus,
)
from credits.jobs.spec import stored_spec
from credits.jobs.transitions import placement_from_json
from credits.pool.models import GpuFlavour

ACTIVE_STATES = (JobState.STARTING.value, JobState.RUNNING.value)
VACATING = "vacating"  # not a state: the old GPUs of jobs being moved


def _placement(text: str | None) -> list[PlacementOut]:
    return [PlacementOut(node=part.node, gpus=part.gpus) for part in placement_from_json(text)]


def flavour_names(session: Session) -> dict[int, str]:
    return dict(session.execute(select(GpuFlavour.id, GpuFlavour.name)).all())


def job_out(session: Session, job: Job, flavours: dict[int, str] | None = None) -> JobOut:
    names = flavours if flavours is not None else flavour_names(session)
    return JobOut(
        id=job.id,
        project_id=job.project_id,
        name=job.name,
        state=JobState(job.state),
        flavour=names.get(job.flavour_id, str(job.flavour_id)),
        gpus=job.gpus,
        max_runtime_seconds=job.max_runtime_seconds,
        rate_version_id=job.rate_version_id,
        micro_credits_per_gpu_hour=job.micro_credits_per_gpu_hour,
        hold_key=job.hold_key,
        hold_micro=job.hold_micro,
        charged_micro=job.charged_micro,
        overage_micro=job.overage_micro,
        attempt=job.attempt,
        placement=_placement(job.placement_json),
        submitted_by=job.submitted_by,
        submitted_at=job.submitted_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        cancel_requested_at=job.cancel_requested_at,
        exit_code=job.exit_code,
        reason=job.reason,
        settled_at=job.settled_at,
        checkpointable=job.checkpointable,
        checkpoint_grace_seconds=job.checkpoint_grace_seconds,
        move_count=job.move_count,
    )


def load_job_for_actor(session: Session, actor: Actor, job_id: int, *, lock: bool = False) -> Job:
    """The job, when the actor may see it (rules.visible_jobs); JobNotFound otherwise (same
    message whether it exists or not, so ids cannot be probed)."""
    query = select(Job).where(Job.id == job_id, visible_jobs(actor))
    if lock:
        query = query.with_for_update()
    job = session.scalar(query.execution_options(populate_existing=True))
    if job is None:
        raise JobNotFound(f"no job has the id {job_id}")
    return job


def get_job_detail(session: Session, actor: Actor, job_id: int) -> JobDetail:
    job = load_job_for_actor(session, actor, job_id)
    events = session.scalars(
        select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.id)
    )
    runs = session.scalars(select(JobRun).where(JobRun.job_id == job.id).order_by(JobRun.attempt))
    moves = session.scalars(
        select(JobMove).where(JobMove.job_id == job.id).order_by(JobMove.number)
    )
    return JobDetail(
        **job_out(session, job).model_dump(),
        spec=stored_spec(job.spec_json),
        events=[
            JobEventOut(
                from_state=JobState(event.from_state) if event.from_state else None,
                to_state=JobState(event.to_state),
                at=event.at,
                actor=event.actor,
                reason=event.reason,
            )
            for event in events
        ],
        runs=[
            JobRunOut(
                attempt=run.attempt,
                placement=_placement(run.placement_json),
                gpus=run.gpus,
                started_at=run.started_at,
                finished_at=run.finished_at,
                outcome=run.outcome,
            )
            for run in runs
        ],
        moves=[_move_out(record) for record in moves],
    )


def _move_out(record: JobMove) -> JobMoveOut:
    return JobMoveOut(
        number=record.number,
        requested_at=record.requested_at,
        reason=record.reason,
        for_job_id=record.for_job_id,
        from_attempt=record.from_attempt,
        from_placement=_placement(record.from_placement_json),
        to_placement=_placement(record.to_placement_json),
        stopped_at=record.stopped_at,
        to_attempt=record.to_attempt,
    )


# What a listed job shows: JobOut's columns, not its spec or the executor's state.
_LISTED_COLUMNS = [
    column
    for column in Job.__table__.columns
    if column.name in JobOut.model_fields or column.name == "placement_json"
]
_listings = StatementCache()
_LISTED_JOBS = TypeAdapter(list[JobOut])


def list_jobs_for_actor(db: Session | Connection, actor: Actor, query: JobQuery) -> JobPage:
    """A page of the jobs the actor may see, each with its flavour's name: one
    statement, built once per rule and filters, read as rows (a listing needs no
    ORM objects), through a session or a connection."""
    rule = visible_jobs(actor)
    filters = {
        "project": query.project,
        "state": query.state.value if query.state is not None else None,
        "flavour": query.flavour,
        "cursor": query.cursor,
    }
    given = {name: value for name, value in filters.items() if value is not None}
    read = _listings.get((rule, *sorted(given)), partial(_listing, rule, set(given)))
    rows = read.rows(core_connection(db), given | {"limit": query.limit + 1})
    listed = [dict(zip(read.names, row, strict=True)) for row in rows[: query.limit]]
    return JobPage(
        items=_listed_jobs(listed),
        next_cursor=listed[-1]["id"] if len(rows) > query.limit else None,
    )


def _listing(rule: ColumnElement[bool], given: set[str]) -> DriverRead:
    conditions = {
        "project": Job.project_id == bindparam("project"),
        "state": Job.state == bindparam("state"),
        "flavour": GpuFlavour.name == bindparam("flavour"),
        "cursor": Job.id > bindparam("cursor"),
    }
    return DriverRead(
        select(*_LISTED_COLUMNS, GpuFlavour.name.label("flavour"))
        .join_from(Job, GpuFlavour, GpuFlavour.id == Job.flavour_id)
        .where(rule, *(condition for name, condition in conditions.items() if name in given))
        .order_by(Job.id)
        .limit(bindparam("limit"))
    )


def _listed_jobs(rows: list[dict[str, Any]]) -> list[JobOut]:
    """Rows of the listing as JobOut, validated in one call rather than one per row."""
    for fields in rows:
        fields["placement"] = _placement(fields["placement_json"])
    return _LISTED_JOBS.validate_python(rows)


def pool_status(session: Session, capacity: Capacity, *, executor: str) -> PoolStatus:
    """Capacity and free GPUs per flavour, with the queue, as ops want to see it."""
    flavours = flavour_names(session)
    counts: dict[tuple[str, str], tuple[int, int]] = {}
    rows = session.execute(
        select(Job.flavour_id, Job.state, func.count(), func.coalesce(func.sum(Job.gpus), 0))
        .where(Job.state.in_((JobState.QUEUED.value, *ACTIVE_STATES)))
        .group_by(Job.flavour_id, Job.state)
    )
    for flavour_id, state, jobs, gpus in rows:
        counts[(flavours.get(flavour_id, str(flavour_id)), state)] = (int(jobs), int(gpus))
    # A job being moved holds its old GPUs too until its old run has stopped.
    moving = session.execute(
        select(Job.flavour_id, func.count(), func.coalesce(func.sum(Job.gpus), 0))
        .where(Job.state == JobState.RUNNING.value, Job.move_target_json.is_not(None))
        .group_by(Job.flavour_id)
    )
    for flavour_id, jobs, gpus in moving:
        counts[(flavours.get(flavour_id, str(flavour_id)), VACATING)] = (int(jobs), int(gpus))
    names = sorted({node.flavour for node in capacity.nodes} | {name for name, _ in counts})
    return PoolStatus(
        executor=executor,
        flavours=[_flavour_status(name, capacity, counts) for name in names],
    )


def _flavour_status(
    name: str, capacity: Capacity, counts: dict[tuple[str, str], tuple[int, int]]
) -> FlavourStatus:
    nodes = [node for node in capacity.nodes if node.flavour == name and node.schedulable]
    total = sum(node.gpus for node in nodes)
    in_use = sum(counts.get((name, state), (0, 0))[1] for state in (*ACTIVE_STATES, VACATING))
    queued_jobs, queued_gpus = counts.get((name, JobState.QUEUED.value), (0, 0))
    return FlavourStatus(
        flavour=name,
        nodes=len(nodes),
        gpus=total,
        gpus_in_use=in_use,
        gpus_free=max(0, total - in_use),
        queued_jobs=queued_jobs,
        queued_gpus=queued_gpus,
        running_jobs=sum(counts.get((name, state), (0, 0))[0] for state in ACTIVE_STATES),
    )
