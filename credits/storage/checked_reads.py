"""Serving a stored file only as the bytes its record names.

A download's headers (its length, its ``ETag``, which is the sha256) come from the
file's record; the bytes come from the store. A blob cut short, overwritten or
lost would otherwise go out under the record's checksum, and clients and caches
would keep it as valid. So the store's size is compared with the record's before
anything is sent, and a whole-file read is hashed as it streams: its last chunk
is held back until the digest matches, so a copy whose bytes changed ends short
of its ``Content-Length`` (the client sees a failed transfer, never a complete
one) and the mismatch is logged for ops.
"""

from __future__ import annotations

import hashlib
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
    chunks = store.open_range(sha256, start, stop)
    if start == 0 and stop == size:
        return _verified(chunks, sha256, name)
    return chunks


def _verified(chunks: Iterator[bytes], sha256: str, name: str) -> Iterator[bytes]:
    digest = hashlib.sha256()
    held: bytes | None = None
    try:
        for chunk in chunks:
            digest.update(chunk)
            if held is not None:
                yield held
            held = chunk
    finally:
        close = getattr(chunks, "close", None)
        if callable(close):
            close()
    if digest.hexdigest() != sha256:
        logger.error("%s: the stored bytes hash to %s, not %s", name, digest.hexdigest(), sha256)
        raise StoredFileDamaged(f"the stored copy of {name} does not match its sha256")
    if held is not None:
        yield held
