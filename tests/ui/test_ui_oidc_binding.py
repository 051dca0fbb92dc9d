"""OIDC sign-in binds the account to the provider's (issuer, subject), never to an e-mail.

The provider is the in-process fake of tests/browser/oidc_provider.py; the app
is driven through Flask's test client, the provider's redirect followed with
``requests`` (everything on 127.0.0.1).
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask.testing import FlaskClient
from oidc_provider import DISPLAY_NAME, FakeOidcProvider, running_provider
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from credits.app import create_app
from credits.audit.models import AuditEvent
from credits.db import session_scope
from credits.identity.actor import Actor
from credits.identity.models import OidcIdentity, Role
from credits.identity.service import create_user
from credits.settings import load_settings

EMAIL = "ada@uni.edu"
SUBJECT = "ada-at-the-provider"


@pytest.fixture
def provider() -> Iterator[FakeOidcProvider]:
    with running_provider() as running:
        yield running


@pytest.fixture
def client(
    provider: FakeOidcProvider, joined_session_factory: sessionmaker[Session]
) -> FlaskClient:
    with session_scope(joined_session_factory) as db:
        for email in (EMAIL, "grace@uni.edu"):
            create_user(
                db,
                email=email,
                name=email.split("@")[0],
                roles=(Role.RESEARCHER,),
                actor=Actor.system("tests"),
            )
    settings = load_settings(
        oidc_issuer=provider.issuer,
        oidc_client_id=provider.client_id,
        oidc_client_secret=provider.client_secret,
        oidc_display_name=DISPLAY_NAME,
    )
    return create_app(settings, session_factory=joined_session_factory).test_client()


def _sign_in(client: FlaskClient, next_page: str | None = None) -> tuple[int, str, str]:
    """The whole round trip: (the callback's status, where it sends the browser, its page)."""
    start = client.get("/login/oidc", query_string={"next": next_page} if next_page else {})
    assert start.status_code == 302, start.get_data(as_text=True)
    answer = requests.get(start.headers["Location"], allow_redirects=False, timeout=10)
    assert answer.status_code == 302
    callback = urlsplit(answer.headers["Location"])
    response = client.get(f"{callback.path}?{callback.query}")
    return response.status_code, response.headers.get("Location", ""), response.get_data(True)


def _signed_in_as(client: FlaskClient) -> str | None:
    page = client.get("/tokens")
    if page.status_code != 200:
        return None
    text = page.get_data(as_text=True)
    for email in (EMAIL, "grace@uni.edu"):
        if f'<span class="who">{email}</span>' in text:
            return email
    return None


def _links(factory: sessionmaker[Session]) -> list[tuple[str, str, str]]:
    with session_scope(factory) as db:
        rows = db.scalars(select(OidcIdentity).order_by(OidcIdentity.id)).all()
        return [(row.user.email, row.issuer, row.subject) for row in rows]


@pytest.mark.parametrize("verified", [None, False])
def test_an_email_the_provider_does_not_vouch_for_is_refused_with_a_readable_page(
    client: FlaskClient,
    provider: FakeOidcProvider,
    joined_session_factory: sessionmaker[Session],
    verified: bool | None,
) -> None:
    provider.next_login(EMAIL, email_verified=verified, subject=SUBJECT)

    status, _, page = _sign_in(client)

    assert status == 401
    assert "your provider sent no verified email" in page
    assert _signed_in_as(client) is None
    assert _links(joined_session_factory) == []


def test_the_first_verified_sign_in_binds_the_issuer_and_subject_to_the_account(
    client: FlaskClient, provider: FakeOidcProvider, joined_session_factory: sessionmaker[Session]
) -> None:
    provider.next_login(EMAIL, subject=SUBJECT)

    status, location, _ = _sign_in(client)

    assert (status, location) == (302, "/")
    assert _signed_in_as(client) == EMAIL
    assert _links(joined_session_factory) == [(EMAIL, provider.issuer, SUBJECT)]
    with session_scope(joined_session_factory) as db:
        linked = db.scalars(
            select(AuditEvent).where(AuditEvent.event_type == "user.oidc_linked")
        ).all()
        assert [event.subject_type for event in linked] == ["user"]


def test_an_email_changed_at_the_provider_keeps_the_link(
    client: FlaskClient, provider: FakeOidcProvider, joined_session_factory: sessionmaker[Session]
) -> None:
    provider.next_login(EMAIL, subject=SUBJECT)
    assert _sign_in(client)[0] == 302
    client.post("/logout", data={"csrf_token": _csrf(client)})

    # The person's new address at the provider is another account's here: the subject wins.
    provider.next_login("grace@uni.edu", subject=SUBJECT)
    status, _, _ = _sign_in(client)

    assert status == 302
    assert _signed_in_as(client) == EMAIL
    assert _links(joined_session_factory) == [(EMAIL, provider.issuer, SUBJECT)]


def test_another_subject_sending_a_linked_accounts_email_is_refused(
    client: FlaskClient, provider: FakeOidcProvider, joined_session_factory: sessionmaker[Session]
) -> None:
    provider.next_login(EMAIL, subject=SUBJECT)
    assert _sign_in(client)[0] == 302
    client.post("/logout", data={"csrf_token": _csrf(client)})

    provider.next_login(EMAIL, subject="someone-else")
    status, _, page = _sign_in(client)

    assert status == 403
    assert "linked to another identity at your provider" in page
    assert _signed_in_as(client) is None
    assert _links(joined_session_factory) == [(EMAIL, provider.issuer, SUBJECT)]


def test_the_page_asked_for_is_kept_through_the_round_trip(
    client: FlaskClient, provider: FakeOidcProvider
) -> None:
    provider.next_login(EMAIL, subject=SUBJECT)

    status, location, _ = _sign_in(client, "/jobs?state=running")

    assert (status, location) == (302, "/jobs?state=running")


@pytest.mark.parametrize(
    "elsewhere",
    ["//evil.example/", "/\\evil.example/", "https://evil.example/", "/\t/evil.example/", "tokens"],
)
def test_a_next_page_that_is_not_a_local_path_is_replaced_by_the_dashboard(
    client: FlaskClient, provider: FakeOidcProvider, elsewhere: str
) -> None:
    provider.next_login(EMAIL, subject=SUBJECT)

    status, location, _ = _sign_in(client, elsewhere)

    assert (status, location) == (302, "/")


def _csrf(client: FlaskClient) -> str:
    with client.session_transaction() as cookie:
        token = cookie.get("csrf_token")
    assert isinstance(token, str)
    return token


def test_the_callback_sent_to_the_provider_is_under_the_public_url_whatever_the_host(
    provider: FakeOidcProvider, joined_session_factory: sessionmaker[Session]
) -> None:
    settings = load_settings(
        oidc_issuer=provider.issuer,
        oidc_client_id=provider.client_id,
        oidc_client_secret=provider.client_secret,
        oidc_display_name=DISPLAY_NAME,
        public_url="https://credits.example.org",
    )
    client = create_app(settings, session_factory=joined_session_factory).test_client()
    start = client.get("/login/oidc", headers={"Host": "attacker.example"})
    assert start.status_code == 302
    query = parse_qs(urlsplit(start.headers["Location"]).query)
    assert query["redirect_uri"] == ["https://credits.example.org/auth/callback"]
