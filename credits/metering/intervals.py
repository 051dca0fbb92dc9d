"""Cutting run spans into metering intervals, and pricing each piece; integers only.

Intervals are aligned to multiples of the interval length since the epoch, so
a record's key (job, attempt, interval start) is the same whoever builds it
and however often. A piece is the part of a span inside one interval.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

MICROSECONDS = 1_000_000
MICROSECONDS_PER_HOUR = 3_600 * MICROSECONDS
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch, exactly."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * MICROSECONDS + delta.microseconds


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def pieces(start_us: int, end_us: int, interval_us: int) -> Iterator[tuple[int, int, int]]:
    """(interval start, piece start, piece end) for each interval [start, end) touches."""
    cursor = start_us
    while cursor < end_us:
        interval_start = cursor - cursor % interval_us
        piece_end = min(end_us, interval_start + interval_us)
        yield interval_start, cursor, piece_end
        cursor = piece_end


def complete_until(now_us: int, interval_us: int) -> int:
    """The end of the last interval that is over at ``now``."""
    return now_us - now_us % interval_us


def amount_for(gpu_us: int, micro_credits_per_gpu_hour: int) -> int:
    """Micro-credits for GPU-microseconds at a rate, rounded up to a whole micro-credit."""
    return -(-gpu_us * micro_credits_per_gpu_hour // MICROSECONDS_PER_HOUR)
