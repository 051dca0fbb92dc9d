"""The forgotten-password pages: ask for a link from the sign-in page, get the same
answer whoever asks, choose a new password with the mailed link (once), every session
of the account ends. Bad input is shown at its field and changes nothing; requests
are throttled per address asked about and per client address."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from ui_flows import CSRF, text_of
from ui_sign_in import sign_in_as
from werkzeug.test import TestResponse

from admin_ui import sessions
from credits.app import create_app
from credits.db import session_scope
from credits.identity.actor import Actor
from credits.identity.models import Role, User
from credits.identity.service import authenticate_password, create_user
from credits.notifications.models import OutboxMessage
from credits.notifications.password_mail import KIND_CHANGED_NOTICE, KIND_RESET_LINK
from credits.settings import load_settings

EMAIL = "ada@uni.edu"
OLD = "correct horse battery staple"
NEW = "staple battery horse correct"
SENT = "If an account with that address exists"
_LINK = re.compile(r"(https?://\S+/reset-password/(\S+))")


def _app(factory: sessionmaker[Session], **settings: Any) -> Flask:
    return create_app(load_settings(**settings), session_factory=factory)


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    with session_scope(joined_session_factory) as db:
        for email, password in ((EMAIL, OLD), ("oidc@uni.edu", None)):
            create_user(
                db,
                email=email,
                name=email.split("@")[0],
                roles=(Role.RESEARCHER,),
                actor=Actor.system("tests"),
                password=password,
            )
    return _app(joined_session_factory, public_url="https://credits.example.org")


def _client(app: Flask, base_url: str = "http://localhost") -> FlaskClient:
    client = app.test_client()
    with client.session_transaction(base_url=base_url) as cookie:
        cookie[sessions.CSRF_FIELD] = CSRF
    return client


def _ask(client: FlaskClient, email: str, address: str = "192.0.2.10") -> TestResponse:
    return client.post(
        "/forgot-password",
        data={"csrf_token": CSRF, "email": email},
        environ_base={"REMOTE_ADDR": address},
    )


def _choose(client: FlaskClient, token: str, new: str, repeat: str | None = None) -> TestResponse:
    form = {"csrf_token": CSRF, "new_password": new, "repeat_password": repeat or new}
    return client.post(f"/reset-password/{token}", data=form)


def _mails(session: Session, kind: str) -> list[OutboxMessage]:
    session.expire_all()
    query = select(OutboxMessage).where(OutboxMessage.kind == kind).order_by(OutboxMessage.id)
    return list(session.scalars(query))


def _token(session: Session) -> str:
    found = _LINK.search(_mails(session, KIND_RESET_LINK)[-1].body)
    assert found is not None
    return found.group(2)


def test_the_sign_in_page_links_to_the_request_form(app: Flask) -> None:
    login = app.test_client().get("/login").get_data(as_text=True)
    assert 'href="/forgot-password"' in login
    form = app.test_client().get("/forgot-password")
    assert form.status_code == 200
    assert "Send me a link" in form.get_data(as_text=True)


def test_the_mail_carries_a_link_to_the_public_origin(app: Flask, session: Session) -> None:
    response = _ask(_client(app), " ADA@uni.edu ")

    assert response.status_code == 200
    assert SENT in text_of(response.get_data(as_text=True))
    (mail,) = _mails(session, KIND_RESET_LINK)
    assert mail.recipient_email == EMAIL
    found = _LINK.search(mail.body)
    assert found is not None
    assert found.group(1).startswith("https://credits.example.org/reset-password/")


def test_a_forged_host_does_not_change_the_link(app: Flask, session: Session) -> None:
    forged = "http://evil.example.com"
    response = _client(app, forged).post(
        "/forgot-password", data={"csrf_token": CSRF, "email": EMAIL}, base_url=forged
    )
    assert response.status_code == 200
    body = _mails(session, KIND_RESET_LINK)[0].body
    assert "evil.example.com" not in body
    assert "https://credits.example.org/reset-password/" in body


@pytest.mark.parametrize("email", ["nobody@uni.edu", "oidc@uni.edu"])
def test_unknown_and_institution_only_addresses_get_the_same_answer_and_no_mail(
    app: Flask, session: Session, email: str
) -> None:
    known = _ask(_client(app), EMAIL)
    other = _ask(_client(app), email)

    assert (other.status_code, other.get_data()) == (known.status_code, known.get_data())
    assert [mail.recipient_email for mail in _mails(session, KIND_RESET_LINK)] == [EMAIL]


@pytest.mark.parametrize(
    ("email", "message"),
    [("", "enter the e-mail address you sign in with"), ("not an address", "valid email")],
)
def test_a_blank_or_malformed_address_is_a_form_error(
    app: Flask, session: Session, email: str, message: str
) -> None:
    response = _ask(_client(app), email)

    assert response.status_code == 400
    assert message in text_of(response.get_data(as_text=True))
    assert _mails(session, KIND_RESET_LINK) == []


def test_the_link_sets_a_new_password_once_and_signs_every_browser_out(
    app: Flask, session: Session
) -> None:
    signed_in = app.test_client()
    user_id = session.scalars(select(User.id).where(User.email == EMAIL)).one()
    sign_in_as(signed_in, user_id)
    assert signed_in.get("/account").status_code == 200
    client = _client(app)
    _ask(client, EMAIL)
    token = _token(session)

    form = client.get(f"/reset-password/{token}")
    assert form.status_code == 200
    assert form.headers["Referrer-Policy"] == "no-referrer"
    assert EMAIL in form.get_data(as_text=True)
    done = _choose(client, token, NEW)

    assert done.status_code == 302
    assert done.headers["Location"].endswith("/login")
    assert authenticate_password(session, email=EMAIL, password=NEW)
    assert signed_in.get("/account").headers["Location"].startswith("/login")
    (notice,) = _mails(session, KIND_CHANGED_NOTICE)
    assert notice.recipient_email == EMAIL
    again = _choose(client, token, "yet another passphrase")
    assert again.status_code == 410
    assert "Ask for a new link" in again.get_data(as_text=True)


def test_two_different_passwords_and_a_short_one_are_form_errors(
    app: Flask, session: Session
) -> None:
    client = _client(app)
    _ask(client, EMAIL)
    token = _token(session)

    differ = _choose(client, token, NEW, "something else entirely")
    short = _choose(client, token, "short")

    assert differ.status_code == 400
    assert "the two new passwords differ" in text_of(differ.get_data(as_text=True))
    assert short.status_code == 422
    assert "at least 12 characters" in text_of(short.get_data(as_text=True))
    assert authenticate_password(session, email=EMAIL, password=OLD)
    assert client.get(f"/reset-password/{token}").status_code == 200


def test_an_unknown_link_is_gone(app: Flask) -> None:
    response = app.test_client().get("/reset-password/not-a-token")
    assert response.status_code == 410
    assert "This link has expired" in text_of(response.get_data(as_text=True))


def test_requests_for_one_address_are_throttled_from_any_network(
    joined_session_factory: sessionmaker[Session], session: Session
) -> None:
    app = _app(joined_session_factory, reset_link_limit_per_account="2/minute")
    answers = [
        _ask(_client(app), "nobody@uni.edu", address=f"192.0.2.{n}").status_code for n in range(3)
    ]
    other = _ask(_client(app), "somebody@uni.edu", address="192.0.2.9")

    assert answers == [200, 200, 429]
    assert other.status_code == 200


def test_requests_from_one_network_are_throttled_for_any_address(
    joined_session_factory: sessionmaker[Session],
) -> None:
    app = _app(joined_session_factory, reset_link_limit_per_address="2/minute")
    answers = [_ask(_client(app), f"user{n}@uni.edu").status_code for n in range(3)]
    elsewhere = _ask(_client(app), "user9@uni.edu", address="198.51.100.7")
    throttled = _ask(_client(app), "user8@uni.edu")

    assert answers == [200, 200, 429]
    assert elsewhere.status_code == 200
    assert "Too many reset requests" in text_of(throttled.get_data(as_text=True))
    assert throttled.headers["Retry-After"].isdigit()
