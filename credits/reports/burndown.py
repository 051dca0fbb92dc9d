"""Burn-down: daily use, the date credits run out at the recent rate, and what
will expire unused.

The rate is the mean use per day over the 7 days before ``now``, each project's
own. Both figures come from one walk per project (:func:`walk`): from ``now`` its
credits are spent at its rate the way the ledger spends them, at every moment from
the started, active allocation that ends soonest; what an allocation still holds
when it ends is forecast to expire unused, and the credits run out at the first
moment no started allocation has any left. A program's credits run out when the
last of its projects still spending runs out of them.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
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


@dataclass
class Walk:
    """Credits spent at a steady rate the way the ledger spends them."""

    # Per account with an end: what it still holds when it ends, never negative.
    unused: dict[int, int]
    # The first moment no started allocation has credits left; None if never.
    runs_out: dt.datetime | None
    # Whether that moment is the last allocation ending with credits left.
    outlasts: bool


# A walk of one project's accounts ends within this many steps of each account.
_STEPS_PER_ACCOUNT = 4
# Beyond this the credits last for all practical purposes.
_FOREVER = dt.timedelta(days=365 * 1000)


def walk(accounts: Iterable[AccountFigures], rate: Decimal, now: dt.datetime) -> Walk:
    """Spends one project's ``accounts`` from ``now`` at ``rate`` micro-credits a second.

    At every moment the credits come from the started, active allocation that ends
    soonest (the ledger's spend order); an allocation that starts later takes over
    from its start if it ends sooner; one that ends before it is used up keeps the
    rest, which expires unused. A suspended allocation spends nothing.
    """
    members = list(accounts)
    left = {a.id: Decimal(max(a.available, 0)) for a in members}
    active = [a for a in members if a.status == "active"]
    moment, runs_out, outlasts = now, None, False
    for _ in range(_STEPS_PER_ACCOUNT * len(members) + 2):
        live = [a for a in active if _spendable(a, moment) and left[a.id] > 0]
        later = [
            a.starts_at
            for a in active
            if a.starts_at
            and a.starts_at > moment
            and left[a.id] > 0
            and (a.expires_at is None or a.expires_at > a.starts_at)
        ]
        if not live:
            if runs_out is None:
                runs_out = moment
                # Ended during the walk with a whole micro-credit or more left.
                outlasts = not later and any(
                    a.expires_at is not None and now < a.expires_at <= moment and left[a.id] >= 1
                    for a in active
                )
            if not later or rate <= 0:
                break
            moment = min(later)
            continue
        if rate <= 0:
            break
        spending = min(live, key=_spend_order)
        seconds = left[spending.id] / rate
        used_up = (
            dt.timedelta(seconds=float(seconds)) if seconds < _FOREVER.total_seconds() else _FOREVER
        )
        ends = [spending.expires_at - moment] if spending.expires_at is not None else []
        step = min([used_up, *ends, *(start - moment for start in later)])
        if moment - now + step >= _FOREVER:
            break  # the credits last for all practical purposes: they never run out
        if step == used_up:
            left[spending.id] = Decimal(0)  # exactly, whatever the timedelta rounded
        else:
            left[spending.id] -= min(left[spending.id], rate * Decimal(step.total_seconds()))
        moment += step
    unused = {
        a.id: int(left[a.id].to_integral_value(ROUND_FLOOR))
        for a in members
        if a.expires_at is not None
    }
    return Walk(unused=unused, runs_out=runs_out, outlasts=outlasts)


def _spendable(account: AccountFigures, moment: dt.datetime) -> bool:
    return (account.starts_at is None or account.starts_at <= moment) and (
        account.expires_at is None or account.expires_at > moment
    )


def _spend_order(account: AccountFigures) -> tuple[bool, dt.datetime | None, int]:
    return (account.expires_at is None, account.expires_at, account.id)


def forecast_unused(
    accounts: Iterable[AccountFigures], rate: Decimal, now: dt.datetime
) -> dict[int, int]:
    """Per account: available at its expiry less the use projected until then, >= 0.

    Accounts without an end date never expire and are left out; an ended
    account forecasts what it still has.
    """
    return walk(accounts, rate, now).unused


def spendable(accounts: Iterable[AccountFigures], now: dt.datetime) -> int:
    """Available now in active accounts that have started and not ended."""
    return sum(max(a.available, 0) for a in accounts if a.status == "active" and _spendable(a, now))


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


def _exhaustion(
    accounts: list[AccountFigures], captures: list[Capture], now: dt.datetime
) -> tuple[dt.date | None, bool]:
    """When the credits of the projects still using them run out, each project walking
    its own allocations at its own rate: the latest such day, and whether that is the
    allocations ending with credits left. A project without recent use does not count
    (its credits are forecast unused). None without any recent use."""
    by_project: dict[int, list[AccountFigures]] = defaultdict(list)
    for account in accounts:
        by_project[account.project_id].append(account)
    latest: tuple[dt.datetime, bool] | None = None
    for members in by_project.values():
        ids = {a.id for a in members}
        rate = rate_per_second((c for c in captures if c.account_id in ids), now)
        if rate <= 0:
            continue
        project = walk(members, rate, now)
        ends = project.runs_out
        if ends is None:
            ends, project.outlasts = now + _FOREVER, False
        if latest is None or ends > latest[0]:
            latest = (ends, project.outlasts)
    if latest is None:
        return None, False
    try:
        return latest[0].astimezone(dt.UTC).date(), latest[1]
    except OverflowError:
        return dt.date.max, False


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
    exhaustion, outlasts = _exhaustion(accounts, captures, now)
    return BurnDown(
        currency=currency,
        daily=daily_series(captures, now),
        rate_per_day=used // RATE_WINDOW.days,
        spendable=left,
        projected_exhaustion=exhaustion,
        outlasts_allocations=outlasts,
        forecast_unused=sum(forecast.get(a.id, 0) for a in accounts),
    )
