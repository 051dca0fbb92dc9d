"""The tlog-tiles layout: paths, bundles, which files a batch writes, and stores."""

from __future__ import annotations

from pathlib import Path

import pytest
from fsspec.implementations.memory import MemoryFileSystem
from hypothesis import given
from hypothesis import strategies as st

from credits.transparency.merkle import leaf_hash, perfect_root
from credits.transparency.stores import FolderTileStore, FsspecTileStore, MemoryTileStore
from credits.transparency.tiles import (
    ENTRIES_LEVEL,
    MAX_ENTRY_SIZE,
    Tile,
    TileConflict,
    TileError,
    TileNotFound,
    append_entries,
    decode_bundle,
    encode_bundle,
    encode_index,
    parse_tile_path,
    read_entries,
    tile_for,
    write_files,
)


@pytest.mark.parametrize(
    ("index", "encoded"),
    [(0, "000"), (7, "007"), (999, "999"), (1000, "x001/000"), (1234067, "x001/x234/067")],
)
def test_tile_indexes_are_three_digit_path_elements(index: int, encoded: str) -> None:
    assert encode_index(index) == encoded


def test_tile_paths_name_level_index_and_partial_width() -> None:
    assert Tile(0, 1234067).path() == "tile/0/x001/x234/067"
    assert Tile(3, 5, 8).path() == "tile/3/005.p/8"
    assert Tile(ENTRIES_LEVEL, 1234067, 8).path() == "tile/entries/x001/x234/067.p/8"


@given(
    st.integers(min_value=ENTRIES_LEVEL, max_value=63),
    st.integers(min_value=0, max_value=10**12),
    st.integers(min_value=1, max_value=256),
)
def test_a_tile_path_parses_back_to_its_tile(level: int, index: int, width: int) -> None:
    tile = Tile(level, index, width)
    assert parse_tile_path(tile.path()) == tile


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/1",
        "tile/0/0001",
        "tile/00/001",
        "tile/0/001/002",
        "tile/0/x000/001",  # not canonical: a leading zero element
        "tile/0/001.p/256",
        "tile/0/001.p/0",
        "tile/0/001.p/08",
        "tile/64/001",
        "tile/-1/001",
        "tile/data/001",
        "tiles/0/001",
        "tile/0/../001",
        "checkpoint",
    ],
)
def test_anything_but_a_canonical_tile_path_is_refused(path: str) -> None:
    with pytest.raises(TileError):
        parse_tile_path(path)


@given(st.lists(st.binary(max_size=300), max_size=20))
def test_a_bundle_decodes_to_its_entries(entries: list[bytes]) -> None:
    assert decode_bundle(encode_bundle(entries)) == entries


def test_bundle_entries_are_behind_big_endian_uint16_lengths() -> None:
    assert encode_bundle([b"ab", b""]) == b"\x00\x02ab\x00\x00"
    with pytest.raises(TileError):
        encode_bundle([b"x" * (MAX_ENTRY_SIZE + 1)])
    with pytest.raises(TileError):
        decode_bundle(b"\x00\x05ab")
    with pytest.raises(TileError):
        decode_bundle(b"\x00\x02ab\x00")


def test_a_tree_of_70000_has_the_tiles_the_spec_lists() -> None:
    # c2sp.org/tlog-tiles: 273 full level-0 tiles, a partial of 112, one full
    # level-1 tile, a partial of 17, and a level-2 partial of width 1.
    assert tile_for(70_000, 0, 272).full
    assert tile_for(70_000, 0, 273) == Tile(0, 273, 112)
    assert tile_for(70_000, 1, 0).full
    assert tile_for(70_000, 1, 1) == Tile(1, 1, 17)
    assert tile_for(70_000, 2, 0) == Tile(2, 0, 1)
    with pytest.raises(TileError):
        tile_for(70_000, 0, 274)


def test_a_batch_writes_new_full_tiles_and_the_new_partial_tiles() -> None:
    store = MemoryTileStore()
    entries = [b"e%d" % i for i in range(300)]
    write_files(store, append_entries(store, 0, entries[:250]))
    files = append_entries(store, 250, entries[250:])
    assert sorted(f.path for f in files) == [
        "tile/0/000",
        "tile/0/001.p/44",
        "tile/1/000.p/1",
        "tile/entries/000",
        "tile/entries/001.p/44",
    ]
    write_files(store, files)
    level0 = store.read("tile/0/000")
    assert level0 == b"".join(leaf_hash(e) for e in entries[:256])
    assert store.read("tile/1/000.p/1") == perfect_root([leaf_hash(e) for e in entries[:256]])
    assert read_entries(store, 300, 250, 260) == entries[250:260]


def test_a_batch_at_a_size_with_no_tiles_stored_is_refused() -> None:
    with pytest.raises(TileNotFound):
        append_entries(MemoryTileStore(), 10, [b"x"])


def test_a_full_tile_is_never_rewritten_with_other_bytes() -> None:
    store = MemoryTileStore()
    write_files(store, append_entries(store, 0, [b"a"] * 256))
    write_files(store, append_entries(MemoryTileStore(), 0, [b"a"] * 256))
    with pytest.raises(TileConflict):
        write_files(store, append_entries(MemoryTileStore(), 0, [b"b"] * 256))


def test_tiles_round_trip_through_a_folder_and_an_fsspec_file_system(tmp_path: Path) -> None:
    stores = [
        FolderTileStore(tmp_path / "log"),
        FsspecTileStore(MemoryFileSystem(), f"/tiles-{tmp_path.name}"),
    ]
    for store in stores:
        write_files(store, append_entries(store, 0, [b"one", b"two"]))
        write_files(store, append_entries(store, 2, [b"three"]))
        assert read_entries(store, 3, 0, 3) == [b"one", b"two", b"three"]
        with pytest.raises(TileNotFound):
            store.read("tile/0/001")
        with pytest.raises(TileError):
            store.write("../outside", b"")
    assert (tmp_path / "log/tile/entries/000.p/3").read_bytes() == encode_bundle(
        [b"one", b"two", b"three"]
    )
