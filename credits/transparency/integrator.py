"""The integrator: gives committed audit rows their log index, grows the tiles and
signs a checkpoint, all in one transaction.

Audit ids are taken at INSERT, so ids do not arrive in commit order: a
transaction holding id 7 open can commit after id 8 did. A row is only
*eligible* once no transaction older than it can still commit:

- on PostgreSQL each row holds its writer's ``txid_current()``; a row is
  eligible when that txid is below the ``xmin`` of a snapshot taken first:
  every transaction below ``xmin`` has ended, and what it committed is visible
  to every later statement;
- on SQLite writers are serial (``BEGIN IMMEDIATE``), so every committed row is.

Eligible rows take indexes size, size+1, ... in id order. One integrator runs at
a time (a PostgreSQL advisory lock; SQLite's write lock). Tiles are grown from
the latest checkpoint's size, so a run whose transaction failed after writing
tiles is simply redone: tiles past the latest checkpoint were never signed and
may be replaced.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Table, func, select, text, update
from sqlalchemy.orm import Session

from credits.audit.models import AuditEvent
from credits.db import run_in_transaction, session_scope, utcnow
from credits.settings import Settings
from credits.transparency.checkpoint import Checkpoint, sign_checkpoint
from credits.transparency.entries import published_entry
from credits.transparency.merkle import tree_root
from credits.transparency.note import Signer, parse_note
from credits.transparency.service import (
    latest_checkpoint,
    latest_checkpoint_row,
    load_signer,
    read_checkpoint_file,
    store_checkpoint,
    tile_store,
    write_checkpoint_file,
)
from credits.transparency.tiles import TileHashSource, TileStore, append_entries

logger = logging.getLogger(__name__)

# pg_try_advisory_xact_lock key: "credits transparency integrator".
ADVISORY_LOCK_KEY = 0x63_72_65_64_74_6C_6F_67
BATCH_ROWS = 20_000
_EVENTS = cast(Table, AuditEvent.__table__)


@dataclass(frozen=True)
class Integration:
    """What one run did: rows given an index, the tree size after it, whether it
    signed a checkpoint; ``busy`` when another integrator held the lock.
    ``xmin`` is the PostgreSQL snapshot bound the rows were below."""

    integrated: int
    size: int
    signed: bool
    busy: bool = False
    xmin: int | None = None
    note: bytes | None = None


def integrate(
    session: Session,
    *,
    store: TileStore,
    signer: Signer,
    origin: str,
    limit: int = BATCH_ROWS,
    now: datetime | None = None,
) -> Integration:
    """One integration in the caller's transaction; the caller commits, then
    writes ``note`` (when signed) as the checkpoint file."""
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres and not session.scalar(select(func.pg_try_advisory_xact_lock(ADVISORY_LOCK_KEY))):
        return Integration(integrated=0, size=-1, signed=False, busy=True)
    xmin = _snapshot_xmin(session) if postgres else None
    start = _integrated_size(session)
    integrated = _index_eligible(session, xmin, start=start, limit=limit)
    size = start + integrated
    note = _publish(session, store, signer, origin=origin, size=size, now=now or utcnow())
    return Integration(
        integrated=integrated, size=size, signed=note is not None, xmin=xmin, note=note
    )


def _snapshot_xmin(session: Session) -> int:
    """The oldest transaction still running when this statement's snapshot was
    taken; nothing below it can still commit."""
    return int(session.scalar(text("SELECT txid_snapshot_xmin(txid_current_snapshot())")) or 0)


def _integrated_size(session: Session) -> int:
    highest = session.scalar(select(func.max(AuditEvent.log_index)))
    return 0 if highest is None else int(highest) + 1


def _index_eligible(session: Session, xmin: int | None, *, start: int, limit: int) -> int:
    """Gives the rows that may take the next indexes, in id order, ``start``,
    ``start + 1``, ...: one statement, however many rows. Returns how many."""
    events = _EVENTS.c
    query = select(
        events.id.label("row_id"),
        (func.row_number().over(order_by=events.id) + (start - 1)).label("index"),
    ).where(events.log_index.is_(None))
    if xmin is not None:
        # NULL: rows written before migration 0013, long committed.
        query = query.where(events.txid.is_(None) | (events.txid < xmin))
    eligible = query.order_by(events.id).limit(limit).subquery()
    indexed = session.execute(
        update(_EVENTS).where(events.id == eligible.c.row_id).values(log_index=eligible.c.index)
    )
    return int(cast(CursorResult[Any], indexed).rowcount)


def _publish(
    session: Session,
    store: TileStore,
    signer: Signer,
    *,
    origin: str,
    size: int,
    now: datetime,
) -> bytes | None:
    """Grows the tiles from the latest checkpoint to ``size`` and signs ``size``;
    None when the latest checkpoint already has this size and the current key."""
    latest = latest_checkpoint_row(session)
    signed_from = 0 if latest is None else latest.size
    if latest is not None and size == signed_from and _signed_by(latest.note, signer):
        return None
    if size < signed_from:
        raise RuntimeError(f"the log has {size} entries but a checkpoint of {signed_from} exists")
    _grow_tiles(session, store, signed_from, size)
    root = tree_root(TileHashSource(store, size), size)
    note = sign_checkpoint(Checkpoint(origin, size, root), [signer])
    store_checkpoint(session, note, now=now)
    return note


def _signed_by(note: str, signer: Signer) -> bool:
    key = signer.verifier
    return any(
        s.name == key.name and s.key_id == key.key_id for s in parse_note(note.encode()).signatures
    )


def _grow_tiles(session: Session, store: TileStore, start: int, end: int) -> None:
    """Writes the tiles and bundles of entries ``start`` to ``end``. Every file
    holds some entry at or past ``start``, which no checkpoint covers yet: each is
    written as it is now, replacing what a failed run may have left."""
    if start == end:
        return
    entries = [
        published_entry(canonical)
        for (canonical,) in session.execute(
            select(AuditEvent.canonical_json)
            .where(AuditEvent.log_index >= start, AuditEvent.log_index < end)
            .order_by(AuditEvent.log_index)
        )
    ]
    if len(entries) != end - start:
        raise RuntimeError(f"log indexes {start} to {end} are not gapless")
    for file in append_entries(store, start, entries):
        store.write(file.path, file.data)


def run_integration(
    factory: Callable[[], Session], settings: Settings, *, limit: int = BATCH_ROWS
) -> Integration:
    """One integration in its own transaction, then the checkpoint file.

    Raises KeyMissing or KeyInvalid when no signing key is configured: without
    one, rows would be indexed that no checkpoint covers.
    """
    signer = load_signer(settings)
    store = tile_store(settings)
    result = run_in_transaction(
        factory,
        lambda session: integrate(
            session, store=store, signer=signer, origin=settings.log_origin, limit=limit
        ),
    )
    if not result.busy:
        sync_checkpoint_file(factory, settings)
    if result.integrated:
        logger.info("transparency: integrated %d rows, size %d", result.integrated, result.size)
    return result


def sync_checkpoint_file(factory: Callable[[], Session], settings: Settings) -> None:
    """Makes ``transparency/checkpoint`` the latest checkpoint in the database.

    Read back after the commit rather than taken from the run: two runs in
    different processes may finish in either order, and the file must not go
    back to a smaller tree.
    """
    with session_scope(factory) as session:
        latest = latest_checkpoint(session)
    if latest is not None and read_checkpoint_file(settings) != latest:
        write_checkpoint_file(settings, latest)


def integrate_all(
    factory: Callable[[], Session], settings: Settings, *, max_batches: int = 50
) -> list[Integration]:
    """Integrations until the eligible rows run out (or ``max_batches``)."""
    runs = []
    for _ in range(max_batches):
        result = run_integration(factory, settings)
        runs.append(result)
        if result.busy or result.integrated < BATCH_ROWS:
            break
    return runs


def summary(runs: Sequence[Integration]) -> dict[str, Any]:
    """A task's JSON result: rows integrated and the size reached."""
    sizes = [run.size for run in runs if not run.busy]
    return {
        "integrated": sum(run.integrated for run in runs),
        "size": max(sizes) if sizes else None,
        "busy": any(run.busy for run in runs),
    }
