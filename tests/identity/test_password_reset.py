"""Forgotten passwords: one-time links by e-mail (credits.identity.password_reset)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from email.message import EmailMessage

import pytest
from conftest import joined_factory
from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.audit.models import AuditEvent
from credits.db import utcnow
from credits.identity import service
from credits.identity.actor import Actor
from credits.identity.errors import InvalidCredentials, InvalidEmail, WeakPassword
from credits.identity.models import PasswordReset, User
from credits.identity.password_reset import (
    MAILS_PER_HOUR,
    ResetLinkInvalid,
    check_link,
    request_reset,
    reset_password,
)
from credits.notifications.models import OutboxMessage
from credits.notifications.password_mail import KIND_CHANGED_NOTICE, KIND_RESET_LINK
from credits.notifications.service import SENT_LINK_NOTE, send_pending

ACTOR = Actor.system("test")
OLD = "correct horse battery staple"
NEW = "a much newer passphrase"
LINK = "https://credits.example.org/reset-password/"


@pytest.fixture
def session(any_session: Session) -> Session:
    """SQLite, and PostgreSQL where CI runs it: the one-use claim is a conditional update."""
    return any_session


def _user(session: Session, email: str = "ada@example.org", password: str | None = OLD) -> User:
    created = service.create_user(
        session,
        email=email,
        name="Ada Lovelace",
        roles=["researcher"],
        password=password,
        actor=ACTOR,
    )
    user = session.get(User, created.id)
    assert user is not None
    return user


def _ask(
    session: Session, email: str = "ada@example.org", now: datetime | None = None
) -> int | None:
    return request_reset(
        session, email=email, link_for=lambda token: LINK + token, minutes=60, now=now
    )


def _token(session: Session, row_id: int | None) -> str:
    assert row_id is not None
    message = session.get(OutboxMessage, row_id)
    assert message is not None
    found = re.search(re.escape(LINK) + r"(\S+)", message.body)
    assert found is not None
    return found.group(1)


def test_a_request_mails_a_one_time_link_to_the_account(session: Session) -> None:
    user = _user(session)

    message = session.get(OutboxMessage, _ask(session))

    assert message is not None
    assert message.kind == KIND_RESET_LINK
    assert message.recipient_email == "ada@example.org"
    assert message.recipient_user_id == user.id
    assert "within 60 minutes" in message.body
    assert check_link(session, token=_token(session, message.id)) == "ada@example.org"


def test_only_a_hash_of_the_token_is_stored(session: Session) -> None:
    _user(session)
    token = _token(session, _ask(session))

    stored = session.scalars(select(PasswordReset)).one()

    assert len(token) >= 43
    assert stored.token_hash != token
    assert token not in stored.token_hash
    assert len(stored.token_hash) == 64


@pytest.mark.parametrize("email", ["nobody@example.org", "NOBODY@example.org "])
def test_an_unknown_address_gets_no_mail_and_the_same_answer(session: Session, email: str) -> None:
    _user(session)

    assert _ask(session, email) is None
    assert session.scalars(select(PasswordReset)).all() == []
    assert session.scalars(select(OutboxMessage)).all() == []


def test_an_account_without_a_password_gets_no_reset(session: Session) -> None:
    _user(session, email="oidc@example.org", password=None)

    assert _ask(session, "oidc@example.org") is None
    assert session.scalars(select(OutboxMessage)).all() == []


def test_a_deactivated_account_gets_no_reset(session: Session) -> None:
    _user(session).is_active = False

    assert _ask(session) is None


def test_text_that_is_no_address_is_refused(session: Session) -> None:
    with pytest.raises(InvalidEmail):
        _ask(session, "not an address")


def test_the_link_sets_the_password_once_and_ends_every_session(session: Session) -> None:
    user = _user(session)
    generation = user.session_generation
    token = _token(session, _ask(session))

    reset_password(session, token=token, password=NEW)
    session.refresh(user)

    assert service.authenticate_password(session, email="ada@example.org", password=NEW)
    with pytest.raises(InvalidCredentials):
        service.authenticate_password(session, email="ada@example.org", password=OLD)
    assert user.session_generation == generation + 1
    with pytest.raises(ResetLinkInvalid):
        reset_password(session, token=token, password="yet another passphrase")


def test_a_reset_is_audited_without_personal_data_and_noticed_by_mail(session: Session) -> None:
    user = _user(session)
    token = _token(session, _ask(session))

    reset_password(session, token=token, password=NEW)

    event = session.scalars(
        select(AuditEvent).where(AuditEvent.event_type == "user.password_reset")
    ).one()
    assert (event.actor, event.subject_id) == (f"user:{user.id}", str(user.id))
    assert "ada" not in event.canonical_json.lower()
    assert token not in event.canonical_json
    notice = session.scalars(
        select(OutboxMessage).where(OutboxMessage.kind == KIND_CHANGED_NOTICE)
    ).one()
    assert notice.recipient_email == "ada@example.org"
    assert "was changed" in notice.subject
    assert token not in notice.body


def test_an_expired_link_is_refused(session: Session) -> None:
    _user(session)
    token = _token(session, _ask(session))
    later = utcnow() + timedelta(minutes=61)

    with pytest.raises(ResetLinkInvalid):
        check_link(session, token=token, now=later)
    with pytest.raises(ResetLinkInvalid):
        reset_password(session, token=token, password=NEW, now=later)


def test_a_later_request_ends_the_earlier_link(session: Session) -> None:
    _user(session)
    first = _token(session, _ask(session))
    second = _token(session, _ask(session))

    with pytest.raises(ResetLinkInvalid):
        check_link(session, token=first)
    assert check_link(session, token=second) == "ada@example.org"


def test_a_password_changed_another_way_ends_the_link(session: Session) -> None:
    _user(session)
    token = _token(session, _ask(session))

    service.set_password(session, email="ada@example.org", password=NEW, actor=ACTOR)

    with pytest.raises(ResetLinkInvalid):
        reset_password(session, token=token, password="yet another passphrase")


@pytest.mark.parametrize("token", ["", "x", "A" * 43, "A" * 5000])
def test_an_unknown_token_is_refused(session: Session, token: str) -> None:
    _user(session)
    _ask(session)

    with pytest.raises(ResetLinkInvalid):
        reset_password(session, token=token, password=NEW)


def test_a_weak_password_is_refused_and_the_link_still_works(session: Session) -> None:
    _user(session)
    token = _token(session, _ask(session))

    with pytest.raises(WeakPassword):
        reset_password(session, token=token, password="short")

    assert check_link(session, token=token) == "ada@example.org"
    assert session.scalars(select(PasswordReset)).one().used_at is None


def test_one_account_gets_a_few_links_an_hour_whatever_the_client(session: Session) -> None:
    _user(session)
    now = utcnow()

    sent = [_ask(session, now=now + timedelta(minutes=n)) for n in range(MAILS_PER_HOUR + 2)]
    an_hour_later = _ask(session, now=now + timedelta(minutes=MAILS_PER_HOUR + 61))

    assert all(row is not None for row in sent[:MAILS_PER_HOUR])
    assert sent[MAILS_PER_HOUR:] == [None, None]
    assert an_hour_later is not None


class _KeepingMailer:
    def __init__(self) -> None:
        self.bodies: list[str] = []

    def send(self, message: EmailMessage) -> None:
        self.bodies.append(str(message.get_content()))


def test_a_sent_link_is_not_kept_in_the_outbox(session: Session) -> None:
    _user(session)
    row_id = _ask(session)
    token = _token(session, row_id)
    mailer = _KeepingMailer()

    send_pending(joined_factory(session), mailer=mailer, now=utcnow() + timedelta(seconds=1))

    assert len(mailer.bodies) == 1 and token in mailer.bodies[0]
    message = session.get(OutboxMessage, row_id)
    assert message is not None and message.sent_at is not None
    assert token not in message.body
    assert message.body == SENT_LINK_NOTE
    assert check_link(session, token=token) == "ada@example.org"
