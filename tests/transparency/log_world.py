"""A seeded program and its transparency log written to a folder, as
``credits-verify download`` would leave it. A plain module imported by name."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from proposal_helpers import CREDIT, World, awarded, world
from sqlalchemy import func, select, true
from sqlalchemy.orm import Session

from credits.audit.models import AuditEvent
from credits.db import utcnow
from credits.grants.models import Allocation
from credits.identity.actor import Actor
from credits.ledger import service as ledger
from credits.ledger.holds import place_hold
from credits.ledger.models import AccountKind, Currency
from credits.ledger.queries import system_account_id
from credits.ledger.settle import capture, void_hold
from credits.settings import Settings
from credits.transparency.balances import balances_of
from credits.transparency.checkpoint import Checkpoint, sign_checkpoint
from credits.transparency.entries import published_entry
from credits.transparency.merkle import leaf_hash, root_from_leaf_hashes
from credits.transparency.note import Signer, generate_signer
from credits.transparency.service import store_checkpoint, tile_store
from credits.transparency.stores import FolderTileStore, MemoryTileStore
from credits.transparency.tiles import append_entries, write_files

ORIGIN = "credits.example.org/log"
SYSTEM = Actor.system("tests")


@dataclass
class Seeded:
    world: World
    allocation_account_id: int
    expired_account_id: int


def seeded_program(session: Session) -> Seeded:
    """A funded program with an award, three jobs' holds (captured in part and
    voided, captured whole, still open), an ops adjustment each way, and an
    allocation that expired with credits left."""
    w = world(session)
    awarded(session, w, amounts={"gpu": 100 * CREDIT})
    account_id = session.scalars(
        select(Allocation.account_id).where(Allocation.program_id == w.program_id)
    ).one()
    hold = {"currency": "gpu", "actor": SYSTEM, "project_id": w.project_id}
    place_hold(session, key="job-1", amount=10 * CREDIT, **hold)
    capture(session, key="job-1-c1", hold_key="job-1", amount=4 * CREDIT, actor=SYSTEM)
    capture(session, key="job-1-c2", hold_key="job-1", amount=1 * CREDIT, actor=SYSTEM)
    void_hold(session, key="job-1-v", hold_key="job-1", actor=SYSTEM)
    place_hold(session, key="job-2", amount=2 * CREDIT, **hold)
    capture(session, key="job-2-c", hold_key="job-2", amount=2 * CREDIT, actor=SYSTEM)
    place_hold(session, key="job-3", amount=3 * CREDIT, **hold)
    adjust = {"account_id": account_id, "actor": w.ops, "reason": "outage refund"}
    ledger.adjust(session, key="adj-1", amount=3 * CREDIT, **adjust)
    ledger.adjust(session, key="adj-2", amount=-1 * CREDIT, **adjust)
    expired = _expired_allocation(session, w)
    return Seeded(w, account_id, expired)


def _expired_allocation(session: Session, w: World) -> int:
    account = ledger.open_account(
        session,
        code=f"old-allocation-{w.project_id}",
        currency=Currency.GPU,
        project_id=w.project_id,
        expires_at=utcnow() + timedelta(days=1),
        actor=SYSTEM,
    )
    ledger.grant(
        session,
        key=f"old-fund-{w.project_id}",
        from_account_id=account_source(session),
        to_account_id=account.id,
        amount=7 * CREDIT,
        actor=SYSTEM,
    )
    ledger.expire_account(
        session, account_id=account.id, actor=SYSTEM, now=utcnow() + timedelta(days=2)
    )
    return account.id


def account_source(session: Session) -> int:
    return system_account_id(session, AccountKind.SOURCE, Currency.GPU)


def log_entries(session: Session) -> list[bytes]:
    """The audit rows' entries as the integrator publishes them, in log order (id
    order for rows without a log index: one writer, so commit order is id order)."""
    rows = session.scalars(
        select(AuditEvent.canonical_json).order_by(AuditEvent.log_index, AuditEvent.id)
    )
    return [published_entry(row) for row in rows]


def write_log(
    folder: Path, entries: list[bytes], signer: Signer, *, balances: object
) -> Checkpoint:
    """Tiles, bundles, a signed checkpoint and balances.json under ``folder``."""
    write_files(FolderTileStore(folder), append_entries(MemoryTileStore(), 0, entries))
    checkpoint = Checkpoint(
        ORIGIN, len(entries), root_from_leaf_hashes([leaf_hash(e) for e in entries])
    )
    (folder / "checkpoint").write_bytes(sign_checkpoint(checkpoint, [signer]))
    (folder / "balances.json").write_text(json.dumps(balances))
    return checkpoint


def published(session: Session, size: int) -> dict[str, Any]:
    """Every account's balances from the ledger journal, as the API publishes them."""
    return balances_of(session, true(), size=size).model_dump(mode="json")


def seeded_log(session: Session, folder: Path) -> tuple[Signer, list[bytes]]:
    seeded_program(session)
    entries = log_entries(session)
    signer = generate_signer(ORIGIN)
    write_log(folder, entries, signer, balances=published(session, len(entries)))
    return signer, entries


def publish_log(session: Session, settings: Settings, signer: Signer) -> Checkpoint:
    """Gives every audit row without one its log index in id order, writes the new
    tiles to the platform's tile store and stores the signed checkpoint: what the
    integrator does, for tests that run a single writer."""
    size = session.scalar(select(func.count()).where(AuditEvent.log_index.is_not(None))) or 0
    waiting = session.scalars(
        select(AuditEvent).where(AuditEvent.log_index.is_(None)).order_by(AuditEvent.id)
    ).all()
    store = tile_store(settings)
    new = [published_entry(row.canonical_json) for row in waiting]
    write_files(store, append_entries(store, size, new))
    for offset, row in enumerate(waiting):
        row.log_index = size + offset
    session.flush()
    entries = log_entries(session)
    root = root_from_leaf_hashes([leaf_hash(e) for e in entries])
    checkpoint = Checkpoint(settings.log_origin, len(entries), root)
    store_checkpoint(session, sign_checkpoint(checkpoint, [signer]))
    return checkpoint
