"""Settling usage records into the ledger, batched, each record exactly once.

A batch locks pending records (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
concurrent workers take different records) and, in the same transaction:

- job records: one capture per job from the job's hold, for as much as the
  hold has left; the rest is booked to the overage account;
- records from outside meters: spent from the project's allocations
  (soonest-expiring first) as far as they cover; the rest is overage;
- records of units a labelling vendor delivered for an order: handed to the
  order (:mod:`credits.labelling.invoice`), which captures them from its hold
  and books what runs past the quote as overage. While the order is disputed
  the order freezes them: the record is settled with nothing captured and no
  overage, and the frozen amount lives on the order's unit delivery (which
  names the record) until ops resolve the dispute;
- every record marked settled with what was captured and what was overage.

Because marking and charging commit together, a worker that dies before
committing leaves the records pending for the next one, and a record once
settled is never picked again: exactly once. Ledger keys are derived from the
record ids as a second guard.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from credits.identity.actor import Actor
from credits.jobs.models import Job
from credits.labelling.invoice import settle_record
from credits.ledger.holds import place_hold
from credits.ledger.models import Currency
from credits.ledger.overage import book_overage
from credits.ledger.queries import project_available
from credits.ledger.settle import capture, capture_up_to
from credits.metering.models import RecordStatus, UsageRecord

METER = Actor.system("metering")


@dataclass
class SettleReport:
    records: int = 0
    captured_micro: int = 0
    overage_micro: int = 0
    failed: int = 0
    jobs: set[int] = field(default_factory=set)


_R = UsageRecord.__table__.c
_PENDING_COLUMNS = (
    _R.id,
    _R.job_id,
    _R.project_id,
    _R.currency,
    _R.amount_micro,
    _R.source,
    _R.record_id,
    _R.labelling_order_id,
    _R.quantity_micro,
)
_MARK_ALL_CAPTURED = (
    update(UsageRecord)
    .where(_R.id.in_(bindparam("ids", expanding=True)))
    .values(
        captured_micro=_R.amount_micro,
        overage_micro=0,
        status=RecordStatus.SETTLED.value,
        settled_at=bindparam("now"),
    )
)
_MARK_ONE = (
    update(UsageRecord)
    .where(_R.id == bindparam("record"))
    .values(
        captured_micro=bindparam("captured"),
        overage_micro=bindparam("overage"),
        status=RecordStatus.SETTLED.value,
        settled_at=bindparam("now"),
    )
)


def settle_pending(session: Session, *, now: datetime, limit: int = 500) -> SettleReport:
    """Settles up to ``limit`` pending records, oldest first."""
    query = (
        select(*_PENDING_COLUMNS)
        .where(_R.status == RecordStatus.PENDING.value)
        .order_by(_R.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return settle_rows(session, session.execute(query).all(), now=now)


def pending_ids(session: Session, *, limit: int) -> list[int]:
    """The ids the next batch would take, oldest first (not locked)."""
    return list(
        session.scalars(
            select(_R.id)
            .where(_R.status == RecordStatus.PENDING.value)
            .order_by(_R.id)
            .limit(limit)
        )
    )


def settle_one(session: Session, record_id: int, *, now: datetime) -> SettleReport:
    """Settles one record if it is still pending (used to isolate a failing batch)."""
    rows = session.execute(
        select(*_PENDING_COLUMNS)
        .where(_R.id == record_id, _R.status == RecordStatus.PENDING.value)
        .with_for_update()
    ).all()
    return settle_rows(session, rows, now=now)


def set_aside(session: Session, record_id: int, error: str, *, now: datetime) -> None:
    """Marks a record that cannot be settled as failed, with why, for ops to look at."""
    session.execute(
        update(UsageRecord)
        .where(_R.id == record_id, _R.status == RecordStatus.PENDING.value)
        .values(status=RecordStatus.FAILED.value, error=error[:2000], settled_at=now)
    )


def settle_job_records(session: Session, job_id: int, *, now: datetime) -> SettleReport:
    """Settles every pending record of one job (waiting for any a worker holds)."""
    rows = session.execute(
        select(*_PENDING_COLUMNS)
        .where(_R.job_id == job_id, _R.status == RecordStatus.PENDING.value)
        .order_by(_R.id)
        .with_for_update()
    ).all()
    return settle_rows(session, rows, now=now)


def settle_rows(session: Session, rows: Sequence[Any], *, now: datetime) -> SettleReport:
    """Settles locked pending records (rows of ``_PENDING_COLUMNS``)."""
    report = SettleReport()
    marks = _Marks()
    by_job: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        if row.labelling_order_id is not None:
            _settle_labelling(session, row, now, marks)
        elif row.job_id is None:
            _settle_outside(session, row, now, marks)
        else:
            by_job[row.job_id].append(row)
    if by_job:
        _settle_jobs(session, by_job, now, marks)
        report.jobs.update(by_job)
    marks.write(session, now, report)
    return report


def _settle_jobs(
    session: Session, by_job: dict[int, list[Any]], now: datetime, marks: _Marks
) -> None:
    jobs = {
        job_id: (hold_key, project_id)
        for job_id, hold_key, project_id in session.execute(
            select(Job.id, Job.hold_key, Job.project_id).where(Job.id.in_(list(by_job)))
        )
    }
    totals = {job_id: sum(row.amount_micro for row in group) for job_id, group in by_job.items()}
    captured = capture_up_to(
        session,
        requests={
            jobs[job_id][0]: (f"usage:{group[0].id}:capture", totals[job_id])
            for job_id, group in by_job.items()
        },
        actor=METER,
        reference="usage records",
        now=now,
    )
    for job_id, group in sorted(by_job.items()):
        hold_key, project_id = jobs[job_id]
        covered = captured.get(hold_key, 0)
        if totals[job_id] > covered:
            book_overage(
                session,
                key=f"usage:{group[0].id}:overage",
                project_id=project_id,
                currency=Currency.GPU,
                amount=totals[job_id] - covered,
                actor=METER,
                reference=f"job {job_id}, usage records from {group[0].id}",
                now=now,
            )
        marks.spread(group, covered)


def _settle_outside(session: Session, row: Any, now: datetime, marks: _Marks) -> None:
    currency = Currency(row.currency)
    available = project_available(session, project_id=row.project_id, currency=currency, now=now)
    covered = min(row.amount_micro, max(0, available))
    reference = f"usage record {row.source}/{row.record_id}"
    if covered:
        hold_key = f"usage:{row.id}:hold"
        place_hold(
            session,
            key=hold_key,
            currency=currency,
            amount=covered,
            actor=METER,
            project_id=row.project_id,
            reference=reference,
            now=now,
        )
        capture(
            session,
            key=f"usage:{row.id}:capture",
            hold_key=hold_key,
            amount=covered,
            actor=METER,
            now=now,
        )
    if row.amount_micro > covered:
        book_overage(
            session,
            key=f"usage:{row.id}:overage",
            project_id=row.project_id,
            currency=currency,
            amount=row.amount_micro - covered,
            actor=METER,
            reference=reference,
            now=now,
        )
    marks.spread([row], covered)


def _settle_labelling(session: Session, row: Any, now: datetime, marks: _Marks) -> None:
    delivered = settle_record(
        session,
        order_id=row.labelling_order_id,
        usage_record_id=row.id,
        source=row.source,
        record_id=row.record_id,
        units_micro=row.quantity_micro,
        actor=METER,
        now=now,
    )
    marks.settle(row.id, captured=delivered.captured_micro, overage=delivered.overage_micro)


class _Marks:
    """What each record was settled as, written with two statements."""

    def __init__(self) -> None:
        self.full: list[int] = []
        self.partial: list[dict[str, int]] = []
        self.captured = 0
        self.overage = 0

    def spread(self, group: list[Any], covered: int) -> None:
        """What was covered goes to the records in order; the rest of each is overage."""
        left = covered
        for row in group:
            take = min(left, row.amount_micro)
            left -= take
            self.captured += take
            self.overage += row.amount_micro - take
            if take == row.amount_micro:
                self.full.append(row.id)
            else:
                self.partial.append(
                    {"record": row.id, "captured": take, "overage": row.amount_micro - take}
                )

    def settle(self, record_id: int, *, captured: int, overage: int) -> None:
        """A record settled elsewhere (a labelling order), as what it captured and overage."""
        self.captured += captured
        self.overage += overage
        self.partial.append({"record": record_id, "captured": captured, "overage": overage})

    def write(self, session: Session, now: datetime, report: SettleReport) -> None:
        connection = session.connection()
        if self.full:
            connection.execute(_MARK_ALL_CAPTURED, {"ids": self.full, "now": now})
        if self.partial:
            connection.execute(_MARK_ONE, [entry | {"now": now} for entry in self.partial])
        report.records = len(self.full) + len(self.partial)
        report.captured_micro = self.captured
        report.overage_micro = self.overage
