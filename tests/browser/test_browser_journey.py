"""The whole journey in a real Chromium, one browser context per person.

A funder creates, funds and opens a program; a researcher applies to it; the
funder assigns a reviewer, who scores every criterion; the funder awards; the
researcher submits a GPU job that runs on the simulated executor; the balance
drops on the researcher's dashboard and the usage shows on the funder's
program dashboard. Only the accounts, the GPU flavour and its rate, and the
researcher's project (there is no page to create one) are set up through the
services; every other step is done in the browser.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from browser_helpers import FLAVOUR, LiveApp, screenshot, sign_in
from playwright.sync_api import Browser, Page, expect
from review_funder_scenario import FUNDER, PASSWORD, RESEARCHER, REVIEWER, people

from credits.db import session_scope, utcnow
from credits.grants import projects
from credits.identity.actor import Actor
from credits.identity.service import actor_for_email
from credits.jobs.models import Job, JobState
from credits.jobs.runtime import run_cycle
from credits.pool import service as pool
from credits.settings import load_settings

pytest_plugins = ["browser_support"]
SYSTEM = Actor.system("tests")
PROGRAM = "Journey to the ice"
PROJECT = "Ice sheet dynamics"
TITLE = "Coupled ice-ocean runs"
# 36 credits per GPU-hour is 0.01 credits per GPU-second: easy figures to check.
RATE_MICRO = 36_000_000
JOB_SECONDS = 2


def _platform(app: LiveApp) -> None:
    """Four accounts, a GPU flavour with a rate in force, and the researcher's project."""
    people(app)
    with session_scope(app.factory) as session:
        pool.add_flavour(
            session,
            name=FLAVOUR,
            node_label_value="NVIDIA-A100-SXM4-80GB",
            gpu_memory_gb=80,
            gpus_per_node=8,
            actor=SYSTEM,
        )
        pool.set_rate(
            session,
            flavour=FLAVOUR,
            credits_per_gpu_hour_micro=RATE_MICRO,
            effective_from=utcnow(),
            actor=SYSTEM,
        )
        pi = actor_for_email(session, RESEARCHER)
        projects.create_project(session, title=PROJECT, field_of_science="Glaciology", actor=pi)


@contextmanager
def _persona(chromium: Browser, app: LiveApp, email: str) -> Iterator[Page]:
    """A signed-in tab in a browser context of its own, so sessions never mix."""
    context = chromium.new_context(viewport={"width": 1280, "height": 860})
    try:
        tab = context.new_page()
        tab.set_default_timeout(10_000)
        sign_in(tab, app, email, PASSWORD)
        yield tab
    finally:
        context.close()


def _job_state(app: LiveApp, job_id: int) -> str:
    with session_scope(app.factory) as session:
        return session.get_one(Job, job_id).state


def _run_until_succeeded(app: LiveApp, job_id: int, timeout: float = 15.0) -> None:
    """Drive the jobs cycle (schedule, reconcile, settle) until the job has succeeded."""
    settings = load_settings()
    deadline = time.monotonic() + timeout
    while _job_state(app, job_id) != JobState.SUCCEEDED.value:
        assert time.monotonic() < deadline, f"job {job_id} never succeeded"
        run_cycle(app.factory, app.executor, settings)
        time.sleep(0.3)
    run_cycle(app.factory, app.executor, settings)  # settle what it used


def _cells(page: Page, table: str, row_text: str) -> list[str]:
    row = page.get_by_test_id(table).locator("tbody tr").filter(has_text=row_text)
    expect(row).to_have_count(1)
    return [cell.strip() for cell in row.locator("td").all_inner_texts()]


@pytest.mark.slow
def test_the_whole_journey_from_a_program_to_its_usage(
    chromium: Browser, live_app: LiveApp
) -> None:
    _platform(live_app)
    today = utcnow().date()
    with (
        _persona(chromium, live_app, FUNDER) as funder,
        _persona(chromium, live_app, RESEARCHER) as researcher,
        _persona(chromium, live_app, REVIEWER) as reviewer,
    ):
        # The funder creates a program, funds it and opens it.
        funder.get_by_role("navigation", name="Main").get_by_role("link", name="Programs").click()
        funder.get_by_label("Name").fill(PROGRAM)
        funder.get_by_label("Description").fill("GPU hours for ice-sheet models.")
        funder.get_by_label("Review criteria (one per line)").fill("Scientific merit\nFeasibility")
        funder.get_by_label("Reviews needed per proposal").fill("1")
        funder.get_by_label("Lowest mean score to award").fill("3.00")
        funder.get_by_role("button", name="Create program").click()
        expect(funder.get_by_role("heading", level=1)).to_have_text(f"{PROGRAM} draft")
        funder.get_by_label("Amount (credits)").fill("100")
        funder.get_by_label("Reason").fill("FY27 budget line")
        funder.get_by_role("button", name="Add funds").click()
        expect(funder.get_by_role("status")).to_contain_text("Added 100 GPU credits")
        funder.get_by_role("button", name="Open for proposals").click()
        expect(funder.get_by_role("heading", level=1)).to_have_text(f"{PROGRAM} open")
        expect(funder.get_by_test_id("budget").locator("tbody tr").first).to_have_text(
            re.compile(r"GPU\s*100\s*0\s*0\s*0\s*100")  # funded, awarded, held, promised, left
        )
        program_url = funder.url
        screenshot(funder, "journey-1-funder-program-open")

        # The researcher has a project but no credits yet, and applies to the program.
        expect(researcher.get_by_text("No credits yet")).to_be_visible()
        researcher.get_by_role("navigation", name="Main").get_by_role(
            "link", name="Programs"
        ).click()
        researcher.get_by_role("link", name=f"Apply to {PROGRAM}").click()
        researcher.get_by_label("Project").select_option(label=PROJECT)
        researcher.get_by_label("Title").fill(TITLE)
        researcher.get_by_label("Abstract").fill("Coupled ice-ocean runs at 2 km.")
        researcher.get_by_label("Justification of the request").fill("About 40 GPU-hours.")
        researcher.get_by_label("GPU credits requested").fill("40")
        researcher.get_by_label("Starts on").fill(today.isoformat())
        researcher.get_by_label("Ends on").fill((today + timedelta(days=90)).isoformat())
        screenshot(researcher, "journey-2-researcher-applies")
        researcher.get_by_role("button", name="Submit proposal").click()
        expect(researcher.get_by_role("status")).to_contain_text("Proposal submitted")
        expect(researcher.get_by_test_id("proposal-title")).to_have_text(TITLE)
        expect(researcher.get_by_text("submitted", exact=True)).to_be_visible()
        screenshot(researcher, "journey-3-researcher-proposal-submitted")

        # The funder sees it in the queue and assigns a reviewer.
        funder.reload()
        expect(funder.get_by_test_id("queue")).to_contain_text(TITLE)
        expect(funder.get_by_test_id("queue")).to_contain_text("0 / 1")
        funder.get_by_role("link", name=TITLE).click()
        funder.get_by_label("Reviewer", exact=True).select_option(
            label=f"Rita <{REVIEWER}>, Elsewhere"
        )
        funder.get_by_role("button", name="Assign").click()
        expect(funder.get_by_role("status")).to_contain_text("Reviewer assigned")
        expect(funder.get_by_test_id("reviewers")).to_contain_text(REVIEWER)
        expect(funder.get_by_test_id("reviewers")).to_contain_text("pending")
        proposal_url = funder.url
        screenshot(funder, "journey-4-funder-assigns-a-reviewer")

        # The reviewer scores every criterion.
        reviewer.get_by_role("navigation", name="Main").get_by_role("link", name="Reviews").click()
        expect(reviewer.get_by_test_id("assigned")).to_contain_text("to do")
        reviewer.get_by_role("link", name=TITLE).click()
        for criterion, score in (("Scientific merit", "5"), ("Feasibility", "4")):
            reviewer.get_by_role("group", name=criterion).get_by_label(score).check()
        reviewer.get_by_label("Comment").fill("A clear plan; the budget fits the runs.")
        screenshot(reviewer, "journey-5-reviewer-scores")
        reviewer.get_by_role("button", name="Submit review").click()
        expect(reviewer.get_by_role("status")).to_contain_text("Your review is saved")
        reviewer.get_by_role("link", name="Proposals to review").click()
        expect(reviewer.get_by_test_id("assigned")).to_contain_text("scored, mean 4.50")

        # The funder sees the scores and awards within the remaining budget.
        funder.goto(proposal_url)
        expect(funder.get_by_test_id("review-count")).to_have_text("1 of 1")
        expect(funder.get_by_test_id("reviewers")).to_contain_text("scored")
        expect(funder.get_by_text("Left to award:")).to_contain_text("100 GPU credits")
        expect(funder.get_by_label("Award (gpu credits)")).to_have_value("40")
        expect(funder.get_by_label("Starts on")).to_have_value(today.isoformat())
        funder.get_by_role("button", name="Award").click()
        funder.get_by_test_id("confirm-page").get_by_role("button", name="Award").click()
        expect(funder.get_by_role("status")).to_contain_text("Awarded")
        expect(funder.get_by_role("heading", level=1)).to_have_text(f"{TITLE} awarded")
        award = _cells(funder, "award", "gpu")
        assert award[2:5] == ["40", "40", "40"], award
        screenshot(funder, "journey-6-funder-awards")
        funder.goto(program_url)
        expect(funder.get_by_test_id("budget").locator("tbody tr").first).to_have_text(
            re.compile(r"GPU\s*100\s*40\s*0\s*0\s*60")
        )

        # The researcher sees the allocation and the balance on the dashboard.
        researcher.get_by_role("navigation", name="Main").get_by_role("link", name="Home").click()
        expect(researcher.get_by_test_id("available-gpu")).to_have_text("40")
        expect(researcher.get_by_test_id("held-gpu")).to_have_text("0")
        expect(researcher.get_by_test_id("used-gpu")).to_have_text("0")
        expect(researcher.get_by_role("link", name=PROJECT).first).to_be_visible()
        screenshot(researcher, "journey-7-researcher-dashboard-awarded")

        # The researcher submits a GPU job through the form: preview, then submit.
        researcher.get_by_role("link", name="Submit a job").click()
        researcher.get_by_label("Job name").fill("ice-train")
        researcher.get_by_label("Command").fill("python train.py --epochs 1")
        expect(researcher.get_by_role("radio", name=re.compile(FLAVOUR))).to_be_checked()
        expect(researcher.get_by_text("36 credits per GPU-hour")).to_be_visible()
        researcher.get_by_label("GPUs", exact=True).fill("1")
        researcher.get_by_label("Max runtime (minutes)").fill("1")
        researcher.get_by_label("Labels (optional").fill(
            f"credits.dev/simulated-duration-s={JOB_SECONDS}"
        )
        researcher.get_by_role("button", name="Preview cost").click()
        # 1 GPU x 1 minute x 36 credits per GPU-hour.
        expect(researcher.get_by_test_id("hold-preview")).to_contain_text(
            "0.60 credits will be held"
        )
        expect(researcher.get_by_test_id("hold-preview")).to_contain_text("has 40 GPU credits")
        screenshot(researcher, "journey-8-researcher-job-preview")
        researcher.get_by_role("button", name="Submit job").click()
        expect(researcher).to_have_url(re.compile(r"/jobs/\d+$"))
        job_id = int(researcher.url.rsplit("/", 1)[1])
        expect(researcher.get_by_test_id("job-state")).to_have_text("queued")
        expect(researcher.get_by_test_id("job-held")).to_have_text("0.60")
        screenshot(researcher, "journey-9-researcher-job-queued")

        # The job runs on the simulated executor; the page follows it to the end.
        _run_until_succeeded(live_app, job_id)
        expect(researcher.locator(".page-head .badge")).to_have_text("succeeded", timeout=10_000)
        expect(researcher.get_by_test_id("timeline")).to_contain_text("running")
        expect(researcher.get_by_test_id("job-log")).to_contain_text(
            f"attempt 1 of job {job_id} accepted"
        )
        expect(researcher.get_by_test_id("job-log")).to_contain_text("with 1 GPUs")
        expect(researcher.get_by_test_id("job-log")).to_contain_text("exit 0")
        # 2 GPU-seconds at 0.01 credits each.
        expect(researcher.get_by_test_id("job-charged")).to_have_text("0.02")
        screenshot(researcher, "journey-10-researcher-job-succeeded")

        # The balance drops on the researcher's dashboard.
        researcher.get_by_role("navigation", name="Main").get_by_role("link", name="Home").click()
        expect(researcher.get_by_test_id("used-gpu")).to_have_text("0.02")
        expect(researcher.get_by_test_id("held-gpu")).to_have_text("0")
        expect(researcher.get_by_test_id("available-gpu")).to_have_text("39.98")
        screenshot(researcher, "journey-11-researcher-dashboard-after-the-job")

        # The funder's program dashboard shows the usage by project.
        funder.get_by_role("link", name="Dashboard").click()
        expect(funder.get_by_role("heading", level=1)).to_have_text(f"{PROGRAM}: dashboard")
        project = _cells(funder, "by-project", PROJECT)
        # Project, institution, currency, awarded, held, used, expired, available, ...
        assert project[:8] == [PROJECT, "Uni of Ice", "GPU", "40", "0", "0.02", "0", "39.98"]
        totals = _cells(funder, "balances", "gpu")
        assert totals[1:6] == ["40", "0", "0.02", "0", "39.98"], totals
        expect(funder.locator("figure.chart svg")).to_be_visible()
        screenshot(funder, "journey-12-funder-dashboard-usage")
