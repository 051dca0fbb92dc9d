"""The blob store's contract: what the datasets domain codes against.

Blobs are immutable byte strings addressed by the sha256 of their content,
kept under ``<root>/blobs/sha256/ab/cd/<hex>``. Uploads stream into
``<root>/tmp/`` while they are hashed and move to their address when complete;
resumable multipart uploads keep their parts under ``<root>/uploads/<id>/``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

from credits.storage.errors import InvalidDigest

# Multipart parts are exactly this size except the last (S3 wants at least 5 MiB).
PART_SIZE = 8 * 1024 * 1024
# S3's own limit on parts per upload.
MAX_PARTS = 10_000
# Reads yield chunks of at most this many bytes, and local writes go in blocks of
# this size: a block hashed and then written while still in the CPU's cache makes
# a put several times faster than 1 MiB blocks do.
READ_CHUNK = 256 * 1024
# S3 accepts presigned URLs valid for at most seven days.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """A blob as stored: its content address and length in bytes."""

    sha256: str
    size: int


class BlobStore(Protocol):
    """Content-addressed storage of immutable files (local folder, S3, memory)."""

    def put_stream(self, chunks: Iterable[bytes], *, max_bytes: int) -> StoredBlob:
        """Stores the bytes ``chunks`` yield, at most ``max_bytes`` of them.

        Memory stays flat whatever the size. Identical content is stored once.
        Raises BlobTooLarge as soon as more than ``max_bytes`` arrive, leaving
        nothing behind.
        """
        ...

    def open_range(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes ``start`` to ``end`` (exclusive; None: the end) in chunks.

        ``end`` past the blob's size is cut to it (as HTTP Range does). Raises
        BlobNotFound, or InvalidRange when ``start`` lies past the end, before
        the first chunk is asked for.
        """
        ...

    def size(self, sha256: str) -> int:
        """The blob's length in bytes; raises BlobNotFound."""
        ...

    def exists(self, sha256: str) -> bool: ...

    def delete(self, sha256: str) -> bool:
        """Removes the blob; False when there was none."""
        ...

    def presigned_url(self, sha256: str, *, expires_s: int, filename: str) -> str | None:
        """A short-lived URL that downloads the blob as ``filename`` (S3), or None
        when the backend serves no URLs of its own (local folder, memory)."""
        ...

    def verify(self, sha256: str) -> bool:
        """Whether the stored bytes still hash to ``sha256``; False when missing."""
        ...

    def start_upload(self, *, max_bytes: int) -> str:
        """Opens a resumable multipart upload; returns its id."""
        ...

    def put_part(self, upload_id: str, number: int, data: bytes) -> None:
        """Stores part ``number`` (1-based) of an upload; sending it again replaces it.

        Every part but the last is exactly PART_SIZE bytes. A bad number or
        size (InvalidPart) or bytes past the limit (BlobTooLarge) abort the
        whole upload. Raises UploadNotFound.
        """
        ...

    def missing_parts(self, upload_id: str, total: int) -> list[int]:
        """The numbers among 1..``total`` not stored yet, ascending."""
        ...

    def complete_upload(self, upload_id: str, total: int) -> StoredBlob:
        """Assembles parts 1..``total``, hashing them, into one stored blob.

        The upload ends either way: IncompleteUpload, InvalidPart or
        BlobTooLarge abort it and remove its parts.
        """
        ...

    def abort_upload(self, upload_id: str) -> None:
        """Ends an upload and removes its parts; an unknown id is a no-op."""
        ...


def blob_key(sha256: str) -> str:
    """The blob's path below the store's root: ``blobs/sha256/ab/cd/<hex>``."""
    check_digest(sha256)
    return f"blobs/sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"


def check_digest(sha256: str) -> None:
    if not _SHA256.match(sha256):
        raise InvalidDigest(sha256)


def is_upload_id(upload_id: str) -> bool:
    return bool(_UPLOAD_ID.match(upload_id))


def check_max_bytes(max_bytes: int) -> None:
    if max_bytes < 0:
        raise ValueError(f"max_bytes must be zero or more, not {max_bytes}")


def check_expiry(expires_s: int) -> None:
    if not 1 <= expires_s <= MAX_PRESIGN_SECONDS:
        raise ValueError(f"expires_s must be 1 to {MAX_PRESIGN_SECONDS}, not {expires_s}")


def content_disposition(filename: str) -> str:
    """A Content-Disposition header that downloads as ``filename``'s last part.

    An ASCII fallback for old clients, and the exact name in RFC 5987 form.
    """
    name = filename.rsplit("/", 1)[-1] or "download"
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    fallback = "".join(c if c.isprintable() and c not in '"\\%' else "_" for c in ascii_name)
    if not fallback or fallback.startswith("."):
        fallback = "download" + fallback
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
