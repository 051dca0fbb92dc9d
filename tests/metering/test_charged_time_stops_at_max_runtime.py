"""Charged time stops at a job's max runtime: the time an executor takes to stop a
job at its deadline (a grace period, the reconciler's next look) is never billed,
and a job is never charged more than its hold, across all its runs."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jobs_world import RATE, JobsWorld, build_jobs_world
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from credits.jobs.executors.base import NodeCapacity, Observation, Phase
from credits.jobs.executors.simulated import SimulatedExecutor
from credits.jobs.models import Job, JobRun, JobState
from credits.ledger.models import Account, AccountKind, Currency
from credits.ledger.queries import system_account_id
from credits.ledger.verify import verify_ledger
from credits.metering.intervals import MICROSECONDS, amount_for, to_us
from credits.metering.job_records import allowance, run_records, with_allowances
from credits.metering.models import UsageRecord
from credits.metering.service import settle_all_pending
from credits.pool.service import hold_amount

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DAY_US = 86_400 * MICROSECONDS


class StopsLate(SimulatedExecutor):
    """A simulated pool that stops a job at its max runtime only after a grace period,
    as the real executors do (the local runner: SIGTERM, then SIGKILL 5 s later;
    Kubernetes: the pod's termination grace): until then it reports the job running,
    and the finish it reports is the deadline plus the grace."""

    def __init__(
        self, nodes: Sequence[NodeCapacity], *, clock: Callable[[], datetime], grace_s: float
    ) -> None:
        super().__init__(nodes, clock=clock)
        self.now = clock
        self.grace = timedelta(seconds=grace_s)

    def observe(self, job_ids: Collection[int]) -> dict[int, Observation]:
        now = self.now()
        return {job_id: self._late(seen, now) for job_id, seen in super().observe(job_ids).items()}

    def _late(self, seen: Observation, now: datetime) -> Observation:
        if seen.phase is not Phase.TIMED_OUT or seen.finished_at is None:
            return seen
        stopped = seen.finished_at + self.grace
        if now < stopped:
            return replace(seen, phase=Phase.RUNNING, finished_at=None, reason=None)
        return replace(seen, finished_at=stopped)


@pytest.fixture
def world(joined_session_factory: sessionmaker[Session]) -> JobsWorld:
    return build_jobs_world(joined_session_factory)


def _stopping_late(world: JobsWorld, grace_s: float) -> None:
    world.executor = StopsLate(world.executor.capacity().nodes, clock=world.clock, grace_s=grace_s)


def _cost(gpu_seconds: int) -> int:
    return -(-gpu_seconds * RATE // 3600)


def _job(world: JobsWorld, job_id: int) -> Job:
    with world.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        session.expunge(job)
        return job


def _runs(world: JobsWorld, job_id: int) -> list[JobRun]:
    with world.session() as session:
        runs = list(
            session.scalars(select(JobRun).where(JobRun.job_id == job_id).order_by(JobRun.attempt))
        )
        session.expunge_all()
        return runs


def _records(world: JobsWorld, job_id: int, attempt: int) -> list[UsageRecord]:
    with world.session() as session:
        records = list(
            session.scalars(
                select(UsageRecord)
                .where(UsageRecord.record_id.like(f"job:{job_id}:{attempt}:%"))
                .order_by(UsageRecord.started_at)
            )
        )
        session.expunge_all()
        return records


def _no_overage_and_ledger_verifies(world: JobsWorld, job: Job) -> None:
    settle_all_pending(world.factory, batch_size=50, clock=world.clock)
    with world.session() as session:
        overage_account = session.get(
            Account, system_account_id(session, AccountKind.OVERAGE, Currency.GPU)
        )
        assert overage_account is not None
        assert overage_account.debits_posted == 0
        records_overage = session.scalar(
            select(func.coalesce(func.sum(UsageRecord.overage_micro), 0)).where(
                UsageRecord.job_id == job.id
            )
        )
        assert records_overage == 0
        report = verify_ledger(session)
    assert report.ok, report
    assert job.overage_micro == 0


def _run_through(world: JobsWorld, seconds: int, step: int = 20) -> None:
    """Moves the clock on in steps, reconciling at each, so running jobs are metered
    interval by interval as they would be in production."""
    for _ in range(seconds // step):
        world.clock.advance(step)
        world.cycle()


def test_timed_out_job_is_charged_at_most_its_hold(world: JobsWorld) -> None:
    _stopping_late(world, grace_s=45)
    job = world.submit(gpus=2, max_runtime_seconds=600, duration=10_000)
    world.cycle()
    # Past the deadline and the grace, metered while it runs and while it is stopped.
    _run_through(world, 600 + 45 + 60)
    done = _job(world, job.id)
    assert done.state == JobState.TIMED_OUT.value
    (run,) = _runs(world, job.id)
    assert run.started_at is not None and run.finished_at is not None
    deadline = run.started_at + timedelta(seconds=600)
    # The run keeps what was observed; only the charge stops at the deadline.
    assert run.finished_at == deadline + timedelta(seconds=45)
    assert done.charged_micro == done.hold_micro == _cost(2 * 600)
    records = _records(world, job.id, 1)
    assert records[-1].ended_at == deadline
    assert sum(record.quantity_micro for record in records) == 2 * 600 * MICROSECONDS
    _no_overage_and_ledger_verifies(world, done)


def test_job_that_runs_exactly_to_its_deadline_is_charged_exactly_its_hold(
    world: JobsWorld,
) -> None:
    # 3 GPUs x 1001 s x 2.5 credits/h is not a whole micro-credit: the hold rounds up,
    # and so does the charge, to the same amount.
    job = world.submit(gpus=3, max_runtime_seconds=1001, duration=1001)
    world.cycle()
    world.clock.advance(1001)
    world.cycle()
    done = _job(world, job.id)
    assert done.state == JobState.SUCCEEDED.value
    assert done.charged_micro == done.hold_micro == _cost(3 * 1001)
    _no_overage_and_ledger_verifies(world, done)


def test_preempted_job_is_charged_at_most_its_hold_across_its_runs(world: JobsWorld) -> None:
    _stopping_late(world, grace_s=30)
    job = world.submit(gpus=1, max_runtime_seconds=600, duration=10_000)
    world.cycle()
    world.clock.advance(100)
    world.executor.preempt(job.id)
    world.reconcile()
    assert _job(world, job.id).state == JobState.QUEUED.value
    world.cycle()
    assert _job(world, job.id).attempt == 2
    # The second attempt may run its own full max runtime on the pool (and then some
    # grace), but the job is charged only the 500 s the first run left of it.
    _run_through(world, 600 + 30 + 60)
    done = _job(world, job.id)
    assert done.state == JobState.TIMED_OUT.value
    first, second = _runs(world, job.id)
    assert first.started_at is not None and second.started_at is not None
    assert _records(world, job.id, 2)[-1].ended_at == second.started_at + timedelta(seconds=500)
    # Charged as one total rounded up once: charging 100 s and 500 s rounded up apart
    # would come to one micro-credit over the hold here.
    assert _cost(100) + _cost(500) == done.hold_micro + 1
    assert done.charged_micro == done.hold_micro == _cost(600)
    _no_overage_and_ledger_verifies(world, done)


def test_job_lost_after_its_deadline_is_charged_at_most_its_hold(world: JobsWorld) -> None:
    job = world.submit(gpus=1, max_runtime_seconds=120, duration=999)
    world.cycle()
    world.clock.advance(60)
    world.cycle()
    # The platform restarts on a pool that forgot the job, and notices long after
    # its deadline: it fails, and is charged no further than its max runtime.
    world.executor = SimulatedExecutor(world.executor.capacity().nodes, clock=world.clock)
    world.clock.advance(600)
    world.reconcile()
    done = _job(world, job.id)
    assert done.state == JobState.FAILED.value
    assert done.charged_micro == done.hold_micro == _cost(120)
    _no_overage_and_ledger_verifies(world, done)


# Properties: the records of any job's runs, however they are observed.


def _job_row(gpus: int, max_runtime_s: int, rate: int) -> Job:
    return Job(
        id=7,
        project_id=3,
        gpus=gpus,
        max_runtime_seconds=max_runtime_s,
        micro_credits_per_gpu_hour=rate,
        rate_version_id=1,
    )


def _hold(job: Job) -> int:
    """What submitting the job would hold: ceil(GPUs x max runtime x rate)."""
    return hold_amount(
        gpus=job.gpus,
        max_runtime_seconds=job.max_runtime_seconds,
        micro_credits_per_gpu_hour=job.micro_credits_per_gpu_hour,
    )


def _run_row(attempt: int, gpus: int, start: datetime, finish: datetime | None) -> JobRun:
    return JobRun(job_id=7, attempt=attempt, gpus=gpus, started_at=start, finished_at=finish)


@settings(max_examples=200, deadline=None)
@given(
    gpus=st.integers(min_value=1, max_value=64),
    # Up to six hours, so that one-minute records stay a few hundred per run.
    max_runtime_s=st.integers(min_value=1, max_value=6 * 3600),
    # How far the observed finish lies past the deadline: before it, on it, or a grace after.
    overrun_us=st.integers(min_value=-3 * DAY_US, max_value=3600 * MICROSECONDS),
    rate=st.integers(min_value=1, max_value=50_000_000),
    interval_s=st.sampled_from([7, 60, 300, 3600]),
    # When the executor was seen running (it reports running until it has stopped)
    # and how long after that the reconciler metered.
    looks=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=3 * DAY_US),
            st.integers(min_value=0, max_value=600 * MICROSECONDS),
        ),
        max_size=6,
    ),
)
def test_a_runs_charge_never_exceeds_its_hold_and_is_uncapped_before_the_deadline(
    gpus: int,
    max_runtime_s: int,
    overrun_us: int,
    rate: int,
    interval_s: int,
    looks: list[tuple[int, int]],
) -> None:
    max_runtime_us = max_runtime_s * MICROSECONDS
    length = max(0, max_runtime_us + overrun_us)
    finish = T0 + timedelta(microseconds=length)
    interval_us = interval_s * MICROSECONDS
    job = _job_row(gpus, max_runtime_s, rate)
    whole = allowance(max_runtime_s, [])
    run = _run_row(1, gpus, T0, None)
    records = []
    for look, lag in sorted((min(look, length), lag) for look, lag in looks):
        run.seen_running_at = T0 + timedelta(microseconds=look)
        records += run_records(run, job, to_us(run.seen_running_at) + lag, interval_us, whole)
    run.finished_at = finish
    records += run_records(run, job, to_us(finish), interval_us, whole)

    charged = sum(record["amount_micro"] for record in records)
    assert charged <= _hold(job)
    assert charged == amount_for(gpus * min(length, max_runtime_us), rate)
    if length <= max_runtime_us:
        assert charged == amount_for(gpus * length, rate)
    else:
        assert charged == _hold(job)
    assert all(record["ended_at"] <= T0 + timedelta(seconds=max_runtime_s) for record in records)
    # However often it was metered on the way, the same records as metering it once.
    once = run_records(_run_row(1, gpus, T0, finish), job, to_us(finish), interval_us, whole)
    assert records == once


@settings(max_examples=200, deadline=None)
@given(
    gpus=st.integers(min_value=1, max_value=16),
    max_runtime_s=st.integers(min_value=1, max_value=86_400),
    rate=st.integers(min_value=1, max_value=50_000_000),
    interval_s=st.sampled_from([1, 7, 60, 300, 3600]),
    # Each run: the wait before it (queued again after a preemption), and its length.
    spans=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=DAY_US),
            st.integers(min_value=0, max_value=DAY_US),
        ),
        min_size=1,
        max_size=5,
    ),
    looks=st.lists(st.integers(min_value=0, max_value=DAY_US), max_size=4),
)
def test_a_jobs_runs_together_are_charged_at_most_its_hold(
    gpus: int,
    max_runtime_s: int,
    rate: int,
    interval_s: int,
    spans: list[tuple[int, int]],
    looks: list[int],
) -> None:
    max_runtime_us = max_runtime_s * MICROSECONDS
    interval_us = interval_s * MICROSECONDS
    job = _job_row(gpus, max_runtime_s, rate)
    runs: list[JobRun] = []
    cursor = T0
    for attempt, (wait, length) in enumerate(spans, start=1):
        start = cursor + timedelta(microseconds=wait)
        cursor = start + timedelta(microseconds=length)
        runs.append(_run_row(attempt, gpus, start, cursor))
    total = sum(length for _, length in spans)

    # The last run metered while it runs (as the reconciler does, from what the
    # earlier runs left), then every run at settlement (as meter_job does).
    last = runs[-1]
    assert last.started_at is not None and last.finished_at is not None
    finish = last.finished_at
    last.finished_at = None
    records = []
    left = allowance(max_runtime_s, runs[:-1])
    for look in sorted(looks):
        last.seen_running_at = min(last.started_at + timedelta(microseconds=look), finish)
        records += run_records(last, job, to_us(last.seen_running_at), interval_us, left)
    last.finished_at = finish
    for run, row_job, run_left in with_allowances(job, runs):
        records += run_records(run, row_job, to_us(finish), interval_us, run_left)

    charged = sum(record["amount_micro"] for record in records)
    assert charged <= _hold(job)
    assert charged == amount_for(gpus * min(total, max_runtime_us), rate)
    if total <= max_runtime_us:
        assert charged == amount_for(gpus * total, rate)
    assert sum(record["quantity_micro"] for record in records) == gpus * min(total, max_runtime_us)
    assert len({record["record_id"] for record in records}) == len(records)


@settings(max_examples=200, deadline=None)
@given(
    intervals_s=st.lists(st.sampled_from([7, 30, 45, 50, 60, 300]), min_size=1, max_size=6),
    step_s=st.integers(min_value=1, max_value=900),
    final_interval_s=st.sampled_from([30, 60, 300]),
)
def test_record_ids_stay_unique_when_the_interval_changes_between_passes(
    intervals_s: list[int], step_s: int, final_interval_s: int
) -> None:
    """A setting changed while jobs run, or a cancel settling on another grid, must
    not name two records alike: the second would break the records' unique key."""
    job = _job_row(2, 86_400, 3_600_000)
    whole = allowance(86_400, [])
    run = _run_row(1, 2, T0, None)
    records = []
    for look, interval_s in enumerate(intervals_s, start=1):
        run.seen_running_at = T0 + timedelta(seconds=step_s * look)
        now_us = to_us(run.seen_running_at)
        records += run_records(run, job, now_us, interval_s * MICROSECONDS, whole)
    run.finished_at = T0 + timedelta(seconds=step_s * (len(intervals_s) + 1) + 1)
    records += run_records(run, job, to_us(run.finished_at), final_interval_s * MICROSECONDS, whole)

    ids = [record["record_id"] for record in records]
    assert len(ids) == len(set(ids))
    charged_us = sum(record["quantity_micro"] for record in records)
    assert charged_us == 2 * (to_us(run.finished_at) - to_us(T0))
