"""One scheduling pass: read the queue and the pool, ask the policy, record its decisions.

The pass only writes decisions (``queued`` → ``starting`` with a placement and
a new attempt; a checkpointable job to move, see :mod:`credits.jobs.moves`);
launching and stopping are the reconciler's job, so a pass that commits and
then crashes leaves nothing half done. Passes are serialised: two at once
could give the same GPUs away twice. The jobs a plan decides on are locked and
read again before anything is written (see :func:`_lock_decided`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from credits.grants.models import Allocation, AllocationStatus, Project, ProjectStatus
from credits.jobs import scheduler
from credits.jobs.ended_holds import queued_holds_on_ended_accounts
from credits.jobs.executors.base import Capacity
from credits.jobs.launching import runtime_left_s
from credits.jobs.models import Job, JobRun, JobState, ProjectGpuLimit
from credits.jobs.moves import record_move
from credits.jobs.queries import flavour_names
from credits.jobs.schemas import SchedulePassOut
from credits.jobs.transitions import move, placement_from_json, placement_to_json
from credits.ledger.models import Currency

SCHEDULER_ACTOR = "system:scheduler"
# Any constant will do; every pass takes the same PostgreSQL advisory lock.
SCHEDULE_LOCK_KEY = 0x6A6F6273  # "jobs"
# Usage older than this many half-lives weighs under 0.1% and is not read.
HALF_LIVES_READ = 10


def schedule_pass(
    session: Session,
    *,
    capacity: Capacity,
    policy: scheduler.Policy,
    half_life_s: float,
    now: datetime,
) -> SchedulePassOut:
    """Starts what the policy says may start now; returns the ids started."""
    _serialise(session)
    queued = list(
        session.scalars(select(Job).where(Job.state == JobState.QUEUED.value).order_by(Job.id))
    )
    active = list(
        session.scalars(
            select(Job).where(Job.state.in_((JobState.STARTING.value, JobState.RUNNING.value)))
        )
    )
    # Moved off ended allocations before the pass (move_ended_holds); one whose move
    # failed, or whose allocation ended since, waits for the next pass.
    ended = queued_holds_on_ended_accounts(session, now)
    queued = [job for job in queued if job.id not in ended]
    if not queued:
        return SchedulePassOut(started=[], queued=0)
    flavours = flavour_names(session)
    epoch = now.timestamp()
    restarted = _effective_starts(session, active, epoch)
    plan = scheduler.plan(
        [_queued(job, flavours) for job in queued],
        [_running(job, flavours, epoch, restarted.get(job.id)) for job in active],
        [
            scheduler.Node(name=node.name, flavour=node.flavour, gpus=node.gpus)
            for node in capacity.nodes
            if node.schedulable
        ],
        project_shares(session, {job.project_id for job in (*queued, *active)}, now, half_life_s),
        epoch,
        policy,
    )
    decided = _lock_decided(session, plan)
    started = []
    for decision in plan.starts:
        job = decided.get(decision.job_id)
        if job is not None and _still_startable(job):
            _start(session, job, decision, now)
            started.append(job.id)
    moved = [
        decision.job_id
        for decision in plan.moves
        if decision.job_id in decided
        and record_move(
            session,
            decided[decision.job_id],
            decision,
            max_moves=policy.max_moves,
            actor=SCHEDULER_ACTOR,
            now=now,
        )
    ]
    return SchedulePassOut(started=started, queued=len(queued) - len(started), moved=moved)


def _lock_decided(session: Session, plan: scheduler.Plan) -> dict[int, Job]:
    """The jobs the plan starts or moves, locked and read again.

    The pass reads the queue without locks, so a user's cancel or the reconciler's
    requeue may commit while the policy plans; writing a decision over it would
    start a cancelled job (already settled, so never charged) or move a requeued
    one. Locked in id order, as every other writer locks one job at a time.
    """
    ids = sorted({d.job_id for d in plan.starts} | {d.job_id for d in plan.moves})
    if not ids:
        return {}
    rows = session.scalars(
        select(Job)
        .where(Job.id.in_(ids))
        .order_by(Job.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {job.id: job for job in rows}


def _still_startable(job: Job) -> bool:
    return job.state == JobState.QUEUED.value and job.cancel_requested_at is None


def _serialise(session: Session) -> None:
    # SQLite transactions here begin IMMEDIATE and so are serialised already.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEDULE_LOCK_KEY})


def _queued(job: Job, flavours: dict[int, str]) -> scheduler.QueuedJob:
    return scheduler.QueuedJob(
        job_id=job.id,
        project_id=job.project_id,
        flavour=flavours[job.flavour_id],
        gpus=job.gpus,
        max_runtime_s=job.max_runtime_seconds,
        submitted_at=job.submitted_at.timestamp(),
        checkpointable=job.checkpointable,
    )


def _effective_starts(session: Session, active: list[Job], now: float) -> dict[int, float]:
    """For each job past its first attempt (preempted or moved): its current attempt's
    start less the runtime its earlier attempts used, so that the policy expects it to
    end when its runtime left runs out (a later attempt is launched with only that)."""
    again = {job.id: job for job in active if job.attempt > 1}
    if not again:
        return {}
    runs: dict[int, list[JobRun]] = defaultdict(list)
    for run in session.scalars(select(JobRun).where(JobRun.job_id.in_(sorted(again)))):
        runs[run.job_id].append(run)
    starts = {}
    for job_id, job in again.items():
        current = next((run for run in runs[job_id] if run.attempt == job.attempt), None)
        begun = current.started_at if current is not None else None
        used_s = job.max_runtime_seconds - runtime_left_s(job, runs[job_id])
        starts[job_id] = (begun.timestamp() if begun is not None else now) - used_s
    return starts


def _running(
    job: Job, flavours: dict[int, str], now: float, effective_start: float | None = None
) -> scheduler.RunningJob:
    """A job being moved holds its target (``placement``) and, until its old run has
    stopped, its old slices (``vacating``); only a running job that is not moving may
    be moved (a starting one may not have started at all)."""
    started = job.started_at.timestamp() if job.started_at is not None else now
    if effective_start is not None:
        started = effective_start
    current = placement_from_json(job.placement_json)
    target = placement_from_json(job.move_target_json)
    return scheduler.RunningJob(
        job_id=job.id,
        project_id=job.project_id,
        flavour=flavours[job.flavour_id],
        placement=target or current,
        started_at=started,
        max_runtime_s=job.max_runtime_seconds,
        checkpointable=job.checkpointable
        and job.state == JobState.RUNNING.value
        and job.cancel_requested_at is None
        and not target,
        moves=job.move_count,
        vacating=current if target else (),
    )


def _start(session: Session, job: Job, decision: scheduler.StartDecision, now: datetime) -> None:
    job.attempt += 1
    job.placement_json = placement_to_json(decision.placement)
    session.add(
        JobRun(
            job_id=job.id,
            attempt=job.attempt,
            placement_json=job.placement_json,
            gpus=job.gpus,
        )
    )
    nodes = ", ".join(f"{part.node}x{part.gpus}" for part in decision.placement)
    move(
        session,
        job,
        JobState.STARTING,
        actor=SCHEDULER_ACTOR,
        at=now,
        reason=f"attempt {job.attempt} on {nodes}",
    )


def project_shares(
    session: Session, project_ids: Iterable[int], now: datetime, half_life_s: float
) -> dict[int, scheduler.ProjectShare]:
    """Each project's claim: active awarded GPU credits, decayed GPU-seconds used,
    whether it may start jobs, and its cap."""
    ids = sorted(set(project_ids))
    if not ids:
        return {}
    statuses = dict(
        session.execute(select(Project.id, Project.status).where(Project.id.in_(ids))).all()
    )
    caps = dict(
        session.execute(
            select(ProjectGpuLimit.project_id, ProjectGpuLimit.max_concurrent_gpus).where(
                ProjectGpuLimit.project_id.in_(ids)
            )
        ).all()
    )
    entitlements = _entitlements(session, ids, now)
    usage = _decayed_usage(session, ids, now, half_life_s)
    return {
        pid: scheduler.ProjectShare(
            project_id=pid,
            entitlement=float(entitlements.get(pid, 0)),
            decayed_usage=usage.get(pid, 0.0),
            can_start=statuses.get(pid) == ProjectStatus.ACTIVE.value,
            max_concurrent_gpus=caps.get(pid),
        )
        for pid in ids
    }


def _entitlements(session: Session, ids: list[int], now: datetime) -> dict[int, int]:
    rows = session.execute(
        select(Allocation.project_id, func.sum(Allocation.awarded_micro))
        .where(
            Allocation.project_id.in_(ids),
            Allocation.currency == Currency.GPU.value,
            Allocation.status == AllocationStatus.ACTIVE.value,
            Allocation.starts_at <= now,
            Allocation.expires_at > now,
        )
        .group_by(Allocation.project_id)
    ).all()
    return {pid: int(total or 0) for pid, total in rows}


def _decayed_usage(
    session: Session, ids: list[int], now: datetime, half_life_s: float
) -> dict[int, float]:
    """GPU-seconds per project, each run's weighing 2^(-age / half-life) from its end;
    a run still going counts in full."""
    since = now - timedelta(seconds=half_life_s * HALF_LIVES_READ)
    rows = session.execute(
        select(Job.project_id, JobRun.gpus, JobRun.started_at, JobRun.finished_at)
        .join(Job, Job.id == JobRun.job_id)
        .where(
            Job.project_id.in_(ids),
            JobRun.started_at.is_not(None),
            (JobRun.finished_at.is_(None)) | (JobRun.finished_at > since),
        )
    ).all()
    usage: dict[int, float] = defaultdict(float)
    for pid, gpus, started, finished in rows:
        if started is None:
            continue
        end = finished or now
        seconds = max(0.0, (end - started).total_seconds())
        age = max(0.0, (now - end).total_seconds())
        usage[pid] += gpus * seconds * 0.5 ** (age / half_life_s)
    return dict(usage)
