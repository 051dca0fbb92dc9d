"""Absolute links the platform writes: under CREDITS_PUBLIC_URL when set (which names
the mount path itself), else under the request's own origin and mount path."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from credits.api.public_url import public_base_url, public_url_for
from credits.app import create_app
from credits.settings import load_settings


@pytest.mark.parametrize(
    ("public_url", "base_url", "expected"),
    [
        ("", "http://localhost/", "http://localhost/auth/callback"),
        ("", "http://host.example/credits", "http://host.example/credits/auth/callback"),
        ("https://c.example/", "http://attacker.example/", "https://c.example/auth/callback"),
        (
            "https://c.example/credits",
            "http://internal:8000/credits",
            "https://c.example/credits/auth/callback",
        ),
        (
            "https://c.example/credits",
            "http://internal:8000/",
            "https://c.example/credits/auth/callback",
        ),
    ],
)
def test_a_link_is_absolute_under_one_origin_and_one_mount_path(
    joined_session_factory: sessionmaker[Session], public_url: str, base_url: str, expected: str
) -> None:
    app = create_app(load_settings(public_url=public_url), session_factory=joined_session_factory)
    with app.test_request_context("/anything", base_url=base_url):
        assert public_url_for("ui_auth.oidc_callback") == expected
        assert expected.startswith(public_base_url().rstrip("/") + "/")
