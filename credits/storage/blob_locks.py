"""A blob's lock: what keeps a blob that rows name from being deleted.

Storage sits outside the database's transactions, so two writers can race on one
blob: one deleting the bytes because no row names them, the other about to add a
row that does. Both hold the blob's lock, the deleter from its check to the
deletion, the other from its check that the bytes are stored until its row is
committed: the new row is either seen by the check, or finds the bytes gone and is
refused. Datasets, labelling items and proposal attachments take it.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from credits.storage.base import BlobStore
from credits.storage.errors import StorageUnavailable

# The first key of the PostgreSQL advisory locks on blobs (any constant will do: it
# keeps them apart from other locks of two keys); the second comes from the digest.
BLOB_LOCK_SPACE = 0x626C6F62  # "blob"


def lock_blob(session: Session, sha256: str) -> None:
    """The blob's lock, held until the transaction ends: a PostgreSQL advisory lock
    (digests that share one only wait for each other); SQLite's writing transactions
    begin IMMEDIATE and so go one at a time already."""
    if session.get_bind().dialect.name == "postgresql":
        key = int(sha256[:8], 16) - 2**31
        session.execute(
            text("SELECT pg_advisory_xact_lock(:space, :key)"),
            {"space": BLOB_LOCK_SPACE, "key": key},
        )


def hold_blob(session: Session, store: BlobStore, sha256: str) -> None:
    """Takes the blob's lock until the session's transaction ends, and checks that the
    bytes are still stored; call it before adding a row that names the blob.

    Raises StorageUnavailable when a removal deleted the blob since it was stored:
    the bytes must be sent again.
    """
    lock_blob(session, sha256)
    if not store.exists(sha256):
        raise StorageUnavailable(
            "the file's bytes were removed from storage before they could be added; "
            "send the file again"
        )
