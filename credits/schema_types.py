"""Value types shared by request models (API bodies, domain inputs)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator

EARLIEST_YEAR = 1970
LATEST_YEAR = 9000


def _plausible(moment: datetime) -> datetime:
    """Years far outside a grant's life overflow when converted to UTC; refuse them here."""
    if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        raise ValueError(f"the year must lie between {EARLIEST_YEAR} and {LATEST_YEAR}")
    return moment


def _text_or_time(value: object) -> object:
    """A time arrives as ISO 8601 text (from Python code, as a datetime), as the schema
    says: never as a number, which pydantic would read as seconds since 1970."""
    if isinstance(value, str | datetime):
        return value
    raise ValueError("a time is ISO 8601 text with a timezone, such as 2027-01-31T12:00:00Z")


ApiTime = Annotated[AwareDatetime, BeforeValidator(_text_or_time), AfterValidator(_plausible)]
"""An ISO 8601 time with a timezone, between 1970 and 9000; never a number."""
