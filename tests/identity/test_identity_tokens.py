"""API tokens: created once, stored as a hash, expiring, scoped, revoked and resolved."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from credits.audit.models import AuditEvent
from credits.audit.service import leaf_hash, list_events
from credits.db import utcnow
from credits.identity import service
from credits.identity import tokens as token_service
from credits.identity.actor import Actor
from credits.identity.errors import (
    InvalidExpiry,
    InvalidName,
    InvalidScope,
    InvalidToken,
    TokenAlreadyRevoked,
    TokenExpired,
    TokenNotFound,
    TokenOwnerInactive,
    TokenRevoked,
    UserNotFound,
)
from credits.identity.models import ApiToken, Role, Scope, User
from credits.identity.schemas import CreatedToken

ACTOR = Actor.system("test")
EMAIL = "ada@example.org"


@pytest.fixture
def user_id(session: Session) -> int:
    return _make_user(session)


@pytest.fixture
def any_user_id(any_session: Session) -> int:
    return _make_user(any_session)


def _make_user(session: Session) -> int:
    user = service.create_user(
        session, email=EMAIL, name="Ada Lovelace", roles=["researcher", "ops"], actor=ACTOR
    )
    return user.id


def _token(session: Session, **overrides: Any) -> CreatedToken:
    return token_service.create_token(session, email=EMAIL, actor=ACTOR, **overrides)


def _counts(session: Session) -> tuple[int, int]:
    tokens = session.scalar(select(func.count()).select_from(ApiToken)) or 0
    events = session.scalar(select(func.count()).select_from(AuditEvent)) or 0
    return tokens, events


def test_token_secret_is_returned_once_and_only_its_hash_is_stored(
    any_session: Session, any_user_id: int
) -> None:
    created = _token(any_session, name="laptop")

    secret = created.secret
    assert secret.startswith("crd_")
    assert len(secret) == 4 + 43
    row = any_session.get(ApiToken, created.token.id)
    assert row is not None
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in (row.secret_hash, row.prefix, row.name, row.scopes)
    assert row.prefix == secret[:12] == created.token.prefix
    assert row.user_id == any_user_id
    assert secret not in repr(created)
    assert all(secret not in t.model_dump_json() for t in token_service.list_tokens(any_session))


def test_two_tokens_never_share_a_secret(session: Session, user_id: int) -> None:
    assert _token(session).secret != _token(session).secret


def test_a_token_expires_in_90_days_by_default(session: Session, user_id: int) -> None:
    before = utcnow()

    token = _token(session).token

    assert token.expires_at is not None
    assert before + timedelta(days=90) <= token.expires_at <= utcnow() + timedelta(days=90)
    assert token.expires_at - token.created_at == timedelta(days=90)


def test_a_token_may_never_expire(session: Session, user_id: int) -> None:
    assert _token(session, expires_in_days=None).token.expires_at is None


@pytest.mark.parametrize("days", [1, 3650])
def test_expiry_at_the_bounds_is_accepted(session: Session, user_id: int, days: int) -> None:
    token = _token(session, expires_in_days=days).token

    assert token.expires_at is not None
    assert token.expires_at - token.created_at == timedelta(days=days)


@pytest.mark.parametrize("days", [0, -1, 3651, True])
def test_expiry_outside_one_to_3650_days_is_refused_and_changes_nothing(
    session: Session, user_id: int, days: int
) -> None:
    before = _counts(session)

    with pytest.raises(InvalidExpiry):
        _token(session, expires_in_days=days)

    assert _counts(session) == before


def test_scopes_are_stored_sorted_space_separated_and_distinct(
    session: Session, user_id: int
) -> None:
    created = _token(session, scopes=["write", "READ", Scope.METER, "read"])

    row = session.get(ApiToken, created.token.id)
    assert row is not None
    assert row.scopes == "meter read write"
    assert created.token.scopes == [Scope.METER, Scope.READ, Scope.WRITE]


def test_a_token_without_scopes_lists_none(session: Session, user_id: int) -> None:
    created = _token(session)

    assert created.token.scopes == []
    assert session.get(ApiToken, created.token.id) is not None


def test_an_unknown_scope_is_refused_naming_the_allowed_ones(
    session: Session, user_id: int
) -> None:
    before = _counts(session)

    with pytest.raises(InvalidScope) as raised:
        _token(session, scopes=["read", "delete-everything"])

    assert "read, write, meter, admin" in raised.value.detail
    assert _counts(session) == before


def test_a_token_name_over_100_characters_is_refused(session: Session, user_id: int) -> None:
    with pytest.raises(InvalidName):
        _token(session, name="x" * 101)


def test_a_token_for_an_unknown_user_is_refused(session: Session) -> None:
    before = _counts(session)

    with pytest.raises(UserNotFound):
        token_service.create_token(session, email="nobody@example.org", actor=ACTOR)

    assert _counts(session) == before


def test_token_created_event_carries_no_secret(session: Session, user_id: int) -> None:
    created = _token(session, name="ci", scopes=["read"], expires_in_days=7)

    events = list_events(session, subject_type="api_token", subject_id=str(created.token.id))

    assert [e.event_type for e in events] == ["token.created"]
    event = events[0]
    assert leaf_hash(event.canonical_json) == event.leaf_hash
    assert created.secret not in event.canonical_json
    assert created.token.prefix not in event.canonical_json
    assert created.token.expires_at is not None
    # The owner by id only; the token's name is free text, kept out of the public log.
    assert json.loads(event.canonical_json)["data"] == {
        "user_id": user_id,
        "scopes": ["read"],
        "expires_at": created.token.expires_at.isoformat(),
    }


def test_resolve_token_returns_the_users_actor_and_marks_it_used(
    any_session: Session, any_user_id: int
) -> None:
    created = _token(any_session)

    actor = token_service.resolve_token(any_session, secret=created.secret)

    assert actor.user_id == any_user_id
    assert actor.email == EMAIL
    assert actor.roles == frozenset({Role.RESEARCHER, Role.OPS})
    assert actor.scopes is None
    assert actor.token_id == created.token.id
    row = any_session.get(ApiToken, created.token.id)
    assert row is not None
    assert row.last_used_at is not None


def test_a_scoped_token_resolves_to_an_actor_with_those_scopes(
    session: Session, user_id: int
) -> None:
    created = _token(session, scopes=["read", "meter"])

    actor = token_service.resolve_token(session, secret=created.secret)

    assert actor.scopes == frozenset({Scope.READ, Scope.METER})
    assert actor.allows_scope(Scope.READ)
    assert not actor.allows_scope(Scope.WRITE)


def test_last_used_is_written_at_most_once_a_minute(session: Session, user_id: int) -> None:
    created = _token(session)
    row = session.get(ApiToken, created.token.id)
    assert row is not None
    start = utcnow()

    token_service.resolve_token(session, secret=created.secret, now=start)
    token_service.resolve_token(session, secret=created.secret, now=start + timedelta(seconds=59))
    assert row.last_used_at == start

    later = start + timedelta(minutes=1)
    token_service.resolve_token(session, secret=created.secret, now=later)
    assert row.last_used_at == later


def test_identifying_a_token_writes_nothing_and_says_when_its_use_is_due(
    session: Session, user_id: int
) -> None:
    created = _token(session)
    row = session.get(ApiToken, created.token.id)
    assert row is not None
    start = utcnow()

    first = token_service.identify_token(session, secret=created.secret, now=start)
    assert first.use_due(start)
    assert first.actor.roles == frozenset({Role.RESEARCHER, Role.OPS})
    session.flush()
    assert row.last_used_at is None

    token_service.mark_token_used(session, token_id=first.token_id, at=start)
    soon = token_service.identify_token(
        session, secret=created.secret, now=start + timedelta(seconds=30)
    )
    assert not soon.use_due(start + timedelta(seconds=30))
    later = token_service.identify_token(
        session, secret_hash=token_service.hash_secret(created.secret)
    )
    assert later.use_due(start + timedelta(minutes=1))


def test_marking_a_use_within_the_minute_keeps_the_earlier_time(
    session: Session, user_id: int
) -> None:
    created = _token(session)
    start = utcnow()

    token_service.mark_token_used(session, token_id=created.token.id, at=start)
    # A concurrent request that read the token before the first write lands.
    token_service.mark_token_used(
        session, token_id=created.token.id, at=start + timedelta(seconds=5)
    )

    row = session.get(ApiToken, created.token.id, populate_existing=True)
    assert row is not None
    assert row.last_used_at == start


@pytest.mark.parametrize("secret", ["", "crd_", "crd_not-a-real-token", "Bearer crd_x"])
def test_an_unknown_secret_is_refused(session: Session, user_id: int, secret: str) -> None:
    _token(session)

    with pytest.raises(InvalidToken) as raised:
        token_service.resolve_token(session, secret=secret)

    assert type(raised.value) is InvalidToken
    assert raised.value.status == 401


def test_a_token_is_refused_from_the_moment_it_expires(session: Session, user_id: int) -> None:
    created = _token(session, expires_in_days=1)
    expires_at = created.token.expires_at
    assert expires_at is not None

    token_service.resolve_token(
        session, secret=created.secret, now=expires_at - timedelta(seconds=1)
    )
    with pytest.raises(TokenExpired) as raised:
        token_service.resolve_token(session, secret=created.secret, now=expires_at)

    assert "expired" in raised.value.detail
    assert raised.value.status == 401


def test_a_token_that_never_expires_resolves_years_later(session: Session, user_id: int) -> None:
    created = _token(session, expires_in_days=None)

    actor = token_service.resolve_token(
        session, secret=created.secret, now=utcnow() + timedelta(days=365 * 20)
    )

    assert actor.token_id == created.token.id


def test_a_token_of_a_deactivated_user_is_refused(session: Session, user_id: int) -> None:
    created = _token(session)
    user = session.get(User, user_id)
    assert user is not None
    user.is_active = False
    session.flush()

    with pytest.raises(TokenOwnerInactive) as raised:
        token_service.resolve_token(session, secret=created.secret)

    assert "deactivated" in raised.value.detail


def test_revoked_token_is_refused(any_session: Session, any_user_id: int) -> None:
    created = _token(any_session)

    revoked = token_service.revoke_token(any_session, token_id=created.token.id, actor=ACTOR)

    assert revoked.revoked_at is not None
    with pytest.raises(TokenRevoked) as raised:
        token_service.resolve_token(any_session, secret=created.secret)
    assert "revoked" in raised.value.detail


def test_revoke_token_appends_an_event(session: Session, user_id: int) -> None:
    created = _token(session, name="laptop")

    token_service.revoke_token(session, token_id=created.token.id, actor=ACTOR)

    events = list_events(session, subject_type="api_token", subject_id=str(created.token.id))
    assert [e.event_type for e in events] == ["token.created", "token.revoked"]
    assert json.loads(events[1].canonical_json)["data"] == {"user_id": user_id}
    assert events[1].actor == "system:test"


def test_revoking_a_revoked_token_is_refused_and_appends_nothing(
    session: Session, user_id: int
) -> None:
    created = _token(session)
    first = token_service.revoke_token(session, token_id=created.token.id, actor=ACTOR)
    before = _counts(session)

    with pytest.raises(TokenAlreadyRevoked) as raised:
        token_service.revoke_token(session, token_id=created.token.id, actor=ACTOR)

    assert raised.value.status == 409
    assert _counts(session) == before
    row = session.get(ApiToken, created.token.id)
    assert row is not None
    assert row.revoked_at == first.revoked_at


def test_revoking_an_unknown_token_is_not_found(session: Session) -> None:
    with pytest.raises(TokenNotFound):
        token_service.revoke_token(session, token_id=999_999, actor=ACTOR)


def test_list_tokens_filters_by_user_email(session: Session, user_id: int) -> None:
    mine = _token(session)
    service.create_user(
        session, email="grace@example.org", name="Grace Hopper", roles=["ops"], actor=ACTOR
    )
    theirs = token_service.create_token(session, email="grace@example.org", actor=ACTOR)

    assert [t.id for t in token_service.list_tokens(session, email="ADA@example.org")] == [
        mine.token.id
    ]
    assert [t.id for t in token_service.list_tokens(session)][-2:] == [
        mine.token.id,
        theirs.token.id,
    ]


def test_list_tokens_of_an_unknown_user_is_not_found(session: Session) -> None:
    with pytest.raises(UserNotFound):
        token_service.list_tokens(session, email="nobody@example.org")
