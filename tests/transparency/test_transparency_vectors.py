"""RFC 6962 Merkle trees against the published test vectors.

The eight leaves, the roots of every size 1..8 and the inclusion and
consistency proofs are the vectors Certificate Transparency implementations
share: Google's certificate-transparency C++ merkle tree tests, carried on in
transparency-dev/merkle (``proof/verify_test.go``: ``leaves``, ``roots``,
``inclusionProofs``, ``consistencyProofs``; Apache-2.0). Its inclusion vectors
number leaves from 1; here they are 0-based. The data are facts, retyped.
"""

from __future__ import annotations

import pytest

from credits.transparency.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]

# ROOTS[n - 1] is the root of the tree of the first n leaves.
ROOTS = [
    bytes.fromhex(h)
    for h in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]

H = bytes.fromhex
INCLUSION = [  # (leaf index, tree size, proof)
    (0, 1, []),
    (
        0,
        8,
        [
            H("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        5,
        8,
        [
            H("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            H("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (2, 3, [H("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        1,
        5,
        [
            H("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]

CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (
        1,
        8,
        [
            H("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            H("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            H("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            H("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            H("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]


@pytest.fixture(scope="module")
def tree() -> MemoryTree:
    tree = MemoryTree()
    for leaf in LEAVES:
        tree.append(leaf_hash(leaf))
    return tree


def test_the_empty_tree_has_the_hash_of_the_empty_string_as_root() -> None:
    assert root_from_leaf_hashes([]) == EMPTY_ROOT
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_of_every_size_match_the_published_roots(tree: MemoryTree, size: int) -> None:
    assert tree.root(size) == ROOTS[size - 1]
    assert root_from_leaf_hashes([leaf_hash(x) for x in LEAVES[:size]]) == ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_inclusion_proofs_match_and_verify_the_published_ones(
    tree: MemoryTree, index: int, size: int, proof: list[bytes]
) -> None:
    assert inclusion_proof(tree, index, size) == proof
    assert verify_inclusion(leaf_hash(LEAVES[index]), index, size, proof, ROOTS[size - 1])


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_published_inclusion_proofs_fail_for_the_wrong_leaf_index_size_or_root(
    index: int, size: int, proof: list[bytes]
) -> None:
    leaf, root = leaf_hash(LEAVES[index]), ROOTS[size - 1]
    assert not verify_inclusion(leaf, index + 1, size, proof, root)
    assert not verify_inclusion(leaf, index, size * 2, proof, root)
    assert not verify_inclusion(leaf_hash(b"WrongLeaf"), index, size, proof, root)
    assert not verify_inclusion(leaf, index, size, proof, EMPTY_ROOT)
    assert not verify_inclusion(leaf, index, size, [*proof, root], root)
    assert not verify_inclusion(leaf, index, size, [root, *proof], root)
    if proof:
        assert not verify_inclusion(leaf, index, size, proof[:-1], root)


@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY)
def test_consistency_proofs_match_and_verify_the_published_ones(
    tree: MemoryTree, size1: int, size2: int, proof: list[bytes]
) -> None:
    assert consistency_proof(tree, size1, size2) == proof
    assert verify_consistency(size1, size2, proof, ROOTS[size1 - 1], ROOTS[size2 - 1])


@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY[1:])
def test_published_consistency_proofs_fail_for_wrong_sizes_roots_or_paths(
    size1: int, size2: int, proof: list[bytes]
) -> None:
    root1, root2 = ROOTS[size1 - 1], ROOTS[size2 - 1]
    assert not verify_consistency(size1 - 1, size2, proof, root1, root2)
    assert not verify_consistency(size1 + 1, size2, proof, root1, root2)
    assert not verify_consistency(size1, size2 * 2, proof, root1, root2)
    assert not verify_consistency(size1, size2, proof, root2, root1)
    assert not verify_consistency(size1, size2, [], root1, root2)
    assert not verify_consistency(size1, size2, proof[:-1], root1, root2)
    assert not verify_consistency(size1, size2, [*proof, root2], root1, root2)
    assert not verify_consistency(size1, size2, [proof[0], *proof], root1, root2)


def test_the_empty_tree_is_consistent_with_every_tree_by_an_empty_proof() -> None:
    assert verify_consistency(0, 8, [], EMPTY_ROOT, ROOTS[7])
    assert not verify_consistency(0, 8, [], ROOTS[0], ROOTS[7])
    assert not verify_consistency(0, 8, [ROOTS[0]], EMPTY_ROOT, ROOTS[7])


def test_a_tree_is_consistent_only_with_its_own_root_at_the_same_size() -> None:
    assert verify_consistency(8, 8, [], ROOTS[7], ROOTS[7])
    assert not verify_consistency(8, 8, [], ROOTS[7], ROOTS[6])
    assert not verify_consistency(8, 7, [], ROOTS[7], ROOTS[6])
