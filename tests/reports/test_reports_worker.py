"""The nudge tasks are registered, scheduled daily, and run as tasks."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from credits.settings import load_settings
from credits.worker import QUEUE_IDLE_GPU_NUDGES, QUEUE_UNDERUSED_NUDGES, make_celery


def test_nudges_are_scheduled_daily_and_run_as_tasks(
    joined_session_factory: sessionmaker[Session],
) -> None:
    app = make_celery(
        load_settings(task_always_eager=True, notification_digest_hour=6),
        session_factory=joined_session_factory,
    )
    schedule = app.conf.beat_schedule

    assert schedule["underused-nudges"]["task"] == QUEUE_UNDERUSED_NUDGES
    assert schedule["idle-gpu-nudges"]["task"] == QUEUE_IDLE_GPU_NUDGES
    assert schedule["idle-gpu-nudges"]["schedule"].hour == {6}
    assert app.tasks[QUEUE_UNDERUSED_NUDGES].delay().get(timeout=10) == 0
    assert app.tasks[QUEUE_IDLE_GPU_NUDGES].delay().get(timeout=10) == 0
