"""Settling a finished job: meter it to its end, charge its records, release the rest.

The charge is what the executor observed, never what was asked: usage records
of each run (GPUs x observed time, interval by interval, at the rate version
the job was admitted at; never past the job's max runtime, so never more than
its hold) captured from the job's hold; whatever the hold no longer covers is
booked to the overage account. Then the rest of the hold is voided. Every
ledger call carries a key derived from the job or its records, and the records
are settled once, so settling twice charges once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from credits.identity.actor import Actor
from credits.jobs.models import Job
from credits.ledger.queries import get_hold
from credits.ledger.settle import void_hold
from credits.metering.job_records import meter_job
from credits.metering.models import UsageRecord
from credits.metering.settlement import settle_job_records

SETTLER = Actor.system("jobs-settlement")
DEFAULT_INTERVAL_S = 60


def settle_job(
    session: Session, job: Job, *, now: datetime, interval_s: int = DEFAULT_INTERVAL_S
) -> None:
    """Charges the finished job for its runs and voids what is left of its hold."""
    if job.settled_at is not None:
        return
    meter_job(session, job, now=now, interval_s=interval_s)
    settle_job_records(session, job.id, now=now)
    hold = get_hold(session, hold_key=job.hold_key)
    if any(part.remaining for part in hold.parts):
        void_hold(
            session,
            key=f"job:{job.id}:void",
            hold_key=job.hold_key,
            actor=SETTLER,
            reason=f"job {job.id} finished; unused hold released",
            now=now,
        )
    captured, overage = session.execute(
        select(
            func.coalesce(func.sum(UsageRecord.captured_micro), 0),
            func.coalesce(func.sum(UsageRecord.overage_micro), 0),
        ).where(UsageRecord.job_id == job.id)
    ).one()
    job.charged_micro = int(captured)
    job.overage_micro = int(overage)
    job.settled_at = now
