"""A live app and a real headless Chromium for browser tests.

The app runs on 127.0.0.1 and an ephemeral port in a thread (Werkzeug), on a
migrated SQLite file of the test's own, with the simulated executor; the
browser is Debian's Chromium driven by Playwright (never a downloaded one).
Screenshots go to ``var/screenshots/`` (ignored by git) for a person to look at.
Use the fixtures in a test module with ``pytest_plugins = ["browser_support"]``;
helpers are in browser_helpers.py.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_helpers import FLAVOUR, LiveApp
from conftest import migrated_sqlite_url
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright
from werkzeug.serving import BaseWSGIServer, make_server

from credits.app import create_app
from credits.db import make_engine, make_session_factory, utcnow
from credits.jobs.executors.base import NodeCapacity
from credits.jobs.executors.simulated import SimulatedExecutor
from credits.settings import load_settings

CHROMIUM = os.environ.get("CREDITS_TEST_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture
def live_app(tmp_path: Path) -> Iterator[LiveApp]:
    database_url = migrated_sqlite_url(tmp_path)
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    executor = SimulatedExecutor(
        [NodeCapacity(name=f"gpu-{i}", flavour=FLAVOUR, gpus=8) for i in range(2)],
        clock=utcnow,
        default_duration_s=2.0,
    )
    settings = load_settings(database_url=database_url, var_dir=tmp_path / "var")
    app = create_app(settings, session_factory=factory, executor=executor)
    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LiveApp(f"http://127.0.0.1:{server.server_port}", factory, executor)
    finally:
        server.shutdown()
        engine.dispose()


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    """A tab; the test fails if any page it showed broke the Content-Security-Policy."""
    context = chromium.new_context(viewport={"width": 1280, "height": 860})
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    violations = watch_csp(tab)
    yield tab
    context.close()
    assert not violations, f"pages broke their Content-Security-Policy: {violations}"


def watch_csp(tab: Page) -> list[str]:
    """Collects the console's reports of what the page's policy refused."""
    violations: list[str] = []

    def seen(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    tab.on("console", seen)
    return violations
