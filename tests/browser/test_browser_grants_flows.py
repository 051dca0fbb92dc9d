"""The grant flows of portal round 2 in a real Chromium at 1366x900 and 390x844: the PI
applies for a supplement of a current allocation, sends the progress report a pending
tranche waits for and reads a decision with its reviews (no reviewer named); the funder
edits a draft program. A screenshot of each step per size.

Run it alone, serially: ``pytest -n 0 tests/browser/test_browser_grants_flows.py``.
"""

from __future__ import annotations

import pytest
from api_world import RESEARCHER_A, World, build_world
from browser_helpers import SIZES, LiveApp, screenshot, sign_in
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from credits.db import session_scope
from credits.grants import awards, reviews
from credits.grants.models import Allocation, Award, Program, Proposal, Tranche
from credits.identity.actor import Actor
from credits.identity.service import actor_for_email, set_password

pytest_plugins = ["browser_support"]
SYSTEM = Actor.system("tests")
PASSWORD = "correct horse battery staple"
PI_EMAIL = f"{RESEARCHER_A}@example.org"
FUNDER_EMAIL = "funder_p@example.org"
REPORT = "Half of the ensemble runs are done; the rest start next month."
REASON = "Too early; apply again with pilot results."


def _world(app: LiveApp) -> World:
    """The API world, with passwords, and the in-review proposal reviewed and rejected."""
    with session_scope(app.factory) as session:
        world = build_world(session)
        for email in (PI_EMAIL, FUNDER_EMAIL):
            set_password(session, email=email, password=PASSWORD, actor=SYSTEM)
        reviews.submit_review(
            session,
            proposal_id=world.proposal_in_review,
            actor=actor_for_email(session, "reviewer@example.org"),
            scores={"merit": 2, "fit": 3},
            comment="The method is unclear.",
        )
        awards.reject_proposal(
            session,
            proposal_id=world.proposal_in_review,
            actor=actor_for_email(session, FUNDER_EMAIL),
            reason=REASON,
            override_reason="one review is enough here",
        )
    return world


def _awarded(app: LiveApp, world: World) -> int:
    with session_scope(app.factory) as session:
        allocation = session.get_one(Allocation, world.allocation)
        return session.get_one(Award, allocation.award_id).proposal_id


def _latest_proposal(app: LiveApp) -> tuple[str, dict[str, int]]:
    with session_scope(app.factory) as session:
        proposal = session.scalars(select(Proposal).order_by(Proposal.id.desc())).first()
        assert proposal is not None
        return proposal.kind, dict(proposal.requested)


def _report(app: LiveApp, world: World) -> str | None:
    with session_scope(app.factory) as session:
        return session.get_one(Tranche, world.tranche).progress_report


def _program_name(app: LiveApp, program_id: int) -> str:
    with session_scope(app.factory) as session:
        return session.get_one(Program, program_id).name


@pytest.mark.parametrize("size", SIZES)
def test_supplement_progress_report_decision_and_program_edit(
    page: Page, chromium: Browser, live_app: LiveApp, size: str
) -> None:
    world = _world(live_app)
    page.set_viewport_size(SIZES[size])
    sign_in(page, live_app, PI_EMAIL, PASSWORD)

    # A supplement of a current allocation: only the fields that kind needs.
    page.goto(f"{live_app.url}/programs/{world.program_p}/apply")
    page.get_by_test_id("proposal-kinds").get_by_role("link", name="Supplement").click()
    expect(page.get_by_label("Additional credits")).to_be_visible()
    expect(page.get_by_label("Starts on")).to_have_count(0)
    page.get_by_label("Title").fill("More for the ensemble")
    page.get_by_label("Abstract").fill("The ensemble needs a second pass.")
    page.get_by_label("Justification of the request").fill("Five more credits.")
    page.get_by_label("Additional credits").fill("5")
    screenshot(page, f"grants-supplement-{size}")
    page.get_by_role("button", name="Submit proposal").click()
    expect(page.get_by_role("heading", name="Proposal to")).to_be_visible()
    assert _latest_proposal(live_app) == ("supplement", {"gpu": 5_000_000})

    # The progress report the award's pending tranche waits for.
    page.goto(f"{live_app.url}/applications/{_awarded(live_app, world)}")
    expect(page.get_by_test_id("proposal-outcome")).to_contain_text("Awarded")
    page.get_by_role("textbox", name="Progress report").fill(REPORT)
    page.get_by_role("button", name="Send to the funder").click()
    expect(page.get_by_role("status")).to_contain_text("Your progress report is sent.")
    assert _report(live_app, world) == REPORT
    screenshot(page, f"grants-progress-report-{size}")

    # The decision with its reason and the reviews, no reviewer named.
    page.goto(f"{live_app.url}/applications/{world.proposal_in_review}")
    expect(page.get_by_test_id("proposal-outcome")).to_contain_text(REASON)
    reviews_section = page.get_by_test_id("proposal-reviews")
    expect(reviews_section).to_contain_text("Reviewer 1")
    expect(reviews_section).to_contain_text("The method is unclear.")
    expect(reviews_section).not_to_contain_text("reviewer@example.org")
    screenshot(page, f"grants-decision-{size}")

    # The funder edits the draft program.
    funder = chromium.new_context(viewport=SIZES[size]).new_page()
    sign_in(funder, live_app, FUNDER_EMAIL, PASSWORD)
    funder.goto(f"{live_app.url}/funder/programs/{world.program_p_draft}")
    funder.get_by_role("link", name="Edit the call").click()
    funder.get_by_label("Name").fill("Climate GPUs, second call")
    screenshot(funder, f"grants-program-edit-{size}")
    funder.get_by_role("button", name="Save changes").click()
    expect(funder.get_by_role("status")).to_contain_text("The program is saved.")
    assert _program_name(live_app, world.program_p_draft) == "Climate GPUs, second call"
    funder.context.close()
