"""Wrong current passwords on the account page count as failed sign-ins of the account,
in the same per-account and per-address limits as the sign-in form: a session left
open cannot be used to guess the password faster than ``/login`` allows."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from ui_flows import CSRF, researchers_with_password, text_of
from ui_sign_in import sign_in_as

from credits.app import create_app
from credits.identity.errors import InvalidCredentials
from credits.identity.models import User
from credits.identity.service import authenticate_password
from credits.settings import load_settings

EMAIL = "ada@uni.edu"
OTHER = "grace@uni.edu"
PASSWORD = "correct horse battery staple"
NEW = "staple battery horse correct"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def users(joined_session_factory: sessionmaker[Session]) -> None:
    researchers_with_password(joined_session_factory, (EMAIL, OTHER), PASSWORD)


def _app(factory: sessionmaker[Session], **settings: Any) -> Flask:
    return create_app(load_settings(**settings), session_factory=factory)


def _signed_in(app: Flask, session: Session, email: str = EMAIL) -> FlaskClient:
    client = app.test_client()
    user_id = session.scalars(select(User.id).where(User.email == email)).one()
    sign_in_as(client, user_id, csrf_token=CSRF)
    return client


def _change(client: FlaskClient, current: str, address: str = "192.0.2.10") -> Any:
    form = {
        "csrf_token": CSRF,
        "current_password": current,
        "new_password": NEW,
        "repeat_password": NEW,
    }
    return client.post("/account/password", data=form, environ_base={"REMOTE_ADDR": address})


def _sign_in(app: Flask, email: str, password: str, address: str = "192.0.2.10") -> int:
    client = app.test_client()
    page = client.get("/login", environ_base={"REMOTE_ADDR": address})
    token = _CSRF.search(page.get_data(as_text=True))
    assert token is not None
    form = {"email": email, "password": password, "csrf_token": token[1]}
    return client.post("/login", data=form, environ_base={"REMOTE_ADDR": address}).status_code


def _still(session: Session, password: str) -> bool:
    try:
        authenticate_password(session, email=EMAIL, password=password)
    except InvalidCredentials:
        return False
    return True


def test_guessing_the_current_password_is_throttled_even_for_the_right_one(
    users: None, joined_session_factory: sessionmaker[Session], session: Session
) -> None:
    app = _app(joined_session_factory, login_limit_per_account="3/minute")
    client = _signed_in(app, session)
    guesses = [
        _change(client, f"guess number {n}", address=f"192.0.2.{n}").status_code for n in range(3)
    ]

    right = _change(client, PASSWORD, address="198.51.100.7")

    assert guesses == [422, 422, 422]
    assert right.status_code == 429
    assert 0 < int(right.headers["Retry-After"]) <= 60
    page = right.get_data(as_text=True)
    assert 'id="e-current_password">' in page
    assert "Too many wrong passwords for this account or from your network" in text_of(page)
    assert _still(session, PASSWORD) and not _still(session, NEW)
    # The account's own page still shows; another account's form is not held up.
    assert client.get("/account").status_code == 200
    assert _change(_signed_in(app, session, OTHER), PASSWORD).status_code == 302


def test_the_account_page_and_the_sign_in_form_share_the_accounts_count(
    users: None, joined_session_factory: sessionmaker[Session], session: Session
) -> None:
    app = _app(joined_session_factory, login_limit_per_account="4/minute")
    client = _signed_in(app, session)
    for n in range(2):
        assert _sign_in(app, EMAIL, "not the password", f"192.0.2.{n}") == 401
    for n in range(2):
        assert _change(client, "not the password", f"192.0.2.{n + 2}").status_code == 422

    assert _sign_in(app, EMAIL, PASSWORD, "198.51.100.7") == 429
    assert _change(client, PASSWORD, "198.51.100.8").status_code == 429


def test_wrong_current_passwords_from_one_address_count_across_accounts(
    users: None, joined_session_factory: sessionmaker[Session], session: Session
) -> None:
    app = _app(joined_session_factory, login_limit_per_address="3/minute")
    ada, grace = _signed_in(app, session), _signed_in(app, session, OTHER)
    assert _change(ada, "wrong one").status_code == 422
    assert _change(grace, "wrong two").status_code == 422
    assert _sign_in(app, "nobody@uni.edu", "wrong three") == 401

    assert _change(grace, PASSWORD).status_code == 429
    assert _change(grace, PASSWORD, address="203.0.113.5").status_code == 302


def test_refusals_that_are_not_a_wrong_password_do_not_count(
    users: None, joined_session_factory: sessionmaker[Session], session: Session
) -> None:
    app = _app(joined_session_factory, login_limit_per_account="2/minute")
    client = _signed_in(app, session)
    form = {"csrf_token": CSRF, "current_password": PASSWORD}
    for _ in range(3):
        short = client.post(
            "/account/password", data=form | {"new_password": "short", "repeat_password": "short"}
        )
        assert short.status_code == 422
        differ = client.post(
            "/account/password", data=form | {"new_password": NEW, "repeat_password": "other"}
        )
        assert differ.status_code == 400

    assert _change(client, PASSWORD).status_code == 302
