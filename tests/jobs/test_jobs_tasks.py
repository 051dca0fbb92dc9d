"""The jobs tasks and their beat entries, run eagerly against the simulated pool."""

from __future__ import annotations

from datetime import timedelta

import pytest
from jobs_world import JobsWorld, build_jobs_world
from sqlalchemy.orm import Session, sessionmaker

from credits.jobs.models import Job, JobState
from credits.settings import load_settings
from credits.worker import RECONCILE_JOBS, SCHEDULE_JOBS, make_celery


@pytest.fixture
def world(joined_session_factory: sessionmaker[Session]) -> JobsWorld:
    return build_jobs_world(joined_session_factory)


def test_schedule_and_reconcile_run_every_scheduler_interval() -> None:
    app = make_celery(load_settings(scheduler_interval_seconds=7))
    entries = {entry["task"]: entry["schedule"] for entry in app.conf.beat_schedule.values()}
    assert entries[SCHEDULE_JOBS] == timedelta(seconds=7)
    assert entries[RECONCILE_JOBS] == timedelta(seconds=7)


def test_the_tasks_start_and_finish_a_job(
    world: JobsWorld, joined_session_factory: sessionmaker[Session]
) -> None:
    # The simulated pool here runs on the test's clock, so the job ends when the test says.
    app = make_celery(
        load_settings(task_always_eager=True),
        session_factory=joined_session_factory,
        executor=world.executor,
    )
    job = world.submit(duration=30)
    started = app.tasks[SCHEDULE_JOBS].delay().get()
    assert started == [job.id]
    with world.session() as session:
        assert session.get(Job, job.id).state == JobState.RUNNING.value  # type: ignore[union-attr]
    world.clock.advance(30)
    report = app.tasks[RECONCILE_JOBS].delay().get()
    assert report["settled"] == [job.id]
    assert report["released"] == [job.id]
    assert app.tasks[RECONCILE_JOBS].delay().get() == {
        "launched": [],
        "cancelled": [],
        "moving": [],
        "transitions": [],
        "metered": 0,
        "settled": [],
        "released": [],
        "errors": [],
        "skipped": False,
    }
