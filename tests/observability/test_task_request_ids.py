"""A request id bound when a Celery task is sent is bound while the task runs: in its
log lines and in the job events it records, eagerly and through a real worker."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from conftest import migrated_sqlite_url, required_service_url
from jobs_world import JobsWorld, build_jobs_world
from observability_helpers import job_event_data, json_log_lines
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from credits.db import make_engine, make_session_factory, session_scope
from credits.jobs.models import Job, JobState
from credits.jobs.service import cancel_job
from credits.observability.request_ids import (
    current_request_id,
    public_request_id,
    request_id_bound,
)
from credits.settings import load_settings
from credits.worker import make_celery

CANCEL = "tests.observability.cancel_job"
REQUEST_ID = "req-task-0000-0001"
logger = logging.getLogger("tests.observability.task")


def _with_cancel_task(app: Celery, world: JobsWorld) -> Celery:
    """A task of the shape the web tier would send: ids in, one service call, a log line."""

    @app.task(name=CANCEL, shared=False)
    def cancel(job_id: int) -> str | None:
        logger.info("cancelling job %s", job_id)
        with session_scope(world.factory) as session:
            cancel_job(session, job_id=job_id, actor=world.researcher)
        return current_request_id()

    return app


def _task_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["logger"] == logger.name]


@pytest.fixture
def eager(joined_session_factory: sessionmaker[Session]) -> tuple[Celery, JobsWorld]:
    world = build_jobs_world(joined_session_factory)
    settings = load_settings(task_always_eager=True)
    app = make_celery(settings, session_factory=joined_session_factory)
    return _with_cancel_task(app, world), world


def test_an_eager_task_logs_and_records_the_senders_request_id(
    eager: tuple[Celery, JobsWorld],
) -> None:
    app, world = eager
    job = world.submit()

    with json_log_lines() as lines, request_id_bound(REQUEST_ID):
        assert app.tasks[CANCEL].delay(job.id).get() == REQUEST_ID

    assert [line["request_id"] for line in _task_lines(lines)] == [REQUEST_ID]
    with world.session() as session:
        assert job_event_data(session, job.id, "job.cancel_requested")[
            "request_id"
        ] == public_request_id(REQUEST_ID)


def test_a_task_sent_outside_a_request_runs_without_an_id(
    eager: tuple[Celery, JobsWorld],
) -> None:
    app, world = eager
    job = world.submit()

    assert app.tasks[CANCEL].delay(job.id).get() is None
    with world.session() as session:
        assert "request_id" not in job_event_data(session, job.id, "job.cancel_requested")


@pytest.fixture
def committed_world(tmp_path: Path) -> Iterator[tuple[Engine, JobsWorld]]:
    """A migrated SQLite file of this test's own: the worker's thread sees real commits."""
    engine = make_engine(migrated_sqlite_url(tmp_path))
    yield engine, build_jobs_world(make_session_factory(engine))
    engine.dispose()


def _through_a_worker(broker_url: str, engine: Engine, world: JobsWorld) -> None:
    settings = load_settings(broker_url=broker_url, database_url=str(engine.url))
    app = _with_cancel_task(make_celery(settings), world)
    # A queue of this test's own, so nothing left in a shared broker is consumed.
    app.conf.task_default_queue = f"credits-test-{uuid.uuid4().hex[:12]}"
    job = world.submit()

    with (
        start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10),
        json_log_lines() as lines,
    ):
        with request_id_bound(REQUEST_ID):
            app.tasks[CANCEL].delay(job.id)
        # The worker's thread has a context of its own: only the message header carries it.
        data = _cancel_event_data(world, job.id)

    assert data["request_id"] == public_request_id(REQUEST_ID)
    assert REQUEST_ID in [line["request_id"] for line in _task_lines(lines)]


def _cancel_event_data(world: JobsWorld, job_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with world.session() as session:
            if cancel_requested(session, job_id):
                return job_event_data(session, job_id, "job.cancel_requested")
        time.sleep(0.1)
    pytest.fail("the worker did not run the task within 30 s")


def cancel_requested(session: Session, job_id: int) -> bool:
    job = session.get(Job, job_id)
    return job is not None and job.state == JobState.CANCELLED.value


def test_a_worker_binds_the_request_id_the_message_header_carries(
    committed_world: tuple[Engine, JobsWorld],
) -> None:
    _through_a_worker("memory://", *committed_world)


@pytest.mark.redis
def test_a_worker_on_redis_binds_the_request_id_the_message_header_carries(
    committed_world: tuple[Engine, JobsWorld],
) -> None:
    _through_a_worker(required_service_url("CREDITS_TEST_REDIS_URL", "Redis"), *committed_world)
