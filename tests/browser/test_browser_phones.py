"""On a phone (390 x 844 px) no page of any persona scrolls sideways: wide tables scroll
inside their own box, charts scale to the screen. Every page's screenshot is
written under the test's tmp dir (and var/screenshots/phone-*) for a person to look at."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser_helpers import SCREENSHOTS, LiveApp
from persona_walk import seed, walk
from playwright.sync_api import Browser

pytest_plugins = ["browser_support"]
PHONE = {"width": 390, "height": 844}

# The elements that stick out past the screen (and no scroll box clips), for a failure.
WIDEST = """() => {
  const limit = window.innerWidth;
  const clipped = (element) => {
    for (let up = element.parentElement; up; up = up.parentElement) {
      if (["auto", "scroll", "hidden"].includes(getComputedStyle(up).overflowX)) { return true; }
    }
    return false;
  };
  const out = [];
  for (const element of document.querySelectorAll("body *")) {
    const box = element.getBoundingClientRect();
    const loose = ["absolute", "fixed"].includes(getComputedStyle(element).position);
    if (box.right > limit + 1 && (loose || !clipped(element))) {
      const name = `${element.tagName}.${element.getAttribute("class") || ""}`;
      out.push(`${name} right ${Math.round(box.right)}`);
    }
  }
  return out.slice(0, 4).join("; ");
}"""


def _file_name(persona: str, path: str) -> str:
    return f"phone-{persona}-{re.sub(r'[^a-z0-9]+', '-', path.lower()).strip('-') or 'home'}.png"


@pytest.mark.slow
def test_no_page_of_any_persona_scrolls_sideways_on_a_phone(
    chromium: Browser, live_app: LiveApp, tmp_path: Path
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    wide: list[str] = []
    visited = 0
    for persona in seed(live_app):
        # Not is_mobile: a mobile layout viewport widens to fit what sticks out, hiding it.
        context = chromium.new_context(viewport=PHONE)
        page = context.new_page()
        page.set_default_timeout(10_000)
        for path in walk(page, live_app, persona):
            visited += 1
            scroll, inner = page.evaluate(
                "() => [document.documentElement.scrollWidth, window.innerWidth]"
            )
            name = _file_name(persona.name, path)
            page.screenshot(path=str(tmp_path / name), full_page=True)
            if scroll > inner:
                page.screenshot(path=str(SCREENSHOTS / name), full_page=True)
                wide.append(
                    f"{persona.name} {path}: {scroll} px > {inner} px, {page.evaluate(WIDEST)}"
                )
        context.close()
    assert visited > 40, visited
    assert not wide, "\n".join(wide)
