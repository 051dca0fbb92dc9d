"""Blob storage on an fsspec file system: the local folder and memory backends.

The S3 backend (:mod:`credits.storage.s3_store`) shares this class and replaces
the parts where S3 has a better way (multipart uploads, ranged reads, copies).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from credits.storage.base import (
    MAX_PARTS,
    PART_SIZE,
    READ_CHUNK,
    StoredBlob,
    blob_key,
    check_digest,
    check_expiry,
    check_max_bytes,
    is_upload_id,
)
from credits.storage.errors import (
    BlobNotFound,
    BlobTooLarge,
    IncompleteUpload,
    InvalidPart,
    InvalidRange,
    StorageUnavailable,
    UploadNotFound,
)
from credits.storage.sinks import BlobSink, FileSink

UPLOAD_META = "upload.json"


class FsspecBlobStore:
    """Content-addressed blobs under ``root`` of the file system ``fs``."""

    # put_stream hands its sink blocks of this size (the last may be shorter).
    block_size = READ_CHUNK

    def __init__(self, fs: Any, root: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")

    def path(self, key: str) -> str:
        """The full path of a key below the root."""
        return f"{self.root}/{key}"

    def list_keys(self) -> list[str]:
        """Every object below the root, as keys relative to it, sorted."""
        prefix = self.root + "/"
        found = self.fs.find(self.root, detail=True) if self.fs.exists(self.root) else {}
        return sorted(
            str(name)[len(prefix) :] for name, info in found.items() if info["type"] == "file"
        )

    # Streaming puts.

    def put_stream(self, chunks: Iterable[bytes], *, max_bytes: int) -> StoredBlob:
        check_max_bytes(max_bytes)
        temporary = self.path(f"tmp/{int(time.time())}-{secrets.token_hex(16)}")
        blob = stream_into(self.open_sink(temporary), chunks, max_bytes, self.block_size)
        return self.settle(temporary, blob)

    def open_sink(self, path: str) -> BlobSink:
        """Where put_stream writes a new temporary object."""
        return FileSink(self.fs, path)

    def settle(self, temporary: str, blob: StoredBlob) -> StoredBlob:
        """Moves a complete temporary object to its address, or drops it when the
        address already holds the same content."""
        address = self.path(blob_key(blob.sha256))
        try:
            if self.fs.exists(address):
                self.fs.rm_file(temporary)
            else:
                self.fs.makedirs(self.fs._parent(address), exist_ok=True)
                self.fs.mv(temporary, address)
        except OSError as error:
            self.remove_quietly(temporary)
            raise StorageUnavailable(f"could not store the file: {error}") from error
        return blob

    def remove_quietly(self, path: str) -> None:
        with suppress(OSError):
            self.fs.rm_file(path)

    # Reads.

    def size(self, sha256: str) -> int:
        path = self.path(blob_key(sha256))
        try:
            with backend_errors("read the file"):
                return int(self.fs.info(path)["size"])
        except FileNotFoundError:
            raise BlobNotFound(sha256) from None

    def exists(self, sha256: str) -> bool:
        path = self.path(blob_key(sha256))
        with backend_errors("read the file"):
            return bool(self.fs.exists(path))

    def open_range(self, sha256: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        size = self.size(sha256)
        stop = size if end is None else min(end, size)
        if start < 0 or start > size or stop < start:
            raise InvalidRange(f"bytes {start} to {end} are outside a file of {size} bytes")
        return self.read_range(self.path(blob_key(sha256)), start, stop)

    def read_range(self, path: str, start: int, stop: int) -> Iterator[bytes]:
        """The bytes ``start`` to ``stop`` of an object known to hold them."""
        with self.fs.open(path, "rb", block_size=0) as handle:
            handle.seek(start)
            position = start
            while position < stop:
                chunk = handle.read(min(READ_CHUNK, stop - position))
                if not chunk:
                    raise StorageUnavailable(f"the stored file ended {stop - position} bytes early")
                position += len(chunk)
                yield chunk

    def verify(self, sha256: str) -> bool:
        try:
            chunks = self.open_range(sha256)
        except BlobNotFound:
            return False
        digest = hashlib.sha256()
        for chunk in chunks:
            digest.update(chunk)
        return digest.hexdigest() == sha256

    def delete(self, sha256: str) -> bool:
        try:
            self.fs.rm_file(self.path(blob_key(sha256)))
        except FileNotFoundError:
            return False
        return True

    def presigned_url(self, sha256: str, *, expires_s: int, filename: str) -> str | None:
        """None: files here are served by the application itself."""
        check_digest(sha256)
        check_expiry(expires_s)
        del filename
        return None

    # Resumable multipart uploads: parts are files, assembled by put_stream.

    def start_upload(self, *, max_bytes: int) -> str:
        check_max_bytes(max_bytes)
        upload_id = secrets.token_hex(16)
        self.write_upload_meta(upload_id, {"max_bytes": max_bytes})
        return upload_id

    def write_upload_meta(self, upload_id: str, meta: dict[str, Any]) -> None:
        record = {**meta, "started_at": int(time.time())}
        with backend_errors("record the upload"):
            self.fs.pipe_file(
                self._upload_path(upload_id, UPLOAD_META), json.dumps(record).encode()
            )

    def upload_meta(self, upload_id: str) -> dict[str, Any]:
        """The upload's record; raises UploadNotFound."""
        if not is_upload_id(upload_id):
            raise UploadNotFound(upload_id)
        try:
            with backend_errors("read the upload"):
                raw = self.fs.cat_file(self._upload_path(upload_id, UPLOAD_META))
        except FileNotFoundError:
            raise UploadNotFound(upload_id) from None
        meta: dict[str, Any] = json.loads(raw)
        return meta

    def put_part(self, upload_id: str, number: int, data: bytes) -> None:
        meta = self.upload_meta(upload_id)
        self.check_part(upload_id, meta, number, len(data))
        final = self._upload_path(upload_id, _part_name(number))
        partial = f"{final}.{secrets.token_hex(8)}.partial"
        # Written aside and moved into place: a resend or a crash mid-write never
        # leaves a half part under the part's name.
        self.fs.pipe_file(partial, data)
        self.fs.mv(partial, final)
        self.note_activity(upload_id, meta)

    def note_activity(self, upload_id: str, meta: dict[str, Any]) -> None:
        """Records that a part arrived now: the tidy-up ends uploads idle for a day, not
        a slow one still sending (50 GiB over a slow link takes more than a day)."""
        record = {**meta, "active_at": int(time.time())}
        with backend_errors("record the upload"):
            self.fs.pipe_file(
                self._upload_path(upload_id, UPLOAD_META), json.dumps(record).encode()
            )

    def check_part(self, upload_id: str, meta: dict[str, Any], number: int, length: int) -> None:
        """Refuses a part that can never belong to the upload, aborting it."""
        max_bytes = int(meta["max_bytes"])
        error: InvalidPart | BlobTooLarge | None = None
        if not 1 <= number <= MAX_PARTS:
            error = InvalidPart(f"part numbers run from 1 to {MAX_PARTS}, not {number}")
        elif length > PART_SIZE:
            error = InvalidPart(f"part {number} holds {length:,} bytes, over {PART_SIZE:,}")
        elif (number - 1) * PART_SIZE + length > max_bytes:
            error = BlobTooLarge(max_bytes)
        if error is not None:
            self.abort_upload(upload_id)
            raise error

    def stored_parts(self, upload_id: str) -> dict[int, int]:
        """Part number to size, for the parts an upload holds."""
        folder = self._upload_path(upload_id, "")
        parts: dict[int, int] = {}
        for entry in self.fs.ls(folder, detail=True):
            name = str(entry["name"]).rsplit("/", 1)[-1]
            if name.startswith("part-") and name[5:].isdigit():
                parts[int(name[5:])] = int(entry["size"])
        return parts

    def missing_parts(self, upload_id: str, total: int) -> list[int]:
        self.upload_meta(upload_id)
        stored = self.stored_parts(upload_id)
        return [number for number in range(1, total + 1) if number not in stored]

    def complete_upload(self, upload_id: str, total: int) -> StoredBlob:
        meta = self.upload_meta(upload_id)
        try:
            check_assembly(self.stored_parts(upload_id), total, int(meta["max_bytes"]))
            return self.put_stream(
                self._read_parts(upload_id, total), max_bytes=int(meta["max_bytes"])
            )
        finally:
            # The upload ends whatever happened; a clean-up that fails must not
            # hide the outcome (remove_stale, or S3's lifecycle rule, tidies up).
            with suppress(OSError, StorageUnavailable):
                self.abort_upload(upload_id)

    def _read_parts(self, upload_id: str, total: int) -> Iterator[bytes]:
        for number in range(1, total + 1):
            path = self._upload_path(upload_id, _part_name(number))
            size = int(self.fs.info(path)["size"])
            yield from self.read_range(path, 0, size)

    def abort_upload(self, upload_id: str) -> None:
        if not is_upload_id(upload_id):
            return
        folder = self._upload_path(upload_id, "").rstrip("/")
        with suppress(FileNotFoundError):
            self.fs.rm(folder, recursive=True)

    def _upload_path(self, upload_id: str, name: str) -> str:
        return self.path(f"uploads/{upload_id}/{name}")

    # Clean-up of work that a crash or an abandoned client left behind.

    def remove_stale(self, *, older_than_s: float) -> int:
        """Removes temporary objects made, and uploads last sent a part (or started),
        over ``older_than_s`` ago; returns how many it removed."""
        cutoff = time.time() - older_than_s
        removed = 0
        for path in self._children("tmp"):
            started = path.rsplit("/", 1)[-1].split("-", 1)[0]
            if started.isdigit() and int(started) < cutoff:
                self.remove_quietly(path)
                removed += 1
        for path in self._children("uploads"):
            upload_id = path.rstrip("/").rsplit("/", 1)[-1]
            try:
                meta = self.upload_meta(upload_id)
                last_used = max(int(meta["started_at"]), int(meta.get("active_at", 0)))
            except UploadNotFound:
                last_used = 0
            if last_used < cutoff:
                self.abort_upload(upload_id)
                removed += 1
        return removed

    def _children(self, key: str) -> list[str]:
        try:
            return [str(name) for name in self.fs.ls(self.path(key), detail=False)]
        except FileNotFoundError:
            return []


class LocalBlobStore(FsspecBlobStore):
    """A folder on this host; blobs reach the disk before they get their address."""

    def open_sink(self, path: str) -> BlobSink:
        return FileSink(self.fs, path, durable=True)

    def settle(self, temporary: str, blob: StoredBlob) -> StoredBlob:
        address = self.path(blob_key(blob.sha256))
        try:
            self.fs.makedirs(self.fs._parent(address), exist_ok=True)
            # link() refuses an existing address: the first copy stays, the
            # same content arriving again is dropped, and no reader ever sees a
            # file being replaced.
            with suppress(FileExistsError):
                self.fs.link(temporary, address)
                _sync_folder(self.fs._parent(address))
        except OSError as error:
            raise StorageUnavailable(f"could not store the file: {error}") from error
        finally:
            self.remove_quietly(temporary)
        return blob


def _sync_folder(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def check_assembly(parts: dict[int, int], total: int, max_bytes: int) -> None:
    """Refuses to assemble parts that are missing, extra, mis-sized, or that do not add
    up to the size the upload declared (``max_bytes``): a part cut short by a proxy
    must not become a shorter file."""
    if not 1 <= total <= MAX_PARTS:
        raise InvalidPart(f"an upload has 1 to {MAX_PARTS} parts, not {total}")
    missing = [number for number in range(1, total + 1) if number not in parts]
    if missing:
        raise IncompleteUpload(missing, total)
    extra = sorted(number for number in parts if number > total)
    if extra:
        raise InvalidPart(f"part {extra[0]} is beyond the {total} parts declared")
    for number in range(1, total):
        if parts[number] != PART_SIZE:
            raise InvalidPart(
                f"part {number} holds {parts[number]:,} bytes; every part but the last "
                f"must hold {PART_SIZE:,}"
            )
    if total > 1 and parts[total] == 0:
        raise InvalidPart(f"the last part ({total}) is empty")
    received = sum(parts.values())
    if received > max_bytes:
        raise BlobTooLarge(max_bytes)
    if received != max_bytes:
        raise InvalidPart(
            f"the parts hold {received:,} bytes, not the {max_bytes:,} the upload declared"
        )


def _part_name(number: int) -> str:
    return f"part-{number:05d}"


@contextmanager
def backend_errors(action: str) -> Iterator[None]:
    """Turns the backend's failures (a full disk, S3 refusing the credentials) into
    StorageUnavailable; a missing file stays FileNotFoundError for the caller."""
    try:
        yield
    except FileNotFoundError:
        raise
    except OSError as error:
        raise StorageUnavailable(f"could not {action}: {error}") from error


def stream_into(
    sink: BlobSink, chunks: Iterable[bytes], max_bytes: int, block_size: int
) -> StoredBlob:
    """Writes the chunks to ``sink`` in blocks while hashing them; discards what was
    written when the chunks fail or pass ``max_bytes`` (BlobTooLarge)."""
    digest = hashlib.sha256()
    size = 0
    try:
        for block in _blocks(_limited(chunks, max_bytes), block_size):
            size += len(block)
            digest.update(block)
            sink.write(block)
        sink.close()
    except BaseException:
        sink.discard()
        raise
    return StoredBlob(digest.hexdigest(), size)


def _limited(chunks: Iterable[bytes], max_bytes: int) -> Iterator[bytes]:
    """The chunks, refused with BlobTooLarge as soon as more than ``max_bytes`` arrive."""
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        if seen > max_bytes:
            raise BlobTooLarge(max_bytes)
        yield chunk


def _blocks(chunks: Iterable[bytes], block_size: int) -> Iterator[bytes]:
    """The stream re-cut into blocks of ``block_size`` bytes (the last may be shorter)."""
    pending = bytearray()
    for chunk in chunks:
        if not pending and len(chunk) == block_size:
            yield bytes(chunk)
            continue
        pending += chunk
        while len(pending) >= block_size:
            with memoryview(pending) as view:
                block = bytes(view[:block_size])
            del pending[:block_size]
            yield block
    if pending:
        yield bytes(pending)
