"""Placing a hold: the pending half of a two-phase transfer.

Settling it (capture, void) lives in :mod:`credits.ledger.settle`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, insert, select
from sqlalchemy.orm import Session

from credits.errors import InvalidInput
from credits.identity.actor import Actor
from credits.ledger import journal, pg_ledger
from credits.ledger.models import (
    AccountKind,
    AccountStatus,
    Currency,
    HoldPart,
    HoldStatus,
    TransferKind,
)
from credits.ledger.queries import (
    get_hold,
    project_sink_code,
    system_account_id,
)
from credits.ledger.schemas import HoldOut, HoldPartOut

HOLD_PARTS = cast(Table, HoldPart.__table__)
TRANSFERS = journal.TRANSFERS
_P = HOLD_PARTS.c
_INSERT_PARTS = insert(HOLD_PARTS)


def place_hold(
    session: Session,
    *,
    key: str,
    currency: Currency | str,
    amount: int,
    actor: Actor,
    project_id: int | None = None,
    account_id: int | None = None,
    sink_account_id: int | None = None,
    reference: str | None = None,
    now: datetime | None = None,
) -> HoldOut:
    """Reserves ``amount`` from a project's allocations, or from one allocation.

    A project's hold spans its active allocation accounts, soonest-expiring
    first, all or nothing. The reserved credits pay into the project's usage
    sink (or ``sink_account_id``, a usage sink of the same project) when
    captured. A replay returns the hold as it stands now, ``replayed`` set.

    Raises InsufficientCredits (with ``required`` and ``available``),
    AccountNotActive, CurrencyMismatch, AccountNotFound, InvalidAmount,
    InvalidInput (a source that is no allocation, a wrong sink),
    IdempotencyKeyReused.
    """
    key = journal.check_key(key)
    amount = journal.check_amount(amount)
    currency = journal.check_currency(currency)
    now = journal.check_time(now)
    if (project_id is None) == (account_id is None):
        raise InvalidInput("a hold names either a project or an account")
    digest = journal.request_hash(
        TransferKind.HOLD,
        actor,
        {
            "currency": currency.value,
            "amount": amount,
            "project_id": project_id,
            "account_id": account_id,
            "sink_account_id": sink_account_id,
            "reference": reference,
        },
    )
    if (server := pg_ledger.server_side(session)) is not None:
        return pg_ledger.place_hold(
            server,
            key=key,
            digest=digest,
            currency=currency,
            amount=amount,
            project_id=project_id,
            account_id=account_id,
            sink_account_id=sink_account_id,
            reference=reference,
            actor=actor,
            now=now,
        )
    # The replay check comes after the locks: a request with the same key may
    # commit while this one waits for them. What the lock helpers refuse (kinds,
    # sinks) cannot change between a request and its replay.
    if account_id is None:
        sources, sink_id = _lock_project(session, project_id or 0, currency, sink_account_id)
    else:
        sources, sink_id = _lock_account(session, account_id, currency, sink_account_id)
    if journal.find_replay(session, key, digest) is not None:
        return _replayed(session, key)
    spendable = _spend_order([row for row in sources if _can_spend(row, now)])
    if account_id is not None:
        journal.require_spendable(sources[0], now)
    return _write_hold(
        session,
        key=key,
        digest=digest,
        currency=currency,
        split=_split(amount, spendable, currency),
        sink_id=sink_id,
        actor=actor,
        reference=reference,
        now=now,
    )


def _replayed(session: Session, key: str) -> HoldOut:
    return get_hold(session, hold_key=key).model_copy(update={"replayed": True})


def _lock_account(
    session: Session, account_id: int, currency: Currency, sink_account_id: int | None
) -> tuple[list[Row[Any]], int]:
    """Locks one allocation and its sink, in id order."""
    sink_id = sink_account_id or _default_sink_id(session, account_id, currency)
    locked = journal.lock_accounts(session, [account_id, sink_id])
    account = locked[account_id]
    if account.kind != AccountKind.ALLOCATION.value:
        raise journal.not_an_allocation(account_id, account.kind)
    journal.require_currency(account, currency)
    _check_sink(locked[sink_id], currency, account.project_id)
    return [account], sink_id


def _default_sink_id(session: Session, account_id: int, currency: Currency) -> int:
    """The usage sink of the account's project, or the currency's shared one."""
    project_id = session.scalar(
        select(journal.ACCOUNTS.c.project_id).where(journal.ACCOUNTS.c.id == account_id)
    )
    if project_id is not None:
        sink_id = session.scalar(
            select(journal.ACCOUNTS.c.id).where(
                journal.ACCOUNTS.c.code == project_sink_code(project_id, currency)
            )
        )
        if sink_id is not None:
            return int(sink_id)
    return system_account_id(session, AccountKind.USAGE_SINK, currency)


def _lock_project(
    session: Session, project_id: int, currency: Currency, sink_account_id: int | None
) -> tuple[list[Row[Any]], int]:
    """Locks the project's accounts in the currency (and an explicit sink) in id order.

    The currency's shared sink is never locked here: every project without a
    sink of its own would then queue on that one row. A project's own sink is
    created with its first allocation, so the shared one serves only accounts
    opened without a project; its counter UPDATE takes the row lock late, and
    the rare deadlock that order allows is retried by ``run_in_transaction``.
    """
    rows = journal.lock_project_accounts(
        session,
        project_id,
        currency,
        extra_ids=[sink_account_id] if sink_account_id is not None else [],
    )
    by_id = {row.id: row for row in rows}
    if sink_account_id is not None and sink_account_id not in by_id:
        raise journal.account_not_found(sink_account_id)
    own_sink = next(
        (row for row in rows if row.code == project_sink_code(project_id, currency)), None
    )
    if sink_account_id is not None:
        sink = by_id[sink_account_id]
    elif own_sink is not None:
        sink = own_sink
    else:
        shared = system_account_id(session, AccountKind.USAGE_SINK, currency)
        sink = journal.read_account(session, shared)
    _check_sink(sink, currency, project_id)
    sources = [row for row in rows if row.project_id == project_id and row.id != sink.id]
    return sources, sink.id


def _check_sink(sink: Row[Any], currency: Currency, project_id: int | None) -> None:
    """Captured credits go to a usage sink of the same currency and project."""
    if sink.kind != AccountKind.USAGE_SINK.value:
        raise journal.not_a_sink(sink.id, sink.kind)
    journal.require_currency(sink, currency)
    if sink.project_id is not None and sink.project_id != project_id:
        raise journal.foreign_sink(sink.id)


def _can_spend(row: Row[Any], now: datetime) -> bool:
    return (
        row.kind == AccountKind.ALLOCATION.value
        and row.status == AccountStatus.ACTIVE.value
        and (row.starts_at is None or row.starts_at <= now)
        and (row.expires_at is None or row.expires_at > now)
    )


def _spend_order(rows: list[Row[Any]]) -> list[Row[Any]]:
    """Soonest-expiring first; accounts without an end date last; then by id."""
    return sorted(
        rows,
        key=lambda row: (
            row.expires_at is None,
            row.expires_at.timestamp() if row.expires_at else 0.0,
            row.id,
        ),
    )


def _split(amount: int, sources: list[Row[Any]], currency: Currency) -> list[tuple[int, int]]:
    """(account id, amount) pairs that cover ``amount``, or InsufficientCredits."""
    total = sum(max(journal.available(row), 0) for row in sources)
    if total < amount:
        raise journal.hold_short(amount, total, currency)
    split: list[tuple[int, int]] = []
    left = amount
    for row in sources:
        take = min(left, max(journal.available(row), 0))
        if take > 0:
            split.append((row.id, take))
            left -= take
        if left == 0:
            break
    return split


def _write_hold(
    session: Session,
    *,
    key: str,
    digest: str,
    currency: Currency,
    split: list[tuple[int, int]],
    sink_id: int,
    actor: Actor,
    reference: str | None,
    now: datetime,
) -> HoldOut:
    counters = journal.Counters()
    rows = []
    for part, (account_id, amount) in enumerate(split):
        counters[account_id].debits_pending += amount
        counters[sink_id].credits_pending += amount
        rows.append(
            journal.transfer_row(
                key=key,
                part=part,
                digest=digest,
                kind=TransferKind.HOLD,
                currency=currency,
                debit_account_id=account_id,
                credit_account_id=sink_id,
                amount=amount,
                actor=actor,
                now=now,
                pending=True,
                reference=reference,
            )
        )
    counters.apply(session)
    transfers = journal.insert_transfers(session, rows)
    parts = [
        HoldPartOut(
            transfer_id=transfer.id,
            part=transfer.part,
            account_id=transfer.debit_account_id,
            amount=transfer.amount,
            captured=0,
            voided=0,
            status=HoldStatus.OPEN,
        )
        for transfer in transfers
    ]
    journal.connection(session).execute(
        _INSERT_PARTS,
        [{**part.model_dump(exclude={"remaining"}), "hold_key": key} for part in parts],
    )
    journal.audit_transfers(session, transfers, actor, now)
    return HoldOut(hold_key=key, currency=currency, parts=parts)
