"""The ledger's moving parts shared by every service: validation, idempotency,
row locks, counter updates, transfer rows and their audit events.

Nothing here commits; every function runs in the caller's transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, and_, bindparam, insert, or_, select, update
from sqlalchemy.orm import Session

from credits.audit.service import canonical_json, record_events
from credits.db import utcnow
from credits.errors import InvalidInput
from credits.formatting import credits_refusal
from credits.identity.actor import Actor
from credits.ledger.errors import (
    AccountNotActive,
    AccountNotFound,
    CaptureExceedsHold,
    CurrencyMismatch,
    HoldClosed,
    HoldNotFound,
    IdempotencyKeyReused,
    InsufficientCredits,
    InvalidAmount,
)
from credits.ledger.models import Account, AccountStatus, Currency, Transfer, TransferKind
from credits.ledger.schemas import TransferOut

ACCOUNTS = cast(Table, Account.__table__)
TRANSFERS = cast(Table, Transfer.__table__)
MAX_KEY_LENGTH = 200
# Amounts fit a signed 64-bit counter with room for sums of many of them.
MAX_AMOUNT = 2**53


class CounterGuardTripped(RuntimeError):
    """A counter update hit the overdraft guard that the service had checked."""


def connection(session: Session) -> Connection:
    """The session's connection: Core statements skip the ORM's execution layer,
    which on the hold path costs more than the database does."""
    return session.connection()


_A = ACCOUNTS.c
_T = TRANSFERS.c
# Built once: constructing SQL expressions per call is the ledger's main CPU cost.
_SELECT_REQUEST = select(TRANSFERS).where(_T.idempotency_key == bindparam("key")).order_by(_T.part)
_LOCK_ACCOUNTS = (
    select(ACCOUNTS)
    .where(_A.id.in_(bindparam("ids", expanding=True)))
    .order_by(_A.id)
    .with_for_update()
)
_LOCK_PROJECT = (
    select(ACCOUNTS)
    .where(
        or_(
            and_(_A.project_id == bindparam("project_id"), _A.currency == bindparam("currency")),
            _A.id.in_(bindparam("extra_ids", expanding=True)),
        )
    )
    .order_by(_A.id)
    .with_for_update()
)
# The WHERE clause repeats the overdraft rule so a flagged account can never go
# below zero even if a caller skipped the row lock; the CHECK constraint is the
# last line behind it.
_APPLY_COUNTERS = (
    update(ACCOUNTS)
    .where(_A.id == bindparam("account_id"))
    .where(
        or_(
            _A.no_overdraft.is_(False),
            _A.credits_posted
            + bindparam("d_credits_posted")
            - _A.debits_posted
            - bindparam("d_debits_posted")
            - _A.debits_pending
            - bindparam("d_debits_pending")
            >= 0,
        )
    )
    .values(
        debits_pending=_A.debits_pending + bindparam("d_debits_pending"),
        debits_posted=_A.debits_posted + bindparam("d_debits_posted"),
        credits_pending=_A.credits_pending + bindparam("d_credits_pending"),
        credits_posted=_A.credits_posted + bindparam("d_credits_posted"),
    )
)
_INSERT_TRANSFERS = insert(TRANSFERS).returning(TRANSFERS, sort_by_parameter_order=True)

POSTED_KINDS = (
    TransferKind.GRANT.value,
    TransferKind.CAPTURE.value,
    TransferKind.EXPIRE.value,
    TransferKind.ADJUST.value,
)


def check_amount(amount: object, *, name: str = "amount") -> int:
    """A positive integer of micro-credits; bools and floats are refused."""
    if type(amount) is not int:
        raise InvalidAmount(f"{name} must be an integer number of micro-credits, got {amount!r}")
    if amount <= 0:
        raise InvalidAmount(f"{name} must be positive, got {amount}")
    if amount > MAX_AMOUNT:
        raise InvalidAmount(f"{name} must be at most {MAX_AMOUNT}, got {amount}")
    return amount


def check_currency(currency: object) -> Currency:
    try:
        return Currency(str(currency))
    except ValueError:
        allowed = ", ".join(c.value for c in Currency)
        raise InvalidInput(f"currency must be one of {allowed}, got {currency!r}") from None


# Keys the ledger derives itself (expiry sweeps) start with this; a caller's
# key may not, so a client can never occupy a key the platform will need.
RESERVED_KEY_PREFIX = "ledger:"


def check_key(key: object) -> str:
    if not isinstance(key, str) or not key.strip():
        raise InvalidInput("an idempotency key is required")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(f"an idempotency key is at most {MAX_KEY_LENGTH} characters")
    if key.startswith(RESERVED_KEY_PREFIX):
        raise InvalidInput(f"idempotency keys starting with {RESERVED_KEY_PREFIX!r} are reserved")
    return key


def check_time(moment: datetime | None, *, name: str = "now") -> datetime:
    """An aware time (default: now); a naive one is refused, never guessed."""
    if moment is None:
        return utcnow()
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidInput(f"{name} must carry a timezone, got {moment.isoformat()}")
    return moment


def request_hash(kind: TransferKind, actor: Actor, fields: Mapping[str, Any]) -> str:
    """What a request asked for and who asked, so a replayed key can be told from a
    reused one; another actor's request under the same key is a reuse, never a replay."""
    document = {"kind": kind.value, "actor": actor.label, **fields}
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()


def find_replay(session: Session, key: str, digest: str) -> list[TransferOut] | None:
    """The transfers an earlier request with ``key`` wrote, or None if it is new.

    Raises IdempotencyKeyReused when the key was used for a different request.
    """
    rows = connection(session).execute(_SELECT_REQUEST, {"key": key}).all()
    if not rows:
        return None
    if rows[0].request_hash != digest:
        raise key_reused(key)
    return [TransferOut.model_validate(row._mapping) for row in rows]


def lock_accounts(session: Session, account_ids: Iterable[int]) -> dict[int, Row[Any]]:
    """Locks the accounts in id order (so two transfers never deadlock) and reads them."""
    wanted = sorted(set(account_ids))
    rows = connection(session).execute(_LOCK_ACCOUNTS, {"ids": wanted}).all()
    found = {row.id: row for row in rows}
    for account_id in wanted:
        if account_id not in found:
            raise account_not_found(account_id)
    return found


def lock_project_accounts(
    session: Session,
    project_id: int,
    currency: Currency,
    *,
    extra_ids: Sequence[int] = (),
) -> list[Row[Any]]:
    """Locks every account of a project in one currency, plus the accounts named by
    ``extra_ids``, all in id order and in one statement."""
    parameters = {
        "project_id": project_id,
        "currency": currency.value,
        "extra_ids": list(extra_ids),
    }
    return list(connection(session).execute(_LOCK_PROJECT, parameters).all())


def read_account(session: Session, account_id: int) -> Row[Any]:
    """One account's row, without a lock."""
    row = connection(session).execute(select(ACCOUNTS).where(_A.id == account_id)).first()
    if row is None:
        raise account_not_found(account_id)
    return row


def available(account: Row[Any]) -> int:
    return int(account.credits_posted - account.debits_posted - account.debits_pending)


def require_currency(account: Row[Any], currency: Currency) -> None:
    if account.currency != currency.value:
        raise currency_mismatch(account.id, account.currency, currency.value)


def require_spendable(account: Row[Any], now: datetime) -> None:
    """An account may be spent from only while active and within its dates."""
    require_receivable(account, now)
    if account.starts_at is not None and account.starts_at > now:
        raise not_active(account.id, f"starts at {account.starts_at.isoformat()}")


def require_receivable(account: Row[Any], now: datetime) -> None:
    """An account may be paid into while active and not ended (an award may precede
    its start date)."""
    if account.status != AccountStatus.ACTIVE.value:
        raise not_active(account.id, f"is {account.status}")
    if account.expires_at is not None and account.expires_at <= now:
        raise not_active(account.id, f"expired at {account.expires_at.isoformat()}")


@dataclass
class CounterChange:
    """How one account's four counters move in one request."""

    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0


class Counters:
    """Collects counter changes per account, then applies them in id order."""

    def __init__(self) -> None:
        self._changes: dict[int, CounterChange] = {}

    def __getitem__(self, account_id: int) -> CounterChange:
        return self._changes.setdefault(account_id, CounterChange())

    def apply(self, session: Session) -> None:
        """One conditional UPDATE per account, sent together, in account id order.

        Raises CounterGuardTripped when a flagged account would go below zero.
        """
        params = [
            {
                "account_id": account_id,
                "d_debits_pending": change.debits_pending,
                "d_debits_posted": change.debits_posted,
                "d_credits_pending": change.credits_pending,
                "d_credits_posted": change.credits_posted,
            }
            for account_id, change in sorted(self._changes.items())
        ]
        result = connection(session).execute(_APPLY_COUNTERS, params)
        if result.rowcount != len(params):
            # Callers check balances under the row lock first, so this is a bug,
            # not a refusal: it must abort the whole transaction, never be
            # caught as a CreditsError and committed half-applied.
            raise CounterGuardTripped(f"an overdraft guard refused one of {len(params)} updates")


def insert_transfers(session: Session, rows: Sequence[Mapping[str, Any]]) -> list[TransferOut]:
    """Appends transfer rows and returns them as written, in the order given."""
    written = connection(session).execute(_INSERT_TRANSFERS, list(rows)).all()
    return [TransferOut.model_validate(row._mapping) for row in written]


def transfer_row(
    *,
    key: str,
    part: int,
    digest: str,
    kind: TransferKind,
    currency: Currency,
    debit_account_id: int,
    credit_account_id: int,
    amount: int,
    actor: Actor,
    now: datetime,
    pending: bool = False,
    pending_id: int | None = None,
    reference: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "part": part,
        "request_hash": digest,
        "kind": kind.value,
        "currency": currency.value,
        "debit_account_id": debit_account_id,
        "credit_account_id": credit_account_id,
        "amount": amount,
        "pending": pending,
        "pending_id": pending_id,
        "reference": reference,
        "actor": actor.label,
        "reason": reason,
        "created_at": now,
    }


def audit_transfers(
    session: Session, transfers: Sequence[TransferOut], actor: Actor, now: datetime
) -> None:
    """One audit event per transfer, in the same transaction."""
    record_events(
        session,
        [
            {
                "event_type": f"ledger.{transfer.kind.value}",
                "actor": actor.label,
                "subject_type": "ledger_transfer",
                "subject_id": str(transfer.id),
                "data": transfer.model_dump(mode="json", exclude={"created_at", "actor"}),
            }
            for transfer in transfers
        ],
        occurred_at=now,
    )


# --- refusals: built here so the Python path and the PL/pgSQL path (pg_ledger)
# word them the same, field for field.


def account_not_found(account_id: int) -> AccountNotFound:
    return AccountNotFound(f"account {account_id} does not exist", account_id=account_id)


def currency_mismatch(account_id: int, holds: str, wanted: str) -> CurrencyMismatch:
    return CurrencyMismatch(
        f"account {account_id} holds {holds}, not {wanted}", account_id=account_id
    )


def not_active(account_id: int, why: str) -> AccountNotActive:
    """``why`` completes 'account N …': 'is suspended', 'expired at …', 'starts at …'."""
    return AccountNotActive(f"account {account_id} {why}", account_id=account_id)


def key_reused(key: str) -> IdempotencyKeyReused:
    return IdempotencyKeyReused(f"idempotency key {key!r} was already used for a different request")


def hold_short(required: int, available: int, currency: Currency) -> InsufficientCredits:
    """A hold over all its sources cannot be covered."""
    return InsufficientCredits(
        f"not enough credits: {credits_refusal(required, available, currency)}",
        required=required,
        available=available,
    )


def account_short(
    account_id: int, required: int, available: int, currency: str
) -> InsufficientCredits:
    """One account cannot cover a posted transfer."""
    return InsufficientCredits(
        f"not enough credits on account {account_id}:"
        f" {credits_refusal(required, available, currency)}",
        required=required,
        available=available,
    )


def not_a_sink(account_id: int, kind: str) -> InvalidInput:
    return InvalidInput(f"account {account_id} is a {kind} account, not a usage sink")


def foreign_sink(account_id: int) -> InvalidInput:
    return InvalidInput(f"usage sink {account_id} belongs to another project")


def not_an_allocation(account_id: int, kind: str) -> InvalidInput:
    return InvalidInput(f"account {account_id} is a {kind} account; holds draw on allocations")


def hold_not_found(hold_key: str) -> HoldNotFound:
    return HoldNotFound(f"no hold has key {hold_key!r}", hold_key=hold_key)


def hold_closed(hold_key: str, *, voided: bool) -> HoldClosed:
    if voided:
        return HoldClosed(f"hold {hold_key!r} was already voided", hold_key=hold_key)
    return HoldClosed(f"hold {hold_key!r} is fully captured", hold_key=hold_key)


def capture_exceeds(hold_key: str, requested: int, remaining: int) -> CaptureExceedsHold:
    return CaptureExceedsHold(
        f"capture of {requested} exceeds the {remaining} left on hold {hold_key!r}",
        requested=requested,
        remaining=remaining,
    )
