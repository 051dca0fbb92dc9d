"""Queued jobs whose hold draws on an allocation that has ended.

A job holds its credits when it is submitted, from the allocation that ends
first. If it is still queued when that allocation ends, starting it would spend
credits after the grant's end (an ended account keeps its open holds so that
work already running can still be charged, not so that new work can start). So
before each scheduling pass such a job's hold moves: what it still holds is held
again from the project's allocations that have not ended, and the old hold is
voided; the job keeps its place in the queue. When the project's other
allocations cannot hold it, the job is cancelled, its hold voided and nothing
charged, with a reason that says so.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from credits.identity.actor import Actor
from credits.jobs.models import Job, JobState
from credits.jobs.settlement import settle_job
from credits.jobs.transitions import move, note
from credits.ledger.errors import AccountNotActive, InsufficientCredits
from credits.ledger.holds import place_hold
from credits.ledger.models import Account, AccountStatus, Currency, HoldPart, HoldStatus
from credits.ledger.queries import get_hold
from credits.ledger.settle import void_hold
from credits.metering.models import RecordStatus, UsageRecord
from credits.metering.settlement import settle_job_records

HOLD_MOVER = Actor.system("scheduler")


def move_holds_off_ended_allocations(
    session: Session, queued: list[Job], now: datetime
) -> list[Job]:
    """Moves the hold of every job in ``queued`` that draws on an ended allocation;
    returns the jobs still queued, in their order."""
    if not queued:
        return queued
    ended = _queued_holds_on_ended_accounts(session, now)
    if not ended:
        return queued
    return [job for job in queued if job.hold_key not in ended or _move_hold(session, job, now)]


def _queued_holds_on_ended_accounts(session: Session, now: datetime) -> set[str]:
    """One query, by join rather than a list of keys: a queue of 100,000 jobs would
    pass the drivers' limits on bound parameters."""
    ended = or_(
        Account.status == AccountStatus.EXPIRED.value,
        and_(Account.expires_at.is_not(None), Account.expires_at <= now),
    )
    rows = session.scalars(
        select(Job.hold_key)
        .join(HoldPart, HoldPart.hold_key == Job.hold_key)
        .join(Account, Account.id == HoldPart.account_id)
        .where(Job.state == JobState.QUEUED.value, HoldPart.status == HoldStatus.OPEN.value, ended)
        .distinct()
    )
    return set(rows)


def _move_hold(session: Session, job: Job, now: datetime) -> bool:
    """True when the job is still queued, holding from allocations that have not ended."""
    session.refresh(job, with_for_update=True)
    if job.state != JobState.QUEUED.value or job.cancel_requested_at is not None:
        return False
    _lock_pending_records(session, job.id)
    # What its earlier runs used is charged from the old hold first: the allocation
    # that was in force then pays for it, and only what is left moves.
    settle_job_records(session, job.id, now=now)
    old_key = job.hold_key
    needed = get_hold(session, hold_key=old_key).remaining
    new_key = _next_hold_key(job)
    try:
        new = place_hold(
            session,
            key=new_key,
            currency=Currency.GPU,
            amount=needed,
            actor=HOLD_MOVER,
            project_id=job.project_id,
            reference=f"job {job.id}",
            now=now,
        )
    except (InsufficientCredits, AccountNotActive) as refusal:
        _cancel_unheld(session, job, refusal, now)
        return False
    void_hold(
        session,
        key=f"{old_key}:moved",
        hold_key=old_key,
        actor=HOLD_MOVER,
        reason=f"job {job.id} still queued when its allocation ended; held again as {new_key}",
        now=now,
    )
    job.hold_key = new.hold_key
    drawn = ", ".join(str(part.account_id) for part in new.parts)
    note(
        session,
        job,
        actor=HOLD_MOVER.label,
        at=now,
        reason=f"allocation ended while queued: its hold moved to account(s) {drawn}",
    )
    return True


def _next_hold_key(job: Job) -> str:
    """``job:<id>:hold``, then ``job:<id>:hold:2``, ``:3``…"""
    base = f"job:{job.id}:hold"
    if job.hold_key == base:
        return f"{base}:2"
    return f"{base}:{int(job.hold_key.rsplit(':', 1)[1]) + 1}"


def _lock_pending_records(session: Session, job_id: int) -> None:
    # Settlement locks a job's pending records before the accounts; so does this,
    # before the old hold is voided under a batch that would capture from it.
    session.execute(
        select(UsageRecord.id)
        .where(UsageRecord.job_id == job_id, UsageRecord.status == RecordStatus.PENDING.value)
        .order_by(UsageRecord.id)
        .with_for_update()
    ).all()


def _cancel_unheld(session: Session, job: Job, refusal: Exception, now: datetime) -> None:
    reason = (
        "its allocation ended before it started, and the project's other GPU allocations"
        f" cannot hold it ({refusal})"
    )
    move(session, job, JobState.CANCELLED, actor=HOLD_MOVER.label, at=now, reason=reason)
    job.finished_at = now
    job.reason = reason
    settle_job(session, job, now=now)
