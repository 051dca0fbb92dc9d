"""What blob storage refuses; each message is one line a user can act on."""

from __future__ import annotations

from credits.errors import CreditsError


class StorageError(CreditsError):
    """The base of every storage refusal or failure."""

    status = 500
    slug = "storage-error"
    title = "Storage error"


class StorageUnavailable(StorageError):
    """The backend (disk, S3) failed to answer; nothing was stored by the failed call."""

    status = 503
    slug = "storage-unavailable"
    title = "Storage unavailable"


class BlobTooLarge(StorageError):
    """More bytes arrived than the limit allows; the partial upload was removed."""

    status = 413
    slug = "blob-too-large"
    title = "File too large"

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            f"the file is larger than the limit of {max_bytes:,} bytes", max_bytes=max_bytes
        )
        self.max_bytes = max_bytes


class BlobNotFound(StorageError):
    status = 404
    slug = "blob-not-found"
    title = "File not found"

    def __init__(self, sha256: str) -> None:
        super().__init__(f"no stored file has sha256 {sha256}")
        self.sha256 = sha256


class InvalidDigest(StorageError):
    """A content address that is not 64 lowercase hexadecimal digits."""

    status = 422
    slug = "invalid-digest"
    title = "Invalid sha256"

    def __init__(self, value: str) -> None:
        shown = value if len(value) <= 80 else value[:77] + "..."
        super().__init__(f"{shown!r} is not a sha256 digest (64 lowercase hex digits)")


class InvalidRange(StorageError):
    status = 416
    slug = "invalid-range"
    title = "Range not satisfiable"


class UploadNotFound(StorageError):
    """No multipart upload has this id: never started, completed, or aborted."""

    status = 404
    slug = "upload-not-found"
    title = "Upload not found"

    def __init__(self, upload_id: str) -> None:
        shown = upload_id if len(upload_id) <= 80 else upload_id[:77] + "..."
        super().__init__(f"no open upload has id {shown!r}")


class InvalidPart(StorageError):
    """A part with a bad number or size; the upload was aborted and its parts removed."""

    status = 422
    slug = "invalid-part"
    title = "Invalid upload part"


class IncompleteUpload(StorageError):
    """Completing an upload whose parts are not all there; the upload was aborted."""

    status = 422
    slug = "incomplete-upload"
    title = "Incomplete upload"

    def __init__(self, missing: list[int], total: int) -> None:
        shown = ", ".join(str(number) for number in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        super().__init__(
            f"parts {shown}{more} of {total} are missing", missing=missing[:1000], total=total
        )
        self.missing = missing


class UnsafeFileName(StorageError):
    """A dataset file name that could escape a folder, hide its real text, or not fit."""

    status = 422
    slug = "unsafe-file-name"
    title = "Unsafe file name"


class StoredFileDamaged(StorageError):
    """A stored file's bytes are missing or are not what its record says (its size or
    its sha256): never served as if they were. Ops restore it from a backup; ``credits
    datasets verify`` finds every such file."""

    status = 503
    slug = "stored-file-damaged"
    title = "The stored file is damaged"
