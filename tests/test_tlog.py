"""The transparency log against the reference Merkle functions.

Brute force first: for every size 1..300, every inclusion and consistency
proof the log serves (over the dict store and over SQLite) must equal the
RFC reference implementation's and verify. Then the properties the node
relies on: reopening rebuilds the same root, appends do no reads, proofs read
O(log n) nodes, a failed batch changes nothing, and the SQLite store never
touches the caller's transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.merkle import (
    EMPTY_ROOT,
    TREE_SIZE_MAX,
    ProofError,
    compute_consistency_proof,
    compute_inclusion_proof,
    compute_root,
    hash_leaf,
    verify_consistency,
    verify_inclusion,
)
from ledger.tlog import (
    APPEND_BATCH_LEAVES_MAX,
    LogError,
    LogNodeStore,
    MemoryLogNodeStore,
    SqliteLogNodeStore,
    TransparencyLog,
)

BRUTE_FORCE_LEAVES = 300


def make_leaves(count: int, salt: int = 0) -> list[bytes]:
    return [hash_leaf(salt.to_bytes(4, "big") + i.to_bytes(8, "big")) for i in range(count)]


def flip_bit(data: bytes, bit: int) -> bytes:
    changed = bytearray(data)
    changed[bit // 8] ^= 1 << (bit % 8)
    return bytes(changed)


OPEN_CONNECTIONS: list[sqlite3.Connection] = []


def connect() -> sqlite3.Connection:
    """An in-memory database, closed after the test (3.13+ warns about unclosed ones)."""
    conn = sqlite3.connect(":memory:")
    OPEN_CONNECTIONS.append(conn)
    return conn


@pytest.fixture(autouse=True)
def close_connections() -> Iterator[None]:
    yield
    while OPEN_CONNECTIONS:
        OPEN_CONNECTIONS.pop().close()


def memory_store() -> LogNodeStore:
    return MemoryLogNodeStore()


def sqlite_store() -> LogNodeStore:
    return SqliteLogNodeStore(connect())


STORE_FACTORIES: list[Callable[[], LogNodeStore]] = [memory_store, sqlite_store]
STORE_IDS = ["memory", "sqlite"]


class CountingStore:
    """Wraps a store and counts reads, to check the log's cost claims."""

    def __init__(self, inner: LogNodeStore) -> None:
        self.inner = inner
        self.reads = 0

    def get_node(self, level: int, index: int) -> bytes | None:
        self.reads += 1
        return self.inner.get_node(level, index)

    def put_nodes(self, nodes: Iterable[tuple[int, int, bytes]]) -> None:
        self.inner.put_nodes(nodes)


class EveryNodeStore:
    """Claims to hold every node, so a log can be opened at any size without appending."""

    def __init__(self) -> None:
        self.reads = 0

    def get_node(self, level: int, index: int) -> bytes | None:
        self.reads += 1
        return hash_leaf(level.to_bytes(1, "big") + index.to_bytes(8, "big"))

    def put_nodes(self, nodes: Iterable[tuple[int, int, bytes]]) -> None:
        for _ in nodes:
            pass


# --- brute force against the reference -----------------------------------------


@pytest.fixture(scope="module")
def brute_force_leaves() -> list[bytes]:
    return make_leaves(BRUTE_FORCE_LEAVES)


@pytest.fixture(scope="module")
def reference_proofs(
    brute_force_leaves: list[bytes],
) -> dict[int, tuple[list[list[bytes]], list[list[bytes]]]]:
    """For each size: every inclusion proof and every consistency proof, each verified once."""
    leaves = brute_force_leaves
    roots = [compute_root(leaves[:size]) for size in range(BRUTE_FORCE_LEAVES + 1)]
    proofs = {}
    for size in range(1, BRUTE_FORCE_LEAVES + 1):
        prefix = leaves[:size]
        inclusion = [compute_inclusion_proof(prefix, index) for index in range(size)]
        consistency = [compute_consistency_proof(prefix, size1) for size1 in range(1, size + 1)]
        for index, proof in enumerate(inclusion):
            verify_inclusion(leaves[index], index, size, proof, roots[size])
        for size1, proof in enumerate(consistency, start=1):
            verify_consistency(size1, size, roots[size1], roots[size], proof)
        proofs[size] = (inclusion, consistency)
    return proofs


@pytest.mark.parametrize("make_store", STORE_FACTORIES, ids=STORE_IDS)
def test_every_proof_up_to_300_leaves_matches_reference(
    make_store: Callable[[], LogNodeStore],
    brute_force_leaves: list[bytes],
    reference_proofs: dict[int, tuple[list[list[bytes]], list[list[bytes]]]],
) -> None:
    leaves = brute_force_leaves
    log = TransparencyLog(make_store())
    for index, leaf_hash in enumerate(leaves):
        assert log.append(leaf_hash) == index
        assert log.size == index + 1
        assert log.root() == compute_root(leaves[: index + 1])
    for size in range(1, BRUTE_FORCE_LEAVES + 1):
        inclusion, consistency = reference_proofs[size]
        assert log.root_at(size) == compute_root(leaves[:size])
        for index in range(size):
            assert log.inclusion_proof(index, size) == inclusion[index], (index, size)
        for size1 in range(1, size + 1):
            assert log.consistency_proof(size1, size) == consistency[size1 - 1], (size1, size)


@pytest.mark.parametrize("make_store", STORE_FACTORIES, ids=STORE_IDS)
def test_tampered_log_proofs_fail(make_store: Callable[[], LogNodeStore]) -> None:
    leaves = make_leaves(100)
    log = TransparencyLog(make_store())
    log.append_many(leaves)
    for size in (1, 2, 3, 7, 64, 65, 99, 100):
        root = log.root_at(size)
        for index in range(size):
            proof = log.inclusion_proof(index, size)
            for position in range(len(proof)):
                tampered = list(proof)
                tampered[position] = flip_bit(tampered[position], 7)
                with pytest.raises(ProofError):
                    verify_inclusion(leaves[index], index, size, tampered, root)
        for size1 in range(1, size):
            proof = log.consistency_proof(size1, size)
            for position in range(len(proof)):
                tampered = list(proof)
                tampered[position] = flip_bit(tampered[position], 200)
                with pytest.raises(ProofError):
                    verify_consistency(size1, size, log.root_at(size1), root, tampered)


# --- reopening ----------------------------------------------------------------


@pytest.mark.parametrize("make_store", STORE_FACTORIES, ids=STORE_IDS)
def test_reopen_at_every_size_gives_the_same_root(make_store: Callable[[], LogNodeStore]) -> None:
    leaves = make_leaves(BRUTE_FORCE_LEAVES)
    store = make_store()
    TransparencyLog(store).append_many(leaves)
    for size in range(BRUTE_FORCE_LEAVES + 1):
        reopened = TransparencyLog(store, size)
        assert reopened.size == size
        assert reopened.root() == compute_root(leaves[:size])


def test_reopened_log_continues_like_a_fresh_one() -> None:
    leaves = make_leaves(50)
    store = MemoryLogNodeStore()
    TransparencyLog(store).append_many(leaves[:21])
    reopened = TransparencyLog(store, 21)
    reopened.append_many(leaves[21:])
    fresh = TransparencyLog(MemoryLogNodeStore())
    fresh.append_many(leaves)
    assert reopened.root() == fresh.root()
    assert store.nodes == fresh._store.nodes  # type: ignore[attr-defined]


def test_reopen_past_the_stored_size_fails() -> None:
    store = MemoryLogNodeStore()
    TransparencyLog(store).append_many(make_leaves(5))
    with pytest.raises(LogError) as caught:
        TransparencyLog(store, 6)
    assert caught.value.code == "log_node_missing"


def test_rollback_then_reopen_drops_uncommitted_appends() -> None:
    """The documented recovery: the caller rolls back and reopens at the committed size."""
    conn = connect()
    store = SqliteLogNodeStore(conn)
    log = TransparencyLog(store)
    log.append_many(make_leaves(10))
    conn.commit()
    log.append_many(make_leaves(7, salt=1))  # a block whose DB transaction fails
    conn.rollback()
    log = TransparencyLog(store, 10)
    replacement = make_leaves(4, salt=2)
    log.append_many(replacement)
    conn.commit()
    assert log.root() == compute_root(make_leaves(10) + replacement)
    assert TransparencyLog(store, 14).root() == log.root()


# --- the SQLite store and the caller's transaction -----------------------------


def test_sqlite_store_never_commits() -> None:
    conn = connect()
    log = TransparencyLog(SqliteLogNodeStore(conn))
    log.append_many(make_leaves(9))
    log.inclusion_proof(3, 9)
    log.consistency_proof(2, 9)
    assert conn.in_transaction
    conn.rollback()
    assert conn.execute("SELECT COUNT(*) FROM log_nodes").fetchone() == (0,)


def test_sqlite_store_uses_the_named_table() -> None:
    conn = connect()
    store = SqliteLogNodeStore(conn, table="audit_nodes")
    log = TransparencyLog(store)
    log.append_many(make_leaves(8))
    conn.commit()
    # 8 leaves + 4 + 2 + 1 completed perfect subtrees.
    assert conn.execute("SELECT COUNT(*) FROM audit_nodes").fetchone() == (15,)
    assert TransparencyLog(SqliteLogNodeStore(conn, table="audit_nodes"), 8).root() == log.root()


def test_sqlite_store_refuses_to_rewrite_a_node() -> None:
    conn = connect()
    store = SqliteLogNodeStore(conn)
    TransparencyLog(store).append_many(make_leaves(3))
    with pytest.raises(sqlite3.IntegrityError):
        TransparencyLog(store, 2).append(make_leaves(1, salt=9)[0])


@pytest.mark.parametrize("table", ["", "log nodes", "x; DROP TABLE t", "1abc", "a" * 64])
def test_sqlite_store_rejects_unsafe_table_names(table: str) -> None:
    with pytest.raises(LogError) as caught:
        SqliteLogNodeStore(connect(), table=table)
    assert caught.value.code == "invalid_table_name"


# --- costs ------------------------------------------------------------------------


def test_append_reads_nothing_and_writes_amortised_two_nodes() -> None:
    store = CountingStore(MemoryLogNodeStore())
    log = TransparencyLog(store)
    for leaf_hash in make_leaves(1024):
        log.append(leaf_hash)
    assert store.reads == 0
    # A perfect tree of 1024 leaves has 2047 nodes: each written exactly once.
    assert len(store.inner.nodes) == 2047  # type: ignore[attr-defined]


def sizes_to_probe() -> Iterator[int]:
    yield from (1, 2, 3, 1000, 2**20, 2**20 + 1, 2**40 - 1, 3**30, TREE_SIZE_MAX)
    yield from (2**k - 1 for k in range(2, 63, 7))


def test_proofs_and_reopen_read_at_most_two_nodes_per_level() -> None:
    """O(log n): the walk passes one node per level plus one ragged edge of <= log n nodes."""
    for size in sizes_to_probe():
        store = EveryNodeStore()
        log = TransparencyLog(store, size)
        assert store.reads == bin(size).count("1")
        bound = 2 * size.bit_length()
        for index in {0, size // 3, size // 2, size - 2, size - 1} - {-1}:
            store.reads = 0
            log.inclusion_proof(index, size)
            assert store.reads <= bound, (index, size)
        for size1 in {1, size // 3, size // 2 + 1, size - 1, size} - {0}:
            store.reads = 0
            log.consistency_proof(size1, size)
            assert store.reads <= bound, (size1, size)


# --- argument checks and all-or-nothing appends ---------------------------------


def test_empty_log() -> None:
    log = TransparencyLog(MemoryLogNodeStore())
    assert log.size == 0
    assert log.root() == EMPTY_ROOT
    assert log.root_at(0) == EMPTY_ROOT
    log.append_many([])
    assert log.size == 0


def test_arguments_are_checked_with_codes() -> None:
    log = TransparencyLog(MemoryLogNodeStore())
    log.append_many(make_leaves(5))
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: log.inclusion_proof(5, 5), "index_out_of_range"),
        (lambda: log.inclusion_proof(-1, 5), "index_out_of_range"),
        (lambda: log.inclusion_proof(0, 6), "size_out_of_range"),
        (lambda: log.inclusion_proof(0, 0), "size_out_of_range"),
        (lambda: log.consistency_proof(0, 3), "size_out_of_range"),
        (lambda: log.consistency_proof(4, 3), "size_out_of_range"),
        (lambda: log.consistency_proof(3, 6), "size_out_of_range"),
        (lambda: log.root_at(6), "size_out_of_range"),
        (lambda: log.root_at(-1), "size_out_of_range"),
        (lambda: log.append(b"short"), "invalid_leaf_hash"),
        (lambda: TransparencyLog(MemoryLogNodeStore(), -1), "size_out_of_range"),
        (lambda: TransparencyLog(MemoryLogNodeStore(), TREE_SIZE_MAX + 1), "size_out_of_range"),
    ]
    for call, code in cases:
        with pytest.raises(LogError) as caught:
            call()
        assert caught.value.code == code
    assert log.size == 5


def test_a_bad_leaf_fails_the_whole_batch() -> None:
    store = MemoryLogNodeStore()
    log = TransparencyLog(store)
    log.append_many(make_leaves(3))
    before = (log.root(), dict(store.nodes))
    batch = [*make_leaves(4, salt=1), "not bytes", *make_leaves(2, salt=2)]
    with pytest.raises(LogError) as caught:
        log.append_many(batch)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_leaf_hash"
    assert (log.size, log.root(), store.nodes) == (3, *before)


def test_a_failed_store_write_leaves_the_log_unchanged() -> None:
    conn = connect()
    store = SqliteLogNodeStore(conn)
    TransparencyLog(store).append_many(make_leaves(6))
    log = TransparencyLog(store, 4)  # behind the store: its next write collides
    root = log.root()
    with pytest.raises(sqlite3.IntegrityError):
        log.append_many(make_leaves(3, salt=1))
    assert (log.size, log.root()) == (4, root)


def test_oversized_batch_is_rejected() -> None:
    log = TransparencyLog(MemoryLogNodeStore())
    with pytest.raises(LogError) as caught:
        log.append_many([EMPTY_ROOT] * (APPEND_BATCH_LEAVES_MAX + 1))
    assert caught.value.code == "batch_too_large"
    assert log.size == 0


def test_a_full_log_refuses_appends() -> None:
    log = TransparencyLog(EveryNodeStore(), TREE_SIZE_MAX)
    with pytest.raises(LogError) as caught:
        log.append(EMPTY_ROOT)
    assert caught.value.code == "log_full"


# --- property: random append batches ---------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    batch_sizes=st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=8),
    use_sqlite=st.booleans(),
    data=st.data(),
)
def test_random_append_batches(
    batch_sizes: list[int], use_sqlite: bool, data: st.DataObject
) -> None:
    leaves = make_leaves(sum(batch_sizes))
    log = TransparencyLog(sqlite_store() if use_sqlite else memory_store())
    heads: list[tuple[int, bytes]] = []
    for batch_size in batch_sizes:
        start = log.size
        log.append_many(iter(leaves[start : start + batch_size]))
        assert log.size == start + batch_size
        assert log.root() == compute_root(leaves[: log.size])
        if log.size:
            heads.append((log.size, log.root()))
    size, root = log.size, log.root()
    if size == 0:
        return
    for old_size, old_root in heads:
        proof = log.consistency_proof(old_size, size)
        assert proof == compute_consistency_proof(leaves[:size], old_size)
        verify_consistency(old_size, size, old_root, root, proof)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    proof_size = data.draw(st.integers(min_value=index + 1, max_value=size))
    proof = log.inclusion_proof(index, proof_size)
    verify_inclusion(leaves[index], index, proof_size, proof, log.root_at(proof_size))
