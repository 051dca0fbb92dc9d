"""Dates and times typed into forms, read as moments in UTC.

Near the ends of the calendar a date has no next midnight (9999-12-31) and a time
with an offset may have no UTC reading (9999-12-31T23:00-05:00). Python raises
OverflowError there, not the ValueError a malformed date raises; these helpers
raise ValueError for both, so that each form's one date error covers them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta


def day_start(day: date) -> datetime:
    """The first instant of ``day`` in UTC."""
    return datetime.combine(day, time.min, tzinfo=UTC)


def next_midnight(day: date) -> datetime:
    """The midnight UTC that ends ``day``: an end date that keeps its whole day."""
    try:
        return day_start(day) + timedelta(days=1)
    except OverflowError:
        raise ValueError(f"{day} has no next day") from None


def in_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; one without a time zone is read as UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{moment} is outside the years UTC can hold") from None
