"""Where a streaming put writes: a temporary object, written while the caller hashes.

Writing runs beside hashing (a thread for files, parts in flight for S3), so an
upload costs about the slower of the two rather than their sum.
"""

from __future__ import annotations

import os
import queue
import threading
from contextlib import suppress
from typing import Any, Protocol

from credits.storage.errors import StorageUnavailable

# Blocks queued for the writer thread; bounds memory to this many blocks.
QUEUE_DEPTH = 8


class BlobSink(Protocol):
    def write(self, block: bytes) -> None: ...

    def close(self) -> None:
        """Finishes the object: every byte written is stored (and on disk, if durable)."""
        ...

    def discard(self) -> None:
        """Gives up: nothing of the object is left. Safe after a failed write or close."""
        ...


class FileSink:
    """A file written by a background thread, through fsspec."""

    def __init__(self, fs: Any, path: str, *, durable: bool = False) -> None:
        self._fs = fs
        self._path = path
        self._durable = durable
        self._handle = fs.open(path, "wb")
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUE_DEPTH)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="blob-writer", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        # Keeps taking blocks after a failure, so the producer never blocks on a
        # full queue; the failure is raised to it on its next call.
        while (block := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._handle.write(block)
                except BaseException as error:  # handed to the producer by _raise_failure
                    self._error = error

    def write(self, block: bytes) -> None:
        self._raise_failure()
        self._queue.put(block)

    def close(self) -> None:
        self._stop()
        self._raise_failure()
        try:
            self._handle.flush()
            if self._durable:
                os.fsync(self._handle.fileno())
            self._handle.close()
        except OSError as error:
            raise StorageUnavailable(f"could not write the file: {error}") from error

    def discard(self) -> None:
        self._stop()
        with suppress(OSError):
            self._handle.close()
        with suppress(OSError):
            self._fs.rm_file(self._path)

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise StorageUnavailable(f"could not write the file: {self._error}") from self._error
