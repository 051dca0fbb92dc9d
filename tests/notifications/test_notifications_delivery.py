"""Delivery edge cases: a mail server that fumbles QUIT, deactivated recipients, the
claim's lease, and a sender that never holds SQLite's write lock while it sends."""

from __future__ import annotations

import socketserver
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from conftest import joined_factory
from notifications_helpers import SYSTEM, FakeMailer, outbox, person, uid
from sqlalchemy.orm import Session

from credits.db import make_engine, make_session_factory, session_scope, utcnow
from credits.identity.service import set_active
from credits.migrate import upgrade
from credits.notifications.mail import Mailer, SmtpMailer
from credits.notifications.models import MAX_ATTEMPTS
from credits.notifications.schemas import SendReport
from credits.notifications.service import (
    CANCELLED_NOTE,
    CLAIM_LEASE,
    LAPSED_NOTE,
    enqueue_notification,
    send_pending,
)


def _send(
    factory: Callable[[], Session], mailer: Mailer, now: datetime | None = None
) -> SendReport:
    return send_pending(factory, mailer=mailer, now=now)


def _enqueue(session: Session, key: str, user_id: int | None = None, to: str = "") -> int:
    row_id = enqueue_notification(
        session,
        recipient_email=to or f"{key}@uni.example",
        recipient_user_id=user_id,
        kind="decision",
        subject="Proposal awarded",
        body="Congratulations.\n",
        dedupe_key=key,
    )
    assert row_id is not None
    return row_id


class _BadQuitHandler(socketserver.StreamRequestHandler):
    """Takes every message (250 after DATA), then answers QUIT with 421 or not at all."""

    server: BadQuitServer

    def handle(self) -> None:
        self._say("220 fake ESMTP")
        in_data = False
        for raw in self.rfile:
            line = raw.decode().rstrip("\r\n")
            if in_data:
                in_data = line != "."
                if not in_data:
                    self.server.accepted += 1
                    self._say("250 queued")
            elif line.upper().startswith("DATA"):
                in_data = True
                self._say("354 go ahead")
            elif line.upper().startswith("QUIT"):
                self._quit()
                return
            else:
                self._say("250 ok")

    def _quit(self) -> None:
        if self.server.quit_reply:
            self._say(self.server.quit_reply)
        else:
            self.server.hang.wait(10)  # silence: the client's timeout ends it

    def _say(self, reply: str) -> None:
        self.wfile.write(reply.encode() + b"\r\n")
        self.wfile.flush()


class BadQuitServer(socketserver.ThreadingTCPServer):
    daemon_threads = True

    def __init__(self, quit_reply: str) -> None:
        super().__init__(("127.0.0.1", 0), _BadQuitHandler)
        self.quit_reply = quit_reply
        self.accepted = 0
        self.hang = threading.Event()


@pytest.fixture(params=["421 closing", ""], ids=["quit-421", "quit-silent"])
def bad_quit_server(request: pytest.FixtureRequest) -> Iterator[BadQuitServer]:
    server = BadQuitServer(request.param)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.hang.set()
        server.shutdown()
        server.server_close()


def test_a_message_accepted_before_a_failed_quit_is_sent_once_and_marked_sent(
    session: Session, bad_quit_server: BadQuitServer
) -> None:
    row_id = _enqueue(session, "quit")
    port = bad_quit_server.server_address[1]
    mailer = SmtpMailer(host="127.0.0.1", port=port, starttls=False, timeout=1)
    factory = joined_factory(session)

    report = _send(factory, mailer)
    again = _send(factory, mailer, now=utcnow() + timedelta(days=1))

    assert (report.sent, report.failed, again.sent) == ([row_id], [], [])
    assert bad_quit_server.accepted == 1
    [row] = outbox(session)
    assert row.sent_at is not None
    assert (row.attempts, row.last_error) == (1, None)


def test_mail_queued_for_a_user_later_deactivated_is_cancelled_not_sent(
    any_session: Session,
) -> None:
    ada = person(any_session, "ada@uni.example")
    bob = person(any_session, "bob@uni.example")
    for_ada = _enqueue(any_session, "ada", uid(ada), "ada@uni.example")
    for_bob = _enqueue(any_session, "bob", uid(bob), "bob@uni.example")
    for_address = _enqueue(any_session, "guest")
    set_active(any_session, email="ada@uni.example", active=False, actor=SYSTEM)
    mailer = FakeMailer()
    factory = joined_factory(any_session)

    report = _send(factory, mailer)
    later = _send(factory, mailer, now=utcnow() + timedelta(days=30))

    assert (report.sent, later.sent, later.failed) == ([for_bob, for_address], [], [])
    assert sorted(m["To"] for m in mailer.sent) == ["bob@uni.example", "guest@uni.example"]
    cancelled = next(row for row in outbox(any_session) if row.id == for_ada)
    assert cancelled.sent_at is None
    assert (cancelled.attempts, cancelled.last_error) == (MAX_ATTEMPTS, CANCELLED_NOTE)


class _Crash(BaseException):
    """The process dying in the middle of a send."""


class _CrashingMailer:
    def send(self, message: EmailMessage) -> None:  # noqa: ARG002
        raise _Crash


def test_a_claim_whose_sender_died_is_sent_once_after_its_lease_lapses(
    any_session: Session,
) -> None:
    row_id = _enqueue(any_session, "crash")
    factory = joined_factory(any_session)
    start = utcnow()
    with pytest.raises(_Crash):
        _send(factory, _CrashingMailer(), now=start)
    mailer = FakeMailer()

    while_leased = _send(factory, mailer, now=start + CLAIM_LEASE - timedelta(seconds=1))
    after_lease = _send(factory, mailer, now=start + CLAIM_LEASE)

    assert (while_leased.sent, after_lease.sent) == ([], [row_id])
    assert len(mailer.sent) == 1
    [row] = outbox(any_session)
    assert row.sent_at is not None and row.attempts == 2


def test_a_last_attempt_whose_sender_died_is_given_up_saying_so_after_its_lease(
    any_session: Session,
) -> None:
    row_id = _enqueue(any_session, "last")
    [row] = outbox(any_session)
    row.attempts = MAX_ATTEMPTS - 1
    any_session.flush()
    factory = joined_factory(any_session)
    start = utcnow()
    with pytest.raises(_Crash):
        _send(factory, _CrashingMailer(), now=start)
    mailer = FakeMailer()

    after_lease = _send(factory, mailer, now=start + CLAIM_LEASE)
    again = _send(factory, mailer, now=start + 2 * CLAIM_LEASE)

    assert (after_lease.sent, again.sent, mailer.sent) == ([], [], [])
    [row] = outbox(any_session)
    assert (row.id, row.sent_at, row.attempts) == (row_id, None, MAX_ATTEMPTS)
    assert row.last_error == LAPSED_NOTE


class _GatedMailer:
    """Holds the first send until released: a mail server slow to answer."""

    def __init__(self) -> None:
        self.sending = threading.Event()
        self.release = threading.Event()
        self.sent: list[EmailMessage] = []
        self.lock = threading.Lock()

    def send(self, message: EmailMessage) -> None:
        self.sending.set()
        self.release.wait(10)
        time.sleep(0.01)  # long enough for two senders to overlap
        with self.lock:
            self.sent.append(message)


def _file_database(tmp_path: Path, keys: list[str]) -> Callable[[], Session]:
    url = f"sqlite:///{tmp_path}/credits.db"
    upgrade(url)
    factory = make_session_factory(make_engine(url))
    with session_scope(factory) as session:
        for key in keys:
            _enqueue(session, key)
    return factory


def _run_senders(factory: Callable[[], Session], mailer: Mailer, count: int) -> list[SendReport]:
    reports: list[SendReport] = []
    threads = [
        threading.Thread(target=lambda: reports.append(_send(factory, mailer)))
        for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return reports


def test_other_writers_commit_while_the_sender_waits_on_the_mail_server(
    tmp_path: Path,
) -> None:
    factory = _file_database(tmp_path, [f"k{n}" for n in range(3)])
    # Another process's writer, which would wait at most one second for the lock.
    writer = make_session_factory(
        make_engine(f"sqlite:///{tmp_path}/credits.db", sqlite_busy_timeout_ms=1000)
    )
    mailer = _GatedMailer()
    sender = threading.Thread(target=lambda: _send(factory, mailer))
    sender.start()
    try:
        assert mailer.sending.wait(10)
        started = time.monotonic()
        with session_scope(writer) as session:
            _enqueue(session, "written-meanwhile")
        took = time.monotonic() - started
    finally:
        mailer.release.set()
        sender.join(30)

    assert took < 1
    with session_scope(factory) as session:
        rows = outbox(session)
    assert len(rows) == 4 and all(row.sent_at is not None for row in rows)
    assert sorted(Counter(m["Message-ID"] for m in mailer.sent).values()) == [1, 1, 1, 1]


def test_two_senders_on_one_sqlite_file_send_each_row_once(tmp_path: Path) -> None:
    factory = _file_database(tmp_path, [f"k{n}" for n in range(12)])
    mailer = _GatedMailer()
    mailer.release.set()

    reports = _run_senders(factory, mailer, count=2)

    assert len(reports) == 2
    sent = sorted(row_id for report in reports for row_id in report.sent)
    with session_scope(factory) as session:
        rows = outbox(session)
    assert sent == [row.id for row in rows]
    assert all(row.sent_at is not None and row.attempts == 1 for row in rows)
    assert len(mailer.sent) == 12
    assert len({m["Message-ID"] for m in mailer.sent}) == 12
