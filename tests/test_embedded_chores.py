"""The embedded profile's chores: mail goes out every minute, lapsed leases are released
every five minutes, the daily work hourly, the transparency integrator every 30 seconds."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from credits.db import session_scope
from credits.embedded import DAILY_WORK_EVERY_S, MAIL_EVERY_S, Chores
from credits.notifications.mail import MaildirMailer
from credits.notifications.service import enqueue_notification
from credits.settings import load_settings


def _enqueue(factory: sessionmaker[Session], key: str) -> None:
    with session_scope(factory) as session:
        enqueue_notification(
            session,
            recipient_email="ada@uni.example",
            kind="test",
            subject="Allocation expiring",
            body="Soon.\n",
            dedupe_key=key,
        )


def test_chores_send_the_outbox_and_run_only_when_due(
    joined_session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    maildir = tmp_path / "maildir"
    chores = Chores(joined_session_factory, load_settings(), mailer=MaildirMailer(maildir))
    _enqueue(joined_session_factory, "a")
    assert chores.run_due(now=1000.0) == [
        "mail",
        "leases",
        "daily",
        "transparency",
        "stale-uploads",
    ]
    assert len(list((maildir / "new").iterdir())) == 1
    _enqueue(joined_session_factory, "b")
    assert chores.run_due(now=1000.0 + MAIL_EVERY_S / 4) == []
    assert chores.run_due(now=1000.0 + MAIL_EVERY_S) == ["mail", "transparency"]
    assert len(list((maildir / "new").iterdir())) == 2
    assert chores.run_due(now=1000.0 + DAILY_WORK_EVERY_S) == [
        "mail",
        "leases",
        "daily",
        "transparency",
        "stale-uploads",
    ]
