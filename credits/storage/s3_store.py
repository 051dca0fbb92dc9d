"""Blob storage in an S3 bucket (AWS, SeaweedFS, MinIO, Ceph) through s3fs.

Where s3fs's file objects would cost memory or time, this talks to S3 through
s3fs's own client and event loop: a streaming put is hashed into a local spool
file and then sent to its address as a real S3 multipart upload with a few parts
in flight; resumable uploads are S3 multipart uploads; reads are ranged GETs
fetched ahead of the reader. ETags are never taken for content hashes: S3 makes
them from parts (``<md5>-<n>``) or encryption, so the sha256 is computed here.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from contextlib import suppress
from pathlib import Path
from typing import Any

from fsspec.implementations.local import LocalFileSystem

from credits.storage.base import (
    PART_SIZE,
    READ_CHUNK,
    StoredBlob,
    blob_key,
    check_digest,
    check_expiry,
    check_max_bytes,
    content_disposition,
)
from credits.storage.errors import StorageUnavailable, UploadNotFound
from credits.storage.fs_store import (
    FsspecBlobStore,
    backend_errors,
    check_assembly,
    stream_into,
)
from credits.storage.sinks import FileSink

# Parts uploaded at once by a streaming put, and ranges fetched ahead by a read:
# each holds PART_SIZE bytes in memory.
PARTS_IN_FLIGHT = 3
RANGES_AHEAD = 2


class S3BlobStore(FsspecBlobStore):
    """Content-addressed blobs under ``bucket/prefix`` of an s3fs file system."""

    def __init__(self, fs: Any, root: str) -> None:
        super().__init__(fs, root)
        self.bucket = self.root.split("/", 1)[0]

    def key_of(self, path: str) -> str:
        """The object key of a full ``bucket/key`` path."""
        return path.split("/", 1)[1]

    def list_keys(self) -> list[str]:
        """Every object below the root, and every multipart upload there not yet
        completed or aborted (as ``<key>?uploadId=<id>``): S3 bills for both."""
        prefix = self.key_of(self.root + "/")
        keys: list[str] = []
        token: dict[str, str] = {}
        while True:
            page = self.call("list_objects_v2", Prefix=prefix, **token)
            keys += [str(item["Key"])[len(prefix) :] for item in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                break
            token = {"ContinuationToken": page["NextContinuationToken"]}
        markers: dict[str, str] = {}
        while True:
            page = self.call("list_multipart_uploads", Prefix=prefix, **markers)
            keys += [
                f"{str(item['Key'])[len(prefix) :]}?uploadId={item['UploadId']}"
                for item in page.get("Uploads", [])
            ]
            if not page.get("IsTruncated"):
                return sorted(keys)
            markers = {
                "KeyMarker": page["NextKeyMarker"],
                "UploadIdMarker": page["NextUploadIdMarker"],
            }

    def call(self, method: str, **kwargs: Any) -> Any:
        """One S3 API call with s3fs's retries. A missing key or upload stays
        FileNotFoundError for the caller; other failures are StorageUnavailable."""
        with backend_errors(f"reach S3 ({method})"):
            return self.fs.call_s3(method, Bucket=self.bucket, **kwargs)

    def submit(self, method: str, **kwargs: Any) -> Future[Any]:
        """The same call started on s3fs's event loop without waiting for it."""
        call = self.fs._call_s3(method, Bucket=self.bucket, **kwargs)
        return asyncio.run_coroutine_threadsafe(call, self.fs.loop)

    def put_stream(self, chunks: Iterable[bytes], *, max_bytes: int) -> StoredBlob:
        """Spools the stream to a local temporary file while hashing it, then uploads
        it straight to its address, or not at all when the address is taken.

        Hashing first means no server-side copy from a temporary key, which on
        S3-compatible servers rewrites every byte; the spool needs free space in
        the temporary folder ($TMPDIR) as large as the file.
        """
        check_max_bytes(max_bytes)
        with tempfile.TemporaryDirectory(prefix="credits-spool-") as folder:
            spool = f"{folder}/blob"
            blob = stream_into(FileSink(LocalFileSystem(), spool), chunks, max_bytes, READ_CHUNK)
            address = self.path(blob_key(blob.sha256))
            with backend_errors("write the file"):
                if not self.fs.exists(address):
                    self._upload_spool(spool, address)
        return blob

    def _upload_spool(self, spool: str, address: str) -> None:
        # The object appears at its address only once whole: one PUT, or a
        # multipart upload that S3 shows only when completed.
        sink = MultipartSink(self, address)
        try:
            with Path(spool).open("rb") as handle:
                while block := handle.read(PART_SIZE):
                    sink.write(block)
            sink.close()
        except BaseException:
            sink.discard()
            raise

    def settle(self, temporary: str, blob: StoredBlob) -> StoredBlob:
        address = self.path(blob_key(blob.sha256))
        try:
            if not self.fs.exists(address):
                # A server-side copy: no byte comes back through this host.
                self.fs.copy(temporary, address)
        except OSError as error:
            raise StorageUnavailable(f"could not store the file: {error}") from error
        finally:
            self.remove_quietly(temporary)
        return blob

    def delete(self, sha256: str) -> bool:
        # DeleteObject succeeds on a missing key: ask first, to answer truly.
        if not self.exists(sha256):
            return False
        self.fs.rm_file(self.path(blob_key(sha256)))
        return True

    def read_range(self, path: str, start: int, stop: int) -> Iterator[bytes]:
        windows = iter(range(start, stop, PART_SIZE))
        pending: deque[Future[bytes]] = deque()

        def fetch_next() -> None:
            offset = next(windows, None)
            if offset is not None:
                end = min(offset + PART_SIZE, stop)
                call = self.fs._cat_file(path, start=offset, end=end)
                pending.append(asyncio.run_coroutine_threadsafe(call, self.fs.loop))

        try:
            for _ in range(RANGES_AHEAD):
                fetch_next()
            while pending:
                window = _result(pending.popleft())
                fetch_next()
                for offset in range(0, len(window), READ_CHUNK):
                    yield window[offset : offset + READ_CHUNK]
        finally:
            for future in pending:
                future.cancel()

    def presigned_url(self, sha256: str, *, expires_s: int, filename: str) -> str | None:
        check_digest(sha256)
        check_expiry(expires_s)
        url: str = self.fs.url(
            self.path(blob_key(sha256)),
            expires=expires_s,
            ResponseContentDisposition=content_disposition(filename),
        )
        return url

    # Resumable uploads: one S3 multipart upload each, its parts S3's parts.

    def start_upload(self, *, max_bytes: int) -> str:
        upload_id = super().start_upload(max_bytes=max_bytes)
        key = self.key_of(self._object_path(upload_id))
        try:
            created = self.call("create_multipart_upload", Key=key)
        except OSError as error:
            self.abort_upload(upload_id)
            raise StorageUnavailable(f"could not start the upload: {error}") from error
        self.write_upload_meta(
            upload_id, {"max_bytes": max_bytes, "s3_upload_id": created["UploadId"]}
        )
        return upload_id

    def put_part(self, upload_id: str, number: int, data: bytes) -> None:
        meta = self.upload_meta(upload_id)
        self.check_part(upload_id, meta, number, len(data))
        try:
            sent = self.call(
                "upload_part",
                Key=self.key_of(self._object_path(upload_id)),
                UploadId=meta["s3_upload_id"],
                PartNumber=number,
                Body=data,
            )
        except FileNotFoundError:
            raise UploadNotFound(upload_id) from None
        # Some servers (SeaweedFS) keep every copy of a part sent twice and list
        # them all, in no useful order; the ETag of the last send, kept here,
        # names the copy that counts (AWS keeps only that one anyway).
        self.fs.pipe_file(self._etag_path(upload_id, number), str(sent["ETag"]).encode())
        self.note_activity(upload_id, meta)

    def stored_parts(self, upload_id: str) -> dict[int, int]:
        return {number: int(part["Size"]) for number, part in self._chosen_parts(upload_id).items()}

    def _chosen_parts(self, upload_id: str) -> dict[int, dict[str, Any]]:
        """Part number to the listed copy whose ETag its last send recorded."""
        folder = self.path(f"uploads/{upload_id}")
        records = [
            str(name) for name in self.fs.ls(folder, detail=False) if str(name).endswith(".etag")
        ]
        etags = {
            int(path.rsplit("-", 1)[-1].removesuffix(".etag")): etag.decode()
            for path, etag in self.fs.cat(records).items()
        }
        return {
            number: part
            for part in self._listed_parts(upload_id)
            if etags.get(number := int(part["PartNumber"])) == part["ETag"]
        }

    def _etag_path(self, upload_id: str, number: int) -> str:
        return self.path(f"uploads/{upload_id}/part-{number:05d}.etag")

    def _listed_parts(self, upload_id: str) -> list[dict[str, Any]]:
        meta = self.upload_meta(upload_id)
        key = self.key_of(self._object_path(upload_id))
        parts: list[dict[str, Any]] = []
        marker = 0
        while True:
            try:
                page = self.call(
                    "list_parts",
                    Key=key,
                    UploadId=meta["s3_upload_id"],
                    PartNumberMarker=marker,
                )
            except FileNotFoundError:
                raise UploadNotFound(upload_id) from None
            parts.extend(page.get("Parts", []))
            if not page.get("IsTruncated"):
                return parts
            marker = int(page["NextPartNumberMarker"])

    def complete_upload(self, upload_id: str, total: int) -> StoredBlob:
        meta = self.upload_meta(upload_id)
        path = self._object_path(upload_id)
        try:
            listed = self._chosen_parts(upload_id)
            sizes = {number: int(part["Size"]) for number, part in listed.items()}
            check_assembly(sizes, total, int(meta["max_bytes"]))
            self.call(
                "complete_multipart_upload",
                Key=self.key_of(path),
                UploadId=meta["s3_upload_id"],
                MultipartUpload={
                    "Parts": [
                        {"PartNumber": number, "ETag": listed[number]["ETag"]}
                        for number in range(1, total + 1)
                    ]
                },
            )
            size = sum(sizes.values())
            digest = hashlib.sha256()
            for chunk in self.read_range(path, 0, size):
                digest.update(chunk)
            return self.settle(path, StoredBlob(digest.hexdigest(), size))
        finally:
            # The upload ends whatever happened; a clean-up that fails must not
            # hide the outcome (remove_stale, or S3's lifecycle rule, tidies up).
            with suppress(OSError, StorageUnavailable):
                self.abort_upload(upload_id)

    def abort_upload(self, upload_id: str) -> None:
        try:
            meta = self.upload_meta(upload_id)
        except UploadNotFound:
            return
        path = self._object_path(upload_id)
        if "s3_upload_id" in meta:
            with suppress(FileNotFoundError):
                self.call(
                    "abort_multipart_upload",
                    Key=self.key_of(path),
                    UploadId=meta["s3_upload_id"],
                )
        self.remove_quietly(path)
        super().abort_upload(upload_id)

    def _object_path(self, upload_id: str) -> str:
        return self.path(f"uploads/{upload_id}/object")


class MultipartSink:
    """A streaming put's temporary object: one PUT when under a part, else a
    multipart upload with up to PARTS_IN_FLIGHT parts on the wire while the caller
    hashes the next."""

    def __init__(self, store: S3BlobStore, path: str) -> None:
        self._store = store
        self._key = store.key_of(path)
        self._upload_id: str | None = None
        self._held: bytes | None = None
        self._in_flight: deque[tuple[int, Future[Any]]] = deque()
        self._parts: list[dict[str, Any]] = []

    def write(self, block: bytes) -> None:
        # Blocks come PART_SIZE long but the last: a shorter one is the whole object
        # when no part has gone yet, and waits for close() to be PUT alone.
        if len(block) < PART_SIZE and self._upload_id is None:
            self._held = block
        else:
            self._send(block)

    def _send(self, block: bytes) -> None:
        if self._upload_id is None:
            created = self._store.call("create_multipart_upload", Key=self._key)
            self._upload_id = str(created["UploadId"])
        while len(self._in_flight) >= PARTS_IN_FLIGHT:
            self._collect_oldest()
        number = len(self._parts) + len(self._in_flight) + 1
        part = self._store.submit(
            "upload_part", Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=block
        )
        self._in_flight.append((number, part))

    def _collect_oldest(self) -> None:
        number, part = self._in_flight.popleft()
        self._parts.append({"PartNumber": number, "ETag": _result(part)["ETag"]})

    def close(self) -> None:
        if self._upload_id is None:
            self._call("put_object", Key=self._key, Body=self._held or b"")
            return
        while self._in_flight:
            self._collect_oldest()
        self._call(
            "complete_multipart_upload",
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )

    def _call(self, method: str, **kwargs: Any) -> None:
        try:
            self._store.call(method, **kwargs)
        except OSError as error:
            raise StorageUnavailable(f"could not write the file: {error}") from error

    def discard(self) -> None:
        while self._in_flight:
            _, part = self._in_flight.popleft()
            part.cancel()
            with suppress(Exception):
                part.result()
        # Nothing of ours is at the key: a multipart upload shows only once
        # completed, and a PUT that failed stored nothing. (Another put of the same
        # content may have stored it there meanwhile; it stays.)
        if self._upload_id is not None:
            with suppress(OSError, StorageUnavailable):
                self._store.call("abort_multipart_upload", Key=self._key, UploadId=self._upload_id)


def _result(future: Future[Any]) -> Any:
    try:
        return future.result()
    except OSError as error:
        raise StorageUnavailable(f"S3 refused or failed a request: {error}") from error
