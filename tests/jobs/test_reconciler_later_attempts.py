"""A job's later attempts (after a preemption) on the simulated executor: an executor
reports the latest attempt it knows, so when the current attempt was never launched or
has vanished it reports the one before. That is no news of the current attempt: it is
treated as the executor not knowing the job at all."""

from __future__ import annotations

from collections.abc import Collection

import pytest
from jobs_world import JobsWorld, build_jobs_world, cost
from sqlalchemy.orm import Session, sessionmaker

from credits.jobs.executors.base import ExecutorError, LaunchRequest, Observation
from credits.jobs.models import JobState
from credits.jobs.service import cancel_job
from credits.ledger.queries import get_hold
from credits.ledger.verify import verify_ledger

FIRST_RAN_S = 100


@pytest.fixture
def world(joined_session_factory: sessionmaker[Session]) -> JobsWorld:
    return build_jobs_world(joined_session_factory)


def _preempted_once(world: JobsWorld) -> tuple[int, Observation]:
    """A 1-GPU job that ran FIRST_RAN_S and was preempted, queued again; returns its id
    and what the executor then reports of it (attempt 1, preempted)."""
    job = world.submit(gpus=1, duration=600)
    world.cycle()
    world.clock.advance(FIRST_RAN_S)
    world.executor.preempt(job.id)
    world.reconcile()
    assert world.job(job.id).state == JobState.QUEUED.value
    return job.id, world.executor.observe([job.id])[job.id]


def _hold_left(world: JobsWorld, job_id: int) -> int:
    with world.session() as session:
        hold = get_hold(session, hold_key=world.job(job_id).hold_key)
        assert verify_ledger(session).ok
    return sum(part.remaining for part in hold.parts)


def test_a_later_attempt_cancelled_before_its_launch_ends_cancelled_and_voids_its_hold(
    world: JobsWorld,
) -> None:
    job_id, _ = _preempted_once(world)
    world.schedule()
    assert (world.job(job_id).state, world.job(job_id).attempt) == (JobState.STARTING.value, 2)
    with world.session() as session:
        cancel_job(session, job_id=job_id, actor=world.researcher, now=world.clock())

    report = world.reconcile()

    assert f"{job_id}:starting->cancelled" in report.transitions
    done = world.job(job_id)
    assert done.state == JobState.CANCELLED.value
    assert done.reason == "cancelled before it started"
    assert done.charged_micro == cost(FIRST_RAN_S)  # the first run only
    assert _hold_left(world, job_id) == 0
    assert world.executor.observe([job_id])[job_id].attempt == 1  # never launched


def test_a_later_attempt_the_executor_no_longer_knows_fails_as_lost_and_stops_being_charged(
    world: JobsWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id, first_attempt = _preempted_once(world)
    world.cycle()
    assert (world.job(job_id).state, world.job(job_id).attempt) == (JobState.RUNNING.value, 2)
    world.clock.advance(60)

    # Attempt 2 vanishes (on Kubernetes: its Job deleted, the finalizer stripped); the
    # executor reports the latest attempt it still knows, the first.
    def observe(job_ids: Collection[int]) -> dict[int, Observation]:
        return {job_id: first_attempt} if job_id in job_ids else {}

    monkeypatch.setattr(world.executor, "observe", observe)
    report = world.reconcile()
    for _ in range(5):
        world.clock.advance(60)
        world.reconcile()

    assert f"{job_id}:running->failed" in report.transitions
    done = world.job(job_id)
    assert done.state == JobState.FAILED.value
    assert "no longer knows" in (done.reason or "")
    assert [run.outcome for run in world.runs(job_id)] == ["preempted", "lost"]
    assert done.charged_micro == cost(FIRST_RAN_S + 60)  # until it was noticed, no more
    assert _hold_left(world, job_id) == 0


def test_a_later_attempt_whose_launch_keeps_failing_waits_starting_then_runs(
    world: JobsWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attempt-1 observation of a job whose attempt 2 is not launched yet neither
    fails nor cancels it: it waits, as a first attempt not launched yet does."""
    job_id, _ = _preempted_once(world)
    launch = world.executor.launch
    refusals: list[int] = []

    def flaky_launch(request: LaunchRequest) -> None:
        if len(refusals) < 2:
            refusals.append(request.attempt)
            raise ExecutorError("the API server is away")
        launch(request)

    monkeypatch.setattr(world.executor, "launch", flaky_launch)
    world.cycle()
    world.clock.advance(60)
    world.reconcile()
    assert world.job(job_id).state == JobState.STARTING.value
    world.reconcile()

    assert refusals == [2, 2]
    assert (world.job(job_id).state, world.job(job_id).attempt) == (JobState.RUNNING.value, 2)
