"""The outbox: written in the event's transaction, deduplicated, kicked only after commit."""

from __future__ import annotations

import pytest
from notifications_helpers import SYSTEM, outbox
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from credits.db import session_scope
from credits.errors import InvalidInput
from credits.ledger import service as ledger
from credits.ledger.models import Account
from credits.notifications.service import (
    TASK_SENDER,
    call_after_commit,
    enqueue_notification,
    list_notifications,
)


def _enqueue(session: Session, key: str = "test:1", **overrides: str) -> int | None:
    values = {
        "recipient_email": "ada@uni.example",
        "kind": "test",
        "subject": "Hello",
        "body": "Body text.\n",
        "dedupe_key": key,
    } | overrides
    return enqueue_notification(session, **values)


class Boom(Exception):
    pass


def test_outbox_row_commits_with_its_event(joined_session_factory: sessionmaker[Session]) -> None:
    with session_scope(joined_session_factory) as session:
        ledger.open_account(session, code="notify:event", currency="gpu", actor=SYSTEM)
        row_id = _enqueue(session)

    with session_scope(joined_session_factory) as session:
        assert row_id is not None
        [row] = outbox(session)
        assert (row.id, row.recipient_email, row.sent_at, row.attempts) == (
            row_id,
            "ada@uni.example",
            None,
            0,
        )


def test_outbox_row_rolls_back_with_its_event(
    joined_session_factory: sessionmaker[Session],
) -> None:
    with pytest.raises(Boom), session_scope(joined_session_factory) as session:
        ledger.open_account(session, code="notify:event", currency="gpu", actor=SYSTEM)
        _enqueue(session)
        raise Boom

    with session_scope(joined_session_factory) as session:
        assert outbox(session) == []
        assert session.scalar(select(Account).where(Account.code == "notify:event")) is None


def test_a_repeated_dedupe_key_enqueues_nothing(any_session: Session) -> None:
    first = _enqueue(any_session, "expiry:1:2030-01-01")
    again = _enqueue(any_session, "expiry:1:2030-01-01", subject="Other subject")

    assert first is not None
    assert again is None
    [row] = outbox(any_session)
    assert row.subject == "Hello"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("recipient_email", "not-an-address"),
        ("recipient_email", "a@example.org, b@example.org"),
        ("dedupe_key", ""),
    ],
)
def test_a_bad_message_is_refused_and_nothing_is_written(
    session: Session, field: str, value: str
) -> None:
    overrides = {field: value}
    key = overrides.pop("dedupe_key", "test:bad")

    with pytest.raises(InvalidInput):
        _enqueue(session, key, **overrides)

    assert outbox(session) == []


def test_list_shows_newest_first_and_pending_only_unsent(session: Session) -> None:
    first = _enqueue(session, "test:1")
    second = _enqueue(session, "test:2")
    [row, _] = outbox(session)
    row.sent_at = row.created_at
    session.flush()

    assert [n.id for n in list_notifications(session)] == [second, first]
    assert [n.id for n in list_notifications(session, pending=True)] == [second]


class FakeTaskSender:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def _factory_with_sender(
    joined_session_factory: sessionmaker[Session], sender: FakeTaskSender
) -> sessionmaker[Session]:
    return sessionmaker(
        bind=joined_session_factory.kw["bind"],
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
        info={TASK_SENDER: sender},
    )


def test_the_task_is_sent_once_after_commit_never_before(
    joined_session_factory: sessionmaker[Session],
) -> None:
    sender = FakeTaskSender()
    factory = _factory_with_sender(joined_session_factory, sender)

    with session_scope(factory) as session:
        _enqueue(session, "test:1")
        _enqueue(session, "test:2")
        session.flush()
        assert sender.calls == 0

    assert sender.calls == 1


def test_the_task_is_not_sent_when_the_transaction_rolls_back(
    joined_session_factory: sessionmaker[Session],
) -> None:
    sender = FakeTaskSender()
    factory = _factory_with_sender(joined_session_factory, sender)

    with pytest.raises(Boom), session_scope(factory) as session:
        _enqueue(session, "test:1")
        raise Boom

    assert sender.calls == 0


def test_a_rolled_back_session_that_is_used_again_sends_only_for_the_next_commit(
    joined_session_factory: sessionmaker[Session],
) -> None:
    sender = FakeTaskSender()
    session = _factory_with_sender(joined_session_factory, sender)()
    try:
        _enqueue(session, "test:1")
        session.rollback()
        session.commit()  # an empty transaction: nothing of the rolled-back one fires
        assert sender.calls == 0

        _enqueue(session, "test:2")
        session.commit()
        assert sender.calls == 1
    finally:
        session.close()


def test_a_duplicate_enqueues_no_task(joined_session_factory: sessionmaker[Session]) -> None:
    sender = FakeTaskSender()
    factory = _factory_with_sender(joined_session_factory, sender)
    with session_scope(factory) as session:
        _enqueue(session, "test:1")
    with session_scope(factory) as session:
        _enqueue(session, "test:1")

    assert sender.calls == 1


def test_a_failing_after_commit_callback_does_not_undo_the_commit(
    joined_session_factory: sessionmaker[Session],
) -> None:
    def broken() -> None:
        raise ConnectionError("broker down")

    with session_scope(joined_session_factory) as session:
        call_after_commit(session, broken)
        _enqueue(session, "test:1")

    with session_scope(joined_session_factory) as session:
        assert len(outbox(session)) == 1
