"""The sender: a real SMTP server (aiosmtpd), the Maildir, failures, retries and backoff."""

from __future__ import annotations

import email
import email.policy
import mailbox
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from conftest import create_postgres_database, drop_postgres_database, joined_factory
from notifications_helpers import FakeMailer, outbox
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from credits.db import make_engine, make_session_factory, session_scope, utcnow
from credits.errors import InvalidInput
from credits.migrate import upgrade
from credits.notifications.mail import MaildirMailer, SmtpMailer, make_mailer
from credits.notifications.models import MAX_ATTEMPTS
from credits.notifications.service import backoff, enqueue_notification, send_pending
from credits.settings import SettingsError, load_settings


def _enqueue(session: Session, key: str, to: str = "ada@uni.example", subject: str = "Hi") -> int:
    row_id = enqueue_notification(
        session,
        recipient_email=to,
        kind="test",
        subject=subject,
        body="Three allocations expire soon.\n",
        dedupe_key=key,
    )
    assert row_id is not None
    return row_id


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Inbox:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], EmailMessage]] = []
        self.lock = threading.Lock()

    # aiosmtpd calls this hook by name with (server, session, envelope).
    async def handle_DATA(  # noqa: N802
        self,
        server: Any,  # noqa: ARG002
        session: Any,  # noqa: ARG002
        envelope: Any,
    ) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.received.append((list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def test_messages_arrive_at_a_real_smtp_server_with_their_recipient_and_subject(
    session: Session, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    first = _enqueue(session, "test:1", "ada@uni.example", "Allocation expiring")
    second = _enqueue(session, "test:2", "bob@uni.example", "Proposal awarded")
    mailer = SmtpMailer(host="127.0.0.1", port=port, starttls=False)

    report = send_pending(
        joined_factory(session), mailer=mailer, mail_from="credits@funder.example"
    )

    assert report.sent == [first, second]
    assert report.failed == []
    received = sorted(inbox.received, key=lambda item: item[0])
    assert [(to, m["To"], m["Subject"]) for to, m in received] == [
        (["ada@uni.example"], "ada@uni.example", "Allocation expiring"),
        (["bob@uni.example"], "bob@uni.example", "Proposal awarded"),
    ]
    message = received[0][1]
    assert message["From"] == "credits@funder.example"
    assert message["Message-ID"].endswith("@funder.example>")
    assert message.get_content().strip() == "Three allocations expire soon."
    assert all(row.sent_at is not None and row.attempts == 1 for row in outbox(session))


def test_sent_messages_are_never_sent_again(
    session: Session, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    _enqueue(session, "test:1")
    mailer = SmtpMailer(host="127.0.0.1", port=port, starttls=False)
    send_pending(joined_factory(session), mailer=mailer)

    again = send_pending(joined_factory(session), mailer=mailer, now=utcnow() + timedelta(days=1))

    assert again.sent == []
    assert len(inbox.received) == 1


def test_starttls_is_not_skipped_when_the_server_does_not_offer_it(
    session: Session, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    row_id = _enqueue(session, "test:1")

    report = send_pending(
        joined_factory(session), mailer=SmtpMailer(host="127.0.0.1", port=port, starttls=True)
    )

    assert report.failed == [row_id]
    assert inbox.received == []
    [row] = outbox(session)
    assert row.sent_at is None
    assert row.last_error is not None
    assert "STARTTLS" in row.last_error


def test_a_refused_connection_is_recorded_and_retried_after_the_backoff(
    session: Session, smtp_server: tuple[Inbox, int]
) -> None:
    inbox, port = smtp_server
    row_id = _enqueue(session, "test:1")
    start = utcnow()
    closed = SmtpMailer(host="127.0.0.1", port=_free_port(), starttls=False, timeout=5)

    failed = send_pending(joined_factory(session), mailer=closed, now=start)

    assert failed.failed == [row_id]
    [row] = outbox(session)
    assert (row.attempts, row.sent_at) == (1, None)
    assert row.last_error is not None
    assert row.last_error.startswith("ConnectionRefusedError")
    assert row.next_attempt_at == start + backoff(1)

    working = SmtpMailer(host="127.0.0.1", port=port, starttls=False)
    too_soon = send_pending(
        joined_factory(session), mailer=working, now=start + timedelta(seconds=30)
    )
    assert too_soon.sent == []

    retried = send_pending(joined_factory(session), mailer=working, now=start + backoff(1))

    assert retried.sent == [row_id]
    [row] = outbox(session)
    assert (row.attempts, row.last_error) == (2, None)
    assert len(inbox.received) == 1


def test_the_backoff_doubles_up_to_six_hours() -> None:
    assert [backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [60, 120, 240, 480]
    assert backoff(20) == timedelta(hours=6)


def test_the_sender_gives_up_after_max_attempts_and_keeps_the_row(session: Session) -> None:
    row_id = _enqueue(session, "test:1")
    mailer = FakeMailer(failures=MAX_ATTEMPTS + 5)
    now = utcnow()
    reports = []
    for attempt in range(1, MAX_ATTEMPTS + 2):
        reports.append(send_pending(joined_factory(session), mailer=mailer, now=now))
        now += backoff(attempt)

    assert [r.failed for r in reports] == [[row_id]] * MAX_ATTEMPTS + [[]]
    assert reports[MAX_ATTEMPTS - 1].gave_up == [row_id]
    [row] = outbox(session)
    assert (row.attempts, row.sent_at) == (MAX_ATTEMPTS, None)


def test_one_failure_does_not_stop_the_rest(session: Session) -> None:
    first = _enqueue(session, "test:1")
    second = _enqueue(session, "test:2")

    report = send_pending(joined_factory(session), mailer=FakeMailer(failures=1))

    assert (report.failed, report.sent) == ([first], [second])


def test_the_limit_takes_the_oldest_first(session: Session) -> None:
    ids = [_enqueue(session, f"test:{n}") for n in range(3)]

    report = send_pending(joined_factory(session), mailer=FakeMailer(), limit=2)

    assert report.sent == ids[:2]
    with pytest.raises(InvalidInput):
        send_pending(joined_factory(session), mailer=FakeMailer(), limit=0)


def test_the_maildir_mailer_writes_one_message_file(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "var" / "maildir"
    _enqueue(session, "test:1", "ada@uni.example", "Allocation expiring")

    report = send_pending(joined_factory(session), mailer=MaildirMailer(path))

    assert len(report.sent) == 1
    files = list((path / "new").iterdir())
    assert len(files) == 1
    [message] = mailbox.Maildir(path, create=False).values()
    assert (message["To"], message["Subject"]) == ("ada@uni.example", "Allocation expiring")


def test_settings_choose_the_mailer(monkeypatch: pytest.MonkeyPatch) -> None:
    embedded = make_mailer(load_settings())
    assert isinstance(embedded, MaildirMailer)
    assert embedded.path == load_settings().var_dir / "maildir"

    smtp = make_mailer(
        load_settings(
            smtp_host="smtp.uni.example", smtp_port=2525, smtp_user="u", smtp_password="p"
        )
    )
    assert isinstance(smtp, SmtpMailer)
    assert (smtp.host, smtp.port, smtp.user, smtp.password, smtp.starttls) == (
        "smtp.uni.example",
        2525,
        "u",
        "p",
        True,
    )

    for name, value in {
        "CREDITS_PROFILE": "production",
        "CREDITS_DATABASE_URL": "postgresql://credits@db.example.org/credits",
        "CREDITS_BROKER_URL": "redis://broker.example.org:6379/0",
        "CREDITS_STORAGE_URL": "s3://credits-datasets",
        "CREDITS_SECRET_KEY": "k" * 40,
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match="CREDITS_SMTP_HOST"):
        make_mailer(load_settings())


@pytest.mark.postgres
def test_two_senders_on_postgresql_skip_each_others_claimed_rows() -> None:
    url, admin_url = create_postgres_database()
    engine = make_engine(url)
    try:
        upgrade(url)
        factory = make_session_factory(engine)
        # A regression to a plain FOR UPDATE would wait on the held row; fail instead.
        event.listen(
            factory,
            "after_begin",
            lambda _s, _t, connection: connection.exec_driver_sql("SET LOCAL lock_timeout = '2s'"),
        )
        with session_scope(factory) as session:
            first = _enqueue(session, "test:1")
            second = _enqueue(session, "test:2")
        with session_scope(factory) as holder:
            # Another sender's claim transaction, still open on the oldest row.
            holder.execute(text("SELECT id FROM outbox WHERE id = :id FOR UPDATE"), {"id": first})
            skipped = send_pending(factory, mailer=FakeMailer())
        held = send_pending(factory, mailer=FakeMailer())
        assert (held.sent, skipped.sent) == ([first], [second])
    finally:
        engine.dispose()
        drop_postgres_database(url, admin_url)
