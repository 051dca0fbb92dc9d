"""The reconciler's writes to one job row: lock it, find its current run, end it.

Shared by the reconcile steps (:mod:`credits.jobs.reconciler`), each in its own
transaction; none of these commits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.jobs.executors.base import Observation
from credits.jobs.models import Job, JobRun, JobState
from credits.jobs.moves import abandon_move
from credits.jobs.transitions import move

RECONCILER_ACTOR = "system:reconciler"


def finish_job(
    session: Session,
    job: Job,
    state: JobState,
    *,
    at: datetime,
    reason: str | None,
    seen: Observation | None = None,
) -> None:
    run = current_run(session, job) if job.attempt else None
    if run is not None:
        end_run(run, seen, at)
    abandon_move(session, job, at=at)
    job.finished_at = at
    job.reason = reason
    move(session, job, state, actor=RECONCILER_ACTOR, at=at, reason=reason)


def end_run(run: JobRun, seen: Observation | None, now: datetime) -> None:
    if run.finished_at is not None:
        return
    if seen is not None and seen.finished_at is not None:
        run.finished_at = seen.finished_at
    elif run.started_at is not None:
        run.finished_at = now
    if run.started_at is not None and run.finished_at is not None:
        run.finished_at = max(run.finished_at, run.started_at)
    run.outcome = seen.phase.value if seen is not None else "lost"


def locked_job(session: Session, job_id: int) -> Job:
    job = session.scalar(
        select(Job)
        .where(Job.id == job_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if job is None:
        raise LookupError(f"job {job_id} vanished")
    return job


def current_run(session: Session, job: Job) -> JobRun:
    run = session.scalar(
        select(JobRun).where(JobRun.job_id == job.id, JobRun.attempt == job.attempt)
    )
    if run is None:
        raise LookupError(f"job {job.id} has no run for attempt {job.attempt}")
    return run
