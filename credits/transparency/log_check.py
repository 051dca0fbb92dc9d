"""``credits transparency verify``: the database, the tiles and the latest signed
checkpoint must tell one story.

From the audit rows alone (their ``canonical_json``, in log-index order, as
:func:`~credits.transparency.entries.published_entry` publishes it) it
recomputes every leaf hash and the tree root, and compares them with the stored
entry bundles and level-0 tiles, the root the tiles give, and the latest
checkpoint's root and signature. A row rewritten together with its stored leaf
hash still fails: its entry no longer matches the bundle, and the root it gives
no longer matches the signed checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.audit.models import AuditEvent
from credits.audit.service import leaf_hash as stored_leaf_hash
from credits.settings import Settings
from credits.transparency.checkpoint import open_checkpoint
from credits.transparency.entries import published_entry
from credits.transparency.merkle import leaf_hash, root_from_leaf_hashes, tree_root
from credits.transparency.note import NoteError, parse_verifier_key
from credits.transparency.service import latest_checkpoint_row, verifier_keys
from credits.transparency.tiles import (
    ENTRIES_LEVEL,
    TILE_WIDTH,
    TileError,
    TileHashSource,
    TileReader,
    read_tile,
    tile_for,
)


@dataclass(frozen=True)
class LogCheck:
    """The verdict: ``problem`` names the first mismatch, None when all agree."""

    size: int
    root_hash: str | None
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def check_log(session: Session, settings: Settings, store: TileReader) -> LogCheck:
    latest = latest_checkpoint_row(session)
    if latest is None:
        problem = (
            "audit rows have log indexes but no checkpoint" if _has_indexed_rows(session) else None
        )
        return LogCheck(0, None, problem)
    verifiers = [parse_verifier_key(key) for key in verifier_keys(settings)]
    try:
        signed = open_checkpoint(
            latest.note.encode(), origin=settings.log_origin, verifiers=verifiers
        ).checkpoint
    except NoteError as error:
        return LogCheck(latest.size, latest.root_hash, f"the latest checkpoint: {error}")
    problem = _compare(session, store, signed.size, signed.root_hash)
    return LogCheck(signed.size, signed.root_hash.hex(), problem)


def _has_indexed_rows(session: Session) -> bool:
    return (
        session.scalar(select(AuditEvent.id).where(AuditEvent.log_index.is_not(None)).limit(1))
        is not None
    )


def _compare(session: Session, store: TileReader, size: int, root: bytes) -> str | None:
    hashes: list[bytes] = []
    if problem := _collect_leaf_hashes(session, store, size, hashes):
        return problem
    if len(hashes) != size:
        return f"the audit rows hold {len(hashes)} log entries; the checkpoint says {size}"
    if root_from_leaf_hashes(hashes) != root:
        return "the root recomputed from the audit rows is not the checkpoint's"
    try:
        if tree_root(TileHashSource(store, size), size) != root:
            return "the root the tiles give is not the checkpoint's"
    except TileError as error:
        return f"the tiles: {error}"
    return None


def _collect_leaf_hashes(
    session: Session, store: TileReader, size: int, hashes: list[bytes]
) -> str | None:
    """Appends each indexed row's leaf hash to ``hashes``, comparing them with the
    tiles one tile at a time; the first mismatch, or None."""
    rows = session.execute(
        select(AuditEvent.id, AuditEvent.log_index, AuditEvent.canonical_json, AuditEvent.leaf_hash)
        .where(AuditEvent.log_index.is_not(None))
        .order_by(AuditEvent.log_index)
        .execution_options(yield_per=TILE_WIDTH)
    )
    row_ids: list[int] = []
    # Entries published before keys were left out of them hold the whole row, and
    # the log is append-only: for those rows, that form's leaf hash is also right.
    whole_rows: dict[int, bytes] = {}
    for row_id, index, canonical, stored in rows:
        if index != len(hashes):
            return f"log index {len(hashes)} is missing from the audit rows (next is {index})"
        if index >= size:
            return f"audit row {row_id} has log index {index}, past the checkpoint's {size}"
        if stored_leaf_hash(canonical) != stored:
            return f"entry {index} (audit row {row_id}): its stored leaf hash is not its JSON's"
        entry, whole = published_entry(canonical), canonical.encode()
        hashes.append(leaf_hash(entry))
        if entry != whole:
            whole_rows[index] = leaf_hash(whole)
        row_ids.append(row_id)
        if (len(hashes) % TILE_WIDTH == 0 or len(hashes) == size) and (
            problem := _compare_tiles(store, size, hashes, row_ids, whole_rows)
        ):
            return problem
    return None


def _compare_tiles(
    store: TileReader,
    size: int,
    hashes: list[bytes],
    row_ids: list[int],
    whole_rows: dict[int, bytes],
) -> str | None:
    """Compares the bundle and level-0 tile holding the last entries in ``hashes``;
    an entry that is its whole row as published before keys were left out (its hash
    in ``whole_rows``) counts, and its hash replaces the one in ``hashes``."""
    number = (len(hashes) - 1) // TILE_WIDTH
    first = number * TILE_WIDTH
    try:
        entries = read_tile(store, tile_for(size, ENTRIES_LEVEL, number))
        tiled = read_tile(store, tile_for(size, 0, number))
    except TileError as error:
        return f"the tiles of entries {first} to {len(hashes) - 1}: {error}"
    for offset in range(len(hashes) - first):
        index = first + offset
        where = f"entry {index} (audit row {row_ids[index]})"
        bundled = leaf_hash(entries[offset])
        if bundled != hashes[index] and bundled == whole_rows.get(index):
            hashes[index] = bundled
        expected = hashes[index]
        if bundled != expected:
            return f"{where}: the audit row is not the stored entry bundle's"
        if tiled[offset] != expected:
            return f"{where}: the audit row's leaf hash is not the stored tile's"
    return None
