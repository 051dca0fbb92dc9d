"""Replaying the ledger entries of the log into each account's four counters.

Every ledger transfer is one log entry (``ledger.grant|hold|capture|void|expire|
adjust``, subject ``ledger_transfer``) whose ``data`` holds the transfer: its
id, kind, currency, debit and credit account ids, amount, ``pending`` and
``pending_id``. The counters move as the ledger moves them
(credits/ledger/journal.py, holds.py, settle.py):

- grant, expire, adjust: posted at once, debits_posted of the debit account
  and credits_posted of the credit account;
- hold: pending, debits_pending and credits_pending;
- capture: settles part of its hold (``pending_id``): the pending counters
  fall by the amount and the posted ones rise by it;
- void: releases part of its hold: the pending counters fall by the amount.

The replay also checks what the ledger guarantees: a capture or void names a
hold earlier in the log with the same accounts and currency, never settles more
than it held, and no transfer appears twice. Only the standard library is
imported: the standalone verifier uses this module.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

LEDGER_PREFIX = "ledger."
POSTED = frozenset({"grant", "expire", "adjust"})
SETTLING = frozenset({"capture", "void"})
KINDS = POSTED | SETTLING | {"hold"}
TRANSFER_TYPES = frozenset(LEDGER_PREFIX + kind for kind in KINDS)
TRANSFER_SUBJECT = "ledger_transfer"
# One decoder, fed text: json.loads would sniff each entry's encoding first.
_DECODE = json.JSONDecoder().decode
COUNTERS = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")


class ReplayError(ValueError):
    """A ledger entry the ledger could never have written; names the entry."""


@dataclass(slots=True)
class AccountCounters:
    """One account's currency and four counters, in micro-credits."""

    currency: str
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0

    def as_dict(self) -> dict[str, int]:
        return {counter: getattr(self, counter) for counter in COUNTERS}


@dataclass
class _Hold:
    index: int
    debit: int
    credit: int
    currency: str
    amount: int
    settled: int = 0


@dataclass
class Replay:
    """Accounts as the ledger entries seen so far leave them."""

    accounts: dict[int, AccountCounters] = field(default_factory=dict)
    ledger_entries: int = 0
    _holds: dict[int, _Hold] = field(default_factory=dict)
    _transfers: dict[int, int] = field(default_factory=dict)

    def feed(self, index: int, entry: bytes) -> None:
        """Applies entry ``index`` of the log if it is a ledger entry."""
        # Most entries are not transfers: skip parsing those. A transfer names
        # "ledger" in its type and subject, unless written with JSON escapes.
        if b"ledger" not in entry and b"\\u" not in entry:
            return
        document = _document(index, entry)
        kind = str(document.get("type", ""))
        subject = document.get("subject")
        is_transfer = isinstance(subject, dict) and subject.get("type") == TRANSFER_SUBJECT
        if kind not in TRANSFER_TYPES and not is_transfer:
            return  # not a money movement: accounts opened, users, datasets, ...
        transfer = _Transfer.parse(index, kind, document.get("data"))
        self._check_new(index, transfer)
        debit = self._account(transfer.debit, transfer)
        credit = self._account(transfer.credit, transfer)
        amount = transfer.amount
        if transfer.kind == "hold":
            self._holds[transfer.id] = _Hold(
                index, transfer.debit, transfer.credit, transfer.currency, amount
            )
            debit.debits_pending += amount
            credit.credits_pending += amount
        elif transfer.kind in SETTLING:
            self._settle(index, transfer)
            debit.debits_pending -= amount
            credit.credits_pending -= amount
            if transfer.kind == "capture":
                debit.debits_posted += amount
                credit.credits_posted += amount
        else:
            debit.debits_posted += amount
            credit.credits_posted += amount
        self.ledger_entries += 1

    def _check_new(self, index: int, transfer: _Transfer) -> None:
        earlier = self._transfers.get(transfer.id)
        if earlier is not None:
            raise ReplayError(f"entry {index} repeats transfer {transfer.id} of entry {earlier}")
        self._transfers[transfer.id] = index

    def _settle(self, index: int, transfer: _Transfer) -> None:
        hold = self._holds.get(transfer.pending_id or -1)
        name = f"entry {index} ({transfer.kind} transfer {transfer.id})"
        if hold is None:
            raise ReplayError(f"{name} settles transfer {transfer.pending_id}, no hold before it")
        if (hold.debit, hold.credit, hold.currency) != (
            transfer.debit,
            transfer.credit,
            transfer.currency,
        ):
            raise ReplayError(f"{name} moves other accounts than its hold at entry {hold.index}")
        if hold.settled + transfer.amount > hold.amount:
            raise ReplayError(
                f"{name} settles {hold.settled + transfer.amount} of the "
                f"{hold.amount} held at entry {hold.index}"
            )
        hold.settled += transfer.amount

    def _account(self, account_id: int, transfer: _Transfer) -> AccountCounters:
        account = self.accounts.setdefault(account_id, AccountCounters(transfer.currency))
        if account.currency != transfer.currency:
            raise ReplayError(
                f"entry {transfer.index} moves {transfer.currency} through account "
                f"{account_id}, which holds {account.currency}"
            )
        return account


@dataclass(frozen=True, slots=True)
class _Transfer:
    index: int
    id: int
    kind: str
    currency: str
    debit: int
    credit: int
    amount: int
    pending: bool
    pending_id: int | None

    @classmethod
    def parse(cls, index: int, event_type: str, data: object) -> _Transfer:
        kind = event_type.removeprefix(LEDGER_PREFIX)
        if event_type not in TRANSFER_TYPES or not isinstance(data, dict):
            raise ReplayError(f"entry {index} is {event_type!r}, not a ledger transfer")
        transfer = cls(
            index=index,
            id=_integer(index, data, "id"),
            kind=kind,
            currency=_text(index, data, "currency"),
            debit=_integer(index, data, "debit_account_id"),
            credit=_integer(index, data, "credit_account_id"),
            amount=_integer(index, data, "amount"),
            pending=data.get("pending") is True,
            pending_id=_optional_integer(index, data, "pending_id"),
        )
        transfer.check(data)
        return transfer

    def check(self, data: Mapping[str, Any]) -> None:
        name = f"entry {self.index} ({self.kind} transfer {self.id})"
        if data.get("kind") != self.kind:
            raise ReplayError(f"{name} says kind {data.get('kind')!r} in its data")
        if self.amount <= 0:
            raise ReplayError(f"{name} moves {self.amount}, not a positive amount")
        if self.debit == self.credit:
            raise ReplayError(f"{name} debits and credits the same account")
        if self.pending != (self.kind == "hold"):
            raise ReplayError(f"{name} has pending={self.pending}")
        if (self.pending_id is not None) != (self.kind in SETTLING):
            raise ReplayError(f"{name} has pending_id={self.pending_id}")


def _document(index: int, entry: bytes) -> dict[str, Any]:
    try:
        document = _DECODE(entry.decode("utf-8"))
    except (ValueError, RecursionError):  # RecursionError: nested too deep to parse
        raise ReplayError(f"entry {index} is not JSON") from None
    if not isinstance(document, dict):
        raise ReplayError(f"entry {index} is not a JSON object")
    return document


def _integer(index: int, data: Mapping[str, Any], name: str) -> int:
    value = data.get(name)
    if type(value) is not int:
        raise ReplayError(f"entry {index}: {name} is {value!r}, not an integer")
    return value


def _optional_integer(index: int, data: Mapping[str, Any], name: str) -> int | None:
    return None if data.get(name) is None else _integer(index, data, name)


def _text(index: int, data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise ReplayError(f"entry {index}: {name} is {value!r}, not a text")
    return value


def replay(entries: Iterable[bytes]) -> Replay:
    """The accounts after every ledger entry of ``entries``, in log order."""
    result = Replay()
    for index, entry in enumerate(entries):
        result.feed(index, entry)
    return result


def compare_balances(
    replayed: Replay, published: Sequence[Mapping[str, Any]], *, complete: bool
) -> list[str]:
    """How the published accounts differ from the replay, one line per counter.

    ``complete``: the published list claims every account, so an account the
    replay moved but the list lacks is a difference too.
    """
    problems: list[str] = []
    seen: set[int] = set()
    for row in published:
        account_id = _account_id(row)
        seen.add(account_id)
        account = replayed.accounts.get(account_id, AccountCounters(str(row.get("currency"))))
        if row.get("currency") != account.currency and replayed.accounts.get(account_id):
            problems.append(
                f"account {account_id}: published in {row.get('currency')}, "
                f"the log moves {account.currency}"
            )
        for counter in COUNTERS:
            problems += _difference(account_id, counter, getattr(account, counter), row[counter])
    if complete:
        problems += [
            f"account {account_id}: the log moves it ({account.as_dict()}), "
            "the published balances lack it"
            for account_id, account in sorted(replayed.accounts.items())
            if account_id not in seen and any(account.as_dict().values())
        ]
    return problems


def _account_id(row: Mapping[str, Any]) -> int:
    # An integer as JSON gives it: int() would take "7" or 1.5, and fail on 1e400.
    value = row["account_id"]
    if type(value) is not int:
        raise ReplayError(f"a published account_id is {value!r}, not an integer")
    return value


def _difference(account_id: int, counter: str, replayed: int, published: object) -> list[str]:
    if type(published) is not int:
        return [f"account {account_id}: published {counter} {published!r} is not an integer"]
    if published == replayed:
        return []
    delta = published - replayed
    return [
        f"account {account_id}: {counter} published {published}, the log gives {replayed} "
        f"(published is {abs(delta)} {'more' if delta > 0 else 'less'})"
    ]
