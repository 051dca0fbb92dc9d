"""Lapsed leases are released by Celery beat and by the embedded profile's chores."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from labelling_world import build_world
from sqlalchemy.orm import Session, sessionmaker

from credits.db import utcnow
from credits.embedded import Chores
from credits.labelling import orders, queue
from credits.labelling.models import Assignment
from credits.notifications.mail import MaildirMailer
from credits.settings import load_settings
from credits.worker import RELEASE_LEASES, make_celery


def _lapsed_assignment(session: Session) -> int:
    world = build_world(session)
    order = world.placed(session, items=2, redundancy=1)
    annotator = world.annotators[0]
    assert annotator.user_id is not None
    orders.assign_annotators(
        session, order_id=order.id, user_ids=[annotator.user_id], actor=world.pi
    )
    served = queue.next_item(
        session, annotator, order_id=order.id, now=utcnow() - timedelta(hours=1)
    )
    assert served is not None
    session.flush()
    return served.assignment_id


def test_beat_releases_lapsed_leases_every_five_minutes(
    session: Session, joined_session_factory: sessionmaker[Session]
) -> None:
    assignment_id = _lapsed_assignment(session)
    app = make_celery(load_settings(task_always_eager=True), session_factory=joined_session_factory)
    assert app.conf.beat_schedule["release-leases"]["schedule"] == timedelta(minutes=5)
    assert app.tasks[RELEASE_LEASES].delay().get(timeout=10) == 1
    session.expire_all()
    assert session.get_one(Assignment, assignment_id).status == "released"


def test_the_embedded_chores_release_lapsed_leases(
    session: Session, joined_session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    assignment_id = _lapsed_assignment(session)
    chores = Chores(
        joined_session_factory,
        load_settings(),
        mailer=MaildirMailer(tmp_path),  # type: ignore[arg-type]
    )
    assert "leases" in chores.run_due(now=1000.0)
    session.expire_all()
    assert session.get_one(Assignment, assignment_id).status == "released"
