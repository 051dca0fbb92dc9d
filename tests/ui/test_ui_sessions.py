"""Portal sessions end on the server: a copy of the cookie stops working after sign-out,
a new password or a role change, after 8 idle hours and 7 days after sign-in, and when
the account signs out everywhere."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from admin_ui import sessions
from credits.app import create_app
from credits.db import session_scope
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import (
    create_user,
    grant_role,
    revoke_role,
    set_active,
    set_password,
)
from credits.settings import load_settings

EMAIL = "ada@uni.edu"
PASSWORD = "correct horse battery staple"
COOKIE = "credits_session"
SYSTEM = Actor.system("tests")
HOUR = 3600.0
DAY = 24 * HOUR


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    with session_scope(joined_session_factory) as db:
        create_user(
            db,
            email=EMAIL,
            name="Ada",
            roles=(Role.RESEARCHER,),
            actor=SYSTEM,
            password=PASSWORD,
        )
    return create_app(load_settings(), session_factory=joined_session_factory)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The sessions' clock; move it by changing its one value."""
    moment = [1_900_000_000.0]
    monkeypatch.setattr(sessions, "now", lambda: moment[0])
    return moment


def _signed_in(app: Flask) -> FlaskClient:
    client = app.test_client()
    assert client.get("/login").status_code == 200
    response = client.post(
        "/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": _csrf(client)}
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def _copy(app: Flask, client: FlaskClient) -> FlaskClient:
    """Another client holding a copy of ``client``'s session cookie (a captured cookie)."""
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    thief = app.test_client()
    thief.set_cookie(COOKIE, cookie.value)
    return thief


def _csrf(client: FlaskClient) -> str:
    with client.session_transaction() as cookie:
        token = cookie.get("csrf_token")
    assert isinstance(token, str)
    return token


def _assert_signed_in(client: FlaskClient) -> None:
    page = client.get("/tokens")
    assert page.status_code == 200
    assert f'<span class="who">{EMAIL}</span>' in page.get_data(as_text=True)


def _assert_refused(client: FlaskClient) -> None:
    """A page sends the browser to sign in; a script's JSON request is a 401 problem."""
    page = client.get("/tokens")
    assert page.status_code == 302
    assert page.headers["Location"].startswith("/login?next=")
    script = client.get("/jobs/1/state.json", headers={"Accept": "application/json"})
    assert script.status_code == 401
    assert script.mimetype == "application/problem+json"
    assert script.get_json()["status"] == 401


def test_a_cookie_captured_before_sign_out_stops_working(app: Flask) -> None:
    client = _signed_in(app)
    thief = _copy(app, client)
    _assert_signed_in(thief)

    signed_out = client.post("/logout", data={"csrf_token": _csrf(client)})

    assert signed_out.status_code == 302
    _assert_refused(thief)
    _assert_refused(client)


def _new_password(db: Session) -> None:
    set_password(db, email=EMAIL, password="a brand new passphrase", actor=SYSTEM)


def _granted(db: Session) -> None:
    grant_role(db, email=EMAIL, role=Role.REVIEWER, actor=SYSTEM)


def _revoked(db: Session) -> None:
    revoke_role(db, email=EMAIL, role=Role.RESEARCHER, actor=SYSTEM)


def _deactivated_and_reactivated(db: Session) -> None:
    set_active(db, email=EMAIL, active=False, actor=SYSTEM)
    set_active(db, email=EMAIL, active=True, actor=SYSTEM)


@pytest.mark.parametrize(
    "change",
    [_new_password, _granted, _revoked, _deactivated_and_reactivated],
    ids=["password", "role granted", "role revoked", "deactivated"],
)
def test_a_cookie_captured_before_a_password_or_role_change_stops_working(
    app: Flask, joined_session_factory: sessionmaker[Session], change: Callable[[Session], None]
) -> None:
    thief = _copy(app, _signed_in(app))
    _assert_signed_in(thief)

    with session_scope(joined_session_factory) as db:
        change(db)

    _assert_refused(thief)


def test_granting_a_role_already_held_keeps_sessions(
    app: Flask, joined_session_factory: sessionmaker[Session]
) -> None:
    client = _signed_in(app)

    with session_scope(joined_session_factory) as db:
        grant_role(db, email=EMAIL, role=Role.RESEARCHER, actor=SYSTEM)

    _assert_signed_in(client)


def test_signing_in_again_after_sign_out_works(app: Flask) -> None:
    client = _signed_in(app)
    client.post("/logout", data={"csrf_token": _csrf(client)})

    _assert_signed_in(_signed_in(app))


def test_a_session_unused_for_eight_hours_ends(app: Flask, clock: list[float]) -> None:
    client = _signed_in(app)
    # Used every seven hours, it lives on; the idle time counts from the last use.
    for _ in range(3):
        clock[0] += 7 * HOUR
        _assert_signed_in(client)
    thief = _copy(app, client)

    clock[0] += 8 * HOUR

    _assert_refused(thief)
    _assert_refused(client)


def test_a_session_ends_seven_days_after_sign_in_however_often_it_is_used(
    app: Flask, clock: list[float]
) -> None:
    client = _signed_in(app)
    started = clock[0]
    while clock[0] + 6 * HOUR < started + 7 * DAY:
        clock[0] += 6 * HOUR
        _assert_signed_in(client)

    clock[0] = started + 7 * DAY

    _assert_refused(client)


def test_sign_out_everywhere_ends_every_other_browsers_session(app: Flask) -> None:
    here = _signed_in(app)
    laptop = _signed_in(app)
    phone = _signed_in(app)

    answer = here.post("/sessions/end", data={"csrf_token": _csrf(here)})

    assert answer.status_code == 302
    assert answer.headers["Location"] == "/login"
    for browser in (here, laptop, phone):
        _assert_refused(browser)


def test_sign_out_everywhere_needs_the_forms_csrf_token(app: Flask) -> None:
    here = _signed_in(app)
    laptop = _signed_in(app)

    forged = here.post("/sessions/end", data={"csrf_token": "not-the-token"})

    assert forged.status_code == 400
    _assert_signed_in(here)
    _assert_signed_in(laptop)


def test_the_tokens_page_offers_sign_out_everywhere(app: Flask) -> None:
    page = _signed_in(app).get("/tokens").get_data(as_text=True)

    assert 'action="/sessions/end"' in page
    assert "Sign out everywhere" in page
    assert "unused for 8 hours, or 7 days after signing in" in page
