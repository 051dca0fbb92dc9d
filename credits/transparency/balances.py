"""The published balances: each account's four counters as the ledger journal
gives them for the transfers whose audit events are among the first ``size``
log entries.

They are summed from ``ledger_transfers``, the ledger's own journal, not from
the log entries, so ``credits-verify`` compares two independent things: a
replay of what the log says against what the ledger says. An entry altered in
the log, or a transfer whose entry is missing, shows up as an account that
differs.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import ColumnElement, String, and_, cast, exists, func, or_, select, true
from sqlalchemy.orm import Session

from credits.audit.models import AuditEvent
from credits.grants.models import Allocation
from credits.ledger.journal import POSTED_KINDS
from credits.ledger.models import Account, Transfer, TransferKind
from credits.transparency.published_schemas import AccountBalanceOut, BalancesOut

SETTLING_KINDS = (TransferKind.CAPTURE.value, TransferKind.VOID.value)
HOLD_KINDS = (TransferKind.HOLD.value,)
POOL_PREFIX = "program:"


def in_log(size: int) -> ColumnElement[bool]:
    """Transfers whose audit event has a log index below ``size``."""
    return exists().where(
        AuditEvent.subject_type == "ledger_transfer",
        AuditEvent.subject_id == cast(Transfer.id, String),
        AuditEvent.log_index < size,
    )


def published_balances(
    session: Session, *, size: int, program_id: int | None = None, project_id: int | None = None
) -> BalancesOut:
    """The balances at log size ``size`` of a program's accounts (its pools and
    allocations), a project's (its allocations and usage sinks), or every account."""
    return balances_of(
        session, in_log(size), size=size, program_id=program_id, project_id=project_id
    )


def balances_of(
    session: Session,
    condition: ColumnElement[bool],
    *,
    size: int,
    program_id: int | None = None,
    project_id: int | None = None,
) -> BalancesOut:
    """Balances from the transfers that meet ``condition``."""
    counters = _counters(session, condition)
    programs = _program_of_accounts(session)
    rows = session.execute(
        select(Account).where(_scope(program_id, project_id)).order_by(Account.id)
    )
    accounts = [
        AccountBalanceOut(
            account_id=account.id,
            code=account.code,
            currency=account.currency,
            kind=account.kind,
            program_id=programs.get(account.id),
            project_id=account.project_id,
            **counters[account.id],
        )
        for account in rows.scalars()
    ]
    return BalancesOut(size=size, program_id=program_id, project_id=project_id, accounts=accounts)


def _scope(program_id: int | None, project_id: int | None) -> ColumnElement[bool]:
    if project_id is not None:
        return Account.project_id == project_id
    if program_id is not None:
        allocated = select(Allocation.account_id).where(Allocation.program_id == program_id)
        pools = Account.code.startswith(f"{POOL_PREFIX}{program_id}:pool:", autoescape=True)
        return or_(Account.id.in_(allocated), pools)
    return true()


def _program_of_accounts(session: Session) -> dict[int, int]:
    """Allocation accounts and program pools, by account id: their program."""
    found = {
        int(account_id): int(program_id)
        for account_id, program_id in session.execute(
            select(Allocation.account_id, Allocation.program_id)
        )
    }
    pools = session.execute(
        select(Account.id, Account.code).where(Account.code.startswith(POOL_PREFIX))
    )
    for account_id, code in pools:
        program, _, rest = code[len(POOL_PREFIX) :].partition(":")
        if rest.startswith("pool:") and program.isdigit():
            found[int(account_id)] = int(program)
    return found


def _counters(session: Session, condition: ColumnElement[bool]) -> dict[int, dict[str, int]]:
    """The four counters of every account the chosen transfers move."""
    counters: dict[int, dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(
            ("debits_pending", "debits_posted", "credits_pending", "credits_posted"), 0
        )
    )
    for side, column in (
        ("debits", Transfer.debit_account_id),
        ("credits", Transfer.credit_account_id),
    ):
        for kinds, counter, sign in (
            (HOLD_KINDS, f"{side}_pending", 1),
            (SETTLING_KINDS, f"{side}_pending", -1),
            (POSTED_KINDS, f"{side}_posted", 1),
        ):
            for account_id, total in _sums(session, column, kinds, condition):
                counters[account_id][counter] += sign * total
    return counters


def _sums(
    session: Session, column: Any, kinds: tuple[str, ...], condition: ColumnElement[bool]
) -> list[tuple[int, int]]:
    rows = session.execute(
        select(column, func.sum(Transfer.amount))
        .where(and_(Transfer.kind.in_(kinds), condition))
        .group_by(column)
    )
    return [(int(account_id), int(total)) for account_id, total in rows]
