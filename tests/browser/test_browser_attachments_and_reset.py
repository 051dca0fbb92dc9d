"""Proposal attachments and a forgotten password in a real Chromium at 1366x900 and
390x844: the PI attaches a PDF to a draft (a file that is no PDF is refused at its
field), downloads it and removes it after a confirmation; a visitor asks for a reset
link, follows the mailed link and signs in with the new password. A screenshot of
each step per size.

Run it alone, serially: ``pytest -n 0 tests/browser/test_browser_attachments_and_reset.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from api_world import RESEARCHER_A, World, build_world
from browser_helpers import SIZES, LiveApp, screenshot, sign_in
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from credits.db import session_scope
from credits.grants.models import ProposalAttachment
from credits.identity.actor import Actor
from credits.identity.service import set_password
from credits.notifications.models import OutboxMessage
from credits.notifications.password_mail import KIND_RESET_LINK

pytest_plugins = ["browser_support"]
SYSTEM = Actor.system("tests")
PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "staple battery horse correct"
EMAIL = f"{RESEARCHER_A}@example.org"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def _world(app: LiveApp) -> World:
    with session_scope(app.factory) as session:
        world = build_world(session)
        set_password(session, email=EMAIL, password=PASSWORD, actor=SYSTEM)
    return world


def _attachments(app: LiveApp, proposal_id: int) -> list[str]:
    with session_scope(app.factory) as session:
        rows = session.scalars(
            select(ProposalAttachment).where(ProposalAttachment.proposal_id == proposal_id)
        )
        return [row.filename for row in rows]


def _mailed_link(app: LiveApp) -> str:
    with session_scope(app.factory) as session:
        message = session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == KIND_RESET_LINK)
        ).one()
        found = re.search(r"https?://\S+/reset-password/\S+", message.body)
        assert found is not None, message.body
        return found.group(0)


@pytest.mark.parametrize("size", SIZES)
def test_attach_download_and_remove_a_pdf_then_reset_a_forgotten_password(
    page: Page, chromium: Browser, live_app: LiveApp, size: str, tmp_path: Path
) -> None:
    world = _world(live_app)
    page.set_viewport_size(SIZES[size])
    sign_in(page, live_app, EMAIL, PASSWORD)
    good, bad = tmp_path / "project-description.pdf", tmp_path / "notes.pdf"
    good.write_bytes(PDF)
    bad.write_bytes(b"just some notes, not a PDF\n")

    # A file that is no PDF is refused at its field; a PDF is attached and listed.
    page.goto(f"{live_app.url}/applications/{world.proposal_draft}")
    panel = page.get_by_test_id("attachments")
    panel.get_by_label("PDF file").set_input_files(str(bad))
    panel.get_by_role("button", name="Attach").click()
    expect(page.get_by_text("Nothing was stored.")).to_be_visible()
    assert _attachments(live_app, world.proposal_draft) == []
    panel = page.get_by_test_id("attachments")
    panel.get_by_label("PDF file").set_input_files(str(good))
    panel.get_by_role("button", name="Attach").click()
    expect(page.get_by_test_id("attachments")).to_contain_text("project-description.pdf")
    assert _attachments(live_app, world.proposal_draft) == ["project-description.pdf"]
    screenshot(page, f"attachments-listed-{size}")

    # The download is the file as it was sent.
    with page.expect_download() as download:
        page.get_by_role("link", name="project-description.pdf").click()
    assert Path(download.value.path()).read_bytes() == PDF

    # Removing asks first.
    page.get_by_test_id("attachments").get_by_role("button", name="Remove…").click()
    expect(page.get_by_test_id("confirm-effect")).to_contain_text("project-description.pdf")
    screenshot(page, f"attachments-remove-confirm-{size}")
    assert _attachments(live_app, world.proposal_draft) == ["project-description.pdf"]
    page.get_by_test_id("confirm-page").get_by_role("button").click()
    expect(page.get_by_test_id("attachments")).not_to_contain_text("project-description.pdf")
    assert _attachments(live_app, world.proposal_draft) == []

    # A visitor who forgot the password gets a one-time link by mail.
    visitor = chromium.new_context(viewport=SIZES[size]).new_page()
    visitor.goto(f"{live_app.url}/login")
    visitor.get_by_test_id("forgot-password-link").click()
    visitor.get_by_label("Email").fill(EMAIL)
    visitor.get_by_role("button", name="Send me a link").click()
    expect(visitor.get_by_test_id("reset-sent")).to_be_visible()
    screenshot(visitor, f"reset-sent-{size}")
    visitor.goto(_mailed_link(live_app))
    visitor.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    visitor.get_by_label("New password again").fill(NEW_PASSWORD)
    screenshot(visitor, f"reset-form-{size}")
    visitor.get_by_role("button", name="Set the new password").click()
    sign_in(visitor, live_app, EMAIL, NEW_PASSWORD)
    expect(
        visitor.get_by_role("navigation", name="Main").get_by_role("link", name="Account")
    ).to_be_visible()
    visitor.context.close()

    # The browser signed in before the reset is signed out.
    page.goto(f"{live_app.url}/account")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
