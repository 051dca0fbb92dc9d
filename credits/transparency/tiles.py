"""The C2SP tlog-tiles layout (https://c2sp.org/tlog-tiles): paths, tiles, bundles.

A tile at level L holds up to 256 consecutive hashes of tree level 8·L: leaf
hashes at level 0, and at level L > 0 the roots of full level L-1 tiles. Full
tiles never change; the rightmost tile of a level is partial (``.p/<W>``) and
is rewritten as the log grows. Entry bundles hold the entries themselves, each
behind a big-endian uint16 length, in the level-0 tile grid.

:func:`append_entries` turns a batch of new entries into the tile files to
write; :class:`TileHashSource` reads any complete subtree's hash back out of the
tiles of one tree size, for proofs. Only the standard library and the merkle
module are imported: the standalone verifier reads tiles with this module.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from credits.transparency.merkle import HASH_SIZE, leaf_hash, node_hash, perfect_root

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
# Entry bundles sit in the level-0 grid; their paths say "entries" for the level.
ENTRIES_LEVEL = -1
MAX_ENTRY_SIZE = 0xFFFF
MAX_LEVEL = 63

_INDEX_ELEMENT = re.compile(r"^(x\d{3}/)*\d{3}$")
_DECIMAL = re.compile(r"^(0|[1-9]\d*)$")


class TileError(ValueError):
    """A tile or bundle is missing, malformed, or at odds with the tree."""


class TileNotFound(TileError):
    """The store holds nothing at a tile path."""


class TileConflict(TileError):
    """A full tile, immutable once written, would be written with other bytes."""


class TileReader(Protocol):
    def read(self, path: str) -> bytes:
        """The bytes stored at ``path``; raises TileNotFound."""
        ...


class TileStore(TileReader, Protocol):
    def write(self, path: str, data: bytes) -> None:
        """Stores ``data`` at ``path``, replacing what was there, atomically."""
        ...


@dataclass(frozen=True, slots=True)
class Tile:
    """A tile (level ≥ 0) or entry bundle (level ENTRIES_LEVEL) of some width."""

    level: int
    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        if not ENTRIES_LEVEL <= self.level <= MAX_LEVEL:
            raise TileError(f"tile level {self.level} is outside 0..{MAX_LEVEL}")
        if self.index < 0 or not 1 <= self.width <= TILE_WIDTH:
            raise TileError(f"no tile has index {self.index} and width {self.width}")

    @property
    def full(self) -> bool:
        return self.width == TILE_WIDTH

    def path(self) -> str:
        """``tile/<L>/<N>[.p/<W>]``, or ``tile/entries/<N>[.p/<W>]`` for a bundle."""
        level = "entries" if self.level == ENTRIES_LEVEL else str(self.level)
        suffix = "" if self.full else f".p/{self.width}"
        return f"tile/{level}/{encode_index(self.index)}{suffix}"


@dataclass(frozen=True, slots=True)
class TileFile:
    """A file to store: a tile's path and its bytes."""

    tile: Tile
    data: bytes

    @property
    def path(self) -> str:
        return self.tile.path()


def encode_index(index: int) -> str:
    """Zero-padded 3-digit path elements, all but the last prefixed with ``x``."""
    groups = []
    while True:
        index, group = divmod(index, 1000)
        groups.append(f"{group:03d}")
        if index == 0:
            break
    groups.reverse()
    return "/".join(["x" + g for g in groups[:-1]] + groups[-1:])


def parse_tile_path(path: str) -> Tile:
    """The tile a path names; raises TileError for anything but a canonical path."""
    head, _, rest = path.partition("/")
    level_text, _, index_text = rest.partition("/")
    index_text, partial, width_text = index_text.partition(".p/")
    if head != "tile" or not _INDEX_ELEMENT.match(index_text):
        raise TileError(f"not a tile path: {path!r}")
    if level_text != "entries" and not _DECIMAL.match(level_text):
        raise TileError(f"not a tile level: {path!r}")
    if partial and not _DECIMAL.match(width_text):
        raise TileError(f"not a tile width: {path!r}")
    level = ENTRIES_LEVEL if level_text == "entries" else int(level_text)
    index = int(index_text.replace("x", "").replace("/", ""))
    tile = Tile(level, index, int(width_text) if partial else TILE_WIDTH)
    if (partial and tile.full) or tile.path() != path:
        raise TileError(f"not a canonical tile path: {path!r}")
    return tile


def hashes_per_level(size: int, level: int) -> int:
    """How many hashes tile level ``level`` holds in a tree of ``size`` leaves."""
    return size >> (TILE_HEIGHT * level)


def tile_for(size: int, level: int, index: int) -> Tile:
    """Tile ``index`` of tile level ``level`` as it stands at tree size ``size``:
    full, or the partial rightmost one. Entry bundles follow level 0."""
    count = hashes_per_level(size, max(level, 0))
    width = min(TILE_WIDTH, count - index * TILE_WIDTH)
    if width <= 0:
        raise TileError(f"a tree of {size} leaves has no tile {index} at level {level}")
    return Tile(level, index, width)


def encode_bundle(entries: Sequence[bytes]) -> bytes:
    """Entries each behind a big-endian uint16 length."""
    parts = []
    for entry in entries:
        check_entry(entry)
        parts.append(len(entry).to_bytes(2, "big"))
        parts.append(entry)
    return b"".join(parts)


def decode_bundle(data: bytes) -> list[bytes]:
    """The entries of a bundle; raises TileError when it is cut short."""
    entries, at = [], 0
    while at < len(data):
        if at + 2 > len(data):
            raise TileError("an entry bundle ends inside a length prefix")
        length = int.from_bytes(data[at : at + 2], "big")
        if at + 2 + length > len(data):
            raise TileError("an entry bundle ends inside an entry")
        entries.append(data[at + 2 : at + 2 + length])
        at += 2 + length
    return entries


def check_entry(entry: bytes) -> None:
    if len(entry) > MAX_ENTRY_SIZE:
        raise TileError(f"an entry is at most {MAX_ENTRY_SIZE} bytes, not {len(entry)}")


def encode_hashes(hashes: Sequence[bytes]) -> bytes:
    return b"".join(hashes)


def decode_hashes(data: bytes) -> list[bytes]:
    if len(data) % HASH_SIZE:
        raise TileError(f"a tile of {len(data)} bytes is not a whole number of hashes")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def read_tile(reader: TileReader, tile: Tile) -> list[bytes]:
    """A tile's hashes, or a bundle's entries, checked against its width."""
    data = reader.read(tile.path())
    items = decode_bundle(data) if tile.level == ENTRIES_LEVEL else decode_hashes(data)
    if len(items) != tile.width:
        raise TileError(f"{tile.path()} holds {len(items)} items, not {tile.width}")
    return items


def append_entries(reader: TileReader, size: int, entries: Sequence[bytes]) -> list[TileFile]:
    """The tile and bundle files that grow a log of ``size`` entries by ``entries``.

    New full tiles and the new rightmost partial tiles of every level that
    changes; the old partial tiles are read from ``reader``. Raises TileError
    for an entry over MAX_ENTRY_SIZE bytes and TileNotFound when the tiles of
    ``size`` are missing.
    """
    for entry in entries:
        check_entry(entry)
    files, _ = _grow_row(reader, ENTRIES_LEVEL, size, list(entries), encode_bundle)
    new_hashes = [leaf_hash(entry) for entry in entries]
    level = 0
    while new_hashes:
        count = hashes_per_level(size, level)
        row_files, filled = _grow_row(reader, level, count, new_hashes, encode_hashes)
        files += row_files
        # Every tile filled at this level adds its root to the level above.
        new_hashes = [perfect_root(hashes) for hashes in filled]
        level += 1
    return files


def _grow_row(
    reader: TileReader,
    level: int,
    count: int,
    new_items: list[bytes],
    encode: Callable[[Sequence[bytes]], bytes],
) -> tuple[list[TileFile], list[list[bytes]]]:
    """The files of one tile row of ``count`` items after ``new_items`` join it,
    and the items of each tile this fills."""
    first, width = divmod(count, TILE_WIDTH)
    row = (read_tile(reader, Tile(level, first, width)) if width else []) + new_items
    files, filled = [], []
    for offset in range(0, len(row), TILE_WIDTH):
        chunk = row[offset : offset + TILE_WIDTH]
        files.append(TileFile(Tile(level, first + offset // TILE_WIDTH, len(chunk)), encode(chunk)))
        if len(chunk) == TILE_WIDTH:
            filled.append(chunk)
    return files, filled


def write_files(store: TileStore, files: Sequence[TileFile]) -> None:
    """Stores tile files; a full tile already stored is left alone when equal and
    refused (TileConflict) when not, since full tiles are immutable."""
    for file in files:
        stored = _stored(store, file.path) if file.tile.full else None
        if stored == file.data:
            continue
        if stored is not None:
            raise TileConflict(f"{file.path} is already stored with other content")
        store.write(file.path, file.data)


def _stored(store: TileReader, path: str) -> bytes | None:
    try:
        return store.read(path)
    except TileNotFound:
        return None


def read_entries(reader: TileReader, size: int, start: int, end: int) -> list[bytes]:
    """Entries ``start`` to ``end`` (exclusive) of the log at ``size`` entries."""
    if not 0 <= start <= end <= size:
        raise TileError(f"entries {start} to {end} are not in a log of {size} entries")
    found: list[bytes] = []
    for index in range(start // TILE_WIDTH, (end + TILE_WIDTH - 1) // TILE_WIDTH):
        found += read_tile(reader, tile_for(size, ENTRIES_LEVEL, index))
    skip = start - start // TILE_WIDTH * TILE_WIDTH
    return found[skip : skip + end - start]


class TileHashSource:
    """A merkle.HashSource over the tiles of one tree size.

    Each tile read is kept, with the levels of the subtree it spans, in a small
    cache; a proof then touches a handful of tiles at most.
    """

    def __init__(self, reader: TileReader, size: int, *, cache_tiles: int = 64) -> None:
        self.reader = reader
        self.size = size
        self._cache: OrderedDict[tuple[int, int], list[list[bytes]]] = OrderedDict()
        self._cache_tiles = cache_tiles

    def hash_at(self, level: int, index: int) -> bytes:
        tile_level, height = divmod(level, TILE_HEIGHT)
        # The node spans 2**height consecutive hashes of its tile's level.
        tile_index, offset = divmod(index << height, TILE_WIDTH)
        levels = self._levels(tile_level, tile_index)
        position = offset >> height
        if height >= len(levels) or position >= len(levels[height]):
            raise TileError(f"node ({level}, {index}) is not complete at size {self.size}")
        return levels[height][position]

    def _levels(self, tile_level: int, tile_index: int) -> list[list[bytes]]:
        key = (tile_level, tile_index)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        levels = subtree_levels(read_tile(self.reader, tile_for(self.size, tile_level, tile_index)))
        self._cache[key] = levels
        if len(self._cache) > self._cache_tiles:
            self._cache.popitem(last=False)
        return levels


def subtree_levels(hashes: list[bytes]) -> list[list[bytes]]:
    """The tile's hashes, then each level of complete nodes above them."""
    levels = [hashes]
    while len(levels[-1]) > 1:
        row = levels[-1]
        levels.append([node_hash(row[i], row[i + 1]) for i in range(0, len(row) - 1, 2)])
    return levels
