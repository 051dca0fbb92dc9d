"""Settling usage records into the ledger, batched, each record exactly once.

A batch locks pending records (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
concurrent workers take different records), taken in settlement's order: records
from outside meters first, then job by job, each job's records oldest first. In
the same transaction it books:

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
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    bindparam,
    func,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.orm import Session

from credits.identity.actor import Actor
from credits.jobs.models import Job
from credits.labelling.invoice import settle_record
from credits.ledger.batch_settle import HoldCapture, ProjectSpend, settle_batch
from credits.ledger.models import Currency
from credits.metering.models import RecordStatus, UsageRecord

METER = Actor.system("metering")


@dataclass
class SettleReport:
    records: int = 0
    captured_micro: int = 0
    overage_micro: int = 0
    failed: int = 0
    jobs: set[int] = field(default_factory=set)
    # The records the batch took (settled, set aside, or found settled by another
    # worker), and the last of them as (job id or 0, record id): where the next begins.
    read: int = 0
    last: tuple[int, int] | None = None

    def add(self, other: SettleReport) -> None:
        """Counts what ``other`` settled, set aside and charged into this report."""
        self.records += other.records
        self.captured_micro += other.captured_micro
        self.overage_micro += other.overage_micro
        self.failed += other.failed
        self.jobs |= other.jobs


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
    _R.started_at,
    # A subquery, not a join: the planner then reads the records in the index's
    # order and stops at the batch's limit, never joining or sorting the backlog.
    select(Job.hold_key).where(Job.id == _R.job_id).scalar_subquery().label("hold_key"),
)
# Records with their job's hold: one statement reads what a batch settles.
_WITH_HOLD = select(*_PENDING_COLUMNS)
# SQLite: the records captured in full with one statement, the others one by one.
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
# PostgreSQL: every record's marks in one statement, the values as arrays.
_PG_MARK = text(
    "UPDATE usage_records AS r SET captured_micro = v.captured, overage_micro = v.overage,"
    " status = :status, settled_at = :now"
    " FROM unnest(CAST(:ids AS BIGINT[]), CAST(:captured AS BIGINT[]),"
    " CAST(:overage AS BIGINT[])) AS v(id, captured, overage)"
    " WHERE r.id = v.id"
)


def _locked(query: Any, session: Session, *, skip_locked: bool = False) -> Any:
    """The query locking the records it reads (on PostgreSQL; SQLite has one writer)."""
    if session.get_bind().dialect.name != "postgresql":
        return query
    return query.with_for_update(of=UsageRecord.__table__, skip_locked=skip_locked)


# Settlement's order (the index ix_usage_records_status_job_id_id): records from
# outside meters (no job) first, by id; then job by job, each job's records oldest
# first. A batch of a backlog then holds a few jobs' records, one capture each,
# instead of one record each of as many jobs.
_IS_PENDING = _R.status == RecordStatus.PENDING.value


@dataclass(frozen=True)
class SweepPosition:
    """Where a sweep over pending records stands: past ``after`` in settlement's
    order, as (job id, record id) with job 0 for records from outside meters;
    before ``before`` in that order, if set; and never past record ``top``, the
    newest pending record when the sweep began, so that a sweep ends."""

    after: tuple[int, int] = (0, 0)
    top: int | None = None
    before: tuple[int, int] | None = None

    def past(self, last: tuple[int, int]) -> SweepPosition:
        return replace(self, after=last)


def sweep_laps(session: Session) -> list[SweepPosition]:
    """Where a run over the records pending now begins and ends: from the oldest
    pending record's place in settlement's order to the end, then from the start
    up to that place. Whatever else is waiting, a run settles the oldest record
    first. No pending record, no laps."""
    oldest = session.execute(
        select(_R.id, _R.job_id).where(_IS_PENDING).order_by(_R.id).limit(1)
    ).first()
    if oldest is None:
        return []
    top = newest_pending_id(session)
    start = (oldest.job_id or 0, oldest.id)
    to_the_end = SweepPosition(after=(start[0], start[1] - 1), top=top)
    if start[0] == 0:
        return [to_the_end]  # nothing pending comes before the oldest outside record
    return [to_the_end, SweepPosition(top=top, before=start)]


def _next_in_order(
    session: Session, position: SweepPosition, limit: int, columns: Any, *, lock: bool
) -> list[Any]:
    """The next ``limit`` pending records after ``position``: first those from
    outside meters (while the position is still among them), then job records."""
    after_job, after_id = position.after
    before_job, before_id = position.before or (None, None)
    rows: list[Any] = []
    if after_job == 0:
        outside = columns.where(_IS_PENDING, _R.job_id.is_(None), _R.id > after_id)
        if before_job == 0:
            outside = outside.where(_R.id < before_id)
        rows = _read(session, outside.order_by(_R.id), position, limit, lock=lock)
    if len(rows) < limit and before_job != 0:
        jobs = columns.where(_IS_PENDING, tuple_(_R.job_id, _R.id) > tuple_(after_job, after_id))
        if before_job is not None:
            jobs = jobs.where(tuple_(_R.job_id, _R.id) < tuple_(before_job, before_id))
        ordered = jobs.order_by(_R.job_id, _R.id)
        rows += _read(session, ordered, position, limit - len(rows), lock=lock)
    return rows


def _read(session: Session, query: Any, position: SweepPosition, limit: int, *, lock: bool) -> Any:
    if position.top is not None:
        query = query.where(_R.id <= position.top)
    query = query.limit(limit)
    if lock:
        query = _locked(query, session, skip_locked=True)
    return session.execute(query).all()


def newest_pending_id(session: Session) -> int | None:
    """The id of the newest pending record: where a sweep that starts now stops."""
    newest: int | None = session.scalar(select(func.max(_R.id)).where(_IS_PENDING))
    return newest


def settle_pending(
    session: Session,
    *,
    now: datetime,
    limit: int = 500,
    position: SweepPosition = SweepPosition(),
) -> SettleReport:
    """Settles up to ``limit`` pending records, the next ones in settlement's order
    after ``position``; the report's ``last`` says where the batch ended."""
    rows = _next_in_order(session, position, limit, _WITH_HOLD, lock=True)
    report = settle_rows(session, rows, now=now)
    report.read = len(rows)
    if rows:
        report.last = (rows[-1].job_id or 0, rows[-1].id)
    return report


def pending_ids(
    session: Session, *, limit: int, position: SweepPosition = SweepPosition()
) -> list[tuple[int, int]]:
    """(id, job id or 0) of the records the next batch after ``position`` would
    take, in order (not locked)."""
    columns = select(_R.id, _R.job_id)
    rows = _next_in_order(session, position, limit, columns, lock=False)
    return [(row.id, row.job_id or 0) for row in rows]


def settle_one(session: Session, record_id: int, *, now: datetime) -> SettleReport:
    """Settles one record if it is still pending (used to isolate a failing batch)."""
    query = _WITH_HOLD.where(_IS_PENDING, _R.id == record_id)
    rows = session.execute(_locked(query, session)).all()
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
    query = _WITH_HOLD.where(_IS_PENDING, _R.job_id == job_id).order_by(_R.id)
    rows = session.execute(_locked(query, session)).all()
    return settle_rows(session, rows, now=now)


def settle_rows(session: Session, rows: Sequence[Any], *, now: datetime) -> SettleReport:
    """Settles locked pending records (rows of ``_PENDING_COLUMNS``): every job record
    and record from an outside meter with one set-based ledger batch
    (:func:`credits.ledger.batch_settle.settle_batch`), whatever their number."""
    report = SettleReport()
    marks = _Marks()
    by_job: dict[int, list[Any]] = defaultdict(list)
    outside = []
    for row in rows:
        if row.labelling_order_id is not None:
            _settle_labelling(session, row, now, marks)
        elif row.job_id is None:
            outside.append(row)
        else:
            by_job[row.job_id].append(row)
    captures = [_capture(group) for _, group in sorted(by_job.items())]
    spends = [_spend(row) for row in outside]
    if captures or spends:
        settled = settle_batch(
            session,
            captures=captures,
            spends=spends,
            actor=METER,
            capture_reference="usage records",
            now=now,
        )
        for capture, (_, group) in zip(captures, sorted(by_job.items()), strict=True):
            marks.spread(group, settled.covered[capture.key])
        for spend, row in zip(spends, outside, strict=True):
            marks.spread([row], settled.covered[spend.key])
    report.jobs.update(by_job)
    marks.write(session, now, report)
    return report


def _capture(group: list[Any]) -> HoldCapture:
    """One capture per job from its hold, keyed by the job's first record in the batch."""
    first = group[0]
    return HoldCapture(
        key=f"usage:{first.id}:capture",
        hold_key=first.hold_key,
        amount=sum(row.amount_micro for row in group),
        project_id=first.project_id,
        currency=Currency.GPU,
        overage_key=f"usage:{first.id}:overage",
        reference=f"job {first.job_id}, usage records from {first.id}",
    )


def _spend(row: Any) -> ProjectSpend:
    """A record from an outside meter, spent from its project's allocations."""
    return ProjectSpend(
        key=f"usage:{row.id}:capture",
        hold_key=f"usage:{row.id}:hold",
        amount=row.amount_micro,
        project_id=row.project_id,
        currency=Currency(row.currency),
        overage_key=f"usage:{row.id}:overage",
        reference=f"usage record {row.source}/{row.record_id}",
        used_at=row.started_at,
    )


def _settle_labelling(session: Session, row: Any, now: datetime, marks: _Marks) -> None:
    delivered = settle_record(
        session,
        order_id=row.labelling_order_id,
        usage_record_id=row.id,
        units_micro=row.quantity_micro,
        actor=METER,
        now=now,
    )
    marks.settle(row.id, captured=delivered.captured_micro, overage=delivered.overage_micro)


class _Marks:
    """What each record was settled as, written with one statement (two on SQLite)."""

    def __init__(self) -> None:
        self.marks: list[dict[str, int]] = []
        # (id, amount) of the records captured in full.
        self.full: list[tuple[int, int]] = []
        self.captured = 0
        self.overage = 0

    def spread(self, group: list[Any], covered: int) -> None:
        """What was covered goes to the records in order; the rest of each is overage."""
        left = covered
        for row in group:
            take = min(left, row.amount_micro)
            left -= take
            if take == row.amount_micro:
                self.full.append((row.id, take))
                self.captured += take
            else:
                self.settle(row.id, captured=take, overage=row.amount_micro - take)

    def settle(self, record_id: int, *, captured: int, overage: int) -> None:
        """A record settled as what it captured and what was overage."""
        self.captured += captured
        self.overage += overage
        self.marks.append({"record": record_id, "captured": captured, "overage": overage})

    def write(self, session: Session, now: datetime, report: SettleReport) -> None:
        connection = session.connection()
        if connection.dialect.name == "postgresql":
            self._write_postgres(connection, now)
        else:
            # SQLite runs both in-process; an IN list beats a per-row update through
            # the ORM's parameter processing.
            if self.full:
                ids = [record_id for record_id, _ in self.full]
                connection.execute(_MARK_ALL_CAPTURED, {"ids": ids, "now": now})
            if self.marks:
                connection.execute(_MARK_ONE, [mark | {"now": now} for mark in self.marks])
        report.records = len(self.full) + len(self.marks)
        report.captured_micro = self.captured
        report.overage_micro = self.overage

    def _write_postgres(self, connection: Connection, now: datetime) -> None:
        """Every mark in one statement, the values as arrays."""
        marks = self.marks + [
            {"record": record_id, "captured": amount, "overage": 0}
            for record_id, amount in self.full
        ]
        if marks:
            columns = {
                name: [mark[key] for mark in marks]
                for name, key in (
                    ("ids", "record"),
                    ("captured", "captured"),
                    ("overage", "overage"),
                )
            }
            connection.execute(
                _PG_MARK, {**columns, "status": RecordStatus.SETTLED.value, "now": now}
            )
