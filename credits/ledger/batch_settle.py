"""Set-based settlement: captures from many holds, spends from many projects, and the
overage behind them, with a fixed number of statements however many requests a
batch holds.

The batch locks what it changes in a fixed order (the holds' parts, then the
accounts, in id order), checks that none of its keys was used, works out every
transfer in Python, and writes them with one multi-row insert per table (``COPY``
on PostgreSQL), one update of the hold parts and one update of the counters of
every account touched. What each request does is what the one-at-a-time
services do for it (:func:`credits.ledger.settle.capture`,
:func:`credits.ledger.holds.place_hold`, :func:`credits.ledger.overage.book_overage`):
the same transfers, keys, request hashes, audit events and counters.

Nothing here commits; the batch is the caller's transaction, whole or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from credits.errors import InvalidInput
from credits.identity.actor import Actor
from credits.ledger import batch_write as bulk
from credits.ledger import journal

# place_hold's own rules of which allocations a hold may draw on, and in which order.
from credits.ledger.batch_locks import lock_accounts, lock_parts, require_unused
from credits.ledger.errors import AccountNotFound, InsufficientCredits
from credits.ledger.holds import HOLD_PARTS, _can_spend, _spend_order
from credits.ledger.models import AccountKind, Currency, HoldStatus, TransferKind
from credits.ledger.queries import LedgerNotMigrated, project_sink_code, system_account_code

# The reason book_overage gives its grant: an overage booked here reads the same.
OVERAGE_REASON = "usage beyond what was held or available"

_A = journal.ACCOUNTS.c
_T = journal.TRANSFERS.c
_P = HOLD_PARTS.c


@dataclass(frozen=True, slots=True)
class SettleRequest:
    """Usage of ``amount`` for a project, settled under ``key``; what cannot be covered
    is booked to the project's usage sink as overage under ``overage_key``, with
    ``reference``."""

    key: str
    hold_key: str
    amount: int
    project_id: int
    currency: Currency
    overage_key: str
    reference: str


@dataclass(frozen=True, slots=True)
class HoldCapture(SettleRequest):
    """Capture up to ``amount`` from the open hold ``hold_key``."""


@dataclass(frozen=True, slots=True)
class ProjectSpend(SettleRequest):
    """Hold ``amount`` from the project's allocations (soonest-expiring first) as far
    as they cover, under ``hold_key``, and capture it at once.

    The allocations that may pay are those in force at ``used_at``, when the usage
    began (the settlement's time when None): usage reported or settled after an
    allocation ended is still paid by it, not booked as overage while its credits
    expire."""

    used_at: datetime | None = None


@dataclass
class BatchSettled:
    """What a batch covered per request key (the rest was overage), and what it wrote."""

    covered: dict[str, int] = field(default_factory=dict)
    transfers: int = 0


def settle_batch(
    session: Session,
    *,
    captures: Sequence[HoldCapture],
    spends: Sequence[ProjectSpend] = (),
    actor: Actor,
    capture_reference: str | None,
    now: datetime,
) -> BatchSettled:
    """Settles every request of the batch in the caller's transaction.

    A closed or unknown hold covers nothing. Raises InvalidInput when a hold or a
    key is named twice, IdempotencyKeyReused when any
    key of the batch was used before (a batch is never applied twice, nor half),
    AccountNotFound when a project with overage has no usage sink,
    AccountNotActive or CurrencyMismatch from the overage's accounts.
    """
    now = journal.check_time(now)
    _check(captures, spends)
    plan = _Plan(actor, now, capture_reference)
    parts = lock_parts(session, [c.hold_key for c in captures if c.amount > 0])
    shortfalls = [plan.capture(c, parts.get(c.hold_key, [])) for c in captures]
    accounts = lock_accounts(session, plan.account_ids, captures, spends, shortfalls)
    plan.spend_all(session, spends, accounts)
    plan.overages(
        [(c, s) for c, s in zip(captures, shortfalls, strict=True) if s]
        + [(s, s.amount - plan.result.covered[s.key]) for s in spends],
        accounts,
    )
    require_unused(session, plan.keys())
    plan.write(session)
    return plan.result


def _check(captures: Sequence[HoldCapture], spends: Sequence[ProjectSpend]) -> None:
    requests: list[SettleRequest] = [*captures, *spends]
    for request in requests:
        journal.check_key(request.key)
        journal.check_key(request.overage_key)
        if request.amount:
            journal.check_amount(request.amount)
    for spend in spends:
        journal.check_key(spend.hold_key)
    # Each capture is planned from its hold's parts as locked: two for one hold would
    # both draw on what is left, so a batch names each hold and each key once.
    holds = [request.hold_key for request in requests]
    keys = [key for r in requests for key in (r.key, r.overage_key)]
    if len(set(holds)) < len(holds) or len(set(keys)) < len(keys):
        raise InvalidInput("a settlement batch names each hold and each key once")


def _remaining(part: Row[Any]) -> int:
    if part.status != HoldStatus.OPEN.value:
        return 0
    return int(part.amount - part.captured - part.voided)


class _Plan:
    """The batch's transfers, hold-part changes and counter moves, worked out in
    Python before anything is written."""

    def __init__(self, actor: Actor, now: datetime, reference: str | None) -> None:
        self.actor = actor
        self.now = now
        self.reference = reference
        self.result = BatchSettled()
        self.transfers: list[dict[str, Any]] = []
        # (capture, hold) of each spend part: the capture names the hold's id once known.
        self.links: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.part_updates: list[dict[str, Any]] = []
        self.counters: dict[int, journal.CounterChange] = {}
        self.account_ids: set[int] = set()
        self._keys: set[str] = set()

    def keys(self) -> list[str]:
        return sorted(self._keys)

    def _move(self, debit: int, credit: int, amount: int, *, pending: bool) -> None:
        """Counters of a posted (or, ``pending``, reserved) movement."""
        out = self.counters.setdefault(debit, journal.CounterChange())
        into = self.counters.setdefault(credit, journal.CounterChange())
        if pending:
            out.debits_pending += amount
            into.credits_pending += amount
        else:
            out.debits_posted += amount
            into.credits_posted += amount

    def _transfer(self, **values: Any) -> dict[str, Any]:
        row = journal.transfer_row(actor=self.actor, now=self.now, **values)
        self.transfers.append(row)
        self._keys.add(row["idempotency_key"])
        return row

    def capture(self, request: HoldCapture, parts: list[Row[Any]]) -> int:
        """Plans the capture from the hold's open parts; returns the shortfall."""
        digest = journal.request_hash(
            TransferKind.CAPTURE,
            self.actor,
            {"hold_key": request.hold_key, "amount": request.amount, "reference": self.reference},
        )
        left = request.amount
        written = 0
        for part in parts:
            take = min(left, _remaining(part))
            if not take:
                continue
            left -= take
            captured = part.captured + take
            status = HoldStatus.CAPTURED if captured == part.amount else HoldStatus.OPEN
            self.part_updates.append(
                {"part_id": part.transfer_id, "captured": captured, "status": status.value}
            )
            self._settle_pending(part.debit_account_id, part.credit_account_id, take)
            self._transfer(
                key=request.key,
                part=written,
                digest=digest,
                kind=TransferKind.CAPTURE,
                currency=Currency(part.currency),
                debit_account_id=part.debit_account_id,
                credit_account_id=part.credit_account_id,
                amount=take,
                pending_id=part.transfer_id,
                reference=self.reference,
            )
            written += 1
        self.result.covered[request.key] = request.amount - left
        return left

    def _settle_pending(self, debit: int, credit: int, amount: int) -> None:
        """A hold's reservation becomes a posted movement."""
        self._move(debit, credit, -amount, pending=True)
        self._move(debit, credit, amount, pending=False)
        self.account_ids |= {debit, credit}

    def spend_all(
        self, session: Session, spends: Sequence[ProjectSpend], accounts: dict[int, Row[Any]]
    ) -> None:
        """Plans each spend in order; each sees what the ones before it took."""
        taken: dict[int, int] = {}
        for spend in spends:
            self.spend(session, spend, accounts, taken)

    def spend(
        self,
        session: Session,
        spend: ProjectSpend,
        accounts: dict[int, Row[Any]],
        taken: dict[int, int],
    ) -> None:
        rows = [
            row
            for row in accounts.values()
            if row.project_id == spend.project_id and row.currency == spend.currency.value
        ]
        sink_id = _sink_id(session, rows, spend.project_id, spend.currency)
        at = spend.used_at or self.now
        sources = _spend_order([r for r in rows if r.id != sink_id and _can_spend(r, at)])
        left = spend.amount
        split = []
        for row in sources:
            take = min(left, max(journal.available(row) - taken.get(row.id, 0), 0))
            if take > 0:
                split.append((row.id, take))
                taken[row.id] = taken.get(row.id, 0) + take
                left -= take
        self.result.covered[spend.key] = covered = spend.amount - left
        if covered:
            self._hold_and_capture(spend, split, sink_id, covered)

    def _hold_and_capture(
        self, spend: ProjectSpend, split: list[tuple[int, int]], sink_id: int, covered: int
    ) -> None:
        """The transfers place_hold then capture would write for the whole of ``covered``."""
        hold_digest = journal.request_hash(
            TransferKind.HOLD,
            self.actor,
            {
                "currency": spend.currency.value,
                "amount": covered,
                "project_id": spend.project_id,
                "account_id": None,
                "sink_account_id": None,
                "reference": spend.reference,
            },
        )
        capture_digest = journal.request_hash(
            TransferKind.CAPTURE,
            self.actor,
            {"hold_key": spend.hold_key, "amount": covered, "reference": None},
        )
        for part, (account_id, amount) in enumerate(split):
            common = {
                "part": part,
                "currency": spend.currency,
                "debit_account_id": account_id,
                "credit_account_id": sink_id,
                "amount": amount,
            }
            hold = self._transfer(
                key=spend.hold_key,
                digest=hold_digest,
                kind=TransferKind.HOLD,
                pending=True,
                reference=spend.reference,
                **common,
            )
            capture = self._transfer(
                key=spend.key, digest=capture_digest, kind=TransferKind.CAPTURE, **common
            )
            self.links.append((capture, hold))
            self._move(account_id, sink_id, amount, pending=False)
            self.account_ids |= {account_id, sink_id}

    def overages(
        self,
        owed: Sequence[tuple[SettleRequest, int]],
        accounts: dict[int, Row[Any]],
    ) -> None:
        """Plans one overage grant per request left short, as book_overage would."""
        by_code = {row.code: row for row in accounts.values()}
        for request, amount in owed:
            if amount <= 0:
                continue
            sink = by_code.get(project_sink_code(request.project_id, request.currency))
            if sink is None:
                code = project_sink_code(request.project_id, request.currency)
                raise AccountNotFound(f"no account has code {code!r}")
            source = _overage_account(by_code, request.currency)
            self._grant_overage(request, source, sink, amount)

    def _grant_overage(
        self,
        request: SettleRequest,
        source: Row[Any],
        sink: Row[Any],
        amount: int,
    ) -> None:
        reference = request.reference
        journal.require_currency(sink, request.currency)
        journal.require_spendable(source, self.now)
        journal.require_receivable(sink, self.now)
        if source.no_overdraft and self._available(source) < amount:
            raise InsufficientCredits(
                f"the overage account {source.id} cannot cover {amount}",
                required=amount,
                available=self._available(source),
            )
        digest = journal.request_hash(
            TransferKind.GRANT,
            self.actor,
            {
                "from": source.id,
                "to": sink.id,
                "amount": amount,
                "reason": OVERAGE_REASON,
                "reference": reference,
            },
        )
        self._transfer(
            key=request.overage_key,
            part=0,
            digest=digest,
            kind=TransferKind.GRANT,
            currency=request.currency,
            debit_account_id=source.id,
            credit_account_id=sink.id,
            amount=amount,
            reason=OVERAGE_REASON,
            reference=reference,
        )
        self._move(source.id, sink.id, amount, pending=False)

    def _available(self, row: Row[Any]) -> int:
        change = self.counters.get(row.id, journal.CounterChange())
        return journal.available(row) - change.debits_posted - change.debits_pending

    def write(self, session: Session) -> None:
        """Writes the plan: a fixed number of statements whatever its size."""
        if not self.transfers:
            return
        for row, transfer_id in zip(
            self.transfers,
            bulk.new_ids(session, journal.TRANSFERS, len(self.transfers)),
            strict=True,
        ):
            row["id"] = transfer_id
        for capture, hold in self.links:
            capture["pending_id"] = hold["id"]
        # A spend's hold is captured whole at once: its parts are born captured.
        parts = [
            {
                "transfer_id": hold["id"],
                "hold_key": hold["idempotency_key"],
                "part": hold["part"],
                "account_id": hold["debit_account_id"],
                "amount": hold["amount"],
                "captured": hold["amount"],
                "voided": 0,
                "status": HoldStatus.CAPTURED.value,
            }
            for _, hold in self.links
        ]
        bulk.insert_rows(session, journal.TRANSFERS, self.transfers)
        bulk.insert_rows(session, HOLD_PARTS, parts)
        bulk.update_hold_parts(session, self.part_updates)
        bulk.apply_counters(session, self.counters)
        bulk.insert_rows(
            session, bulk.AUDIT_EVENTS, [bulk.audit_row(t, self.now) for t in self.transfers]
        )
        self.result.transfers = len(self.transfers)


def _sink_id(session: Session, rows: list[Row[Any]], project_id: int, currency: Currency) -> int:
    """The project's own usage sink, else the currency's shared one (as place_hold)."""
    code = project_sink_code(project_id, currency)
    own = next((row.id for row in rows if row.code == code), None)
    if own is not None:
        return int(own)
    shared = system_account_code(AccountKind.USAGE_SINK, currency)
    found = session.scalar(select(_A.id).where(_A.code == shared))
    if found is None:
        raise LedgerNotMigrated(f"system account {shared} is missing; run `credits db upgrade`")
    return int(found)


def _overage_account(by_code: dict[str, Row[Any]], currency: Currency) -> Row[Any]:
    code = system_account_code(AccountKind.OVERAGE, currency)
    if code not in by_code:
        raise LedgerNotMigrated(f"system account {code} is missing; run `credits db upgrade`")
    return by_code[code]
