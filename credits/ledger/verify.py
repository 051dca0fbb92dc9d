"""``credits ledger verify``: the cached counters and hold rows against the journal.

Checks, each reported by name on failure:
- every account's four counters equal the sums of its transfers;
- posted and pending debits equal credits, per currency;
- no account flagged ``no_overdraft`` is below zero;
- every hold part equals its pending transfer, and its captured and voided
  amounts equal the transfers that settled it, never above the hold;
- every capture and void names a hold with the same accounts;
- a hold is pending, a capture or void names its hold, nothing else does;
- every transfer has exactly one audit event that says what its row says,
  every such event names a transfer, and every audit leaf hash matches.

Run it inside one snapshot (``cli_transaction(snapshot=True)``) so that
commits landing between its queries cannot show up as mismatches.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Row, Table, func, select
from sqlalchemy.orm import Session

from credits.audit.models import AuditEvent
from credits.audit.service import find_leaf_mismatches
from credits.ledger.journal import ACCOUNTS, POSTED_KINDS, TRANSFERS, available
from credits.ledger.models import HoldPart, HoldStatus, TransferKind
from credits.ledger.schemas import TransferOut, VerifyReport

HOLD_PARTS = cast(Table, HoldPart.__table__)
SETTLING_KINDS = (TransferKind.CAPTURE.value, TransferKind.VOID.value)
COUNTERS = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")


def verify_ledger(session: Session) -> VerifyReport:
    """Recomputes every derived figure from the journal and lists each mismatch."""
    accounts = session.execute(select(ACCOUNTS).order_by(ACCOUNTS.c.id)).all()
    parts = session.execute(select(HOLD_PARTS).order_by(HOLD_PARTS.c.transfer_id)).all()
    transfers = session.scalar(select(func.count()).select_from(TRANSFERS)) or 0
    problems = [
        *_counter_problems(session, accounts),
        *_balance_problems(accounts),
        *_overdraft_problems(accounts),
        *_hold_problems(session, parts),
        *_kind_problems(session),
        *_audit_problems(session),
    ]
    audited = session.scalar(select(func.count()).select_from(AuditEvent)) or 0
    return VerifyReport(
        ok=not problems,
        accounts_checked=len(accounts),
        transfers_checked=transfers,
        hold_parts_checked=len(parts),
        audit_events_checked=audited,
        problems=problems,
    )


def _sums(session: Session, side: Any, kinds: tuple[str, ...]) -> dict[int, int]:
    rows = session.execute(
        select(side, func.sum(TRANSFERS.c.amount)).where(TRANSFERS.c.kind.in_(kinds)).group_by(side)
    ).all()
    return {int(account_id): int(total) for account_id, total in rows}


def _journal_counters(session: Session) -> dict[str, dict[int, int]]:
    debit, credit = TRANSFERS.c.debit_account_id, TRANSFERS.c.credit_account_id
    hold, settled = (
        (TransferKind.HOLD.value,),
        (TransferKind.CAPTURE.value, TransferKind.VOID.value),
    )
    held_d, held_c = _sums(session, debit, hold), _sums(session, credit, hold)
    settled_d, settled_c = _sums(session, debit, settled), _sums(session, credit, settled)
    pending_d: dict[int, int] = defaultdict(int, held_d)
    pending_c: dict[int, int] = defaultdict(int, held_c)
    for account_id, amount in settled_d.items():
        pending_d[account_id] -= amount
    for account_id, amount in settled_c.items():
        pending_c[account_id] -= amount
    return {
        "debits_pending": pending_d,
        "debits_posted": _sums(session, debit, POSTED_KINDS),
        "credits_pending": pending_c,
        "credits_posted": _sums(session, credit, POSTED_KINDS),
    }


def _counter_problems(session: Session, accounts: Sequence[Row[Any]]) -> list[str]:
    journal = _journal_counters(session)
    problems = []
    for account in accounts:
        for counter in COUNTERS:
            expected = journal[counter].get(account.id, 0)
            if getattr(account, counter) != expected:
                problems.append(
                    f"account {account.id} ({account.code}): {counter} is "
                    f"{getattr(account, counter)} but the journal says {expected}"
                )
    return problems


def _balance_problems(accounts: Sequence[Row[Any]]) -> list[str]:
    totals: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTERS, 0))
    for account in accounts:
        for counter in COUNTERS:
            totals[account.currency][counter] += getattr(account, counter)
    problems = []
    for currency, total in sorted(totals.items()):
        for phase in ("posted", "pending"):
            debits, credits = total[f"debits_{phase}"], total[f"credits_{phase}"]
            if debits != credits:
                problems.append(
                    f"currency {currency}: {phase} debits {debits} != {phase} credits {credits}"
                )
    return problems


def _overdraft_problems(accounts: Sequence[Row[Any]]) -> list[str]:
    return [
        f"account {account.id} ({account.code}) is overdrawn: available {available(account)}"
        for account in accounts
        if account.no_overdraft and available(account) < 0
    ]


def _hold_problems(session: Session, parts: Sequence[Row[Any]]) -> list[str]:
    holds = {
        row.id: row
        for row in session.execute(
            select(TRANSFERS).where(TRANSFERS.c.kind == TransferKind.HOLD.value)
        )
    }
    settled: dict[tuple[int, str], int] = defaultdict(int)
    problems = []
    for row in session.execute(select(TRANSFERS).where(TRANSFERS.c.pending_id.is_not(None))):
        settled[(row.pending_id, row.kind)] += row.amount
        hold = holds.get(row.pending_id)
        if hold is None or (hold.debit_account_id, hold.credit_account_id) != (
            row.debit_account_id,
            row.credit_account_id,
        ):
            problems.append(f"transfer {row.id} ({row.kind}) does not match a hold's accounts")
    part_ids = {part.transfer_id for part in parts}
    problems += [f"hold transfer {tid} has no hold part" for tid in holds if tid not in part_ids]
    for part in parts:
        problems += _part_problems(part, holds.get(part.transfer_id), settled)
    return problems


def _part_problems(
    part: Row[Any], hold: Row[Any] | None, settled: dict[tuple[int, str], int]
) -> list[str]:
    name = f"hold {part.hold_key!r} part {part.part}"
    if hold is None:
        return [f"{name} has no pending transfer"]
    captured = settled[(part.transfer_id, TransferKind.CAPTURE.value)]
    voided = settled[(part.transfer_id, TransferKind.VOID.value)]
    problems = []
    # Captures and voids find a hold by its parts' key: a part under another hold's
    # key would move credits between holds with no transfer saying so.
    if (part.amount, part.account_id, part.hold_key, part.part) != (
        hold.amount,
        hold.debit_account_id,
        hold.idempotency_key,
        hold.part,
    ):
        problems.append(f"{name} differs from its pending transfer {hold.id}")
    if (part.captured, part.voided) != (captured, voided):
        problems.append(
            f"{name}: captured/voided {part.captured}/{part.voided} but the journal says "
            f"{captured}/{voided}"
        )
    if captured + voided > hold.amount:
        problems.append(f"{name} settled {captured + voided}, more than its {hold.amount}")
    if part.status != _expected_status(part.amount, captured, voided):
        problems.append(f"{name} is {part.status} with captured {captured}, voided {voided}")
    return problems


def _expected_status(amount: int, captured: int, voided: int) -> str:
    """A void takes all that is left; a capture of the rest closes the part."""
    if voided > 0 and captured + voided == amount:
        return HoldStatus.VOIDED.value
    if voided > 0:
        return "impossible: voided with credits left"
    if captured == amount:
        return HoldStatus.CAPTURED.value
    return HoldStatus.OPEN.value


def _kind_problems(session: Session) -> list[str]:
    """A hold is pending and names no hold; a capture or void names one; others neither."""
    problems = []
    for row in session.execute(select(TRANSFERS).order_by(TRANSFERS.c.id)):
        settles = row.kind in SETTLING_KINDS
        if row.pending != (row.kind == TransferKind.HOLD.value):
            problems.append(f"transfer {row.id} ({row.kind}) has pending={row.pending}")
        if settles != (row.pending_id is not None):
            problems.append(f"transfer {row.id} ({row.kind}) has pending_id={row.pending_id}")
    return problems


def _audit_problems(session: Session) -> list[str]:
    """Each transfer has exactly one event that says what the transfer row says."""
    events: dict[str, list[Row[Any]]] = defaultdict(list)
    for event in session.execute(
        select(AuditEvent.__table__).where(AuditEvent.subject_type == "ledger_transfer")
    ):
        events[event.subject_id].append(event)
    problems = []
    for row in session.execute(select(TRANSFERS).order_by(TRANSFERS.c.id)):
        found = events.pop(str(row.id), [])
        if len(found) != 1:
            problems.append(f"transfer {row.id} has {len(found)} audit events, not 1")
            continue
        if not _event_matches(found[0], row):
            problems.append(f"audit event {found[0].id} does not match transfer {row.id}")
    problems += [
        f"audit event names transfer {subject}, which does not exist" for subject in events
    ]
    problems += [
        f"audit event {mismatch.event_id}: leaf hash does not match its canonical JSON"
        for mismatch in find_leaf_mismatches(session)
    ]
    return problems


def _event_matches(event: Row[Any], transfer: Row[Any]) -> bool:
    expected = TransferOut.model_validate(transfer._mapping).model_dump(
        mode="json", exclude={"created_at", "actor"}
    )
    document: dict[str, Any] = json.loads(event.canonical_json)
    return bool(
        event.event_type == f"ledger.{transfer.kind}"
        and event.actor == transfer.actor
        and document.get("data") == expected
    )
