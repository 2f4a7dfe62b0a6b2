"""The durable store: one SQLite database (WAL mode) per node.

A block, its commit certificate, its transaction index and receipts, its
state changes, the new state-tree nodes and the new transparency-log nodes
are written in ONE database transaction, with ``synchronous=FULL`` so the
commit is fsynced before ``append_block`` returns. A process killed at any
instant therefore reopens at the last fully stored block, never between.

Tables (see docs/PROTOCOL.md for the value encodings):

    meta          schema version, genesis bytes and hash
    blocks        height -> block hash, header bytes, transactions bytes, certificate bytes
    txs           tx id -> height, index in block, index in the log, receipt bytes
    state         SHA-256(key) -> key, value, height of the last write
    state_changes (height, key) -> value or NULL (deleted): each block's writes
    state_nodes   state-tree nodes (ledger.smt), content-addressed
    log_nodes     transparency-log nodes (ledger.tlog), by (level, index)

Opening is cheap: it reads the head and checks it (hash, certificate), and
does no full rescan. Checking every byte is ``ledger.verify``'s job.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger import encoding as enc
from ledger import merkle, smt
from ledger.block import Block, BlockHeader, CommitCertificate, compute_tx_root
from ledger.errors import EncodingError, GenesisError, InvalidBlock, StoreCorruption, StoreError
from ledger.files import fsync_directory
from ledger.genesis import Genesis
from ledger.hashing import sha256
from ledger.smt import EMPTY_HASH as EMPTY_STATE_ROOT
from ledger.smt import MemoryNodeStore, SqliteNodeStore, StateTree
from ledger.state import compute_genesis_state, validator_set_in_force
from ledger.tlog import SqliteLogNodeStore, TransparencyLog
from ledger.transaction import SignedTransaction
from ledger.validators import ValidatorSet

SCHEMA_VERSION = 1
STORE_FILE_NAME = "ledger.sqlite"
STAGING_SUFFIX = ".creating"
"""``create`` builds the store under this suffix and renames it once it is complete."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY, hash BLOB NOT NULL, header BLOB NOT NULL,
    transactions BLOB NOT NULL, certificate BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS txs (
    tx_id BLOB PRIMARY KEY, height INTEGER NOT NULL, idx INTEGER NOT NULL,
    log_index INTEGER NOT NULL, receipt BLOB NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS txs_by_height ON txs (height, idx);
CREATE TABLE IF NOT EXISTS state (
    key_hash BLOB PRIMARY KEY, key BLOB NOT NULL, value BLOB NOT NULL,
    height INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state_changes (
    height INTEGER NOT NULL, key BLOB NOT NULL, value BLOB,
    PRIMARY KEY (height, key)) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class TxLocation:
    height: int
    index: int
    """Position in its block."""
    log_index: int
    """Leaf index in the transparency log."""
    receipt: bytes


@dataclass(frozen=True, slots=True)
class PreparedRoots:
    """What a block's header must say, computed without writing anything."""

    state_root: bytes
    log_size: int
    log_root: bytes


class OverlayNodeStore:
    """Reads a node store, keeps its own writes in memory: previews and verification."""

    def __init__(self, base: smt.NodeStore) -> None:
        self._base = base
        self._memory = MemoryNodeStore()

    def get_node(self, node_hash: bytes) -> bytes | None:
        return self._memory.get_node(node_hash) or self._base.get_node(node_hash)

    def get_nodes(self, node_hashes: Sequence[bytes]) -> Mapping[bytes, bytes]:
        found = dict(self._memory.get_nodes(node_hashes))
        missing = [node_hash for node_hash in node_hashes if node_hash not in found]
        if missing:
            found.update(self._base.get_nodes(missing))
        return found

    def put_nodes(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        self._memory.put_nodes(items)

    def new_nodes(self) -> dict[bytes, bytes]:
        """The nodes written to this overlay (and not to its base)."""
        return self._memory.nodes

    def forget_new_nodes(self) -> None:
        self._memory = MemoryNodeStore()


class _DiscardLogNodes:
    def __init__(self, base: SqliteLogNodeStore) -> None:
        self._base = base

    def get_node(self, level: int, index: int) -> bytes | None:
        return self._base.get_node(level, index)

    def put_nodes(self, nodes: object) -> None:
        pass


def connect(path: Path) -> sqlite3.Connection:
    """Open SQLite in WAL mode with fsync on every commit; we manage transactions."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=OFF")
    return conn


class Store:
    """A node's chain and state on disk; one writer per store."""

    def __init__(self, path: Path, conn: sqlite3.Connection, genesis: Genesis, *, check_head: bool = True) -> None:
        """Use ``create`` or ``open``."""
        self.path = path
        self.genesis = genesis
        self.genesis_hash = genesis.compute_hash()
        self.chain_id = genesis.chain_id
        self._conn = conn
        self._log_nodes = SqliteLogNodeStore(conn)
        self._state_nodes = SqliteNodeStore(conn)
        self.tree = StateTree(self._state_nodes)
        self._prepared_state: tuple[bytes, dict[bytes, bytes | None], bytes, dict[bytes, bytes]] | None = None
        if check_head:
            self._load_head()

    # --- opening and creating ---

    @classmethod
    def create(cls, directory: Path, genesis: Genesis, *, durable: bool = True) -> Store:
        """Create a new store for ``genesis`` in ``directory`` (which may exist, empty of a store).

        ``durable=False`` skips fsync on commit: only for scratch stores that are
        thrown away (an auditor's replay), never for a node's chain.
        """
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / STORE_FILE_NAME
        if path.exists():
            raise StoreError("store_conflict", f"a store already exists at {path}")
        # Build it under another name and rename it when complete: a process killed
        # mid-create must leave no store rather than a file that is not one.
        staging_path = directory / (STORE_FILE_NAME + STAGING_SUFFIX)
        for leftover in _sqlite_files(staging_path):  # from a create that was killed
            leftover.unlink(missing_ok=True)
        conn = connect(staging_path)
        conn.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA.strip().split(";"):
            if statement.strip():
                conn.execute(statement)
        SqliteLogNodeStore(conn)
        state_nodes = SqliteNodeStore(conn)
        genesis_state = compute_genesis_state(genesis)
        state_root = StateTree(state_nodes).update(EMPTY_STATE_ROOT, genesis_state)
        conn.executemany(
            "INSERT INTO state (key_hash, key, value, height) VALUES (?, ?, ?, 0)",
            [(sha256(key), key, value) for key, value in genesis_state.items()],
        )
        meta = {
            "schema_version": str(SCHEMA_VERSION).encode(),
            "genesis": genesis.encode(),
            "genesis_hash": genesis.compute_hash(),
            "genesis_state_root": state_root,
        }
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", list(meta.items()))
        conn.execute("COMMIT")
        conn.close()  # the last close checkpoints the WAL into the file (fsynced) and deletes it
        os.replace(staging_path, path)
        fsync_directory(directory)
        conn = connect(path)
        if not durable:
            conn.execute("PRAGMA synchronous=OFF")
        return cls(path, conn, genesis)

    @classmethod
    def open(cls, directory: Path, genesis: Genesis | None = None, *, check_head: bool = True) -> Store:
        """Open an existing store; check it belongs to ``genesis`` and its head is intact.

        ``check_head=False`` (an auditor, which checks everything itself from the genesis on) reads
        nothing but the genesis: the head, the log and the state are unset, and the store is for reading rows.
        """
        path = directory / STORE_FILE_NAME
        conn = _connect_existing(path)
        try:
            stored_genesis = _read_genesis(conn, path)
        except BaseException:
            conn.close()
            raise
        if genesis is not None and genesis.compute_hash() != stored_genesis.compute_hash():
            conn.close()
            raise GenesisError("genesis_mismatch", f"{path} belongs to another chain")
        return cls(path, conn, stored_genesis, check_head=check_head)

    @staticmethod
    def read_genesis(directory: Path) -> Genesis:
        """The genesis a store was created for, without checking its head (an auditor reads it first)."""
        path = directory / STORE_FILE_NAME
        conn = _connect_existing(path)
        try:
            return _read_genesis(conn, path)
        finally:
            conn.close()

    @classmethod
    def open_or_create(cls, directory: Path, genesis: Genesis) -> Store:
        if (directory / STORE_FILE_NAME).exists():
            return cls.open(directory, genesis)
        return cls.create(directory, genesis)

    def close(self) -> None:
        self._conn.close()

    def add_missing_indexes(self) -> None:
        """Create the indexes a store made by an older version lacks (a node does this on start)."""
        self._conn.execute("CREATE INDEX IF NOT EXISTS txs_by_height ON txs (height, idx)")

    def _load_head(self) -> None:
        """Read and check the head: the only work done on open (no rescan)."""
        meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        self.genesis_state_root: bytes = meta["genesis_state_root"]
        row = self._conn.execute("SELECT height FROM blocks ORDER BY height DESC LIMIT 1").fetchone()
        if row is None:
            self.head_height = 0
            self.head_hash = self.genesis_hash
            self.head_header: BlockHeader | None = None
            self.state_root = self.genesis_state_root
            self.log = TransparencyLog(self._log_nodes, 0)
            return
        header = self.get_header(row[0])  # checks the stored hash against the header bytes
        certificate = self.get_certificate(header.height)
        validator_set = validator_set_in_force(self, header.height)  # the state after the head says which
        certificate.verify(self.chain_id, validator_set, header.compute_hash(), header.height)
        self.head_height = header.height
        self.head_hash = header.compute_hash()
        self.head_header = header
        self.state_root = header.state_root
        self.log = TransparencyLog(self._log_nodes, header.log_size)
        if self.log.root() != header.log_root:
            raise StoreCorruption("store_corrupt", "log nodes disagree with the head's log root", height=header.height)

    # --- reads ---

    def get(self, key: bytes) -> bytes | None:
        """The committed value of a state key (a ``StateReader``)."""
        row = self._conn.execute("SELECT value FROM state WHERE key_hash = ?", (sha256(key),)).fetchone()
        return None if row is None else bytes(row[0])

    def get_header(self, height: int) -> BlockHeader:
        row = self._conn.execute("SELECT hash, header FROM blocks WHERE height = ?", (height,)).fetchone()
        if row is None:
            raise StoreError("not_found", f"no block at height {height}", height=height)
        header = _decode_or_corrupt(BlockHeader.decode, row[1], "header", height)
        if header.compute_hash() != row[0] or header.height != height:
            raise StoreCorruption("store_corrupt", "block header does not match its stored hash", height=height)
        return header

    def get_block(self, height: int) -> Block:
        header = self.get_header(height)
        row = self._conn.execute("SELECT transactions FROM blocks WHERE height = ?", (height,)).fetchone()
        transactions = _decode_or_corrupt(_decode_transactions, row[0], "transactions", height)
        return Block(header, transactions)

    def get_certificate(self, height: int) -> CommitCertificate:
        row = self._conn.execute("SELECT certificate FROM blocks WHERE height = ?", (height,)).fetchone()
        if row is None:
            raise StoreError("not_found", f"no certificate at height {height}", height=height)
        return _decode_or_corrupt(CommitCertificate.decode, row[0], "certificate", height)

    def get_raw_block_row(self, height: int) -> tuple[bytes, bytes, bytes, bytes] | None:
        """(hash, header, transactions, certificate) bytes as stored, for verification."""
        row = self._conn.execute(
            "SELECT hash, header, transactions, certificate FROM blocks WHERE height = ?", (height,)
        ).fetchone()
        return None if row is None else (bytes(row[0]), bytes(row[1]), bytes(row[2]), bytes(row[3]))

    def iter_raw_block_rows(self, start: int, end: int, page: int = 32) -> Iterator[tuple[int, bytes, bytes, bytes, bytes]]:
        """Stream stored rows for heights in [start, end], in height order, a page at a time.

        A page is 32 blocks by default: at most a few tens of MB even of full blocks, so a reader's memory
        stays flat; a reader that stops by size reads one at a time.
        """
        height = start
        while height <= end:
            rows = self._conn.execute(
                "SELECT height, hash, header, transactions, certificate FROM blocks"
                " WHERE height >= ? AND height <= ? ORDER BY height LIMIT ?",
                (height, end, page),
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield int(row[0]), bytes(row[1]), bytes(row[2]), bytes(row[3]), bytes(row[4])
            height = int(rows[-1][0]) + 1

    def get_tx_location(self, tx_id: bytes) -> TxLocation | None:
        row = self._conn.execute(
            "SELECT height, idx, log_index, receipt FROM txs WHERE tx_id = ?", (tx_id,)
        ).fetchone()
        return None if row is None else TxLocation(row[0], row[1], row[2], bytes(row[3]))

    def iter_tx_rows(self, start: int, end: int) -> Iterator[tuple[Any, ...]]:
        """(height, idx, log_index, tx_id, receipt) for heights in [start, end], in block order, as stored.

        One statement for the whole range: an auditor reads the index and the
        receipts beside the blocks in one pass (``txs_by_height`` orders it).
        The cells are SQLite's, unconverted: the auditor checks their types in
        their own block's turn, so a damaged cell is named at its height.
        """
        return iter(self._conn.execute(
            "SELECT height, idx, log_index, tx_id, receipt FROM txs WHERE height >= ? AND height <= ?"
            " ORDER BY height, idx", (start, end)))

    def iter_state_change_rows(self, start: int, end: int) -> Iterator[tuple[Any, ...]]:
        """(height, key, value or None) for heights in [start, end], in height order, as stored (see above)."""
        return iter(self._conn.execute(
            "SELECT height, key, value FROM state_changes WHERE height >= ? AND height <= ? ORDER BY height, key",
            (start, end)))

    def get_receipts(self, height: int) -> list[bytes]:
        """The stored receipts of a block's transactions, in block order."""
        rows = self._conn.execute("SELECT receipt FROM txs WHERE height = ? ORDER BY idx", (height,)).fetchall()
        return [bytes(row[0]) for row in rows]

    def count_state_changes_outside(self, low: int, high: int) -> int:
        """Recorded state-change rows of heights outside [low, high] (an audit expects none)."""
        row = self._conn.execute(
            "SELECT COUNT(*) FROM state_changes WHERE height < ? OR height > ?", (low, high)).fetchone()
        return int(row[0])

    def count_txs(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM txs").fetchone()[0])

    def get_state_changes(self, height: int) -> dict[bytes, bytes | None]:
        rows = self._conn.execute("SELECT key, value FROM state_changes WHERE height = ?", (height,)).fetchall()
        return {bytes(key): None if value is None else bytes(value) for key, value in rows}

    def iter_state_rows(self) -> Iterator[tuple[bytes, bytes, bytes, int]]:
        """(key_hash, key, value, height) in key-hash order: the state tree's leaf order."""
        cursor = self._conn.execute("SELECT key_hash, key, value, height FROM state ORDER BY key_hash")
        for key_hash, key, value, height in cursor:
            yield bytes(key_hash), bytes(key), bytes(value), int(height)

    def get_validator_set_at(self, height: int) -> ValidatorSet:
        """The set in force at ``height`` = head or head + 1 (``state.validator_set_in_force``)."""
        assert height >= 1 and self.head_height <= height <= self.head_height + 1, (height, self.head_height)
        return validator_set_in_force(self, height)

    # --- preparing and appending blocks ---

    def prepare_roots(self, transactions: Sequence[SignedTransaction], changes: Mapping[bytes, bytes | None]) -> PreparedRoots:
        """The roots a header for these transactions and state changes must carry; writes nothing.

        The new state-tree nodes are remembered, so that appending the same
        changes on the same parent state writes them instead of recomputing.
        """
        overlay = OverlayNodeStore(self._state_nodes)
        state_root = StateTree(overlay).update(self.state_root, changes)
        self._prepared_state = (self.state_root, dict(changes), state_root, overlay.new_nodes())
        preview_log = TransparencyLog(_DiscardLogNodes(self._log_nodes), self.log.size)
        preview_log.append_many(merkle.hash_leaf(signed.tx_id) for signed in transactions)
        return PreparedRoots(state_root, preview_log.size, preview_log.root())

    def _update_state_tree(self, changes: Mapping[bytes, bytes | None]) -> bytes:
        """Write the state tree for ``changes`` on the head state; returns the new root."""
        prepared, self._prepared_state = self._prepared_state, None
        if prepared is not None and prepared[0] == self.state_root and prepared[1] == changes:
            self._state_nodes.put_nodes(prepared[3].items())
            return prepared[2]
        return self.tree.update(self.state_root, changes)

    def append_block(
        self,
        block: Block,
        certificate: CommitCertificate,
        changes: Mapping[bytes, bytes | None],
        receipts: Sequence[bytes],
    ) -> None:
        """Store one certified block with its effects, atomically and durably.

        Refuses (``InvalidBlock``) a block that does not extend the head, is
        not certified by the set in force, or whose header roots disagree
        with its transactions and state changes: the store never holds a
        block that contradicts itself.
        """
        header = block.header
        block_hash = header.compute_hash()
        self._check_extends_head(block, certificate, block_hash)
        assert len(receipts) == len(block.transactions)
        tx_ids = [signed.tx_id for signed in block.transactions]
        if compute_tx_root(tx_ids) != header.tx_root or header.tx_count != len(tx_ids):
            raise InvalidBlock("wrong_tx_root", height=header.height)
        log_start = self.log.size
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            state_root = self._update_state_tree(changes)
            if state_root != header.state_root:
                raise InvalidBlock("wrong_state_root", height=header.height)
            self.log.append_many(merkle.hash_leaf(tx_id) for tx_id in tx_ids)
            if (self.log.size, self.log.root()) != (header.log_size, header.log_root):
                raise InvalidBlock("wrong_log_root", height=header.height)
            self._write_block_rows(block, certificate, block_hash, tx_ids, log_start, changes, receipts)
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            self.log = TransparencyLog(self._log_nodes, log_start)  # drop the uncommitted appends
            raise
        self.head_height = header.height
        self.head_hash = block_hash
        self.head_header = header
        self.state_root = state_root

    def _check_extends_head(self, block: Block, certificate: CommitCertificate, block_hash: bytes) -> None:
        header = block.header
        if header.chain_id != self.chain_id:
            raise InvalidBlock("wrong_chain", f"block of chain {header.chain_id!r}", height=header.height)
        if header.height != self.head_height + 1:
            raise StoreError(
                "store_conflict", f"head is {self.head_height}, got block {header.height}", height=header.height
            )
        if header.parent_hash != self.head_hash:
            raise InvalidBlock("wrong_parent", height=header.height)
        if self.head_header is not None and header.timestamp_ms < self.head_header.timestamp_ms:
            raise InvalidBlock("wrong_timestamp", height=header.height)
        validator_set = self.get_validator_set_at(header.height)
        if header.validator_set_hash != validator_set.compute_hash():
            raise InvalidBlock("wrong_validator_set", height=header.height)
        certificate.verify(self.chain_id, validator_set, block_hash, header.height)

    def _write_block_rows(
        self,
        block: Block,
        certificate: CommitCertificate,
        block_hash: bytes,
        tx_ids: list[bytes],
        log_start: int,
        changes: Mapping[bytes, bytes | None],
        receipts: Sequence[bytes],
    ) -> None:
        height = block.header.height
        self._conn.execute(
            "INSERT INTO blocks (height, hash, header, transactions, certificate) VALUES (?, ?, ?, ?, ?)",
            (height, block_hash, block.header.encode(), _encode_transactions(block.transactions), certificate.encode()),
        )
        self._conn.executemany(
            "INSERT INTO txs (tx_id, height, idx, log_index, receipt) VALUES (?, ?, ?, ?, ?)",
            [(tx_id, height, index, log_start + index, receipts[index]) for index, tx_id in enumerate(tx_ids)],
        )
        upserts = [(sha256(key), key, value, height) for key, value in changes.items() if value is not None]
        deletes = [(sha256(key),) for key, value in changes.items() if value is None]
        self._conn.executemany("INSERT OR REPLACE INTO state (key_hash, key, value, height) VALUES (?, ?, ?, ?)", upserts)
        self._conn.executemany("DELETE FROM state WHERE key_hash = ?", deletes)
        self._conn.executemany(
            "INSERT INTO state_changes (height, key, value) VALUES (?, ?, ?)",
            [(height, key, value) for key, value in changes.items()],
        )


def _connect_existing(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise StoreError("store_not_found", f"no store at {path}")
    try:
        return connect(path)
    except sqlite3.DatabaseError as error:
        raise StoreCorruption("store_corrupt", f"cannot read {path}: {error}") from error


def _read_genesis(conn: sqlite3.Connection, path: Path) -> Genesis:
    """The stored genesis, checked against its stored hash."""
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError as error:
        raise StoreCorruption("store_corrupt", f"cannot read {path}: {error}") from error
    if meta.get("schema_version") != str(SCHEMA_VERSION).encode():
        raise StoreCorruption("store_corrupt", f"unknown schema version {meta.get('schema_version')!r}")
    try:
        stored_genesis = Genesis.decode(meta["genesis"])
    except (KeyError, EncodingError, GenesisError) as error:
        raise StoreCorruption("store_corrupt", f"stored genesis unreadable: {error}") from error
    if stored_genesis.compute_hash() != meta.get("genesis_hash"):
        raise StoreCorruption("store_corrupt", "stored genesis does not match its hash", height=0)
    return stored_genesis


def _encode_transactions(transactions: Sequence[SignedTransaction]) -> bytes:
    return enc.encode_array_of_encoded([signed.encode() for signed in transactions])


def _decode_transactions(data: bytes) -> tuple[SignedTransaction, ...]:
    wire = enc.decode(data)
    if type(wire) is not list:
        raise EncodingError("wrong_type", "transactions must be an array")
    return tuple(SignedTransaction.from_wire(item) for item in wire)


def _decode_or_corrupt(decoder, data: bytes, what: str, height: int):  # type: ignore[no-untyped-def]
    try:
        return decoder(bytes(data))
    except EncodingError as error:
        raise StoreCorruption("store_corrupt", f"stored {what} unreadable: {error.detail}", height=height) from error


def _sqlite_files(path: Path) -> list[Path]:
    """A database file and the journal files SQLite may keep beside it."""
    return [path] + [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal")]


__all__ = ["OverlayNodeStore", "PreparedRoots", "STORE_FILE_NAME", "Store", "TxLocation", "connect"]
