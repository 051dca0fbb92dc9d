"""Ledger services: grants, adjustments and expiry.

Opening accounts and their status live in :mod:`credits.ledger.accounts`; holds,
captures and voids in :mod:`credits.ledger.holds` and :mod:`credits.ledger.settle`.
All are re-exported here, so callers import every ledger service from one place.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, update
from sqlalchemy.orm import Session

from credits.audit.public_text import refuse_personal_reasons
from credits.db import utcnow
from credits.errors import InvalidInput
from credits.grants.queries import pending_tranches, program_of_pool
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.ledger import journal, pg_ledger
from credits.ledger.accounts import GUARDED_KINDS, audit_account, open_account, set_account_status
from credits.ledger.errors import (
    AccountNotActive,
    AdjustmentForbidden,
    InsufficientCredits,
    InvalidAmount,
    NotExpired,
    ReasonRequired,
)
from credits.ledger.holds import place_hold
from credits.ledger.models import AccountKind, AccountStatus, Currency, TransferKind
from credits.ledger.queries import (
    get_account,
    system_account_id,
)
from credits.ledger.schemas import AccountOut, TransferResult
from credits.ledger.settle import capture, void_hold

__all__ = [
    "adjust",
    "capture",
    "expire_account",
    "grant",
    "open_account",
    "place_hold",
    "set_account_status",
    "void_hold",
]

ACCOUNTS = journal.ACCOUNTS


def _lock_unless_replayed(
    session: Session, key: str, digest: str, account_ids: list[int]
) -> tuple[dict[int, Row[Any]], TransferResult | None]:
    """Locks the accounts, unless ``key`` was used before: then its first result.

    The key is looked up once the accounts are locked, since a request with the
    same key may have committed while this one waited.
    """
    locked = journal.lock_accounts(session, account_ids)
    if (prior := journal.find_replay(session, key, digest)) is not None:
        return {}, TransferResult(transfers=prior, replayed=True)
    return locked, None


def grant(
    session: Session,
    *,
    key: str,
    from_account_id: int,
    to_account_id: int,
    amount: int,
    actor: Actor,
    reason: str | None = None,
    reference: str | None = None,
    now: datetime | None = None,
) -> TransferResult:
    """Posts ``amount`` from one account to another of the same currency.

    Funding a program pool from the mint, or an award from a pool to an
    allocation. The receiving account must be active and within its dates.
    Raises InsufficientCredits, CurrencyMismatch, AccountNotActive,
    AccountNotFound, InvalidAmount, IdempotencyKeyReused.
    """
    key = journal.check_key(key)
    amount = journal.check_amount(amount)
    if from_account_id == to_account_id:
        raise InvalidInput("a grant moves credits between two different accounts")
    # On PostgreSQL the ledger's function writes the audit event, past record_events.
    refuse_personal_reasons(actor.label, {"reason": reason})
    now = journal.check_time(now)
    digest = journal.request_hash(
        TransferKind.GRANT,
        actor,
        {
            "from": from_account_id,
            "to": to_account_id,
            "amount": amount,
            "reason": reason,
            "reference": reference,
        },
    )
    if (server := pg_ledger.server_side(session)) is not None:
        return pg_ledger.transfer(
            server,
            key=key,
            digest=digest,
            kind=TransferKind.GRANT.value,
            from_account_id=from_account_id,
            to_account_id=to_account_id,
            amount=amount,
            reason=reason,
            reference=reference,
            actor=actor,
            now=now,
        )
    locked, prior = _lock_unless_replayed(session, key, digest, [from_account_id, to_account_id])
    if prior is not None:
        return prior
    source, target = locked[from_account_id], locked[to_account_id]
    currency = Currency(source.currency)
    journal.require_currency(target, currency)
    journal.require_spendable(source, now)
    journal.require_receivable(target, now)
    _require_covers(source, amount)
    return _post(
        session,
        key=key,
        digest=digest,
        kind=TransferKind.GRANT,
        currency=currency,
        debit=source.id,
        credit=target.id,
        amount=amount,
        actor=actor,
        now=now,
        reason=reason,
        reference=reference,
    )


def _require_covers(account: Row[Any], amount: int) -> None:
    if account.no_overdraft and journal.available(account) < amount:
        raise journal.account_short(
            account.id, amount, journal.available(account), account.currency
        )


def _post(
    session: Session,
    *,
    key: str,
    digest: str,
    kind: TransferKind,
    currency: Currency,
    debit: int,
    credit: int,
    amount: int,
    actor: Actor,
    now: datetime,
    reason: str | None = None,
    reference: str | None = None,
) -> TransferResult:
    """Writes one posted transfer, moves both counters and audits it."""
    counters = journal.Counters()
    counters[debit].debits_posted += amount
    counters[credit].credits_posted += amount
    counters.apply(session)
    row = journal.transfer_row(
        key=key,
        part=0,
        digest=digest,
        kind=kind,
        currency=currency,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        actor=actor,
        now=now,
        reason=reason,
        reference=reference,
    )
    transfers = journal.insert_transfers(session, [row])
    journal.audit_transfers(session, transfers, actor, now)
    return TransferResult(transfers=transfers)


def adjust(
    session: Session,
    *,
    key: str,
    account_id: int,
    amount: int,
    actor: Actor,
    reason: str,
    now: datetime | None = None,
) -> TransferResult:
    """Ops correct a balance: a positive amount adds credits, a negative one removes them.

    The other side is the currency's adjustments account. Needs the ops role
    and a reason. Raises AdjustmentForbidden, ReasonRequired, InvalidAmount,
    InsufficientCredits (a removal may not overdraw), IdempotencyKeyReused.
    """
    if not actor.has_role(Role.OPS):
        raise AdjustmentForbidden("only ops may adjust a balance")
    if not isinstance(reason, str) or not reason.strip():
        raise ReasonRequired("an adjustment needs a reason")
    key = journal.check_key(key)
    if type(amount) is not int or amount == 0:
        raise InvalidAmount(f"an adjustment is a non-zero integer of micro-credits, got {amount!r}")
    journal.check_amount(abs(amount))
    now = journal.check_time(now)
    digest = journal.request_hash(
        TransferKind.ADJUST, actor, {"account_id": account_id, "amount": amount, "reason": reason}
    )
    account = get_account(session, account_id=account_id)
    if account.kind not in GUARDED_KINDS:
        raise InvalidInput(
            f"account {account_id} is a {account.kind.value} account; adjustments apply to "
            "allocation and program-pool accounts"
        )
    other = system_account_id(session, AccountKind.ADJUSTMENTS, account.currency)
    locked, prior = _lock_unless_replayed(session, key, digest, [account_id, other])
    if prior is not None:
        return prior
    if amount > 0:
        _require_not_ended(locked[account_id], now)
    debit, credit = (other, account_id) if amount > 0 else (account_id, other)
    _require_covers(locked[debit], abs(amount))
    if amount < 0 and account.kind is AccountKind.PROGRAM_POOL:
        _require_keeps_tranches(session, locked[account_id], abs(amount))
    return _post(
        session,
        key=key,
        digest=digest,
        kind=TransferKind.ADJUST,
        currency=account.currency,
        debit=debit,
        credit=credit,
        amount=abs(amount),
        actor=actor,
        now=now,
        reason=reason,
    )


def _require_keeps_tranches(session: Session, pool: Row[Any], removing: int) -> None:
    """A program's pool keeps what its pending tranches are promised: a removal that
    reached into it would make a tranche release fail later, breaking an award."""
    program_id = program_of_pool(pool.code)
    owed = pending_tranches(session, [program_id]).get((program_id, pool.currency), 0)
    removable = max(journal.available(pool) - owed, 0)
    if removing > removable:
        raise InsufficientCredits(
            f"program {program_id}'s pool keeps {owed} micro-credits promised to pending"
            f" tranches; at most {removable} can be removed",
            required=removing,
            available=removable,
        )


def _require_not_ended(account: Row[Any], now: datetime) -> None:
    """Credits added to an ended account would sit there until the next sweep;
    a suspended one may still be corrected."""
    ended = account.status == AccountStatus.EXPIRED.value or (
        account.expires_at is not None and account.expires_at <= now
    )
    if ended:
        raise AccountNotActive(f"account {account.id} has ended", account_id=account.id)


def expire_account(
    session: Session,
    *,
    account_id: int,
    actor: Actor,
    now: datetime | None = None,
) -> TransferResult:
    """Moves an ended account's unreserved remainder to the expiry sink.

    Open holds keep their credits so running work can still be charged; once
    they are voided, a later sweep moves what they released. The account is
    marked expired. The key is derived from the account's counters, in the
    ledger's reserved key space, so re-running a sweep on unchanged state moves
    nothing twice and no client key can collide with it.
    Raises NotExpired, AccountNotFound, IdempotencyKeyReused.
    """
    now = journal.check_time(now)
    account = get_account(session, account_id=account_id)
    sink = system_account_id(session, AccountKind.EXPIRY_SINK, account.currency)
    locked = journal.lock_accounts(session, [account_id, sink])[account_id]
    if locked.expires_at is None or locked.expires_at > now:
        raise NotExpired(f"account {account_id} has not reached its end date")
    remainder = journal.available(locked)
    key = _expiry_key(locked)
    digest = journal.request_hash(TransferKind.EXPIRE, actor, {"account_id": account_id})
    if (prior := journal.find_replay(session, key, digest)) is not None:
        return TransferResult(transfers=prior, replayed=True)
    if locked.status != AccountStatus.EXPIRED.value:
        session.execute(
            update(ACCOUNTS)
            .where(ACCOUNTS.c.id == account_id)
            .values(status=AccountStatus.EXPIRED.value)
        )
        audit_account(
            session,
            account_id,
            "ledger.account_status",
            actor,
            {"from": locked.status, "to": AccountStatus.EXPIRED.value, "reason": "ended"},
            now=now,
        )
    if remainder <= 0:
        return TransferResult(transfers=[])
    return _post(
        session,
        key=key,
        digest=digest,
        kind=TransferKind.EXPIRE,
        currency=account.currency,
        debit=account_id,
        credit=sink,
        amount=remainder,
        actor=actor,
        now=now,
    )


def extend_account(
    session: Session,
    *,
    account_id: int,
    expires_at: datetime,
    actor: Actor,
    reason: str,
) -> AccountOut:
    """Moves an account's end date later; appends ``ledger.account_extended``.

    Only a later date: history already swept is never reopened. Raises
    AccountNotFound, ReasonRequired, InvalidInput (no end date to move, or not
    later), AccountNotActive (expired already).
    """
    journal.check_time(expires_at, name="expires_at")
    if not isinstance(reason, str) or not reason.strip():
        raise ReasonRequired("extending an account needs a reason")
    locked = journal.lock_accounts(session, [account_id])[account_id]
    _require_not_ended(locked, utcnow())
    if locked.expires_at is None or expires_at <= locked.expires_at:
        raise InvalidInput(f"account {account_id} can only be extended to a later end date")
    session.execute(
        update(ACCOUNTS).where(ACCOUNTS.c.id == account_id).values(expires_at=expires_at)
    )
    audit_account(
        session,
        account_id,
        "ledger.account_extended",
        actor,
        {
            "from": locked.expires_at.isoformat(),
            "to": expires_at.isoformat(),
            "reason": reason.strip(),
        },
    )
    return get_account(session, account_id=account_id)


def _expiry_key(account: Row[Any]) -> str:
    return (
        f"{journal.RESERVED_KEY_PREFIX}expire:{account.id}:{account.credits_posted}:"
        f"{account.debits_posted}:{account.debits_pending}"
    )
