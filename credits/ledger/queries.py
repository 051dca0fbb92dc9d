"""Read-only ledger queries: accounts, balances, transfers, holds."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from credits.db import utcnow
from credits.ledger.errors import AccountNotFound, HoldNotFound
from credits.ledger.models import (
    Account,
    AccountKind,
    AccountStatus,
    Currency,
    HoldPart,
    Transfer,
)
from credits.ledger.schemas import (
    AccountOut,
    BalanceOut,
    HoldOut,
    HoldPartOut,
    TransferOut,
    TransferPage,
)

MAX_PAGE = 500


def system_account_code(kind: AccountKind, currency: Currency) -> str:
    return f"system:{kind.value}:{currency.value}"


def project_sink_code(project_id: int, currency: Currency) -> str:
    return f"project:{project_id}:usage:{currency.value}"


def system_account_id(session: Session, kind: AccountKind, currency: Currency) -> int:
    """The id of a system account seeded by the first migration."""
    code = system_account_code(kind, currency)
    account_id = session.scalar(select(Account.id).where(Account.code == code))
    if account_id is None:
        # Seeded by the first migration: missing means a broken install, not bad input.
        raise LedgerNotMigrated(f"system account {code} is missing; run `credits db upgrade`")
    return account_id


class LedgerNotMigrated(RuntimeError):
    """The database lacks what the migrations seed."""


def get_account(session: Session, *, account_id: int) -> AccountOut:
    account = session.get(Account, account_id, populate_existing=True)
    if account is None:
        raise AccountNotFound(f"account {account_id} does not exist", account_id=account_id)
    return AccountOut.model_validate(account)


def get_account_by_code(session: Session, *, code: str) -> AccountOut:
    account = session.scalar(
        select(Account).where(Account.code == code).execution_options(populate_existing=True)
    )
    if account is None:
        raise AccountNotFound(f"no account has code {code!r}")
    return AccountOut.model_validate(account)


def list_accounts(
    session: Session,
    *,
    project_id: int | None = None,
    currency: str | None = None,
    kind: str | None = None,
    visible: ColumnElement[bool] | None = None,
) -> list[AccountOut]:
    """Accounts matching the filters, by id; ``visible`` narrows to a reader's."""
    query = select(Account).order_by(Account.id).execution_options(populate_existing=True)
    if visible is not None:
        query = query.where(visible)
    if project_id is not None:
        query = query.where(Account.project_id == project_id)
    if currency is not None:
        query = query.where(Account.currency == currency)
    if kind is not None:
        query = query.where(Account.kind == kind)
    return [AccountOut.model_validate(row) for row in session.scalars(query)]


def get_balance(session: Session, *, account_id: int) -> BalanceOut:
    return balance_of(get_account(session, account_id=account_id))


def balance_of(account: AccountOut) -> BalanceOut:
    """The balance an account's counters give, for an account already read."""
    posted = account.credits_posted - account.debits_posted
    return BalanceOut(
        account_id=account.id,
        currency=account.currency,
        posted=posted,
        held=account.debits_pending,
        incoming=account.credits_pending,
        available=posted - account.debits_pending,
    )


def project_available(
    session: Session, *, project_id: int, currency: Currency, now: datetime | None = None
) -> int:
    """What a new hold for the project could take now, over all its allocations."""
    now = now or utcnow()
    total = session.scalar(
        select(
            func.coalesce(
                func.sum(Account.credits_posted - Account.debits_posted - Account.debits_pending),
                0,
            )
        ).where(
            Account.project_id == project_id,
            Account.currency == currency.value,
            Account.kind == AccountKind.ALLOCATION.value,
            Account.status == AccountStatus.ACTIVE.value,
            or_(Account.starts_at.is_(None), Account.starts_at <= now),
            or_(Account.expires_at.is_(None), Account.expires_at > now),
        )
    )
    return int(total or 0)


def live_allocations(
    session: Session, *, project_id: int, currency: Currency, now: datetime
) -> list[int]:
    """The project's allocations in ``currency`` that have not ended (suspended ones
    included: they may still be corrected), the one that ends first first."""
    return list(
        session.scalars(
            select(Account.id)
            .where(
                Account.project_id == project_id,
                Account.currency == currency.value,
                Account.kind == AccountKind.ALLOCATION.value,
                Account.status != AccountStatus.EXPIRED.value,
                or_(Account.expires_at.is_(None), Account.expires_at > now),
            )
            .order_by(Account.expires_at.is_(None), Account.expires_at, Account.id)
        )
    )


def list_transfers(
    session: Session, *, account_id: int, before: int | None = None, limit: int = 50
) -> TransferPage:
    """Transfers touching the account, newest first, ``limit`` at a time."""
    get_account(session, account_id=account_id)
    limit = max(1, min(limit, MAX_PAGE))
    query = (
        select(Transfer)
        .where(
            or_(Transfer.debit_account_id == account_id, Transfer.credit_account_id == account_id)
        )
        .order_by(Transfer.id.desc())
        .limit(limit + 1)
    )
    if before is not None:
        query = query.where(Transfer.id < before)
    rows = list(session.scalars(query))
    items = [TransferOut.model_validate(row) for row in rows[:limit]]
    next_before = items[-1].id if len(rows) > limit else None
    return TransferPage(items=items, next_before=next_before)


def list_request_transfers(session: Session, *, key: str) -> list[TransferOut]:
    rows = session.scalars(
        select(Transfer).where(Transfer.idempotency_key == key).order_by(Transfer.part)
    )
    return [TransferOut.model_validate(row) for row in rows]


def get_hold(session: Session, *, hold_key: str) -> HoldOut:
    rows = session.execute(
        select(HoldPart, Transfer.currency)
        .join(Transfer, Transfer.id == HoldPart.transfer_id)
        .where(HoldPart.hold_key == hold_key)
        .order_by(HoldPart.part)
        .execution_options(populate_existing=True)
    ).all()
    if not rows:
        raise HoldNotFound(f"no hold has key {hold_key!r}", hold_key=hold_key)
    return HoldOut(
        hold_key=hold_key,
        currency=Currency(rows[0].currency),
        parts=[HoldPartOut.model_validate(row.HoldPart) for row in rows],
    )
