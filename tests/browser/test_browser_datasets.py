"""The public dataset catalogue in a real Chromium: a visitor who never signs in searches,
opens a landing page, reads its citation and file hashes; no page breaks the CSP
(the JSON-LD data block included)."""

from __future__ import annotations

import hashlib
import json
import re

from browser_helpers import LiveApp, screenshot
from datasets_world import CSV, ENERGY, build_world
from playwright.sync_api import Page, expect

from credits.datasets import publishing, service
from credits.db import session_scope

pytest_plugins = ["browser_support"]


def _publish(app: LiveApp) -> str:
    """Two published datasets; the public id of the calving one."""
    with session_scope(app.factory) as session:
        world = build_world(session)
        calving = world.draft(session)
        world.complete(session, calving.id)
        publishing.publish_version(session, version_id=calving.id, actor=world.pi, energy=ENERGY)
        other = world.draft(session)
        world.complete(session, other.id)
        seabirds = {"title": "Seabird colonies", "description": "Nests counted from drones."}
        service.update_metadata(session, version_id=other.id, changes=seabirds, actor=world.pi)
        publishing.publish_version(session, version_id=other.id, actor=world.pi, energy=ENERGY)
        return calving.public_id


def test_a_visitor_searches_the_catalogue_and_opens_a_landing_page(
    page: Page, live_app: LiveApp
) -> None:
    public_id = _publish(live_app)

    page.goto(f"{live_app.url}/")  # a visitor lands on the sign-in page
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Datasets").click()
    expect(page.get_by_role("heading", name="Datasets", level=1)).to_be_visible()
    expect(page.get_by_test_id("dataset-count")).to_have_text("2 datasets")

    page.get_by_role("searchbox", name="Search").fill("glacier calving")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_test_id("dataset-count")).to_contain_text("1 dataset matching")
    screenshot(page, "datasets-catalogue")
    page.get_by_role("link", name="Glacier calving events").click()

    page.wait_for_url(f"{live_app.url}/datasets/versions/{public_id}")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Glacier calving events")
    expect(page.get_by_test_id("bibtex")).to_contain_text("@misc{")
    expect(page.get_by_test_id("apa")).to_contain_text("[Data set]")
    expect(page.get_by_test_id("files")).to_contain_text("events.csv")
    expect(page.get_by_test_id("files")).to_contain_text(hashlib.sha256(CSV).hexdigest())
    alternate = page.locator('link[rel="alternate"][type="application/ld+json"]')
    expect(alternate).to_have_attribute("href", re.compile(r"/croissant\.json$"))
    data = json.loads(page.locator('script[type="application/ld+json"]').text_content() or "")
    assert data["@type"] == "Dataset"
    assert data["name"] == "Glacier calving events"
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()
    screenshot(page, "datasets-landing")
