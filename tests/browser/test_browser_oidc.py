"""Signing in through an OpenID Connect provider, in a real Chromium.

The provider is the in-process fake of oidc_provider.py: discovery, an
auto-approving authorization endpoint, RS256 ID tokens checked by Authlib
against the provider's JWKS. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import re

from browser_helpers import LiveApp, screenshot
from joserfc.jwk import RSAKey
from oidc_provider import DISPLAY_NAME, FakeOidcProvider
from playwright.sync_api import Page, expect

from credits.db import session_scope
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import create_user

pytest_plugins = ["browser_support", "oidc_support"]
SYSTEM = Actor.system("tests")
EMAIL = "ada@uni.edu"


def _researcher(app: LiveApp) -> None:
    with session_scope(app.factory) as session:
        create_user(
            session,
            email=EMAIL,
            name="Ada",
            roles=(Role.RESEARCHER,),
            institution="Uni",
            actor=SYSTEM,
            password="correct horse battery staple",
        )


def _start_sign_in(page: Page, app: LiveApp) -> int:
    """Clicks "Sign in with …"; the status of the app's answer to the provider's redirect."""
    page.goto(f"{app.url}/login")
    with page.expect_response(re.compile(r"/auth/callback\?")) as callback:
        page.get_by_role("link", name=f"Sign in with {DISPLAY_NAME}").click()
    page.wait_for_load_state()
    return callback.value.status


def _assert_signed_out(page: Page, app: LiveApp) -> None:
    page.goto(f"{app.url}/tokens")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)


def test_an_existing_account_signs_in_and_lands_on_the_dashboard(
    page: Page, oidc_live_app: LiveApp, oidc_provider: FakeOidcProvider
) -> None:
    _researcher(oidc_live_app)
    oidc_provider.next_login(EMAIL)
    status = _start_sign_in(page, oidc_live_app)
    assert status == 302
    expect(page).to_have_url(f"{oidc_live_app.url}/")
    expect(page.locator(".who")).to_have_text(EMAIL)
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    screenshot(page, "oidc-dashboard")
    # The app asked for an ID token bound to a nonce, and exchanged the code once.
    (request,) = oidc_provider.authorize_requests
    assert request["response_type"] == "code"
    assert "openid" in request["scope"].split()
    assert request["nonce"]
    assert request["redirect_uri"] == f"{oidc_live_app.url}/auth/callback"
    assert oidc_provider.token_requests == 1
    page.goto(f"{oidc_live_app.url}/tokens")
    expect(page).to_have_url(f"{oidc_live_app.url}/tokens")


def test_the_page_asked_for_before_signing_in_is_shown_after(
    page: Page, oidc_live_app: LiveApp, oidc_provider: FakeOidcProvider
) -> None:
    _researcher(oidc_live_app)
    oidc_provider.next_login(EMAIL)
    page.goto(f"{oidc_live_app.url}/tokens")
    expect(page).to_have_url(re.compile(r"/login\?next=(%2F|/)tokens"))
    with page.expect_response(re.compile(r"/auth/callback\?")) as callback:
        page.get_by_role("link", name=f"Sign in with {DISPLAY_NAME}").click()
    page.wait_for_load_state()
    assert callback.value.status == 302
    expect(page).to_have_url(re.compile(rf"^{re.escape(oidc_live_app.url)}/tokens\??$"))
    expect(page.get_by_role("heading", name="API tokens")).to_be_visible()


def test_an_email_with_no_account_is_refused(
    page: Page, oidc_live_app: LiveApp, oidc_provider: FakeOidcProvider
) -> None:
    _researcher(oidc_live_app)
    oidc_provider.next_login("stranger@elsewhere.org")
    assert _start_sign_in(page, oidc_live_app) == 403
    expect(page.get_by_role("alert")).to_have_text(
        "no active account uses stranger@elsewhere.org; ask the platform's operators for one"
    )
    _assert_signed_out(page, oidc_live_app)


def test_an_unverified_email_is_refused(
    page: Page, oidc_live_app: LiveApp, oidc_provider: FakeOidcProvider
) -> None:
    _researcher(oidc_live_app)
    oidc_provider.next_login(EMAIL, email_verified=False)
    assert _start_sign_in(page, oidc_live_app) == 401
    expect(page.get_by_role("alert")).to_have_text("your provider sent no verified email")
    _assert_signed_out(page, oidc_live_app)


def test_a_forged_state_is_refused_before_the_code_is_used(
    page: Page, oidc_live_app: LiveApp, oidc_provider: FakeOidcProvider
) -> None:
    _researcher(oidc_live_app)
    oidc_provider.next_login(EMAIL)
    oidc_provider.forged_state = "forged-by-someone-else"
    assert _start_sign_in(page, oidc_live_app) == 400
    expect(page.get_by_role("alert")).to_have_text(
        "this sign-in did not start here or has expired; try again"
    )
    assert oidc_provider.token_requests == 0
    _assert_signed_out(page, oidc_live_app)


def test_a_callback_nobody_started_is_refused(
    page: Page, oidc_live_app: LiveApp, oidc_provider: FakeOidcProvider
) -> None:
    _researcher(oidc_live_app)
    response = page.goto(f"{oidc_live_app.url}/auth/callback?code=stolen&state=guessed")
    assert response is not None
    assert response.status == 400
    expect(page.get_by_role("alert")).to_contain_text("did not start here")
    assert oidc_provider.token_requests == 0
    _assert_signed_out(page, oidc_live_app)


def test_a_provider_that_refuses_shows_a_readable_error(
    page: Page, oidc_live_app: LiveApp, oidc_provider: FakeOidcProvider
) -> None:
    _researcher(oidc_live_app)
    oidc_provider.error = "access_denied"
    assert _start_sign_in(page, oidc_live_app) == 401
    expect(page.get_by_role("alert")).to_have_text(f"{DISPLAY_NAME} did not sign you in; try again")
    _assert_signed_out(page, oidc_live_app)


def test_an_id_token_not_signed_by_the_provider_is_refused(
    page: Page, oidc_live_app: LiveApp, oidc_provider: FakeOidcProvider
) -> None:
    _researcher(oidc_live_app)
    oidc_provider.next_login(EMAIL)
    oidc_provider.impostor_key = RSAKey.generate_key(2048)
    assert _start_sign_in(page, oidc_live_app) == 401
    expect(page.get_by_role("alert")).to_have_text(f"{DISPLAY_NAME} did not sign you in; try again")
    assert oidc_provider.token_requests == 1
    _assert_signed_out(page, oidc_live_app)
