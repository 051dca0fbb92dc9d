"""Streaming puts, reads, dedupe, limits and verification on every backend.

Each test runs on a local folder, on memory and on a real S3 server, and looks
at everything the store holds afterwards: a refused put leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from s3_server import S3Server

from credits.storage import (
    PART_SIZE,
    BlobNotFound,
    BlobTooLarge,
    InvalidDigest,
    InvalidRange,
    StoredBlob,
    blob_key,
    blob_store_for_url,
)
from credits.storage.base import READ_CHUNK
from credits.storage.fs_store import FsspecBlobStore
from credits.storage.s3_store import PARTS_IN_FLIGHT, S3BlobStore

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def in_chunks(data: bytes, *sizes: int) -> Iterator[bytes]:
    """``data`` cut in chunks of the sizes given, cycling through them."""
    position, index = 0, 0
    while position < len(data):
        size = sizes[index % len(sizes)]
        yield data[position : position + size]
        position += size
        index += 1


def read_all(store: FsspecBlobStore, sha256: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(store.open_range(sha256, start, end))


def test_a_put_round_trips_under_its_sha256(any_blob_store: FsspecBlobStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    blob = any_blob_store.put_stream(in_chunks(data, 1000, 65536, 7), max_bytes=len(data))

    assert blob == StoredBlob(hashlib.sha256(data).hexdigest(), len(data))
    assert any_blob_store.exists(blob.sha256)
    assert any_blob_store.size(blob.sha256) == len(data)
    assert read_all(any_blob_store, blob.sha256) == data
    assert any_blob_store.verify(blob.sha256)
    assert any_blob_store.list_keys() == [blob_key(blob.sha256)]


def test_the_layout_fans_out_by_the_first_hex_digits(any_blob_store: FsspecBlobStore) -> None:
    blob = any_blob_store.put_stream([b"layout"], max_bytes=100)

    sha = blob.sha256
    assert any_blob_store.list_keys() == [f"blobs/sha256/{sha[:2]}/{sha[2:4]}/{sha}"]


def test_a_put_larger_than_a_part_is_stored_whole(any_blob_store: FsspecBlobStore) -> None:
    data = os.urandom(2 * PART_SIZE + 12345)
    blob = any_blob_store.put_stream(in_chunks(data, 1024 * 1024), max_bytes=len(data))

    assert blob.size == len(data)
    assert blob.sha256 == hashlib.sha256(data).hexdigest()
    assert read_all(any_blob_store, blob.sha256) == data
    assert any_blob_store.list_keys() == [blob_key(blob.sha256)]


def test_identical_content_is_stored_once(any_blob_store: FsspecBlobStore) -> None:
    data = os.urandom(100_000)
    first = any_blob_store.put_stream([data], max_bytes=len(data))
    second = any_blob_store.put_stream(in_chunks(data, 333), max_bytes=len(data))
    other = any_blob_store.put_stream([data + b"!"], max_bytes=len(data) + 1)

    assert first == second
    assert other.sha256 != first.sha256
    assert any_blob_store.list_keys() == sorted([blob_key(first.sha256), blob_key(other.sha256)])


def test_concurrent_puts_of_the_same_content_store_one_blob(
    any_blob_store: FsspecBlobStore,
) -> None:
    data = os.urandom(2 * 1024 * 1024)

    def put(_: int) -> StoredBlob:
        return any_blob_store.put_stream(in_chunks(data, 256 * 1024), max_bytes=len(data))

    with ThreadPoolExecutor(max_workers=6) as pool:
        blobs = set(pool.map(put, range(6)))

    assert blobs == {StoredBlob(hashlib.sha256(data).hexdigest(), len(data))}
    assert any_blob_store.list_keys() == [blob_key(hashlib.sha256(data).hexdigest())]
    assert any_blob_store.verify(hashlib.sha256(data).hexdigest())


def test_an_empty_file_is_hashed_and_stored_like_any_other(
    any_blob_store: FsspecBlobStore,
) -> None:
    blob = any_blob_store.put_stream(iter([]), max_bytes=0)
    again = any_blob_store.put_stream([b"", b""], max_bytes=0)

    assert blob == again == StoredBlob(EMPTY_SHA256, 0)
    assert any_blob_store.size(EMPTY_SHA256) == 0
    assert read_all(any_blob_store, EMPTY_SHA256) == b""
    assert any_blob_store.verify(EMPTY_SHA256)
    assert any_blob_store.list_keys() == [blob_key(EMPTY_SHA256)]


def test_exactly_the_limit_is_accepted(any_blob_store: FsspecBlobStore) -> None:
    blob = any_blob_store.put_stream([b"a" * 10, b"b" * 10], max_bytes=20)

    assert blob.size == 20


def test_a_put_over_the_limit_is_refused_at_once_and_leaves_nothing(
    any_blob_store: FsspecBlobStore,
) -> None:
    consumed_past_limit = False

    def chunks() -> Iterator[bytes]:
        nonlocal consumed_past_limit
        yield os.urandom(PART_SIZE + 100)
        yield b"x" * 200  # now 100 bytes over a limit of PART_SIZE + 200
        consumed_past_limit = True
        yield b"never needed"

    with pytest.raises(BlobTooLarge, match=r"limit of 8,388,808 bytes"):
        any_blob_store.put_stream(chunks(), max_bytes=PART_SIZE + 200)

    assert not consumed_past_limit
    assert any_blob_store.list_keys() == []


def test_a_limit_of_zero_refuses_one_byte(any_blob_store: FsspecBlobStore) -> None:
    with pytest.raises(BlobTooLarge):
        any_blob_store.put_stream([b"", b"x"], max_bytes=0)

    assert any_blob_store.list_keys() == []


def test_a_failing_source_leaves_nothing(any_blob_store: FsspecBlobStore) -> None:
    def chunks() -> Iterator[bytes]:
        yield os.urandom(PART_SIZE + 1)
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        any_blob_store.put_stream(chunks(), max_bytes=10 * PART_SIZE)

    assert any_blob_store.list_keys() == []


DATA_SIZE = PART_SIZE + 3 * 1024 * 1024


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (0, None),
        (5, 10),
        (0, 0),
        (7, 7),
        (DATA_SIZE - 1, None),
        (DATA_SIZE, None),
        (PART_SIZE - 10, PART_SIZE + 10),  # across the S3 read windows
        (1, DATA_SIZE - 1),
        (100, DATA_SIZE + 5000),  # an end past the file is cut to it, as HTTP does
    ],
)
def test_range_reads_return_exactly_the_bytes_asked_for(
    any_blob_store: FsspecBlobStore, start: int, end: int | None
) -> None:
    data = os.urandom(DATA_SIZE)
    blob = any_blob_store.put_stream(in_chunks(data, 1024 * 1024), max_bytes=len(data))

    chunks = list(any_blob_store.open_range(blob.sha256, start, end))

    assert b"".join(chunks) == data[start:end]
    assert all(0 < len(chunk) <= READ_CHUNK for chunk in chunks)


@pytest.mark.parametrize(("start", "end"), [(-1, None), (11, None), (11, 20), (6, 5)])
def test_a_range_outside_the_file_is_refused(
    any_blob_store: FsspecBlobStore, start: int, end: int | None
) -> None:
    blob = any_blob_store.put_stream([b"0123456789"], max_bytes=10)

    with pytest.raises(InvalidRange, match="outside a file of 10 bytes"):
        any_blob_store.open_range(blob.sha256, start, end)


def test_a_missing_blob_is_not_found_before_any_byte_is_read(
    any_blob_store: FsspecBlobStore,
) -> None:
    missing = hashlib.sha256(b"never stored").hexdigest()

    assert not any_blob_store.exists(missing)
    with pytest.raises(BlobNotFound, match=missing):
        any_blob_store.open_range(missing)
    with pytest.raises(BlobNotFound):
        any_blob_store.size(missing)
    assert not any_blob_store.verify(missing)


@pytest.mark.parametrize(
    "address",
    ["../../etc/passwd", "A" * 64, "abc", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4/../x"],
)
def test_an_address_that_is_not_a_sha256_is_refused(
    any_blob_store: FsspecBlobStore, address: str
) -> None:
    with pytest.raises(InvalidDigest, match="not a sha256 digest"):
        any_blob_store.exists(address)
    with pytest.raises(InvalidDigest):
        any_blob_store.open_range(address)


def test_verify_finds_a_flipped_byte(any_blob_store: FsspecBlobStore) -> None:
    data = os.urandom(1024 * 1024 + 3)
    blob = any_blob_store.put_stream([data], max_bytes=len(data))
    path = any_blob_store.path(blob_key(blob.sha256))
    corrupt = bytearray(data)
    corrupt[777_777] ^= 0x01
    any_blob_store.fs.pipe_file(path, bytes(corrupt))

    assert not any_blob_store.verify(blob.sha256)


def test_delete_removes_a_blob_once(any_blob_store: FsspecBlobStore) -> None:
    kept = any_blob_store.put_stream([b"kept"], max_bytes=10)
    gone = any_blob_store.put_stream([b"gone"], max_bytes=10)

    assert any_blob_store.delete(gone.sha256)
    assert not any_blob_store.delete(gone.sha256)
    assert not any_blob_store.exists(gone.sha256)
    assert any_blob_store.list_keys() == [blob_key(kept.sha256)]


def test_only_s3_hands_out_download_urls(any_blob_store: FsspecBlobStore) -> None:
    blob = any_blob_store.put_stream([b"served"], max_bytes=10)

    url = any_blob_store.presigned_url(blob.sha256, expires_s=60, filename="a.csv")

    if isinstance(any_blob_store, S3BlobStore):
        assert url is not None
        assert url.startswith("http://127.0.0.1:")
    else:
        assert url is None


@pytest.fixture(params=["file", "s3"])
def disk_or_s3_store(request: pytest.FixtureRequest, tmp_path: Path) -> FsspecBlobStore:
    if request.param == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        return server.fresh_store()
    store = blob_store_for_url(f"file://{tmp_path / 'storage'}")
    assert isinstance(store, FsspecBlobStore)
    return store


@pytest.mark.slow
def test_memory_stays_flat_for_a_large_put(disk_or_s3_store: FsspecBlobStore) -> None:
    size = 160 * 1024 * 1024
    chunk = os.urandom(1024 * 1024)

    def chunks() -> Iterator[bytes]:
        for index in range(size // len(chunk)):
            yield index.to_bytes(8, "big") + chunk[8:]

    tracemalloc.start()
    try:
        blob = disk_or_s3_store.put_stream(chunks(), max_bytes=size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert blob.size == size
    # A few parts at most, whatever the size of the file: on S3 each part in flight
    # is held twice (here and in aiohttp's request), plus the one being cut; a part's
    # worth more for botocore's service models and the caller's chunk.
    bound = (2 * PARTS_IN_FLIGHT + 3) * PART_SIZE
    assert bound < size
    assert peak < bound, f"peak {peak / 2**20:.0f} MiB"
