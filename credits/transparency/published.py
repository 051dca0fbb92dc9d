"""What the public transparency API answers: entries, proofs, witnesses and
their co-signatures, read from the tile store at a published tree size.

Sizes are checked against the latest signed checkpoint: nothing past it is
served, so every answer can be checked against a checkpoint a reader holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from credits.audit.models import AuditEvent
from credits.db import utcnow
from credits.errors import Forbidden, InvalidInput, NotFound
from credits.transparency.checkpoint import parse_checkpoint_text
from credits.transparency.merkle import (
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    tree_root,
)
from credits.transparency.models import TransparencyCheckpoint, TransparencyCosignature
from credits.transparency.note import NoteError, Signature, parse_note
from credits.transparency.published_schemas import (
    ConsistencyProofOut,
    CosignatureOut,
    CosignIn,
    CosignOut,
    EntriesOut,
    EntryOut,
    InclusionProofOut,
    WitnessesOut,
    WitnessOut,
)
from credits.transparency.service import (
    latest_checkpoint,
    latest_checkpoint_row,
)
from credits.transparency.tiles import (
    ENTRIES_LEVEL,
    TILE_WIDTH,
    Tile,
    TileError,
    TileHashSource,
    TileReader,
    hashes_per_level,
    read_entries,
)
from credits.transparency.witness import CosignerVerifier, parse_cosigner_verifier

MAX_ENTRIES = 1000
T = TypeVar("T")


class NoCheckpoint(NotFound):
    slug = "transparency-no-checkpoint"
    title = "No checkpoint yet"


def published_size(session: Session) -> int:
    """The tree size of the latest signed checkpoint (0 before the first)."""
    row = latest_checkpoint_row(session)
    return 0 if row is None else row.size


def checked_size(session: Session, size: int | None) -> int:
    """``size``, or the latest published size; refuses one not yet published."""
    latest = published_size(session)
    if size is None:
        return latest
    if size > latest:
        raise InvalidInput(f"size {size} is past the latest checkpoint's size {latest}")
    return size


def tile_published(tile: Tile, size: int) -> bool:
    """Whether ``tile`` holds only hashes (or entries) of the tree of ``size``, the
    latest checkpoint's. Past it a tile was never signed: an integrator run that
    failed may have left it, and the next run rewrites it with other rows."""
    count = size if tile.level == ENTRIES_LEVEL else hashes_per_level(size, tile.level)
    return tile.index * TILE_WIDTH + tile.width <= count


def entries(reader: TileReader, size: int, start: int, end: int | None) -> EntriesOut:
    """Entries ``start`` up to ``end`` (exclusive; at most MAX_ENTRIES of them)."""
    stop = min(size, start + MAX_ENTRIES) if end is None else end
    if not 0 <= start <= stop <= size or stop - start > MAX_ENTRIES:
        raise InvalidInput(
            f"entries are asked as 0 ≤ start ≤ end ≤ {size}, at most {MAX_ENTRIES} at a time"
        )
    found = _tiles(lambda: read_entries(reader, size, start, stop))
    return EntriesOut(
        size=size,
        entries=[
            EntryOut(index=start + i, entry=e.decode(), leaf_hash=leaf_hash(e).hex())
            for i, e in enumerate(found)
        ],
    )


def inclusion(reader: TileReader, size: int, index: int) -> InclusionProofOut:
    if not 0 <= index < size:
        raise InvalidInput(f"entry {index} is not in the tree of size {size}")
    source = TileHashSource(reader, size)
    proof = _tiles(lambda: inclusion_proof(source, index, size))
    return InclusionProofOut(
        index=index,
        size=size,
        leaf_hash=_tiles(lambda: source.hash_at(0, index)).hex(),
        root_hash=_tiles(lambda: tree_root(source, size)).hex(),
        proof=[h.hex() for h in proof],
    )


def consistency(reader: TileReader, size1: int, size2: int) -> ConsistencyProofOut:
    if not 0 <= size1 <= size2:
        raise InvalidInput(f"no consistency proof from size {size1} to size {size2}")
    source = TileHashSource(reader, size2)
    proof = _tiles(lambda: consistency_proof(source, size1, size2))
    return ConsistencyProofOut(
        size1=size1,
        size2=size2,
        root1=_tiles(lambda: tree_root(source, size1)).hex(),
        root2=_tiles(lambda: tree_root(source, size2)).hex(),
        proof=[h.hex() for h in proof],
    )


def _tiles(read: Callable[[], T]) -> T:
    try:
        return read()
    except (TileError, ProofError) as error:
        # The checkpoint row names a size whose tiles are not all there yet (the
        # integrator writes tiles before the row, so this is a broken store).
        raise NotFound(f"the log's tiles cannot answer: {error}") from None


def log_index_of(
    session: Session, *, event_type: str, subject_type: str, subject_id: str
) -> int | None:
    """The log index of an event about a subject (its first such event), once it
    is in a published checkpoint; None before."""
    index = session.scalar(
        select(AuditEvent.log_index)
        .where(
            AuditEvent.event_type == event_type,
            AuditEvent.subject_type == subject_type,
            AuditEvent.subject_id == subject_id,
            AuditEvent.log_index.is_not(None),
        )
        .order_by(AuditEvent.log_index)
        .limit(1)
    )
    return index if index is not None and index < published_size(session) else None


# Witnesses.


def cosigned_checkpoint(session: Session) -> bytes | None:
    """The latest signed checkpoint with the co-signature lines witnesses handed in
    for its size (a reader's note parser skips the signatures of keys it lacks)."""
    note = latest_checkpoint(session)
    if note is None:
        return None
    size = published_size(session)
    lines = session.scalars(
        select(TransparencyCosignature.signature)
        .where(TransparencyCosignature.size == size)
        .order_by(TransparencyCosignature.witness, TransparencyCosignature.key_id)
    )
    return note + "".join(f"{line}\n" for line in lines).encode()


def witnesses(session: Session) -> WitnessesOut:
    """Each witness's latest co-signed size, and the latest checkpoint's co-signatures."""
    rows = session.execute(
        select(
            TransparencyCosignature.witness,
            TransparencyCosignature.key_id,
            func.max(TransparencyCosignature.size),
            func.max(TransparencyCosignature.received_at),
        )
        .group_by(TransparencyCosignature.witness, TransparencyCosignature.key_id)
        .order_by(TransparencyCosignature.witness, TransparencyCosignature.key_id)
    ).all()
    latest = published_size(session)
    cosignatures = session.scalars(
        select(TransparencyCosignature)
        .where(TransparencyCosignature.size == latest)
        .order_by(TransparencyCosignature.witness, TransparencyCosignature.key_id)
    )
    return WitnessesOut(
        witnesses=[
            WitnessOut(witness=w, key_id=k, last_size=s, last_at=at) for w, k, s, at in rows
        ],
        cosignatures=[
            CosignatureOut(
                witness=row.witness,
                key_id=row.key_id,
                size=row.size,
                signature=row.signature,
                received_at=row.received_at,
            )
            for row in cosignatures
        ],
    )


def accept_cosignature(
    session: Session, submitted: CosignIn, witness_keys: Sequence[str]
) -> CosignOut:
    """Stores a configured witness's co-signature of a checkpoint this log signed.

    Raises Forbidden for a key not configured, InvalidInput for a signature
    that does not verify or a checkpoint the log never published.
    """
    verifier = _configured(submitted.key, witness_keys)
    text, size = _published_checkpoint(session, submitted.checkpoint)
    signature = _one_signature(text, submitted.signature)
    if verifier.timestamp_of(text, signature) is None:
        raise InvalidInput("the co-signature does not verify for this checkpoint and key")
    key_id = verifier.key_id.hex()
    existing = session.scalar(
        select(TransparencyCosignature).where(
            TransparencyCosignature.witness == verifier.name,
            TransparencyCosignature.key_id == key_id,
            TransparencyCosignature.size == size,
        )
    )
    out = CosignOut(witness=verifier.name, key_id=key_id, size=size, stored=False)
    if existing is not None:
        return out
    try:
        with session.begin_nested():
            session.add(
                TransparencyCosignature(
                    witness=verifier.name,
                    key_id=key_id,
                    size=size,
                    # Written anew from what was verified: the line is served with the
                    # checkpoint, so nothing the witness sent beyond it may be.
                    signature=signature.line().rstrip("\n"),
                    received_at=utcnow(),
                )
            )
    except IntegrityError:
        return out  # the same witness's round raced itself: one row is enough
    return out.model_copy(update={"stored": True})


def _one_signature(text: str, submitted: str) -> Signature:
    """The one signature line ``submitted`` holds; more lines are refused, as any
    would be served after the checkpoint unchecked."""
    line = submitted.strip()
    if "\n" in line or "\r" in line:
        raise InvalidInput("the co-signature is one signature line")
    try:
        (signature,) = parse_note(f"{text}\n{line}\n".encode()).signatures
    except NoteError as error:
        raise InvalidInput(f"the co-signature line is malformed: {error}") from None
    return signature


def _configured(key: str, witness_keys: Sequence[str]) -> CosignerVerifier:
    try:
        verifier = parse_cosigner_verifier(key)
    except NoteError as error:
        raise InvalidInput(f"the witness key is malformed: {error}") from None
    if verifier.key_string() not in {k.strip() for k in witness_keys}:
        raise Forbidden(f"witness {verifier.name} is not one of this log's witnesses")
    return verifier


def _published_checkpoint(session: Session, note: str) -> tuple[str, int]:
    """The text and size of the checkpoint ``note`` as this log signed it: its
    origin, size, root and extension lines all those of a stored checkpoint."""
    try:
        submitted = parse_note(note.encode()).text
        checkpoint = parse_checkpoint_text(submitted)
    except NoteError as error:
        raise InvalidInput(f"the checkpoint is malformed: {error}") from None
    stored = session.scalars(
        select(TransparencyCheckpoint.note).where(
            TransparencyCheckpoint.size == checkpoint.size,
            TransparencyCheckpoint.root_hash == checkpoint.root_hash.hex(),
        )
    )
    # A size is signed again after a key rotation: the same text under another key.
    if not any(parse_note(row.encode()).text == submitted for row in stored):
        raise InvalidInput(
            f"this log never published this checkpoint of size {checkpoint.size}"
            " (its origin, root or other lines differ)"
        )
    return submitted, checkpoint.size
