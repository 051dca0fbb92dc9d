"""Moves each job toward what its executor observes.

A reconcile is these steps, each in its own transactions, each safe to repeat:

1. launch every ``starting`` job (launch is idempotent by job and attempt);
2. ask the executor to stop every active job whose cancel was requested, and
   every job being moved, with its checkpoint grace (see ``credits.jobs.moves``);
3. observe every active job and record what happened: running, finished,
   preempted (back to the queue, hold kept; a job being moved starts its next
   attempt on its target at once, launched in the same reconcile) or lost (an
   executor reports the latest attempt it knows, so an earlier attempt than the
   job's means the current one is unknown to it: not launched yet, or gone);
4. meter running jobs: a usage record for every interval each has completed
   (settled into the ledger by the metering task, so balances move while jobs run);
5. settle every finished job not yet settled: meter it to its end, capture
   its usage, void the rest;
6. tell the executor it may forget every settled job (on Kubernetes, the
   metering finalizer comes off only now, so a Job cannot vanish uncharged).

The database is the source of truth: a reconciler started after a crash, or
on another machine, finds the work by job id, so killing it between any two
lines and running it again reaches the same state as a run that was never
interrupted.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import ColumnElement, select, tuple_, update
from sqlalchemy.orm import Session

from credits.db import run_in_transaction, utcnow
from credits.jobs.exclusive import exclusive
from credits.jobs.executor_calls import (
    executor_call,
    has_started,
    nothing_new,
    observe_jobs,
    of_attempt,
    report_unexpected,
)
from credits.jobs.executors.base import (
    Executor,
    ExecutorError,
    LaunchRequest,
    Observation,
    Phase,
)
from credits.jobs.job_rows import (
    RECONCILER_ACTOR,
    current_run,
    end_run,
    finish_job,
    locked_job,
)
from credits.jobs.launching import launch_requests
from credits.jobs.models import FINAL_STATES, Job, JobRun, JobState
from credits.jobs.moves import (
    requeue_move_ended_unstarted,
    requeue_unlaunched_move,
    restart_moved,
    stop_moving,
    unstarted_move_restarts,
)
from credits.jobs.schemas import ReconcileOut
from credits.jobs.settlement import settle_job
from credits.jobs.slow_starts import (
    SlowStart,
    cancelled_before_starting,
    give_up_if_starting,
    started_before,
    stop_slow_start,
)
from credits.jobs.transitions import move
from credits.metering.job_records import meter_active_jobs

DEFAULT_INTERVAL_S = 60
DEFAULT_START_TIMEOUT_S = 3600.0
# Any constant will do; every reconcile takes the same PostgreSQL advisory lock.
RECONCILE_LOCK_KEY = 0x7265636E  # "recn"
T = TypeVar("T")
logger = logging.getLogger(__name__)

SessionFactory = Callable[[], Session]
Clock = Callable[[], datetime]

FINAL_PHASE_STATES = {
    Phase.SUCCEEDED: JobState.SUCCEEDED,
    Phase.FAILED: JobState.FAILED,
    Phase.TIMED_OUT: JobState.TIMED_OUT,
    Phase.CANCELLED: JobState.CANCELLED,
}


@dataclass(frozen=True)
class Reconciliation:
    """What every step works with."""

    factory: SessionFactory
    executor: Executor
    clock: Clock = utcnow
    # Metering interval: usage records cover this many seconds each.
    interval_s: int = DEFAULT_INTERVAL_S
    # A job not running this long after the scheduler started it is given up.
    start_timeout_s: float = DEFAULT_START_TIMEOUT_S


def reconcile(
    factory: SessionFactory,
    executor: Executor,
    *,
    clock: Clock = utcnow,
    interval_s: int = DEFAULT_INTERVAL_S,
    start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
) -> ReconcileOut:
    """One full reconcile: every step in order, unless another one is running
    against the same database (then nothing, and ``skipped``)."""
    context = Reconciliation(factory, executor, clock, interval_s, start_timeout_s)
    report = ReconcileOut()
    with exclusive(factory, RECONCILE_LOCK_KEY) as held:
        if not held:
            report.skipped = True
            return report
        for step in RECONCILE_STEPS:
            step(context, report)
    return report


def _each(report: ReconcileOut, job_id: int, work: Callable[[], T]) -> T | None:
    """Runs one job's work; an error is logged and reported, and the sweep goes on,
    so that one job that cannot be handled never stops the others."""
    try:
        return work()
    except Exception as error:
        logger.exception("reconciling job %s failed", job_id)
        report.errors.append(f"{job_id}: {type(error).__name__}: {error}")
        return None


def _ids(factory: SessionFactory, *conditions: ColumnElement[bool]) -> list[int]:
    def read(session: Session) -> list[int]:
        return list(session.scalars(select(Job.id).where(*conditions).order_by(Job.id)))

    return run_in_transaction(factory, read)


def launch_starting(
    context: Reconciliation, report: ReconcileOut, only: set[int] | None = None
) -> None:
    factory, executor, clock = context.factory, context.executor, context.clock
    requests = run_in_transaction(factory, functools.partial(launch_requests, only=only))
    for request in requests:
        try:
            executor.launch(request)
        except ExecutorError as error:
            if error.transient:
                logger.warning("launch of job %s will be retried: %s", request.job_id, error)
                continue
            if not _end_failed_launch(context, report, request, str(error)):
                continue
            moved = _fail_unlaunchable(factory, request, str(error), clock())
            report.transitions.append(f"{request.job_id}:starting->{moved or 'failed'}")
            continue
        except Exception as error:
            # Retried on the next reconcile, and failed by the start timeout if it
            # never launches.
            report_unexpected(report, request.job_id, "launch", error)
            continue
        report.launched.append(request.job_id)


def _end_failed_launch(
    context: Reconciliation, report: ReconcileOut, request: LaunchRequest, reason: str
) -> bool:
    """A launch refused part way may have left something running (a gang's Job
    created before its Service or NetworkPolicy was refused): the attempt is ended at
    the executor before the job ends and its hold is released. False when that must
    be retried."""
    restarts = run_in_transaction(
        context.factory, lambda session: unstarted_move_restarts(session, [request.job_id])
    )
    attempt = SlowStart(request.job_id, request.attempt, request.job_id in restarts)
    return stop_slow_start(context.executor, report, attempt, f"could not launch: {reason}")


def _fail_unlaunchable(
    factory: SessionFactory, request: LaunchRequest, reason: str, now: datetime
) -> str | None:
    """Fails the job, or requeues it (hold kept) when the attempt was a move's restart;
    returns "queued" then."""

    def fail(session: Session) -> str | None:
        job = locked_job(session, request.job_id)
        if job.state != JobState.STARTING.value or job.attempt != request.attempt:
            return None
        if cancelled_before_starting(session, job, f"could not launch: {reason}", now):
            return JobState.CANCELLED.value
        if requeue_unlaunched_move(session, job, reason, actor=RECONCILER_ACTOR, now=now):
            return JobState.QUEUED.value
        finish_job(session, job, JobState.FAILED, at=now, reason=f"could not launch: {reason}")
        return None

    return run_in_transaction(factory, fail)


def stop_cancelled(context: Reconciliation, report: ReconcileOut) -> None:
    factory, executor = context.factory, context.executor
    ids = _ids(
        factory,
        Job.state.in_((JobState.STARTING.value, JobState.RUNNING.value)),
        Job.cancel_requested_at.is_not(None),
    )
    for job_id in ids:
        if executor_call(report, job_id, "cancel", functools.partial(executor.cancel, job_id)):
            report.cancelled.append(job_id)


def stop_moved(context: Reconciliation, report: ReconcileOut) -> None:
    stop_moving(context.factory, context.executor, context.clock, report)


def give_up_slow_starts(context: Reconciliation, report: ReconcileOut) -> None:
    """A job still ``starting`` long after the scheduler started it (its launch keeps
    failing, or the pool never runs it) is stopped and failed, releasing its hold,
    rather than waiting forever; a move's restart that never started queues again,
    hold kept (on Kubernetes a target node gone leaves its pod Pending, no error).

    Runs after the observation, and asks the executor again about the jobs it would
    give up: after a reconciler outage, or while observing keeps failing, a job the
    database still calls ``starting`` may be running, and is left to be observed."""
    factory, clock = context.factory, context.clock
    cutoff = clock() - timedelta(seconds=context.start_timeout_s)
    reason = f"did not start within {context.start_timeout_s:g} s"
    stuck = run_in_transaction(factory, functools.partial(started_before, cutoff=cutoff))
    for slow in _not_started(context, report, stuck):
        if not stop_slow_start(context.executor, report, slow, reason):
            continue
        give_up = functools.partial(give_up_if_starting, slow=slow, reason=reason, clock=clock)
        moved = _each(report, slow.job_id, functools.partial(run_in_transaction, factory, give_up))
        if moved:
            report.transitions.append(f"{slow.job_id}:starting->{moved}")


def _not_started(
    context: Reconciliation, report: ReconcileOut, stuck: list[SlowStart]
) -> list[SlowStart]:
    """Those of ``stuck`` the executor reports pending or does not know at their
    attempt; none when it cannot be asked."""
    if not stuck:
        return []
    seen = observe_jobs(context.executor, report, [slow.job_id for slow in stuck])
    return [
        slow
        for slow in stuck
        if slow.job_id in seen and not has_started(seen[slow.job_id], slow.attempt)
    ]


def observe_active(context: Reconciliation, report: ReconcileOut) -> None:
    factory, executor, clock = context.factory, context.executor, context.clock
    active = run_in_transaction(factory, _active_jobs)
    if not active:
        return
    asked_at = clock()
    observations = observe_jobs(executor, report, list(active))
    active = {job_id: active[job_id] for job_id in observations}
    still_running = [
        (job_id, attempt)
        for job_id, (state, attempt) in active.items()
        if state == JobState.RUNNING.value and nothing_new(state, attempt, observations.get(job_id))
    ]
    if still_running:
        run_in_transaction(
            factory, functools.partial(_mark_seen_running, runs=still_running, at=asked_at)
        )
    for job_id, (state, attempt) in active.items():
        observation = observations.get(job_id)
        if nothing_new(state, attempt, observation):
            continue
        transition = _each(
            report,
            job_id,
            functools.partial(
                run_in_transaction,
                factory,
                functools.partial(_apply, job_id=job_id, seen=observation, clock=clock),
            ),
        )
        if transition:
            report.transitions.append(f"{job_id}:{transition}")


def _active_jobs(session: Session) -> dict[int, tuple[str, int]]:
    rows = session.execute(
        select(Job.id, Job.state, Job.attempt)
        .where(Job.state.in_((JobState.STARTING.value, JobState.RUNNING.value)))
        .order_by(Job.id)
    )
    return {job_id: (state, attempt) for job_id, state, attempt in rows}


def _mark_seen_running(session: Session, *, runs: list[tuple[int, int]], at: datetime) -> None:
    """One statement for every run still running: metering may count up to ``at``."""
    session.execute(
        update(JobRun)
        .where(
            tuple_(JobRun.job_id, JobRun.attempt).in_(runs),
            (JobRun.seen_running_at.is_(None)) | (JobRun.seen_running_at < at),
        )
        .values(seen_running_at=at)
        .execution_options(synchronize_session=False)
    )


def _apply(session: Session, *, job_id: int, seen: Observation | None, clock: Clock) -> str | None:
    """Records one observation on a locked job; returns "from->to" when the state moved."""
    now = clock()
    job = locked_job(session, job_id)
    before = JobState(job.state)
    if not before.is_active:
        return None
    seen = of_attempt(seen, job.attempt)
    if seen is None:
        _unseen(session, job, now)
    elif seen.attempt == job.attempt:
        _seen(session, job, seen, now)
    after = JobState(job.state)
    return None if after is before else f"{before.value}->{after.value}"


def _unseen(session: Session, job: Job, now: datetime) -> None:
    """The executor does not know the job: not launched yet, or lost."""
    if job.state == JobState.STARTING.value:
        if job.cancel_requested_at is not None:
            finish_job(
                session, job, JobState.CANCELLED, at=now, reason="cancelled before it started"
            )
        return
    finish_job(
        session,
        job,
        JobState.FAILED,
        at=now,
        reason="the executor no longer knows this job (deleted outside the platform, or lost)",
    )


def _seen(session: Session, job: Job, seen: Observation, now: datetime) -> None:
    run = current_run(session, job)
    if seen.started_at is not None and run.started_at is None:
        run.started_at = seen.started_at
        if job.started_at is None:
            job.started_at = seen.started_at
    if seen.phase is Phase.PENDING:
        return
    if seen.phase is Phase.RUNNING:
        if seen.started_at is not None and (
            run.seen_running_at is None or run.seen_running_at < seen.started_at
        ):
            run.seen_running_at = seen.started_at
        if job.state == JobState.STARTING.value:
            move(session, job, JobState.RUNNING, actor=RECONCILER_ACTOR, at=now, reason=seen.reason)
        return
    if seen.phase is Phase.PREEMPTED and job.cancel_requested_at is None:
        end_run(run, seen, now)
        if job.move_target_json is not None:
            restart_moved(session, job, seen, actor=RECONCILER_ACTOR, now=now)
            return
        job.placement_json = None
        move(
            session,
            job,
            JobState.QUEUED,
            actor=RECONCILER_ACTOR,
            at=now,
            reason=f"preempted: {seen.reason or 'by the pool'}; queued again, hold kept",
        )
        return
    if requeue_move_ended_unstarted(session, job, run, seen, actor=RECONCILER_ACTOR, now=now):
        return
    state = FINAL_PHASE_STATES.get(seen.phase, JobState.CANCELLED)
    reason = seen.reason
    if state is JobState.TIMED_OUT and job.started_at is None:
        # Kubernetes counts a Job's deadline from its creation: a job still Pending
        # when it passed never ran, and used none of its runtime.
        state = JobState.FAILED
        reason = f"never started: still waiting for the pool when its deadline passed ({reason})"
    job.exit_code = seen.exit_code
    finish_job(session, job, state, at=seen.finished_at or now, reason=reason, seen=seen)


def launch_moved(context: Reconciliation, report: ReconcileOut) -> None:
    """A moved job's next attempt launches in the reconcile that saw its old run stop."""
    moved = {
        int(change.split(":", 1)[0])
        for change in report.transitions
        if change.endswith(":running->starting")
    }
    if moved:
        launch_starting(context, report, only=moved)


def meter_running(context: Reconciliation, report: ReconcileOut) -> None:
    """Usage records for every interval running jobs have completed, so the balance
    moves while they run; settlement (metering.settle) charges them."""

    def meter(session: Session, only: set[int] | None = None) -> int:
        return meter_active_jobs(
            session, now=context.clock(), interval_s=context.interval_s, job_ids=only
        )

    try:
        report.metered += run_in_transaction(context.factory, meter)
        return
    except Exception:
        # One job's records must not stop every other job's metering (and, behind it,
        # settlement): metered one by one, only that job is reported and left behind.
        logger.exception("metering running jobs together failed; metering them one by one")
    running = (JobState.STARTING.value, JobState.RUNNING.value)
    for job_id in _ids(context.factory, Job.state.in_(running)):
        one = functools.partial(meter, only={job_id})
        metered = _each(report, job_id, functools.partial(run_in_transaction, context.factory, one))
        report.metered += metered or 0


def settle_finished(context: Reconciliation, report: ReconcileOut) -> None:
    factory, clock = context.factory, context.clock
    ids = _ids(factory, Job.state.in_([s.value for s in FINAL_STATES]), Job.settled_at.is_(None))
    for job_id in ids:

        def settle(session: Session, j: int = job_id) -> bool:
            job = locked_job(session, j)
            settle_job(session, job, now=clock(), interval_s=context.interval_s)
            return True

        if _each(report, job_id, functools.partial(run_in_transaction, factory, settle)) is None:
            continue
        report.settled.append(job_id)


def release_settled(context: Reconciliation, report: ReconcileOut) -> None:
    factory, executor, clock = context.factory, context.executor, context.clock
    ids = _ids(factory, Job.settled_at.is_not(None), Job.released_at.is_(None))
    for job_id in ids:
        release = functools.partial(executor.release, job_id)
        if not executor_call(report, job_id, "release", release):
            continue

        def mark(session: Session, j: int = job_id) -> None:
            locked_job(session, j).released_at = clock()

        run_in_transaction(factory, mark)
        report.released.append(job_id)


RECONCILE_STEPS: tuple[Callable[[Reconciliation, ReconcileOut], None], ...] = (
    launch_starting,
    stop_cancelled,
    stop_moved,
    observe_active,
    give_up_slow_starts,
    launch_moved,
    meter_running,
    settle_finished,
    release_settled,
)
