"""The world state's authenticated root: a compact sparse Merkle tree.

Why this module exists: every block header commits to the whole world state
(a key/value map of byte strings) with one 32-byte root. A participant or an
auditor must be able to check one key's value, or its absence, against a
header with a short proof and no access to the node's store, and a validator
must update the root for a block of k writes in O(k log N) work, not O(N).

The tree (binary Jellyfish-style; Dahlberg, Pulls, Peeters, "Efficient
Sparse Merkle Trees", 2016):

- The path of a key is the 256 bits of ``key_hash = SHA-256(key)``, most
  significant bit of byte 0 first; bit 0 goes left, bit 1 goes right.
- A subtree that holds no entry is EMPTY. A subtree that holds exactly one
  entry is a single LEAF, placed at the highest level where it is alone (no
  chain of internal nodes down to depth 256). A subtree with two or more
  entries is an INTERNAL node with a left and a right child, either of which
  may be EMPTY (never a lone LEAF beside an EMPTY: that leaf would move up).
- Hashes (the exact bytes docs/PROTOCOL.md states)::

      value_hash    = SHA-256(value)
      leaf_hash     = SHA-256(0x10 || key_hash || value_hash)
      internal_hash = SHA-256(0x11 || left_hash || right_hash)
      empty         = 32 zero bytes
      root of the empty state = empty

  The 0x10/0x11 prefixes keep a leaf from being read as an internal node
  and stay clear of RFC 9162's 0x00/0x01 and of ``ledger.hashing``'s tags.

Storage (node-local, not part of the protocol): the binary tree is cut
into pages of ``PAGE_LEVELS`` = 3 levels, like Jellyfish's 16-ary nodes but
8-ary. A page starts at an internal node at depth 0, 3, 6, ... and holds
that node's binary subtree down to 3 levels below it: internal nodes inside
the page inline, leaves and EMPTY subtrees inline wherever they sit, and
each internal node at the page's bottom as a reference to its own page.
Pages are content-addressed: the key is the binary hash of the page's top
node (for a one-entry state, the root leaf is a page of its own). Entries,
in preorder::

    EMPTY     0x00                                               1 byte
    LEAF      0x01 || key_hash || value_hash                     65 bytes
    REF       0x02 || node_hash            (only at the bottom)  33 bytes
    INTERNAL  0x03 || node_hash || size (u16, whole entry) || left || right

Why pages: with one row per binary node a block of 1,000 writes at
N = 1,000,000 writes ~12,000 rows at random keys, and SQLite spends
~15-25 us on each; a 3-level page cuts that to ~3,000 rows, and at most
765 bytes a page stays within one 4 KiB SQLite page (a larger row in a
WITHOUT ROWID table spills to overflow pages). See scripts/bench_state_root.py.

Checking what is read: a page's top entry must carry the hash it was
requested by, and every internal entry a walk enters is re-hashed from its
two children (a leaf child from its key_hash and value_hash) and compared
with its stored hash, so every hash, key_hash and value_hash the tree uses
is bound to the root by SHA-256. A tampered or malformed page raises
``StateCorruptionError`` when a walk reaches the altered bytes, so it can
never change a computed root or a proof; bytes no walk has reached (a
sibling subtree copied unchanged into a rewritten page) are carried as
they are and checked when a walk first reaches them. Checking the walked
path only costs a few hashes per page, where re-hashing every page read
would cost up to fifteen. EMPTY is never stored. Pages are
immutable, so every old root stays readable and provable; nothing is
pruned for now (a later garbage collector may delete pages unreachable
from the roots it keeps).

Proofs: ``StateProof.siblings`` lists the sibling hash at each level from
the root down to the level where the key's path ends (its own leaf, an
EMPTY subtree, or another key's leaf that shares the prefix, given as
``other_leaf``). ``verify_proof`` needs only the root, the key, the claimed
value (None for absence) and the proof.

Update cost: ``StateTree.update`` sorts the changed key hashes and descends
the tree once, level by level, reading all pages one level enters in one
store call (``NodeStore.get_nodes``); shared upper paths are read and hashed
once per batch, and only the pages on changed paths are rewritten.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Protocol

import msgpack

from ledger.errors import LedgerError, StoreCorruption, StoreError

__all__ = [
    "EMPTY_HASH",
    "HASH_BYTES",
    "INTERNAL_PREFIX",
    "KEY_HASH_BITS",
    "LEAF_PREFIX",
    "PAGE_BYTES_MAX",
    "PAGE_EMPTY",
    "PAGE_INTERNAL",
    "PAGE_LEAF",
    "PAGE_LEVELS",
    "PAGE_REF",
    "PROOF_BYTES_MAX",
    "SIBLINGS_MAX",
    "MemoryNodeStore",
    "NodeStore",
    "SqliteNodeStore",
    "StateCorruptionError",
    "StateProof",
    "StateProofError",
    "StateRootNotFoundError",
    "StateTree",
    "compute_internal_hash",
    "compute_key_hash",
    "compute_leaf_hash",
    "verify_proof",
]

# --- Constants -----------------------------------------------------------------------------

HASH_BYTES = 32
"""Length of every hash: key hashes, value hashes, node hashes, roots."""
KEY_HASH_BITS = 8 * HASH_BYTES
"""Length of a key's path: one bit per level below the root."""
EMPTY_HASH = b"\x00" * HASH_BYTES
"""Hash of a subtree with no entry, and the root of the empty state."""
LEAF_PREFIX = b"\x10"
"""First byte of a leaf's hashed body."""
INTERNAL_PREFIX = b"\x11"
"""First byte of an internal node's hashed body."""
SIBLINGS_MAX = KEY_HASH_BITS
"""A leaf sits at depth <= 256 (two keys whose hashes differ only in the last bit)."""
PROOF_BYTES_MAX = 1 + 3 + SIBLINGS_MAX * (2 + HASH_BYTES) + 1 + 2 * (2 + HASH_BYTES)
"""Outer fixarray, array16 of bin8 siblings, fixarray of two bin8 hashes."""

PAGE_LEVELS = 3
"""Binary levels stored together in one page (8 children at the bottom)."""
PAGE_EMPTY = 0x00
"""Page entry tag: an EMPTY subtree (1 byte)."""
PAGE_LEAF = 0x01
"""Page entry tag: a leaf, followed by key_hash and value_hash (65 bytes)."""
PAGE_REF = 0x02
"""Page entry tag: an internal node at the page's bottom, stored as its own page (33 bytes)."""
PAGE_INTERNAL = 0x03
"""Page entry tag: an internal node inside the page, then hash, u16 size, left, right."""
PAGE_BYTES_MAX = (2**PAGE_LEVELS - 1) * (1 + HASH_BYTES + 2) + 2**PAGE_LEVELS * (1 + 2 * HASH_BYTES)
"""A full page: every inner position internal, every bottom position a leaf."""

SQLITE_READ_NODES_MAX = 512
"""Most hashes in one ``SELECT ... IN (...)``, below SQLite's old 999-variable limit."""
CACHE_NODES_DEFAULT = 1 << 15
"""Default bound of ``SqliteNodeStore``'s page cache (pages average well under 1 KiB)."""

SQLITE_ROW_BYTES_LOCAL_MAX = (4096 - 12) * 64 // 255 - 23
"""Largest WITHOUT ROWID row SQLite keeps inside one 4 KiB page (1002 bytes)."""

assert SIBLINGS_MAX <= 0xFFFF  # the siblings fit an array16 header, as PROOF_BYTES_MAX assumes
assert SQLITE_READ_NODES_MAX < 999  # one read chunk binds fewer variables than any SQLite allows
assert PAGE_BYTES_MAX <= 0xFFFF  # an entry's size fits its u16 field
# A row (key, body and a record header of a few bytes) never spills to an overflow page.
assert PAGE_BYTES_MAX + HASH_BYTES + 8 <= SQLITE_ROW_BYTES_LOCAL_MAX

_HASH_END = 1 + HASH_BYTES  # an entry's hash (or a leaf's key_hash) follows its tag byte
_LEAF_ENTRY_BYTES = 1 + 2 * HASH_BYTES
_REF_ENTRY_BYTES = 1 + HASH_BYTES
_INTERNAL_HEADER_BYTES = 1 + HASH_BYTES + 2
_LEAF_ENTRY_TAG = bytes([PAGE_LEAF])
_REF_ENTRY_TAG = bytes([PAGE_REF])
_INTERNAL_ENTRY_TAG = bytes([PAGE_INTERNAL])
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_sha256 = hashlib.sha256

# --- Errors --------------------------------------------------------------------------------


class StateProofError(LedgerError, ValueError):
    """A state proof is malformed or does not prove the claim against the root."""

    def __init__(self, detail: str) -> None:
        super().__init__("invalid_state_proof", detail)


class StateCorruptionError(StoreCorruption):
    """A state page read from the store is missing, malformed, or disagrees with its hashes."""

    def __init__(self, detail: str) -> None:
        super().__init__("store_corrupt", detail)


class StateRootNotFoundError(StoreError):
    """The store holds no page for the requested (non-empty) root."""

    def __init__(self, detail: str) -> None:
        super().__init__("state_root_not_found", detail)


# --- Hash rules ----------------------------------------------------------------------------


def compute_key_hash(key: bytes) -> bytes:
    """The key's 256-bit path: SHA-256(key)."""
    return _sha256(key).digest()


def compute_leaf_hash(key_hash: bytes, value_hash: bytes) -> bytes:
    """SHA-256(0x10 || key_hash || value_hash)."""
    return _sha256(LEAF_PREFIX + key_hash + value_hash).digest()


def compute_internal_hash(left_hash: bytes, right_hash: bytes) -> bytes:
    """SHA-256(0x11 || left_hash || right_hash)."""
    return _sha256(INTERNAL_PREFIX + left_hash + right_hash).digest()


def _path_bit(key_int: int, depth: int) -> int:
    """Bit ``depth`` of the path (0 = most significant bit of byte 0)."""
    return (key_int >> (KEY_HASH_BITS - 1 - depth)) & 1


def _shares_prefix(a_int: int, b_int: int, bits: int) -> bool:
    """Whether two paths agree on their first ``bits`` bits."""
    return (a_int ^ b_int) >> (KEY_HASH_BITS - bits) == 0


# --- Proofs --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateProof:
    """The sibling hashes along a key's path, and the leaf it ends in if not its own."""

    siblings: tuple[bytes, ...]
    """Sibling hash at each level, root first, down to where the key's path ends."""
    other_leaf: tuple[bytes, bytes] | None = None
    """For absence ending in another key's leaf: that leaf's (key_hash, value_hash)."""

    def encode(self) -> bytes:
        """Canonical msgpack ``[siblings: [bin32, ...], other_leaf: nil | [bin32, bin32]]``."""
        other = None if self.other_leaf is None else list(self.other_leaf)
        data = msgpack.packb([list(self.siblings), other], use_bin_type=True)
        assert isinstance(data, bytes)
        return data

    @classmethod
    def decode(cls, data: bytes) -> StateProof:
        """Parse canonical bytes; anything else raises ``StateProofError``."""
        if type(data) is not bytes:
            raise StateProofError("proof must be bytes")
        if len(data) > PROOF_BYTES_MAX:
            raise StateProofError(f"proof is {len(data)} bytes, max {PROOF_BYTES_MAX}")
        wire = _unpack_proof(data)
        proof = cls(siblings=_check_siblings(wire), other_leaf=_check_other_leaf(wire))
        if proof.encode() != data:
            raise StateProofError("proof is not canonically encoded")
        return proof


def _unpack_proof(data: bytes) -> list[Any]:
    """msgpack-decode a proof strictly: no maps, no ext, nothing longer than a hash."""
    try:
        wire = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_bin_len=HASH_BYTES,
            max_str_len=HASH_BYTES,
            max_array_len=SIBLINGS_MAX,
            max_map_len=0,
            max_ext_len=0,
        )
    except (ValueError, TypeError, UnicodeDecodeError) as error:
        # msgpack's ExtraData, OutOfData, FormatError and StackError are ValueErrors.
        raise StateProofError(f"malformed proof: {type(error).__name__}") from None
    if type(wire) is not list or len(wire) != 2:
        raise StateProofError("proof must be an array of two fields")
    return wire


def _check_siblings(wire: list[Any]) -> tuple[bytes, ...]:
    siblings = wire[0]
    if type(siblings) is not list or len(siblings) > SIBLINGS_MAX:
        raise StateProofError(f"siblings must be an array of at most {SIBLINGS_MAX} hashes")
    if not all(type(item) is bytes and len(item) == HASH_BYTES for item in siblings):
        raise StateProofError("every sibling must be 32 bytes")
    return tuple(siblings)


def _check_other_leaf(wire: list[Any]) -> tuple[bytes, bytes] | None:
    other = wire[1]
    if other is None:
        return None
    if type(other) is not list or len(other) != 2:
        raise StateProofError("other_leaf must be nil or [key_hash, value_hash]")
    key_hash, value_hash = other
    if not all(type(item) is bytes and len(item) == HASH_BYTES for item in other):
        raise StateProofError("other_leaf hashes must be 32 bytes")
    return (key_hash, value_hash)


def verify_proof(root: bytes, key: bytes, value: bytes | None, proof: StateProof) -> None:
    """Check that ``key`` maps to ``value`` (None: is absent) under ``root``.

    Returns None on success and raises ``StateProofError`` otherwise, so a
    caller cannot forget to look at a boolean. Needs no store.
    """
    _check_proof_shape(root, proof)
    key_int = int.from_bytes(compute_key_hash(key), "big")
    node_hash = _compute_path_end(key_int, value, proof)
    for depth in range(len(proof.siblings) - 1, -1, -1):
        sibling = proof.siblings[depth]
        if _path_bit(key_int, depth):
            node_hash = compute_internal_hash(sibling, node_hash)
        else:
            node_hash = compute_internal_hash(node_hash, sibling)
    if node_hash != root:
        raise StateProofError("proof does not lead to the root")


def _check_proof_shape(root: bytes, proof: StateProof) -> None:
    """Lengths first, so a hostile proof cannot make the verifier do unbounded work."""
    if type(root) is not bytes or len(root) != HASH_BYTES:
        raise StateProofError("root must be 32 bytes")
    if len(proof.siblings) > SIBLINGS_MAX:
        raise StateProofError(f"proof has {len(proof.siblings)} siblings, max {SIBLINGS_MAX}")
    if not all(type(item) is bytes and len(item) == HASH_BYTES for item in proof.siblings):
        raise StateProofError("every sibling must be 32 bytes")


def _compute_path_end(key_int: int, value: bytes | None, proof: StateProof) -> bytes:
    """Hash of the subtree where the key's path ends, as the claim says it is."""
    if value is not None:
        # Membership: the path ends in the key's own leaf.
        if proof.other_leaf is not None:
            raise StateProofError("a membership proof has no other_leaf")
        key_hash = key_int.to_bytes(HASH_BYTES, "big")
        return compute_leaf_hash(key_hash, _sha256(value).digest())
    if proof.other_leaf is None:
        # Absence: the path ends in an EMPTY subtree.
        return EMPTY_HASH
    # Absence: the path ends in the leaf of another key sharing the prefix.
    other_key_hash, other_value_hash = proof.other_leaf
    if len(other_key_hash) != HASH_BYTES or len(other_value_hash) != HASH_BYTES:
        raise StateProofError("other_leaf hashes must be 32 bytes")
    other_int = int.from_bytes(other_key_hash, "big")
    if other_int == key_int:
        raise StateProofError("other_leaf holds the key itself")
    if not _shares_prefix(other_int, key_int, len(proof.siblings)):
        raise StateProofError("other_leaf is not on the key's path")
    return compute_leaf_hash(other_key_hash, other_value_hash)


# --- Node stores ---------------------------------------------------------------------------


class NodeStore(Protocol):
    """Content-addressed stored nodes (the tree stores pages): hash -> encoded body.

    The store is not trusted: ``StateTree`` checks what it reads against
    the hashes that name it.
    """

    def get_node(self, node_hash: bytes) -> bytes | None:
        """The body stored under ``node_hash``, or None."""
        ...

    def get_nodes(self, node_hashes: Sequence[bytes]) -> Mapping[bytes, bytes]:
        """Bodies of those of ``node_hashes`` that are stored (one round trip)."""
        ...

    def put_nodes(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Store (hash, body) pairs; storing a present hash again is a no-op."""
        ...


class MemoryNodeStore:
    """A dict of stored nodes, for tests and for verifiers that rebuild a state in memory."""

    def __init__(self) -> None:
        self.nodes: dict[bytes, bytes] = {}
        """Public so tests can tamper with a node and watch the tree notice."""

    def get_node(self, node_hash: bytes) -> bytes | None:
        return self.nodes.get(node_hash)

    def get_nodes(self, node_hashes: Sequence[bytes]) -> Mapping[bytes, bytes]:
        nodes = self.nodes
        return {h: nodes[h] for h in node_hashes if h in nodes}

    def put_nodes(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        for node_hash, body in items:
            self.nodes.setdefault(node_hash, body)


class SqliteNodeStore:
    """Stored nodes in one SQLite table, plus a bounded cache of recently used ones.

    The table is ``(hash BLOB PRIMARY KEY, body BLOB NOT NULL) WITHOUT
    ROWID``, created if missing. The store never begins, commits or rolls
    back: the caller writes a whole block in its own transaction (with the
    sqlite3 module's default isolation level, the first INSERT opens it
    implicitly). The cache is write-through, so the upper pages a block
    rewrites are hot for the next block; if the caller rolls back, the cache may still hold bodies the
    table lost, which is harmless because a body is only ever served under
    its own hash (and ``put_nodes`` always writes to the table).

    The cache keeps two generations of dicts (a cheap approximation of LRU):
    new and reused entries go to the young one; when it is full it becomes
    the old one and the previous old one is dropped. At most
    ``cache_nodes_max`` entries are held; 0 disables it.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        table: str = "state_nodes",
        cache_nodes_max: int = CACHE_NODES_DEFAULT,
    ) -> None:
        # The table name is spliced into SQL, so it must be a plain identifier.
        if _TABLE_NAME.fullmatch(table) is None:
            raise StoreError("invalid_table_name", f"table name {table!r} is not an identifier")
        assert cache_nodes_max >= 0, cache_nodes_max
        self._conn = conn
        self._table = table
        self._generation_nodes_max = cache_nodes_max // 2
        self._young: dict[bytes, bytes] = {}
        self._old: dict[bytes, bytes] = {}
        self.rows_read = 0
        """Rows fetched from SQLite so far (cache misses), for the benchmark."""
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} "
            "(hash BLOB PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID"
        )
        self._select_one = f"SELECT body FROM {table} WHERE hash = ?"
        self._insert = f"INSERT OR IGNORE INTO {table} (hash, body) VALUES (?, ?)"

    def cache_size_nodes(self) -> int:
        """Entries held in the cache now (for tests and the benchmark)."""
        return len(self._young) + len(self._old)

    def get_node(self, node_hash: bytes) -> bytes | None:
        body = self._get_cached(node_hash)
        if body is not None:
            return body
        row = self._conn.execute(self._select_one, (node_hash,)).fetchone()
        if row is None:
            return None
        self.rows_read += 1
        stored: bytes = row[0]
        self._put_cached(node_hash, stored)
        return stored

    def get_nodes(self, node_hashes: Sequence[bytes]) -> Mapping[bytes, bytes]:
        found: dict[bytes, bytes] = {}
        missing: list[bytes] = []
        for node_hash in node_hashes:
            body = self._get_cached(node_hash)
            if body is None:
                missing.append(node_hash)
            else:
                found[node_hash] = body
        for start in range(0, len(missing), SQLITE_READ_NODES_MAX):
            chunk = missing[start : start + SQLITE_READ_NODES_MAX]
            for node_hash, body in self._select_many(chunk):
                found[node_hash] = body
                self._put_cached(node_hash, body)
        return found

    def put_nodes(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        # Sorted, the inserts walk the B-tree in order instead of hopping between pages.
        rows = sorted(items)
        self._conn.executemany(self._insert, rows)
        for node_hash, body in rows:
            self._put_cached(node_hash, body)

    def _select_many(self, chunk: list[bytes]) -> list[tuple[bytes, bytes]]:
        """One IN query; padded to a power of two so SQLite reuses a few statements."""
        size = 1 << (len(chunk) - 1).bit_length()
        padded = chunk + [chunk[0]] * (size - len(chunk))
        marks = ",".join("?" * size)
        sql = f"SELECT hash, body FROM {self._table} WHERE hash IN ({marks})"
        rows: list[tuple[bytes, bytes]] = self._conn.execute(sql, padded).fetchall()
        self.rows_read += len(rows)
        return rows

    def _get_cached(self, node_hash: bytes) -> bytes | None:
        body = self._young.get(node_hash)
        if body is None:
            body = self._old.get(node_hash)
            if body is not None:
                self._put_cached(node_hash, body)
        return body

    def _put_cached(self, node_hash: bytes, body: bytes) -> None:
        if self._generation_nodes_max == 0:
            return
        self._young[node_hash] = body
        if len(self._young) >= self._generation_nodes_max:
            self._old = self._young
            self._young = {}


# --- The tree ------------------------------------------------------------------------------

_Entry = tuple[int, bytes, bytes]
"""A leaf to build: (key_hash as int, key_hash, value_hash)."""
_Result = tuple[int, bytes, bytes]
"""A subtree after the batch: (page entry tag, hash, its entry bytes in the parent's page)."""
_Split = tuple[_Result | None, _Result | None, int, int]
"""An internal node to rebuild: each child's old result if unchanged, else its index below."""
_Frontier = list[tuple[bytes, int, int, int]]
"""Positions to visit at one level: (page body, entry offset, first change, end of changes)."""
_entry_int = itemgetter(0)
_EMPTY_RESULT: _Result = (PAGE_EMPTY, EMPTY_HASH, bytes([PAGE_EMPTY]))


@dataclass(frozen=True, slots=True)
class _Batch:
    """A block's changes, sorted by path, with the paths as ints for bisection."""

    key_ints: list[int]
    """Each changed key's path as a 256-bit int, ascending."""
    key_hashes: list[bytes]
    """The same paths as bytes."""
    value_hashes: list[bytes | None]
    """SHA-256 of each new value, or None to delete the key."""


class StateTree:
    """Reads, updates and proves compact sparse Merkle trees kept in a ``NodeStore``.

    The tree object holds no root: every call names the root it works on,
    so the caller (the state layer) decides which root is current.
    """

    def __init__(self, store: NodeStore) -> None:
        self._store = store

    # Reads ----------------------------------------------------------------------------------

    def get_proof(self, root: bytes, key: bytes) -> StateProof:
        """A proof of ``key``'s value, or of its absence, under ``root``."""
        key_hash = compute_key_hash(key)
        siblings, leaf = self._walk(root, key_hash)
        if leaf is None or leaf[0] == key_hash:
            return StateProof(siblings=tuple(siblings))
        return StateProof(siblings=tuple(siblings), other_leaf=leaf)

    def get_value_hash(self, root: bytes, key: bytes) -> bytes | None:
        """SHA-256 of ``key``'s value under ``root``, or None when the key is absent."""
        key_hash = compute_key_hash(key)
        _, leaf = self._walk(root, key_hash)
        if leaf is None or leaf[0] != key_hash:
            return None
        return leaf[1]

    def _walk(self, root: bytes, key_hash: bytes) -> tuple[list[bytes], tuple[bytes, bytes] | None]:
        """Siblings down the key's path, and the (key_hash, value_hash) of the leaf it ends in."""
        _check_root(root)
        siblings: list[bytes] = []
        if root == EMPTY_HASH:
            return siblings, None
        key_int = int.from_bytes(key_hash, "big")
        body, offset = self._load_pages([root], is_root=True)[root], 0
        while True:
            tag = body[offset]
            if tag == PAGE_EMPTY:
                return siblings, None
            if tag == PAGE_LEAF:
                key_hash_end, leaf_end = offset + _HASH_END, offset + _LEAF_ENTRY_BYTES
                return siblings, (body[offset + 1 : key_hash_end], body[key_hash_end:leaf_end])
            if tag == PAGE_REF:
                page_hash = body[offset + 1 : offset + _HASH_END]
                body, offset = self._load_pages([page_hash], is_root=False)[page_hash], 0
            left_offset, _, left_hash, right_offset, _, right_hash = _open_internal(
                body, offset, len(siblings))
            if _path_bit(key_int, len(siblings)):
                siblings.append(left_hash)
                offset = right_offset
            else:
                siblings.append(right_hash)
                offset = left_offset

    # Update ---------------------------------------------------------------------------------

    def update(self, root: bytes, changes: Mapping[bytes, bytes | None]) -> bytes:
        """Apply a batch (value None deletes the key) and return the new root.

        New pages are written to the store; the old root stays valid.
        """
        _check_root(root)
        if not changes:
            return root
        batch = _sort_changes(changes)
        new_pages: dict[bytes, bytes] = {}
        plans = self._descend(root, batch, new_pages)
        result = _ascend(plans, new_pages)
        if result[0] == PAGE_LEAF:
            new_pages[result[1]] = result[2]  # a one-entry state: its leaf is the root page
        self._store.put_nodes(new_pages.items())
        return result[1]

    def _descend(
        self, root: bytes, batch: _Batch, new_pages: dict[bytes, bytes]
    ) -> list[list[_Result | _Split]]:
        """Walk down level by level; every page a level enters is read in one store call.

        Each visited position gets a plan: an EMPTY or LEAF position is
        rebuilt from its entries at once (a ``_Result``); an INTERNAL one is
        split by the next path bit (a ``_Split``) and its changed children
        form the next level's frontier.
        """
        key_ints = batch.key_ints
        root_body = bytes([PAGE_EMPTY])
        if root != EMPTY_HASH:
            root_body = self._load_pages([root], is_root=True)[root]
        frontier: _Frontier = [(root_body, 0, 0, len(key_ints))]
        plans: list[list[_Result | _Split]] = []
        depth = 0
        while frontier:
            frontier = self._enter_pages(frontier)
            level: list[_Result | _Split] = []
            next_frontier: _Frontier = []
            for body, offset, lo, hi in frontier:
                if body[offset] != PAGE_INTERNAL:
                    level.append(_rebuild(body, offset, batch, lo, hi, depth, new_pages))
                    continue
                left_offset, left_size, left_hash, right_offset, right_size, right_hash = (
                    _open_internal(body, offset, depth))
                shift = KEY_HASH_BITS - 1 - depth
                mid = bisect_left(key_ints, ((key_ints[lo] >> shift) | 1) << shift, lo, hi)
                left_old = right_old = None
                left_index = right_index = -1
                if lo < mid:
                    left_index = len(next_frontier)
                    next_frontier.append((body, left_offset, lo, mid))
                else:
                    left_old = (body[left_offset], left_hash,
                                body[left_offset : left_offset + left_size])
                if mid < hi:
                    right_index = len(next_frontier)
                    next_frontier.append((body, right_offset, mid, hi))
                else:
                    right_old = (body[right_offset], right_hash,
                                 body[right_offset : right_offset + right_size])
                level.append((left_old, right_old, left_index, right_index))
            plans.append(level)
            frontier = next_frontier
            depth += 1
        return plans

    def _enter_pages(self, frontier: _Frontier) -> _Frontier:
        """Replace every reference in the frontier by the root entry of its page."""
        refs = [body[offset + 1 : offset + _HASH_END] for body, offset, _, _ in frontier
                if body[offset] == PAGE_REF]
        if not refs:
            return frontier
        pages = self._load_pages(refs, is_root=False)
        entered: _Frontier = []
        for body, offset, lo, hi in frontier:
            if body[offset] == PAGE_REF:
                body, offset = pages[body[offset + 1 : offset + _HASH_END]], 0
            entered.append((body, offset, lo, hi))
        return entered

    def _load_pages(self, page_hashes: list[bytes], is_root: bool) -> Mapping[bytes, bytes]:
        """Read pages and check each one's root entry names the hash it was read by."""
        bodies = self._store.get_nodes(page_hashes)
        for page_hash in page_hashes:
            _check_page(page_hash, bodies.get(page_hash), is_root)
        return bodies


def _check_root(root: bytes) -> None:
    # A caller bug, not user input: the state layer passes roots it computed.
    assert type(root) is bytes and len(root) == HASH_BYTES, root


def _check_page(page_hash: bytes, body: bytes | None, is_root: bool) -> None:
    """A missing root is an unknown root; a missing or altered page below it is corruption.

    Only the page's root entry is checked here; the entries below it are
    checked against their parent's hash as the walk enters them
    (``_open_internal``).
    """
    if body is None:
        if is_root:
            raise StateRootNotFoundError(f"no state with root {page_hash.hex()}")
        raise StateCorruptionError(f"state page {page_hash.hex()} is missing")
    if body[:1] == _INTERNAL_ENTRY_TAG and len(body) >= _INTERNAL_HEADER_BYTES:
        size = int.from_bytes(body[_HASH_END:_INTERNAL_HEADER_BYTES], "big")
        if body[1:_HASH_END] == page_hash and size == len(body):
            return
    elif is_root and body[:1] == _LEAF_ENTRY_TAG and len(body) == _LEAF_ENTRY_BYTES:
        if _sha256(LEAF_PREFIX + body[1:]).digest() == page_hash:
            return
    raise StateCorruptionError(f"state page {page_hash.hex()} does not match its hash")


def _open_internal(
    body: bytes, offset: int, depth: int
) -> tuple[int, int, bytes, int, int, bytes]:
    """Locate an INTERNAL entry's two children and check its stored hash against them.

    Returns (offset, size, hash) of the left child, then of the right one.
    Raises ``StateCorruptionError`` when the bytes are out of shape or the
    hash does not match: this is where a tampered page is caught.
    """
    if depth >= KEY_HASH_BITS:
        raise StateCorruptionError("internal node below depth 255")
    at_boundary = (depth + 1) % PAGE_LEVELS == 0
    left_offset = offset + _INTERNAL_HEADER_BYTES
    left_size, left_hash = _open_child(body, left_offset, at_boundary)
    right_offset = left_offset + left_size
    right_size, right_hash = _open_child(body, right_offset, at_boundary)
    size = int.from_bytes(body[offset + _HASH_END : left_offset], "big")
    if size != _INTERNAL_HEADER_BYTES + left_size + right_size:
        raise StateCorruptionError("state page entry has a wrong size")
    stored_hash = body[offset + 1 : offset + _HASH_END]
    if _sha256(INTERNAL_PREFIX + left_hash + right_hash).digest() != stored_hash:
        raise StateCorruptionError("state page entry does not match its hash")
    return left_offset, left_size, left_hash, right_offset, right_size, right_hash


def _open_child(body: bytes, offset: int, at_boundary: bool) -> tuple[int, bytes]:
    """(size, hash) of the entry at ``offset``; at a page boundary internal nodes are REFs."""
    tag = body[offset] if offset < len(body) else -1
    if tag == PAGE_EMPTY:
        return 1, EMPTY_HASH
    if tag == PAGE_LEAF and offset + _LEAF_ENTRY_BYTES <= len(body):
        leaf = body[offset + 1 : offset + _LEAF_ENTRY_BYTES]
        return _LEAF_ENTRY_BYTES, _sha256(LEAF_PREFIX + leaf).digest()
    if at_boundary:
        if tag == PAGE_REF and offset + _REF_ENTRY_BYTES <= len(body):
            return _REF_ENTRY_BYTES, body[offset + 1 : offset + _HASH_END]
    elif tag == PAGE_INTERNAL and offset + _INTERNAL_HEADER_BYTES <= len(body):
        size = int.from_bytes(body[offset + _HASH_END : offset + _INTERNAL_HEADER_BYTES], "big")
        if offset + size <= len(body):
            return size, body[offset + 1 : offset + _HASH_END]
    raise StateCorruptionError("state page entry is malformed")


def _sort_changes(changes: Mapping[bytes, bytes | None]) -> _Batch:
    """Hash every changed key and value, ordered by path."""
    rows = []
    for key, value in changes.items():
        assert type(key) is bytes and (value is None or type(value) is bytes), (key, value)
        key_hash = _sha256(key).digest()
        value_hash = None if value is None else _sha256(value).digest()
        rows.append((int.from_bytes(key_hash, "big"), key_hash, value_hash))
    rows.sort(key=_entry_int)
    return _Batch(
        key_ints=[row[0] for row in rows],
        key_hashes=[row[1] for row in rows],
        value_hashes=[row[2] for row in rows],
    )


def _ascend(plans: list[list[_Result | _Split]], new_pages: dict[bytes, bytes]) -> _Result:
    """Hash the rebuilt levels bottom-up; the one result of level 0 is the new root."""
    below: list[_Result] = []
    for depth in range(len(plans) - 1, -1, -1):
        results: list[_Result] = []
        for plan in plans[depth]:
            if len(plan) == 3:
                results.append(plan)  # type: ignore[arg-type]
                continue
            left_old, right_old, left_index, right_index = plan  # type: ignore[misc]
            left = below[left_index] if left_index >= 0 else left_old
            right = below[right_index] if right_index >= 0 else right_old
            results.append(_join(left, right, depth, new_pages))  # type: ignore[arg-type]
        below = results
    assert len(below) == 1
    return below[0]


def _join(left: _Result, right: _Result, depth: int, new_pages: dict[bytes, bytes]) -> _Result:
    """The subtree over two children, keeping the tree compact.

    A lone leaf beside an EMPTY sibling moves up (its hash does not depend
    on its depth); two EMPTY children make an EMPTY subtree.
    """
    if left[1] == EMPTY_HASH:
        if right[1] == EMPTY_HASH:
            return _EMPTY_RESULT
        if right[0] == PAGE_LEAF:
            return right
    elif right[1] == EMPTY_HASH and left[0] == PAGE_LEAF:
        return left
    return _make_internal(left, right, depth, new_pages)


def _make_internal(
    left: _Result, right: _Result, depth: int, new_pages: dict[bytes, bytes]
) -> _Result:
    """A new internal node; at a page-root depth it starts a new page and is a REF above."""
    node_hash = _sha256(INTERNAL_PREFIX + left[1] + right[1]).digest()
    children = left[2] + right[2]
    size = (_INTERNAL_HEADER_BYTES + len(children)).to_bytes(2, "big")
    entry = _INTERNAL_ENTRY_TAG + node_hash + size + children
    if depth % PAGE_LEVELS:
        return PAGE_INTERNAL, node_hash, entry
    new_pages[node_hash] = entry
    return PAGE_REF, node_hash, _REF_ENTRY_TAG + node_hash


def _rebuild(
    body: bytes,
    offset: int,
    batch: _Batch,
    lo: int,
    hi: int,
    depth: int,
    new_pages: dict[bytes, bytes],
) -> _Result:
    """Rebuild an EMPTY or single-LEAF position from scratch.

    Its new entries are the batch's writes in ``[lo, hi)`` plus the old
    leaf, unless the batch rewrites or deletes that leaf's key.
    """
    key_ints, key_hashes, value_hashes = batch.key_ints, batch.key_hashes, batch.value_hashes
    entries: list[_Entry] = []
    for index in range(lo, hi):
        value_hash = value_hashes[index]
        if value_hash is not None:
            entries.append((key_ints[index], key_hashes[index], value_hash))
    if body[offset] == PAGE_LEAF:
        old_key_hash = body[offset + 1 : offset + _HASH_END]
        old_int = int.from_bytes(old_key_hash, "big")
        if not _shares_prefix(old_int, key_ints[lo], depth):
            raise StateCorruptionError("a state leaf is off its key's path")
        at = bisect_left(key_ints, old_int, lo, hi)
        if at == hi or key_ints[at] != old_int:
            old = (old_int, old_key_hash, body[offset + _HASH_END : offset + _LEAF_ENTRY_BYTES])
            entries.insert(bisect_left(entries, old_int, key=_entry_int), old)
    return _build(entries, depth, new_pages)


def _build(entries: list[_Entry], depth: int, new_pages: dict[bytes, bytes]) -> _Result:
    """The canonical subtree at ``depth`` over sorted, distinct entries sharing its prefix."""
    if not entries:
        return _EMPTY_RESULT
    if len(entries) == 1:
        _, key_hash, value_hash = entries[0]
        leaf_hash = _sha256(LEAF_PREFIX + key_hash + value_hash).digest()
        return PAGE_LEAF, leaf_hash, _LEAF_ENTRY_TAG + key_hash + value_hash
    assert depth < KEY_HASH_BITS  # two distinct 256-bit paths part before depth 256
    shift = KEY_HASH_BITS - 1 - depth
    mid = bisect_left(entries, ((entries[0][0] >> shift) | 1) << shift, key=_entry_int)
    left = _build(entries[:mid], depth + 1, new_pages)
    right = _build(entries[mid:], depth + 1, new_pages)
    return _make_internal(left, right, depth, new_pages)
