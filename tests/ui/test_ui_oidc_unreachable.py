"""An OIDC provider that does not answer gives a readable sign-in page, never a 500."""

from __future__ import annotations

import socket

from sqlalchemy.orm import Session, sessionmaker

from credits.app import create_app
from credits.settings import load_settings


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_provider_is_a_503_page_and_signs_nobody_in(
    joined_session_factory: sessionmaker[Session],
) -> None:
    settings = load_settings(
        oidc_issuer=f"http://127.0.0.1:{_closed_port()}",
        oidc_client_id="credits",
        oidc_client_secret="secret",
        oidc_display_name="Test University",
    )
    client = create_app(settings, session_factory=joined_session_factory).test_client()
    response = client.get("/login/oidc")
    assert response.status_code == 503
    assert "Test University cannot be reached just now" in response.get_data(as_text=True)
    with client.session_transaction() as cookie:
        assert "user_id" not in cookie
