"""Two-phase transfers: place a hold, capture from it in parts, void the rest."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from credits.db import utcnow
from credits.errors import InvalidInput
from credits.identity.actor import Actor
from credits.ledger import journal
from credits.ledger.errors import (
    AccountNotFound,
    CaptureExceedsHold,
    HoldClosed,
    HoldNotFound,
    InsufficientCredits,
)
from credits.ledger.models import (
    AccountKind,
    AccountStatus,
    Currency,
    HoldPart,
    HoldStatus,
    TransferKind,
)
from credits.ledger.queries import get_hold, project_sink_code, system_account_id
from credits.ledger.schemas import HoldOut, HoldPartOut, TransferResult

HOLD_PARTS = cast(Table, HoldPart.__table__)
TRANSFERS = journal.TRANSFERS
_P = HOLD_PARTS.c
_INSERT_PARTS = insert(HOLD_PARTS)
_LOCK_HOLD = (
    select(
        HOLD_PARTS,
        TRANSFERS.c.debit_account_id,
        TRANSFERS.c.credit_account_id,
        TRANSFERS.c.currency,
    )
    .join(TRANSFERS, TRANSFERS.c.id == _P.transfer_id)
    .where(_P.hold_key == bindparam("hold_key"))
    .order_by(_P.part)
    .with_for_update(of=HOLD_PARTS)
)
_UPDATE_PART = (
    update(HOLD_PARTS)
    .where(_P.transfer_id == bindparam("part_id"))
    .values(captured=bindparam("captured"), voided=bindparam("voided"), status=bindparam("status"))
)


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
    """Reserves ``amount`` from a project's allocations, or from one account.

    A project's hold spans its active allocation accounts, soonest-expiring
    first, all or nothing. The reserved credits pay into the project's usage
    sink (or ``sink_account_id``) when captured.

    Raises InsufficientCredits (with ``required`` and ``available``),
    AccountNotActive, CurrencyMismatch, AccountNotFound, InvalidAmount,
    IdempotencyKeyReused.
    """
    key = journal.check_key(key)
    amount = journal.check_amount(amount)
    currency = journal.check_currency(currency)
    if (project_id is None) == (account_id is None):
        raise InvalidInput("a hold names either a project or an account")
    digest = journal.request_hash(
        TransferKind.HOLD,
        {
            "currency": currency.value,
            "amount": amount,
            "project_id": project_id,
            "account_id": account_id,
            "sink_account_id": sink_account_id,
            "reference": reference,
        },
    )
    if journal.find_replay(session, key, digest) is not None:
        return get_hold(session, hold_key=key).model_copy(update={"replayed": True})
    now = now or utcnow()
    if account_id is None:
        sources, sink_id = _lock_project(session, project_id or 0, currency, sink_account_id, now)
    else:
        sources, sink_id = _lock_account(session, account_id, currency, sink_account_id, now)
    split = _split(amount, sources)
    return _write_hold(
        session,
        key=key,
        digest=digest,
        currency=currency,
        split=split,
        sink_id=sink_id,
        actor=actor,
        reference=reference,
        now=now,
    )


def _lock_account(
    session: Session,
    account_id: int,
    currency: Currency,
    sink_account_id: int | None,
    now: datetime,
) -> tuple[list[Row[Any]], int]:
    sink_id = sink_account_id or _default_sink_id(session, account_id, currency)
    locked = journal.lock_accounts(session, [account_id, sink_id])
    account = locked[account_id]
    journal.require_currency(account, currency)
    journal.require_currency(locked[sink_id], currency)
    journal.require_spendable(account, now)
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
    session: Session,
    project_id: int,
    currency: Currency,
    sink_account_id: int | None,
    now: datetime,
) -> tuple[list[Row[Any]], int]:
    extra = [sink_account_id] if sink_account_id is not None else []
    rows = journal.lock_project_accounts(session, project_id, currency, extra)
    sink_id = sink_account_id or _project_sink_id(rows)
    if sink_id is None:
        sink_id = system_account_id(session, AccountKind.USAGE_SINK, currency)
        journal.lock_accounts(session, [sink_id])
    elif sink_account_id is not None:
        sink = next((row for row in rows if row.id == sink_id), None)
        if sink is None:
            raise AccountNotFound(f"account {sink_id} does not exist", account_id=sink_id)
        journal.require_currency(sink, currency)
    return _spend_order([row for row in rows if _can_spend(row, now)]), sink_id


def _project_sink_id(rows: list[Row[Any]]) -> int | None:
    sinks = [row.id for row in rows if row.kind == AccountKind.USAGE_SINK.value]
    return sinks[0] if sinks else None


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


def _split(amount: int, sources: list[Row[Any]]) -> list[tuple[int, int]]:
    """(account id, amount) pairs that cover ``amount``, or InsufficientCredits."""
    total = sum(max(journal.available(row), 0) for row in sources)
    if total < amount:
        raise InsufficientCredits(
            f"hold of {amount} needs more than the {total} available",
            required=amount,
            available=total,
        )
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


def _lock_hold(session: Session, hold_key: str) -> list[Row[Any]]:
    """The hold's parts with their transfer's accounts, locked, in part order."""
    rows = journal.connection(session).execute(_LOCK_HOLD, {"hold_key": hold_key}).all()
    if not rows:
        raise HoldNotFound(f"no hold has key {hold_key!r}", hold_key=hold_key)
    return list(rows)


def _require_open(parts: list[Row[Any]], hold_key: str) -> list[Row[Any]]:
    open_parts = [part for part in parts if part.status == HoldStatus.OPEN.value]
    if open_parts:
        return open_parts
    if any(part.status == HoldStatus.VOIDED.value for part in parts):
        raise HoldClosed(f"hold {hold_key!r} was already voided", hold_key=hold_key)
    raise HoldClosed(f"hold {hold_key!r} is fully captured", hold_key=hold_key)


def capture(
    session: Session,
    *,
    key: str,
    hold_key: str,
    amount: int,
    actor: Actor,
    reference: str | None = None,
    now: datetime | None = None,
) -> TransferResult:
    """Posts ``amount`` of an open hold; a hold may be captured many times.

    The parts are drawn in the order the hold placed them. Never more than
    the hold has left: raises CaptureExceedsHold (with ``remaining``),
    HoldClosed, HoldNotFound, InvalidAmount, IdempotencyKeyReused.
    """
    key = journal.check_key(key)
    amount = journal.check_amount(amount)
    digest = journal.request_hash(
        TransferKind.CAPTURE, {"hold_key": hold_key, "amount": amount, "reference": reference}
    )
    if (prior := journal.find_replay(session, key, digest)) is not None:
        return TransferResult(transfers=prior, replayed=True)
    now = now or utcnow()
    open_parts = _require_open(_lock_hold(session, hold_key), hold_key)
    remaining = sum(_remaining(part) for part in open_parts)
    if amount > remaining:
        raise CaptureExceedsHold(
            f"capture of {amount} exceeds the {remaining} left on hold {hold_key!r}",
            requested=amount,
            remaining=remaining,
        )
    takes = []
    left = amount
    for part in open_parts:
        take = min(left, _remaining(part))
        if take:
            takes.append((part, take))
            left -= take
    return _settle(
        session,
        key=key,
        digest=digest,
        kind=TransferKind.CAPTURE,
        takes=takes,
        actor=actor,
        note=reference,
        now=now,
    )


def void_hold(
    session: Session,
    *,
    key: str,
    hold_key: str,
    actor: Actor,
    reason: str | None = None,
    now: datetime | None = None,
) -> TransferResult:
    """Releases whatever the hold has not captured; the hold is then closed.

    Raises HoldClosed on a second void or a fully captured hold, HoldNotFound,
    IdempotencyKeyReused.
    """
    key = journal.check_key(key)
    digest = journal.request_hash(TransferKind.VOID, {"hold_key": hold_key, "reason": reason})
    if (prior := journal.find_replay(session, key, digest)) is not None:
        return TransferResult(transfers=prior, replayed=True)
    now = now or utcnow()
    open_parts = _require_open(_lock_hold(session, hold_key), hold_key)
    takes = [(part, _remaining(part)) for part in open_parts]
    return _settle(
        session,
        key=key,
        digest=digest,
        kind=TransferKind.VOID,
        takes=takes,
        actor=actor,
        note=reason,
        now=now,
    )


def _remaining(part: Row[Any]) -> int:
    return int(part.amount - part.captured - part.voided)


def _settle(
    session: Session,
    *,
    key: str,
    digest: str,
    kind: TransferKind,
    takes: list[tuple[Row[Any], int]],
    actor: Actor,
    note: str | None,
    now: datetime,
) -> TransferResult:
    """Writes one capture or void transfer per hold part and moves the counters."""
    counters = journal.Counters()
    rows = []
    for index, (part, amount) in enumerate(takes):
        _update_part(session, part, kind, amount)
        counters[part.debit_account_id].debits_pending -= amount
        counters[part.credit_account_id].credits_pending -= amount
        if kind is TransferKind.CAPTURE:
            counters[part.debit_account_id].debits_posted += amount
            counters[part.credit_account_id].credits_posted += amount
        rows.append(
            journal.transfer_row(
                key=key,
                part=index,
                digest=digest,
                kind=kind,
                currency=Currency(part.currency),
                debit_account_id=part.debit_account_id,
                credit_account_id=part.credit_account_id,
                amount=amount,
                actor=actor,
                now=now,
                pending_id=part.transfer_id,
                reference=note if kind is TransferKind.CAPTURE else None,
                reason=note if kind is TransferKind.VOID else None,
            )
        )
    counters.apply(session)
    transfers = journal.insert_transfers(session, rows)
    journal.audit_transfers(session, transfers, actor, now)
    return TransferResult(transfers=transfers)


def _update_part(session: Session, part: Row[Any], kind: TransferKind, amount: int) -> None:
    captured = part.captured + (amount if kind is TransferKind.CAPTURE else 0)
    voided = part.voided + (amount if kind is TransferKind.VOID else 0)
    if kind is TransferKind.VOID:
        status = HoldStatus.VOIDED
    elif captured == part.amount:
        status = HoldStatus.CAPTURED
    else:
        status = HoldStatus.OPEN
    journal.connection(session).execute(
        _UPDATE_PART,
        {
            "part_id": part.transfer_id,
            "captured": captured,
            "voided": voided,
            "status": status.value,
        },
    )
