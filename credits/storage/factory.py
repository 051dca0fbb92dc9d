"""Builds the blob store that ``CREDITS_STORAGE_URL`` names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from credits.storage.base import BlobStore
from credits.storage.fs_store import FsspecBlobStore, LocalBlobStore
from credits.storage.s3_store import S3BlobStore

if TYPE_CHECKING:
    from credits.settings import Settings

# A memory:// URL with no path keeps its blobs here. fsspec's memory file system
# is one per process, so tests give each store a path of its own.
MEMORY_ROOT = "/credits-storage"
# S3-compatible servers (SeaweedFS, MinIO, Ceph) need a region to sign requests
# but ignore its value; AWS itself finds the bucket's region when none is set.
DEFAULT_ENDPOINT_REGION = "us-east-1"


@dataclass(frozen=True)
class S3Options:
    """How to reach S3: empty values fall back to the standard AWS environment
    variables and config files (``AWS_ACCESS_KEY_ID``, ``~/.aws``, roles)."""

    endpoint_url: str = ""
    region: str = ""
    access_key_id: str = ""
    secret_access_key: str = field(default="", repr=False)


def blob_store_from_settings(settings: Settings) -> BlobStore:
    """The store at ``settings.storage_url``, with the settings' S3 options."""
    options = S3Options(
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=settings.s3_secret_access_key.get_secret_value(),
    )
    return blob_store_for_url(settings.storage_url, s3_options=options)


def blob_store_for_url(url: str, *, s3_options: S3Options | None = None) -> BlobStore:
    """The store at ``file:///abs/folder``, ``s3://bucket/prefix`` or ``memory://name``.

    Raises ValueError for any other URL.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        raise ValueError(f"storage URL {url!r} names no scheme (file://, s3://, memory://)")
    if scheme == "file":
        return _local_store(rest)
    if scheme == "memory":
        root = "/" + rest.strip("/") if rest.strip("/") else MEMORY_ROOT
        return FsspecBlobStore(MemoryFileSystem(), root)
    if scheme == "s3":
        return _s3_store(rest, s3_options or S3Options())
    raise ValueError(f"storage URL {url!r}: the scheme must be file, s3 or memory")


def _local_store(path: str) -> BlobStore:
    if not path.startswith("/"):
        raise ValueError(f"a file:// storage URL needs an absolute path, not {path!r}")
    return LocalBlobStore(LocalFileSystem(auto_mkdir=True), path.rstrip("/") or "/")


def _s3_store(rest: str, options: S3Options) -> BlobStore:
    import s3fs  # noqa: PLC0415 - only production needs its dependencies loaded

    root = rest.strip("/")
    if not root:
        raise ValueError("an s3:// storage URL needs a bucket: s3://bucket/prefix")
    if bool(options.access_key_id) != bool(options.secret_access_key):
        raise ValueError("set both the S3 access key id and its secret, or neither")
    client_kwargs: dict[str, Any] = {}
    config_kwargs: dict[str, Any] = {"signature_version": "s3v4"}
    region = options.region
    if options.endpoint_url:
        client_kwargs["endpoint_url"] = options.endpoint_url
        # Servers other than AWS answer on one host: buckets go in the path.
        config_kwargs["s3"] = {"addressing_style": "path"}
        region = region or DEFAULT_ENDPOINT_REGION
    if region:
        client_kwargs["region_name"] = region
    fs = s3fs.S3FileSystem(
        key=options.access_key_id or None,
        secret=options.secret_access_key or None,
        client_kwargs=client_kwargs,
        config_kwargs=config_kwargs,
        # Listings are never cached: another process may have stored a blob since.
        use_listings_cache=False,
        skip_instance_cache=True,
    )
    return S3BlobStore(fs, root)
