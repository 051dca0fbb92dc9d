"""Jobs from submission to settlement on the simulated executor, through the services."""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

import pytest
from jobs_world import CAP, RATE, SYSTEM, JobsWorld, build_jobs_world, cost
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from credits.audit.models import AuditEvent
from credits.grants import project_archive, projects
from credits.jobs import reconciler
from credits.jobs.errors import (
    JobNeverFits,
    JobStateConflict,
    ProjectCannotSubmit,
    RuntimeOverCap,
    UnknownFlavour,
)
from credits.jobs.exclusive import exclusive
from credits.jobs.executors.base import ExecutorError, NodeCapacity, Observation
from credits.jobs.executors.simulated import SimulatedExecutor
from credits.jobs.models import Job, JobEvent, JobRun, JobState
from credits.jobs.queries import get_job_detail
from credits.jobs.reconciler import reconcile
from credits.jobs.service import cancel_job, set_project_gpu_limit
from credits.ledger import queries as ledger_queries
from credits.ledger import service as ledger
from credits.ledger.errors import IdempotencyKeyReused, InsufficientCredits
from credits.ledger.models import AccountKind, Currency
from credits.ledger.queries import get_hold, system_account_id
from credits.ledger.schemas import AccountOut
from credits.ledger.verify import verify_ledger
from credits.metering import job_records
from credits.metering.models import UsageRecord
from credits.pool import service as pool
from credits.pool.errors import NoRateInForce
from credits.reports.activity import _load_holds as load_job_holds
from credits.reports.activity import jobs_drawing_on


@pytest.fixture
def world(joined_session_factory: sessionmaker[Session]) -> JobsWorld:
    return build_jobs_world(joined_session_factory)


def _states(world: JobsWorld, job_id: int) -> list[str]:
    with world.session() as session:
        return list(
            session.scalars(
                select(JobEvent.to_state).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
            )
        )


def _hold_left(world: JobsWorld, hold_key: str) -> int:
    with world.session() as session:
        hold = get_hold(session, hold_key=hold_key)
    return sum(part.remaining for part in hold.parts)


def _ledger_ok(world: JobsWorld) -> None:
    with world.session() as session:
        report = verify_ledger(session)
    assert report.ok, report


def test_submission_holds_gpus_times_max_runtime_times_rate(world: JobsWorld) -> None:
    before = world.available()
    job = world.submit(gpus=2, max_runtime_seconds=1800)
    assert job.state is JobState.QUEUED
    assert job.hold_micro == 2 * RATE // 2  # 2 GPUs x half an hour x 2.5 credits
    assert world.available() == before - job.hold_micro
    assert _hold_left(world, job.hold_key) == job.hold_micro
    assert _states(world, job.id) == ["queued"]


def test_hold_rounds_up_to_a_whole_micro_credit(world: JobsWorld) -> None:
    job = world.submit(gpus=1, max_runtime_seconds=7)
    # 7 s x 2,500,000 / 3600 = 4861.1 micro-credits
    assert job.hold_micro == 4862


def test_job_keeps_the_rate_version_it_was_held_at(world: JobsWorld) -> None:
    job = world.submit()
    detail_rate = job.rate_version_id
    assert job.micro_credits_per_gpu_hour == RATE
    with world.session() as session:
        assert session.get(Job, job.id).rate_version_id == detail_rate  # type: ignore[union-attr]


def test_hold_larger_than_available_is_refused_with_amounts_and_nothing_held(
    world: JobsWorld,
) -> None:
    before = world.available()
    with pytest.raises(InsufficientCredits) as refused:
        world.submit(gpus=8, max_runtime_seconds=6 * 86400)
    assert refused.value.extra["required"] == 8 * 6 * 24 * RATE
    assert refused.value.extra["available"] == before
    assert world.available() == before
    with world.session() as session:
        assert session.scalar(select(Job.id)) is None


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"flavour": "h100-nope"}, UnknownFlavour),
        ({"gpus": 12}, JobNeverFits),  # over a node, not whole nodes
        ({"gpus": 24}, JobNeverFits),  # whole nodes, more than the pool has
        ({"max_runtime_seconds": CAP + 1}, RuntimeOverCap),
    ],
)
def test_request_that_cannot_be_admitted_is_refused_and_holds_nothing(
    world: JobsWorld, overrides: dict[str, object], error: type[Exception]
) -> None:
    before = world.available()
    with pytest.raises(error):
        world.submit(**overrides)
    assert world.available() == before


def test_gang_of_whole_nodes_is_admitted(world: JobsWorld) -> None:
    assert world.submit(gpus=16).state is JobState.QUEUED


def test_suspended_project_cannot_submit(world: JobsWorld) -> None:
    with world.session() as session:
        projects.suspend_project(
            session, project_id=world.project_id, actor=world.ops, reason="audit"
        )
    with pytest.raises(ProjectCannotSubmit):
        world.submit()


def test_flavour_without_a_rate_is_refused(world: JobsWorld) -> None:
    with world.session() as session:
        pool.add_flavour(
            session,
            name="h100",
            node_label_value="H100",
            gpu_memory_gb=80,
            gpus_per_node=8,
            actor=world.ops,
        )
    world.executor = type(world.executor)(
        [*world.executor.capacity().nodes, *_h100_nodes()], clock=world.clock
    )
    with pytest.raises(NoRateInForce):
        world.submit(flavour="h100")


def _h100_nodes() -> list[NodeCapacity]:
    return [NodeCapacity(name="h100-0", flavour="h100", gpus=8)]


def test_same_idempotency_key_returns_the_first_job(world: JobsWorld) -> None:
    first = world.submit(key="k1")
    again = world.submit(key="k1")
    assert again.id == first.id
    assert again.replayed
    assert world.available() == 100_000_000 - first.hold_micro


def test_idempotency_key_reused_for_another_spec_is_refused(world: JobsWorld) -> None:
    world.submit(key="k1")
    with pytest.raises(IdempotencyKeyReused):
        world.submit(key="k1", gpus=4)


def test_job_runs_to_success_and_pays_only_for_what_ran(world: JobsWorld) -> None:
    job = world.submit(gpus=2, max_runtime_seconds=3600, duration=600)
    world.cycle()
    assert world.job(job.id).state == JobState.RUNNING.value
    world.clock.advance(600)
    world.cycle()
    done = world.job(job.id)
    assert done.state == JobState.SUCCEEDED.value
    assert done.exit_code == 0
    assert done.charged_micro == cost(2 * 600)
    assert _hold_left(world, job.hold_key) == 0
    assert world.available() == 100_000_000 - done.charged_micro
    assert _states(world, job.id) == ["queued", "starting", "running", "succeeded"]
    _ledger_ok(world)


def test_detail_shows_events_runs_and_charges(world: JobsWorld) -> None:
    job = world.submit(duration=60)
    world.cycle()
    world.clock.advance(60)
    world.cycle()
    with world.session() as session:
        detail = get_job_detail(session, world.researcher, job.id)
    assert [event.to_state for event in detail.events][-1] is JobState.SUCCEEDED
    assert len(detail.runs) == 1
    assert detail.runs[0].started_at == detail.started_at
    assert detail.runs[0].finished_at - detail.runs[0].started_at == timedelta(seconds=60)
    assert detail.charged_micro == cost(2 * 60)
    assert detail.spec.name == "train"


def test_cancel_while_queued_voids_the_whole_hold(world: JobsWorld) -> None:
    job = world.submit()
    with world.session() as session:
        out = cancel_job(session, job_id=job.id, actor=world.researcher, now=world.clock())
    assert out.state is JobState.CANCELLED
    assert out.charged_micro == 0
    assert _hold_left(world, job.hold_key) == 0
    assert world.available() == 100_000_000
    _ledger_ok(world)


def test_cancel_while_running_charges_the_time_it_ran(world: JobsWorld) -> None:
    job = world.submit(gpus=1, duration=3000)
    world.cycle()
    world.clock.advance(300)
    with world.session() as session:
        out = cancel_job(session, job_id=job.id, actor=world.researcher, now=world.clock())
    assert out.state is JobState.RUNNING
    assert out.cancel_requested_at is not None
    world.cycle()
    done = world.job(job.id)
    assert done.state == JobState.CANCELLED.value
    assert done.charged_micro == cost(300)
    assert _hold_left(world, job.hold_key) == 0
    _ledger_ok(world)


def test_archiving_the_project_cancels_its_queued_jobs_and_stops_its_running_ones(
    world: JobsWorld,
) -> None:
    running = world.submit(gpus=8, duration=3000)
    also_running = world.submit(gpus=8, duration=3000)
    world.cycle()
    queued = world.submit(gpus=8, duration=3000)
    world.cycle()
    world.clock.advance(300)
    assert world.job(queued.id).state == JobState.QUEUED.value
    with world.session() as session:
        project_archive.archive_project(
            session, project_id=world.project_id, actor=world.researcher, now=world.clock()
        )
    cancelled = world.job(queued.id)
    assert cancelled.state == JobState.CANCELLED.value
    assert cancelled.reason == (
        f"cancelled: project {world.project_id} archived by {world.researcher.label} while queued"
    )
    assert _hold_left(world, queued.hold_key) == 0
    assert world.job(running.id).cancel_requested_at == world.clock()
    world.cycle()
    for job in (running, also_running):
        stopped = world.job(job.id)
        assert stopped.state == JobState.CANCELLED.value
        assert stopped.charged_micro == cost(8 * 300)
        assert _hold_left(world, job.hold_key) == 0
    with world.session() as session:
        archived = session.scalars(
            select(AuditEvent.canonical_json).where(AuditEvent.event_type == "project.archived")
        ).one()
    assert json.loads(archived)["data"]["jobs"] == [running.id, also_running.id, queued.id]
    _ledger_ok(world)


def test_cancel_of_a_finished_job_is_a_state_conflict(world: JobsWorld) -> None:
    job = world.submit()
    with world.session() as session:
        cancel_job(session, job_id=job.id, actor=world.researcher, now=world.clock())
    with pytest.raises(JobStateConflict), world.session() as session:
        cancel_job(session, job_id=job.id, actor=world.researcher, now=world.clock())


def test_job_over_its_max_runtime_is_timed_out_and_charged_the_max(world: JobsWorld) -> None:
    job = world.submit(gpus=1, max_runtime_seconds=120, duration=999)
    world.cycle()
    world.clock.advance(200)
    world.cycle()
    done = world.job(job.id)
    assert done.state == JobState.TIMED_OUT.value
    assert done.charged_micro == done.hold_micro == cost(120)


def test_failed_job_records_its_exit_code(world: JobsWorld) -> None:
    job = world.submit(labels={"credits.dev/simulated-exit-code": "3"}, duration=10)
    world.cycle()
    world.clock.advance(10)
    world.cycle()
    done = world.job(job.id)
    assert done.state == JobState.FAILED.value
    assert done.exit_code == 3


def test_preempted_job_is_queued_again_keeping_its_hold_and_pays_for_both_runs(
    world: JobsWorld,
) -> None:
    job = world.submit(gpus=1, duration=600)
    world.cycle()
    world.clock.advance(100)
    world.executor.preempt(job.id)
    world.reconcile()
    requeued = world.job(job.id)
    assert requeued.state == JobState.QUEUED.value
    assert _hold_left(world, job.hold_key) == job.hold_micro
    world.cycle()
    assert world.job(job.id).attempt == 2
    world.clock.advance(600)
    world.cycle()
    done = world.job(job.id)
    assert done.state == JobState.SUCCEEDED.value
    # Both runs are charged, their total rounded up once.
    assert done.charged_micro == cost(100 + 600)
    assert _states(world, job.id) == [
        "queued",
        "starting",
        "running",
        "queued",
        "starting",
        "running",
        "succeeded",
    ]
    _ledger_ok(world)


def test_job_the_executor_lost_fails_and_is_charged_until_noticed(world: JobsWorld) -> None:
    job = world.submit(gpus=1, duration=600)
    world.cycle()
    world.clock.advance(120)
    # A new, empty pool: the platform restarted on a simulated executor that forgot it.
    world.executor = type(world.executor)(world.executor.capacity().nodes, clock=world.clock)
    world.reconcile()
    done = world.job(job.id)
    assert done.state == JobState.FAILED.value
    assert "no longer knows" in (done.reason or "")
    assert done.charged_micro == cost(120)


def test_jobs_wait_for_capacity_and_start_when_it_frees(world: JobsWorld) -> None:
    first = world.submit(gpus=16, duration=100)
    second = world.submit(gpus=8, duration=100)
    world.cycle()
    assert world.job(first.id).state == JobState.RUNNING.value
    assert world.job(second.id).state == JobState.QUEUED.value
    world.clock.advance(100)
    world.cycle()
    assert world.job(first.id).state == JobState.SUCCEEDED.value
    assert world.job(second.id).state == JobState.RUNNING.value


def test_suspended_project_jobs_stay_queued(world: JobsWorld) -> None:
    job = world.submit()
    with world.session() as session:
        projects.suspend_project(
            session, project_id=world.project_id, actor=world.ops, reason="audit"
        )
    world.cycle()
    assert world.job(job.id).state == JobState.QUEUED.value


class _ReleaseRecorder:
    """Wraps the simulated pool to see when, and after what, jobs are released."""

    def __init__(self, world: JobsWorld, *, fail_first: bool = False) -> None:
        self.inner = world.executor
        self.released: list[tuple[int, bool]] = []
        self.fail_first = fail_first
        self.world = world

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def release(self, job_id: int) -> None:
        if self.fail_first:
            self.fail_first = False
            raise ExecutorError("API server unavailable")
        self.released.append((job_id, self.world.job(job_id).settled_at is not None))


def test_executor_releases_a_job_only_after_it_is_settled_and_retries_a_failed_release(
    world: JobsWorld,
) -> None:
    job = world.submit(duration=10)
    recorder = _ReleaseRecorder(world, fail_first=True)
    world.executor = recorder  # type: ignore[assignment]
    world.cycle()
    world.clock.advance(10)
    world.reconcile()
    assert recorder.released == []
    assert world.job(job.id).settled_at is not None
    assert world.job(job.id).released_at is None
    world.reconcile()
    assert recorder.released == [(job.id, True)]
    assert world.job(job.id).released_at is not None
    world.reconcile()
    assert recorder.released == [(job.id, True)]


class _NeverStarts(_ReleaseRecorder):
    """A pool that accepts launches and never runs them (no capacity, a broken node)."""

    def observe(self, job_ids: object) -> dict[int, object]:
        del job_ids
        return {}

    def launch(self, request: object) -> None:
        del request


def test_a_job_that_never_starts_is_given_up_after_the_start_timeout(world: JobsWorld) -> None:
    job = world.submit(duration=10)
    world.executor = _NeverStarts(world)  # type: ignore[assignment]
    world.schedule()
    world.reconcile()
    assert world.job(job.id).state == JobState.STARTING.value
    world.clock.advance(3601)
    report = reconcile(world.factory, world.executor, clock=world.clock, start_timeout_s=3600)
    done = world.job(job.id)
    assert f"{job.id}:starting->failed" in report.transitions
    assert done.state == JobState.FAILED.value
    assert done.reason == "did not start within 3600 s"
    assert done.charged_micro == 0
    assert _hold_left(world, job.hold_key) == 0


def test_a_job_running_after_a_reconciler_outage_is_not_given_up_as_a_slow_start(
    world: JobsWorld,
) -> None:
    world.executor = SimulatedExecutor(
        world.executor.capacity().nodes, clock=world.clock, startup_s=300
    )
    job = world.submit(max_runtime_seconds=4 * 3600, duration=3 * 3600)
    world.schedule()
    world.reconcile()
    assert world.job(job.id).state == JobState.STARTING.value
    world.clock.advance(3700)  # no reconcile for an hour; the job started 3,400 s ago
    report = reconcile(world.factory, world.executor, clock=world.clock, start_timeout_s=3600)
    running = world.job(job.id)
    assert running.state == JobState.RUNNING.value, report.transitions
    world.clock.advance(3 * 3600)
    world.reconcile()
    assert world.job(job.id).state == JobState.SUCCEEDED.value


class _CannotReadOneJob(_ReleaseRecorder):
    """An executor with a fault of its own (not an ExecutorError) for one job."""

    def __init__(self, world: JobsWorld, broken: int) -> None:
        super().__init__(world)
        self.broken = broken

    def observe(self, job_ids: Collection[int]) -> dict[int, Observation]:
        if self.broken in job_ids:
            raise ValueError("cannot convert float NaN to integer")
        return self.inner.observe(job_ids)


def test_an_executor_fault_on_one_job_never_stops_the_others_being_reconciled(
    world: JobsWorld,
) -> None:
    good = world.submit(name="good", duration=60)
    broken = world.submit(name="broken", duration=60)
    world.cycle()
    world.executor = _CannotReadOneJob(world, broken.id)  # type: ignore[assignment]
    world.clock.advance(120)
    report = world.reconcile()
    assert world.job(good.id).state == JobState.SUCCEEDED.value
    assert world.job(good.id).settled_at is not None
    assert world.job(broken.id).state == JobState.RUNNING.value
    assert any(error.startswith(f"{broken.id}: observe: ValueError") for error in report.errors)


def test_a_simulated_duration_that_is_not_a_number_fails_only_that_job(world: JobsWorld) -> None:
    good = world.submit(name="good", duration=60)
    world.cycle()
    bad = world.submit(name="bad", labels={"credits.dev/simulated-duration-s": "nan"})
    world.schedule()
    world.reconcile()
    world.clock.advance(120)
    world.reconcile()
    assert world.job(good.id).state == JobState.SUCCEEDED.value
    failed = world.job(bad.id)
    assert failed.state == JobState.FAILED.value and "finite number" in (failed.reason or "")
    assert failed.charged_micro == 0


def _allocation(
    session: Session, world: JobsWorld, code: str, amount: int, *, expires_at: datetime
) -> AccountOut:
    """Another GPU allocation of the world's project, funded with ``amount`` now."""
    account = ledger.open_account(
        session,
        code=code,
        currency=Currency.GPU,
        project_id=world.project_id,
        expires_at=expires_at,
        actor=SYSTEM,
    )
    ledger.grant(
        session,
        key=f"fund-{code}",
        from_account_id=system_account_id(session, AccountKind.SOURCE, Currency.GPU),
        to_account_id=account.id,
        amount=amount,
        actor=SYSTEM,
        now=world.clock(),
    )
    return account


CREDIT = 1_000_000
RICH = 10_000 * CREDIT  # credits for a pool-filling job of three days


def _queued_when_the_allocation_ends(world: JobsWorld) -> int:
    """A 2-GPU job queued behind a pool-filling one the day before the world's
    allocation ends; the clock is then half a day past its end, the blocker still
    running. Returns the queued job's id."""
    world.clock.advance(364 * 86400)
    world.submit(name="blocker", gpus=16, max_runtime_seconds=3 * 86400, duration=2 * 86400)
    world.cycle()
    waiting = world.submit(name="waiting", gpus=2, max_runtime_seconds=3600, duration=3600)
    world.cycle()
    assert world.job(waiting.id).state == JobState.QUEUED.value
    world.clock.advance(1.5 * 86400)
    with world.session() as session:
        ledger.expire_account(session, account_id=world.account_id, actor=SYSTEM, now=world.clock())
    return waiting.id


def test_a_job_queued_past_its_allocations_end_is_held_again_from_a_live_one(
    joined_session_factory: sessionmaker[Session],
) -> None:
    world = build_jobs_world(joined_session_factory, credits_micro=RICH)
    with world.session() as session:
        later = _allocation(
            session,
            world,
            "jobs-allocation-later",
            RICH,
            expires_at=world.clock() + timedelta(days=800),
        )
    waiting = _queued_when_the_allocation_ends(world)
    world.schedule()
    moved = world.job(waiting)
    assert moved.state == JobState.QUEUED.value and moved.hold_key == f"job:{waiting}:hold:2"
    with world.session() as session:
        assert {part.account_id for part in get_hold(session, hold_key=moved.hold_key).parts} == {
            later.id
        }
        assert get_hold(session, hold_key=f"job:{waiting}:hold").remaining == 0
    world.clock.advance(0.5 * 86400 + 60)
    world.cycle()
    world.clock.advance(3600)
    world.cycle()
    done = world.job(waiting)
    assert done.state == JobState.SUCCEEDED.value and done.charged_micro == cost(2 * 3600)
    with world.session() as session:
        assert ledger_queries.get_account(session, account_id=later.id).debits_posted == cost(
            2 * 3600
        )
    _ledger_ok(world)


def test_a_job_queued_past_its_allocations_end_with_nothing_else_to_hold_is_cancelled(
    joined_session_factory: sessionmaker[Session],
) -> None:
    world = build_jobs_world(joined_session_factory, credits_micro=RICH)
    waiting = _queued_when_the_allocation_ends(world)
    world.schedule()
    cancelled = world.job(waiting)
    assert cancelled.state == JobState.CANCELLED.value
    assert "its allocation ended before it started" in (cancelled.reason or "")
    assert cancelled.charged_micro == 0 and cancelled.settled_at is not None
    assert _hold_left(world, cancelled.hold_key) == 0
    _ledger_ok(world)


def test_usage_run_before_an_allocation_ended_is_charged_to_it_when_the_hold_moves(
    world: JobsWorld,
) -> None:
    ends = world.clock() + timedelta(hours=1)
    with world.session() as session:
        short = _allocation(session, world, "jobs-allocation-short", 10 * CAP, expires_at=ends)
    job = world.submit(max_runtime_seconds=3600, duration=1800)
    world.cycle()
    world.clock.advance(600)
    world.cycle()  # ten minutes metered, not yet settled
    world.executor.preempt(job.id)
    world.reconcile()
    assert world.job(job.id).state == JobState.QUEUED.value
    world.clock.advance(3600)  # the short allocation ended while the job was queued

    world.schedule()

    with world.session() as session:
        paid = ledger_queries.get_account(session, account_id=short.id).debits_posted
        later = ledger_queries.get_account(session, account_id=world.account_id).debits_posted
    assert paid == cost(2 * 600) and later == 0  # two GPUs for ten minutes
    assert world.job(job.id).hold_key == f"job:{job.id}:hold:2"
    _ledger_ok(world)
    world.clock.advance(60)
    world.cycle()
    world.clock.advance(1800)
    world.cycle()
    # Reports find the job through either hold, and what each allocation paid.
    with world.session() as session:
        drawing = session.scalars(select(Job.id).where(jobs_drawing_on([short.id]))).all()
        (hold,) = load_job_holds(session, [job.id]).values()
    assert drawing == [job.id]
    assert hold.first_account == world.account_id
    assert hold.captured[short.id] == cost(2 * 600)
    assert hold.captured[world.account_id] > 0


def test_a_hold_split_over_an_ended_and_a_live_allocation_moves_whole_to_the_live_one(
    joined_session_factory: sessionmaker[Session],
) -> None:
    world = build_jobs_world(joined_session_factory, credits_micro=6 * CREDIT)
    with world.session() as session:
        _allocation(
            session,
            world,
            "jobs-allocation-short",
            2 * CREDIT,
            expires_at=world.clock() + timedelta(hours=1),
        )
        set_project_gpu_limit(  # nothing starts: the job stays queued
            session, project_id=world.project_id, max_concurrent_gpus=0, actor=world.ops
        )
    job = world.submit(gpus=2, max_runtime_seconds=3600)  # 5 credits: 2 short, 3 long
    world.clock.advance(2 * 3600)

    world.schedule()

    moved = world.job(job.id)
    assert moved.state == JobState.QUEUED.value and moved.hold_key == f"job:{job.id}:hold:2"
    with world.session() as session:
        parts = get_hold(session, hold_key=moved.hold_key).parts
    assert [(part.account_id, part.amount) for part in parts] == [(world.account_id, 5 * CREDIT)]
    _ledger_ok(world)


def test_one_job_that_cannot_be_settled_does_not_stop_the_others(
    world: JobsWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = world.submit(duration=10)
    second = world.submit(name="second", duration=10)
    world.cycle()
    world.clock.advance(10)
    real_settle = reconciler.settle_job

    def flaky(session: Session, job: Job, **kwargs: object) -> None:
        if job.id == first.id:
            raise RuntimeError("disk on fire")
        real_settle(session, job, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(reconciler, "settle_job", flaky)
    report = world.reconcile()
    assert report.settled == [second.id]
    assert report.errors == [f"{first.id}: RuntimeError: disk on fire"]
    assert world.job(first.id).settled_at is None
    monkeypatch.setattr(reconciler, "settle_job", real_settle)
    assert world.reconcile().settled == [first.id]


def test_one_job_that_cannot_be_metered_does_not_stop_the_others(
    world: JobsWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    stuck = world.submit(duration=3600)
    running = world.submit(name="running", duration=3600)
    ending = world.submit(name="ending", duration=30)
    world.cycle()
    world.clock.advance(120)
    real_records = job_records.run_records

    def flaky(run: JobRun, job: Job, *args: Any) -> list[dict[str, Any]]:
        if job.id == stuck.id:
            raise RuntimeError("a row the database refuses")
        return real_records(run, job, *args)

    monkeypatch.setattr(job_records, "run_records", flaky)
    report = world.reconcile()

    assert report.errors == [f"{stuck.id}: RuntimeError: a row the database refuses"]
    assert report.settled == [ending.id]
    with world.session() as session:
        metered = set(session.scalars(select(UsageRecord.job_id).distinct()))
    assert metered == {running.id, ending.id}
    monkeypatch.setattr(job_records, "run_records", real_records)
    assert world.reconcile().errors == []
    with world.session() as session:
        assert session.scalar(select(UsageRecord.id).where(UsageRecord.job_id == stuck.id))


def test_a_second_reconcile_while_one_runs_does_nothing(world: JobsWorld) -> None:
    world.submit(duration=10)
    world.schedule()
    with exclusive(world.factory, reconciler.RECONCILE_LOCK_KEY) as held:
        assert held
        report = world.reconcile()
    assert report.skipped
    assert report.launched == []
    assert world.reconcile().launched
