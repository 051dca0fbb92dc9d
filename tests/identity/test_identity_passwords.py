"""Password hashing, setting a password, and logging in with one."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.audit.models import AuditEvent
from credits.audit.service import list_events
from credits.identity import service
from credits.identity.actor import Actor
from credits.identity.errors import (
    AccountInactive,
    InvalidCredentials,
    UserNotFound,
    WeakPassword,
)
from credits.identity.models import Role, User
from credits.identity.passwords import hash_password, needs_rehash, verify_password

ACTOR = Actor.system("test")
PASSWORD = "correct horse battery staple"


def _user(session: Session, *, password: str | None = PASSWORD) -> User:
    created = service.create_user(
        session,
        email="ada@example.org",
        name="Ada Lovelace",
        roles=["researcher", "funder"],
        password=password,
        actor=ACTOR,
    )
    user = session.get(User, created.id)
    assert user is not None
    return user


def test_a_hash_verifies_its_password_and_no_other() -> None:
    hashed = hash_password(PASSWORD)

    assert hashed.startswith("$argon2id$")
    assert PASSWORD not in hashed
    assert verify_password(password_hash=hashed, password=PASSWORD)
    assert not verify_password(password_hash=hashed, password=PASSWORD + "!")


def test_the_same_password_hashes_differently_each_time() -> None:
    assert hash_password(PASSWORD) != hash_password(PASSWORD)


def test_a_corrupt_hash_verifies_nothing_and_needs_rehash() -> None:
    assert not verify_password(password_hash="not-a-hash", password=PASSWORD)
    assert needs_rehash("not-a-hash")


def test_a_hash_with_current_parameters_needs_no_rehash() -> None:
    assert not needs_rehash(hash_password(PASSWORD))


def test_a_hash_with_weaker_parameters_needs_rehash() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)

    assert needs_rehash(weak)
    assert verify_password(password_hash=weak, password=PASSWORD)


def test_create_user_stores_only_an_argon2_hash(session: Session) -> None:
    user = _user(session)

    assert user.password_hash is not None
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash


def test_authenticate_password_returns_the_users_actor(session: Session) -> None:
    user = _user(session)

    actor = service.authenticate_password(session, email=" ADA@example.org", password=PASSWORD)

    assert actor.user_id == user.id
    assert actor.label == f"user:{user.id}"
    assert actor.email == "ada@example.org"
    assert actor.roles == frozenset({Role.RESEARCHER, Role.FUNDER})
    assert actor.scopes is None
    assert actor.token_id is None


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("ada@example.org", "wrong password, quite long"),
        ("nobody@example.org", PASSWORD),
        ("ada@example.org", ""),
        ("ada@example.org", "x" * 5000),
    ],
)
def test_a_wrong_password_or_unknown_email_gets_the_same_refusal(
    session: Session, email: str, password: str
) -> None:
    _user(session)

    with pytest.raises(InvalidCredentials) as raised:
        service.authenticate_password(session, email=email, password=password)

    assert type(raised.value) is InvalidCredentials
    assert raised.value.detail == service.BAD_CREDENTIALS
    assert raised.value.status == 401


def test_a_user_without_a_password_cannot_log_in_with_one(session: Session) -> None:
    _user(session, password=None)

    with pytest.raises(InvalidCredentials) as raised:
        service.authenticate_password(session, email="ada@example.org", password=PASSWORD)

    assert raised.value.detail == service.BAD_CREDENTIALS


def test_an_inactive_user_is_refused_after_the_right_password(session: Session) -> None:
    _user(session).is_active = False
    session.flush()

    with pytest.raises(AccountInactive) as raised:
        service.authenticate_password(session, email="ada@example.org", password=PASSWORD)

    assert "deactivated" in raised.value.detail


def test_an_inactive_user_with_a_wrong_password_learns_nothing_more(session: Session) -> None:
    _user(session).is_active = False
    session.flush()

    with pytest.raises(InvalidCredentials) as raised:
        service.authenticate_password(session, email="ada@example.org", password="wrong one here")

    assert type(raised.value) is InvalidCredentials


def test_login_upgrades_a_hash_made_with_weaker_parameters(session: Session) -> None:
    user = _user(session)
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    user.password_hash = weak
    session.flush()

    service.authenticate_password(session, email="ada@example.org", password=PASSWORD)

    assert user.password_hash != weak
    assert user.password_hash is not None
    assert not needs_rehash(user.password_hash)


def test_set_password_replaces_the_password_and_appends_an_event(session: Session) -> None:
    user = _user(session)

    service.set_password(
        session, email="ada@example.org", password="a new long password", actor=ACTOR
    )

    service.authenticate_password(session, email="ada@example.org", password="a new long password")
    with pytest.raises(InvalidCredentials):
        service.authenticate_password(session, email="ada@example.org", password=PASSWORD)
    events = list_events(session, subject_type="user", subject_id=str(user.id))
    assert events[-1].event_type == "user.password_set"
    assert "argon2" not in events[-1].canonical_json
    assert "a new long password" not in events[-1].canonical_json


def test_a_short_password_is_refused_and_the_old_one_kept(session: Session) -> None:
    user = _user(session)
    old_hash = user.password_hash
    events_before = len(session.scalars(select(AuditEvent.id)).all())

    with pytest.raises(WeakPassword):
        service.set_password(session, email="ada@example.org", password="too short", actor=ACTOR)

    assert user.password_hash == old_hash
    assert len(session.scalars(select(AuditEvent.id)).all()) == events_before


def test_set_password_for_an_unknown_user_is_not_found(session: Session) -> None:
    with pytest.raises(UserNotFound):
        service.set_password(
            session, email="nobody@example.org", password="long enough password", actor=ACTOR
        )
