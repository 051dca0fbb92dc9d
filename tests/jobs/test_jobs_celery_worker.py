"""A real Celery worker process on Redis takes a job from submitted to succeeded.

The worker is ``celery -A credits.worker worker``, configured only through
CREDITS_* variables as in production, with the simulated executor in its own
process; this test only submits through the service and sends the two
periodic tasks, as beat would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import migrated_sqlite_url, required_service_url
from jobs_world import RATE, build_jobs_world

from credits.db import make_engine, make_session_factory, session_scope
from credits.jobs.models import Job, JobState
from credits.ledger.verify import verify_ledger
from credits.settings import load_settings
from credits.worker import RECONCILE_JOBS, SCHEDULE_JOBS, make_celery

DEADLINE_S = 60


@pytest.fixture
def redis_url() -> str:
    return required_service_url("CREDITS_TEST_REDIS_URL", "Redis")


@pytest.fixture
def worker_env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    return {
        "CREDITS_DATABASE_URL": migrated_sqlite_url(tmp_path),
        "CREDITS_BROKER_URL": redis_url,
        "CREDITS_TASK_QUEUE": f"credits-test-{uuid.uuid4().hex[:12]}",
        "CREDITS_EXECUTOR": "simulated",
        "CREDITS_SIMULATED_NODES": "a100-80gb:2x8",
        "CREDITS_VAR_DIR": str(tmp_path / "var"),
    }


@pytest.fixture
def worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = (tmp_path / "worker.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "credits.worker",
            "worker",
            "--pool",
            "solo",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env={**os.environ, **worker_env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield process
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.mark.redis
@pytest.mark.slow
def test_a_worker_process_on_redis_runs_a_job_from_submit_to_succeeded(
    worker_env: dict[str, str], worker: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    engine = make_engine(worker_env["CREDITS_DATABASE_URL"])
    factory = make_session_factory(engine)
    world = build_jobs_world(factory)
    job = world.submit(gpus=2, duration=1)
    app = make_celery(
        load_settings(
            broker_url=worker_env["CREDITS_BROKER_URL"],
            task_queue=worker_env["CREDITS_TASK_QUEUE"],
            database_url=worker_env["CREDITS_DATABASE_URL"],
        )
    )
    state = JobState.QUEUED.value
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline and state != JobState.SUCCEEDED.value:
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()
        app.send_task(SCHEDULE_JOBS)
        app.send_task(RECONCILE_JOBS)
        time.sleep(0.5)
        with session_scope(factory) as session:
            state = session.get(Job, job.id, populate_existing=True).state  # type: ignore[union-attr]
    log = (tmp_path / "worker.log").read_text()
    assert state == JobState.SUCCEEDED.value, log
    with session_scope(factory) as session:
        done = session.get(Job, job.id)
        assert done is not None
        assert done.settled_at is not None
        # Two GPUs for about a second at 2.5 credits per GPU-hour, never the whole hold.
        assert 0 < done.charged_micro < done.hold_micro
        assert done.charged_micro >= -(-2 * 1 * RATE // 3600)
        assert verify_ledger(session).ok
    engine.dispose()
