"""RFC 9162 Merkle trees (the same tree as RFC 6962): hashes, roots and proofs.

Leaves hash as SHA-256(0x00 || entry), interior nodes as SHA-256(0x01 || left ||
right), and a tree of n leaves splits at the largest power of two below n.

Proofs are generated from a :class:`HashSource`, which answers the hash of any
complete subtree by its (level, index): level 0 holds the leaf hashes, and the
node at (level, index) covers leaves ``index * 2**level`` up to
``(index + 1) * 2**level``. Tiles store exactly those nodes, so a proof costs a
few tile reads instead of rehashing subtrees from their leaves.

Only the standard library is imported: the standalone verifier uses this module.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Protocol

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
# MTH({}) in RFC 9162 §2.1.1: the hash of the empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(ValueError):
    """A proof was asked for sizes or indexes that no tree has."""


class HashSource(Protocol):
    """Reads stored hashes of complete subtrees."""

    def hash_at(self, level: int, index: int) -> bytes:
        """The hash of the complete subtree of ``2**level`` leaves starting at
        leaf ``index * 2**level``; callers ask only for subtrees inside the tree."""
        ...


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly below ``n`` (n ≥ 2): where MTH splits."""
    return 1 << ((n - 1).bit_length() - 1)


def perfect_root(hashes: Sequence[bytes]) -> bytes:
    """The root over a power-of-two number of hashes, pairing neighbours upwards."""
    level = list(hashes)
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH over the given leaf hashes (EMPTY_ROOT for none)."""
    if not hashes:
        return EMPTY_ROOT
    # The tree's complete subtrees, left to right, are the binary digits of n.
    peaks: list[bytes] = []
    start = 0
    for level in reversed(range(len(hashes).bit_length())):
        width = 1 << level
        if len(hashes) & width:
            peaks.append(perfect_root(hashes[start : start + width]))
            start += width
    return _fold_peaks(peaks)


def _fold_peaks(peaks: list[bytes]) -> bytes:
    """Joins complete subtrees, largest first, into their MTH: right to left."""
    result = peaks[-1]
    for peak in reversed(peaks[:-1]):
        result = node_hash(peak, result)
    return result


def range_hash(source: HashSource, start: int, end: int) -> bytes:
    """MTH(D[start:end]) for a range that starts a subtree of the tree: the
    range is cut into complete subtrees, largest first, and folded."""
    peaks: list[bytes] = []
    while start < end:
        level = (end - start).bit_length() - 1
        peaks.append(source.hash_at(level, start >> level))
        start += 1 << level
    return _fold_peaks(peaks)


def tree_root(source: HashSource, size: int) -> bytes:
    """The root of the tree of the first ``size`` leaves."""
    if size < 0:
        raise ProofError(f"a tree size is zero or more, not {size}")
    return EMPTY_ROOT if size == 0 else range_hash(source, 0, size)


def inclusion_proof(source: HashSource, index: int, size: int) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 §2.1.3.1, leaf-side sibling first."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size} leaves")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = split_point(end - start)
        if index < start + k:
            path.append(range_hash(source, start + k, end))
            end = start + k
        else:
            path.append(range_hash(source, start, start + k))
            start += k
    path.reverse()
    return path


def consistency_proof(source: HashSource, size1: int, size2: int) -> list[bytes]:
    """PROOF(size1, D[0:size2]) of RFC 9162 §2.1.4.1; empty when size1 is 0 or
    equal to size2."""
    if not 0 <= size1 <= size2:
        raise ProofError(f"no consistency proof from size {size1} to size {size2}")
    if size1 in (0, size2):
        return []
    proof: list[bytes] = []
    start, end, m = 0, size2, size1
    whole = True  # SUBPROOF's b: the old tree so far is a whole subtree of it
    while m != end:
        k = split_point(end - start)
        if m - start <= k:
            proof.append(range_hash(source, start + k, end))
            end = start + k
        else:
            proof.append(range_hash(source, start, start + k))
            start += k
            whole = False
    if not whole:
        proof.append(range_hash(source, start, end))
    proof.reverse()
    return proof


def verify_inclusion(
    entry_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether ``proof`` shows the leaf hash at ``index`` in the tree of ``size``
    leaves with ``root`` (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < size or not _well_formed(entry_hash, root, *proof):
        return False
    fn, sn, r = index, size - 1, entry_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and hmac.compare_digest(r, root)


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> bool:
    """Whether ``proof`` shows the tree of ``size1`` leaves with ``root1`` is a
    prefix of the tree of ``size2`` leaves with ``root2`` (RFC 9162 §2.1.4.2).

    The empty tree (root EMPTY_ROOT) is a prefix of every tree, with an empty proof.
    """
    if not 0 <= size1 <= size2 or not _well_formed(root1, root2, *proof):
        return False
    if size1 == 0:
        return not proof and hmac.compare_digest(root1, EMPTY_ROOT)
    if size1 == size2:
        return not proof and hmac.compare_digest(root1, root2)
    if not proof:
        return False
    return _walk_consistency(size1, size2, list(proof), root1, root2)


def _walk_consistency(
    size1: int, size2: int, path: list[bytes], root1: bytes, root2: bytes
) -> bool:
    if size1 & (size1 - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and hmac.compare_digest(fr, root1) and hmac.compare_digest(sr, root2)


def _well_formed(*hashes: bytes) -> bool:
    return all(len(h) == HASH_SIZE for h in hashes)


class MemoryTree:
    """A whole tree kept in memory, every complete node stored: a HashSource for
    small logs, tests, and clients that download every entry."""

    def __init__(self) -> None:
        self._levels: list[list[bytes]] = [[]]

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, leaf: bytes) -> None:
        """Adds one leaf hash and every node it completes."""
        node, level = leaf, 0
        while True:
            row = self._levels[level]
            row.append(node)
            if len(row) % 2:
                return
            node = node_hash(row[-2], row[-1])
            level += 1
            if level == len(self._levels):
                self._levels.append([])

    def hash_at(self, level: int, index: int) -> bytes:
        return self._levels[level][index]

    def root(self, size: int | None = None) -> bytes:
        return tree_root(self, self.size if size is None else size)
