"""Jobs the reconciler gives up on because they never started: the executor is told to
end the attempt, then the job fails, is cancelled (its user asked meanwhile) or, for a
move's restart, queues again with its hold kept."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from credits.jobs.executor_calls import executor_call
from credits.jobs.executors.base import Executor
from credits.jobs.job_rows import RECONCILER_ACTOR, finish_job, locked_job
from credits.jobs.models import Job, JobEvent, JobState
from credits.jobs.moves import requeue_unlaunched_move, unstarted_move_restarts
from credits.jobs.schemas import ReconcileOut

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class SlowStart:
    job_id: int
    attempt: int
    # The attempt is a move's restart that never started: the platform moved the job,
    # so it queues again rather than failing (see ``requeue_unlaunched_move``).
    move_restart: bool


def stop_slow_start(executor: Executor, report: ReconcileOut, slow: SlowStart, reason: str) -> bool:
    """Asks the executor to end the attempt, so that it cannot start later; False when
    that must be retried. A move's restart gets the platform's stop (observed
    PREEMPTED, not CANCELLED: nobody cancelled the job) with no grace, as it never
    started and has nothing to save."""
    if slow.move_restart:
        end = functools.partial(executor.stop, slow.job_id, 0, reason)
    else:
        end = functools.partial(executor.cancel, slow.job_id)
    return executor_call(report, slow.job_id, "ending a start given up", end)


def started_before(session: Session, *, cutoff: datetime) -> list[SlowStart]:
    """Starting jobs whose latest move to ``starting`` is older than ``cutoff``."""
    started = (
        select(JobEvent.job_id, func.max(JobEvent.at).label("at"))
        .where(JobEvent.to_state == JobState.STARTING.value)
        .group_by(JobEvent.job_id)
        .subquery()
    )
    rows = session.execute(
        select(Job.id, Job.attempt)
        .join(started, started.c.job_id == Job.id)
        .where(Job.state == JobState.STARTING.value, started.c.at < cutoff)
        .order_by(Job.id)
    ).all()
    restarts = unstarted_move_restarts(session, [job_id for job_id, _ in rows])
    return [SlowStart(job_id, attempt, job_id in restarts) for job_id, attempt in rows]


def cancelled_before_starting(session: Session, job: Job, why: str, now: datetime) -> bool:
    """A job its user cancelled while it was starting ends cancelled when the attempt
    is given up: queued again (a move's restart), nothing would ever start or settle
    it, and its hold would stay pending. True when it ended so."""
    if job.cancel_requested_at is None:
        return False
    finish_job(
        session, job, JobState.CANCELLED, at=now, reason=f"cancelled before it started ({why})"
    )
    return True


def give_up_if_starting(
    session: Session, *, slow: SlowStart, reason: str, clock: Clock
) -> str | None:
    """Requeues or fails the job if it is still starting the same attempt; returns the
    state it moved to, None when it had moved on meanwhile."""
    job = locked_job(session, slow.job_id)
    if job.state != JobState.STARTING.value or job.attempt != slow.attempt:
        return None
    now = clock()
    if cancelled_before_starting(session, job, reason, now):
        return JobState.CANCELLED.value
    if slow.move_restart and requeue_unlaunched_move(
        session, job, reason, actor=RECONCILER_ACTOR, now=now, outcome="did not start"
    ):
        return JobState.QUEUED.value
    finish_job(session, job, JobState.FAILED, at=now, reason=reason)
    return JobState.FAILED.value
