"""Celery: thin tasks run eagerly, the beat schedule, and real round trips through a broker.

The Redis round trip needs ``CREDITS_TEST_REDIS_URL`` (CI sets it) and fails,
never skips, in CI when it is missing (``conftest.required_service_url``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from conftest import migrated_sqlite_url, required_service_url
from notifications_helpers import FakeMailer, outbox
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from credits import worker
from credits.db import make_engine, make_session_factory, session_scope
from credits.notifications.mail import MaildirMailer
from credits.notifications.service import TASK_SENDER, enqueue_notification
from credits.settings import load_settings
from credits.worker import (
    COLLECT_TELEMETRY,
    EXPIRE_ALLOCATIONS,
    INTEGRATE_LOG,
    QUEUE_EXPIRY_DIGESTS,
    QUEUE_IDLE_GPU_NUDGES,
    QUEUE_LOW_BALANCE_NOTICES,
    QUEUE_UNDERUSED_NUDGES,
    RECONCILE_JOBS,
    RELEASE_LEASES,
    REMOVE_STALE_UPLOADS,
    SCHEDULE_JOBS,
    SEND_NOTIFICATIONS,
    SETTLE_USAGE,
    make_celery,
    task_sender,
)

REDIS_ENV = "CREDITS_TEST_REDIS_URL"


def _enqueue(session: Session, key: str = "test:1") -> int:
    row_id = enqueue_notification(
        session,
        recipient_email="ada@uni.example",
        kind="test",
        subject="Allocation expiring",
        body="Soon.\n",
        dedupe_key=key,
    )
    assert row_id is not None
    return row_id


def test_importing_the_worker_builds_no_app(monkeypatch: pytest.MonkeyPatch) -> None:
    worker.celery_app.cache_clear()
    assert worker.celery_app.cache_info().currsize == 0
    monkeypatch.setenv("CREDITS_BROKER_URL", "redis://broker.example.org:6379/3")
    try:
        app = worker.app

        assert isinstance(app, Celery)
        assert app.conf.broker_url == "redis://broker.example.org:6379/3"
        assert worker.app is app
        with pytest.raises(AttributeError):
            _ = worker.celery
    finally:
        worker.celery_app.cache_clear()


def test_the_beat_schedule_runs_the_sender_and_the_daily_sweeps() -> None:
    app = make_celery(load_settings(notification_digest_hour=6))
    schedule = app.conf.beat_schedule

    assert {entry["task"] for entry in schedule.values()} == {
        SEND_NOTIFICATIONS,
        QUEUE_EXPIRY_DIGESTS,
        QUEUE_LOW_BALANCE_NOTICES,
        EXPIRE_ALLOCATIONS,
        SCHEDULE_JOBS,
        RECONCILE_JOBS,
        SETTLE_USAGE,
        COLLECT_TELEMETRY,
        QUEUE_UNDERUSED_NUDGES,
        QUEUE_IDLE_GPU_NUDGES,
        RELEASE_LEASES,
        INTEGRATE_LOG,
        REMOVE_STALE_UPLOADS,
    }
    assert schedule["expiry-digests"]["schedule"].hour == {6}
    assert all(entry["task"] in app.tasks for entry in schedule.values())


def test_the_tidy_up_of_stale_uploads_runs_as_a_task(tmp_path: Path) -> None:
    settings = load_settings(task_always_eager=True, storage_url=f"file://{tmp_path / 'blobs'}")
    app = make_celery(settings)
    assert app.tasks[REMOVE_STALE_UPLOADS].delay().get(timeout=10) == 0


def test_the_allocation_expiry_sweep_is_scheduled_and_runs_as_a_task(
    joined_session_factory: sessionmaker[Session],
) -> None:
    app = make_celery(load_settings(task_always_eager=True), session_factory=joined_session_factory)

    assert app.conf.beat_schedule["expire-allocations"]["task"] == EXPIRE_ALLOCATIONS
    assert app.tasks[EXPIRE_ALLOCATIONS].delay().get(timeout=10) == []


def test_the_send_task_runs_eagerly_and_sends_committed_rows(
    joined_session_factory: sessionmaker[Session],
) -> None:
    mailer = FakeMailer()
    app = make_celery(
        load_settings(task_always_eager=True),
        session_factory=joined_session_factory,
        mailer=mailer,
    )
    with session_scope(joined_session_factory) as session:
        row_id = _enqueue(session)

    result = app.tasks[SEND_NOTIFICATIONS].delay(limit=10)

    assert result.get() == {"sent": [row_id], "failed": [], "gave_up": []}
    assert [m["Subject"] for m in mailer.sent] == ["Allocation expiring"]


def test_a_commit_kicks_the_eager_sender_through_the_after_commit_hook(
    joined_session_factory: sessionmaker[Session],
) -> None:
    mailer = FakeMailer()
    app = make_celery(
        load_settings(task_always_eager=True),
        session_factory=joined_session_factory,
        mailer=mailer,
    )
    producer = sessionmaker(
        bind=joined_session_factory.kw["bind"],
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
        info={TASK_SENDER: task_sender(app)},
    )

    with session_scope(producer) as session:
        _enqueue(session)
        session.flush()
        assert mailer.sent == []

    assert len(mailer.sent) == 1
    with session_scope(joined_session_factory) as session:
        assert [row.sent_at is not None for row in outbox(session)] == [True]


def test_the_daily_sweep_tasks_run_eagerly(joined_session_factory: sessionmaker[Session]) -> None:
    app = make_celery(
        load_settings(task_always_eager=True),
        session_factory=joined_session_factory,
        mailer=FakeMailer(),
    )

    assert app.tasks[QUEUE_EXPIRY_DIGESTS].delay().get() == 0
    assert app.tasks[QUEUE_LOW_BALANCE_NOTICES].delay().get() == 0


@pytest.fixture
def redis_url() -> str:
    return required_service_url(REDIS_ENV, "Redis")


@pytest.fixture
def committed_database(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite file of this test's own: a worker thread must see real commits."""
    engine = make_engine(migrated_sqlite_url(tmp_path))
    yield engine
    engine.dispose()


def _round_trip(broker_url: str, engine: Engine, maildir: Path) -> None:
    """Commit a row from an entry point's session; a worker sends it, kicked after commit."""
    settings = load_settings(broker_url=broker_url, database_url=str(engine.url))
    app = make_celery(settings, mailer=MaildirMailer(maildir))
    # A queue of this test's own, so nothing left in a shared broker is consumed.
    app.conf.task_default_queue = f"credits-test-{uuid.uuid4().hex[:12]}"
    producer = sessionmaker(
        bind=engine, expire_on_commit=False, info={TASK_SENDER: task_sender(app)}
    )
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        with session_scope(producer) as session:
            row_id = _enqueue(session)
        deadline = time.monotonic() + 30
        reader = make_session_factory(engine)
        while time.monotonic() < deadline:
            with session_scope(reader) as session:
                [row] = outbox(session)
                if row.sent_at is not None:
                    break
            time.sleep(0.1)
    assert row.id == row_id
    assert row.sent_at is not None, f"not sent within 30 s: {row.last_error}"
    assert len(list((maildir / "new").iterdir())) == 1


@pytest.mark.redis
def test_a_worker_sends_the_outbox_through_redis(
    redis_url: str, committed_database: Engine, tmp_path: Path
) -> None:
    _round_trip(redis_url, committed_database, tmp_path / "maildir")


@pytest.mark.slow
# kombu's SQLAlchemy transport still uses the noload strategy that SQLAlchemy 2.1 deprecates.
@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")
def test_a_worker_sends_the_outbox_through_the_embedded_sqlalchemy_broker(
    committed_database: Engine, tmp_path: Path
) -> None:
    _round_trip(f"sqla+sqlite:///{tmp_path / 'broker.db'}", committed_database, tmp_path / "md")
