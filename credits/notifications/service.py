"""The outbox: enqueue in the event's transaction, send after commit, retry with backoff.

Delivery is at least once. The sender claims one due row at a time in a short
transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two workers never claim
the same row; SQLite has one writer) that leases it for CLAIM_LEASE, sends it with
no transaction open, and records the result in another short transaction. A crash
between the send and that record sends the message again once the lease lapses.
Each message's Message-ID is stable per row, so a receiver can drop the repeat.
"""

from __future__ import annotations

import hashlib
import logging
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Select, Table, event, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, SessionTransaction

from credits.db import run_in_transaction, utcnow
from credits.errors import InvalidInput
from credits.identity.models import User
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
CANCELLED_LINK_NOTE = "(not sent; this message carried a one-time link, which is not kept)"
CANCELLED_NOTE = "cancelled: the recipient's account is deactivated"
# How long a claimed row belongs to the sender that claimed it: far longer than one
# SMTP delivery takes (each of its few commands waits at most SMTP_TIMEOUT_SECONDS),
# so a live sender records its result first, while the row of a sender that died
# mid-send is claimed again once the lease lapses (and may then arrive twice).
CLAIM_LEASE = timedelta(minutes=15)
# A claimed row's last_error until its result is recorded: a row still carrying it
# once its lease lapsed belongs to a sender that stopped mid-send.
SENDING_NOTE = "being sent (claimed by a sender)"
LAPSED_NOTE = "the sender stopped during the last attempt; the message may have gone out"


def send_pending(
    factory: Callable[[], Session],
    *,
    mailer: Mailer,
    limit: int = 100,
    mail_from: str = "credits@localhost",
    now: datetime | None = None,
) -> SendReport:
    """Sends up to ``limit`` due outbox rows, oldest first, and marks each sent.

    Each row is claimed in a short transaction of its own, sent with no transaction
    open, and its result recorded in another (on SQLite the database's one write
    lock is never held while a mail server answers). A failed send counts an
    attempt, keeps the error and is retried after an exponential backoff; after
    MAX_ATTEMPTS the row stays unsent for ops. A row whose recipient's account is
    deactivated is not sent: it is given up at once (:func:`_cancel`). Safe to run
    twice or concurrently: a claimed or sent row is never claimed again (a claim
    that no result follows, as when the process dies, lapses after CLAIM_LEASE).
    ``now`` fixes the clock, for tests.
    """
    if limit < 1:
        raise InvalidInput("limit must be at least 1")
    clock: Callable[[], datetime] = (lambda: now) if now is not None else utcnow
    report = SendReport()
    for _ in range(limit):
        claim = run_in_transaction(factory, lambda session: _claim_next(session, clock()))
        if claim is None:
            break
        _deliver(factory, claim, mailer=mailer, mail_from=mail_from, clock=clock, report=report)
    return report


@dataclass(frozen=True)
class _Claim:
    """What the sender needs of a claimed row once its transaction has ended."""

    id: int
    # This claim's number: each claim counts an attempt, so a later claim of the
    # same row (after the lease lapsed) has another.
    attempts: int
    kind: str
    recipient_email: str
    subject: str
    body: str
    dedupe_key: str


def _claim_next(session: Session, now: datetime) -> _Claim | None:
    """Leases the oldest due row to this sender: counts the attempt and moves its
    next attempt to the lease's end, so no other sender claims it meanwhile.
    Cancels the rows of deactivated recipients it meets on the way."""
    while (found := session.execute(_due_query(now)).first()) is not None:
        row, active = found
        if row.attempts >= MAX_ATTEMPTS:
            _give_up_lapsed(session, row)
            continue
        if active is False:  # None: no user (an address only), or the user was deleted
            _cancel(session, row)
            continue
        row.attempts += 1
        row.next_attempt_at = now + CLAIM_LEASE
        row.last_error = SENDING_NOTE
        session.flush()
        return _Claim(
            id=row.id,
            attempts=row.attempts,
            kind=row.kind,
            recipient_email=row.recipient_email,
            subject=row.subject,
            body=row.body,
            dedupe_key=row.dedupe_key,
        )
    return None


def _due_query(now: datetime) -> Select[OutboxMessage, bool]:
    return (
        select(OutboxMessage, User.is_active)
        .outerjoin(User, User.id == OutboxMessage.recipient_user_id)
        .where(
            OutboxMessage.sent_at.is_(None),
            or_(
                OutboxMessage.attempts < MAX_ATTEMPTS,
                # The last attempt's lease lapsed with no result: given up below.
                OutboxMessage.last_error == SENDING_NOTE,
            ),
            OutboxMessage.next_attempt_at <= now,
        )
        .order_by(OutboxMessage.id)
        .limit(1)
        # PostgreSQL only: a row another sender is claiming right now is skipped,
        # not waited for; once that claim commits, its lease keeps the row out of
        # this query. SQLite's BEGIN IMMEDIATE makes each claim the only writer.
        .with_for_update(skip_locked=True, of=OutboxMessage)
        .execution_options(populate_existing=True)
    )


def _give_up_lapsed(session: Session, row: OutboxMessage) -> None:
    """The last attempt's sender stopped before recording its result: the row is given
    up, saying so, rather than left unsent with nothing for ops to read."""
    row.last_error = LAPSED_NOTE
    session.flush()
    log.error("outbox %s gave up: %s", row.id, LAPSED_NOTE)


def _cancel(session: Session, row: OutboxMessage) -> None:
    """Gives the row up for good: a deactivated user gets no notifications. The
    outbox has no state of its own for this; MAX_ATTEMPTS is the terminal
    "never to be sent" state the sender, ``list --pending`` and ops already know."""
    row.attempts = MAX_ATTEMPTS
    row.last_error = CANCELLED_NOTE
    if row.kind in ONE_TIME_SECRET_KINDS:
        row.body = CANCELLED_LINK_NOTE
    session.flush()
    log.info("outbox %s not sent: its recipient's account is deactivated", row.id)


def _deliver(
    factory: Callable[[], Session],
    claim: _Claim,
    *,
    mailer: Mailer,
    mail_from: str,
    clock: Callable[[], datetime],
    report: SendReport,
) -> None:
    message = build_message(
        sender=mail_from,
        recipient=claim.recipient_email,
        subject=claim.subject,
        body=claim.body,
        message_key=_message_key(claim.id, claim.dedupe_key),
    )
    try:
        mailer.send(message)
    except Exception as error:
        _note_failure(factory, claim, error, clock(), report)
        return
    run_in_transaction(factory, lambda session: _record_sent(session, claim, clock()))
    report.sent.append(claim.id)


def _note_failure(
    factory: Callable[[], Session],
    claim: _Claim,
    error: Exception,
    now: datetime,
    report: SendReport,
) -> None:
    run_in_transaction(factory, lambda session: _record_failure(session, claim, error, now))
    report.failed.append(claim.id)
    if claim.attempts >= MAX_ATTEMPTS:
        log.error("outbox %s gave up after %s attempts: %s", claim.id, claim.attempts, error)
        report.gave_up.append(claim.id)


def _record_sent(session: Session, claim: _Claim, now: datetime) -> None:
    # Whether or not the lease lapsed meanwhile: the message has been accepted.
    values: dict[str, object] = {"sent_at": now, "last_error": None}
    if claim.kind in ONE_TIME_SECRET_KINDS:
        values["body"] = SENT_LINK_NOTE
    session.execute(
        update(OUTBOX).where(OUTBOX.c.id == claim.id, OUTBOX.c.sent_at.is_(None)).values(values)
    )


def _record_failure(session: Session, claim: _Claim, error: Exception, now: datetime) -> None:
    # Only while the row is still this claim's: after a lapsed lease another sender
    # owns it, and its lease must stand.
    session.execute(
        update(OUTBOX)
        .where(
            OUTBOX.c.id == claim.id,
            OUTBOX.c.attempts == claim.attempts,
            OUTBOX.c.sent_at.is_(None),
        )
        .values(
            last_error=f"{type(error).__name__}: {error}"[:MAX_ERROR_LENGTH],
            next_attempt_at=now + backoff(claim.attempts),
        )
    )


def backoff(attempts: int) -> timedelta:
    """1, 2, 4 … minutes after the 1st, 2nd, 3rd … failure, at most six hours."""
    return timedelta(seconds=min(BACKOFF_BASE_SECONDS * 2 ** (attempts - 1), BACKOFF_MAX_SECONDS))


def _message_key(row_id: int, dedupe_key: str) -> str:
    digest = hashlib.sha256(dedupe_key.encode("utf-8")).hexdigest()[:16]
    return f"credits.outbox.{row_id}.{digest}"


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
