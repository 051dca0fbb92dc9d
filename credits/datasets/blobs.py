"""What the datasets domain needs of blob storage: a narrow seam over ``credits.storage``.

Services take these Protocols, not a concrete store, so that they name the
few calls they make: a stored blob's address and size when a file is added,
and existence, size, re-hashing and the first bytes of a blob when files are
checked or described. :class:`credits.storage.BlobStore` satisfies both.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class BlobRef(Protocol):
    """A stored blob: its sha256 (64 lowercase hex digits) and its size in bytes."""

    @property
    def sha256(self) -> str: ...

    @property
    def size(self) -> int: ...


class BlobReader(Protocol):
    def exists(self, sha256: str) -> bool: ...

    def size(self, sha256: str) -> int: ...

    def verify(self, sha256: str) -> bool:
        """True when the stored bytes still hash to ``sha256``."""
        ...

    def open_range(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes from ``start`` up to ``end`` (exclusive; None: the end), in chunks."""
        ...


def read_head(store: BlobReader, sha256: str, limit: int) -> bytes:
    """At most ``limit`` bytes from the start of a blob (the stream is closed early)."""
    chunks: list[bytes] = []
    taken = 0
    # Ask for the head only: an S3 store reads ahead in large ranges otherwise.
    stream = store.open_range(sha256, 0, limit)
    try:
        for chunk in stream:
            chunks.append(chunk[: limit - taken])
            taken += len(chunks[-1])
            if taken >= limit:
                break
    finally:
        close = getattr(stream, "close", None)
        if callable(close):
            close()
    return b"".join(chunks)
