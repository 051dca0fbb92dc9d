"""Moves of checkpointable jobs: recording the scheduler's decisions, carrying them out.

A scheduling pass that decides a move (``scheduler.MoveDecision``) records it
in its own transaction: the job keeps running on its old slices, its target is
kept on the job (``move_target_json``, so the next pass counts both as taken),
its move count goes up, and a ``JobMove`` row and a job event give the reason.
The reconciler then notes the moment (``JobRun.stop_requested_at``: metering
charges the run no further, so neither the grace nor the restart is charged)
and asks the executor to stop the run with the job's grace. When the old run is
seen stopped (PREEMPTED), the job's next attempt starts on the target at once,
hold kept; it does not queue again.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Collection
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.db import run_in_transaction
from credits.jobs.executor_calls import executor_call
from credits.jobs.executors.base import Executor, NodeSlice, Observation, Phase
from credits.jobs.launching import runtime_left_us
from credits.jobs.models import Job, JobMove, JobRun, JobState
from credits.jobs.scheduler import MoveDecision
from credits.jobs.schemas import ReconcileOut
from credits.jobs.transitions import move, note, placement_from_json, placement_to_json

logger = logging.getLogger(__name__)


def describe(placement: tuple[NodeSlice, ...]) -> str:
    return ", ".join(f"{part.node}x{part.gpus}" for part in placement)


def record_move(
    session: Session, job: Job, decision: MoveDecision, *, max_moves: int, actor: str, now: datetime
) -> bool:
    """Records one move the policy decided; False (nothing written) when the job may not
    be moved now: not running, not checkpointable, moving already, being cancelled, or
    moved ``max_moves`` times. The policy already checks these; the database has the
    last word."""
    if (
        job.state != JobState.RUNNING.value
        or not job.checkpointable
        or job.move_target_json is not None
        or job.cancel_requested_at is not None
        or job.move_count >= max_moves
        or not decision.target
    ):
        return False
    job.move_count += 1
    job.move_target_json = placement_to_json(decision.target)
    source = placement_from_json(job.placement_json)
    session.add(
        JobMove(
            job_id=job.id,
            number=job.move_count,
            requested_at=now,
            reason=decision.reason,
            for_job_id=decision.for_job_id,
            from_attempt=job.attempt,
            from_placement_json=job.placement_json or "[]",
            to_placement_json=job.move_target_json,
        )
    )
    # Not a change of state: it keeps running until the grace is over.
    note(
        session,
        job,
        actor=actor,
        at=now,
        reason=(
            f"move {job.move_count}: {decision.reason}; stopping it with a"
            f" {job.checkpoint_grace_seconds} s grace to restart it on"
            f" {describe(decision.target)} (from {describe(source)})"
        ),
    )
    return True


def _moving(session: Session) -> list[tuple[int, int, int, str, bool]]:
    """(job, attempt, grace, reason, stop noted) of every move whose old run has not
    been seen stopped."""
    rows = session.execute(
        select(
            Job.id,
            Job.attempt,
            Job.checkpoint_grace_seconds,
            JobMove.reason,
            JobRun.stop_requested_at.is_not(None),
        )
        .join(JobRun, (JobRun.job_id == Job.id) & (JobRun.attempt == Job.attempt))
        .join(JobMove, (JobMove.job_id == Job.id) & (JobMove.number == Job.move_count))
        .where(
            Job.state == JobState.RUNNING.value,
            Job.move_target_json.is_not(None),
            Job.cancel_requested_at.is_(None),
        )
        .order_by(Job.id)
    )
    return [
        (job_id, attempt, grace, reason, bool(noted))
        for job_id, attempt, grace, reason, noted in rows
    ]


def _note_stop_requested(session: Session, *, job_id: int, attempt: int, at: datetime) -> None:
    run = session.scalar(
        select(JobRun).where(JobRun.job_id == job_id, JobRun.attempt == attempt).with_for_update()
    )
    if run is not None and run.stop_requested_at is None and run.finished_at is None:
        run.stop_requested_at = at


def stop_moving(
    factory: Callable[[], Session],
    executor: Executor,
    clock: Callable[[], datetime],
    report: ReconcileOut,
) -> None:
    """Asks the executor to stop every job being moved, with its grace.

    The moment is noted (charging ends there) before the executor is first
    asked, so neither a crash nor a failed call gets the grace charged; the
    executor is asked again on every reconcile until the old run is seen
    stopped (a repeated stop changes nothing), so a stop lost to a crash is
    asked again.
    """
    for job_id, attempt, grace, reason, noted in run_in_transaction(factory, _moving):
        if not noted:
            note_stop = functools.partial(
                _note_stop_requested, job_id=job_id, attempt=attempt, at=clock()
            )
            run_in_transaction(factory, note_stop)
        stop = functools.partial(executor.stop, job_id, grace, reason)
        if executor_call(report, job_id, "stopping for a move", stop):
            report.moving.append(job_id)


def restart_moved(
    session: Session, job: Job, seen: Observation, *, actor: str, now: datetime
) -> None:
    """The old run of a job being moved has stopped (its run already ended): its next
    attempt starts on the target at once, hold kept, without queueing again."""
    target = placement_from_json(job.move_target_json)
    job.move_target_json = None
    job.attempt += 1
    job.placement_json = placement_to_json(target)
    session.add(
        JobRun(job_id=job.id, attempt=job.attempt, placement_json=job.placement_json, gpus=job.gpus)
    )
    record = _latest_move(session, job)
    if record is not None:
        record.stopped_at = seen.finished_at or now
        record.to_attempt = job.attempt
    move(
        session,
        job,
        JobState.STARTING,
        actor=actor,
        at=now,
        reason=(
            f"moved: stopped ({seen.reason or 'preempted'}); attempt {job.attempt} on"
            f" {describe(target)}, hold kept"
        ),
    )


def requeue_unlaunched_move(
    session: Session,
    job: Job,
    reason: str,
    *,
    actor: str,
    now: datetime,
    outcome: str = "not launched",
) -> bool:
    """A move's restart the executor refused for good, or that never started (its
    target node went away; on Kubernetes the pod stays Pending): the job queues
    again, hold kept, rather than failing for a move the platform decided. ``outcome``
    is the run's. False for any other attempt."""
    record = _latest_move(session, job)
    if record is None or record.to_attempt != job.attempt:
        return False
    run = session.scalar(
        select(JobRun).where(JobRun.job_id == job.id, JobRun.attempt == job.attempt)
    )
    if run is not None and run.finished_at is None:
        run.outcome = outcome
    job.placement_json = None
    move(
        session,
        job,
        JobState.QUEUED,
        actor=actor,
        at=now,
        reason=f"could not restart on its move target ({reason}); queued again, hold kept",
    )
    return True


def requeue_move_ended_unstarted(
    session: Session, job: Job, run: JobRun, seen: Observation, *, actor: str, now: datetime
) -> bool:
    """A move's restart the executor reports ended though it never started could not
    start either: on Kubernetes its Job's ``activeDeadlineSeconds`` (the runtime the job
    has left, counted from the Job's creation, not from its pod's start) runs out while
    its pod is Pending on a target node cordoned or gone, before the start timeout
    does. The job queues again, hold kept (``requeue_unlaunched_move``). False, so that
    the observation stands, for any other attempt, a success, a job being cancelled,
    and a job with no runtime left (its earlier runs used its whole max runtime)."""
    if (
        seen.phase is Phase.SUCCEEDED
        or seen.started_at is not None
        or run.started_at is not None
        or job.cancel_requested_at is not None
    ):
        return False
    runs = list(session.scalars(select(JobRun).where(JobRun.job_id == job.id)))
    if runtime_left_us(job, runs) <= 0:
        return False
    reason = f"never started, ended {seen.phase.value}"
    if seen.reason:
        reason += f": {seen.reason}"
    return requeue_unlaunched_move(
        session, job, reason, actor=actor, now=now, outcome="did not start"
    )


def unstarted_move_restarts(session: Session, job_ids: Collection[int]) -> set[int]:
    """Those of the jobs whose current attempt is a move's restart not seen started."""
    if not job_ids:
        return set()
    rows = session.scalars(
        select(Job.id)
        .join(JobMove, (JobMove.job_id == Job.id) & (JobMove.number == Job.move_count))
        .join(JobRun, (JobRun.job_id == Job.id) & (JobRun.attempt == Job.attempt))
        .where(
            Job.id.in_(sorted(job_ids)),
            JobMove.to_attempt == Job.attempt,
            JobRun.started_at.is_(None),
        )
    )
    return set(rows)


def abandon_move(session: Session, job: Job, *, at: datetime) -> None:
    """The job ended (or was cancelled) before its move finished: the target is let go."""
    if job.move_target_json is None:
        return
    job.move_target_json = None
    record = _latest_move(session, job)
    if record is not None and record.stopped_at is None:
        record.stopped_at = at


def _latest_move(session: Session, job: Job) -> JobMove | None:
    return session.scalar(
        select(JobMove).where(JobMove.job_id == job.id, JobMove.number == job.move_count)
    )
