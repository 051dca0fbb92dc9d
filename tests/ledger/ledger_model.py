"""A pure-Python model of the ledger: what every service call should do.

The state machine test runs the same calls against the database and this
model, and compares them after every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from credits.errors import InvalidInput
from credits.ledger.errors import (
    AccountNotActive,
    AccountNotFound,
    AdjustmentForbidden,
    CaptureExceedsHold,
    CurrencyMismatch,
    HoldClosed,
    HoldNotFound,
    InsufficientCredits,
    NotExpired,
)


@dataclass
class ModelAccount:
    id: int
    currency: str
    kind: str
    no_overdraft: bool
    project_id: int | None
    expires_at: datetime | None
    status: str = "active"
    starts_at: datetime | None = None
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0

    @property
    def available(self) -> int:
        return self.credits_posted - self.debits_posted - self.debits_pending

    def receivable(self, now: datetime) -> bool:
        return self.status == "active" and (self.expires_at is None or self.expires_at > now)

    def spendable(self, now: datetime) -> bool:
        return self.receivable(now) and (self.starts_at is None or self.starts_at <= now)


@dataclass
class ModelPart:
    account_id: int
    sink_id: int
    amount: int
    captured: int = 0
    voided: int = 0
    status: str = "open"

    @property
    def remaining(self) -> int:
        return self.amount - self.captured - self.voided


@dataclass
class LedgerModel:
    accounts: dict[int, ModelAccount]
    sinks: dict[str, int]
    holds: dict[str, list[ModelPart]] = field(default_factory=dict)

    def snapshot(self) -> LedgerModel:
        return LedgerModel(
            accounts={k: replace(v) for k, v in self.accounts.items()},
            sinks=dict(self.sinks),
            holds={k: [replace(p) for p in v] for k, v in self.holds.items()},
        )

    def _move(self, debit: int, credit: int, amount: int, *, pending: bool) -> None:
        if pending:
            self.accounts[debit].debits_pending += amount
            self.accounts[credit].credits_pending += amount
        else:
            self.accounts[debit].debits_posted += amount
            self.accounts[credit].credits_posted += amount

    def _account(self, account_id: int) -> ModelAccount:
        if account_id not in self.accounts:
            raise AccountNotFound("no such account")
        return self.accounts[account_id]

    def grant(self, source: int, target: int, amount: int, now: datetime) -> None:
        """Any two accounts: checks in the service's order (existence, currency,
        spendable source, receivable target, cover)."""
        for account_id in sorted({source, target}):
            self._account(account_id)
        if self.accounts[source].currency != self.accounts[target].currency:
            raise CurrencyMismatch("target")
        if not self.accounts[source].spendable(now):
            raise AccountNotActive("source")
        if not self.accounts[target].receivable(now):
            raise AccountNotActive("target")
        if self.accounts[source].no_overdraft and self.accounts[source].available < amount:
            raise InsufficientCredits("short")
        self._move(source, target, amount, pending=False)

    def _default_sink(self, account: ModelAccount, currency: str) -> int:
        """The project's usage sink in the currency, else the currency's shared one."""
        own = self.sinks.get(f"project:{account.project_id}:{currency}")
        return own if own is not None else self.sinks[f"usage:{currency}"]

    def check_sink(self, sink_id: int, currency: str, project_id: int | None) -> None:
        sink = self.accounts[sink_id]
        if sink.kind != "usage_sink":
            raise InvalidInput("not a sink")
        if sink.currency != currency:
            raise CurrencyMismatch("sink")
        if sink.project_id is not None and sink.project_id != project_id:
            raise InvalidInput("another project's sink")

    def place_hold(
        self,
        key: str,
        *,
        project_id: int | None,
        account_id: int | None,
        currency: str,
        amount: int,
        now: datetime,
        sink_id: int | None = None,
    ) -> None:
        if account_id is not None:
            sink = sink_id or self._default_sink(self._account(account_id), currency)
            for locked in sorted({account_id, sink}):
                self._account(locked)
            account = self.accounts[account_id]
            if account.kind != "allocation":
                raise InvalidInput("not an allocation")
            if account.currency != currency:
                raise CurrencyMismatch("account")
            self.check_sink(sink, currency, account.project_id)
            if not account.spendable(now):
                raise AccountNotActive("account")
            sources = [account]
        else:
            if sink_id is not None:
                self._account(sink_id)
                self.check_sink(sink_id, currency, project_id)
            sources = sorted(
                (
                    a
                    for a in self.accounts.values()
                    if a.project_id == project_id
                    and a.currency == currency
                    and a.kind == "allocation"
                    and a.spendable(now)
                ),
                key=lambda a: (a.expires_at is None, a.expires_at or now, a.id),
            )
            sink = sink_id or self.sinks[f"project:{project_id}:{currency}"]
        if sum(max(a.available, 0) for a in sources) < amount:
            raise InsufficientCredits("short")
        parts, left = [], amount
        for source in sources:
            take = min(left, max(source.available, 0))
            if take:
                parts.append(ModelPart(account_id=source.id, sink_id=sink, amount=take))
                self._move(source.id, sink, take, pending=True)
                left -= take
        self.holds[key] = parts

    def _open_parts(self, hold_key: str) -> list[ModelPart]:
        if hold_key not in self.holds:
            raise HoldNotFound(hold_key)
        parts = self.holds[hold_key]
        open_parts = [p for p in parts if p.status == "open"]
        if not open_parts:
            raise HoldClosed(hold_key)
        return open_parts

    def capture(self, hold_key: str, amount: int) -> None:
        open_parts = self._open_parts(hold_key)
        if amount > sum(p.remaining for p in open_parts):
            raise CaptureExceedsHold(hold_key)
        left = amount
        for part in open_parts:
            take = min(left, part.remaining)
            if not take:
                continue
            part.captured += take
            left -= take
            self._settle(part, take, posted=True)
            if part.captured == part.amount:
                part.status = "captured"

    def void(self, hold_key: str) -> None:
        for part in self._open_parts(hold_key):
            take = part.remaining
            part.voided += take
            part.status = "voided"
            self._settle(part, take, posted=False)

    def _settle(self, part: ModelPart, amount: int, *, posted: bool) -> None:
        self.accounts[part.account_id].debits_pending -= amount
        self.accounts[part.sink_id].credits_pending -= amount
        if posted:
            self._move(part.account_id, part.sink_id, amount, pending=False)

    def adjust(self, account_id: int, amount: int, *, is_ops: bool, now: datetime) -> None:
        if not is_ops:
            raise AdjustmentForbidden("ops only")
        account = self.accounts[account_id]
        ended = account.status == "expired" or (
            account.expires_at is not None and account.expires_at <= now
        )
        if amount > 0 and ended:
            raise AccountNotActive("ended")
        other = self.sinks[f"adjustments:{self.accounts[account_id].currency}"]
        debit, credit = (other, account_id) if amount > 0 else (account_id, other)
        if self.accounts[debit].no_overdraft and self.accounts[debit].available < abs(amount):
            raise InsufficientCredits("short")
        self._move(debit, credit, abs(amount), pending=False)

    def expire(self, account_id: int, now: datetime) -> int:
        account = self.accounts[account_id]
        if account.expires_at is None or account.expires_at > now:
            raise NotExpired("not yet")
        account.status = "expired"
        remainder = account.available
        if remainder > 0:
            self._move(
                account_id, self.sinks[f"expiry:{account.currency}"], remainder, pending=False
            )
        return max(remainder, 0)
