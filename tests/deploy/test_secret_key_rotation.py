"""Rotating the session key (CREDITS_SECRET_KEY) without signing everyone out: the old
key, listed in CREDITS_SECRET_KEY_FALLBACKS, still opens the sessions it signed, and
a session the portal rewrites is signed with the new key; a key not listed opens none."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from admin_ui import sessions
from credits.app import create_app
from credits.db import session_scope
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import create_user
from credits.settings import SettingsError, load_settings

EMAIL = "ada@uni.edu"
PASSWORD = "correct horse battery staple"
COOKIE = "credits_session"
OLD_KEY = "the-old-session-key-0123456789abcdef-old"
NEW_KEY = "the-new-session-key-0123456789abcdef-new"


@pytest.fixture
def factory(joined_session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    with session_scope(joined_session_factory) as db:
        create_user(
            db,
            email=EMAIL,
            name="Ada",
            roles=(Role.RESEARCHER,),
            actor=Actor.system("tests"),
            password=PASSWORD,
        )
    return joined_session_factory


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    moment = [1_900_000_000.0]
    monkeypatch.setattr(sessions, "now", lambda: moment[0])
    return moment


def _app(factory: sessionmaker[Session], key: str, fallbacks: str = "") -> Flask:
    settings = load_settings(secret_key=key, secret_key_fallbacks=fallbacks)
    return create_app(settings, session_factory=factory)


def _signed_in_cookie(app: Flask) -> str:
    client = app.test_client()
    assert client.get("/login").status_code == 200
    with client.session_transaction() as cookie:
        csrf = cookie["csrf_token"]
    response = client.post(
        "/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": csrf}
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    signed = client.get_cookie(COOKIE)
    assert signed is not None
    return signed.value


def _client_with(app: Flask, cookie: str) -> FlaskClient:
    client = app.test_client()
    client.set_cookie(COOKIE, cookie)
    return client


def _is_signed_in(client: FlaskClient) -> bool:
    page = client.get("/tokens")
    if page.status_code == 302:
        assert page.headers["Location"].startswith("/login?next=")
        return False
    assert page.status_code == 200
    assert f'<span class="who">{EMAIL}</span>' in page.get_data(as_text=True)
    return True


def test_a_session_signed_with_the_old_key_survives_the_rotation_and_is_re_signed(
    factory: sessionmaker[Session], clock: list[float]
) -> None:
    cookie = _signed_in_cookie(_app(factory, OLD_KEY))
    rotated = _client_with(_app(factory, NEW_KEY, fallbacks=OLD_KEY), cookie)
    # The portal rewrites a session's last-used time at most once a minute.
    clock[0] += sessions.SEEN_RESOLUTION_S + 1
    assert _is_signed_in(rotated)
    rewritten = rotated.get_cookie(COOKIE)
    assert rewritten is not None
    assert rewritten.value != cookie
    # Once the fallback is dropped, the rewritten cookie still opens the session.
    assert _is_signed_in(_client_with(_app(factory, NEW_KEY), rewritten.value))


def test_a_session_signed_with_a_key_no_longer_listed_is_signed_out(
    factory: sessionmaker[Session],
) -> None:
    cookie = _signed_in_cookie(_app(factory, OLD_KEY))
    assert not _is_signed_in(_client_with(_app(factory, NEW_KEY), cookie))


def test_several_fallbacks_are_read_newest_first() -> None:
    settings = load_settings(secret_key=NEW_KEY, secret_key_fallbacks=f"{OLD_KEY}, older-key")
    assert settings.old_secret_keys == [OLD_KEY, "older-key"]
    assert OLD_KEY not in repr(settings)


def test_production_refuses_a_short_fallback_in_one_line() -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(
            profile="production",
            database_url="postgresql://credits@db.invalid/credits",
            broker_url="redis://broker.invalid:6379/0",
            storage_url="memory://",
            secret_key=NEW_KEY,
            secret_key_fallbacks="short",
        )
    assert str(refused.value) == (
        "invalid settings: each of CREDITS_SECRET_KEY_FALLBACKS must be at least 32 characters"
    )
