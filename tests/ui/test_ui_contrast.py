"""The keyboard focus ring stands out: WCAG 2.2's 3:1 for non-text contrast against
both page backgrounds the stylesheet uses (issue 19, item 11)."""

from __future__ import annotations

import re
from pathlib import Path

STYLE = Path(__file__).resolve().parents[2] / "admin_ui" / "static" / "style.css"


def _variables() -> dict[str, str]:
    return dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6})", STYLE.read_text()))


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(first: str, second: str) -> float:
    lighter, darker = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_the_focus_ring_has_three_to_one_contrast_on_every_background() -> None:
    colours = _variables()
    ring = re.search(
        r":focus-visible[^{]*\{\s*outline:\s*\d+px solid var\(--([a-z-]+)\)", STYLE.read_text()
    )
    assert ring is not None, "the focus ring is no longer drawn from a colour variable"
    focus = colours[ring.group(1)]
    for background in ("paper", "wash"):
        assert _contrast(focus, colours[background]) >= 3.0, (focus, colours[background])


def test_the_contrast_formula_matches_wcags_reference_pairs() -> None:
    assert round(_contrast("#000000", "#ffffff"), 1) == 21.0
    assert round(_contrast("#9db7f5", "#ffffff"), 1) == 2.0
