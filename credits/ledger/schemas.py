"""Shapes the ledger returns; amounts are integer micro-credits everywhere."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, computed_field

from credits.ledger.models import AccountKind, AccountStatus, Currency, HoldStatus, TransferKind


class AccountOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    currency: Currency
    kind: AccountKind
    status: AccountStatus
    no_overdraft: bool
    project_id: int | None
    starts_at: datetime | None
    expires_at: datetime | None
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def available(self) -> int:
        """Posted credits less posted and pending debits: what a new hold may take."""
        return self.credits_posted - self.debits_posted - self.debits_pending


class BalanceOut(BaseModel):
    account_id: int
    currency: Currency
    posted: int = Field(description="credits_posted - debits_posted, in micro-credits")
    held: int = Field(description="debits_pending: reserved by open holds")
    incoming: int = Field(description="credits_pending: holds that will pay into this account")
    available: int = Field(description="posted - held")


class TransferOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    idempotency_key: str
    part: int
    kind: TransferKind
    currency: Currency
    debit_account_id: int
    credit_account_id: int
    amount: int
    pending: bool
    pending_id: int | None
    reference: str | None
    actor: str
    reason: str | None
    created_at: datetime


class TransferResult(BaseModel):
    """What one request wrote; ``replayed`` when the key had been seen before."""

    transfers: list[TransferOut]
    replayed: bool = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def amount(self) -> int:
        return sum(transfer.amount for transfer in self.transfers)


class HoldPartOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    transfer_id: int
    part: int
    account_id: int
    amount: int
    captured: int
    voided: int
    status: HoldStatus

    @computed_field  # type: ignore[prop-decorator]
    @property
    def remaining(self) -> int:
        return self.amount - self.captured - self.voided


class HoldOut(BaseModel):
    hold_key: str
    currency: Currency
    parts: list[HoldPartOut]
    replayed: bool = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def amount(self) -> int:
        return sum(part.amount for part in self.parts)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def captured(self) -> int:
        return sum(part.captured for part in self.parts)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def voided(self) -> int:
        return sum(part.voided for part in self.parts)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def remaining(self) -> int:
        return sum(part.remaining for part in self.parts)


class TransferPage(BaseModel):
    """Transfers newest first; pass ``next_before`` as ``before`` for the next page."""

    items: list[TransferOut]
    next_before: int | None


class VerifyReport(BaseModel):
    ok: bool
    accounts_checked: int
    transfers_checked: int
    hold_parts_checked: int
    audit_events_checked: int
    problems: list[str]
