"""Eight settlement workers on PostgreSQL settle every usage record exactly once, a
mix of job and outside-meter records with overage included, even when one dies."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest
from conftest import create_migrated_postgres_database, drop_postgres_database
from jobs_world import JobsWorld, build_jobs_world, outside_record
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from credits.db import make_engine, make_session_factory, session_scope
from credits.identity.actor import Actor
from credits.jobs.models import Job
from credits.ledger.models import Account, Currency, Transfer, TransferKind
from credits.ledger.queries import project_sink_code
from credits.ledger.settle import void_hold
from credits.ledger.verify import verify_ledger
from credits.metering.models import RecordStatus, UsageRecord
from credits.metering.service import settle_all_pending
from credits.metering.settlement import settle_pending

pytestmark = pytest.mark.postgres

WORKERS = 8


@pytest.fixture
def committed_postgres() -> Iterator[Engine]:
    url, admin_url = create_migrated_postgres_database()
    engine = make_engine(url, pool_size=WORKERS + 2)
    yield engine
    engine.dispose()
    drop_postgres_database(url, admin_url)


def _running_jobs_with_pending_usage(engine: Engine) -> JobsWorld:
    world = build_jobs_world(make_session_factory(engine), nodes=4, credits_micro=10**12)
    for index in range(12):
        world.submit(name=f"job-{index}", gpus=2, max_runtime_seconds=7200, duration=1500)
    world.cycle()
    world.clock.advance(900)
    world.reconcile()  # meters 15 one-minute intervals of each running job
    return world


def _record_totals(session: Session) -> tuple[dict[str, int], tuple[int, int, int]]:
    """Records per status, and usage, captured and overage summed over all records."""
    statuses = dict(
        session.execute(select(UsageRecord.status, func.count()).group_by(UsageRecord.status)).all()
    )
    sums = session.execute(
        select(
            func.sum(UsageRecord.amount_micro),
            func.sum(UsageRecord.captured_micro),
            func.sum(UsageRecord.overage_micro),
        )
    ).one()
    return statuses, (int(sums[0]), int(sums[1]), int(sums[2]))


def test_eight_concurrent_settlement_workers_charge_each_record_once(
    committed_postgres: Engine,
) -> None:
    world = _running_jobs_with_pending_usage(committed_postgres)
    with world.session() as session:
        pending = session.scalar(
            select(func.count()).where(UsageRecord.status == RecordStatus.PENDING.value)
        )
    assert pending and pending >= 100
    barrier = threading.Barrier(WORKERS)
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            settle_all_pending(world.factory, batch_size=9, clock=world.clock)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    with world.session() as session:
        statuses, (usage, captured, overage) = _record_totals(session)
        captures = session.scalar(
            select(func.coalesce(func.sum(Transfer.amount), 0)).where(
                Transfer.kind == TransferKind.CAPTURE.value
            )
        )
        sink = session.scalar(
            select(Account).where(Account.code == project_sink_code(world.project_id, Currency.GPU))
        )
        assert sink is not None
        per_job = session.execute(
            select(Job.hold_micro, func.sum(UsageRecord.captured_micro))
            .join(UsageRecord, UsageRecord.job_id == Job.id)
            .group_by(Job.id, Job.hold_micro)
        ).all()
        assert verify_ledger(session).ok
    assert statuses == {RecordStatus.SETTLED.value: pending}
    assert usage == captured + overage
    assert overage == 0
    assert captures == captured
    assert sink.credits_posted == usage
    assert len(per_job) == 12
    assert all(0 < charged <= hold for hold, charged in per_job)


def _outside_records(world: JobsWorld, count: int) -> None:
    with world.session() as session:
        session.add_all(
            outside_record(world.project_id, f"outside-{n}", 1_000 + n, world.clock())
            for n in range(count)
        )


def test_workers_settle_jobs_outside_usage_and_overage_once_while_one_dies_midway(
    committed_postgres: Engine,
) -> None:
    world = _running_jobs_with_pending_usage(committed_postgres)
    with world.session() as session:
        released = session.scalars(select(Job).order_by(Job.id).limit(1)).one()
        # Its hold released early: its records cover nothing and become overage.
        void_hold(
            session,
            key="tests:released",
            hold_key=released.hold_key,
            actor=Actor.system("tests"),
            now=world.clock(),
        )
    _outside_records(world, 60)
    barrier = threading.Barrier(WORKERS)
    failures: list[BaseException] = []

    def dying_worker() -> None:
        barrier.wait()
        with contextlib.suppress(RuntimeError), session_scope(world.factory) as session:
            settle_pending(session, now=world.clock(), limit=40)
            raise RuntimeError("killed before commit")

    def worker() -> None:
        try:
            barrier.wait()
            settle_all_pending(world.factory, batch_size=13, clock=world.clock)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=dying_worker)]
    threads += [threading.Thread(target=worker) for _ in range(WORKERS - 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    settle_all_pending(world.factory, batch_size=50, clock=world.clock)
    assert failures == []
    with world.session() as session:
        statuses, (usage, captured, overage) = _record_totals(session)
        posted = session.scalar(
            select(func.coalesce(func.sum(Transfer.amount), 0)).where(
                Transfer.kind.in_([TransferKind.CAPTURE.value, TransferKind.GRANT.value]),
                Transfer.credit_account_id
                == select(Account.id)
                .where(Account.code == project_sink_code(world.project_id, Currency.GPU))
                .scalar_subquery(),
            )
        )
        assert verify_ledger(session).ok
    assert set(statuses) == {RecordStatus.SETTLED.value}
    assert usage == captured + overage == posted
    assert overage > 0
