"""RFC 9162 Merkle functions against the RFC 6962 reference tree and upstream probes.

The vectors in tests/vectors/ come from transparency-dev/merkle (see the
README there). Every probe in both probe files runs: the valid ones must
verify, and every ``wantErr`` one must raise ``ProofError``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ledger.merkle import (
    EMPTY_ROOT,
    HASH_BYTES,
    PROOF_HASHES_MAX,
    TREE_SIZE_MAX,
    MerkleError,
    ProofError,
    compute_consistency_proof,
    compute_inclusion_proof,
    compute_root,
    hash_children,
    hash_leaf,
    verify_consistency,
    verify_inclusion,
)

VECTORS_DIR = Path(__file__).parent / "vectors"


def load_vector(name: str) -> Any:
    return json.loads((VECTORS_DIR / name).read_text())


REFERENCE = load_vector("merkle_rfc6962_reference_tree.json")
TREE = REFERENCE["tree"]
LEAVES = [hash_leaf(bytes.fromhex(leaf)) for leaf in TREE["leaves_hex"]]
INCLUSION_PROBES = load_vector("merkle_inclusion_probes.json")["cases"]
CONSISTENCY_PROBES = load_vector("merkle_consistency_probes.json")["cases"]


def decode_b64(value: str | None) -> bytes:
    """Upstream probes write an empty hash as null or as an empty string."""
    return base64.b64decode(value) if value else b""


def probe_proof(case: dict[str, Any]) -> list[bytes]:
    return [decode_b64(item) for item in case["proof"] or []]


def rfc_mth(leaf_hashes: Sequence[bytes]) -> bytes:
    """The RFC 9162 §2.1.1 recursive definition, written literally."""
    n = len(leaf_hashes)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaf_hashes[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return hash_children(rfc_mth(leaf_hashes[:k]), rfc_mth(leaf_hashes[k:]))


def flip_bit(data: bytes, bit: int) -> bytes:
    changed = bytearray(data)
    changed[bit // 8] ^= 1 << (bit % 8)
    return bytes(changed)


def make_leaves(count: int) -> list[bytes]:
    return [hash_leaf(i.to_bytes(8, "big")) for i in range(count)]


# --- hashing -----------------------------------------------------------------


@pytest.mark.parametrize("vector", REFERENCE["hasher_vectors"], ids=lambda v: v["desc"])
def test_hasher_vectors(vector: dict[str, str]) -> None:
    if vector["kind"] == "empty_root":
        got = EMPTY_ROOT
    elif vector["kind"] == "leaf":
        got = hash_leaf(bytes.fromhex(vector["input_hex"]))
    else:
        got = hash_children(bytes.fromhex(vector["left_hex"]), bytes.fromhex(vector["right_hex"]))
    assert got.hex() == vector["want_hex"]


def test_compute_root_matches_reference_roots() -> None:
    for size, want in enumerate(TREE["root_hashes_hex_by_size"]):
        assert compute_root(LEAVES[:size]).hex() == want


def test_compute_root_matches_reference_node_hashes() -> None:
    for level, hashes in enumerate(TREE["node_hashes_hex_by_level"]):
        width = 1 << level
        for index, want in enumerate(hashes):
            assert compute_root(LEAVES[index * width : (index + 1) * width]).hex() == want


def test_compute_root_matches_recursive_definition() -> None:
    leaves = make_leaves(300)
    for size in range(0, 300):
        assert compute_root(leaves[:size]) == rfc_mth(leaves[:size])


def test_compute_root_rejects_short_leaf_hash() -> None:
    with pytest.raises(MerkleError) as caught:
        compute_root([b"\x00" * HASH_BYTES, b"short"])
    assert caught.value.code == "invalid_leaf_hash"


# --- reference tree proofs ------------------------------------------------------


@pytest.mark.parametrize(
    "case", TREE["inclusion_proofs"], ids=lambda c: f"{c['leaf_index']}-of-{c['tree_size']}"
)
def test_reference_inclusion_proof(case: dict[str, Any]) -> None:
    size, index = case["tree_size"], case["leaf_index"]
    proof = compute_inclusion_proof(LEAVES[:size], index)
    assert [item.hex() for item in proof] == case["proof_hex"]
    root = bytes.fromhex(TREE["root_hashes_hex_by_size"][size])
    verify_inclusion(LEAVES[index], index, size, proof, root)


@pytest.mark.parametrize(
    "case", TREE["consistency_proofs"], ids=lambda c: f"{c['size1']}-to-{c['size2']}"
)
def test_reference_consistency_proof(case: dict[str, Any]) -> None:
    size1, size2 = case["size1"], case["size2"]
    proof = compute_consistency_proof(LEAVES[:size2], size1)
    assert [item.hex() for item in proof] == case["proof_hex"]
    roots = TREE["root_hashes_hex_by_size"]
    verify_consistency(
        size1, size2, bytes.fromhex(roots[size1]), bytes.fromhex(roots[size2]), proof
    )


# --- upstream probes: every case ------------------------------------------------


@pytest.mark.parametrize("case", INCLUSION_PROBES, ids=lambda c: c["file"])
def test_inclusion_probe(case: dict[str, Any]) -> None:
    arguments = (
        decode_b64(case["leafHash"]),
        case["leafIdx"],
        case["treeSize"],
        probe_proof(case),
        decode_b64(case["root"]),
    )
    if case["wantErr"]:
        with pytest.raises(ProofError) as caught:
            verify_inclusion(*arguments)
        assert caught.value.code == "invalid_inclusion_proof"
    else:
        verify_inclusion(*arguments)


@pytest.mark.parametrize("case", CONSISTENCY_PROBES, ids=lambda c: c["file"])
def test_consistency_probe(case: dict[str, Any]) -> None:
    arguments = (
        case["size1"],
        case["size2"],
        decode_b64(case["root1"]),
        decode_b64(case["root2"]),
        probe_proof(case),
    )
    if case["wantErr"]:
        with pytest.raises(ProofError) as caught:
            verify_consistency(*arguments)
        assert caught.value.code == "invalid_consistency_proof"
    else:
        verify_consistency(*arguments)


def test_probe_counts_match_readme() -> None:
    """The README promises 6 valid and 92 failing cases per file; all run above."""
    for cases in (INCLUSION_PROBES, CONSISTENCY_PROBES):
        assert len(cases) == 98
        assert sum(not case["wantErr"] for case in cases) == 6


# --- exhaustive small trees -----------------------------------------------------


def test_every_proof_up_to_64_leaves_verifies() -> None:
    leaves = make_leaves(64)
    for size in range(1, 65):
        root = compute_root(leaves[:size])
        for index in range(size):
            proof = compute_inclusion_proof(leaves[:size], index)
            verify_inclusion(leaves[index], index, size, proof, root)
        for size1 in range(1, size + 1):
            proof = compute_consistency_proof(leaves[:size], size1)
            verify_consistency(size1, size, compute_root(leaves[:size1]), root, proof)


def test_tampered_inclusion_proofs_fail() -> None:
    leaves = make_leaves(37)
    root = compute_root(leaves)
    for index in range(37):
        proof = compute_inclusion_proof(leaves, index)
        for position in range(len(proof)):
            tampered = list(proof)
            tampered[position] = flip_bit(tampered[position], position * 8 + 3)
            with pytest.raises(ProofError):
                verify_inclusion(leaves[index], index, 37, tampered, root)
        with pytest.raises(ProofError):
            verify_inclusion(leaves[index], index, 37, proof[:-1], root)
        with pytest.raises(ProofError):
            verify_inclusion(leaves[index], index, 37, [*proof, root], root)
        with pytest.raises(ProofError):
            verify_inclusion(leaves[index], (index + 1) % 37, 37, proof, root)
        with pytest.raises(ProofError):
            verify_inclusion(flip_bit(leaves[index], 0), index, 37, proof, root)


def test_tampered_consistency_proofs_fail() -> None:
    leaves = make_leaves(37)
    root2 = compute_root(leaves)
    for size1 in range(1, 37):
        root1 = compute_root(leaves[:size1])
        proof = compute_consistency_proof(leaves, size1)
        for position in range(len(proof)):
            tampered = list(proof)
            tampered[position] = flip_bit(tampered[position], 5)
            with pytest.raises(ProofError):
                verify_consistency(size1, 37, root1, root2, tampered)
        with pytest.raises(ProofError):
            verify_consistency(size1, 37, root1, root2, proof[:-1])
        with pytest.raises(ProofError):
            verify_consistency(size1, 37, root1, root2, [*proof, root2])
        with pytest.raises(ProofError):
            verify_consistency(size1, 37, flip_bit(root1, 1), root2, proof)
        with pytest.raises(ProofError):
            verify_consistency(size1, 37, root1, flip_bit(root2, 1), proof)


# --- edge semantics from the vectors README -------------------------------------


def test_consistency_from_size_zero_always_fails() -> None:
    for size2, proof in ((0, []), (1, []), (5, []), (5, [EMPTY_ROOT])):
        with pytest.raises(ProofError):
            verify_consistency(0, size2, EMPTY_ROOT, EMPTY_ROOT, proof)


def test_equal_sizes_need_empty_proof_and_equal_roots() -> None:
    root = compute_root(make_leaves(5))
    verify_consistency(5, 5, root, root, [])
    with pytest.raises(ProofError):
        verify_consistency(5, 5, root, root, [root])
    with pytest.raises(ProofError):
        verify_consistency(5, 5, root, EMPTY_ROOT, [])


def test_equal_sizes_do_not_check_root_length() -> None:
    """Upstream probe sizes-are-equal-one-and-proof-is-empty: 12-byte roots pass."""
    verify_consistency(1, 1, b"twelve bytes", b"twelve bytes", [])


def test_inclusion_needs_32_byte_leaf_hash() -> None:
    with pytest.raises(ProofError):
        verify_inclusion(b"", 0, 1, [], b"")


def test_overlong_proofs_are_rejected_before_hashing() -> None:
    proof = [EMPTY_ROOT] * (PROOF_HASHES_MAX + 1)
    with pytest.raises(ProofError, match="max"):
        verify_inclusion(EMPTY_ROOT, 0, TREE_SIZE_MAX, proof, EMPTY_ROOT)
    with pytest.raises(ProofError, match="max"):
        verify_consistency(3, TREE_SIZE_MAX, EMPTY_ROOT, EMPTY_ROOT, proof)


def test_sizes_beyond_the_maximum_are_rejected() -> None:
    with pytest.raises(ProofError):
        verify_inclusion(EMPTY_ROOT, 0, TREE_SIZE_MAX + 1, [], EMPTY_ROOT)
    with pytest.raises(ProofError):
        verify_consistency(1, TREE_SIZE_MAX + 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT])


def test_reference_proof_arguments_are_checked() -> None:
    leaves = make_leaves(4)
    with pytest.raises(MerkleError) as caught:
        compute_inclusion_proof(leaves, 4)
    assert caught.value.code == "index_out_of_range"
    with pytest.raises(MerkleError) as caught:
        compute_inclusion_proof(leaves, -1)
    assert caught.value.code == "index_out_of_range"
    for size1 in (0, 5):
        with pytest.raises(MerkleError) as caught:
            compute_consistency_proof(leaves, size1)
        assert caught.value.code == "size_out_of_range"


def test_proof_error_is_a_value_error_with_a_code() -> None:
    with pytest.raises(ValueError) as caught:
        verify_inclusion(EMPTY_ROOT, 1, 1, [], EMPTY_ROOT)
    assert isinstance(caught.value, ProofError)
    assert caught.value.code == "invalid_inclusion_proof"
