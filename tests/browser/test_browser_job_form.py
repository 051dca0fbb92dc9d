"""The job form and the live job page in Chromium, on a desktop and on a phone: the
preview refuses what submitting would (9 GPUs on 8-GPU nodes, 20,000 minutes, more
than the project has) with Submit off and the reason shown, a change after a good
preview turns Submit off until the next preview, the job page follows the job's
states without reloading, and "Copy to new job" fills a new form from its spec.
A field typed into before the form's script has loaded still counts as a change."""

from __future__ import annotations

import re
import time

import pytest
from browser_helpers import SIZES, LiveApp, screenshot, sign_in
from playwright.sync_api import Browser, Page, Route, expect

from credits.db import session_scope
from credits.demo import seed_demo
from credits.jobs.models import Job, JobState
from credits.jobs.runtime import run_cycle
from credits.settings import load_settings

pytest_plugins = ["browser_support"]


def _researcher(app: LiveApp) -> tuple[str, str, int]:
    with session_scope(app.factory) as session:
        result = seed_demo(session, flavour="a100-80gb", gpus_per_node=8)
    login = next(login for login in result.logins if login.role == "researcher")
    assert result.project_id is not None
    return login.email, login.password, result.project_id


def _run_until(app: LiveApp, job_id: int, state: JobState, timeout: float = 15.0) -> None:
    settings = load_settings()
    deadline = time.monotonic() + timeout
    while True:
        with session_scope(app.factory) as session:
            if session.get_one(Job, job_id).state == state.value:
                return
        assert time.monotonic() < deadline, f"job {job_id} never reached {state}"
        run_cycle(app.factory, app.executor, settings)
        time.sleep(0.3)


def _preview(page: Page, **fields: str) -> None:
    labels = {"gpus": "GPUs", "minutes": "Max runtime (minutes)"}
    for name, value in fields.items():
        page.get_by_label(labels[name], exact=True).fill(value)
    page.get_by_role("button", name="Preview cost").click()


@pytest.mark.parametrize("size", SIZES)
def test_the_job_form_blocks_what_submit_refuses_and_the_job_page_lives(
    chromium: Browser, live_app: LiveApp, size: str
) -> None:
    email, password, project_id = _researcher(live_app)
    context = chromium.new_context(viewport=SIZES[size])
    page = context.new_page()
    page.set_default_timeout(10_000)
    sign_in(page, live_app, email, password)
    page.goto(f"{live_app.url}/projects/{project_id}/jobs/new")
    page.get_by_label("Job name").fill("ice-train")
    page.get_by_label("Command").fill("python train.py --note 'two words'")
    page.get_by_label("Labels (optional").fill("credits.dev/simulated-duration-s=600")
    page.get_by_label("CPU cores (optional)").fill("6")
    page.get_by_label("Working directory (optional)").fill("/workspace")
    submit = page.get_by_role("button", name="Submit job")

    _preview(page, gpus="9")
    expect(page.locator("#e-gpus")).to_contain_text("do not fit one a100-80gb node (8 GPUs)")
    expect(submit).to_be_disabled()
    expect(page.get_by_test_id("submit-blocked")).to_be_visible()
    screenshot(page, f"job-form-{size}-gpus-over-a-node")

    _preview(page, gpus="1", minutes="20000")
    expect(page.locator("#e-max_runtime_minutes")).to_contain_text("cap of 7 days")
    expect(submit).to_be_disabled()

    _preview(page, gpus="8", minutes="10080")  # 1,344 GPU-hours at 1 credit: over 1,000
    expect(page.get_by_test_id("submit-blocked")).to_contain_text(
        "this needs 1,344 GPU credits and only 1,000 GPU credits are available"
    )
    expect(submit).to_be_disabled()
    screenshot(page, f"job-form-{size}-over-the-budget")

    _preview(page, gpus="1", minutes="30")
    expect(page.get_by_test_id("hold-preview")).to_contain_text("0.50 credits will be held")
    expect(submit).to_be_enabled()
    page.get_by_label("Job name").fill("ice-train-2")  # changed since the preview
    expect(submit).to_be_disabled()
    expect(page.get_by_test_id("submit-stale")).to_be_visible()
    _preview(page)
    expect(submit).to_be_enabled()
    screenshot(page, f"job-form-{size}-previewed")
    submit.click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    job_id = int(page.url.rsplit("/", 1)[1])
    expect(page.get_by_test_id("job-command")).to_have_text("python train.py --note 'two words'")

    # The page follows the job without reloading: a mark left on it survives.
    page.evaluate("() => { window.stillThisPage = true; }")
    expect(page.get_by_test_id("timeline")).to_contain_text("queued")
    _run_until(live_app, job_id, JobState.RUNNING)
    expect(page.get_by_test_id("job-state")).to_have_text("running")
    expect(page.get_by_test_id("timeline")).to_contain_text("starting")
    expect(page.get_by_test_id("timeline").locator(".badge-running")).to_be_visible()
    expect(page.get_by_test_id("job-started")).to_have_text(re.compile(r"\d\d:\d\d UTC"))
    assert page.evaluate("() => window.stillThisPage === true")
    screenshot(page, f"job-page-{size}-running")

    page.get_by_test_id("job-copy").click()
    expect(page.get_by_test_id("copied-from")).to_contain_text(f"job #{job_id}")
    expect(page.get_by_label("Command")).to_have_value("python train.py --note 'two words'")
    expect(page.get_by_label("Job name")).to_have_value("ice-train-2")
    expect(page.get_by_label("CPU cores (optional)")).to_have_value("6")
    expect(page.get_by_label("Working directory (optional)")).to_have_value("/workspace")
    expect(page.get_by_label("Max runtime (minutes)")).to_have_value("30")
    screenshot(page, f"job-form-{size}-copied")
    context.close()


def test_a_change_typed_before_the_form_script_loads_still_turns_submit_off(
    chromium: Browser, live_app: LiveApp
) -> None:
    email, password, project_id = _researcher(live_app)
    context = chromium.new_context(viewport=SIZES["desktop"])
    page = context.new_page()
    page.set_default_timeout(10_000)
    held_scripts: list[Route] = []
    hold = False

    def serve_form_script(route: Route) -> None:
        if hold:
            held_scripts.append(route)  # a slow network: answered below
        else:
            route.continue_()

    page.route("**/job_form.js", serve_form_script)  # routing also turns the cache off
    sign_in(page, live_app, email, password)
    page.goto(f"{live_app.url}/projects/{project_id}/jobs/new")
    page.get_by_label("Job name").fill("ice-train")
    page.get_by_label("Command").fill("python train.py")
    hold = True
    _preview(page, gpus="1", minutes="30")
    submit = page.get_by_role("button", name="Submit job")
    expect(page.get_by_test_id("hold-preview")).to_contain_text("0.50 credits will be held")
    expect(submit).to_be_enabled()

    page.get_by_label("Job name").fill("ice-train-2")  # before the script has run
    assert len(held_scripts) == 1
    held_scripts[0].continue_()

    expect(submit).to_be_disabled()
    expect(page.get_by_test_id("submit-stale")).to_be_visible()
    context.close()
