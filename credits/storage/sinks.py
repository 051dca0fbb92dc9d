"""Where a streaming put writes: a temporary object, block by block as it is hashed.

A block is written right after it is hashed, on the same thread, while it is
still in the CPU's cache; handing it to a writer thread measured slower here
(the other core fetches it from memory again).
"""

from __future__ import annotations

import os
from contextlib import suppress
from typing import Any, Protocol

from credits.storage.errors import StorageUnavailable


class BlobSink(Protocol):
    def write(self, block: bytes) -> None: ...

    def close(self) -> None:
        """Finishes the object: every byte written is stored (and on disk, if durable)."""
        ...

    def discard(self) -> None:
        """Gives up: nothing of the object is left. Safe after a failed write or close."""
        ...


class FileSink:
    """A file written through fsspec; ``durable`` fsyncs it on close."""

    def __init__(self, fs: Any, path: str, *, durable: bool = False) -> None:
        self._fs = fs
        self._path = path
        self._durable = durable
        try:
            self._handle = fs.open(path, "wb")
        except OSError as error:
            raise StorageUnavailable(f"could not write the file: {error}") from error

    def write(self, block: bytes) -> None:
        try:
            self._handle.write(block)
        except OSError as error:
            raise StorageUnavailable(f"could not write the file: {error}") from error

    def close(self) -> None:
        try:
            self._handle.flush()
            if self._durable:
                os.fsync(self._handle.fileno())
            self._handle.close()
        except OSError as error:
            raise StorageUnavailable(f"could not write the file: {error}") from error

    def discard(self) -> None:
        with suppress(OSError):
            self._handle.close()
        with suppress(OSError):
            self._fs.rm_file(self._path)
