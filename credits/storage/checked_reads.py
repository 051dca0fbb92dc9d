"""Serving a stored file only as the bytes its record names.

A download's headers (its length, its ``ETag``, which is the sha256) come from the
file's record; the bytes come from the store. A blob cut short or lost would
otherwise go out under the record's checksum (truncated, or as a 404 as if the
client had asked for nothing), and clients and caches would keep it as valid. So
the store's size is compared with the record's before anything is sent. The
bytes are not hashed on the way: a public download of the largest file allowed
would cost a web worker over a minute of CPU each time. A copy whose bytes changed
at the same size is found by ``credits datasets verify``, which rehashes every
stored copy.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from credits.storage.base import BlobStore
from credits.storage.errors import BlobNotFound, StoredFileDamaged

logger = logging.getLogger(__name__)


def open_checked(
    store: BlobStore, *, sha256: str, size: int, name: str, start: int = 0, stop: int | None = None
) -> Iterator[bytes]:
    """The bytes ``start`` to ``stop`` of the blob recorded as ``sha256`` of ``size``
    bytes. Raises StoredFileDamaged, before anything is read, when the store has no
    such blob or one of another size."""
    stop = size if stop is None else stop
    try:
        stored = store.size(sha256)
    except BlobNotFound:
        logger.error("the stored copy of %s (sha256 %s) is missing", name, sha256)
        raise StoredFileDamaged(
            f"the stored copy of {name} is missing; ops are told, try again later"
        ) from None
    if stored != size:
        logger.error("%s (sha256 %s) is stored as %d bytes, not %d", name, sha256, stored, size)
        raise StoredFileDamaged(
            f"the stored copy of {name} is not the file that was published; ops are told,"
            " try again later"
        )
    return store.open_range(sha256, start, stop)
