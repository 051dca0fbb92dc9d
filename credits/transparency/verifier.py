"""The standalone verifier's checks, each failing with a sentence that names
what is wrong: which entry, which tile, which account.

Only the standard library, ``cryptography`` and this package's pure modules are
imported (no database, no Flask): ``credits-verify`` runs on a funder's laptop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from credits.transparency.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint_text
from credits.transparency.merkle import (
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from credits.transparency.note import NoteError, Verifier, parse_note
from credits.transparency.replay import Replay, ReplayError, compare_balances, replay
from credits.transparency.stores import MemoryTileStore
from credits.transparency.tiles import (
    ENTRIES_LEVEL,
    TILE_WIDTH,
    TileError,
    TileHashSource,
    TileReader,
    append_entries,
    decode_bundle,
    decode_hashes,
    read_entries,
    tile_for,
)


class VerificationFailed(Exception):
    """A check failed; the message says which and why."""


def open_signed_checkpoint(
    data: bytes, verifiers: Sequence[Verifier], origin: str | None = None, *, what: str
) -> Checkpoint:
    """The checkpoint, once a known key's signature verifies (and no known key's fails)."""
    try:
        expected = origin or parse_checkpoint_text(parse_note(data).text).origin
        return open_checkpoint(data, origin=expected, verifiers=verifiers).checkpoint
    except NoteError as error:
        raise VerificationFailed(f"{what}: {error}") from None


def check_entries(reader: TileReader, checkpoint: Checkpoint) -> list[bytes]:
    """Every entry of the log, each matching its leaf hash in the level-0 tiles,
    and all of them together the checkpoint's root."""
    size, entries, hashes = checkpoint.size, [], []
    for bundle in range((size + TILE_WIDTH - 1) // TILE_WIDTH):
        found, tile_hashes = _bundle_and_hashes(reader, size, bundle)
        _match_bundle(bundle * TILE_WIDTH, found, tile_hashes, tile_for(size, 0, bundle).path())
        entries += found
        hashes += [leaf_hash(entry) for entry in found]
    root = root_from_leaf_hashes(hashes)
    if root != checkpoint.root_hash:
        raise VerificationFailed(
            f"the {size} entries hash to root {root.hex()}, "
            f"the checkpoint says {checkpoint.root_hash.hex()}"
        )
    return entries


def _bundle_and_hashes(
    reader: TileReader, size: int, bundle: int
) -> tuple[list[bytes], list[bytes]]:
    entry_tile, hash_tile = tile_for(size, ENTRIES_LEVEL, bundle), tile_for(size, 0, bundle)
    try:
        found = decode_bundle(reader.read(entry_tile.path()))
        tile_hashes = decode_hashes(reader.read(hash_tile.path()))
    except TileError as error:
        raise VerificationFailed(str(error)) from None
    if len(tile_hashes) != hash_tile.width:
        raise VerificationFailed(
            f"{hash_tile.path()} holds {len(tile_hashes)} hashes, not {hash_tile.width}"
        )
    return found, tile_hashes


def _match_bundle(first: int, found: list[bytes], hashes: list[bytes], tile_path: str) -> None:
    """Names the first entry that is missing, forged or extra in one bundle."""
    for offset, expected in enumerate(hashes):
        if offset >= len(found):
            raise VerificationFailed(f"entry {first + offset} is missing from the log")
        if leaf_hash(found[offset]) == expected:
            continue
        if offset + 1 < len(hashes) and leaf_hash(found[offset]) == hashes[offset + 1]:
            raise VerificationFailed(f"entry {first + offset} is missing from the log")
        raise VerificationFailed(
            f"entry {first + offset} is forged or altered: its leaf hash is not the one "
            f"in {tile_path}"
        )
    if len(found) > len(hashes):
        raise VerificationFailed(f"entry {first + len(hashes)} is extra: no tile hash names it")


def check_tiles(reader: TileReader, entries: Sequence[bytes]) -> int:
    """Every tile at the log's size is what the entries give; how many were read."""
    files = append_entries(MemoryTileStore(), 0, entries)
    for file in files:
        try:
            stored = reader.read(file.path)
        except TileError as error:
            raise VerificationFailed(str(error)) from None
        if stored != file.data:
            raise VerificationFailed(f"{file.path} differs from the tile its entries give")
    return len(files)


def check_inclusion(reader: TileReader, checkpoint: Checkpoint, index: int) -> bytes:
    """Entry ``index``, once its inclusion proof from the tiles verifies."""
    size = checkpoint.size
    if not 0 <= index < size:
        raise VerificationFailed(f"entry {index} is not in a log of {size} entries")
    try:
        entry = read_entries(reader, size, index, index + 1)[0]
        proof = inclusion_proof(TileHashSource(reader, size), index, size)
    except (TileError, ProofError) as error:
        raise VerificationFailed(f"inclusion of entry {index}: {error}") from None
    if not verify_inclusion(leaf_hash(entry), index, size, proof, checkpoint.root_hash):
        raise VerificationFailed(
            f"entry {index}: its inclusion proof does not verify against the root at size {size}"
        )
    return entry


def check_consistency(reader: TileReader, old: Checkpoint, new: Checkpoint) -> None:
    """The newer checkpoint's tree extends the older one's; refuses a rollback or
    a split view by name."""
    check_growth(old, new)
    try:
        proof = consistency_proof(TileHashSource(reader, new.size), old.size, new.size)
    except (TileError, ProofError) as error:
        raise VerificationFailed(f"consistency from size {old.size}: {error}") from None
    if not verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash):
        raise VerificationFailed(
            f"SPLIT VIEW: the tree of size {new.size} (root {new.root_hash.hex()}) does not "
            f"extend the tree of size {old.size} (root {old.root_hash.hex()})"
        )


def check_growth(old: Checkpoint, new: Checkpoint) -> None:
    """What can be told without a proof: same log, never smaller, one root per size."""
    if old.origin != new.origin:
        raise VerificationFailed(f"the checkpoints are of {old.origin!r} and {new.origin!r}")
    if new.size < old.size:
        raise VerificationFailed(
            f"ROLLBACK: the log is at size {new.size} (root {new.root_hash.hex()}), "
            f"smaller than size {old.size} seen before (root {old.root_hash.hex()})"
        )
    if new.size == old.size and new.root_hash != old.root_hash:
        raise VerificationFailed(
            f"SPLIT VIEW: two roots at size {new.size}: {old.root_hash.hex()} seen before, "
            f"{new.root_hash.hex()} now"
        )


def check_balances(entries: Sequence[bytes], published: Any, *, complete: bool) -> Replay:
    """The replay of every ledger entry, once it gives the published balances."""
    try:
        replayed = replay(entries)
    except ReplayError as error:
        raise VerificationFailed(str(error)) from None
    accounts = published.get("accounts") if isinstance(published, dict) else None
    if not isinstance(accounts, list) or not all(isinstance(row, dict) for row in accounts):
        raise VerificationFailed("the published balances are not a balances document")
    try:
        problems = compare_balances(replayed, accounts, complete=complete)
    except KeyError as error:
        raise VerificationFailed(f"the published balances lack a field: {error}") from None
    except (TypeError, ValueError) as error:
        raise VerificationFailed(f"the published balances are malformed: {error}") from None
    if problems:
        raise VerificationFailed("balances differ:\n  " + "\n  ".join(problems))
    return replayed
