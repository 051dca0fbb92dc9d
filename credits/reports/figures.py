"""Ledger figures of a set of allocation accounts, read from their transfers.

Every figure is a sum of transfers, so it agrees with the account counters:
``released + adjusted - used - expired - debits_pending`` is the account's
``credits_posted - debits_posted - debits_pending``.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, Row, func, or_, select
from sqlalchemy.orm import Session

from credits.grants.models import Allocation, Project, Tranche, TrancheStatus
from credits.grants.queries import tranche_lapsed
from credits.ledger.models import Account, AccountKind, Currency, Transfer, TransferKind
from credits.ledger.queries import project_sink_code


@dataclass
class AccountFigures:
    """One allocation account: what it is, and what moved through it."""

    id: int
    code: str
    currency: str
    project_id: int
    status: str
    starts_at: dt.datetime | None
    expires_at: dt.datetime | None
    held: int
    available: int
    allocation_id: int | None = None
    program_id: int | None = None
    awarded_micro: int | None = None
    released: int = 0
    adjusted: int = 0
    used: int = 0
    expired: int = 0
    # Pending tranches that can never be released (ended allocation, archived project).
    lapsed: int = 0

    @property
    def awarded(self) -> int:
        return self.released if self.awarded_micro is None else self.awarded_micro


@dataclass(frozen=True)
class Capture:
    account_id: int
    currency: str
    at: dt.datetime
    amount: int


@dataclass
class MonthFigures:
    released: int = 0
    used: int = 0
    expired: int = 0
    overage: int = 0


@dataclass
class Flows:
    accounts: dict[int, AccountFigures]
    captures: list[Capture] = field(default_factory=list)
    months: dict[tuple[str, str], MonthFigures] = field(
        default_factory=lambda: defaultdict(MonthFigures)
    )
    overage: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def month_of(moment: dt.datetime | dt.date) -> str:
    return f"{moment.year:04d}-{moment.month:02d}"


def load_accounts(session: Session, condition: ColumnElement[bool]) -> dict[int, AccountFigures]:
    """Allocation accounts matching ``condition`` (on Account or Allocation), with
    their allocation rows where the grants domain made them."""
    rows = session.execute(
        select(Account, Allocation)
        .outerjoin(Allocation, Allocation.account_id == Account.id)
        .where(Account.kind == AccountKind.ALLOCATION.value, Account.project_id.is_not(None))
        .where(condition)
        .order_by(Account.id)
        .execution_options(populate_existing=True)
    ).all()
    found: dict[int, AccountFigures] = {}
    for account, allocation in rows:
        assert account.project_id is not None  # noqa: S101 - selected that way
        found[account.id] = AccountFigures(
            id=account.id,
            code=account.code,
            currency=account.currency,
            project_id=account.project_id,
            status=account.status,
            starts_at=account.starts_at,
            expires_at=account.expires_at,
            held=account.debits_pending,
            available=account.credits_posted - account.debits_posted - account.debits_pending,
            allocation_id=None if allocation is None else allocation.id,
            program_id=None if allocation is None else allocation.program_id,
            awarded_micro=None if allocation is None else allocation.awarded_micro,
        )
    return found


def add_lapsed_tranches(
    session: Session, accounts: dict[int, AccountFigures], now: dt.datetime
) -> None:
    """Sets each allocation's ``lapsed``: its pending tranches that can never be released,
    because the allocation has ended or its project was archived (the program's budget
    stopped counting them then, :func:`credits.grants.queries.pending_tranches`)."""
    by_allocation = {a.allocation_id: a for a in accounts.values() if a.allocation_id is not None}
    if not by_allocation:
        return
    rows = session.execute(
        select(Tranche.allocation_id, func.sum(Tranche.amount_micro))
        .join(Allocation, Allocation.id == Tranche.allocation_id)
        .join(Project, Project.id == Allocation.project_id)
        .where(
            Tranche.allocation_id.in_(list(by_allocation)),
            Tranche.status == TrancheStatus.PENDING.value,
            tranche_lapsed(now),
        )
        .group_by(Tranche.allocation_id)
    )
    for allocation_id, lapsed in rows:
        by_allocation[allocation_id].lapsed = int(lapsed or 0)


def load_flows(session: Session, accounts: dict[int, AccountFigures]) -> Flows:
    """Sums the posted transfers of ``accounts`` by account, month and kind."""
    flows = Flows(accounts=accounts)
    ids = list(accounts)
    if not ids:
        return flows
    transfers = session.execute(
        select(
            Transfer.kind,
            Transfer.currency,
            Transfer.debit_account_id,
            Transfer.credit_account_id,
            Transfer.amount,
            Transfer.created_at,
        )
        .where(Transfer.pending.is_(False))
        .where(or_(Transfer.debit_account_id.in_(ids), Transfer.credit_account_id.in_(ids)))
        .order_by(Transfer.id)
    ).all()
    for row in transfers:
        _apply(flows, row)
    return flows


def _apply(flows: Flows, row: Row[str, str, int, int, int, dt.datetime]) -> None:
    kind, currency, amount = row.kind, row.currency, int(row.amount)
    debit, at = row.debit_account_id, row.created_at
    month = flows.months[(currency, month_of(at))]
    moved = apply_transfer(flows.accounts, kind, debit, row.credit_account_id, amount)
    month.released += moved.released
    month.used += moved.used
    month.expired += moved.expired
    if kind == TransferKind.CAPTURE.value and debit in flows.accounts:
        flows.captures.append(Capture(debit, currency, at, amount))


def apply_transfer(
    accounts: dict[int, AccountFigures], kind: str, debit: int, credit: int, amount: int
) -> MonthFigures:
    """Adds a posted transfer (or the sum of like ones) to the accounts it touches;
    returns what it adds to its month."""
    moved = MonthFigures()
    if credit in accounts:
        target = accounts[credit]
        if kind == TransferKind.GRANT.value:
            target.released += amount
            moved.released += amount
        elif kind == TransferKind.ADJUST.value:
            target.adjusted += amount
    if debit not in accounts:
        return moved
    source = accounts[debit]
    if kind == TransferKind.CAPTURE.value:
        source.used += amount
        moved.used += amount
    elif kind == TransferKind.EXPIRE.value:
        source.expired += amount
        moved.expired += amount
    elif kind == TransferKind.GRANT.value:
        source.released -= amount
        moved.released -= amount
    elif kind == TransferKind.ADJUST.value:
        source.adjusted -= amount
    return moved


def add_project_overage(session: Session, flows: Flows, project_ids: Collection[int]) -> None:
    """Overage booked to the projects' usage sinks (grants from the overage account)."""
    if not project_ids:
        return
    codes = [project_sink_code(pid, currency) for pid in project_ids for currency in Currency]
    sinks = select(Account.id).where(Account.code.in_(codes))
    overage = select(Account.id).where(Account.kind == AccountKind.OVERAGE.value)
    rows = session.execute(
        select(Transfer.currency, Transfer.amount, Transfer.created_at).where(
            Transfer.kind == TransferKind.GRANT.value,
            Transfer.credit_account_id.in_(sinks),
            Transfer.debit_account_id.in_(overage),
        )
    ).all()
    add_overage(flows, ((row.currency, month_of(row.created_at), row.amount) for row in rows))


def add_overage(flows: Flows, items: Iterable[tuple[str, str, int]]) -> None:
    """Adds (currency, month, amount) items of overage."""
    for currency, month, amount in items:
        flows.overage[currency] += amount
        flows.months[(currency, month)].overage += amount
