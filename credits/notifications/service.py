"""The outbox: enqueue in the event's transaction, send after commit, retry with backoff.

Delivery is at least once. The sender claims due rows (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, so two workers never claim the same row; SQLite has
one writer), sends each, and marks it sent in the same transaction; a crash
between the send and the commit sends that message again. Each message's
Message-ID is stable per row, so a receiver can drop the repeat.
"""

from __future__ import annotations

import hashlib
import logging
import unicodedata
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, event, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, SessionTransaction

from credits.db import utcnow
from credits.errors import InvalidInput
from credits.notifications.mail import Mailer, build_message
from credits.notifications.models import MAX_ATTEMPTS, OutboxMessage
from credits.notifications.schemas import OutboxOut, SendReport

log = logging.getLogger(__name__)

OUTBOX = cast(Table, OutboxMessage.__table__)
# An entry point (worker, CLI, web app) puts a zero-argument callable here, in
# ``session.info``, that asks a worker to run the sender; enqueueing then calls
# it once after the transaction commits. Without one, beat's periodic sender
# delivers the row within a minute.
TASK_SENDER = "credits.notifications.task_sender"
_AFTER_COMMIT = "credits.after_commit"
BACKOFF_BASE_SECONDS = 60
BACKOFF_MAX_SECONDS = 6 * 3600
MAX_ERROR_LENGTH = 2000
SUBJECT_MAX_LENGTH = 150
ELLIPSIS = "\u2026"
# Control characters, line and paragraph separators: each could end a mail header line.
_BREAKING_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})


def call_after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Runs ``callback`` once after the session's current transaction commits.

    Never before: a task sent before its rows commit would find nothing. A
    rollback of the whole transaction drops the callback. A callback that
    raises is logged, not raised: the transaction has already committed.
    """
    callbacks: list[Callable[[], None]] | None = session.info.get(_AFTER_COMMIT)
    if callbacks is None:
        callbacks = session.info[_AFTER_COMMIT] = []
        event.listen(session, "after_commit", _run_after_commit)
        event.listen(session, "after_soft_rollback", _drop_after_commit)
    if callback not in callbacks:
        callbacks.append(callback)


def _run_after_commit(session: Session) -> None:
    callbacks: list[Callable[[], None]] = session.info.get(_AFTER_COMMIT, [])
    due, callbacks[:] = list(callbacks), []
    for callback in due:
        try:
            callback()
        except Exception:
            log.exception("after-commit callback %r failed; the outbox keeps the rows", callback)


def _drop_after_commit(session: Session, previous_transaction: SessionTransaction) -> None:
    # A savepoint's rollback keeps them: the outer transaction may still commit,
    # and a spare request to send is harmless (the sender reads committed rows).
    if previous_transaction.parent is None:
        session.info.get(_AFTER_COMMIT, []).clear()


def request_delivery(session: Session) -> None:
    """Asks for the sender to run after this transaction commits, if an entry point
    installed a task sender in ``session.info[TASK_SENDER]``."""
    sender: Callable[[], None] | None = session.info.get(TASK_SENDER)
    if sender is not None:
        call_after_commit(session, sender)


def enqueue_notification(
    session: Session,
    *,
    recipient_email: str,
    kind: str,
    subject: str,
    body: str,
    dedupe_key: str,
    recipient_user_id: int | None = None,
    now: datetime | None = None,
) -> int | None:
    """Writes one outbox row in the caller's transaction; returns its id.

    A ``dedupe_key`` already in the outbox writes nothing and returns None.
    The subject is made one line of at most SUBJECT_MAX_LENGTH characters
    (:func:`subject_line`), so no title a user may give refuses the event.
    Raises InvalidInput for a recipient that is not one address, or an empty
    or overlong key: a builder's bug, not the user's.
    """
    _check_message(recipient_email, dedupe_key)
    at = now or utcnow()
    dialect = session.get_bind().dialect.name
    builder = postgresql.insert if dialect == "postgresql" else sqlite.insert
    created = session.execute(
        builder(OUTBOX)
        .values(
            recipient_user_id=recipient_user_id,
            recipient_email=recipient_email.strip(),
            kind=kind,
            subject=subject_line(subject),
            body=body,
            dedupe_key=dedupe_key,
            created_at=at,
            next_attempt_at=at,
            attempts=0,
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(OUTBOX.c.id)
    ).scalar()
    if created is not None:
        request_delivery(session)
    return created


def subject_line(text: str) -> str:
    """``text`` as a mail subject: one line, at most SUBJECT_MAX_LENGTH characters.

    Control characters and line breaks become spaces (a break would start a
    forged header), lone surrogates (unencodable) become U+FFFD, runs of
    whitespace one space; a longer subject is cut and ends with an ellipsis.
    """
    line = " ".join("".join(map(_subject_char, text)).split()) or "(no subject)"
    if len(line) <= SUBJECT_MAX_LENGTH:
        return line
    return line[: SUBJECT_MAX_LENGTH - 1].rstrip() + ELLIPSIS


def _subject_char(char: str) -> str:
    category = unicodedata.category(char)
    if category in _BREAKING_CATEGORIES:
        return " "
    return "\ufffd" if category == "Cs" else char


def _check_message(recipient_email: str, dedupe_key: str) -> None:
    if "@" not in recipient_email or any(c in recipient_email for c in "\r\n,"):
        raise InvalidInput(f"{recipient_email!r} is not one e-mail address")
    if not dedupe_key.strip() or len(dedupe_key) > 300:
        raise InvalidInput("a notification needs a dedupe key of 1 to 300 characters")


# Mails that carry a one-time secret (a password reset link): once sent, the outbox
# keeps a note in place of the body, so the database never holds a usable link.
KIND_RESET_LINK = "password_reset_link"
ONE_TIME_SECRET_KINDS = frozenset({KIND_RESET_LINK})
SENT_LINK_NOTE = "(sent; this message carried a one-time link, which is not kept)"


def send_pending(
    session: Session,
    *,
    mailer: Mailer,
    limit: int = 100,
    mail_from: str = "credits@localhost",
    now: datetime | None = None,
) -> SendReport:
    """Sends up to ``limit`` due outbox rows, oldest first, and marks each sent.

    A failed send counts an attempt, keeps the error and is retried after an
    exponential backoff; after MAX_ATTEMPTS the row stays unsent for ops.
    Safe to run twice or concurrently: sent rows are never claimed again.
    """
    if limit < 1:
        raise InvalidInput("limit must be at least 1")
    at = now or utcnow()
    report = SendReport()
    for row in _claim_due(session, limit=limit, now=at):
        message = build_message(
            sender=mail_from,
            recipient=row.recipient_email,
            subject=row.subject,
            body=row.body,
            message_key=_message_key(row),
        )
        row.attempts += 1
        try:
            mailer.send(message)
        except Exception as error:
            _record_failure(row, error, at, report)
        else:
            row.sent_at = at
            row.last_error = None
            if row.kind in ONE_TIME_SECRET_KINDS:
                row.body = SENT_LINK_NOTE
            report.sent.append(row.id)
        session.flush()
    return report


def _claim_due(session: Session, *, limit: int, now: datetime) -> list[OutboxMessage]:
    query = (
        select(OutboxMessage)
        .where(
            OutboxMessage.sent_at.is_(None),
            OutboxMessage.attempts < MAX_ATTEMPTS,
            OutboxMessage.next_attempt_at <= now,
        )
        .order_by(OutboxMessage.id)
        .limit(limit)
        # PostgreSQL only; SQLite's BEGIN IMMEDIATE already makes this the one writer.
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    return list(session.scalars(query))


def _record_failure(
    row: OutboxMessage, error: Exception, now: datetime, report: SendReport
) -> None:
    row.last_error = f"{type(error).__name__}: {error}"[:MAX_ERROR_LENGTH]
    row.next_attempt_at = now + backoff(row.attempts)
    if row.attempts >= MAX_ATTEMPTS:
        log.error("outbox %s gave up after %s attempts: %s", row.id, row.attempts, error)
        report.gave_up.append(row.id)
    report.failed.append(row.id)


def backoff(attempts: int) -> timedelta:
    """1, 2, 4 … minutes after the 1st, 2nd, 3rd … failure, at most six hours."""
    return timedelta(seconds=min(BACKOFF_BASE_SECONDS * 2 ** (attempts - 1), BACKOFF_MAX_SECONDS))


def _message_key(row: OutboxMessage) -> str:
    digest = hashlib.sha256(row.dedupe_key.encode("utf-8")).hexdigest()[:16]
    return f"credits.outbox.{row.id}.{digest}"


def list_notifications(
    session: Session, *, pending: bool = False, limit: int = 100
) -> list[OutboxOut]:
    """Newest first; ``pending`` keeps only unsent rows (including given-up ones)."""
    query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
    if pending:
        query = query.where(OutboxMessage.sent_at.is_(None))
    return [OutboxOut.model_validate(row) for row in session.scalars(query)]


def get_notification(session: Session, *, notification_id: int) -> OutboxOut | None:
    row = session.get(OutboxMessage, notification_id, populate_existing=True)
    return None if row is None else OutboxOut.model_validate(row)


__all__: list[str] = [
    "TASK_SENDER",
    "backoff",
    "call_after_commit",
    "enqueue_notification",
    "get_notification",
    "list_notifications",
    "request_delivery",
    "send_pending",
]
