"""The runtime classes' settings, parsed (kept apart from :mod:`credits.settings`).

``CREDITS_SCHEDULER_CLASS_BOUNDS_HOURS`` is a comma-separated list of hours,
increasing (``1,4,24``: up to 1 h, up to 4 h, up to 24 h, longer; empty, the
default: one class for every job). :func:`bounds_from_hours` turns it into the
``Policy.class_bounds_s`` the scheduler takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator
from pydantic_settings import NoDecode

from credits.jobs.runtime_classes import check_class_bounds

SECONDS_PER_HOUR = 3600


def bounds_from_hours(hours: Sequence[float]) -> tuple[int, ...]:
    """Hours as whole seconds, refused unless positive and increasing."""
    return check_class_bounds([round(hour * SECONDS_PER_HOUR) for hour in hours])


def _split(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _checked(hours: tuple[float, ...]) -> tuple[float, ...]:
    try:
        bounds_from_hours(hours)
    except ValueError:
        raise ValueError(f"hours must be positive and increasing, got {list(hours)}") from None
    return hours


ClassBoundsHours = Annotated[
    tuple[float, ...], NoDecode, BeforeValidator(_split), AfterValidator(_checked)
]
