"""The browser UI's access matrix: rows, and how a persona's answer is read.

Each page module's rows live in a ``ui_rows_<area>.py`` module under tests/ui/
(a list named ``ROWS``), so that several people can add pages at once; the
runner, tests/ui/test_ui_access.py, collects them all and fails for any UI
route that no row names.

Answers: ``OK`` (a 2xx, or a redirect that is not to the sign-in page),
``LOGIN`` (a redirect to the sign-in page), or an exact status (404 for a page
out of reach, 403 for a forbidden change). Forms are posted with the session's
CSRF token (a visitor without a session has none, so an anonymous POST is a 400).
Personas and the objects they reach are those of tests/api_world.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from api_world import ANONYMOUS, PERSONAS, World

OK = "ok"
LOGIN = "login"
Expect = int | str


def expect(default: Expect, **answers: Expect) -> dict[str, Expect]:
    """``default`` for every persona not named; anonymous is sent to sign in (a form
    posted without a session has no CSRF token: give ``anonymous=400`` for POST rows)."""
    unknown = set(answers) - set(PERSONAS)
    assert not unknown, f"unknown personas {unknown}"
    return {ANONYMOUS: LOGIN} | dict.fromkeys(PERSONAS[1:], default) | answers


def only(*personas: str, others: Expect = 404, **answers: Expect) -> dict[str, Expect]:
    return expect(others, **dict.fromkeys(personas, OK), **answers)


@dataclass(frozen=True)
class UiRow:
    """One call: ``path`` names the World field each URL argument takes."""

    method: str
    rule: str
    answers: dict[str, Expect]
    path: dict[str, str] = field(default_factory=dict)
    form: Callable[[World], dict[str, Any]] | None = None

    @property
    def id(self) -> str:
        target = ",".join(f"{name}={value}" for name, value in self.path.items())
        return f"{self.method} {self.rule}" + (f" [{target}]" if target else "")
