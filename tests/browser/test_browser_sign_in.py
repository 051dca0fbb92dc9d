"""Signing in, API tokens and signing out, in a real Chromium."""

from __future__ import annotations

import re

from browser_helpers import LiveApp, screenshot, sign_in
from browser_support import watch_csp
from playwright.sync_api import Browser, Page, expect

from credits.db import session_scope
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import create_user

pytest_plugins = ["browser_support"]
SYSTEM = Actor.system("tests")
PASSWORD = "correct horse battery staple"


def _researcher(app: LiveApp) -> None:
    with session_scope(app.factory) as session:
        create_user(
            session,
            email="ada@uni.edu",
            name="Ada",
            roles=(Role.RESEARCHER,),
            institution="Uni",
            actor=SYSTEM,
            password=PASSWORD,
        )


def test_wrong_password_shows_a_form_error_and_signs_nobody_in(
    page: Page, live_app: LiveApp
) -> None:
    _researcher(live_app)
    page.goto(f"{live_app.url}/login")
    page.get_by_label("Email").fill("ada@uni.edu")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("email or password is incorrect")
    page.goto(f"{live_app.url}/tokens")
    expect(page).to_have_url(re.compile(r"/login\?next="))


def test_a_token_is_shown_once_and_can_be_revoked(page: Page, live_app: LiveApp) -> None:
    _researcher(live_app)
    sign_in(page, live_app, "ada@uni.edu", PASSWORD)
    page.goto(f"{live_app.url}/tokens")
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_test_id("token-secret")).to_have_text(re.compile(r"^crd_"))
    screenshot(page, "tokens")
    page.get_by_role("button", name="Revoke", exact=True).click()
    expect(page.locator("table")).to_contain_text("revoked")
    cookies = {cookie["name"]: cookie for cookie in page.context.cookies()}
    session_cookie = cookies["credits_session"]
    assert session_cookie["httpOnly"] is True
    assert session_cookie["sameSite"] == "Lax"


def test_signing_out_ends_the_session(page: Page, live_app: LiveApp) -> None:
    _researcher(live_app)
    sign_in(page, live_app, "ada@uni.edu", PASSWORD)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    page.goto(f"{live_app.url}/tokens")
    expect(page).to_have_url(re.compile(r"/login"))


def test_a_form_posted_without_its_csrf_token_is_refused(page: Page, live_app: LiveApp) -> None:
    _researcher(live_app)
    sign_in(page, live_app, "ada@uni.edu", PASSWORD)
    response = page.request.post(f"{live_app.url}/tokens", form={"name": "forged", "days": "90"})
    assert response.status == 400
    assert "Form expired" in response.text()


def test_sign_out_everywhere_ends_the_session_in_another_browser(
    page: Page, live_app: LiveApp, chromium: Browser
) -> None:
    _researcher(live_app)
    elsewhere = chromium.new_context()
    try:
        other = elsewhere.new_page()
        violations = watch_csp(other)
        sign_in(other, live_app, "ada@uni.edu", PASSWORD)
        sign_in(page, live_app, "ada@uni.edu", PASSWORD)
        page.goto(f"{live_app.url}/tokens")
        screenshot(page, "tokens-sessions")
        page.get_by_role("button", name="Sign out everywhere").click()
        expect(page.get_by_text("You are signed out everywhere")).to_be_visible()
        other.goto(f"{live_app.url}/tokens")
        expect(other).to_have_url(re.compile(r"/login\?next="))
        assert not violations
    finally:
        elsewhere.close()
