"""The researcher's flows in a real Chromium at 1366x900 and 390x844: the public open calls from the
sign-in page, a project's members (add by e-mail, a refusal, remove after a
confirmation), withdrawing a proposal after a confirmation, and the account page
(an ORCID iD checked, a new password that signs another browser out).

Run it alone, serially: ``pytest -n 0 tests/browser/test_browser_researcher_flows.py``.
"""

from __future__ import annotations

import pytest
from api_world import RESEARCHER_A, World, build_world
from browser_helpers import SIZES, LiveApp, screenshot, sign_in
from playwright.sync_api import Browser, Page, expect

from credits.db import session_scope
from credits.grants.models import ProjectMember, Proposal
from credits.identity.actor import Actor
from credits.identity.service import set_password

pytest_plugins = ["browser_support"]
SYSTEM = Actor.system("tests")
PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "staple battery horse correct"
EMAIL = f"{RESEARCHER_A}@example.org"


def _world(app: LiveApp) -> World:
    with session_scope(app.factory) as session:
        world = build_world(session)
        set_password(session, email=EMAIL, password=PASSWORD, actor=SYSTEM)
    return world


def _members(app: LiveApp, project_id: int) -> set[int]:
    with session_scope(app.factory) as session:
        rows = session.query(ProjectMember).filter_by(project_id=project_id)
        return {row.user_id for row in rows}


def _status(app: LiveApp, proposal_id: int) -> str:
    with session_scope(app.factory) as session:
        return session.get_one(Proposal, proposal_id).status


@pytest.mark.parametrize("size", SIZES)
def test_open_calls_members_withdraw_and_account(
    page: Page, chromium: Browser, live_app: LiveApp, size: str
) -> None:
    world = _world(live_app)
    page.set_viewport_size(SIZES[size])
    page.goto(f"{live_app.url}/login")
    page.get_by_test_id("open-calls-link").click()
    expect(page.get_by_role("heading", name="Open calls")).to_be_visible()
    expect(page.get_by_test_id("open-calls")).to_contain_text("GPU hours for climate models.")
    expect(page.get_by_role("link", name="Sign in to apply")).to_be_visible()
    screenshot(page, f"flows-open-calls-{size}")

    # Another browser signed in now is signed out by the password change at the end.
    other = chromium.new_context(viewport=SIZES[size])
    elsewhere = other.new_page()
    sign_in(elsewhere, live_app, EMAIL, PASSWORD)
    sign_in(page, live_app, EMAIL, PASSWORD)

    # Members: add by e-mail, a refusal at the field, remove after a confirmation.
    page.goto(f"{live_app.url}/projects/{world.project_a}")
    page.get_by_test_id("manage-members").click()
    expect(page.get_by_role("heading", name="Members of Ice sheets")).to_be_visible()
    page.get_by_label("Email of a researcher").fill("nobody@example.org")
    page.get_by_role("button", name="Add to the project").click()
    expect(page.locator("#e-email")).to_contain_text("no researcher on this platform")
    page.get_by_label("Email of a researcher").fill("researcher_b@example.org")
    page.get_by_label("Role").select_option("manager")
    page.get_by_role("button", name="Add to the project").click()
    expect(page.get_by_role("status")).to_contain_text("is now a manager of Ice sheets")
    expect(page.get_by_test_id("members-table")).to_contain_text("researcher_b@example.org")
    screenshot(page, f"flows-members-{size}")
    page.get_by_role("button", name="Remove Member A").click()
    expect(page.get_by_test_id("confirm-effect")).to_contain_text("take Member A")
    screenshot(page, f"flows-members-remove-confirm-{size}")
    assert world.member_a in _members(live_app, world.project_a)
    page.get_by_role("button", name="Remove", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Member A is no longer on Ice sheets")
    assert world.member_a not in _members(live_app, world.project_a)

    # Withdraw a proposal in review, with a reason, after a confirmation.
    page.goto(f"{live_app.url}/applications/{world.proposal_in_review}")
    page.get_by_label("Reason (optional)").fill("Funded by another call.")
    page.get_by_role("button", name="Withdraw…").click()
    expect(page.get_by_test_id("confirm-effect")).to_contain_text("withdraw the proposal")
    screenshot(page, f"flows-withdraw-confirm-{size}")
    assert _status(live_app, world.proposal_in_review) == "in_review"
    page.get_by_role("button", name="Withdraw the proposal").click()
    expect(page.get_by_role("status")).to_contain_text("The proposal is withdrawn.")
    assert _status(live_app, world.proposal_in_review) == "withdrawn"
    screenshot(page, f"flows-withdrawn-{size}")

    # The account: an ORCID iD with a mistyped digit, then a good one; a new password.
    page.get_by_role("link", name="Account").click()
    page.get_by_label("ORCID iD").fill("0000-0002-1825-0098")
    page.get_by_role("button", name="Save profile").click()
    expect(page.locator("#e-orcid")).to_contain_text("fails the ORCID checksum")
    page.get_by_label("ORCID iD").fill("0000-0002-1825-0097")
    page.get_by_role("button", name="Save profile").click()
    expect(page.get_by_role("status")).to_contain_text("Your profile is saved.")
    expect(page.get_by_label("ORCID iD")).to_have_value("0000-0002-1825-0097")
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New password again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("status")).to_contain_text("Your password is changed.")
    screenshot(page, f"flows-account-{size}")
    elsewhere.goto(f"{live_app.url}/account")
    expect(elsewhere.get_by_role("heading", name="Sign in")).to_be_visible()
    other.close()
    page.get_by_role("link", name="Home").click()
    expect(page).to_have_url(f"{live_app.url}/")
