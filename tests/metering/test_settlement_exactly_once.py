"""Usage is charged exactly once: balances move while jobs run, replays and crashes
change nothing, usage beyond the hold is booked as overage, never overdrawn."""

from __future__ import annotations

import pytest
from jobs_world import RATE, SYSTEM, JobsWorld, build_jobs_world, outside_record
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from credits.db import session_scope
from credits.jobs.models import Job
from credits.ledger.models import Account, AccountKind, Currency
from credits.ledger.queries import project_sink_code, system_account_id
from credits.ledger.settle import void_hold
from credits.ledger.verify import verify_ledger
from credits.metering.models import RecordStatus, UsageRecord
from credits.metering.service import settle_all_pending
from credits.metering.settlement import settle_one, settle_pending


@pytest.fixture
def world(joined_session_factory: sessionmaker[Session]) -> JobsWorld:
    return build_jobs_world(joined_session_factory)


def _cost(gpu_seconds: int) -> int:
    return -(-gpu_seconds * RATE // 3600)


def _settle(world: JobsWorld) -> None:
    settle_all_pending(world.factory, batch_size=7, clock=world.clock)


def _usage_equals_captures_plus_overage(world: JobsWorld) -> None:
    with world.session() as session:
        usage = session.scalar(select(func.sum(UsageRecord.amount_micro))) or 0
        captured = session.scalar(select(func.sum(UsageRecord.captured_micro))) or 0
        overage = session.scalar(select(func.sum(UsageRecord.overage_micro))) or 0
        pending = session.scalar(
            select(func.count()).where(UsageRecord.status == RecordStatus.PENDING.value)
        )
        sink = session.scalar(
            select(Account).where(Account.code == project_sink_code(world.project_id, Currency.GPU))
        )
        assert sink is not None
        assert report_ok(session)
    assert pending == 0
    assert usage == captured + overage
    assert sink.credits_posted == usage


def _used(world: JobsWorld) -> int:
    with world.session() as session:
        account = session.get(Account, world.account_id)
        assert account is not None
        return int(account.debits_posted)


def report_ok(session: Session) -> bool:
    report = verify_ledger(session)
    return bool(report.ok)


def test_balance_moves_while_a_job_runs_and_the_total_is_exact(world: JobsWorld) -> None:
    job = world.submit(gpus=2, max_runtime_seconds=3600, duration=600)
    world.cycle()
    used = [_used(world)]
    for _ in range(5):
        world.clock.advance(60)
        world.cycle()
        _settle(world)
        used.append(_used(world))
    # Charged interval by interval while running, from the hold (so what the
    # project may still spend, already net of the hold, does not move).
    assert used == sorted(used)
    assert used[-1] > used[0] == 0
    with world.session() as session:
        assert session.get(Job, job.id).state == "running"  # type: ignore[union-attr]
    world.clock.advance(300)
    world.cycle()
    with world.session() as session:
        done = session.get(Job, job.id)
        assert done is not None
        assert done.state == "succeeded"
        assert done.charged_micro == _cost(2 * 600)
        assert done.overage_micro == 0
    _usage_equals_captures_plus_overage(world)


def test_settling_twice_or_concurrently_in_one_process_charges_once(world: JobsWorld) -> None:
    world.submit(gpus=1, duration=400)
    world.cycle()
    world.clock.advance(400)
    world.reconcile()  # meters nothing settled yet for the running part
    _settle(world)
    _settle(world)
    _usage_equals_captures_plus_overage(world)


def test_a_worker_that_dies_before_commit_leaves_the_records_for_the_next(
    world: JobsWorld,
) -> None:
    world.submit(gpus=1, duration=600)
    world.cycle()
    world.clock.advance(300)
    world.cycle()  # meters five intervals, then settles them; add more to settle by hand
    world.clock.advance(120)
    world.reconcile()
    with world.session() as session:
        pending_before = session.scalar(
            select(func.count()).where(UsageRecord.status == RecordStatus.PENDING.value)
        )
    assert pending_before
    with pytest.raises(RuntimeError), session_scope(world.factory) as session:
        settle_pending(session, now=world.clock(), limit=100)
        raise RuntimeError("worker killed between capture and acknowledgement")
    with world.session() as session:
        assert (
            session.scalar(
                select(func.count()).where(UsageRecord.status == RecordStatus.PENDING.value)
            )
            == pending_before
        )
    _settle(world)
    _usage_equals_captures_plus_overage(world)


def test_usage_the_hold_no_longer_covers_is_booked_as_overage_and_flags_the_job(
    world: JobsWorld,
) -> None:
    # A job is never metered past its max runtime, so its usage fits its hold; but a
    # hold released early (here by hand, while the job runs) covers none of it.
    late = world.submit(gpus=1, max_runtime_seconds=60, duration=30)
    world.cycle()
    world.clock.advance(10)
    with world.session() as session:
        void_hold(
            session,
            key=f"tests:{late.id}:void",
            hold_key=late.hold_key,
            actor=SYSTEM,
            reason="released early",
            now=world.clock(),
        )
    world.clock.advance(20)
    world.cycle()
    with world.session() as session:
        flagged = session.get(Job, late.id)
        assert flagged is not None
        assert flagged.state == "succeeded"
        assert flagged.charged_micro == 0
        assert flagged.overage_micro == _cost(30) > 0
        overage = session.get(
            Account, system_account_id(session, AccountKind.OVERAGE, Currency.GPU)
        )
        assert overage is not None
        assert overage.debits_posted == flagged.overage_micro
    assert world.available() == 100_000_000
    _usage_equals_captures_plus_overage(world)


def _outside_record(world: JobsWorld, name: str, currency: str) -> UsageRecord:
    return outside_record(world.project_id, name, 1, world.clock(), currency)


def test_a_record_the_ledger_refuses_is_set_aside_and_the_rest_still_settle(
    world: JobsWorld,
) -> None:
    job = world.submit(gpus=1, duration=600)
    world.cycle()
    world.clock.advance(300)
    world.reconcile()
    with world.session() as session:
        # A record whose project has no usage sink in its currency cannot be booked.
        poisoned = _outside_record(world, "poison", "label")
        session.add(poisoned)
        session.flush()
        poisoned_id = poisoned.id
    report = settle_all_pending(world.factory, batch_size=500, clock=world.clock)
    assert report.failed == 1
    assert report.records > 0
    with world.session() as session:
        row = session.get(UsageRecord, poisoned_id)
        assert row is not None
        assert row.status == RecordStatus.FAILED.value
        assert row.error
        pending = session.scalar(
            select(func.count()).where(UsageRecord.status == RecordStatus.PENDING.value)
        )
    assert pending == 0
    assert job.id in report.jobs


def test_a_sweep_goes_on_past_a_refused_batch_in_its_middle(world: JobsWorld) -> None:
    job = world.submit(gpus=1, duration=600)
    world.cycle()
    world.clock.advance(300)
    world.reconcile()
    with world.session() as session:
        outside = [_outside_record(world, f"fine-{n}", "gpu") for n in range(3)]
        # The second batch of two holds the third fine record and this one.
        poisoned = _outside_record(world, "poison", "label")
        session.add_all([*outside, poisoned])
        session.flush()
        poisoned_id = poisoned.id
        job_records = session.scalar(select(func.count()).where(UsageRecord.job_id == job.id))
    assert job_records and job_records >= 2
    report = settle_all_pending(world.factory, batch_size=2, clock=world.clock)
    assert (report.records, report.failed) == (3 + job_records, 1)
    with world.session() as session:
        rows = session.execute(select(UsageRecord.id, UsageRecord.status)).all()
    statuses = {row.id: row.status for row in rows}
    assert statuses.pop(poisoned_id) == RecordStatus.FAILED.value
    assert set(statuses.values()) == {RecordStatus.SETTLED.value}


def test_a_run_settles_the_oldest_pending_record_first_wherever_it_is_in_the_order(
    world: JobsWorld,
) -> None:
    world.submit(gpus=1, duration=600)
    world.cycle()
    world.clock.advance(300)
    world.reconcile()
    with world.session() as session:
        # Outside records come first in settlement's order, but these are newer.
        session.add_all([_outside_record(world, f"newer-{n}", "gpu") for n in range(3)])
        session.flush()
        oldest = session.scalar(
            select(func.min(UsageRecord.id)).where(UsageRecord.status == RecordStatus.PENDING.value)
        )
    report = settle_all_pending(world.factory, batch_size=1, max_batches=1, clock=world.clock)
    assert report.records == 1
    with world.session() as session:
        assert session.get_one(UsageRecord, oldest).status == RecordStatus.SETTLED.value
    settle_all_pending(world.factory, batch_size=2, clock=world.clock)
    _usage_equals_captures_plus_overage(world)


def test_records_settled_out_of_order_charge_the_same(world: JobsWorld) -> None:
    world.submit(gpus=1, duration=900)
    world.cycle()
    world.clock.advance(600)
    world.reconcile()
    with world.session() as session:
        ids = list(
            session.scalars(
                select(UsageRecord.id)
                .where(UsageRecord.status == RecordStatus.PENDING.value)
                .order_by(UsageRecord.id.desc())
            )
        )
    assert len(ids) >= 5
    for record_id in ids:  # newest first
        with world.session() as session:
            settle_one(session, record_id, now=world.clock())
    _usage_equals_captures_plus_overage(world)
