"""Taking an account back revokes its API tokens: a password reset and signing out
everywhere revoke every token of the account (a token made with a stolen session
or password would otherwise outlive them); a voluntary password change does when
asked. Each revocation is audited as ``token.revoked``, like one by hand."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.audit.models import AuditEvent
from credits.identity import account, service, tokens
from credits.identity.actor import Actor
from credits.identity.errors import TokenRevoked, WeakPassword
from credits.identity.models import ApiToken, User
from credits.identity.password_reset import request_reset, reset_password
from credits.identity.service import actor_for_email
from credits.notifications.models import OutboxMessage

SYSTEM = Actor.system("test")
EMAIL = "ada@example.org"
OTHER = "grace@example.org"
OLD = "correct horse battery staple"
NEW = "a much newer passphrase"
LINK = "https://credits.example.org/reset-password/"


@pytest.fixture
def session(any_session: Session) -> Session:
    """SQLite, and PostgreSQL where CI runs it: the revocation locks the token rows."""
    for email in (EMAIL, OTHER):
        service.create_user(
            any_session,
            email=email,
            name="Someone",
            roles=["researcher"],
            password=OLD,
            actor=SYSTEM,
        )
    return any_session


def _secret(
    session: Session, email: str = EMAIL, *, days: int = 90, scopes: tuple[str, ...] = ()
) -> str:
    created = tokens.create_token(
        session, email=email, actor=SYSTEM, expires_in_days=days, scopes=scopes
    )
    return created.secret


def _user_id(session: Session, email: str = EMAIL) -> int:
    user_id = session.scalar(select(User.id).where(User.email == email))
    assert user_id is not None
    return user_id


def _revocations(session: Session) -> list[tuple[str, str, int]]:
    """Every ``token.revoked`` event: its actor, the token and its owner."""
    rows = session.execute(
        select(AuditEvent.actor, AuditEvent.subject_id, AuditEvent.canonical_json)
        .where(AuditEvent.event_type == "token.revoked")
        .order_by(AuditEvent.id)
    ).all()
    return [(actor, subject, json.loads(data)["data"]["user_id"]) for actor, subject, data in rows]


def _token_id(session: Session, secret: str) -> int:
    return tokens.identify_token(session, secret=secret).token_id


def _reset(session: Session, password: str = NEW) -> None:
    row_id = request_reset(session, email=EMAIL, link_for=lambda token: LINK + token, minutes=60)
    message = session.get(OutboxMessage, row_id)
    assert message is not None
    found = re.search(re.escape(LINK) + r"(\S+)", message.body)
    assert found is not None
    reset_password(session, token=found.group(1), password=password)


def test_a_password_reset_revokes_every_token_of_the_account(session: Session) -> None:
    stolen, scoped = _secret(session, days=365), _secret(session, scopes=("read",))
    ids = [_token_id(session, stolen), _token_id(session, scoped)]
    others = _secret(session, OTHER)

    _reset(session)

    for secret in (stolen, scoped):
        with pytest.raises(TokenRevoked):
            tokens.resolve_token(session, secret=secret)
    assert tokens.resolve_token(session, secret=others).email == OTHER
    owner = f"user:{_user_id(session)}"
    assert _revocations(session) == [(owner, str(i), _user_id(session)) for i in ids]


def test_a_token_revoked_before_the_reset_is_not_revoked_or_audited_again(
    session: Session,
) -> None:
    earlier = _token_id(session, _secret(session))
    tokens.revoke_token(session, token_id=earlier, actor=SYSTEM)
    stamped = session.get(ApiToken, earlier)
    assert stamped is not None and stamped.revoked_at is not None
    revoked_at = stamped.revoked_at
    live = _token_id(session, _secret(session))

    _reset(session)

    assert [subject for _, subject, _ in _revocations(session)] == [str(earlier), str(live)]
    session.expire_all()
    again = session.get(ApiToken, earlier)
    assert again is not None and again.revoked_at == revoked_at


def test_a_refused_reset_keeps_the_tokens(session: Session) -> None:
    secret = _secret(session)

    with pytest.raises(WeakPassword):
        _reset(session, password="short")

    assert tokens.resolve_token(session, secret=secret).email == EMAIL
    assert _revocations(session) == []


def test_signing_out_everywhere_ends_the_sessions_and_revokes_every_token(
    session: Session,
) -> None:
    first, second, others = _secret(session), _secret(session), _secret(session, OTHER)
    user = session.get(User, _user_id(session))
    assert user is not None
    generation = user.session_generation
    me = actor_for_email(session, EMAIL)

    assert account.sign_out_everywhere(session, actor=me) == 2

    session.expire_all()
    assert user.session_generation == generation + 1
    for secret in (first, second):
        with pytest.raises(TokenRevoked):
            tokens.resolve_token(session, secret=secret)
    assert tokens.resolve_token(session, secret=others).email == OTHER
    assert [actor for actor, _, _ in _revocations(session)] == [me.label, me.label]
    # Nothing left to revoke: a second time revokes and audits nothing more.
    assert account.sign_out_everywhere(session, actor=me) == 0
    assert len(_revocations(session)) == 2


@pytest.mark.parametrize("revoke", [True, False])
def test_a_password_change_revokes_the_tokens_only_when_asked(
    session: Session, revoke: bool
) -> None:
    secret = _secret(session)
    me = actor_for_email(session, EMAIL)

    _, revoked = account.change_password(
        session, actor=me, current=OLD, new=NEW, revoke_tokens=revoke
    )

    assert revoked == (1 if revoke else 0)
    if revoke:
        with pytest.raises(TokenRevoked):
            tokens.resolve_token(session, secret=secret)
        assert len(_revocations(session)) == 1
    else:
        assert tokens.resolve_token(session, secret=secret).email == EMAIL
        assert _revocations(session) == []
