"""Helpers for browser tests (the fixtures are in browser_support.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Page, ViewportSize
from sqlalchemy.orm import Session, sessionmaker

from credits.jobs.executors.simulated import SimulatedExecutor

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
FLAVOUR = "a100-80gb"

# The two sizes the portal's journeys run at: a laptop and a phone.
SIZES: dict[str, ViewportSize] = {
    "desktop": {"width": 1366, "height": 900},
    "phone": {"width": 390, "height": 844},
}


@dataclass
class LiveApp:
    url: str
    factory: sessionmaker[Session]
    executor: SimulatedExecutor


def screenshot(page: Page, name: str) -> None:
    """A full-page PNG under var/screenshots/ for a person to look at after a run."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, app: LiveApp, email: str, password: str) -> None:
    page.goto(f"{app.url}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{app.url}/")
