"""Keeping an image order's blobs in the store while the order is being made.

The blob store is shared with datasets (:mod:`credits.datasets.uploads`), which
deletes a blob once nothing names it; an order's items name theirs only once its
transaction commits.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from credits.datasets.models import DatasetFile
from credits.labelling.schemas import ItemIn
from credits.storage import BlobStore, StorageUnavailable
from credits.storage.blob_locks import lock_blob

# Digests per query when an image order looks for the dataset files that name its blobs.
_BLOB_CHUNK = 500


def hold_order_blobs(session: Session, store: BlobStore | None, items: Sequence[ItemIn]) -> None:
    """Keeps each distinct image blob of the order from being deleted until this
    transaction ends, so that a removal of the same bytes elsewhere
    (:func:`credits.datasets.uploads.forget_blob`) either sees the order's items or
    has deleted the bytes before they are held, which refuses the order.

    A blob that a committed dataset file names is held by a share lock on that file's
    row (a deletion of it waits for this transaction, and a removal of another file
    then finds it): every such row was added holding the blob with its bytes present,
    and bytes are deleted only when nothing names them, so their bytes are present
    with no call to the store. Any other blob (an image uploaded for the order) takes
    the blob's lock and is looked for in the store, as :func:`blob_locks.hold_blob` does,
    in digest order so that two orders never deadlock. Row locks, unlike
    PostgreSQL's advisory locks, take no room in the server's shared lock table, so
    an order of many thousand images from a dataset version does not exhaust it.
    """
    wanted = sorted({item.blob_sha256 for item in items if item.blob_sha256 is not None})
    held: set[str] = set()
    for start in range(0, len(wanted), _BLOB_CHUNK):
        chunk = wanted[start : start + _BLOB_CHUNK]
        first_files = (
            select(func.min(DatasetFile.id))
            .where(DatasetFile.sha256.in_(chunk))
            .group_by(DatasetFile.sha256)
        )
        held.update(
            session.scalars(
                select(DatasetFile.sha256)
                .where(DatasetFile.id.in_(first_files))
                .with_for_update(read=True)
            )
        )
    for sha256 in wanted:
        if sha256 in held:
            continue
        # hold_blob, with a refusal that names the image.
        lock_blob(session, sha256)
        if store is not None and not store.exists(sha256):
            named = next(item.external_id for item in items if item.blob_sha256 == sha256)
            raise StorageUnavailable(
                f"the bytes of image {named!r} were removed from storage before the order "
                "could name them; send the images again"
            )
