"""RFC 6962 / 9162 Merkle tree: the standard's vectors, reproduced as data, and every proof shape."""

from __future__ import annotations

import hashlib

import pytest

from audit import merkle

# transparency-dev/merkle testonly/constants.go: leaf inputs, and the root for each size 0..8.
LEAF_INPUTS = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
CONSISTENCY = [
    (
        2,
        8,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
LEAVES = [merkle.hash_leaf(bytes.fromhex(h)) for h in LEAF_INPUTS]


def _tree(leaves: list[bytes]) -> merkle.SubtreeCache:
    return merkle.SubtreeCache(merkle.leaves_from_list(leaves), min_cached=2, fetch_below=2)


@pytest.mark.parametrize("size", range(9))
def test_root_matches_rfc6962_vector(size: int) -> None:
    assert merkle.root_of(LEAVES[:size]).hex() == ROOTS[size]
    assert _tree(LEAVES).hash(0, size).hex() == ROOTS[size]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_inclusion_proof_matches_vector(index: int, size: int, proof: list[str]) -> None:
    assert [p.hex() for p in merkle.inclusion_proof(_tree(LEAVES), index, size)] == proof
    nodes = [bytes.fromhex(p) for p in proof]
    assert merkle.verify_inclusion(index, size, LEAVES[index], nodes, bytes.fromhex(ROOTS[size]))


@pytest.mark.parametrize(("first", "second", "proof"), CONSISTENCY)
def test_consistency_proof_matches_vector(first: int, second: int, proof: list[str]) -> None:
    assert [p.hex() for p in merkle.consistency_proof(_tree(LEAVES), first, second)] == proof
    nodes = [bytes.fromhex(p) for p in proof]
    assert merkle.verify_consistency(
        first, second, bytes.fromhex(ROOTS[first]), bytes.fromhex(ROOTS[second]), nodes
    )


MANY = [merkle.hash_leaf(hashlib.sha256(str(i).encode()).digest()) for i in range(40)]
MANY_ROOTS = [merkle.root_of(MANY[:n]) for n in range(len(MANY) + 1)]


def test_every_inclusion_proof_verifies_and_a_changed_one_does_not() -> None:
    tree = _tree(MANY)
    for size in range(1, len(MANY) + 1):
        for index in range(size):
            proof = merkle.inclusion_proof(tree, index, size)
            root = MANY_ROOTS[size]
            assert merkle.verify_inclusion(index, size, MANY[index], proof, root)
            assert not merkle.verify_inclusion(index, size, MANY[(index + 1) % 40], proof, root)
            if proof:
                flipped = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
                assert not merkle.verify_inclusion(index, size, MANY[index], flipped, root)
                assert not merkle.verify_inclusion(index, size, MANY[index], proof[:-1], root)
            assert not merkle.verify_inclusion(index, size, MANY[index], [*proof, b"\xab" * 32], root)
            if size > 1:
                assert not merkle.verify_inclusion((index + 1) % size, size, MANY[index], proof, root)


def test_every_consistency_proof_verifies_and_a_changed_one_does_not() -> None:
    tree = _tree(MANY)
    for second in range(len(MANY) + 1):
        for first in range(second + 1):
            proof = merkle.consistency_proof(tree, first, second)
            a, b = MANY_ROOTS[first], MANY_ROOTS[second]
            assert merkle.verify_consistency(first, second, a, b, proof)
            if 0 < first < second:
                flipped = [bytes([proof[0][0] ^ 0x80]) + proof[0][1:], *proof[1:]]
                assert not merkle.verify_consistency(first, second, a, b, flipped)
                assert not merkle.verify_consistency(first, second, a, b, [*proof, b"\xcd" * 32])
                assert not merkle.verify_consistency(first, second, MANY_ROOTS[first - 1], b, proof)
                assert not merkle.verify_consistency(first, second, a, b, [])


def test_degenerate_cases() -> None:
    assert merkle.verify_consistency(4, 4, MANY_ROOTS[4], MANY_ROOTS[4], [])
    assert not merkle.verify_consistency(4, 4, MANY_ROOTS[4], MANY_ROOTS[5], [])
    assert merkle.verify_consistency(0, 8, merkle.EMPTY_ROOT, MANY_ROOTS[8], [])
    assert not merkle.verify_consistency(8, 6, MANY_ROOTS[8], MANY_ROOTS[6], [])
    assert not merkle.verify_inclusion(8, 8, MANY[0], [], MANY_ROOTS[8])
    assert not merkle.verify_inclusion(0, 8, b"\x00" * 31, [], MANY_ROOTS[8])
    with pytest.raises(ValueError, match="not in a tree of size"):
        merkle.inclusion_proof(_tree(MANY), 8, 8)
    with pytest.raises(ValueError, match="no consistency proof"):
        merkle.consistency_proof(_tree(MANY), 5, 3)


def test_split_point_is_rfc6962s_largest_power_of_two_below() -> None:
    assert {n: merkle.split_point(n) for n in (2, 3, 4, 5, 8, 9, 1000)} == {
        2: 1,
        3: 2,
        4: 2,
        5: 4,
        8: 4,
        9: 8,
        1000: 512,
    }


def test_cached_subtrees_give_the_same_root_as_a_fresh_computation() -> None:
    leaves = [merkle.hash_leaf(i.to_bytes(4, "big")) for i in range(5000)]
    reads: list[tuple[int, int]] = []

    def source(start: int, end: int) -> list[bytes]:
        reads.append((start, end))
        return leaves[start:end]

    tree = merkle.SubtreeCache(source, min_cached=256, fetch_below=512)
    for size in (1, 255, 256, 257, 1024, 4097, 5000):
        assert tree.hash(0, size) == merkle.root_of(leaves[:size])
    reads.clear()
    assert tree.hash(0, 4096) == merkle.root_of(leaves[:4096])
    assert reads == []  # a complete subtree is never read twice


def test_a_range_placed_in_the_tree_by_the_subtrees_around_it() -> None:
    """Any [start, end) of any tree: the aligned subtrees left and right of it, with its own
    leaves, fold into the tree's root (what a window export's proof holds)."""
    for n in range(0, 40):
        leaves = [hashlib.sha256(bytes([i])).digest() for i in range(n)]
        tree = merkle.SubtreeCache(merkle.leaves_from_list(leaves), min_cached=1, fetch_below=1)
        for start in range(n + 1):
            for end in range(start, n + 1):
                left = [tree.hash(s, s + (1 << h)) for s, h in merkle.aligned_subtrees(0, start)]
                builder = merkle.RootBuilder.resumed(start, left)
                builder.extend(leaves[start:end])
                for s, h in merkle.aligned_subtrees(end, n):
                    builder.append_subtree(tree.hash(s, s + (1 << h)), h)
                assert builder.size == n and builder.root() == merkle.root_of(leaves)
    assert merkle.aligned_subtrees(5, 13) == [(5, 0), (6, 1), (8, 2), (12, 0)]
    assert merkle.aligned_subtrees(0, 6) == [(0, 2), (4, 1)]


def test_a_subtree_that_is_no_tree_node_is_refused() -> None:
    with pytest.raises(ValueError, match="compact range of 5 leaves"):
        merkle.RootBuilder.resumed(5, [b"x"])  # 5 leaves are two subtrees (4 and 1)
    builder = merkle.RootBuilder.resumed(2, [b"x" * 32])
    with pytest.raises(ValueError, match="cannot start at leaf 2"):
        builder.append_subtree(b"y" * 32, 2)  # 4 leaves cannot start at leaf 2
