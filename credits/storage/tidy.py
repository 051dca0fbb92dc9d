"""Removing what crashes and abandoned clients left in the blob store.

A multipart upload that was never completed or abandoned keeps its parts (and,
on S3, an open multipart upload S3 bills for), and a crash mid-write leaves a
temporary object. The embedded chores and Celery beat call this hourly.
"""

from __future__ import annotations

from credits.settings import Settings
from credits.storage.factory import blob_store_from_settings
from credits.storage.fs_store import FsspecBlobStore

# An upload is given a day: long enough for a large file over a slow link.
STALE_AFTER_S = 86_400.0


def remove_stale_uploads(settings: Settings, *, older_than_s: float = STALE_AFTER_S) -> int:
    """Removes uploads and temporary objects started over ``older_than_s`` ago;
    returns how many."""
    store = blob_store_from_settings(settings)
    if not isinstance(store, FsspecBlobStore):
        return 0
    return store.remove_stale(older_than_s=older_than_s)
