"""An append-only RFC 9162 transparency log over every committed transaction.

Why: an auditor holding an old signed log head must be able to check that a
transaction is in the log (inclusion proof) and that the log only grew
(consistency proof), and producing those proofs must stay cheap when the log
holds millions of leaves. So nothing here ever rehashes history:

- The in-memory state is the *frontier*: the roots of the perfect subtrees
  given by the binary decomposition of the size (size 13 = 8 + 4 + 1 gives
  three roots). Appending a leaf merges equal-sized roots like a binary
  counter carry, so it does no store reads and amortised O(1) hashing.
- Every perfect subtree hash, at every level, is written once to a node store
  when it completes: (level, index) names the hash of leaves
  [index * 2^level, (index + 1) * 2^level), and level 0 holds the leaf hashes.
  That is amortised 2 nodes per append.
- A proof reads O(log n) nodes. The RFC's path walks down from the root; a
  subtree it steps past is perfect (one stored node) except on the tree's
  ragged right edge. The walk stays on that edge only while it goes right,
  and then every sibling it passes is a perfect left subtree; the first time
  it goes left it records the ragged right sibling (folded from at most
  log2(n) perfect nodes) and from then on it is inside a perfect subtree.
  So each proof touches at most one ragged subtree, and costs at most
  2 * ceil(log2 n) node reads and log2(n) hashes: O(log n), not O(log^2 n).

Transactions: ``SqliteLogNodeStore`` never begins or commits. The caller
writes a block, its transactions and its log nodes in one database
transaction. If that transaction rolls back, the in-memory frontier is ahead
of the database: the caller must drop this object and reopen it with
``TransparencyLog(store, committed_size)``, which rebuilds the frontier from
O(log n) stored nodes.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from ledger.errors import LedgerError
from ledger.merkle import EMPTY_ROOT, HASH_BYTES, TREE_SIZE_MAX

__all__ = [
    "APPEND_BATCH_LEAVES_MAX",
    "FrontierOnlyNodeStore",
    "LogError",
    "LogNodeStore",
    "MemoryLogNodeStore",
    "SqliteLogNodeStore",
    "TransparencyLog",
]

APPEND_BATCH_LEAVES_MAX = 100_000
"""Most leaves one ``append_many`` call takes. A block holds far fewer; the
bound keeps one call's node list (about 2 nodes per leaf) small in memory."""

_NODE_PREFIX = b"\x01"
_TABLE_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

# A log level index always fits 63 bits, so level numbers stay below 64.
assert TREE_SIZE_MAX.bit_length() <= 63


class LogError(LedgerError, ValueError):
    """A log operation got arguments it cannot serve, or the store lost a node."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(code, detail)


class LogNodeStore(Protocol):
    """Where the log keeps every perfect subtree hash, keyed by (level, index)."""

    def get_node(self, level: int, index: int) -> bytes | None:
        """Return the hash of leaves [index*2^level, (index+1)*2^level), or None."""
        ...

    def put_nodes(self, nodes: Iterable[tuple[int, int, bytes]]) -> None:
        """Store (level, index, hash) triples; never called twice for one live node."""
        ...


class MemoryLogNodeStore:
    """A dict-backed store for tests and for logs that need no durability.

    It cannot roll back: after a failed block, reopen the log at the old size.
    Nodes past that size are then stale, but the log never reads a node past
    its size and overwrites each one before it could.
    """

    def __init__(self) -> None:
        self.nodes: dict[tuple[int, int], bytes] = {}

    def get_node(self, level: int, index: int) -> bytes | None:
        """Return the stored hash, or None if the node was never completed."""
        return self.nodes.get((level, index))

    def put_nodes(self, nodes: Iterable[tuple[int, int, bytes]]) -> None:
        """Store each node; a rewrite after a reopen replaces the stale hash."""
        store = self.nodes
        for level, index, node_hash in nodes:
            store[(level, index)] = node_hash


class SqliteLogNodeStore:
    """Log nodes in one SQLite table, inside the caller's transaction.

    It never begins, commits or rolls back, so a block, its transactions and
    its log nodes land in one atomic write. (Python's sqlite3 module may
    itself open a transaction before the first INSERT; the caller commits it.)
    Rows are inserted with plain INSERT: rewriting a stored node would mean
    rewriting history, so a duplicate key surfaces as sqlite3.IntegrityError.
    """

    def __init__(self, conn: sqlite3.Connection, table: str = "log_nodes") -> None:
        # The table name is spliced into SQL, so it must be a plain identifier.
        if _TABLE_NAME_PATTERN.fullmatch(table) is None:
            raise LogError("invalid_table_name", f"table name {table!r} is not an identifier")
        self._conn = conn
        self._select_sql = f"SELECT hash FROM {table} WHERE level = ? AND idx = ?"
        self._insert_sql = f"INSERT INTO {table} (level, idx, hash) VALUES (?, ?, ?)"
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} ("
            "level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL, "
            "PRIMARY KEY (level, idx)) WITHOUT ROWID"
        )

    def get_node(self, level: int, index: int) -> bytes | None:
        """Return the stored hash, or None if the row does not exist."""
        row = self._conn.execute(self._select_sql, (level, index)).fetchone()
        return None if row is None else bytes(row[0])

    def put_nodes(self, nodes: Iterable[tuple[int, int, bytes]]) -> None:
        """Insert every node with one executemany, in the caller's transaction."""
        self._conn.executemany(self._insert_sql, nodes)


class FrontierOnlyNodeStore:
    """Keeps no nodes: a verifier's log needs only its frontier (appends and the root read nothing else).

    ``frontier_nodes`` seeds the frontier of a log opened at a size above 0 (``TransparencyLog.from_frontier``).
    """

    def __init__(self, frontier_nodes: Mapping[tuple[int, int], bytes] | None = None) -> None:
        self._nodes = dict(frontier_nodes or {})

    def get_node(self, level: int, index: int) -> bytes | None:
        return self._nodes.get((level, index))

    def put_nodes(self, nodes: Iterable[tuple[int, int, bytes]]) -> None:
        pass


class TransparencyLog:
    """An RFC 9162 log whose appends and proofs cost O(log n) (see module docstring).

    Not thread-safe: one writer owns it, as one node owns its block store.
    """

    __slots__ = ("_frontier", "_size", "_store")

    def __init__(self, store: LogNodeStore, size: int = 0) -> None:
        # The size must be one we could ever hold.
        if not 0 <= size <= TREE_SIZE_MAX:
            raise LogError("size_out_of_range", f"size {size} not in [0, {TREE_SIZE_MAX}]")
        self._store = store
        self._size = size
        # Roots of the perfect subtrees of the size's binary decomposition, largest first.
        self._frontier = [self._get_node(level, index) for level, index in _perfect_nodes(0, size)]

    @classmethod
    def from_frontier(cls, size: int, frontier: Sequence[bytes]) -> TransparencyLog:
        """A log of ``size`` leaves that keeps only its frontier (as given by ``frontier``) and no nodes."""
        positions = _perfect_nodes(0, size)
        if len(frontier) != len(positions):
            raise LogError("log_node_missing", f"a log of size {size} has {len(positions)} frontier hashes, "
                           f"not {len(frontier)}")
        return cls(FrontierOnlyNodeStore(dict(zip(positions, frontier))), size)

    @property
    def frontier(self) -> list[bytes]:
        """Roots of the perfect subtrees of the size's binary decomposition, largest first."""
        return list(self._frontier)

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    def root(self) -> bytes:
        """Return the current root from the frontier: no store reads."""
        return _fold_right(self._frontier)

    def append(self, leaf_hash: bytes) -> int:
        """Append one leaf hash and return its index."""
        index = self._size
        self.append_many((leaf_hash,))
        return index

    def append_many(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append leaf hashes in order, all or nothing.

        Checks every hash first, computes the new nodes and frontier on the
        side, writes the nodes with one ``put_nodes`` call, and only then
        updates the in-memory state, so a failed check or write leaves this
        object as it was. A write that fails part-way may have stored some
        nodes: the caller rolls its transaction back, as for any failed block.
        """
        # Read at most one leaf past the bound, so an endless iterable cannot exhaust memory.
        leaves = list(itertools.islice(leaf_hashes, APPEND_BATCH_LEAVES_MAX + 1))
        # Bound one call's memory.
        if len(leaves) > APPEND_BATCH_LEAVES_MAX:
            raise LogError("batch_too_large", f"more than {APPEND_BATCH_LEAVES_MAX} leaves")
        # The log must not grow past what its indices can name.
        if self._size + len(leaves) > TREE_SIZE_MAX:
            raise LogError("log_full", f"size would exceed {TREE_SIZE_MAX}")
        # Every leaf must be a real SHA-256 output.
        for position, leaf_hash in enumerate(leaves):
            if not isinstance(leaf_hash, bytes) or len(leaf_hash) != HASH_BYTES:
                raise LogError("invalid_leaf_hash", f"leaf {position} is not {HASH_BYTES} bytes")
        frontier = list(self._frontier)
        nodes = _extend_frontier(frontier, self._size, leaves)
        self._store.put_nodes(nodes)
        self._frontier = frontier
        self._size += len(leaves)

    def root_at(self, size: int) -> bytes:
        """Return the root the log had at ``size`` leaves (0 <= size <= self.size)."""
        # Only sizes the log has passed through have a root.
        if not 0 <= size <= self._size:
            raise LogError("size_out_of_range", f"size {size} not in [0, {self._size}]")
        if size == self._size:
            return self.root()
        return self._range_hash(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """Return the RFC 9162 inclusion path of leaf ``index`` in the tree of ``size``.

        Walks down from the root like the RFC's PATH; at most one sibling is
        ragged (see module docstring), so this is O(log n) node reads.
        """
        # The tree must be one the log has passed through.
        if not 0 < size <= self._size:
            raise LogError("size_out_of_range", f"size {size} not in [1, {self._size}]")
        # The index must name a leaf of that tree.
        if not 0 <= index < size:
            raise LogError("index_out_of_range", f"index {index} not in [0, {size})")
        path: list[bytes] = []
        start, end = 0, size
        while end - start > 1:
            middle = start + _largest_power_of_two_below(end - start)
            if index < middle:
                path.append(self._range_hash(middle, end))
                end = middle
            else:
                path.append(self._range_hash(start, middle))
                start = middle
        path.reverse()
        return path

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """Return the RFC 9162 consistency proof from ``size1`` to ``size2``.

        Walks down like the RFC's SUBPROOF, keeping the old size relative to
        the current subtree; at most one ragged subtree, so O(log n) reads.
        """
        # Both trees must be ones the log has passed through, the old one non-empty.
        if not 0 < size1 <= size2 <= self._size:
            raise LogError("size_out_of_range", f"need 0 < {size1} <= {size2} <= {self._size}")
        proof: list[bytes] = []
        remaining, start, end = size1, 0, size2
        whole_old_tree_is_subtree = True  # the RFC's flag b
        while remaining != end - start:
            middle = start + _largest_power_of_two_below(end - start)
            if remaining <= middle - start:
                proof.append(self._range_hash(middle, end))
                end = middle
            else:
                proof.append(self._range_hash(start, middle))
                remaining -= middle - start
                start = middle
                whole_old_tree_is_subtree = False
        if not whole_old_tree_is_subtree:
            proof.append(self._range_hash(start, end))
        proof.reverse()
        return proof

    def _range_hash(self, start: int, end: int) -> bytes:
        """Return the MTH of leaves [start, end), a subtree of the RFC recursion.

        ``start`` is aligned to a power of two at least ``end - start``, so
        the range splits into the perfect subtrees of its size's binary
        decomposition: one node if perfect, else the fold of a ragged edge.
        """
        nodes = [self._get_node(level, index) for level, index in _perfect_nodes(start, end)]
        return _fold_right(nodes)

    def _get_node(self, level: int, index: int) -> bytes:
        """Read one perfect node; a missing one means the store lost data or the size is wrong."""
        node_hash = self._store.get_node(level, index)
        if node_hash is None:
            raise LogError("log_node_missing", f"no node at level {level} index {index}")
        return node_hash


def _extend_frontier(
    frontier: list[bytes], size: int, leaves: list[bytes]
) -> list[tuple[int, int, bytes]]:
    """Append ``leaves`` to ``frontier`` in place and return the nodes they complete.

    Appending leaf i completes one node per trailing 1 bit of i, the binary
    counter carry: each merge pops the frontier's smallest root as the left
    child. The hot loop binds sha256 locally and allocates only the results.
    """
    sha256 = hashlib.sha256
    prefix = _NODE_PREFIX
    nodes: list[tuple[int, int, bytes]] = []
    add_node = nodes.append
    pop_root = frontier.pop
    push_root = frontier.append
    index = size
    for leaf_hash in leaves:
        add_node((0, index, leaf_hash))
        node_hash = leaf_hash
        level = 0
        carry = index
        while carry & 1:
            node_hash = sha256(prefix + pop_root() + node_hash).digest()
            level += 1
            carry >>= 1
            add_node((level, carry, node_hash))
        push_root(node_hash)
        index += 1
    return nodes


def _perfect_nodes(start: int, end: int) -> list[tuple[int, int]]:
    """Split [start, end) into perfect subtrees, largest first, as (level, index).

    Valid when ``start`` is a multiple of the largest power of two in
    ``end - start``, which holds for the frontier (start 0) and for every
    range the RFC recursion visits.
    """
    nodes: list[tuple[int, int]] = []
    width = end - start
    for level in range(width.bit_length() - 1, -1, -1):
        if width >> level & 1:
            assert start % (1 << level) == 0  # the range is aligned, so the node exists
            nodes.append((level, start >> level))
            start += 1 << level
    return nodes


def _fold_right(roots: list[bytes]) -> bytes:
    """Combine perfect subtree roots (largest first) into one root, right to left."""
    if not roots:
        return EMPTY_ROOT
    sha256 = hashlib.sha256
    node_hash = roots[-1]
    for left in reversed(roots[:-1]):
        node_hash = sha256(_NODE_PREFIX + left + node_hash).digest()
    return node_hash


def _largest_power_of_two_below(n: int) -> int:
    """Return the largest power of two strictly less than n (n >= 2): the RFC's split k."""
    assert n >= 2
    return 1 << ((n - 1).bit_length() - 1)
