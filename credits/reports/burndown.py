"""Burn-down: daily use, the date credits run out at the recent rate, and what
will expire unused.

Both walk the allocations the way the ledger spends them.

The rate is the mean use per day over the 7 days before ``now``. Allocations
are spent soonest-expiring first (the ledger's spend order), so the forecast
walks them in that order: each takes the rate from when the one before it runs
out (or from its start) until it is used up or expires; what it still has then
is forecast to expire unused.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from decimal import ROUND_FLOOR, Decimal

from credits.reports.figures import AccountFigures, Capture
from credits.reports.schemas import BurnDay, BurnDown

RATE_WINDOW = dt.timedelta(days=7)
SECONDS_PER_DAY = Decimal(86400)


def recent_use(captures: Iterable[Capture], now: dt.datetime) -> int:
    """Micro-credits used in the 7 days before ``now``."""
    since = now - RATE_WINDOW
    return sum(c.amount for c in captures if since < c.at <= now)


def rate_per_second(captures: Iterable[Capture], now: dt.datetime) -> Decimal:
    """Mean micro-credits used per second over the 7 days before ``now``."""
    return Decimal(recent_use(captures, now)) / Decimal(RATE_WINDOW.total_seconds())


def forecast_unused(
    accounts: Iterable[AccountFigures], rate: Decimal, now: dt.datetime
) -> dict[int, int]:
    """Per account: available at its expiry less the use projected until then, >= 0.

    Accounts without an end date never expire and are left out; an ended
    account forecasts what it still has.
    """
    ordered = sorted(
        (a for a in accounts if a.expires_at is not None),
        key=lambda a: (a.expires_at, a.id),
    )
    forecast: dict[int, int] = {}
    cursor = now
    for account in ordered:
        assert account.expires_at is not None  # noqa: S101 - filtered above
        available = max(account.available, 0)
        start = max(cursor, account.starts_at or cursor)
        if rate <= 0 or account.expires_at <= start:
            forecast[account.id] = available
            continue
        window = Decimal((account.expires_at - start).total_seconds())
        spent = min(Decimal(available), rate * window)
        forecast[account.id] = int((available - spent).to_integral_value(ROUND_FLOOR))
        cursor = start + dt.timedelta(seconds=float(spent / rate))
    return forecast


def spendable(accounts: Iterable[AccountFigures], now: dt.datetime) -> int:
    """Available now in active accounts that have started and not ended."""
    return sum(
        max(a.available, 0)
        for a in accounts
        if a.status == "active"
        and (a.starts_at is None or a.starts_at <= now)
        and (a.expires_at is None or a.expires_at > now)
    )


def runs_out(accounts: Iterable[AccountFigures], rate: Decimal, now: dt.datetime) -> dt.date:
    """The day (UTC) the spendable credits run out at ``rate`` (> 0) micro-credits a
    second, spent soonest-expiring first: each account lasts until it is used up or
    ends, whichever is sooner, so credits that will expire unused do not count."""
    live = [
        a
        for a in accounts
        if a.status == "active"
        and (a.starts_at is None or a.starts_at <= now)
        and (a.expires_at is None or a.expires_at > now)
    ]
    cursor = now
    try:
        for account in sorted(live, key=lambda a: (a.expires_at is None, a.expires_at, a.id)):
            lasts = dt.timedelta(seconds=float(Decimal(max(account.available, 0)) / rate))
            if account.expires_at is None or cursor + lasts <= account.expires_at:
                cursor += lasts
            elif account.expires_at > cursor:
                cursor = account.expires_at  # it ends before it is used up
        return cursor.astimezone(dt.UTC).date()
    except OverflowError:
        return dt.date.max  # centuries away at this rate


def daily_series(captures: Iterable[Capture], now: dt.datetime) -> list[BurnDay]:
    """Use per UTC day from the first capture up to today, days without use included."""
    by_day: dict[dt.date, int] = defaultdict(int)
    for capture in captures:
        by_day[capture.at.astimezone(dt.UTC).date()] += capture.amount
    if not by_day:
        return []
    day, last = min(by_day), max(*by_day, now.astimezone(dt.UTC).date())
    series, total = [], 0
    while day <= last:
        total += by_day.get(day, 0)
        series.append(BurnDay(date=day, used=by_day.get(day, 0), cumulative_used=total))
        day += dt.timedelta(days=1)
    return series


def burn_down(
    currency: str,
    accounts: list[AccountFigures],
    captures: list[Capture],
    forecast: dict[int, int],
    now: dt.datetime,
) -> BurnDown:
    """The burn-down of ``accounts`` (one currency) from their ``captures``."""
    used = recent_use(captures, now)
    left = spendable(accounts, now)
    exhaustion = None
    if used > 0:
        rate = Decimal(used) / Decimal(RATE_WINDOW.total_seconds())
        exhaustion = runs_out(accounts, rate, now)
    return BurnDown(
        currency=currency,
        daily=daily_series(captures, now),
        rate_per_day=used // RATE_WINDOW.days,
        spendable=left,
        projected_exhaustion=exhaustion,
        forecast_unused=sum(forecast.get(a.id, 0) for a in accounts),
    )
