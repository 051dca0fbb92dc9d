"""Value types shared by request models (API bodies, domain inputs)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

EARLIEST_YEAR = 1970
LATEST_YEAR = 9000


def _plausible(moment: datetime) -> datetime:
    """Years far outside a grant's life overflow when converted to UTC; refuse them here."""
    if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        raise ValueError(f"the year must lie between {EARLIEST_YEAR} and {LATEST_YEAR}")
    return moment


ApiTime = Annotated[AwareDatetime, AfterValidator(_plausible)]
"""An ISO 8601 time with a timezone, between 1970 and 9000."""
