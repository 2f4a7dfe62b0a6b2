"""RFC 9162 (Certificate Transparency v2) Merkle trees over SHA-256.

Why this module exists: a block commits to its transactions with a Merkle
root, and the transparency log (``ledger.tlog``) proves that a transaction is
in the log and that the log only ever grew. An outside auditor must be able to
check those proofs with any RFC 9162 implementation, so we follow the RFC to
the byte:

- leaf hash  = SHA-256(0x00 || data)
- node hash  = SHA-256(0x01 || left || right)
- empty root = SHA-256(b"")

The 0x00/0x01 prefixes keep a leaf from ever being mistaken for an interior
node (a second-preimage defence).

The module holds three kinds of function:

- ``compute_root``: the fast, iterative Merkle Tree Hash used for a block's
  transaction root.
- ``compute_inclusion_proof`` / ``compute_consistency_proof``: reference
  implementations that follow the RFC's recursive PATH and SUBPROOF definitions
  over an in-memory list. They are clear rather than fast; the log computes
  the same proofs from stored nodes.
- ``verify_inclusion`` / ``verify_consistency``: the RFC 9162 §2.1.3.2 and
  §2.1.4.2 verification algorithms. They raise ``ProofError`` on any failure
  and return ``None`` on success, so a caller cannot forget to look at a
  boolean.

Edge semantics follow the upstream transparency-dev/merkle probes (see
``tests/vectors/README.md``): a consistency proof from size 0 is always
rejected, and ``size1 == size2`` is valid only with an empty proof and equal
roots. In that equal-size case we compare the roots without checking their
length, as upstream does (one upstream probe uses 12-byte roots and expects
success); everywhere else every hash must be exactly 32 bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from ledger.errors import LedgerError

__all__ = [
    "EMPTY_ROOT",
    "HASH_BYTES",
    "PROOF_HASHES_MAX",
    "TREE_SIZE_MAX",
    "MerkleError",
    "ProofError",
    "compute_consistency_proof",
    "compute_inclusion_proof",
    "compute_root",
    "hash_children",
    "hash_leaf",
    "verify_consistency",
    "verify_inclusion",
]

HASH_BYTES = 32
"""Length of every SHA-256 hash: leaf hashes, node hashes, roots, proof items."""

TREE_SIZE_MAX = 2**63 - 1
"""Largest tree size we accept: it fits a signed 64-bit SQLite INTEGER."""

PROOF_HASHES_MAX = 64
"""Longest proof we read. Every valid proof for a tree of at most
``TREE_SIZE_MAX`` leaves is shorter, so a longer one is rejected before any
hashing (a cheap guard against oversized input)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()
"""Root of the tree with no leaves (RFC 9162 §2.1.1: MTH({}) = SHA-256())."""

# An inclusion path has at most one hash per level below the root, and a
# consistency path at most one more (the seed hash). Both fit the bound.
assert TREE_SIZE_MAX.bit_length() + 1 <= PROOF_HASHES_MAX
assert len(EMPTY_ROOT) == HASH_BYTES


class MerkleError(LedgerError, ValueError):
    """A Merkle function got arguments it cannot work with (bad hash, bad index)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(code, detail)


class ProofError(MerkleError):
    """A proof does not verify: code is invalid_inclusion_proof or invalid_consistency_proof."""


_INCLUSION = "invalid_inclusion_proof"
_CONSISTENCY = "invalid_consistency_proof"


def hash_leaf(data: bytes) -> bytes:
    """Return the RFC 9162 leaf hash SHA-256(0x00 || data)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """Return the RFC 9162 interior node hash SHA-256(0x01 || left || right)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def compute_root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return the Merkle Tree Hash over already-hashed leaves.

    Works level by level: pair neighbours, and carry an unpaired last node up
    unchanged. That gives exactly the RFC tree, which splits at the largest
    power of two below n, because the unpaired node at each level is the
    root of the ragged right edge. Iterative and list-based, so 10,000
    leaves cost ~10,000 hash calls and no recursion.
    """
    _check_leaf_hashes(leaf_hashes)
    return _root_of_checked(leaf_hashes)


def _root_of_checked(leaf_hashes: Sequence[bytes]) -> bytes:
    """compute_root without the length check, for leaves already checked once."""
    if not leaf_hashes:
        return EMPTY_ROOT
    sha256 = hashlib.sha256
    level = list(leaf_hashes)
    while len(level) > 1:
        pairs = iter(level)  # zip(pairs, pairs) yields neighbours; an odd last node is left over
        parents = [
            sha256(_NODE_PREFIX + left + right).digest()
            for left, right in zip(pairs, pairs, strict=False)
        ]
        if len(level) % 2:
            parents.append(level[-1])
        level = parents
    return level[0]


def compute_inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """Return the RFC 9162 §2.1.3.1 inclusion path for leaf ``index``.

    Reference implementation of PATH(m, D[n]): walk down from the root,
    recording the hash of the subtree we did not enter; the RFC lists the
    deepest sibling first, so the walk's list is reversed at the end.
    """
    _check_leaf_hashes(leaf_hashes)
    size = len(leaf_hashes)
    if not 0 <= index < size:
        raise MerkleError("index_out_of_range", f"index {index} not in [0, {size})")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        middle = start + _largest_power_of_two_below(end - start)
        if index < middle:
            path.append(_root_of_checked(leaf_hashes[middle:end]))
            end = middle
        else:
            path.append(_root_of_checked(leaf_hashes[start:middle]))
            start = middle
    path.reverse()
    return path


def compute_consistency_proof(leaf_hashes: Sequence[bytes], size1: int) -> list[bytes]:
    """Return the RFC 9162 §2.1.4.1 consistency proof from ``size1`` to the whole list.

    Reference implementation of SUBPROOF(m, D[n], b), with ``m`` kept
    relative to the current subtree's start. ``size1 == 0`` is rejected:
    there is nothing to prove about an empty tree (see module docstring).
    """
    _check_leaf_hashes(leaf_hashes)
    size2 = len(leaf_hashes)
    if not 0 < size1 <= size2:
        raise MerkleError("size_out_of_range", f"size1 {size1} not in [1, {size2}]")
    proof: list[bytes] = []
    remaining, start, end = size1, 0, size2
    whole_old_tree_is_subtree = True  # the RFC's flag b
    while remaining != end - start:
        middle = start + _largest_power_of_two_below(end - start)
        if remaining <= middle - start:
            proof.append(_root_of_checked(leaf_hashes[middle:end]))
            end = middle
        else:
            proof.append(_root_of_checked(leaf_hashes[start:middle]))
            remaining -= middle - start
            start = middle
            whole_old_tree_is_subtree = False
    if not whole_old_tree_is_subtree:
        proof.append(_root_of_checked(leaf_hashes[start:end]))
    proof.reverse()
    return proof


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree ``(size, root)``.

    RFC 9162 §2.1.3.2. The size is bound only through the root, so take both
    from the same signed tree head. Raises ``ProofError`` (invalid_inclusion_proof).
    """
    # The index must name a leaf of the tree.
    if not 0 <= index < size:
        raise ProofError(_INCLUSION, f"index {index} not in [0, {size})")
    # The tree must be one we could ever hold.
    if size > TREE_SIZE_MAX:
        raise ProofError(_INCLUSION, f"size {size} exceeds {TREE_SIZE_MAX}")
    # The leaf hash must be a real SHA-256 output, not an empty or short string.
    if len(leaf_hash) != HASH_BYTES:
        raise ProofError(_INCLUSION, f"leaf hash is {len(leaf_hash)} bytes")
    _check_proof_shape(proof, root, _INCLUSION)
    computed = _root_from_inclusion_path(leaf_hash, index, size, proof)
    if computed != root:
        raise ProofError(_INCLUSION, "computed root does not match")


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Check that tree ``(size2, root2)`` extends tree ``(size1, root1)``.

    RFC 9162 §2.1.4.2, with the upstream edge rules: size1 == 0 always fails,
    and size1 == size2 needs an empty proof and equal roots (compared without
    a length check, as upstream does). Raises ``ProofError``
    (invalid_consistency_proof).
    """
    # A log never shrinks.
    if size2 < size1:
        raise ProofError(_CONSISTENCY, f"size2 {size2} < size1 {size1}")
    # An empty first tree proves nothing, so we refuse it outright.
    if size1 <= 0:
        raise ProofError(_CONSISTENCY, f"size1 {size1} is not positive")
    # The tree must be one we could ever hold.
    if size2 > TREE_SIZE_MAX:
        raise ProofError(_CONSISTENCY, f"size2 {size2} exceeds {TREE_SIZE_MAX}")
    if size1 == size2:
        # Same size: the only valid proof is empty, and the roots must match.
        if len(proof) != 0:
            raise ProofError(_CONSISTENCY, "sizes are equal but proof is not empty")
        if root1 != root2:
            raise ProofError(_CONSISTENCY, "sizes are equal but roots differ")
        return
    # A growing tree always needs at least one hash.
    if len(proof) == 0:
        raise ProofError(_CONSISTENCY, "proof is empty")
    # The first root must be a real SHA-256 output.
    if len(root1) != HASH_BYTES:
        raise ProofError(_CONSISTENCY, f"root1 is {len(root1)} bytes")
    _check_proof_shape(proof, root2, _CONSISTENCY)
    computed1, computed2 = _roots_from_consistency_path(size1, size2, root1, proof)
    if computed1 != root1:
        raise ProofError(_CONSISTENCY, "computed root1 does not match")
    if computed2 != root2:
        raise ProofError(_CONSISTENCY, "computed root2 does not match")


def _check_leaf_hashes(leaf_hashes: Sequence[bytes]) -> None:
    """Reject any leaf hash that is not 32 bytes before building on it."""
    # Fast path in C: a block's 10,000 leaves are checked in well under a millisecond.
    if set(map(len, leaf_hashes)) <= {HASH_BYTES}:
        return
    for position, leaf_hash in enumerate(leaf_hashes):
        if len(leaf_hash) != HASH_BYTES:
            raise MerkleError(
                "invalid_leaf_hash", f"leaf hash {position} is {len(leaf_hash)} bytes"
            )


def _check_proof_shape(proof: Sequence[bytes], root: bytes, code: str) -> None:
    """Bound the proof length and require every hash to be 32 bytes."""
    # Bound the work before hashing anything.
    if len(proof) > PROOF_HASHES_MAX:
        raise ProofError(code, f"proof has {len(proof)} hashes, max {PROOF_HASHES_MAX}")
    # The root must be a real SHA-256 output.
    if len(root) != HASH_BYTES:
        raise ProofError(code, f"root is {len(root)} bytes")
    # Every proof item must be a real SHA-256 output (rejects inserted garbage).
    for position, item in enumerate(proof):
        if len(item) != HASH_BYTES:
            raise ProofError(code, f"proof hash {position} is {len(item)} bytes")


def _root_from_inclusion_path(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """RFC 9162 §2.1.3.2 steps 2-5: fold the path into a root, or fail on its length.

    ``fn`` is the node's index at the current level and ``sn`` the last
    node's index. When ``fn`` is a right child, or the last node on a ragged
    level (``fn == sn``, no right sibling exists), the proof item goes on the
    left; a last node then skips the levels where it has no sibling.
    """
    fn, sn = index, size - 1
    node = leaf_hash
    for item in proof:
        if sn == 0:
            raise ProofError(_INCLUSION, "proof is longer than the path")
        if fn & 1 or fn == sn:
            node = hash_children(item, node)
            while (fn & 1) == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            node = hash_children(node, item)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(_INCLUSION, "proof is shorter than the path")
    return node


def _roots_from_consistency_path(
    size1: int, size2: int, root1: bytes, proof: Sequence[bytes]
) -> tuple[bytes, bytes]:
    """RFC 9162 §2.1.4.2 steps 2-7: rebuild both roots from one path.

    Assumes 0 < size1 < size2 and a non-empty proof. When the old tree is a
    perfect subtree (size1 a power of two) its root is the path's seed, so it
    is prepended rather than sent.
    """
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    old_node = new_node = path[0]
    for item in path[1:]:
        if sn == 0:
            raise ProofError(_CONSISTENCY, "proof is longer than the path")
        if fn & 1 or fn == sn:
            old_node = hash_children(item, old_node)
            new_node = hash_children(item, new_node)
            while (fn & 1) == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            new_node = hash_children(new_node, item)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(_CONSISTENCY, "proof is shorter than the path")
    return old_node, new_node


def _largest_power_of_two_below(n: int) -> int:
    """Return the largest power of two strictly less than n (n >= 2): the RFC's split k."""
    assert n >= 2
    return 1 << ((n - 1).bit_length() - 1)
