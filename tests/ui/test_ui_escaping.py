"""Nothing a user typed can become markup: the templates' only unescaped output is
the fixed attributes the templates themselves pass to the field macros."""

from __future__ import annotations

import re
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parents[2] / "admin_ui" / "templates"
SAFE = re.compile(r"\|\s*safe\b")
ATTRS_ARGUMENT = re.compile(r"attrs=([^,)]+)")


def test_the_only_safe_filter_is_the_field_macros_attributes() -> None:
    found = [
        (path.relative_to(TEMPLATES).as_posix(), line.strip())
        for path in TEMPLATES.rglob("*.html")
        for line in path.read_text().splitlines()
        if SAFE.search(line)
    ]
    assert [path for path, _ in found] == ["macros.html"]
    assert "attrs|safe" in found[0][1]


def test_every_attributes_argument_is_a_literal_in_the_template() -> None:
    for path in TEMPLATES.rglob("*.html"):
        for argument in ATTRS_ARGUMENT.findall(path.read_text()):
            literal = argument.strip()
            assert literal[0] == literal[-1] and literal[0] in "'\"", (path.name, literal)
