"""A confirmation step for changes that cannot be undone.

The first POST of such a form changes nothing: it tries the change in a
transaction that is always rolled back (so a refusal, an over-budget award or a
missing reason, is shown on the form at once), then answers a page that
restates the effect ("You are about to … This cannot be undone.") with
Confirm and Back. Confirm posts the same fields again with ``confirm=yes``,
and only that POST acts. It needs no JavaScript.

A view uses it as::

    try:
        if not confirmed():
            done = rehearse(lambda db: service.change(db, ...))  # raises its refusal
            return confirmation(title=..., effect=f"... {done.name} ...", ...)
        with transaction() as db:
            service.change(db, ...)
    except CreditsError as refusal:
        <the form with the refusal, as before>
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import request
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from admin_ui.web import CSRF_FIELD, render
from credits.api.auth import session_factory

CONFIRM_FIELD = "confirm"
CONFIRM_VALUE = "yes"
IRREVERSIBLE = "This cannot be undone."
T = TypeVar("T")


def confirmed() -> bool:
    """Whether this POST is the confirmation (the second step)."""
    return request.form.get(CONFIRM_FIELD) == CONFIRM_VALUE


def rehearse(change: Callable[[Session], T]) -> T:
    """What the change would return now, or its refusal (a CreditsError) raised;
    nothing it writes is kept."""
    db = session_factory()()
    try:
        return change(db)
    finally:
        db.rollback()
        db.close()


def confirmation(
    *,
    title: str,
    effect: str,
    confirm_label: str,
    back: str,
    details: list[tuple[str, str]] | None = None,
    warning: str = IRREVERSIBLE,
) -> ResponseReturnValue:
    """The page "You are about to <effect>" with ``warning``; Confirm posts this
    request's fields again with ``confirm=yes``, Back is a link to ``back``."""
    fields = [
        (name, value)
        for name, values in request.form.lists()
        if name not in {CSRF_FIELD, CONFIRM_FIELD}
        for value in values
    ]
    return render(
        "confirm.html",
        title=title,
        effect=effect,
        warning=warning,
        details=details or [],
        confirm_label=confirm_label,
        back=back,
        action=request.full_path.rstrip("?"),
        fields=fields,
        confirm_field=CONFIRM_FIELD,
        confirm_value=CONFIRM_VALUE,
    )
