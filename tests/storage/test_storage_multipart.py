"""Resumable multipart uploads on every backend: resume, retry, and each refusal
that ends an upload with nothing left behind."""

from __future__ import annotations

import hashlib
import os

import pytest

from credits.storage import (
    PART_SIZE,
    BlobTooLarge,
    IncompleteUpload,
    InvalidPart,
    StoredBlob,
    UploadNotFound,
    blob_key,
)
from credits.storage.fs_store import FsspecBlobStore


def parts_of(data: bytes) -> list[bytes]:
    return [data[offset : offset + PART_SIZE] for offset in range(0, len(data), PART_SIZE)]


def test_parts_sent_out_of_order_and_resent_assemble_into_one_blob(
    any_blob_store: FsspecBlobStore,
) -> None:
    data = os.urandom(2 * PART_SIZE + 4321)
    first, second, third = parts_of(data)
    upload = any_blob_store.start_upload(max_bytes=len(data))

    any_blob_store.put_part(upload, 3, third)
    any_blob_store.put_part(upload, 1, b"\0" * PART_SIZE)  # a broken send, later redone
    assert any_blob_store.missing_parts(upload, 3) == [2]
    # The client went away; back, it asks what is missing and sends only that.
    any_blob_store.put_part(upload, 1, first)
    any_blob_store.put_part(upload, 2, second)
    assert any_blob_store.missing_parts(upload, 3) == []

    blob = any_blob_store.complete_upload(upload, 3)

    assert blob == StoredBlob(hashlib.sha256(data).hexdigest(), len(data))
    assert b"".join(any_blob_store.open_range(blob.sha256)) == data
    assert any_blob_store.list_keys() == [blob_key(blob.sha256)]
    with pytest.raises(UploadNotFound):
        any_blob_store.missing_parts(upload, 3)


def test_an_upload_of_content_already_stored_is_stored_once(
    any_blob_store: FsspecBlobStore,
) -> None:
    data = os.urandom(PART_SIZE + 10)
    streamed = any_blob_store.put_stream([data], max_bytes=len(data))
    upload = any_blob_store.start_upload(max_bytes=len(data))
    for number, part in enumerate(parts_of(data), start=1):
        any_blob_store.put_part(upload, number, part)

    assert any_blob_store.complete_upload(upload, 2) == streamed
    assert any_blob_store.list_keys() == [blob_key(streamed.sha256)]


def test_a_single_small_part_and_a_single_empty_part_are_whole_files(
    any_blob_store: FsspecBlobStore,
) -> None:
    small = any_blob_store.start_upload(max_bytes=4)
    any_blob_store.put_part(small, 1, b"tiny")
    empty = any_blob_store.start_upload(max_bytes=0)
    any_blob_store.put_part(empty, 1, b"")

    assert any_blob_store.complete_upload(small, 1).sha256 == hashlib.sha256(b"tiny").hexdigest()
    assert any_blob_store.complete_upload(empty, 1) == StoredBlob(hashlib.sha256().hexdigest(), 0)


def test_completing_with_a_missing_part_names_it_and_leaves_nothing(
    any_blob_store: FsspecBlobStore,
) -> None:
    upload = any_blob_store.start_upload(max_bytes=3 * PART_SIZE)
    any_blob_store.put_part(upload, 1, os.urandom(PART_SIZE))
    any_blob_store.put_part(upload, 3, b"end")

    with pytest.raises(IncompleteUpload, match=r"^parts 2 of 3 are missing$") as refused:
        any_blob_store.complete_upload(upload, 3)

    assert refused.value.missing == [2]
    assert any_blob_store.list_keys() == []
    with pytest.raises(UploadNotFound):
        any_blob_store.put_part(upload, 2, os.urandom(PART_SIZE))


def test_parts_short_of_the_declared_size_are_refused_and_leave_nothing(
    any_blob_store: FsspecBlobStore,
) -> None:
    upload = any_blob_store.start_upload(max_bytes=2 * PART_SIZE + 10)
    any_blob_store.put_part(upload, 1, os.urandom(PART_SIZE))
    any_blob_store.put_part(upload, 2, os.urandom(PART_SIZE))
    any_blob_store.put_part(upload, 3, b"cut")  # a proxy cut the last part short

    with pytest.raises(InvalidPart, match="not the 16,777,226 the upload declared"):
        any_blob_store.complete_upload(upload, 3)

    assert any_blob_store.list_keys() == []


@pytest.mark.parametrize("number", [0, -1, 10_001])
def test_a_part_number_out_of_range_ends_the_upload(
    any_blob_store: FsspecBlobStore, number: int
) -> None:
    upload = any_blob_store.start_upload(max_bytes=PART_SIZE)
    any_blob_store.put_part(upload, 1, b"kept until the bad part")

    with pytest.raises(InvalidPart, match=f"part numbers run from 1 to 10000, not {number}"):
        any_blob_store.put_part(upload, number, b"x")

    assert any_blob_store.list_keys() == []


def test_a_part_over_the_part_size_ends_the_upload(any_blob_store: FsspecBlobStore) -> None:
    upload = any_blob_store.start_upload(max_bytes=10 * PART_SIZE)

    with pytest.raises(InvalidPart, match="part 1 holds 8,388,609 bytes, over 8,388,608"):
        any_blob_store.put_part(upload, 1, b"x" * (PART_SIZE + 1))

    assert any_blob_store.list_keys() == []


def test_a_part_past_the_upload_limit_ends_the_upload(any_blob_store: FsspecBlobStore) -> None:
    upload = any_blob_store.start_upload(max_bytes=PART_SIZE + 10)
    any_blob_store.put_part(upload, 1, os.urandom(PART_SIZE))
    any_blob_store.put_part(upload, 2, b"0123456789")

    with pytest.raises(BlobTooLarge, match=r"limit of 8,388,618 bytes"):
        any_blob_store.put_part(upload, 2, b"0123456789A")

    assert any_blob_store.list_keys() == []


def test_a_short_middle_part_is_refused_at_completion(any_blob_store: FsspecBlobStore) -> None:
    upload = any_blob_store.start_upload(max_bytes=3 * PART_SIZE)
    any_blob_store.put_part(upload, 1, b"short")
    any_blob_store.put_part(upload, 2, b"end")

    with pytest.raises(InvalidPart, match="part 1 holds 5 bytes; every part but the last"):
        any_blob_store.complete_upload(upload, 2)

    assert any_blob_store.list_keys() == []


def test_parts_beyond_the_declared_total_are_refused(any_blob_store: FsspecBlobStore) -> None:
    upload = any_blob_store.start_upload(max_bytes=3 * PART_SIZE)
    any_blob_store.put_part(upload, 1, b"whole")
    any_blob_store.put_part(upload, 2, b"stray")

    with pytest.raises(InvalidPart, match="part 2 is beyond the 1 parts declared"):
        any_blob_store.complete_upload(upload, 1)

    assert any_blob_store.list_keys() == []


@pytest.mark.parametrize("total", [0, 10_001])
def test_a_declared_total_out_of_range_is_refused(
    any_blob_store: FsspecBlobStore, total: int
) -> None:
    upload = any_blob_store.start_upload(max_bytes=10)
    any_blob_store.put_part(upload, 1, b"x")

    with pytest.raises(InvalidPart, match=f"1 to 10000 parts, not {total}"):
        any_blob_store.complete_upload(upload, total)

    assert any_blob_store.list_keys() == []


def test_an_aborted_upload_leaves_nothing_and_cannot_be_resumed(
    any_blob_store: FsspecBlobStore,
) -> None:
    upload = any_blob_store.start_upload(max_bytes=2 * PART_SIZE)
    any_blob_store.put_part(upload, 1, os.urandom(PART_SIZE))

    any_blob_store.abort_upload(upload)
    any_blob_store.abort_upload(upload)  # a second abort is harmless

    assert any_blob_store.list_keys() == []
    with pytest.raises(UploadNotFound):
        any_blob_store.complete_upload(upload, 1)


@pytest.mark.parametrize("upload_id", ["0" * 32, "../../blobs", "x"])
def test_an_unknown_upload_is_not_found(any_blob_store: FsspecBlobStore, upload_id: str) -> None:
    with pytest.raises(UploadNotFound, match="no open upload has id"):
        any_blob_store.put_part(upload_id, 1, b"x")
    with pytest.raises(UploadNotFound):
        any_blob_store.missing_parts(upload_id, 1)
    with pytest.raises(UploadNotFound):
        any_blob_store.complete_upload(upload_id, 1)
    any_blob_store.abort_upload(upload_id)


def test_stale_uploads_and_temporaries_are_removed(any_blob_store: FsspecBlobStore) -> None:
    kept = any_blob_store.put_stream([b"kept"], max_bytes=10)
    stale = any_blob_store.start_upload(max_bytes=100)
    any_blob_store.put_part(stale, 1, b"abandoned")
    any_blob_store.fs.pipe_file(any_blob_store.path("tmp/1000-crashed"), b"half a file")

    assert any_blob_store.remove_stale(older_than_s=3600) == 1  # the crashed temporary
    assert any_blob_store.remove_stale(older_than_s=-60) == 1  # now the upload too

    assert any_blob_store.list_keys() == [blob_key(kept.sha256)]
