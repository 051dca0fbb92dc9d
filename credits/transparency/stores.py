"""Where tiles live: memory (tests), a local folder, or any fsspec file system.

A folder laid out by tile path can be served as it is by a web server or CDN,
and a downloaded copy of one is what the standalone verifier reads. The fsspec
store puts tiles beside the platform's blobs (local folder, S3, memory); it
calls the file system it is handed and imports nothing of fsspec itself.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from credits.transparency.tiles import TileError, TileNotFound, parse_tile_path

if TYPE_CHECKING:
    from credits.storage.fs_store import FsspecBlobStore

# Below the blob store's root, beside blobs/, tmp/ and uploads/.
TILES_PREFIX = "transparency"


class TileUnreadable(TileError):
    """A tile's file is there but cannot be read: a folder, no permission."""


def check_path(path: str) -> str:
    """``path`` when it names a tile or bundle; TileError otherwise, so no caller
    can read or write outside the log's layout."""
    parse_tile_path(path)
    return path


class MemoryTileStore:
    """Tiles in a dict."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def read(self, path: str) -> bytes:
        try:
            return self.files[check_path(path)]
        except KeyError:
            raise TileNotFound(f"no tile at {path}") from None

    def write(self, path: str, data: bytes) -> None:
        self.files[check_path(path)] = bytes(data)


class FolderTileStore:
    """Tiles as files under ``root``, each replaced atomically (write, then rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, path: str) -> bytes:
        try:
            return (self.root / check_path(path)).read_bytes()
        except FileNotFoundError:
            raise TileNotFound(f"no tile at {path}") from None
        except OSError as error:  # a folder in its place, no permission, ...
            raise TileUnreadable(f"cannot read {self.root / path}: {error.strerror}") from None

    def write(self, path: str, data: bytes) -> None:
        target = self.root / check_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            Path(temporary).replace(target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


class FsspecTileStore:
    """Tiles under ``root`` of an fsspec file system (local, S3, memory)."""

    def __init__(self, fs: Any, root: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")

    @classmethod
    def beside(cls, blobs: FsspecBlobStore) -> FsspecTileStore:
        """A store under the blob store's root, in ``transparency/``."""
        return cls(blobs.fs, f"{blobs.root}/{TILES_PREFIX}")

    def read(self, path: str) -> bytes:
        try:
            return bytes(self.fs.cat_file(f"{self.root}/{check_path(path)}"))
        except FileNotFoundError:
            raise TileNotFound(f"no tile at {path}") from None
        except OSError as error:
            raise TileError(f"could not read {path}: {error}") from error

    def write(self, path: str, data: bytes) -> None:
        full = f"{self.root}/{check_path(path)}"
        try:
            # An S3 PUT replaces an object whole, but fsspec's local file system writes
            # in place: a local log to be served is kept by FolderTileStore instead.
            self.fs.makedirs(self.fs._parent(full), exist_ok=True)
            self.fs.pipe_file(full, data)
        except OSError as error:
            raise TileError(f"could not store {path}: {error}") from error
