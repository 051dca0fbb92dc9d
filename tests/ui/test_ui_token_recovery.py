"""An API token made from a stolen portal session does not outlive the account's
recovery: signing out everywhere and a password reset revoke every token of the
account, and the account page's new password does too unless its box is cleared.
The pages say so."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from ui_flows import CSRF, researchers_with_password, text_of
from ui_sign_in import sign_in_as

from credits.app import create_app
from credits.identity.actor import Actor
from credits.identity.models import User
from credits.identity.tokens import create_token
from credits.notifications.models import OutboxMessage
from credits.notifications.password_mail import KIND_RESET_LINK
from credits.settings import load_settings

EMAIL = "ada@uni.edu"
OTHER = "grace@uni.edu"
OLD = "correct horse battery staple"
NEW = "staple battery horse correct"
SYSTEM = Actor.system("tests")
_SECRET = re.compile(r"crd_[A-Za-z0-9_\-]{43}")
_LINK = re.compile(r"/reset-password/(\S+)")


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    researchers_with_password(joined_session_factory, (EMAIL, OTHER), OLD)
    return create_app(load_settings(), session_factory=joined_session_factory)


def _signed_in(app: Flask, session: Session, email: str = EMAIL) -> FlaskClient:
    client = app.test_client()
    user_id = session.scalars(select(User.id).where(User.email == email)).one()
    sign_in_as(client, user_id, csrf_token=CSRF)
    return client


def _token_from(client: FlaskClient) -> str:
    """What a thief holding the session does first: a year-long token with every right."""
    page = client.post("/tokens", data={"csrf_token": CSRF, "name": "mine", "days": "365"})
    found = _SECRET.search(page.get_data(as_text=True))
    assert found is not None
    return found.group(0)


def _me(app: Flask, secret: str) -> int:
    return (
        app.test_client()
        .get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
        .status_code
    )


def _other_token(session: Session) -> str:
    secret = create_token(session, email=OTHER, actor=SYSTEM).secret
    session.flush()
    return secret


def test_a_token_made_from_a_stolen_session_stops_at_sign_out_everywhere(
    app: Flask, session: Session
) -> None:
    thief = _signed_in(app, session)
    stolen = _token_from(thief)
    others = _other_token(session)
    assert _me(app, stolen) == 200

    victim = _signed_in(app, session)
    answer = victim.post("/sessions/end", data={"csrf_token": CSRF}, follow_redirects=True)

    assert _me(app, stolen) == 401
    assert _me(app, others) == 200
    assert thief.get("/account").status_code == 302
    said = text_of(answer.get_data(as_text=True))
    assert "You are signed out everywhere" in said
    assert "Revoked 1 API token of your account" in said


def test_a_token_made_from_a_stolen_session_stops_at_a_password_reset(
    app: Flask, session: Session
) -> None:
    stolen = _token_from(_signed_in(app, session))
    others = _other_token(session)
    visitor = app.test_client()
    with visitor.session_transaction() as cookie:
        cookie["csrf_token"] = CSRF
    assert (
        visitor.post("/forgot-password", data={"csrf_token": CSRF, "email": EMAIL}).status_code
        == 200
    )
    session.expire_all()
    mail = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == KIND_RESET_LINK)).one()
    found = _LINK.search(mail.body)
    assert found is not None
    form = visitor.get(f"/reset-password/{found.group(1)}").get_data(as_text=True)
    assert "every API token of it revoked" in text_of(form)

    done = visitor.post(
        f"/reset-password/{found.group(1)}",
        data={"csrf_token": CSRF, "new_password": NEW, "repeat_password": NEW},
        follow_redirects=True,
    )

    assert _me(app, stolen) == 401
    assert _me(app, others) == 200
    assert "every API token of your account is revoked" in text_of(done.get_data(as_text=True))


def test_the_tokens_page_says_sign_out_everywhere_revokes_the_tokens(
    app: Flask, session: Session
) -> None:
    page = text_of(_signed_in(app, session).get("/tokens").get_data(as_text=True))

    assert "Sign out everywhere and revoke all tokens" in page
    assert "every API token of your account is revoked" in page
    assert "API tokens are not affected" not in page


def _change(client: FlaskClient, *, revoke: bool) -> str:
    form = {
        "csrf_token": CSRF,
        "current_password": OLD,
        "new_password": NEW,
        "repeat_password": NEW,
    }
    if revoke:
        form["revoke_tokens"] = "on"
    answer = client.post("/account/password", data=form, follow_redirects=True)
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    assert page.count('role="status"') == 1  # one message, not one per change
    return text_of(page)


def test_the_password_form_offers_to_revoke_the_tokens_ticked_by_default(
    app: Flask, session: Session
) -> None:
    page = _signed_in(app, session).get("/account").get_data(as_text=True)

    assert re.search(r'<input type="checkbox" name="revoke_tokens" value="on" checked>', page)
    assert "Revoke every API token of my account too" in text_of(page)
    assert "API tokens keep working" not in text_of(page)


@pytest.mark.parametrize("revoke", [True, False])
def test_a_new_password_revokes_the_tokens_unless_the_box_is_cleared(
    app: Flask, session: Session, revoke: bool
) -> None:
    client = _signed_in(app, session)
    secret = _token_from(client)

    said = _change(client, revoke=revoke)

    assert _me(app, secret) == (401 if revoke else 200)
    assert ("Revoked 1 API token of your account" in said) is revoke
