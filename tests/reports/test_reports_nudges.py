"""Nudges: allocations forecast to expire mostly unused, idle GPUs; a rerun adds nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from reports_world import ReportsWorld, add_telemetry, build_reports_world
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from credits.jobs.models import Job
from credits.notifications.models import OutboxMessage
from credits.reports.nudges import (
    IDLE_KIND,
    UNDERUSED_KIND,
    queue_idle_gpu_notices,
    queue_underused_allocations,
    run_nudges,
)


@pytest.fixture
def world(joined_session_factory: sessionmaker[Session]) -> ReportsWorld:
    world = build_reports_world(joined_session_factory)
    world.a.submit(gpus=2, duration=600)
    world.a.submit(gpus=1, duration=600)
    world.run_until_done(steps=15)
    return world


def _outbox(session: Session, kind: str) -> list[OutboxMessage]:
    return list(session.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind)))


def test_allocation_expiring_mostly_unused_nudges_pi_once(
    session: Session, world: ReportsWorld
) -> None:
    later = world.clock() + timedelta(days=8)  # 21 days before the end, no recent use

    assert queue_underused_allocations(session, now=later) == 2
    assert queue_underused_allocations(session, now=later) == 0

    rows = _outbox(session, UNDERUSED_KIND)
    assert sorted(row.recipient_email for row in rows) == ["pi_a@example.org", "pi_b@example.org"]
    assert "will expire unused" in rows[0].body


def test_allocation_far_from_its_end_is_not_nudged(session: Session, world: ReportsWorld) -> None:
    assert queue_underused_allocations(session, now=world.clock() - timedelta(days=1)) == 0


def test_idle_job_from_telemetry_nudges_its_submitter_once(
    session: Session, world: ReportsWorld
) -> None:
    busy, idle = sorted(
        session.scalars(select(Job).where(Job.project_id == world.a.project_id)),
        key=lambda job: job.id,
    )
    now = world.clock()
    add_telemetry(session, busy.id, samples=20, util=85.0, energy_mj=0, at=now)
    add_telemetry(session, idle.id, samples=20, util=3.0, energy_mj=0, at=now)

    assert queue_idle_gpu_notices(session, now=now, idle_percent=10.0) == 1
    assert queue_idle_gpu_notices(session, now=now, idle_percent=10.0) == 0

    (row,) = _outbox(session, IDLE_KIND)
    assert row.recipient_email == "pi_a@example.org"
    assert f"Job {idle.id}" in row.subject
    assert "3.0%" in row.body


def test_too_few_samples_do_not_count_as_idle(session: Session, world: ReportsWorld) -> None:
    job = session.scalars(select(Job).where(Job.project_id == world.a.project_id)).first()
    assert job is not None
    add_telemetry(session, job.id, samples=2, util=0.0, energy_mj=0, at=world.clock())

    assert queue_idle_gpu_notices(session, now=world.clock(), idle_percent=10.0) == 0


def test_run_nudges_twice_adds_nothing_the_second_time(
    session: Session, world: ReportsWorld
) -> None:
    later = world.clock() + timedelta(days=8)
    first = run_nudges(session, now=later, idle_percent=10.0)
    second = run_nudges(session, now=later, idle_percent=10.0)

    assert first.underused == 2
    assert second.model_dump() == {"underused": 0, "idle": 0, "low_balance": 0}
