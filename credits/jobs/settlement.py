"""Charging a finished job for what it ran, and releasing the rest of its hold.

The charge is what the executor observed, never what was asked: each run's
GPUs x (finish - start) at the rate version the job was admitted at, rounded
up to a whole micro-credit once over all runs. Captures and voids carry
idempotency keys derived from the job, so settling twice charges once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.identity.actor import Actor
from credits.jobs.models import Job, JobRun
from credits.ledger.queries import get_hold
from credits.ledger.settle import capture, void_hold

SETTLER = Actor.system("jobs-settlement")
MICROSECONDS_PER_HOUR = 3_600_000_000


def gpu_microseconds(runs: list[JobRun]) -> int:
    """GPU-time observed over every run that started and finished."""
    total = 0
    for run in runs:
        if run.started_at is None or run.finished_at is None:
            continue
        span = run.finished_at - run.started_at
        total += run.gpus * (
            span.days * 86_400_000_000 + span.seconds * 1_000_000 + span.microseconds
        )
    return total


def usage_amount(gpu_us: int, micro_credits_per_gpu_hour: int) -> int:
    """Micro-credits for ``gpu_us`` GPU-microseconds, rounded up; integers only."""
    return -(-gpu_us * micro_credits_per_gpu_hour // MICROSECONDS_PER_HOUR)


def settle_job(session: Session, job: Job, *, now: datetime) -> None:
    """Captures the job's usage from its hold and voids the rest; sets charged_micro.

    Usage beyond what the hold has left is recorded in ``overage_micro``,
    never drawn from elsewhere, so a project cannot overdraw.
    """
    if job.settled_at is not None:
        return
    runs = list(session.scalars(select(JobRun).where(JobRun.job_id == job.id)))
    amount = usage_amount(gpu_microseconds(runs), job.micro_credits_per_gpu_hour)
    hold = get_hold(session, hold_key=job.hold_key)
    left = sum(part.amount - part.captured - part.voided for part in hold.parts)
    charged = min(amount, left)
    if charged > 0:
        capture(
            session,
            key=f"job:{job.id}:capture",
            hold_key=job.hold_key,
            amount=charged,
            actor=SETTLER,
            reference=f"job {job.id}",
            now=now,
        )
    if left - charged > 0:
        void_hold(
            session,
            key=f"job:{job.id}:void",
            hold_key=job.hold_key,
            actor=SETTLER,
            reason=f"job {job.id} finished; unused hold released",
            now=now,
        )
    job.charged_micro = charged
    job.overage_micro = amount - charged
    job.settled_at = now
