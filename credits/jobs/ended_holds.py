"""Queued jobs whose hold draws on an allocation that has ended.

A job holds its credits when it is submitted, from the allocation that ends
first. If it is still queued when that allocation ends, starting it would spend
credits after the grant's end (an ended account keeps its open holds so that
work already running can still be charged, not so that new work can start). So
before each scheduling pass such a job's hold moves: what it still holds is held
again from the project's allocations that have not ended, and the old hold is
voided; the job keeps its place in the queue. What its earlier runs used (a
job queued again after a preemption) is settled from the old hold first. When
the project's other allocations cannot hold the rest, the job is cancelled and
its hold voided, with a reason that says so. The scheduling pass itself never
starts a queued job whose hold still draws on an ended allocation.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from credits.db import run_in_transaction
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
logger = logging.getLogger(__name__)


def move_ended_holds(factory: Callable[[], Session], *, now: datetime) -> list[int]:
    """Before a scheduling pass: moves the hold of every queued job that draws on an
    ended allocation, each job in a transaction of its own (so that no transaction
    holds one project's accounts while it locks another job, and one job that cannot
    be moved never stops the others); returns the ids of the jobs moved or cancelled."""
    found = run_in_transaction(factory, lambda s: queued_holds_on_ended_accounts(s, now))
    changed = []
    for job_id, hold_key in sorted(found.items()):
        one = functools.partial(_move_hold, job_id=job_id, hold_key=hold_key, now=now)
        try:
            if run_in_transaction(factory, one):
                changed.append(job_id)
        except Exception:
            # Left queued; the pass does not start it on the ended allocation, and the
            # next pass tries the move again.
            logger.exception("moving the hold of job %s off an ended allocation failed", job_id)
    return changed


def queued_holds_on_ended_accounts(session: Session, now: datetime) -> dict[int, str]:
    """Queued jobs whose open hold draws on an ended allocation: job id to hold key.
    One query, by join rather than a list of keys: a queue of 100,000 jobs would pass
    the drivers' limits on bound parameters."""
    ended = or_(
        Account.status == AccountStatus.EXPIRED.value,
        and_(Account.expires_at.is_not(None), Account.expires_at <= now),
    )
    rows = session.execute(
        select(Job.id, Job.hold_key)
        .join(HoldPart, HoldPart.hold_key == Job.hold_key)
        .join(Account, Account.id == HoldPart.account_id)
        .where(Job.state == JobState.QUEUED.value, HoldPart.status == HoldStatus.OPEN.value, ended)
        .distinct()
    )
    return {row.id: row.hold_key for row in rows}


def _move_hold(session: Session, *, job_id: int, hold_key: str, now: datetime) -> bool:
    """True when the job's hold moved or the job was cancelled for want of credits."""
    job = session.scalar(
        select(Job)
        .where(Job.id == job_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if job is None or job.state != JobState.QUEUED.value or job.hold_key != hold_key:
        return False
    if job.cancel_requested_at is not None:
        return False
    _lock_pending_records(session, job.id)
    # What its earlier runs used is charged from the old hold first: the allocation
    # that was in force then pays for it, and only what is left moves.
    settle_job_records(session, job.id, now=now)
    needed = get_hold(session, hold_key=hold_key).remaining
    if needed == 0:
        return False  # nothing left held on the ended allocation: nothing to move
    new_key = _next_hold_key(job)
    try:
        # The old hold is released first: its share on an allocation that has not
        # ended must not be asked for twice. Refused, both roll back together.
        with session.begin_nested():
            _void(session, job, hold_key, new_key, now)
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
        return True
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


def _void(session: Session, job: Job, hold_key: str, new_key: str, now: datetime) -> None:
    void_hold(
        session,
        key=f"{hold_key}:moved",
        hold_key=hold_key,
        actor=HOLD_MOVER,
        reason=f"job {job.id} still queued when its allocation ended; held again as {new_key}",
        now=now,
    )


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
