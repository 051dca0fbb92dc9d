"""An automated accessibility pass: axe-core (from the npm registry, pinned in
tests/browser/axe/, installed by scripts/lib/axe.sh) is injected by Playwright into
every page of every persona, at 1366x900 and at 390x844, and finds no serious or
critical violation.

Without axe-core the test is skipped on a developer's machine and fails in CI.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import SIZES as VIEWPORTS
from browser_helpers import LiveApp
from conftest import missing_service
from persona_walk import seed, walk
from playwright.sync_api import Browser, Page

pytest_plugins = ["browser_support"]
AXE_LOCK = Path(__file__).with_name("axe") / "package-lock.json"
SIZES = (VIEWPORTS["desktop"], VIEWPORTS["phone"])
BLOCKING = ("serious", "critical")

# After a resize: two frames, so the page's resize handlers (layout.js) have run.
SETTLED = "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"
RUN_AXE = """async (blocking) => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations
    .filter((violation) => blocking.includes(violation.impact))
    .map((violation) => ({
      id: violation.id,
      impact: violation.impact,
      help: violation.help,
      nodes: violation.nodes.slice(0, 3).map((node) => node.target.join(" ")),
    }));
}"""


def _axe_script() -> Path:
    """Where scripts/lib/axe.sh put axe.min.js (CREDITS_TEST_AXE_JS, else its cache)."""
    given = os.environ.get("CREDITS_TEST_AXE_JS")
    if given:
        return Path(given)
    digest = hashlib.sha256(AXE_LOCK.read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("CREDITS_AXE_CACHE", Path.home() / ".cache" / "credits"))
    return cache / f"axe-{digest}" / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="module")
def axe_source() -> str:
    script = _axe_script()
    if not script.is_file():
        missing_service(
            f"axe-core is not installed at {script}: run"
            " 'source scripts/lib/axe.sh && ensure_axe' (./scripts/test does)"
        )
    return script.read_text(encoding="utf-8")


def _violations(page: Page, axe_source: str) -> list[dict[str, Any]]:
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(content=axe_source)
    found: list[dict[str, Any]] = page.evaluate(RUN_AXE, list(BLOCKING))
    return found


@pytest.mark.slow
def test_no_page_of_any_persona_has_a_serious_accessibility_violation(
    chromium: Browser, live_app: LiveApp, axe_source: str
) -> None:
    problems: list[str] = []
    checked = 0
    for persona in seed(live_app):
        # The pages' Content-Security-Policy would refuse the injected script (the
        # other browser tests check that policy); axe only reads the page.
        context = chromium.new_context(viewport=SIZES[0], bypass_csp=True)
        page = context.new_page()
        page.set_default_timeout(10_000)
        for path in walk(page, live_app, persona):
            for size in SIZES:
                page.set_viewport_size(size)
                page.evaluate(SETTLED)
                checked += 1
                problems += [
                    f"{persona.name} {path} at {size['width']} px: {v['impact']} {v['id']}"
                    f" ({v['help']}) at {v['nodes']}"
                    for v in _violations(page, axe_source)
                ]
            page.set_viewport_size(SIZES[0])
        context.close()
    assert checked > 80, checked
    assert not problems, "\n".join(problems)
