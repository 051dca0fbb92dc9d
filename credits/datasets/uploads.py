"""Taking files into a draft: the checks made before a byte is read, attaching a
stored blob, and removing a blob that no file names any more.

Storage sits outside the database's transactions (an upload can take hours), so
these open their own short sessions from a factory around the storage calls.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.datasets import service
from credits.datasets.drafts import editable_draft
from credits.datasets.errors import DuplicateFileName, VersionTooLarge
from credits.datasets.models import DatasetFile
from credits.datasets.schemas import FileOut
from credits.db import session_scope
from credits.identity.actor import Actor
from credits.storage import BlobStore, StoredBlob, duplicate_names


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
    """Adds a stored blob to the draft; a refusal removes the blob unless a file
    holds it."""
    try:
        with session_scope(factory) as session:
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
    """Removes the file from the draft, and its bytes when no other file holds them."""
    with session_scope(factory) as session:
        sha256 = session.scalar(
            select(DatasetFile.sha256).where(
                DatasetFile.version_id == version_id, DatasetFile.name == name
            )
        )
        service.remove_file(session, version_id=version_id, name=name, actor=actor)
    if sha256 is not None:
        forget_blob(factory, store, sha256)


def forget_blob(factory: Callable[[], Session], store: BlobStore, sha256: str) -> None:
    """Removes a blob no file row names (an upload refused after it was stored)."""
    with session_scope(factory) as session:
        held = session.scalar(select(DatasetFile.id).where(DatasetFile.sha256 == sha256).limit(1))
    if held is None:
        store.delete(sha256)
