"""The reviewer's pages in a real Chromium: scoring with inline errors, a conflict of
interest that takes the proposal out of reach, and free text shown as text."""

from __future__ import annotations

from browser_helpers import LiveApp, screenshot, sign_in
from playwright.sync_api import Page, expect
from review_funder_scenario import (
    CONFLICTED,
    HOSTILE,
    PASSWORD,
    REVIEWER,
    assign,
    open_program,
    people,
    submitted_proposal,
)

pytest_plugins = ["browser_support"]


def test_a_reviewer_scores_each_criterion_with_errors_inline(page: Page, live_app: LiveApp) -> None:
    people(live_app)
    program_id = open_program(live_app)
    title = "<i>Ice</i> & <script>window.pwned = 1</script>"
    proposal_id = submitted_proposal(live_app, program_id, title=title)
    assign(live_app, proposal_id, REVIEWER)
    sign_in(page, live_app, REVIEWER, PASSWORD)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Reviews").click()
    expect(page.get_by_test_id("assigned")).to_contain_text("to do")
    screenshot(page, "reviewer-assigned")
    page.get_by_role("link", name=title).click()
    # Titles and abstracts are text, never markup.
    expect(page.get_by_role("heading", level=1)).to_contain_text(title)
    expect(page.get_by_test_id("abstract")).to_have_text(HOSTILE)
    assert page.evaluate("window.pwned") is None
    # One criterion left out: the error sits next to it, and nothing is saved.
    page.get_by_role("group", name="Scientific merit").get_by_label("4").check()
    page.get_by_label("Comment").fill("Careful plan; the <b>budget</b> is tight.")
    page.get_by_role("button", name="Submit review").click()
    expect(page.get_by_role("group", name="Fit")).to_contain_text("choose a score from 1 to 5")
    expect(page.get_by_role("group", name="Scientific merit").get_by_label("4")).to_be_checked()
    screenshot(page, "reviewer-proposal-error")
    page.get_by_role("group", name="Fit").get_by_label("3").check()
    page.get_by_role("button", name="Submit review").click()
    expect(page.get_by_role("status")).to_contain_text("Your review is saved")
    expect(page.get_by_role("button", name="Update review")).to_be_visible()
    screenshot(page, "reviewer-proposal")
    page.get_by_role("link", name="Proposals to review").click()
    expect(page.get_by_test_id("assigned")).to_contain_text("scored, mean 3.50")


def test_a_reviewer_who_declares_a_conflict_can_no_longer_open_the_proposal(
    page: Page, live_app: LiveApp
) -> None:
    people(live_app)
    proposal_id = submitted_proposal(live_app, open_program(live_app))
    assign(live_app, proposal_id, CONFLICTED)
    sign_in(page, live_app, CONFLICTED, PASSWORD)
    page.goto(f"{live_app.url}/reviews/{proposal_id}")
    page.get_by_role("button", name="Declare a conflict of interest").click()
    expect(page.get_by_role("alert")).to_contain_text("say briefly why")
    page.get_by_label("Reason for the conflict").fill("I co-wrote the preliminary work.")
    page.get_by_role("button", name="Declare a conflict of interest").click()
    # It asks first, restating the effect; Back changes nothing.
    expect(page.get_by_test_id("confirm-effect")).to_contain_text(
        f"declare a conflict of interest with proposal {proposal_id}"
    )
    page.get_by_role("link", name="Back").click()
    expect(page.get_by_role("button", name="Declare a conflict of interest")).to_be_visible()
    page.get_by_label("Reason for the conflict").fill("I co-wrote the preliminary work.")
    page.get_by_role("button", name="Declare a conflict of interest").click()
    page.get_by_role("button", name="Declare the conflict").click()
    expect(page.get_by_role("status")).to_contain_text("You declared a conflict of interest")
    expect(page.get_by_text("Nothing to review yet")).to_be_visible()
    response = page.goto(f"{live_app.url}/reviews/{proposal_id}")
    assert response is not None
    assert response.status == 404
    expect(page.get_by_test_id("error-page")).to_contain_text(f"No proposal {proposal_id}")
