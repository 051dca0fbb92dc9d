"""The ops pages in a real Chromium: rates, adjustments, suspensions, the audit log."""

from __future__ import annotations

from datetime import timedelta

from browser_helpers import FLAVOUR, LiveApp, screenshot, sign_in
from playwright.sync_api import Page, expect

from credits.db import session_scope, utcnow
from credits.grants import projects
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.identity.service import actor_for_email, create_user
from credits.ledger import service as ledger
from credits.ledger.models import AccountKind, Currency
from credits.ledger.queries import get_balance, system_account_id
from credits.pool import service as pool

pytest_plugins = ["browser_support"]
SYSTEM = Actor.system("tests")
PASSWORD = "correct horse battery staple"
OPS = "olu@ops.example.org"
PI = "ada@uni.edu"
HOSTILE = "<script>window.pwned=1</script><b>bold</b>"


def _platform(app: LiveApp) -> tuple[int, int]:
    """An ops user, a researcher's project with credits, and a flavour: (project, account)."""
    with session_scope(app.factory) as session:
        for email, role in ((OPS, Role.OPS), (PI, Role.RESEARCHER)):
            create_user(
                session,
                email=email,
                name=email.partition("@")[0].title(),
                roles=(role,),
                institution="Uni",
                actor=SYSTEM,
                password=PASSWORD,
            )
        project = projects.create_project(
            session,
            title="Ice sheets",
            field_of_science="Glaciology",
            actor=actor_for_email(session, PI),
        )
        account = ledger.open_account(
            session,
            code="ice-gpu",
            currency=Currency.GPU,
            project_id=project.id,
            expires_at=utcnow() + timedelta(days=30),
            actor=SYSTEM,
        )
        ledger.grant(
            session,
            key="ice-fund",
            from_account_id=system_account_id(session, AccountKind.SOURCE, Currency.GPU),
            to_account_id=account.id,
            amount=10_000_000,
            actor=SYSTEM,
        )
        pool.add_flavour(
            session,
            name=FLAVOUR,
            node_label_value="NVIDIA-A100",
            gpu_memory_gb=80,
            gpus_per_node=8,
            actor=SYSTEM,
        )
        pool.set_rate(
            session,
            flavour=FLAVOUR,
            credits_per_gpu_hour_micro=2_000_000,
            effective_from=utcnow(),
            actor=SYSTEM,
        )
        return project.id, account.id


def test_ops_sets_a_rate_and_sees_it_in_the_history(page: Page, live_app: LiveApp) -> None:
    _platform(live_app)
    sign_in(page, live_app, OPS, PASSWORD)
    page.get_by_role("link", name="Pool", exact=True).first.click()
    expect(page.get_by_test_id("capacity")).to_contain_text("16")
    page.get_by_label("Credits per GPU-hour").fill("abc")
    page.get_by_role("button", name="Set rate").click()
    expect(page.locator("#e-credits_per_gpu_hour")).to_contain_text("enter a number of credits")
    page.get_by_label("Flavour", exact=True).select_option(FLAVOUR)
    page.get_by_label("Credits per GPU-hour").fill("4.25")
    page.get_by_label("Reason (optional)").fill("price review")
    page.get_by_role("button", name="Set rate").click()
    expect(page.get_by_role("status")).to_contain_text(f"New rate for {FLAVOUR}")
    history = page.get_by_test_id("rate-history")
    expect(history.locator("tbody tr")).to_have_count(2)
    expect(history.locator("tbody tr").first).to_contain_text("4.25")
    expect(history.locator("tbody tr").first).to_contain_text("price review")
    expect(history.locator("tbody tr").first).to_contain_text("current")
    expect(history.locator("tbody tr").nth(1)).to_contain_text("superseded")
    screenshot(page, "ops-pool")


def test_an_adjustment_without_a_reason_is_refused_inline_and_changes_nothing(
    page: Page, live_app: LiveApp
) -> None:
    _project, account_id = _platform(live_app)
    sign_in(page, live_app, OPS, PASSWORD)
    page.goto(f"{live_app.url}/ops/adjustments")
    page.get_by_label("Account").select_option(str(account_id))
    page.get_by_label("Credits (negative to remove)").fill("5")
    page.get_by_role("button", name="Adjust balance").click()
    expect(page.locator("#e-reason")).to_have_text("an adjustment needs a reason")
    expect(page.get_by_label("Credits (negative to remove)")).to_have_value("5")
    screenshot(page, "ops-adjustment-error")
    with session_scope(live_app.factory) as session:
        assert get_balance(session, account_id=account_id).available == 10_000_000
    page.get_by_label("Reason").fill("refund for a failed node")
    page.get_by_role("button", name="Adjust balance").click()
    expect(page.get_by_role("status")).to_contain_text("adjusted by +5 credits")
    expect(page.get_by_test_id("recent-adjustments")).to_contain_text("refund for a failed node")
    with session_scope(live_app.factory) as session:
        assert get_balance(session, account_id=account_id).available == 15_000_000
    screenshot(page, "ops-adjustments")


def test_ops_suspends_then_unsuspends_a_project(page: Page, live_app: LiveApp) -> None:
    project_id, _account = _platform(live_app)
    sign_in(page, live_app, OPS, PASSWORD)
    page.get_by_role("link", name="Projects", exact=True).first.click()
    row = page.get_by_test_id(f"project-{project_id}")
    expect(row).to_contain_text("active")
    row.get_by_role("button", name="Suspend").click()
    expect(row.get_by_role("alert")).to_contain_text("needs a reason")
    row.get_by_label(f"Reason to suspend project {project_id}").fill(HOSTILE)
    row.get_by_role("button", name="Suspend").click()
    # It asks first, restating the effect and the reason; nothing is suspended yet.
    confirm = page.get_by_test_id("confirm-page")
    expect(confirm.get_by_role("heading", level=1)).to_have_text(f"Suspend project {project_id}?")
    expect(confirm).to_contain_text("Its allocations freeze")
    expect(confirm).to_contain_text(HOSTILE)
    screenshot(page, "ops-suspend-confirm")
    confirm.get_by_role("link", name="Back").click()
    expect(row).to_contain_text("active")
    row.get_by_label(f"Reason to suspend project {project_id}").fill(HOSTILE)
    row.get_by_role("button", name="Suspend").click()
    page.get_by_role("button", name="Suspend the project").click()
    expect(page.get_by_role("status")).to_contain_text("is suspended")
    expect(row).to_contain_text("suspended")
    screenshot(page, "ops-projects")
    row.get_by_label(f"Reason to unsuspend project {project_id}").fill("audit done")
    row.get_by_role("button", name="Unsuspend").click()
    expect(page.get_by_role("status")).to_contain_text("is active")
    expect(row.get_by_role("button", name="Suspend")).to_be_visible()
    # The hostile reason is shown as text in the audit log, and never ran.
    page.goto(f"{live_app.url}/ops/audit?event_type=project.suspended")
    expect(page.get_by_test_id("audit-events")).to_contain_text(HOSTILE)
    assert page.evaluate("window.pwned") is None


def test_the_audit_log_filters_by_event_type(page: Page, live_app: LiveApp) -> None:
    _platform(live_app)
    sign_in(page, live_app, OPS, PASSWORD)
    page.get_by_role("link", name="Audit log", exact=True).first.click()
    events = page.get_by_test_id("audit-events")
    expect(events).to_contain_text("user.created")
    page.get_by_label("Event type").select_option("pool.rate_set")
    page.get_by_role("button", name="Filter").click()
    expect(events.locator("tbody tr")).to_have_count(1)
    expect(events).to_contain_text("pool.rate_set")
    expect(events).not_to_contain_text("user.created")
    screenshot(page, "ops-audit")
    page.get_by_label("Event type").select_option("user.created")
    page.get_by_label("Actor").fill("nobody-at-all")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No events match these filters.")).to_be_visible()
    page.goto(f"{live_app.url}/ops/health")
    expect(page.get_by_test_id("health-checks")).to_contain_text("reachable: 2 schedulable nodes")
    screenshot(page, "ops-health")


def test_a_researcher_gets_404_on_every_ops_page(page: Page, live_app: LiveApp) -> None:
    _platform(live_app)
    sign_in(page, live_app, PI, PASSWORD)
    expect(page.get_by_role("link", name="Pool")).to_have_count(0)
    token = page.locator('meta[name="csrf-token"]').get_attribute("content") or ""
    for path in ("pool", "adjustments", "projects", "audit", "health"):
        response = page.goto(f"{live_app.url}/ops/{path}")
        assert response is not None
        assert response.status == 404, path
    # The "not found" is a page of the portal: its menu, one sentence, a way back.
    error = page.get_by_test_id("error-page")
    expect(error.get_by_role("heading", level=1)).to_have_text("Not found")
    expect(error).to_contain_text("There is no page at /ops/health that your account can open")
    expect(page.get_by_role("navigation", name="Main")).to_contain_text("Jobs")
    expect(page.locator(".who")).to_have_text(PI)
    screenshot(page, "error-404")
    error.get_by_role("link", name="Back to the home page").click()
    expect(page).to_have_url(f"{live_app.url}/")
    posted = page.request.post(
        f"{live_app.url}/ops/projects/1/suspend", form={"reason": "x", "csrf_token": token}
    )
    assert posted.status == 404
