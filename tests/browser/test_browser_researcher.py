"""The researcher in a real Chromium: dashboard, a job from form to success, proposals,
inline form errors with nothing saved, user text shown as text, and other projects' 404s."""

from __future__ import annotations

import re
import shlex
import time

from api_world import RESEARCHER_A, RESEARCHER_B, World, build_world
from browser_helpers import LiveApp, screenshot, sign_in
from playwright.sync_api import Page, expect
from sqlalchemy import func, select

from credits.db import session_scope
from credits.grants.models import Proposal
from credits.identity.actor import Actor
from credits.identity.service import set_password
from credits.jobs.models import Job, JobState
from credits.jobs.runtime import run_cycle
from credits.settings import load_settings

pytest_plugins = ["browser_support"]
SYSTEM = Actor.system("tests")
PASSWORD = "correct horse battery staple"
HOSTILE = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'


def _world(app: LiveApp) -> World:
    with session_scope(app.factory) as session:
        world = build_world(session)
        for name in (RESEARCHER_A, RESEARCHER_B):
            set_password(session, email=f"{name}@example.org", password=PASSWORD, actor=SYSTEM)
    return world


def _count(app: LiveApp, model: type[Job] | type[Proposal]) -> int:
    with session_scope(app.factory) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _job_state(app: LiveApp, job_id: int) -> str:
    with session_scope(app.factory) as session:
        job = session.get_one(Job, job_id)
        return job.state


def _run_until(app: LiveApp, job_id: int, state: JobState, timeout: float = 15.0) -> None:
    settings = load_settings()
    deadline = time.monotonic() + timeout
    while _job_state(app, job_id) != state.value:
        assert time.monotonic() < deadline, f"job {job_id} never reached {state}"
        run_cycle(app.factory, app.executor, settings)
        time.sleep(0.3)


def test_a_job_goes_from_the_form_to_succeeded_and_the_balance_drops(
    page: Page, live_app: LiveApp
) -> None:
    world = _world(live_app)
    sign_in(page, live_app, f"{RESEARCHER_A}@example.org", PASSWORD)
    expect(page.get_by_test_id("available-gpu")).to_be_visible()
    used_before = page.get_by_test_id("used-gpu").inner_text()
    expect(page.get_by_role("link", name=re.compile(r"#\d+ train"))).to_be_visible()
    screenshot(page, "researcher-dashboard")

    page.goto(f"{live_app.url}/projects/{world.project_a}")
    expect(page.get_by_role("heading", name="Members")).to_be_visible()
    expect(page.get_by_test_id("ledger")).to_contain_text("grant")
    screenshot(page, "researcher-project")

    page.get_by_role("link", name="Submit a job").first.click()
    page.get_by_label("Job name").fill("ui-train")
    page.get_by_label("Command").fill("python train.py --epochs 1")
    page.get_by_label("Max runtime (minutes)").fill("1")
    page.get_by_label("Labels (optional").fill("credits.dev/simulated-duration-s=1")
    page.get_by_role("button", name="Preview cost").click()
    # 1 GPU x 60 s x 2.5 credits per GPU-hour (0.041667 held), shown to a hundredth.
    expect(page.get_by_test_id("hold-preview")).to_contain_text("0.04 credits")
    screenshot(page, "researcher-job-form")
    jobs_before = _count(live_app, Job)
    page.get_by_role("button", name="Submit job").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    job_id = int(page.url.rsplit("/", 1)[1])
    assert _count(live_app, Job) == jobs_before + 1
    expect(page.get_by_test_id("job-state")).to_have_text("queued")
    expect(page.get_by_test_id("job-held")).to_have_text("0.04")

    _run_until(live_app, job_id, JobState.RUNNING)
    expect(page.get_by_test_id("job-state")).to_have_text("running")
    screenshot(page, "researcher-job-running")
    _run_until(live_app, job_id, JobState.SUCCEEDED)
    run_cycle(live_app.factory, live_app.executor, load_settings())  # settle what it used
    # The state poll reloads the page once the job has finished.
    expect(page.locator(".page-head .badge")).to_have_text("succeeded", timeout=10_000)
    expect(page.get_by_test_id("timeline")).to_contain_text("running")
    expect(page.get_by_test_id("job-log")).not_to_be_empty()
    screenshot(page, "researcher-job-detail")

    page.goto(f"{live_app.url}/jobs?state=succeeded")
    expect(page.get_by_test_id("jobs")).to_contain_text("ui-train")
    screenshot(page, "researcher-jobs")
    page.goto(f"{live_app.url}/")
    expect(page.get_by_test_id("used-gpu")).not_to_have_text(used_before)
    expect(page.locator(".balance .chart svg")).to_be_visible()
    screenshot(page, "researcher-dashboard-after-a-job")
    page.goto(f"{live_app.url}/projects/{world.project_a}?kind=capture")
    expect(page.locator("#usage-heading + .grid .chart svg").first).to_be_visible()
    expect(page.get_by_test_id("ledger")).to_contain_text("capture")
    expect(page.get_by_test_id("ledger")).not_to_contain_text("grant")
    screenshot(page, "researcher-project-usage")


def test_form_errors_are_inline_nothing_is_saved_and_user_text_stays_text(
    page: Page, live_app: LiveApp
) -> None:
    world = _world(live_app)
    pwned = "() => window.pwned === undefined"
    sign_in(page, live_app, f"{RESEARCHER_A}@example.org", PASSWORD)
    jobs_before = _count(live_app, Job)
    page.goto(f"{live_app.url}/projects/{world.project_a}/jobs/new")
    page.get_by_label("Job name").fill("Not A Name!")
    page.get_by_label("Command").fill("python 'unclosed")
    page.get_by_label("Environment variables").fill("no equals sign")
    page.get_by_role("button", name="Preview cost").click()
    expect(page.get_by_role("alert")).to_contain_text("Nothing was submitted")
    expect(page.locator("#e-command")).to_contain_text("cannot split")
    expect(page.locator("#e-env")).to_contain_text("KEY=VALUE")
    page.get_by_label("Command").fill(f"echo '{HOSTILE}'")
    page.get_by_label("Environment variables").fill("")
    page.get_by_role("button", name="Preview cost").click()
    expect(page.locator("#e-name")).to_contain_text("lower-case")
    screenshot(page, "researcher-job-form-errors")
    page.get_by_label("Job name").fill("hostile")
    page.get_by_role("button", name="Preview cost").click()
    page.get_by_role("button", name="Submit job").click()
    expect(page.get_by_test_id("job-command")).to_have_text(shlex.join(["echo", HOSTILE]))
    assert page.evaluate(pwned)
    assert _count(live_app, Job) == jobs_before + 1

    proposals_before = _count(live_app, Proposal)
    page.goto(f"{live_app.url}/programs/open")
    screenshot(page, "researcher-programs")
    page.get_by_role("link", name="Apply to P").click()
    page.get_by_label("Title").fill(HOSTILE)
    page.get_by_label("Abstract").fill(HOSTILE)
    page.get_by_label("Justification").fill("Many GPU-hours.")
    page.get_by_label("GPU credits requested").fill("lots")
    page.get_by_role("button", name="Save draft").click()
    expect(page.locator("#e-requested_gpu")).to_contain_text("number of credits")
    assert _count(live_app, Proposal) == proposals_before
    page.get_by_label("GPU credits requested").fill("500")
    page.get_by_role("button", name="Submit proposal").click()
    # No period yet: submitting is refused with the missing fields marked, and
    # the draft is not saved either.
    expect(page.locator("#e-starts_on")).to_contain_text("needed")
    assert _count(live_app, Proposal) == proposals_before
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("status")).to_contain_text("Draft saved")
    assert _count(live_app, Proposal) == proposals_before + 1
    expect(page.get_by_label("Title")).to_have_value(HOSTILE)
    page.get_by_label("Starts on").fill("2030-01-01")
    page.get_by_label("Ends on").fill("2030-06-30")
    page.get_by_role("button", name="Submit proposal").click()
    expect(page.get_by_role("status")).to_contain_text("Proposal submitted")
    expect(page.get_by_test_id("proposal-title")).to_have_text(HOSTILE)
    assert page.evaluate(pwned)
    screenshot(page, "researcher-proposal")


def test_a_researcher_cannot_open_another_projects_pages(page: Page, live_app: LiveApp) -> None:
    world = _world(live_app)
    sign_in(page, live_app, f"{RESEARCHER_B}@example.org", PASSWORD)
    for path in (
        f"/projects/{world.project_a}",
        f"/projects/{world.project_a}/jobs/new",
        f"/projects/{world.project_a}/report.csv",
        f"/jobs/{world.job_a}",
        f"/jobs/{world.job_a}/logs.json",
        f"/applications/{world.proposal_draft}",
    ):
        response = page.goto(f"{live_app.url}{path}")
        assert response is not None and response.status == 404, path
    page.goto(f"{live_app.url}/jobs")
    expect(page.get_by_text("No jobs yet")).to_be_visible()
    expect(page.get_by_role("link", name="Submit a job to Proteins")).to_be_visible()
