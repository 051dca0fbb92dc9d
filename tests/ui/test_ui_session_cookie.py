"""The session cookie set when someone signs in: HttpOnly and SameSite=Lax
everywhere, and Secure (HTTPS only) outside the embedded profile."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from credits.app import create_app
from credits.db import session_scope
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import create_user
from credits.settings import Profile, load_settings

EMAIL = "ada@uni.edu"
PASSWORD = "correct horse battery staple"
COOKIE = "credits_session"
PRODUCTION: dict[str, Any] = {
    "profile": Profile.PRODUCTION,
    "database_url": "postgresql://credits@db.invalid/credits",
    "broker_url": "redis://broker.invalid:6379/0",
    "storage_url": "memory://",
    "secret_key": "a-production-secret-key-of-enough-length-0123456789",
}
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _signed_in_cookie(client: FlaskClient, base_url: str) -> dict[str, str | bool]:
    """Signs in with the login form; the attributes of the session cookie it sets."""
    page = client.get("/login", base_url=base_url)
    assert page.status_code == 200
    token = _CSRF.search(page.get_data(as_text=True))
    assert token is not None
    response = client.post(
        "/login",
        base_url=base_url,
        data={"email": EMAIL, "password": PASSWORD, "csrf_token": token[1]},
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    (header,) = [
        value for value in response.headers.getlist("Set-Cookie") if value.startswith(f"{COOKIE}=")
    ]
    attributes: dict[str, str | bool] = {}
    for part in header.split(";")[1:]:
        name, equals, value = part.strip().partition("=")
        attributes[name.lower()] = value if equals else True
    return attributes


@pytest.fixture
def user(joined_session_factory: sessionmaker[Session]) -> None:
    with session_scope(joined_session_factory) as db:
        create_user(
            db,
            email=EMAIL,
            name="Ada",
            roles=(Role.RESEARCHER,),
            institution="Uni",
            actor=Actor.system("tests"),
            password=PASSWORD,
        )


def test_production_session_cookie_is_secure_httponly_and_lax(
    user: None, joined_session_factory: sessionmaker[Session]
) -> None:
    settings = load_settings(**PRODUCTION)
    app = create_app(settings, session_factory=joined_session_factory)
    cookie = _signed_in_cookie(app.test_client(), "https://credits.example.org")
    assert cookie.get("secure") is True
    assert cookie.get("httponly") is True
    assert str(cookie.get("samesite")).lower() == "lax"


def test_embedded_session_cookie_is_httponly_and_lax_over_plain_http(
    user: None, joined_session_factory: sessionmaker[Session]
) -> None:
    settings = load_settings()
    assert settings.profile is Profile.EMBEDDED
    app = create_app(settings, session_factory=joined_session_factory)
    cookie = _signed_in_cookie(app.test_client(), "http://127.0.0.1:8000")
    assert "secure" not in cookie
    assert cookie.get("httponly") is True
    assert str(cookie.get("samesite")).lower() == "lax"
