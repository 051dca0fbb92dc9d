"""Taking files into a draft: the checks made before a byte is read, attaching a
stored blob, and removing a blob that nothing names any more.

Storage sits outside the database's transactions (an upload can take hours), so
these open their own short sessions from a factory around the storage calls.

The blob store is shared: a blob may be named by dataset files and by labelling
items (an image order made from a version's files, or an image uploaded for an
order, shares the blob of the same bytes). A blob is deleted only when no row of
either names it, and the check and the deletion hold the blob's lock
(:mod:`credits.storage.blob_locks`), which a file's attachment takes too: an
upload of the same bytes either names the blob before the check, or finds it gone
and is refused.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.datasets import service
from credits.datasets.drafts import editable_draft
from credits.datasets.errors import DuplicateFileName, VersionTooLarge
from credits.datasets.file_names import stored_name
from credits.datasets.models import DatasetFile
from credits.datasets.schemas import FileOut
from credits.db import session_scope
from credits.identity.actor import Actor
from credits.labelling.models import Item
from credits.storage import BlobStore, StoredBlob, duplicate_names
from credits.storage.blob_locks import hold_blob, lock_blob


def version_too_large(total: int, limit: int) -> VersionTooLarge:
    return VersionTooLarge(
        f"the version's files would come to {total:,} bytes, over the limit of {limit:,}",
        max_bytes=limit,
    )


def admit_file(
    factory: Callable[[], Session],
    *,
    actor: Actor,
    version_id: int,
    name: str,
    size: int | None,
    max_version_bytes: int,
) -> int:
    """Checks that ``name`` may join the draft and that ``size`` bytes (when known)
    fit; returns how many bytes the version may still take."""
    with session_scope(factory) as session:
        version = editable_draft(session, actor, version_id)
        names = [file.name for file in version.files]
        used = sum(file.size for file in version.files)
    if duplicate_names([*names, name]):
        raise DuplicateFileName(f"this version already has a file named {name!r}", name=name)
    room = max(max_version_bytes - used, 0)
    if size is not None and size > room:
        raise version_too_large(used + size, max_version_bytes)
    return room


def attach_blob(
    factory: Callable[[], Session],
    store: BlobStore,
    *,
    actor: Actor,
    version_id: int,
    name: str,
    blob: StoredBlob,
    max_version_bytes: int,
) -> FileOut:
    """Adds a stored blob to the draft; a refusal removes the blob unless something
    else names it. Raises StorageUnavailable (503: send the file again) when the
    blob was deleted after it was stored, before the file could name it."""
    try:
        with session_scope(factory) as session:
            hold_blob(session, store, blob.sha256)
            return service.add_file(
                session,
                version_id=version_id,
                name=name,
                blob=blob,
                actor=actor,
                max_version_bytes=max_version_bytes,
            )
    except BaseException:
        forget_blob(factory, store, blob.sha256)
        raise


def detach_file(
    factory: Callable[[], Session], store: BlobStore, *, actor: Actor, version_id: int, name: str
) -> None:
    """Removes the file from the draft, and its bytes when nothing else names them."""
    with session_scope(factory) as session:
        sha256 = session.scalar(
            select(DatasetFile.sha256).where(
                DatasetFile.version_id == version_id, DatasetFile.name == stored_name(name)
            )
        )
        service.remove_file(session, version_id=version_id, name=name, actor=actor)
    if sha256 is not None:
        forget_blob(factory, store, sha256)


def blob_named(session: Session, sha256: str) -> bool:
    """Whether any row names the blob: a dataset file (of any version) or a labelling
    item."""
    for column in (DatasetFile.sha256, Item.blob_sha256):
        if session.scalar(select(column).where(column == sha256).limit(1)) is not None:
            return True
    return False


def forget_blob(factory: Callable[[], Session], store: BlobStore, sha256: str) -> None:
    """Deletes a blob that nothing names (an upload refused after it was stored, a
    removed file), holding its lock from the check to the deletion."""
    with session_scope(factory) as session:
        lock_blob(session, sha256)
        if not blob_named(session, sha256):
            store.delete(sha256)
