"""Whether a reported usage record could be true: no more GPU time than its window holds.

A record from a meter outside the platform covers one window, ``start`` to
``end``, on ``gpus`` GPUs (the record says how many; 1 when it does not). The
meter may report for at most ``CREDITS_USAGE_MAX_GPUS`` GPUs in one record, so
a record is plausible when

- ``gpus`` is within that limit;
- for ``gpu_second`` and ``gpu_hour``: its GPU time is at most the window's
  length times ``gpus``;
- for ``credit`` in the ``gpu`` currency: its amount is at most what that GPU
  time costs, at the rate of the flavour named in ``resource`` or, with none
  named, at the dearest rate in force at ``start``.

Labelling credits (``credit`` in ``label``) buy no GPU time and are bounded
only by the ledger's limit. The platform's own records need no check: each is
a job's GPUs times the seconds of one interval that its run was observed
running (:mod:`credits.metering.job_records`).

Integers only: GPU time in GPU-microseconds, amounts in micro-credits.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from credits import formatting as fmt
from credits.metering.intervals import MICROSECONDS, amount_for
from credits.metering.models import UsageUnit
from credits.money import format_credits

SECONDS_PER_HOUR = 3600
ONE_US = timedelta(microseconds=1)


class Implausible(ValueError):
    """A record claims more than its window and GPUs hold; ``field`` is the record's
    field at fault and the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def window_us(start: datetime, end: datetime) -> int:
    """The window's length in microseconds; 0 when it ends before it starts."""
    return max((end - start) // ONE_US, 0)


def gpu_us(quantity: Decimal, unit: UsageUnit) -> int:
    """GPU-microseconds in a ``gpu_second`` or ``gpu_hour`` quantity (six decimals at most,
    so exact)."""
    seconds = quantity * (SECONDS_PER_HOUR if unit is UsageUnit.GPU_HOUR else 1)
    return int(seconds * MICROSECONDS)


def check_gpus(gpus: int, *, max_gpus: int) -> None:
    """Raises Implausible when a record covers more GPUs than one record may."""
    if gpus > max_gpus:
        raise Implausible("gpus", f"{gpus} GPUs is over the limit of {max_gpus} for one record")


def check_gpu_time(used_us: int, *, start: datetime, end: datetime, gpus: int) -> None:
    """Raises Implausible when ``used_us`` GPU-microseconds do not fit in the window."""
    window = window_us(start, end)
    if used_us > window * gpus:
        raise Implausible(
            "quantity",
            f"{_seconds(used_us)} GPU-seconds do not fit in a window of "
            f"{_seconds(window)} seconds on {gpus} GPU(s) (at most {_seconds(window * gpus)})",
        )


def check_gpu_credits(
    amount: int, *, start: datetime, end: datetime, gpus: int, micro_credits_per_gpu_hour: int
) -> None:
    """Raises Implausible when ``amount`` micro-credits are more than the window's GPU time
    costs at the given rate."""
    most = amount_for(window_us(start, end) * gpus, micro_credits_per_gpu_hour)
    if amount > most:
        raise Implausible(
            "quantity",
            f"{fmt.money(amount, exact=True)} are more than {gpus} GPU(s) cost over a "
            f"window of {_seconds(window_us(start, end))} seconds (at most {format_credits(most)})",
        )


def _seconds(us: int) -> str:
    whole, fraction = divmod(us, MICROSECONDS)
    return f"{whole}" + (f".{fraction:06d}".rstrip("0") if fraction else "")
