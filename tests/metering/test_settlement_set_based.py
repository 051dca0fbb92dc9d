"""Set-based settlement books what settling the same records one by one books, and
costs the same number of statements whatever the number of jobs in a batch."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jobs_world import START, SYSTEM, JobsWorld, build_jobs_world
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session, sessionmaker

from credits.audit.models import AuditEvent
from credits.errors import InvalidInput
from credits.ledger import service as ledger
from credits.ledger.batch_settle import HoldCapture, settle_batch
from credits.ledger.holds import place_hold
from credits.ledger.models import (
    Account,
    AccountKind,
    Currency,
    HoldPart,
    HoldStatus,
    Transfer,
    TransferKind,
)
from credits.ledger.overage import book_overage
from credits.ledger.queries import get_hold, project_available, system_account_id
from credits.ledger.settle import capture, void_hold
from credits.ledger.verify import verify_ledger
from credits.metering.models import JOBS_SOURCE, RecordStatus, UsageRecord
from credits.metering.settlement import METER, SweepPosition, settle_pending

JOBS = 3
# (kind, which job or currency, amount in micro-credits); job holds are 416,667 each.
RECORDS = st.lists(
    st.one_of(
        st.tuples(st.just("job"), st.integers(0, JOBS - 1), st.integers(0, 300_000)),
        st.tuples(st.just("outside"), st.sampled_from(["gpu", "label"]), st.integers(0, 600_000)),
    ),
    min_size=1,
    max_size=12,
)


@dataclass
class _World:
    jobs: JobsWorld
    session: Session
    hold_keys: list[str]
    job_ids: list[int]


@pytest.fixture
def world(any_session: Session) -> _World:
    """A project with three GPU allocations ending at different times and a label one;
    three jobs holding credits, the first across two allocations, the last one's hold
    released early."""
    factory = sessionmaker(
        bind=any_session.connection(),
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
    )
    jobs = build_jobs_world(factory, credits_micro=1_500_000)
    with jobs.session() as session:
        _fund(session, jobs.project_id, Currency.GPU, 300_000, days=30)
        _fund(session, jobs.project_id, Currency.LABEL, 500_000, days=30)
    submitted = [jobs.submit(gpus=1, max_runtime_seconds=600) for _ in range(JOBS)]
    with jobs.session() as session:
        # Opened after the holds: outside usage spends it first, then the rest.
        _fund(session, jobs.project_id, Currency.GPU, 200_000, days=10)
        void_hold(
            session,
            key="tests:void",
            hold_key=submitted[-1].hold_key,
            actor=SYSTEM,
            now=jobs.clock(),
        )
    return _World(
        jobs, any_session, [job.hold_key for job in submitted], [job.id for job in submitted]
    )


def _fund(session: Session, project_id: int, currency: Currency, amount: int, *, days: int) -> None:
    code = f"ends-in-{days}-{currency.value}-{project_id}"
    account = ledger.open_account(
        session,
        code=code,
        currency=currency,
        project_id=project_id,
        starts_at=START - timedelta(days=1),
        expires_at=START + timedelta(days=days),
        actor=SYSTEM,
    )
    ledger.grant(
        session,
        key=f"fund-{code}",
        from_account_id=system_account_id(session, AccountKind.SOURCE, currency),
        to_account_id=account.id,
        amount=amount,
        actor=SYSTEM,
        now=START - timedelta(days=1),
    )


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(records=RECORDS)
def test_a_batch_books_what_settling_record_by_record_books(
    world: _World, records: list[tuple[str, Any, int]]
) -> None:
    batched = _in_savepoint(world, records, _settle_as_batch)
    one_by_one = _in_savepoint(world, records, _settle_one_by_one)
    assert batched == one_by_one


def _in_savepoint(world: _World, records: list[tuple[str, Any, int]], settle: Any) -> Any:
    """Adds the records, settles them with ``settle`` and reads the ledger, then undoes
    it all, so both ways start from the same state."""
    session = world.session
    savepoint = session.begin_nested()
    try:
        first_transfer = _next_id(session, Transfer)
        ids = _add_records(world, records)
        settle(world, ids)
        return _state(session, ids, first_transfer)
    finally:
        savepoint.rollback()


def _next_id(session: Session, model: Any) -> int:
    return int(session.scalar(select(model.id).order_by(model.id.desc()).limit(1)) or 0) + 1


def _add_records(world: _World, records: list[tuple[str, Any, int]]) -> list[int]:
    rows = []
    for index, (kind, which, amount) in enumerate(records):
        job = kind == "job"
        rows.append(
            UsageRecord(
                source=JOBS_SOURCE if job else "meter",
                record_id=f"r{index}",
                job_id=world.job_ids[which] if job else None,
                project_id=world.jobs.project_id,
                currency="gpu" if job else which,
                unit="credit",
                quantity_micro=amount,
                amount_micro=amount,
                started_at=START,
                ended_at=START,
                request_hash="x",
                status=RecordStatus.PENDING.value,
                captured_micro=0,
                overage_micro=0,
            )
        )
    world.session.add_all(rows)
    world.session.flush()
    return [row.id for row in rows]


def _settle_as_batch(world: _World, ids: list[int]) -> None:
    report = settle_pending(world.session, now=world.jobs.clock(), limit=500)
    assert report.records == len(ids)


def _settle_one_by_one(world: _World, ids: list[int]) -> None:
    """The model: each record on its own through the one-at-a-time ledger services."""
    session, now = world.session, world.jobs.clock()
    for record in session.scalars(select(UsageRecord).where(UsageRecord.id.in_(ids))):
        currency = Currency(record.currency)
        if record.job_id is not None:
            hold_key = world.hold_keys[world.job_ids.index(record.job_id)]
            parts = get_hold(session, hold_key=hold_key).parts
            left = sum(p.remaining for p in parts if p.status is HoldStatus.OPEN)
        else:
            hold_key = f"usage:{record.id}:hold"
            left = max(
                0,
                project_available(
                    session, project_id=record.project_id, currency=currency, now=now
                ),
            )
        take = min(record.amount_micro, left)
        if take and record.job_id is None:
            place_hold(
                session,
                key=hold_key,
                currency=currency,
                amount=take,
                actor=METER,
                project_id=record.project_id,
                now=now,
            )
        if take:
            capture(
                session,
                key=f"model:{record.id}",
                hold_key=hold_key,
                amount=take,
                actor=METER,
                now=now,
            )
        if record.amount_micro > take:
            book_overage(
                session,
                key=f"model:{record.id}:overage",
                project_id=record.project_id,
                currency=currency,
                amount=record.amount_micro - take,
                actor=METER,
                now=now,
            )
        session.execute(
            update(UsageRecord)
            .where(UsageRecord.id == record.id)
            .values(
                status=RecordStatus.SETTLED.value,
                captured_micro=take,
                overage_micro=record.amount_micro - take,
            )
        )


def _state(session: Session, ids: list[int], first_transfer: int) -> dict[str, Any]:
    """What both ways must agree on: every counter, every hold part, every record,
    and the money the new transfers moved by kind and accounts."""
    assert verify_ledger(session).ok
    codes = {a.id: a.code for a in session.scalars(select(Account))}
    hold_names = {f"usage:{record_id}:hold": f"record {n}" for n, record_id in enumerate(ids)}
    new = session.scalars(select(Transfer).where(Transfer.id >= first_transfer)).all()
    _each_transfer_audited_once(session, new)
    moved: Counter[tuple[str, str, str, bool]] = Counter()
    for transfer in new:
        key = (transfer.kind, codes[transfer.debit_account_id], codes[transfer.credit_account_id])
        moved[(*key, transfer.pending)] += transfer.amount
    return {
        "accounts": {
            code: (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
            for a in session.scalars(select(Account))
            for code in [a.code]
        },
        "parts": sorted(
            (
                hold_names.get(p.hold_key, p.hold_key),
                p.part,
                codes[p.account_id],
                p.amount,
                p.captured,
                p.voided,
                p.status,
            )
            for p in session.scalars(select(HoldPart))
        ),
        "records": [
            (r.status, r.captured_micro, r.overage_micro)
            for r in session.scalars(
                select(UsageRecord).where(UsageRecord.id.in_(ids)).order_by(UsageRecord.id)
            )
        ],
        "moved": dict(moved),
    }


def _each_transfer_audited_once(session: Session, transfers: Any) -> None:
    ids = {str(t.id) for t in transfers}
    events = Counter(
        session.scalars(
            select(AuditEvent.subject_id).where(AuditEvent.subject_type == "ledger_transfer")
        )
    )
    assert all(events[transfer_id] == 1 for transfer_id in ids)


@pytest.fixture
def statements(world: _World) -> Iterator[list[str]]:
    seen: list[str] = []
    connection = world.session.connection()

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(connection, "before_cursor_execute", count)
    yield seen
    event.remove(connection, "before_cursor_execute", count)


def test_a_batch_costs_the_same_statements_whatever_its_number_of_jobs(
    world: _World, statements: list[str]
) -> None:
    more = [world.jobs.submit(gpus=1, max_runtime_seconds=60) for _ in range(10)]
    job_ids = [*world.job_ids[:2], *(job.id for job in more)]

    def settle(jobs: list[int]) -> int:
        savepoint = world.session.begin_nested()
        world.job_ids = jobs
        _add_records(world, [("job", n, 1_000) for n in range(len(jobs))] * 3)
        statements.clear()
        settle_pending(world.session, now=world.jobs.clock(), limit=500)
        count = len(statements)
        savepoint.rollback()
        return count

    assert settle(job_ids[:2]) == settle(job_ids)


def test_a_batch_naming_one_hold_twice_is_refused_before_it_writes(world: _World) -> None:
    first = _next_id(world.session, Transfer)
    twice = [
        HoldCapture(
            key=f"tests:{n}",
            hold_key=world.hold_keys[0],
            amount=1_000,
            project_id=world.jobs.project_id,
            currency=Currency.GPU,
            overage_key=f"tests:{n}:overage",
            reference="tests",
        )
        for n in range(2)
    ]
    with pytest.raises(InvalidInput, match="each hold and each key once"):
        settle_batch(world.session, captures=twice, actor=METER, capture_reference=None, now=START)
    assert _next_id(world.session, Transfer) == first


def _settled_ids(session: Session, ids: list[int]) -> list[int]:
    return list(
        session.scalars(
            select(UsageRecord.id)
            .where(UsageRecord.id.in_(ids), UsageRecord.status == RecordStatus.SETTLED.value)
            .order_by(UsageRecord.id)
        )
    )


def _captures_since(session: Session, first_transfer: int) -> int:
    return len(
        session.scalars(
            select(Transfer.id).where(
                Transfer.id >= first_transfer, Transfer.kind == TransferKind.CAPTURE.value
            )
        ).all()
    )


def test_a_batch_takes_a_backlog_job_by_job_with_one_capture_each(world: _World) -> None:
    first_transfer = _next_id(world.session, Transfer)
    # Interleaved as a meter writes them: one record of each job per interval.
    ids = _add_records(world, [("job", 0, 1_000), ("job", 1, 1_000)] * 4)
    report = settle_pending(world.session, now=world.jobs.clock(), limit=4)
    assert report.jobs == {world.job_ids[0]}
    assert _settled_ids(world.session, ids) == ids[0::2]
    assert _captures_since(world.session, first_transfer) == 1


def test_outside_records_come_first_and_the_next_batch_goes_on_where_one_ended(
    world: _World,
) -> None:
    ids = _add_records(
        world,
        [("job", 1, 1_000), ("outside", "gpu", 1_000), ("job", 0, 1_000), ("outside", "gpu", 1)],
    )
    first = settle_pending(world.session, now=world.jobs.clock(), limit=3)
    assert _settled_ids(world.session, ids) == sorted([ids[1], ids[3], ids[2]])
    assert first.last == (world.job_ids[0], ids[2])
    second = settle_pending(
        world.session,
        now=world.jobs.clock(),
        limit=3,
        position=SweepPosition(after=(world.job_ids[0], ids[2])),
    )
    assert second.records == 1
    assert _settled_ids(world.session, ids) == ids


def test_a_sweep_never_takes_records_newer_than_its_top(world: _World) -> None:
    ids = _add_records(world, [("job", 0, 1_000), ("outside", "gpu", 1_000), ("job", 0, 1)])
    report = settle_pending(
        world.session, now=world.jobs.clock(), limit=10, position=SweepPosition(top=ids[1])
    )
    assert report.records == 2
    assert _settled_ids(world.session, ids) == ids[:2]
