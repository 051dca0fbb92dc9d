"""Form parsing shared by the reviewer and funder pages: amounts, dates, scores, errors.

Each parser takes the text a browser sent and returns the value a service takes,
or raises :class:`FieldError` naming the form field and what is wrong, so that a
page can show the message next to the input it belongs to.
"""

from __future__ import annotations

import secrets
from datetime import date, datetime

from admin_ui.form_dates import day_start, next_midnight
from credits import formatting as fmt
from credits.errors import CreditsError
from credits.ledger.errors import InsufficientCredits
from credits.money import InvalidCreditsAmount, parse_credits

SCORES = (1, 2, 3, 4, 5)


class FieldError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def new_key() -> str:
    """An idempotency key for one rendering of a form: a double submit acts once."""
    return secrets.token_urlsafe(18)


def credits_field(text: str, field: str, *, required: bool = True) -> int | None:
    """A form's amount above zero in micro-credits (:mod:`credits.money` reads it);
    blank → None unless required."""
    if not text.strip() and not required:
        return None
    try:
        return parse_credits(text)
    except InvalidCreditsAmount as error:
        raise FieldError(field, error.detail) from None


def parse_date(text: str, field: str, *, whole_day: bool = False) -> datetime:
    """'2026-05-01' → midnight UTC of that day; with ``whole_day`` (a closing date, as
    the CLI reads it) the next midnight, so that the whole day is open."""
    try:
        day = date.fromisoformat(text.strip())
        return next_midnight(day) if whole_day else day_start(day)
    except ValueError:
        raise FieldError(field, "enter a date as YYYY-MM-DD") from None


def parse_int(text: str, field: str, *, low: int, high: int) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise FieldError(field, f"enter a whole number from {low} to {high}") from None
    if not low <= value <= high:
        raise FieldError(field, f"enter a whole number from {low} to {high}")
    return value


def parse_score(text: str | None, field: str) -> int:
    if text is None or text.strip() not in {str(score) for score in SCORES}:
        raise FieldError(field, "choose a score from 1 to 5")
    return int(text)


def service_errors(error: CreditsError, fields: dict[str, str]) -> tuple[dict[str, str], str]:
    """A service's refusal as (field errors, form error): next to the input it names
    when the page has it (``fields`` maps the service's field to the form's), else on top."""
    message = _message(error)
    named = error.extra.get("field") or error.extra.get("currency")
    if isinstance(named, str) and named in fields:
        return {fields[named]: message}, ""
    return {}, message


def _message(error: CreditsError) -> str:
    if isinstance(error, InsufficientCredits):
        remaining = error.extra.get("remaining")
        requested = error.extra.get("requested")
        currency = error.extra.get("currency", "")
        if isinstance(remaining, int) and isinstance(requested, int):
            return (
                f"only {fmt.money(remaining, currency)} are left to award;"
                f" this award needs {fmt.money(requested, currency)}"
            )
    return str(error)


def hundredths(value: int | None) -> str:
    """350 → '3.50'; None → an en dash."""
    if value is None:
        return "\u2013"
    return f"{value / 100:.2f}"
