"""Ledger tables: accounts with four counters, immutable transfers, hold parts.

After TigerBeetle: an account keeps ``debits_pending``, ``debits_posted``,
``credits_pending`` and ``credits_posted``; a transfer moves an integer number
of micro-credits from a debit account to a credit account and is never changed.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from credits.db import Base, BigId, UtcDateTime, in_values, utcnow

MICRO_PER_CREDIT = 1_000_000


class Currency(StrEnum):
    GPU = "gpu"
    LABEL = "label"


class AccountKind(StrEnum):
    ALLOCATION = "allocation"
    PROGRAM_POOL = "program_pool"
    SOURCE = "source"
    USAGE_SINK = "usage_sink"
    EXPIRY_SINK = "expiry_sink"
    ADJUSTMENTS = "adjustments"
    OVERAGE = "overage"


class AccountStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    EXPIRED = "expired"


class TransferKind(StrEnum):
    GRANT = "grant"
    HOLD = "hold"
    CAPTURE = "capture"
    VOID = "void"
    EXPIRE = "expire"
    ADJUST = "adjust"


class HoldStatus(StrEnum):
    OPEN = "open"
    CAPTURED = "captured"
    VOIDED = "voided"


class Account(Base):
    """One balance in one currency: an allocation's, or a system account's."""

    __tablename__ = "ledger_accounts"
    __table_args__ = (
        CheckConstraint(in_values("currency", Currency), name="currency"),
        CheckConstraint(in_values("kind", AccountKind), name="kind"),
        CheckConstraint(in_values("status", AccountStatus), name="status"),
        CheckConstraint(
            "debits_pending >= 0 AND debits_posted >= 0"
            " AND credits_pending >= 0 AND credits_posted >= 0",
            name="counters_not_negative",
        ),
        # The database's own refusal of an overdraft, whatever the code does.
        CheckConstraint(
            "NOT no_overdraft OR debits_posted + debits_pending <= credits_posted",
            name="no_overdraft",
        ),
        Index("ix_ledger_accounts_project_currency", "project_id", "currency"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(200), unique=True)
    currency: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=AccountStatus.ACTIVE.value)
    no_overdraft: Mapped[bool] = mapped_column(Boolean)
    # Projects arrive with the grants domain; until then this is a plain tag.
    project_id: Mapped[int | None] = mapped_column(BigInteger)
    starts_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    debits_pending: Mapped[int] = mapped_column(BigInteger, default=0)
    debits_posted: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_pending: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_posted: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Transfer(Base):
    """An immutable movement; the database refuses UPDATE and DELETE of these rows.

    A request (one idempotency key) may write several rows, one per account it
    touches: ``part`` numbers them from 0.
    """

    __tablename__ = "ledger_transfers"
    __table_args__ = (
        UniqueConstraint("idempotency_key", "part"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("debit_account_id <> credit_account_id", name="distinct_accounts"),
        CheckConstraint(in_values("currency", Currency), name="currency"),
        CheckConstraint(in_values("kind", TransferKind), name="kind"),
        CheckConstraint("part >= 0", name="part_not_negative"),
        Index("ix_ledger_transfers_debit_account_id_id", "debit_account_id", "id"),
        Index("ix_ledger_transfers_credit_account_id_id", "credit_account_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    part: Mapped[int] = mapped_column(default=0)
    request_hash: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(16))
    debit_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    credit_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    pending: Mapped[bool] = mapped_column(Boolean, default=False)
    # A capture or void names the hold part it settles.
    pending_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transfers.id"), index=True)
    reference: Mapped[str | None] = mapped_column(String(200), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class HoldPart(Base):
    """What is left of one pending transfer: captured and voided so far.

    Mutable like the account counters, and checked against the journal by
    ``credits ledger verify``; the CHECK keeps a hold from ever paying out more
    than it reserved.
    """

    __tablename__ = "ledger_hold_parts"
    __table_args__ = (
        CheckConstraint("captured >= 0 AND voided >= 0", name="settled_not_negative"),
        CheckConstraint("captured + voided <= amount", name="within_hold"),
        CheckConstraint(in_values("status", HoldStatus), name="status"),
        Index("ix_ledger_hold_parts_hold_key_part", "hold_key", "part", unique=True),
    )

    transfer_id: Mapped[int] = mapped_column(ForeignKey("ledger_transfers.id"), primary_key=True)
    hold_key: Mapped[str] = mapped_column(String(200))
    part: Mapped[int] = mapped_column()
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    captured: Mapped[int] = mapped_column(BigInteger, default=0)
    voided: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(16), default=HoldStatus.OPEN.value)
