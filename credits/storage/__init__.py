"""Content-addressed blob storage: a local folder, S3, or memory (tests).

See docs/storage.md. The datasets domain stores every file through a
:class:`BlobStore` from :func:`blob_store_from_settings`.
"""

from credits.storage.base import (
    MAX_PARTS,
    PART_SIZE,
    BlobStore,
    StoredBlob,
    blob_key,
    content_disposition,
)
from credits.storage.errors import (
    BlobNotFound,
    BlobTooLarge,
    IncompleteUpload,
    InvalidDigest,
    InvalidPart,
    InvalidRange,
    StorageError,
    StorageUnavailable,
    UnsafeFileName,
    UploadNotFound,
)
from credits.storage.factory import S3Options, blob_store_for_url, blob_store_from_settings
from credits.storage.names import duplicate_names, safe_file_name

__all__ = [
    "MAX_PARTS",
    "PART_SIZE",
    "BlobNotFound",
    "BlobStore",
    "BlobTooLarge",
    "IncompleteUpload",
    "InvalidDigest",
    "InvalidPart",
    "InvalidRange",
    "S3Options",
    "StorageError",
    "StorageUnavailable",
    "StoredBlob",
    "UnsafeFileName",
    "UploadNotFound",
    "blob_key",
    "blob_store_for_url",
    "blob_store_from_settings",
    "content_disposition",
    "duplicate_names",
    "safe_file_name",
]
