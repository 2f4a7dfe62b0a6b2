"""Tests for the state tree (ledger.smt) against a from-scratch reference model.

The reference root below is a second, deliberately naive implementation of
the hash rules in the module docstring: it rebuilds the whole tree from a
dict on every call, reading path bits from bytes instead of ints. Every
incremental update must give the root it gives.

We cannot choose key hashes, so keys whose hashes share long prefixes are
found by grinding: hash 2**16 candidate keys, sort, and keep neighbours with
the longest common prefixes (about 30 bits for a pair, 20 for a triple).
"""

from __future__ import annotations

import hashlib
import sqlite3
from functools import cache

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import ERROR_CODES, LedgerError, StoreCorruption, StoreError
from ledger.smt import (
    EMPTY_HASH,
    PAGE_BYTES_MAX,
    PAGE_INTERNAL,
    PAGE_LEAF,
    PAGE_LEVELS,
    PROOF_BYTES_MAX,
    SIBLINGS_MAX,
    SQLITE_READ_NODES_MAX,
    MemoryNodeStore,
    SqliteNodeStore,
    StateCorruptionError,
    StateProof,
    StateProofError,
    StateRootNotFoundError,
    StateTree,
    verify_proof,
)

# --- Reference model -----------------------------------------------------------------------


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def bit_of(key_hash: bytes, depth: int) -> int:
    return (key_hash[depth // 8] >> (7 - depth % 8)) & 1


def reference_root(state: dict[bytes, bytes]) -> bytes:
    """The root built from scratch, straight from the written rules."""
    leaves = sorted((sha256(key), sha256(value)) for key, value in state.items())
    return reference_subtree(leaves, 0)


def reference_subtree(leaves: list[tuple[bytes, bytes]], depth: int) -> bytes:
    if not leaves:
        return b"\x00" * 32
    if len(leaves) == 1:
        key_hash, value_hash = leaves[0]
        return sha256(b"\x10" + key_hash + value_hash)
    left = [leaf for leaf in leaves if bit_of(leaf[0], depth) == 0]
    right = [leaf for leaf in leaves if bit_of(leaf[0], depth) == 1]
    children = reference_subtree(left, depth + 1) + reference_subtree(right, depth + 1)
    return sha256(b"\x11" + children)


def common_prefix_bits(a: bytes, b: bytes) -> int:
    return 256 - (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_length()


@cache
def deep_keys() -> tuple[tuple[bytes, bytes], tuple[bytes, bytes, bytes]]:
    """A pair and a triple of keys whose hashes share long prefixes."""
    candidates = sorted((sha256(b"deep/%d" % i), b"deep/%d" % i) for i in range(1 << 16))
    pair = max(range(len(candidates) - 1), key=lambda i: common_prefix_bits(
        candidates[i][0], candidates[i + 1][0]))
    triple = max(range(len(candidates) - 2), key=lambda i: common_prefix_bits(
        candidates[i][0], candidates[i + 2][0]))
    return (
        (candidates[pair][1], candidates[pair + 1][1]),
        (candidates[triple][1], candidates[triple + 1][1], candidates[triple + 2][1]),
    )


def key_pool() -> list[bytes]:
    pair, triple = deep_keys()
    return [b"account/%d" % i for i in range(24)] + list(pair) + list(triple)


KEYS = st.sampled_from(key_pool())
VALUES = st.binary(max_size=8)
BATCHES = st.dictionaries(KEYS, st.one_of(st.none(), VALUES), max_size=12)
STATES = st.dictionaries(KEYS, VALUES, max_size=20)


def apply_to_model(model: dict[bytes, bytes], batch: dict[bytes, bytes | None]) -> None:
    for key, value in batch.items():
        if value is None:
            model.pop(key, None)
        else:
            model[key] = value


def new_tree() -> StateTree:
    return StateTree(MemoryNodeStore())


# --- Hash rules ----------------------------------------------------------------------------


def test_empty_state_root_is_32_zero_bytes() -> None:
    assert new_tree().update(EMPTY_HASH, {}) == b"\x00" * 32
    assert reference_root({}) == EMPTY_HASH


def test_single_entry_root_is_its_leaf_hash() -> None:
    root = new_tree().update(EMPTY_HASH, {b"account/alice": b"\x92\x01\x02"})
    expected = sha256(b"\x10" + sha256(b"account/alice") + sha256(b"\x92\x01\x02"))
    assert root == expected


def test_two_entries_sit_where_their_paths_part() -> None:
    (a, b), _ = deep_keys()
    ha, hb = sha256(a), sha256(b)
    split = common_prefix_bits(ha, hb)
    assert split >= 24
    leaf_a, leaf_b = sha256(b"\x10" + ha + sha256(b"1")), sha256(b"\x10" + hb + sha256(b"2"))
    node = sha256(b"\x11" + (leaf_a + leaf_b if bit_of(ha, split) == 0 else leaf_b + leaf_a))
    for depth in range(split - 1, -1, -1):
        pair = node + EMPTY_HASH if bit_of(ha, depth) == 0 else EMPTY_HASH + node
        node = sha256(b"\x11" + pair)
    assert new_tree().update(EMPTY_HASH, {a: b"1", b: b"2"}) == node


VECTOR_STATE = {b"account/alice": b"\x01", b"account/bob": b"\x02", b"account/carol": b"\x03"}
VECTOR_ROOT = "ec42e139f845a59cea6888a18a7660ab0d795f1e4d843fe0fb9c3af9cba3b6a6"
VECTOR_PROOF_BOB = "9291c420ac8e2f960102fb5dadb1448e08b9218672b7aa300915e7ed2c66882e976ddbbbc0"
VECTOR_PROOF_DAVE_ABSENT = (
    "9292c4204dde9582b88ec5fc6fa969ac6a6f8fe62683e43bfb3613cb747b00bdd4a42f50"
    "c420ccde69bb0530cdcdcec7eb944288e432b8c7da9e4ce4201668e29a1ae6018406c0"
)


def test_pinned_vector_for_protocol_docs() -> None:
    """Fixed bytes an independent verifier can check its implementation against."""
    tree = new_tree()
    root = tree.update(EMPTY_HASH, VECTOR_STATE)
    assert root.hex() == VECTOR_ROOT == reference_root(VECTOR_STATE).hex()
    bob = StateProof.decode(bytes.fromhex(VECTOR_PROOF_BOB))
    assert tree.get_proof(root, b"account/bob") == bob
    verify_proof(root, b"account/bob", b"\x02", bob)
    dave = StateProof.decode(bytes.fromhex(VECTOR_PROOF_DAVE_ABSENT))
    assert tree.get_proof(root, b"account/dave") == dave
    verify_proof(root, b"account/dave", None, dave)


# --- Updates against the reference ---------------------------------------------------------


@given(STATES)
def test_update_from_empty_matches_reference(state: dict[bytes, bytes]) -> None:
    assert new_tree().update(EMPTY_HASH, state) == reference_root(state)


@given(st.lists(BATCHES, max_size=8))
def test_incremental_batches_match_reference(batches: list[dict[bytes, bytes | None]]) -> None:
    tree, root, model = new_tree(), EMPTY_HASH, {}
    for batch in batches:
        root = tree.update(root, batch)
        apply_to_model(model, batch)
        assert root == reference_root(model)


@given(STATES, st.randoms(use_true_random=False), st.integers(min_value=1, max_value=5))
def test_root_is_independent_of_order_and_batching(
    state: dict[bytes, bytes], rng: object, batch_size: int
) -> None:
    items = list(state.items())
    rng.shuffle(items)  # type: ignore[attr-defined]
    tree, root = new_tree(), EMPTY_HASH
    for start in range(0, len(items), batch_size):
        root = tree.update(root, dict(items[start : start + batch_size]))
    assert root == new_tree().update(EMPTY_HASH, state)


@given(STATES)
def test_deleting_every_key_returns_the_empty_root(state: dict[bytes, bytes]) -> None:
    tree = new_tree()
    root = tree.update(EMPTY_HASH, state)
    assert tree.update(root, dict.fromkeys(state)) == EMPTY_HASH


def test_deleting_absent_keys_changes_nothing() -> None:
    tree = new_tree()
    root = tree.update(EMPTY_HASH, {b"account/1": b"a", b"account/2": b"b"})
    assert tree.update(root, {b"account/3": None, b"nobody": None}) == root
    assert tree.update(EMPTY_HASH, {b"nobody": None}) == EMPTY_HASH


def test_empty_batch_returns_the_same_root() -> None:
    tree = new_tree()
    root = tree.update(EMPTY_HASH, {b"k": b"v"})
    assert tree.update(root, {}) == root


def test_deleting_one_of_a_deep_pair_lifts_the_other_to_the_root() -> None:
    (a, b), _ = deep_keys()
    tree = new_tree()
    root = tree.update(EMPTY_HASH, {a: b"1", b: b"2"})
    assert len(tree.get_proof(root, a).siblings) == common_prefix_bits(sha256(a), sha256(b)) + 1
    lifted = tree.update(root, {b: None})
    assert lifted == sha256(b"\x10" + sha256(a) + sha256(b"1"))
    assert tree.get_proof(lifted, a).siblings == ()


def test_deep_triple_with_neighbours_matches_reference() -> None:
    _, triple = deep_keys()
    tree, model = new_tree(), {key: key for key in key_pool()}
    root = tree.update(EMPTY_HASH, model)
    for key in triple:
        root = tree.update(root, {key: None})
        del model[key]
        assert root == reference_root(model)


def test_old_roots_stay_provable() -> None:
    tree = new_tree()
    old = tree.update(EMPTY_HASH, {b"a": b"1", b"b": b"2"})
    new = tree.update(old, {b"a": b"9", b"c": b"3"})
    verify_proof(old, b"a", b"1", tree.get_proof(old, b"a"))
    verify_proof(old, b"c", None, tree.get_proof(old, b"c"))
    verify_proof(new, b"a", b"9", tree.get_proof(new, b"a"))


def test_get_value_hash() -> None:
    tree = new_tree()
    root = tree.update(EMPTY_HASH, {b"a": b"1", b"b": b"2"})
    assert tree.get_value_hash(root, b"a") == sha256(b"1")
    assert tree.get_value_hash(root, b"zzz") is None
    assert tree.get_value_hash(EMPTY_HASH, b"a") is None


# --- Proofs --------------------------------------------------------------------------------


@given(STATES)
def test_every_key_proves_its_value_or_absence(state: dict[bytes, bytes]) -> None:
    tree = new_tree()
    root = tree.update(EMPTY_HASH, state)
    for key in key_pool():
        proof = tree.get_proof(root, key)
        verify_proof(root, key, state.get(key), proof)
        assert StateProof.decode(proof.encode()) == proof


def proven_state() -> tuple[StateTree, bytes, dict[bytes, bytes]]:
    tree = new_tree()
    state = {key: b"value of " + key for key in key_pool()}
    return tree, tree.update(EMPTY_HASH, state), state


def absent_key_ending(tree: StateTree, root: bytes, in_other_leaf: bool) -> bytes:
    for i in range(1000):
        key = b"absent/%d" % i
        if (tree.get_proof(root, key).other_leaf is not None) == in_other_leaf:
            return key
    raise AssertionError("no such key in 1000 tries")


def rejected(root: bytes, key: bytes, value: bytes | None, proof: StateProof) -> bool:
    with pytest.raises(StateProofError) as caught:
        verify_proof(root, key, value, proof)
    assert caught.value.code == "invalid_state_proof"
    return True


def test_invalid_membership_proof_altered_value_key_or_root() -> None:
    tree, root, state = proven_state()
    key = b"account/3"
    proof = tree.get_proof(root, key)
    verify_proof(root, key, state[key], proof)
    assert rejected(root, key, b"forged", proof)
    assert rejected(root, b"account/4", state[key], proof)
    assert rejected(root, key, None, proof)
    assert rejected(sha256(b"another root"), key, state[key], proof)
    assert rejected(root[:31], key, state[key], proof)


def test_invalid_membership_proof_altered_siblings() -> None:
    tree, root, state = proven_state()
    key = b"account/5"
    proof = tree.get_proof(root, key)
    siblings = proof.siblings
    assert len(siblings) >= 2
    for depth in range(len(siblings)):
        flipped = bytes([siblings[depth][0] ^ 1]) + siblings[depth][1:]
        forged = StateProof(siblings[:depth] + (flipped,) + siblings[depth + 1 :])
        assert rejected(root, key, state[key], forged)
    assert rejected(root, key, state[key], StateProof(siblings[:-1]))
    assert rejected(root, key, state[key], StateProof(siblings + (EMPTY_HASH,)))
    assert rejected(root, key, state[key], StateProof(siblings[:-1] + (b"short",)))
    other = (sha256(b"x"), sha256(b"y"))
    assert rejected(root, key, state[key], StateProof(siblings, other))


def test_absence_ending_in_empty_subtree() -> None:
    tree, root, state = proven_state()
    key = absent_key_ending(tree, root, in_other_leaf=False)
    proof = tree.get_proof(root, key)
    verify_proof(root, key, None, proof)
    assert rejected(root, key, b"anything", proof)
    present = b"account/7"
    assert rejected(root, present, None, tree.get_proof(root, present))


def test_absence_ending_in_another_leaf() -> None:
    tree, root, state = proven_state()
    key = absent_key_ending(tree, root, in_other_leaf=True)
    proof = tree.get_proof(root, key)
    assert proof.other_leaf is not None
    verify_proof(root, key, None, proof)
    other_key_hash, other_value_hash = proof.other_leaf
    # The same leaf cannot prove the absence of its own key...
    owner = next(k for k in state if sha256(k) == other_key_hash)
    assert rejected(root, owner, None, proof)
    # ... nor of a key whose path leaves the proven prefix.
    off_path = next(
        b"off/%d" % i for i in range(1000)
        if common_prefix_bits(sha256(b"off/%d" % i), other_key_hash) < len(proof.siblings)
    )
    assert rejected(root, off_path, None, proof)
    assert rejected(root, key, None, StateProof(proof.siblings, (other_key_hash, sha256(b"z"))))
    assert rejected(root, key, None, StateProof(proof.siblings))


def test_invalid_proof_other_leaf_off_the_path() -> None:
    """Against a hand-made tree with a leaf on the wrong side, the prefix rule still holds."""
    other = next(b"o/%d" % i for i in range(100) if bit_of(sha256(b"o/%d" % i), 0) == 1)
    key = next(b"k/%d" % i for i in range(100) if bit_of(sha256(b"k/%d" % i), 0) == 0)
    misplaced = sha256(b"\x10" + sha256(other) + sha256(b"v"))
    root = sha256(b"\x11" + misplaced + EMPTY_HASH)
    proof = StateProof((EMPTY_HASH,), (sha256(other), sha256(b"v")))
    assert rejected(root, key, None, proof)


def test_invalid_proof_too_many_siblings() -> None:
    proof = StateProof((EMPTY_HASH,) * (SIBLINGS_MAX + 1))
    assert rejected(EMPTY_HASH, b"k", None, proof)


def test_empty_state_proves_absence_with_no_siblings() -> None:
    tree = new_tree()
    proof = tree.get_proof(EMPTY_HASH, b"k")
    assert proof == StateProof(())
    verify_proof(EMPTY_HASH, b"k", None, proof)
    assert rejected(EMPTY_HASH, b"k", b"v", proof)


# --- Proof encoding ------------------------------------------------------------------------

HASHES = st.binary(min_size=32, max_size=32)
PROOFS = st.builds(
    StateProof,
    st.lists(HASHES, max_size=SIBLINGS_MAX).map(tuple),
    st.one_of(st.none(), st.tuples(HASHES, HASHES)),
)


@given(PROOFS)
def test_proof_encoding_round_trips(proof: StateProof) -> None:
    data = proof.encode()
    assert len(data) <= PROOF_BYTES_MAX
    assert StateProof.decode(data) == proof


def test_proof_encoding_is_the_documented_array() -> None:
    proof = StateProof((b"\x01" * 32,), (b"\x02" * 32, b"\x03" * 32))
    assert proof.encode() == msgpack.packb(
        [[b"\x01" * 32], [b"\x02" * 32, b"\x03" * 32]], use_bin_type=True)
    assert StateProof(()).encode() == b"\x92\x90\xc0"


def test_largest_proof_fits_the_byte_limit() -> None:
    proof = StateProof((b"\x01" * 32,) * SIBLINGS_MAX, (b"\x02" * 32, b"\x03" * 32))
    assert len(proof.encode()) == PROOF_BYTES_MAX


def bin16(data: bytes) -> bytes:
    """A non-minimal msgpack encoding of a byte string."""
    return b"\xc5" + len(data).to_bytes(2, "big") + data


H = b"\x07" * 32
MALFORMED_PROOFS = {
    "empty": b"",
    "garbage": b"\xc1",
    "trailing_bytes": StateProof((H,)).encode() + b"\x00",
    "truncated": StateProof((H,)).encode()[:-1],
    "map": msgpack.packb({"siblings": []}),
    "one_field": msgpack.packb([[H]], use_bin_type=True),
    "three_fields": msgpack.packb([[H], None, None], use_bin_type=True),
    "siblings_not_array": msgpack.packb([H, None], use_bin_type=True),
    "sibling_is_text": msgpack.packb([["x" * 32], None], use_bin_type=True),
    "sibling_short": msgpack.packb([[H[:31]], None], use_bin_type=True),
    "sibling_long": msgpack.packb([[H + b"\x00"], None], use_bin_type=True),
    "sibling_int": msgpack.packb([[7], None], use_bin_type=True),
    "other_leaf_one_hash": msgpack.packb([[], [H]], use_bin_type=True),
    "other_leaf_three_hashes": msgpack.packb([[], [H, H, H]], use_bin_type=True),
    "other_leaf_short": msgpack.packb([[], [H, H[:31]]], use_bin_type=True),
    "other_leaf_bytes": msgpack.packb([[], H], use_bin_type=True),
    "other_leaf_false": msgpack.packb([[], False], use_bin_type=True),
    "too_many_siblings": msgpack.packb([[H] * (SIBLINGS_MAX + 1), None], use_bin_type=True),
    "non_canonical_bin16": b"\x92\x91" + bin16(H) + b"\xc0",
    "non_canonical_array16": b"\xdc\x00\x02\x90\xc0",
    "float": msgpack.packb([[], 1.5], use_bin_type=True),
}


@pytest.mark.parametrize("name", sorted(MALFORMED_PROOFS))
def test_invalid_proof_encoding(name: str) -> None:
    with pytest.raises(StateProofError) as caught:
        StateProof.decode(MALFORMED_PROOFS[name])
    assert caught.value.code == "invalid_state_proof"


def test_invalid_proof_encoding_not_bytes_or_too_long() -> None:
    with pytest.raises(StateProofError):
        StateProof.decode(bytearray(StateProof(()).encode()))  # type: ignore[arg-type]
    with pytest.raises(StateProofError):
        StateProof.decode(b"\x92\x90\xc0" + b"\x00" * PROOF_BYTES_MAX)


# --- Pages, stores and corruption ---------------------------------------------------------


def walk_everything(tree: StateTree, root: bytes) -> None:
    """Prove every pool key and some absent ones: together these walks enter every page entry."""
    for key in key_pool() + [b"absent/%d" % i for i in range(20)]:
        tree.get_proof(root, key)


def test_deep_pair_is_stored_as_one_page_per_three_levels() -> None:
    (a, b), _ = deep_keys()
    store = MemoryNodeStore()
    root = StateTree(store).update(EMPTY_HASH, {a: b"1", b: b"2"})
    split = common_prefix_bits(sha256(a), sha256(b))
    # Internal nodes sit at depths 0..split; a page starts at each multiple of PAGE_LEVELS.
    assert len(store.nodes) == split // PAGE_LEVELS + 1
    assert root in store.nodes
    assert all(body[0] == PAGE_INTERNAL for body in store.nodes.values())


def test_one_entry_state_stores_its_leaf_as_the_root_page() -> None:
    store = MemoryNodeStore()
    root = StateTree(store).update(EMPTY_HASH, {b"k": b"v"})
    assert store.nodes == {root: bytes([PAGE_LEAF]) + sha256(b"k") + sha256(b"v")}


@given(STATES)
def test_every_page_fits_its_bound_and_is_keyed_by_its_top_hash(state: dict[bytes, bytes]) -> None:
    store = MemoryNodeStore()
    StateTree(store).update(EMPTY_HASH, state)
    for page_hash, body in store.nodes.items():
        assert len(body) <= PAGE_BYTES_MAX
        if body[0] == PAGE_INTERNAL:
            assert body[1:33] == page_hash
            assert int.from_bytes(body[33:35], "big") == len(body)


@given(st.lists(BATCHES, min_size=1, max_size=6))
def test_pages_are_canonical_whatever_the_history(
    batches: list[dict[bytes, bytes | None]]
) -> None:
    """A state's pages do not depend on how it was reached (the auditor compares bytes)."""
    incremental, root, model = MemoryNodeStore(), EMPTY_HASH, {}
    for batch in batches:
        root = StateTree(incremental).update(root, batch)
        apply_to_model(model, batch)
    fresh = MemoryNodeStore()
    assert StateTree(fresh).update(EMPTY_HASH, model) == root
    for page_hash, body in fresh.nodes.items():
        assert incremental.nodes[page_hash] == body


def test_every_tampered_byte_is_detected() -> None:
    """Flip bits all over every page: every walk either fails as corruption or is unaffected."""
    store = MemoryNodeStore()
    tree = StateTree(store)
    root = tree.update(EMPTY_HASH, {key: key for key in key_pool()})
    expected = {key: tree.get_proof(root, key) for key in key_pool()}
    for page_hash, body in list(store.nodes.items()):
        for position in sorted({*range(0, len(body), 3), len(body) - 1}):
            for flip in (0x01, 0x80):
                store.nodes[page_hash] = body[:position] + bytes([body[position] ^ flip]) + body[
                    position + 1 :]
                with pytest.raises(StateCorruptionError) as caught:
                    walk_everything(tree, root)
                assert caught.value.code == "store_corrupt"
        store.nodes[page_hash] = body
    assert {key: tree.get_proof(root, key) for key in key_pool()} == expected


def test_truncated_or_extended_page_is_detected() -> None:
    store = MemoryNodeStore()
    tree = StateTree(store)
    root = tree.update(EMPTY_HASH, {key: key for key in key_pool()})
    for page_hash, body in list(store.nodes.items()):
        for altered in (body[:-1], body + b"\x00", body[:35]):
            store.nodes[page_hash] = altered
            with pytest.raises(StateCorruptionError):
                walk_everything(tree, root)
        store.nodes[page_hash] = body


def test_failed_update_writes_nothing() -> None:
    store = MemoryNodeStore()
    tree = StateTree(store)
    root = tree.update(EMPTY_HASH, {key: key for key in key_pool()})
    victim = next(h for h in store.nodes if h != root)
    body = store.nodes[victim]
    store.nodes[victim] = body[:-1] + bytes([body[-1] ^ 1])
    before = dict(store.nodes)
    with pytest.raises(StateCorruptionError):
        tree.update(root, dict.fromkeys(key_pool(), b"new"))
    assert store.nodes == before


def test_missing_inner_page_is_corruption_and_missing_root_is_not_found() -> None:
    store = MemoryNodeStore()
    tree = StateTree(store)
    root = tree.update(EMPTY_HASH, {key: key for key in key_pool()})
    with pytest.raises(StateRootNotFoundError) as caught:
        tree.get_proof(sha256(b"unknown root"), b"k")
    assert caught.value.code == "state_root_not_found"
    with pytest.raises(StateRootNotFoundError):
        tree.update(sha256(b"unknown root"), {b"k": b"v"})
    del store.nodes[next(h for h in store.nodes if h != root)]
    with pytest.raises(StateCorruptionError) as corrupt:
        tree.update(root, dict.fromkeys(key_pool(), b"new"))
    assert isinstance(corrupt.value, StoreCorruption)


def test_a_leaf_page_cannot_stand_below_the_root() -> None:
    """A REF always names an internal page; a leaf stored under that hash is corruption."""
    (a, b), _ = deep_keys()
    store = MemoryNodeStore()
    tree = StateTree(store)
    root = tree.update(EMPTY_HASH, {a: b"1", b: b"2"})
    inner = next(h for h in store.nodes if h != root)
    store.nodes[inner] = bytes([PAGE_LEAF]) + sha256(a) + sha256(b"1")
    with pytest.raises(StateCorruptionError):
        tree.get_proof(root, a)


@settings(max_examples=25, deadline=None)
@given(st.lists(BATCHES, max_size=6))
def test_sqlite_and_memory_stores_give_the_same_roots(
    batches: list[dict[bytes, bytes | None]]
) -> None:
    memory = StateTree(MemoryNodeStore())
    conn = sqlite3.connect(":memory:")
    sqlite = StateTree(SqliteNodeStore(conn, cache_nodes_max=16))
    memory_root = sqlite_root = EMPTY_HASH
    for batch in batches:
        memory_root = memory.update(memory_root, batch)
        sqlite_root = sqlite.update(sqlite_root, batch)
        assert memory_root == sqlite_root
        conn.commit()
    fresh = StateTree(SqliteNodeStore(conn, cache_nodes_max=0))
    for key in key_pool():
        assert fresh.get_proof(sqlite_root, key) == memory.get_proof(memory_root, key)
    conn.close()


def test_sqlite_store_leaves_the_transaction_to_the_caller() -> None:
    conn = sqlite3.connect(":memory:")
    tree = StateTree(SqliteNodeStore(conn))
    root = tree.update(EMPTY_HASH, {b"a": b"1", b"b": b"2"})
    assert conn.in_transaction
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM state_nodes").fetchone() == (0,)
    with pytest.raises(StateRootNotFoundError):
        StateTree(SqliteNodeStore(conn)).get_proof(root, b"a")
    conn.close()


def test_tampered_sqlite_page_is_detected() -> None:
    conn = sqlite3.connect(":memory:")
    root = StateTree(SqliteNodeStore(conn, table="nodes")).update(
        EMPTY_HASH, {key: key for key in key_pool()})
    conn.commit()
    victim, body = conn.execute("SELECT hash, body FROM nodes WHERE hash != ? LIMIT 1",
                                (root,)).fetchone()
    conn.execute("UPDATE nodes SET body = ? WHERE hash = ?",
                 (body[:-1] + bytes([body[-1] ^ 1]), victim))
    with pytest.raises(StateCorruptionError):
        walk_everything(StateTree(SqliteNodeStore(conn, table="nodes")), root)
    conn.close()


def test_sqlite_cache_stays_within_its_bound() -> None:
    conn = sqlite3.connect(":memory:")
    store = SqliteNodeStore(conn, cache_nodes_max=10)
    tree, root = StateTree(store), EMPTY_HASH
    for i in range(30):
        root = tree.update(root, {b"k%d" % i: b"v", b"k%d" % (i // 2): b"w"})
        assert store.cache_size_nodes() <= 10
    assert root == reference_root({**{b"k%d" % i: b"v" for i in range(30)},
                                   **{b"k%d" % i: b"w" for i in range(15)}})
    conn.close()


def test_sqlite_reads_many_nodes_in_chunks() -> None:
    conn = sqlite3.connect(":memory:")
    state = {b"k%d" % i: b"v" for i in range(3000)}
    root = StateTree(SqliteNodeStore(conn)).update(EMPTY_HASH, state)
    cold = SqliteNodeStore(conn, cache_nodes_max=0)
    hashes = [row[0] for row in conn.execute("SELECT hash FROM state_nodes")]
    assert len(cold.get_nodes(hashes)) == len(hashes) > 2 * SQLITE_READ_NODES_MAX
    changed = dict.fromkeys(state, b"w")
    assert StateTree(cold).update(root, changed) == reference_root(changed)
    conn.close()


@pytest.mark.parametrize("table", ["", "1nodes", "nodes; DROP TABLE x", "a-b"])
def test_sqlite_store_rejects_unsafe_table_names(table: str) -> None:
    with pytest.raises(StoreError) as caught:
        SqliteNodeStore(sqlite3.connect(":memory:"), table=table)
    assert caught.value.code == "invalid_table_name"


def test_error_codes_are_stable_and_documented() -> None:
    for error, code in [
        (StateProofError("x"), "invalid_state_proof"),
        (StateCorruptionError("x"), "store_corrupt"),
        (StateRootNotFoundError("x"), "state_root_not_found"),
    ]:
        assert isinstance(error, LedgerError)
        assert error.code == code and code in ERROR_CODES
    assert isinstance(StateProofError("x"), ValueError)
    assert isinstance(StateCorruptionError("x"), StoreCorruption)


def test_larger_random_batches_match_reference() -> None:
    import random

    rng = random.Random(20240601)
    tree, root, model = new_tree(), EMPTY_HASH, {}
    for _ in range(6):
        batch: dict[bytes, bytes | None] = {}
        for _ in range(400):
            key = b"account/%d" % rng.randrange(1500)
            batch[key] = None if rng.randrange(4) == 0 else rng.randbytes(rng.randrange(1, 9))
        root = tree.update(root, batch)
        apply_to_model(model, batch)
        assert root == reference_root(model)
