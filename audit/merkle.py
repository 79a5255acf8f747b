"""The RFC 6962 / RFC 9162 Merkle tree: roots, inclusion and consistency proofs, and their checks.

Written by hand, on purpose and with the standard's test vectors in the tests: no maintained
Python library implements RFC 9162 proofs (the Go reference is transparency-dev/merkle), and
these few functions are the evidence an auditor relies on. Hashes are raw 32-byte ``bytes``.

Proof generation reads leaf hashes through a ``LeafSource`` (a function returning the leaf hashes
of ``[start, end)``), so a log of millions of events never has to sit in memory at once; the
hashes of complete, aligned subtrees never change in an append-only log, so ``SubtreeCache``
keeps them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

LeafSource = Callable[[int, int], Sequence[bytes]]


def hash_leaf(entry: bytes) -> bytes:
    """SHA-256(0x00 || entry)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two smaller than ``n`` (RFC 6962 section 2.1), for ``n >= 2``."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaves: Sequence[bytes]) -> bytes:
    """The Merkle tree hash of a list of leaf hashes."""
    builder = RootBuilder()
    for leaf in leaves:
        builder.append(leaf)
    return builder.root()


class RootBuilder:
    """Streams leaf hashes in and gives the root at any size: O(log n) memory, one pass.

    Holds the roots of the complete subtrees (the "compact range"); the root of the whole tree is
    those folded right to left, which is exactly RFC 6962's recursive definition.
    """

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[bytes] = []

    def append(self, leaf: bytes) -> None:
        """Add the next leaf hash."""
        node = leaf
        size = self.size
        stack = self._stack
        while size & 1:
            node = hashlib.sha256(b"\x01" + stack.pop() + node).digest()
            size >>= 1
        stack.append(node)
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Add several leaf hashes in order."""
        for leaf in leaves:
            self.append(leaf)

    @classmethod
    def resumed(cls, size: int, stack: Sequence[bytes]) -> RootBuilder:
        """A builder at ``size`` leaves, from their compact range (as :meth:`stack` gives it);
        ``ValueError`` unless it holds one subtree per bit of ``size``."""
        if size < 0 or len(stack) != size.bit_count():
            raise ValueError(f"a compact range of {size} leaves holds {size.bit_count()} subtrees")
        builder = cls()
        builder.size, builder._stack = size, list(stack)
        return builder

    def append_subtree(self, node: bytes, height: int) -> None:
        """Add the root of the next ``2**height`` leaves at once; ``ValueError`` unless the
        subtree is aligned (the size so far a multiple of its own), as every tree node is."""
        if height < 0 or self.size % (1 << height):
            raise ValueError(f"a subtree of {1 << max(height, 0)} leaves cannot start at leaf {self.size}")
        size = self.size >> height
        stack = self._stack
        while size & 1:
            node = hashlib.sha256(b"\x01" + stack.pop() + node).digest()
            size >>= 1
        stack.append(node)
        self.size += 1 << height

    def root(self) -> bytes:
        """The root of the leaves added so far."""
        return fold(self._stack)

    def stack(self) -> list[bytes]:
        """The roots of the complete subtrees, largest (leftmost) first: the compact range."""
        return list(self._stack)

    def copy(self) -> RootBuilder:
        """An independent builder in the same state."""
        twin = RootBuilder()
        twin.size, twin._stack = self.size, list(self._stack)
        return twin


def fold(stack: Sequence[bytes]) -> bytes:
    """The root over a compact range: its subtree roots hashed together right to left."""
    if not stack:
        return EMPTY_ROOT
    node = stack[-1]
    for left in reversed(stack[:-1]):
        node = hash_children(left, node)
    return node


def aligned_subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """``[start, end)`` as the fewest aligned complete subtrees, left to right, each as
    ``(first leaf, height)``: the subtrees a proof of a range gives for the leaves around it."""
    found = []
    while start < end:
        height = (end - start).bit_length() - 1
        if start:
            height = min(height, (start & -start).bit_length() - 1)  # no taller than start's alignment
        found.append((start, height))
        start += 1 << height
    return found


class SubtreeCache:
    """Hashes of the subtree ``[start, end)`` over a leaf source, remembering complete ones.

    Only aligned subtrees whose size is a power of two of at least ``min_cached`` leaves are
    kept: they are fixed once written, whatever the log's size later. A subtree smaller than
    ``fetch_below`` leaves is hashed from one read of its leaves.
    """

    def __init__(self, leaves: LeafSource, *, min_cached: int = 256, fetch_below: int = 4096) -> None:
        self._leaves = leaves
        self._min_cached = min_cached
        self._fetch_below = fetch_below
        self._cache: dict[tuple[int, int], bytes] = {}

    def hash(self, start: int, end: int) -> bytes:
        """The Merkle tree hash of leaves ``[start, end)``."""
        n = end - start
        if n <= 0:
            return EMPTY_ROOT
        perfect = n & (n - 1) == 0 and start % n == 0
        if perfect and n >= self._min_cached:
            cached = self._cache.get((start, n))
            if cached is not None:
                return cached
        if n <= self._fetch_below:
            value = root_of(self._leaves(start, end))
        else:
            k = split_point(n)
            value = hash_children(self.hash(start, start + k), self.hash(start + k, end))
        if perfect and n >= self._min_cached:
            self._cache[(start, n)] = value
        return value


def inclusion_proof(tree: SubtreeCache, index: int, size: int) -> list[bytes]:
    """RFC 9162 section 2.1.3.1: the audit path of leaf ``index`` in the tree of ``size``."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = split_point(end - start)
        if index < start + k:
            path.append(tree.hash(start + k, end))
            end = start + k
        else:
            path.append(tree.hash(start, start + k))
            start += k
    path.reverse()
    return path


def consistency_proof(tree: SubtreeCache, first: int, second: int) -> list[bytes]:
    """RFC 9162 section 2.1.4.1: proof that the tree of ``first`` leaves is a prefix of ``second``."""
    if not 0 <= first <= second:
        raise ValueError(f"no consistency proof from size {first} to size {second}")
    if first in (0, second):
        return []
    return _subproof(tree, first, 0, second, True)


def _subproof(tree: SubtreeCache, m: int, start: int, end: int, complete: bool) -> list[bytes]:
    n = end - start
    if m == n:
        return [] if complete else [tree.hash(start, end)]
    k = split_point(n)
    if m <= k:
        return [*_subproof(tree, m, start, start + k, complete), tree.hash(start + k, end)]
    return [*_subproof(tree, m - k, start + k, end, False), tree.hash(start, start + k)]


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes | None:
    """RFC 9162 section 2.1.3.2: the root a proof leads to, or ``None`` when it cannot be valid."""
    if not 0 <= index < size or len(leaf) != HASH_SIZE:
        return None
    if any(len(node) != HASH_SIZE for node in proof):
        return None
    fn, sn = index, size - 1
    node = leaf
    for sibling in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            node = hash_children(sibling, node)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            node = hash_children(node, sibling)
        fn >>= 1
        sn >>= 1
    return node if sn == 0 else None


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """Whether ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree of ``size`` with ``root``."""
    return root_from_inclusion(index, size, leaf, proof) == root


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2: whether ``proof`` shows tree ``first`` is a prefix of ``second``."""
    if not 0 <= first <= second or any(len(node) != HASH_SIZE for node in proof):
        return False
    if first == second:
        return not proof and first_root == second_root
    if first == 0:
        return not proof and first_root == EMPTY_ROOT
    if not proof:
        return False
    nodes = list(proof)
    if first & (first - 1) == 0:  # first is a power of two: its root is the proof's implicit start
        nodes.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = nodes[0]
    for node in nodes[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = hash_children(node, fr)
            sr = hash_children(node, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = hash_children(sr, node)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


def leaves_from_list(leaves: Sequence[bytes]) -> LeafSource:
    """A leaf source over an in-memory list (tests, offline verification of an export)."""

    def read(start: int, end: int) -> Sequence[bytes]:
        return leaves[start:end]

    return read
