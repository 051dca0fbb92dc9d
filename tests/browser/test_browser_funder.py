"""The funder's pages in a real Chromium: a program from creation to its dashboard."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from api_world import World, build_world
from browser_helpers import LiveApp, screenshot, sign_in
from playwright.sync_api import Page, expect
from review_funder_scenario import (
    FUNDER,
    PASSWORD,
    REVIEWER,
    assign,
    budget,
    open_program,
    people,
    proposal_status,
    submitted_proposal,
)

from credits.db import session_scope
from credits.grants import proposals
from credits.grants.models import Allocation
from credits.identity.actor import Actor
from credits.identity.service import actor_for_email, set_password

pytest_plugins = ["browser_support"]
MICRO = 1_000_000


def test_a_funder_creates_funds_and_opens_a_program(page: Page, live_app: LiveApp) -> None:
    people(live_app)
    sign_in(page, live_app, FUNDER, PASSWORD)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Programs").click()
    expect(page.get_by_text("You own no programs yet")).to_be_visible()
    page.get_by_label("Name").fill("Compute for <em>oceans</em>")
    page.get_by_label("Description").fill("GPU hours for ocean models.")
    page.get_by_label("Review criteria (one per line)").fill("Scientific merit\nFit")
    page.get_by_label("Lowest mean score to award").fill("9")
    page.get_by_role("button", name="Create program").click()
    expect(page.locator("#e-min_mean_score")).to_have_text("enter a score from 1.00 to 5.00")
    page.get_by_label("Lowest mean score to award").fill("3.5")
    page.get_by_role("button", name="Create program").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Compute for <em>oceans</em>")
    expect(page.get_by_role("heading", level=1)).to_contain_text("draft")
    page.get_by_label("Amount (credits)").fill("250.5")
    page.get_by_label("Reason").fill("FY27 budget line")
    page.get_by_role("button", name="Add funds").click()
    expect(page.get_by_role("status")).to_contain_text("Added 250.50 GPU credits")
    expect(page.get_by_test_id("budget")).to_contain_text("250.5")
    page.get_by_role("button", name="Open for proposals").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("open")
    screenshot(page, "funder-program")
    page.get_by_role("link", name="Your programs").click()
    expect(page.get_by_test_id("programs")).to_contain_text("250.5")
    screenshot(page, "funder-programs")


def test_a_funder_assigns_a_reviewer_and_awards_within_the_budget(
    page: Page, live_app: LiveApp
) -> None:
    people(live_app)
    program_id = open_program(live_app, budget_credits=100)
    proposal_id = submitted_proposal(live_app, program_id, credits=50)
    sign_in(page, live_app, FUNDER, PASSWORD)
    page.goto(f"{live_app.url}/funder/programs/{program_id}")
    expect(page.get_by_test_id("queue")).to_contain_text("0 / 1")
    page.get_by_role("link", name="Ice sheet models").click()
    page.get_by_label("Reviewer", exact=True).select_option(label=f"Rita <{REVIEWER}>, Elsewhere")
    page.get_by_role("button", name="Assign").click()
    expect(page.get_by_test_id("reviewers")).to_contain_text(REVIEWER)
    # Over the budget: the error is on the amount, and nothing is saved.
    page.get_by_label("Award (gpu credits)").fill("500")
    page.get_by_label("Override reason (only to decide").fill("urgent call")
    page.get_by_role("button", name="Award").click()
    expect(page.locator("#e-amount_gpu")).to_contain_text("only 100 GPU credits are left")
    assert proposal_status(live_app, proposal_id) == "in_review"
    assert budget(live_app, program_id).awarded == 0
    screenshot(page, "funder-proposal-error")
    page.get_by_label("Award (gpu credits)").fill("60")
    page.get_by_role("button", name="Award").click()
    # It asks first, restating the award; only Award on that page awards.
    expect(page.get_by_test_id("confirm-effect")).to_contain_text("award 60 GPU credits")
    assert proposal_status(live_app, proposal_id) == "in_review"
    screenshot(page, "funder-award-confirm")
    page.get_by_role("button", name="Award").click()
    expect(page.get_by_role("status")).to_contain_text("Awarded")
    expect(page.get_by_test_id("award")).to_contain_text("60")
    screenshot(page, "funder-proposal")
    assert proposal_status(live_app, proposal_id) == "awarded"
    assert budget(live_app, program_id).awarded == 60 * MICRO


def test_the_dashboard_shows_the_figures_and_exports_csv(page: Page, live_app: LiveApp) -> None:
    people(live_app)
    program_id = open_program(live_app, budget_credits=100)
    proposal_id = submitted_proposal(live_app, program_id, credits=40)
    assign(live_app, proposal_id, REVIEWER)
    sign_in(page, live_app, FUNDER, PASSWORD)
    page.goto(f"{live_app.url}/funder/proposals/{proposal_id}")
    page.get_by_label("Override reason (only to decide").fill("decided early")
    page.get_by_role("button", name="Award").click()
    page.get_by_test_id("confirm-page").get_by_role("button", name="Award").click()
    expect(page.get_by_role("status")).to_contain_text("Awarded")
    page.get_by_role("link", name="Compute for climate").click()
    page.get_by_role("link", name="Dashboard").click()
    expect(page.get_by_test_id("balances")).to_contain_text("40")
    expect(page.get_by_test_id("by-project")).to_contain_text("Ice sheets")
    expect(page.get_by_test_id("by-institution")).to_contain_text("Uni of Ice")
    expect(page.locator("figure.chart svg")).to_be_visible()
    expect(page.get_by_text("kg CO₂e").first).to_be_visible()
    screenshot(page, "funder-dashboard")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    download = download_info.value
    assert download.suggested_filename == f"program-{program_id}-report.csv"
    rows = list(csv.DictReader(io.StringIO(download.path().read_text(encoding="utf-8"))))
    awarded = [r for r in rows if r["section"] == "balance" and r["metric"] == "awarded_credits"]
    assert awarded == [awarded[0]] and awarded[0]["value"] == "40"


def _kinds_world(app: LiveApp) -> tuple[World, int, int, datetime]:
    """The API world with funder P's password, and project A's submitted supplement (3 GPU
    credits) and extension (60 days later) of its allocation: (world, ids, the new end)."""
    with session_scope(app.factory) as session:
        world = build_world(session)
        set_password(
            session, email="funder_p@example.org", password=PASSWORD, actor=Actor.system("tests")
        )
        pi = actor_for_email(session, "researcher_a@example.org")
        day = (session.get_one(Allocation, world.allocation).expires_at + timedelta(days=60)).date()
        later = datetime(day.year, day.month, day.day, tzinfo=UTC)
        ids = []
        for kind, content in (
            ("supplement", {"requested": {"gpu": 3 * MICRO}}),
            ("extension", {"ends_at": later}),
        ):
            made = proposals.create_proposal(
                session,
                program_id=world.program_p,
                project_id=world.project_a,
                kind=kind,
                actor=pi,
                title=f"A {kind}",
                abstract="More of the same.",
                justification="The runs take longer.",
                allocation_id=world.allocation,
                **content,
            )
            proposals.submit_proposal(session, proposal_id=made.id, actor=pi)
            ids.append(made.id)
    return world, ids[0], ids[1], later


def _allocation(app: LiveApp, allocation_id: int) -> tuple[int, datetime]:
    with session_scope(app.factory) as session:
        allocation = session.get_one(Allocation, allocation_id)
        return allocation.awarded_micro, allocation.expires_at


def test_a_funder_awards_a_supplement_and_an_extension(page: Page, live_app: LiveApp) -> None:
    world, supplement, extension, later = _kinds_world(live_app)
    awarded, _ = _allocation(live_app, world.allocation)
    sign_in(page, live_app, "funder_p@example.org", PASSWORD)

    # A supplement: one amount, in its allocation's currency, and no dates.
    page.goto(f"{live_app.url}/funder/proposals/{supplement}")
    expect(page.get_by_label("Award (gpu credits)")).to_have_value("3")
    expect(page.get_by_label("Award (label credits)")).to_have_count(0)
    expect(page.get_by_label("Starts on")).to_have_count(0)
    page.get_by_label("Override reason (only to decide").fill("decided early")
    page.get_by_role("button", name="Award").click()
    expect(page.get_by_test_id("confirm-effect")).to_contain_text("award 3 GPU credits")
    page.get_by_test_id("confirm-page").get_by_role("button", name="Award").click()
    expect(page.get_by_role("status")).to_contain_text("Awarded")
    assert _allocation(live_app, world.allocation)[0] == awarded + 3 * MICRO

    # An extension: the new end date only, and no credits.
    page.goto(f"{live_app.url}/funder/proposals/{extension}")
    # The proposal ends at a midnight: its last day, the one before, is what the form shows.
    last_day = (later - timedelta(days=1)).date().isoformat()
    expect(page.get_by_label("New end date")).to_have_value(last_day)
    expect(page.get_by_label("Award (gpu credits)")).to_have_count(0)
    page.get_by_label("Override reason (only to decide").fill("decided early")
    page.get_by_role("button", name="Award").click()
    expect(page.get_by_test_id("confirm-effect")).to_contain_text(
        f"to end on {last_day} (the whole day, UTC)"
    )
    screenshot(page, "funder-extension-confirm")
    page.get_by_test_id("confirm-page").get_by_role("button", name="Award").click()
    expect(page.get_by_role("status")).to_contain_text("Awarded")
    assert _allocation(live_app, world.allocation) == (awarded + 3 * MICRO, later)
