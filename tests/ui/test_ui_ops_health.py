"""/ops/health flags a stalled reconciler and the jobs that failed in the last day."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from api_world import OPS, World, build_world, world_executor
from flask import Flask
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker
from ui_sign_in import sign_in_as

from credits.app import create_app
from credits.db import utcnow
from credits.jobs.models import Job
from credits.jobs.passes import RECONCILER, last_pass, record_pass
from credits.jobs.runtime import reconcile_with
from credits.settings import load_settings


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return create_app(
        load_settings(), session_factory=joined_session_factory, executor=world_executor()
    )


def _health(app: Flask, world: World) -> str:
    client = app.test_client()
    sign_in_as(client, world.user_ids[OPS])
    response = client.get("/ops/health")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def _reconciler_row(page: str) -> str:
    start = page.index("<tr><td>Reconciler</td>")
    return page[start : page.index("</tr>", start)]


def test_a_reconcile_pass_is_recorded_and_the_reconciler_reads_as_running(
    app: Flask, session: Session, joined_session_factory: sessionmaker[Session]
) -> None:
    world = build_world(session)
    before = utcnow()
    started = time.monotonic()
    reconcile_with(joined_session_factory, world_executor(), load_settings())
    took = time.monotonic() - started
    recorded = last_pass(session, RECONCILER)
    assert recorded is not None and recorded.finished_at >= before
    assert recorded.duration_seconds is not None
    assert 0 < recorded.duration_seconds <= took
    row = _reconciler_row(_health(app, world))
    assert "badge-ok" in row and "last pass finished" in row and "stalled" not in row


def test_no_reconcile_pass_ever_is_flagged(app: Flask, session: Session) -> None:
    world = build_world(session)
    page = _health(app, world)
    assert "badge-failing" in _reconciler_row(page)
    assert "no reconcile pass recorded" in page
    assert "badge-degraded" in page


def test_a_reconciler_silent_for_several_intervals_is_flagged_stalled(
    app: Flask, session: Session, joined_session_factory: sessionmaker[Session]
) -> None:
    world = build_world(session)
    # The default interval is 5 s: a minute is the floor of "several intervals".
    record_pass(joined_session_factory, RECONCILER, finished_at=utcnow() - timedelta(seconds=50))
    assert "badge-ok" in _reconciler_row(_health(app, world))
    record_pass(joined_session_factory, RECONCILER, finished_at=utcnow() - timedelta(minutes=3))
    row = _reconciler_row(_health(app, world))
    assert "badge-failing" in row
    assert "stalled: last pass finished" in row and "(3 min ago), more than 60 s ago" in row


def test_jobs_failed_in_the_last_day_are_flagged_with_links(
    app: Flask, session: Session, joined_session_factory: sessionmaker[Session]
) -> None:
    world = build_world(session)
    record_pass(joined_session_factory, RECONCILER, finished_at=utcnow())
    assert "health-failures" not in _health(app, world)
    assert "no job failed in the last 24 hours" in _health(app, world)
    now = utcnow()
    session.execute(
        update(Job)
        .where(Job.id == world.job_a)
        .values(
            state="failed",
            started_at=now - timedelta(hours=2),
            finished_at=now - timedelta(hours=1),
            reason="the executor no longer knows this job",
        )
    )
    session.flush()
    page = _health(app, world)
    assert "badge-attention" in page
    assert "1 job(s) failed in the last 24 hours" in page
    failures = page[page.index('data-testid="health-failures"') :]
    assert f'<a href="/jobs/{world.job_a}">{world.job_a} ' in failures
    assert "the executor no longer knows this job" in failures
    # A day later it is no longer recent.
    session.execute(
        update(Job).where(Job.id == world.job_a).values(finished_at=now - timedelta(hours=25))
    )
    session.flush()
    assert "health-failures" not in _health(app, world)
