"""The reconciler killed between any two of its transactions, then run again,
reaches the state an uninterrupted run reaches.

Each run gets its own SQLite file (a copy of one migrated template) and its
own simulated pool, which, like a real cluster, keeps whatever the killed
reconciler already launched or cancelled.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import migrated_sqlite_url
from jobs_world import JobsWorld, build_jobs_world
from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.db import make_engine, make_session_factory
from credits.jobs.models import Job, JobEvent, JobRun
from credits.jobs.reconciler import RECONCILE_STEPS, Reconciliation, reconcile
from credits.jobs.schemas import ReconcileOut
from credits.jobs.service import cancel_job
from credits.ledger.models import Account


class Killed(BaseException):
    """The reconciler's process died (not an Exception: nothing in it may catch it)."""


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("reconciler-template")
    migrated_sqlite_url(directory)
    return directory / "credits.db"


@pytest.fixture
def fresh_world(template: Path, tmp_path: Path) -> Iterator[Callable[[], JobsWorld]]:
    engines = []

    def make() -> JobsWorld:
        path = tmp_path / f"run-{len(engines)}.db"
        shutil.copy(template, path)
        engine = make_engine(f"sqlite:///{path}")
        engines.append(engine)
        return _scenario(build_jobs_world(make_session_factory(engine)))

    yield make
    for engine in engines:
        engine.dispose()


def _scenario(world: JobsWorld) -> JobsWorld:
    """Work of every kind for one reconcile: a launch, a finish, a cancel, a preemption."""
    finishing = world.submit(gpus=2, duration=100)
    cancelling = world.submit(gpus=2, duration=5000)
    preempted = world.submit(gpus=2, duration=5000)
    world.cycle()
    world.submit(gpus=2, duration=50)  # will be starting, not launched, when the crash comes
    world.schedule()
    world.clock.advance(100)
    with world.session() as session:
        cancel_job(session, job_id=cancelling.id, actor=world.researcher, now=world.clock())
    world.executor.preempt(preempted.id)
    del finishing
    return world


def _snapshot(world: JobsWorld) -> dict[str, Any]:
    with world.session() as session:
        jobs = [
            (
                j.id,
                j.state,
                j.attempt,
                j.charged_micro,
                j.exit_code,
                j.reason,
                j.settled_at,
                j.released_at,
            )
            for j in session.scalars(select(Job).order_by(Job.id))
        ]
        runs = [
            (r.job_id, r.attempt, r.started_at, r.finished_at, r.outcome)
            for r in session.scalars(select(JobRun).order_by(JobRun.job_id, JobRun.attempt))
        ]
        events = [
            (e.job_id, e.from_state, e.to_state, e.reason)
            for e in session.scalars(select(JobEvent).order_by(JobEvent.job_id, JobEvent.id))
        ]
        accounts = [
            (a.code, a.debits_pending, a.debits_posted, a.credits_posted)
            for a in session.scalars(select(Account).order_by(Account.code))
        ]
    return {"jobs": jobs, "runs": runs, "events": events, "accounts": accounts}


def _killing_factory(factory: Callable[[], Session], survive: int) -> Callable[[], Session]:
    opened = 0

    def open_session() -> Session:
        nonlocal opened
        opened += 1
        if opened > survive:
            raise Killed(f"killed before transaction {opened}")
        return factory()

    return open_session


@pytest.mark.parametrize("steps_done", range(len(RECONCILE_STEPS)))
def test_reconciler_killed_between_steps_then_rerun_matches_an_uninterrupted_run(
    fresh_world: Callable[[], JobsWorld], steps_done: int
) -> None:
    expected = fresh_world()
    expected.reconcile()
    world = fresh_world()
    report = ReconcileOut()
    for step in RECONCILE_STEPS[:steps_done]:
        step(Reconciliation(world.factory, world.executor, world.clock), report)
    world.reconcile()
    assert _snapshot(world) == _snapshot(expected)


def test_reconciler_killed_before_any_of_its_transactions_then_rerun_matches(
    fresh_world: Callable[[], JobsWorld],
) -> None:
    expected = fresh_world()
    opened = 0
    counting = expected.factory

    def count() -> Session:
        nonlocal opened
        opened += 1
        return counting()

    reconcile(count, expected.executor, clock=expected.clock)
    want = _snapshot(expected)
    # The scenario has work of every kind for this reconcile to do.
    assert {state for _, state, *_ in want["jobs"]} == {
        "succeeded",
        "cancelled",
        "queued",
        "running",
    }
    assert opened > len(RECONCILE_STEPS)  # per-job transactions, not one per step
    for survive in range(opened):
        world = fresh_world()
        with pytest.raises(Killed):
            reconcile(_killing_factory(world.factory, survive), world.executor, clock=world.clock)
        world.reconcile()
        assert _snapshot(world) == want, f"killed before transaction {survive + 1}"


def test_reconciling_twice_changes_nothing_more(fresh_world: Callable[[], JobsWorld]) -> None:
    world = fresh_world()
    world.reconcile()
    once = _snapshot(world)
    world.reconcile()
    assert _snapshot(world) == once
