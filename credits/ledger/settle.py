"""Settling a hold: capture from it in parts, void what is left."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, select, update
from sqlalchemy.orm import Session

from credits.audit.public_text import refuse_personal_reasons
from credits.identity.actor import Actor
from credits.ledger import journal, pg_ledger
from credits.ledger.holds import HOLD_PARTS, TRANSFERS
from credits.ledger.models import Currency, HoldStatus, TransferKind
from credits.ledger.schemas import TransferResult

_P = HOLD_PARTS.c
# Hold parts with their transfer's accounts, to be narrowed and locked.
_PARTS = select(
    HOLD_PARTS,
    TRANSFERS.c.debit_account_id,
    TRANSFERS.c.credit_account_id,
    TRANSFERS.c.currency,
).join(TRANSFERS, TRANSFERS.c.id == _P.transfer_id)
_LOCK_HOLD = (
    _PARTS.where(_P.hold_key == bindparam("hold_key"))
    .order_by(_P.part)
    .with_for_update(of=HOLD_PARTS)
)
_UPDATE_PART = (
    update(HOLD_PARTS)
    .where(_P.transfer_id == bindparam("part_id"))
    .values(captured=bindparam("captured"), voided=bindparam("voided"), status=bindparam("status"))
)


def _lock_hold(session: Session, hold_key: str) -> list[Row[Any]]:
    """The hold's parts with their transfer's accounts, locked, in part order."""
    rows = journal.connection(session).execute(_LOCK_HOLD, {"hold_key": hold_key}).all()
    if not rows:
        raise journal.hold_not_found(hold_key)
    return list(rows)


def _lock_hold_unless_replayed(
    session: Session, key: str, digest: str, hold_key: str
) -> list[Row[Any]] | TransferResult:
    """The first result when ``key`` was used before, else the hold's locked parts.

    The key is looked up once the hold is locked: a request with the same key
    may have settled the hold while this one waited.
    """
    parts = _lock_hold(session, hold_key)
    if (prior := journal.find_replay(session, key, digest)) is not None:
        return TransferResult(transfers=prior, replayed=True)
    return parts


def _require_open(parts: list[Row[Any]], hold_key: str) -> list[Row[Any]]:
    open_parts = [part for part in parts if part.status == HoldStatus.OPEN.value]
    if open_parts:
        return open_parts
    voided = any(part.status == HoldStatus.VOIDED.value for part in parts)
    raise journal.hold_closed(hold_key, voided=voided)


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
    now = journal.check_time(now)
    digest = journal.request_hash(
        TransferKind.CAPTURE,
        actor,
        {"hold_key": hold_key, "amount": amount, "reference": reference},
    )
    if (server := pg_ledger.server_side(session)) is not None:
        return pg_ledger.settle(
            server,
            kind=TransferKind.CAPTURE.value,
            key=key,
            digest=digest,
            hold_key=hold_key,
            amount=amount,
            note=reference,
            actor=actor,
            now=now,
        )
    parts = _lock_hold_unless_replayed(session, key, digest, hold_key)
    if isinstance(parts, TransferResult):
        return parts
    open_parts = _require_open(parts, hold_key)
    remaining = sum(_remaining(part) for part in open_parts)
    if amount > remaining:
        raise journal.capture_exceeds(hold_key, amount, remaining)
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
    now = journal.check_time(now)
    # On PostgreSQL the ledger's function writes the audit event, past record_events.
    refuse_personal_reasons(actor.label, {"reason": reason})
    digest = journal.request_hash(
        TransferKind.VOID, actor, {"hold_key": hold_key, "reason": reason}
    )
    if (server := pg_ledger.server_side(session)) is not None:
        return pg_ledger.settle(
            server,
            kind=TransferKind.VOID.value,
            key=key,
            digest=digest,
            hold_key=hold_key,
            amount=None,
            note=reason,
            actor=actor,
            now=now,
        )
    parts = _lock_hold_unless_replayed(session, key, digest, hold_key)
    if isinstance(parts, TransferResult):
        return parts
    open_parts = _require_open(parts, hold_key)
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
