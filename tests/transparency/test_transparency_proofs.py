"""Invariants of proofs over random trees: every proof verifies, proofs from
tiles equal proofs from the leaves, and any flipped byte is caught."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credits.transparency.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    split_point,
    tree_root,
    verify_consistency,
    verify_inclusion,
)
from credits.transparency.stores import MemoryTileStore
from credits.transparency.tiles import (
    TileError,
    TileHashSource,
    append_entries,
    read_entries,
    write_files,
)

FAST = settings(max_examples=25, deadline=None)


def entries_of(n: int, salt: int = 0) -> list[bytes]:
    return [f"entry {salt}:{i}".encode() for i in range(n)]


def tree_of(entries: list[bytes]) -> MemoryTree:
    tree = MemoryTree()
    for entry in entries:
        tree.append(leaf_hash(entry))
    return tree


class Reference:
    """RFC 9162 §2.1 word for word, over the leaves: MTH, PATH and PROOF."""

    def __init__(self, entries: list[bytes]) -> None:
        self.mth: Callable[[int, int], bytes] = cache(self._mth)
        self.leaves = [leaf_hash(e) for e in entries]

    def _mth(self, start: int, end: int) -> bytes:
        if end - start == 1:
            return self.leaves[start]
        k = split_point(end - start)
        return node_hash(self.mth(start, start + k), self.mth(start + k, end))

    def path(self, m: int, start: int, end: int) -> list[bytes]:
        if end - start == 1:
            return []
        k = split_point(end - start)
        if m < k:
            return [*self.path(m, start, start + k), self.mth(start + k, end)]
        return [*self.path(m - k, start + k, end), self.mth(start, start + k)]

    def subproof(self, m: int, start: int, end: int, whole: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if whole else [self.mth(start, end)]
        k = split_point(n)
        if m <= k:
            return [*self.subproof(m, start, start + k, whole), self.mth(start + k, end)]
        return [*self.subproof(m - k, start + k, end, False), self.mth(start, start + k)]


def tiled(batches: list[int]) -> tuple[MemoryTileStore, list[bytes], list[int]]:
    """A tile store grown batch by batch, every entry, and the size after each batch."""
    store, entries, sizes = MemoryTileStore(), [], []
    for number, count in enumerate(batches):
        batch = entries_of(count, salt=number)
        write_files(store, append_entries(store, len(entries), batch))
        entries += batch
        sizes.append(len(entries))
    return store, entries, sizes


@FAST
@given(st.integers(min_value=1, max_value=300))
def test_every_inclusion_and_consistency_proof_verifies_and_matches_the_rfc(n: int) -> None:
    entries = entries_of(n)
    tree, reference = tree_of(entries), Reference(entries)
    roots = [EMPTY_ROOT] + [tree.root(m) for m in range(1, n + 1)]
    assert roots[n] == reference.mth(0, n)
    for index in range(n):
        proof = inclusion_proof(tree, index, n)
        assert proof == reference.path(index, 0, n)
        assert verify_inclusion(leaf_hash(entries[index]), index, n, proof, roots[n])
    for m in range(n + 1):
        proof = consistency_proof(tree, m, n)
        if 0 < m < n:
            assert proof == reference.subproof(m, 0, n, True)
        assert verify_consistency(m, n, proof, roots[m], roots[n])


@FAST
@given(st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=4))
def test_proofs_from_tiles_equal_proofs_from_the_leaves_at_every_batch(
    batches: list[int],
) -> None:
    store, entries, sizes = tiled(batches)
    tree = tree_of(entries)
    for size in sizes:
        source = TileHashSource(store, size)
        assert tree_root(source, size) == tree.root(size)
        assert read_entries(store, size, 0, size) == entries[:size]
        for index in range(0, size, 7):
            assert inclusion_proof(source, index, size) == inclusion_proof(tree, index, size)
        for old in range(0, size + 1, 5):
            assert consistency_proof(source, old, size) == consistency_proof(tree, old, size)


def test_proofs_from_tiles_hold_across_three_tile_levels() -> None:
    # 65,536 entries fill a level-1 tile, so this size has tiles at levels 0, 1 and 2.
    store, entries, sizes = tiled([40_000, 1, 25_800, 700])
    tree = tree_of(entries)
    for size in sizes:
        source = TileHashSource(store, size)
        assert tree_root(source, size) == tree.root(size)
        for index in (0, 255, 256, 65_535, 65_536, size // 3, size - 1):
            if index < size:
                assert inclusion_proof(source, index, size) == inclusion_proof(tree, index, size)
        for old in (1, 256, 65_536, 40_001, size - 1):
            if old <= size:
                assert consistency_proof(source, old, size) == consistency_proof(tree, old, size)


def audit(store: MemoryTileStore, size: int, root: bytes) -> bool:
    """What a monitor checks: the tiles give the root, and every entry in the
    bundles is proven in it by proofs read from the tiles."""
    try:
        source = TileHashSource(store, size)
        if tree_root(source, size) != root:
            return False
        entries = read_entries(store, size, 0, size)
        return all(
            verify_inclusion(leaf_hash(e), i, size, inclusion_proof(source, i, size), root)
            for i, e in enumerate(entries)
        )
    except TileError:
        return False


@FAST
@given(st.integers(min_value=1, max_value=300), st.data())
def test_a_flipped_byte_in_any_tile_or_bundle_fails_the_audit(n: int, data: st.DataObject) -> None:
    store, entries, _ = tiled([n])
    root = tree_of(entries).root()
    assert audit(store, n, root)
    path = data.draw(st.sampled_from(sorted(store.files)))
    content = bytearray(store.files[path])
    at = data.draw(st.integers(min_value=0, max_value=len(content) - 1))
    content[at] ^= data.draw(st.integers(min_value=1, max_value=255))
    store.files[path] = bytes(content)
    assert not audit(store, n, root)


@FAST
@given(st.integers(min_value=2, max_value=300), st.data())
def test_a_flipped_byte_in_an_entry_or_a_proof_hash_fails_verification(
    n: int, data: st.DataObject
) -> None:
    entries = entries_of(n)
    tree = tree_of(entries)
    index = data.draw(st.integers(min_value=0, max_value=n - 1))
    proof = inclusion_proof(tree, index, n)
    entry = bytearray(entries[index])
    entry[data.draw(st.integers(0, len(entry) - 1))] ^= data.draw(st.integers(1, 255))
    assert not verify_inclusion(leaf_hash(bytes(entry)), index, n, proof, tree.root())

    broken = [bytearray(h) for h in proof]
    hit = data.draw(st.integers(0, len(broken) - 1))
    broken[hit][data.draw(st.integers(0, 31))] ^= data.draw(st.integers(1, 255))
    flipped = [bytes(h) for h in broken]
    assert not verify_inclusion(leaf_hash(entries[index]), index, n, flipped, tree.root())

    old = data.draw(st.integers(min_value=1, max_value=n - 1))
    consistency = [bytearray(h) for h in consistency_proof(tree, old, n)]
    hit = data.draw(st.integers(0, len(consistency) - 1))
    consistency[hit][data.draw(st.integers(0, 31))] ^= data.draw(st.integers(1, 255))
    flipped = [bytes(h) for h in consistency]
    assert not verify_consistency(old, n, flipped, tree.root(old), tree.root())


def test_proofs_are_refused_for_indexes_and_sizes_outside_the_tree() -> None:
    tree = tree_of(entries_of(5))
    with pytest.raises(ProofError):
        inclusion_proof(tree, 5, 5)
    with pytest.raises(ProofError):
        consistency_proof(tree, 6, 5)
    with pytest.raises(ProofError):
        tree_root(tree, -1)


def test_verification_refuses_hashes_of_the_wrong_length() -> None:
    tree = tree_of(entries_of(4))
    proof = inclusion_proof(tree, 1, 4)
    leaf = leaf_hash(entries_of(4)[1])
    assert verify_inclusion(leaf, 1, 4, proof, tree.root())
    assert not verify_inclusion(leaf[:31], 1, 4, proof, tree.root())
    assert not verify_inclusion(leaf, 1, 4, [*proof[:-1], proof[-1] + b"\0"], tree.root())
