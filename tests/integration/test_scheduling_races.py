"""Real commits on PostgreSQL: what a scheduling pass writes never overwrites what
committed while it was planning.

The pass reads the queue without locks and plans from that snapshot; a user's
cancel, or the reconciler requeueing a preempted job, can commit in between. Each
test commits such a change from inside the policy's call, the worst moment.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from jobs_world import JobsWorld, build_jobs_world
from sqlalchemy import Engine
from test_job_moves import _fragment as fragment
from test_ledger_concurrency import committed_postgres

from credits.db import make_session_factory, session_scope
from credits.jobs import scheduler, scheduling, service
from credits.jobs.models import Job, JobState

pytestmark = pytest.mark.postgres

__all__ = ["committed_postgres"]  # the fixture, imported for pytest to find


def _during_planning(
    monkeypatch: pytest.MonkeyPatch, change: Callable[[], None]
) -> list[scheduler.Plan]:
    """Commits ``change`` after the policy has planned, before the pass writes."""
    plans: list[scheduler.Plan] = []
    real_plan = scheduler.plan

    def plan_then_change(*args: Any, **kwargs: Any) -> scheduler.Plan:
        result = real_plan(*args, **kwargs)
        plans.append(result)
        change()
        return result

    monkeypatch.setattr(scheduling.scheduler, "plan", plan_then_change)
    return plans


def _world(committed_postgres: tuple[str, Engine]) -> JobsWorld:
    return build_jobs_world(make_session_factory(committed_postgres[1]))


def test_a_job_cancelled_while_the_pass_plans_stays_cancelled_and_never_starts(
    committed_postgres: tuple[str, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    world = _world(committed_postgres)
    job = world.submit()
    available = world.available()

    def cancel() -> None:
        with world.session() as session:
            service.cancel_job(session, job_id=job.id, actor=world.researcher)

    plans = _during_planning(monkeypatch, cancel)
    out = world.schedule()

    assert [start.job_id for start in plans[0].starts] == [job.id]
    assert out.started == []
    stored = world.job(job.id)
    assert (stored.state, stored.attempt, stored.placement_json) == (
        JobState.CANCELLED.value,
        0,
        None,
    )
    assert world.runs(job.id) == []
    world.reconcile()
    assert world.executor.observe([job.id]) == {}  # never launched
    assert world.available() == available + job.hold_micro  # the hold went back


def test_a_job_requeued_while_the_pass_plans_is_not_recorded_as_moving(
    committed_postgres: tuple[str, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    world = _world(committed_postgres)
    mover, _, big = fragment(world)
    world.reconcile()

    def requeue_the_mover() -> None:
        # What the reconciler does when the pool preempts a job (its hold kept).
        with session_scope(world.factory) as session:
            session.get_one(Job, mover).state = JobState.QUEUED.value

    plans = _during_planning(monkeypatch, requeue_the_mover)
    out = world.schedule()

    assert [move.job_id for move in plans[0].moves] == [mover]
    assert out.moved == []
    stored = world.job(mover)
    assert (stored.state, stored.move_target_json, stored.move_count) == (
        JobState.QUEUED.value,
        None,
        0,
    )
    assert big not in out.started
