"""OIDC sign-in at the service layer: verified e-mail, binding by (issuer, subject), unlinking;
and the CLI's ``users sign-out`` and ``users unlink-oidc``."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from credits.audit.service import list_events
from credits.identity.actor import Actor
from credits.identity.cli import users
from credits.identity.errors import (
    AccountInactive,
    NoAccountForEmail,
    OidcSubjectMismatch,
    UnverifiedEmail,
)
from credits.identity.models import ApiToken, OidcIdentity, Role, User
from credits.identity.oidc import oidc_sign_in, unlink_oidc
from credits.identity.service import create_user
from credits.identity.tokens import create_token

SYSTEM = Actor.system("tests")
ISSUER = "https://login.uni.edu"
EMAIL = "ada@uni.edu"


@pytest.fixture
def db(any_session: Session) -> Session:
    """SQLite, and PostgreSQL where the suite has it."""
    return any_session


@pytest.fixture
def ada(db: Session) -> int:
    return create_user(db, email=EMAIL, name="Ada", roles=(Role.RESEARCHER,), actor=SYSTEM).id


def _sign_in(db: Session, subject: str, email: str = EMAIL, verified: object = True) -> Actor:
    return oidc_sign_in(db, issuer=ISSUER, subject=subject, email=email, email_verified=verified)


@pytest.mark.parametrize("verified", [None, False, "true", 1])
def test_only_an_email_verified_claim_of_true_is_accepted(
    db: Session, ada: int, verified: object
) -> None:
    with pytest.raises(UnverifiedEmail):
        _sign_in(db, "s-1", verified=verified)

    assert db.scalars(select(OidcIdentity)).all() == []


def test_the_first_sign_in_links_and_later_ones_need_only_the_subject(
    db: Session, ada: int
) -> None:
    assert _sign_in(db, "s-1", email="ADA@uni.edu ").user_id == ada
    assert _sign_in(db, "s-1", email="ada.lovelace@elsewhere.org").user_id == ada

    (link,) = db.scalars(select(OidcIdentity)).all()
    assert (link.user_id, link.issuer, link.subject) == (ada, ISSUER, "s-1")
    assert link.last_used_at is not None
    linked = list_events(db, subject_type="user", subject_id=str(ada))
    assert [event.event_type for event in linked].count("user.oidc_linked") == 1


def test_a_second_subject_of_the_same_issuer_is_refused(db: Session, ada: int) -> None:
    _sign_in(db, "s-1")

    with pytest.raises(OidcSubjectMismatch):
        _sign_in(db, "s-2")


def test_an_unknown_email_is_refused_and_nothing_is_linked(db: Session, ada: int) -> None:
    with pytest.raises(NoAccountForEmail, match=r"no active account uses grace@uni\.edu"):
        _sign_in(db, "s-9", email="grace@uni.edu")

    assert db.scalars(select(OidcIdentity)).all() == []


def test_a_linked_but_deactivated_account_is_refused(db: Session, ada: int) -> None:
    _sign_in(db, "s-1")
    user = db.get(User, ada)
    assert user is not None
    user.is_active = False
    db.flush()

    with pytest.raises(AccountInactive):
        _sign_in(db, "s-1")


def test_unlinking_lets_a_new_subject_link(db: Session, ada: int) -> None:
    _sign_in(db, "s-1")

    assert unlink_oidc(db, email=EMAIL, actor=SYSTEM) == 1

    assert _sign_in(db, "s-2").user_id == ada
    events = [e.event_type for e in list_events(db, subject_type="user", subject_id=str(ada))]
    assert "user.oidc_unlinked" in events


def test_the_cli_signs_a_user_out_everywhere_and_unlinks_oidc(
    session: Session, joined_session_factory: sessionmaker[Session]
) -> None:
    ada = create_user(session, email=EMAIL, name="Ada", roles=(Role.RESEARCHER,), actor=SYSTEM).id
    _sign_in(session, "s-1")
    user = session.get(User, ada)
    assert user is not None
    before = user.session_generation
    runner = CliRunner()
    obj = {"session_factory": joined_session_factory}

    signed_out = runner.invoke(users, ["sign-out", "--email", EMAIL], obj=obj)
    unlinked = runner.invoke(users, ["unlink-oidc", "--email", EMAIL], obj=obj)

    assert signed_out.exit_code == 0, signed_out.output
    assert "everywhere" in signed_out.output
    assert unlinked.exit_code == 0, unlinked.output
    assert "removed 1 OIDC link(s)" in unlinked.output
    session.expire_all()
    assert session.get(User, ada).session_generation == before + 2  # type: ignore[union-attr]
    assert session.scalars(select(OidcIdentity)).all() == []


def test_the_cli_sign_out_revokes_every_token_only_when_asked(
    session: Session, joined_session_factory: sessionmaker[Session]
) -> None:
    create_user(session, email=EMAIL, name="Ada", roles=(Role.RESEARCHER,), actor=SYSTEM)
    for name in ("laptop", "cluster"):
        create_token(session, email=EMAIL, name=name, actor=SYSTEM)
    runner = CliRunner()
    obj = {"session_factory": joined_session_factory}

    kept = runner.invoke(users, ["sign-out", "--email", EMAIL], obj=obj)
    session.expire_all()
    assert kept.exit_code == 0 and "revoked" not in kept.output
    assert all(token.revoked_at is None for token in session.scalars(select(ApiToken)))

    revoked = runner.invoke(users, ["sign-out", "--email", EMAIL, "--revoke-tokens"], obj=obj)
    session.expire_all()
    assert revoked.exit_code == 0, revoked.output
    assert "revoked 2 API token(s)" in revoked.output
    assert all(token.revoked_at is not None for token in session.scalars(select(ApiToken)))
