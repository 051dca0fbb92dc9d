"""Project summaries for dashboards: the ledger figures of many projects in a fixed
number of queries, whatever their number.

A full report (:func:`credits.reports.service.project_report`) also reads a
project's jobs, usage and labelling; a dashboard listing up to 500 projects
needs only balances, allocations and the burn-down. A summary reads those for
every project at once, summed in SQL: transfers by kind and account, captures
by account and UTC day, overage by project. Its figures agree with the full
report's to the micro-credit.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import ColumnElement, case, func, or_, select
from sqlalchemy.orm import Session

from credits.ledger.models import Account, AccountKind, Currency, Transfer, TransferKind
from credits.ledger.queries import project_sink_code
from credits.reports.burndown import RATE_WINDOW
from credits.reports.figures import (
    AccountFigures,
    Capture,
    Flows,
    add_lapsed_tranches,
    apply_transfer,
    load_accounts,
)
from credits.reports.schemas import Balance, BurnDown
from credits.reports.service import currency_burn_down, forecasts

# The figures a balance sums over its accounts, named as on both.
SUMMED = ("awarded", "released", "adjusted", "held", "used", "expired", "available", "lapsed")


@dataclass(frozen=True)
class ProjectSummary:
    """One project's balances per currency, allocation accounts and burn-downs."""

    project_id: int
    title: str
    balances: list[Balance]
    allocations: list[AccountFigures]
    burndown: list[BurnDown]


def project_summaries(
    session: Session, titles: Mapping[int, str], now: dt.datetime
) -> list[ProjectSummary]:
    """The summary of each project in ``titles`` (id to title), in that order; six
    queries whatever the number of projects."""
    if not titles:
        return []
    accounts = load_accounts(session, Account.project_id.in_(list(titles)))
    add_lapsed_tranches(session, accounts, now)
    _add_totals(session, accounts)
    captures = _daily_captures(session, accounts, now)
    overage = _overage(session, list(titles))
    by_project: dict[int, Flows] = {pid: Flows(accounts={}) for pid in titles}
    for account in accounts.values():
        by_project[account.project_id].accounts[account.id] = account
    for capture in captures:
        by_project[accounts[capture.account_id].project_id].captures.append(capture)
    return [
        _summary(pid, title, by_project[pid], overage.get(pid, {}), now)
        for pid, title in titles.items()
    ]


def _summary(
    project_id: int, title: str, flows: Flows, overage: dict[str, int], now: dt.datetime
) -> ProjectSummary:
    forecast = forecasts(flows, now)
    currencies = sorted({a.currency for a in flows.accounts.values()} | set(overage))
    return ProjectSummary(
        project_id=project_id,
        title=title,
        balances=[_balance(c, flows, forecast, overage.get(c, 0)) for c in currencies],
        allocations=list(flows.accounts.values()),
        burndown=[currency_burn_down(c, flows, forecast, now) for c in currencies],
    )


def _balance(currency: str, flows: Flows, forecast: dict[int, int], overage: int) -> Balance:
    mine = [a for a in flows.accounts.values() if a.currency == currency]
    return Balance(
        currency=currency,
        overage=overage,
        forecast_unused=sum(forecast.get(a.id, 0) for a in mine),
        **{name: sum(getattr(a, name) for a in mine) for name in SUMMED},
    )


def _touching(accounts: Mapping[int, AccountFigures]) -> ColumnElement[bool]:
    ids = list(accounts)
    return or_(Transfer.debit_account_id.in_(ids), Transfer.credit_account_id.in_(ids))


def _add_totals(session: Session, accounts: dict[int, AccountFigures]) -> None:
    """Released, adjusted, used and expired of each account from posted transfers
    summed by kind and the pair of accounts."""
    if not accounts:
        return
    rows = session.execute(
        select(
            Transfer.kind,
            Transfer.debit_account_id,
            Transfer.credit_account_id,
            func.sum(Transfer.amount).label("amount"),
        )
        .where(Transfer.pending.is_(False), _touching(accounts))
        .group_by(Transfer.kind, Transfer.debit_account_id, Transfer.credit_account_id)
    )
    for row in rows:
        apply_transfer(
            accounts, row.kind, row.debit_account_id, row.credit_account_id, int(row.amount)
        )


def _daily_captures(
    session: Session, accounts: Mapping[int, AccountFigures], now: dt.datetime
) -> list[Capture]:
    """Captures from the accounts summed by account and UTC day.

    A day is split where the burn-down's 7-day window starts and at ``now``, and
    each sum is dated by its earliest capture, so the rate over the window and
    the daily series are those of the single captures.
    """
    if not accounts:
        return []
    since = now - RATE_WINDOW
    window = case((Transfer.created_at <= since, 0), (Transfer.created_at <= now, 1), else_=2)
    day = _utc_day(session)
    rows = session.execute(
        select(
            Transfer.debit_account_id,
            Transfer.currency,
            func.min(Transfer.created_at).label("at"),
            func.sum(Transfer.amount).label("amount"),
        )
        .where(
            Transfer.kind == TransferKind.CAPTURE.value,
            Transfer.pending.is_(False),
            Transfer.debit_account_id.in_(list(accounts)),
        )
        .group_by(Transfer.debit_account_id, Transfer.currency, day, window)
    )
    return [Capture(row.debit_account_id, row.currency, row.at, int(row.amount)) for row in rows]


def _utc_day(session: Session) -> ColumnElement[object]:
    """The UTC day of a transfer: SQLite stores UTC already; PostgreSQL converts."""
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", Transfer.created_at))
    return func.date(Transfer.created_at)


def _overage(session: Session, project_ids: list[int]) -> dict[int, dict[str, int]]:
    """Overage booked to each project's usage sinks, per currency (as
    :func:`credits.reports.figures.add_project_overage` counts it)."""
    codes = {project_sink_code(pid, currency): pid for pid in project_ids for currency in Currency}
    overage_accounts = select(Account.id).where(Account.kind == AccountKind.OVERAGE.value)
    rows = session.execute(
        select(Account.code, Transfer.currency, func.sum(Transfer.amount).label("amount"))
        .join(Account, Account.id == Transfer.credit_account_id)
        .where(
            Transfer.kind == TransferKind.GRANT.value,
            Account.code.in_(list(codes)),
            Transfer.debit_account_id.in_(overage_accounts),
        )
        .group_by(Account.code, Transfer.currency)
    )
    found: dict[int, dict[str, int]] = defaultdict(dict)
    for row in rows:
        found[codes[row.code]][row.currency] = int(row.amount)
    return found
