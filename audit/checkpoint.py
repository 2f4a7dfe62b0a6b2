"""The auditor's own state file: what it verified last time, so the next run checks only what is new.

A SQLite file (``--state FILE``) holding:

- ``meta``: the chain id and genesis hash it belongs to; the last verified
  height, its block hash and timestamp; the transparency log's size, root
  and frontier at that height; the state root;
- ``state``: the replayed state at that height (key, value, height of its
  last write): the replay resumes from it.

Nothing in it is trusted blindly: on load, the state rows must give the
saved state root and the frontier the saved log root. On the next run the
source must still hold the saved block at the saved height, and its log must
be a consistent extension of the saved one (an RFC 9162 consistency proof):
a node that rewrote history is caught even though its old blocks are never
read again. A save is one fsynced SQLite transaction: a run killed mid-save
leaves the previous checkpoint.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from audit.engine import ChainPosition
from audit.state import ReplayState
from ledger.errors import LedgerError
from ledger.genesis import Genesis
from ledger.tlog import TransparencyLog

FORMAT_VERSION = b"1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS state (key BLOB PRIMARY KEY, value BLOB NOT NULL, height INTEGER NOT NULL) WITHOUT ROWID;
"""


class CheckpointError(LedgerError):
    """The state file cannot be used (another chain, unreadable, inconsistent): the audit cannot run."""


@dataclass
class Checkpoint:
    position: ChainPosition
    log_root: bytes
    state_root: bytes


class CheckpointFile:
    """One auditor state file, bound to one genesis."""

    def __init__(self, path: Path, genesis: Genesis) -> None:
        self.path = path
        self.genesis = genesis
        try:
            self._conn = sqlite3.connect(str(path), isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            for statement in _SCHEMA.strip().split(";"):
                if statement.strip():
                    self._conn.execute(statement)
            meta = self._meta()
        except sqlite3.DatabaseError as error:
            raise CheckpointError("checkpoint_unusable", f"{path} is not an auditor state file: {error}") from error
        if meta and (meta.get("format") != FORMAT_VERSION or meta.get("genesis_hash") != genesis.compute_hash()):
            raise CheckpointError("checkpoint_unusable", f"{path} belongs to another chain or format")

    def _meta(self) -> dict[str, bytes]:
        return {key: bytes(value) for key, value in self._conn.execute("SELECT key, value FROM meta")}

    def load(self) -> tuple[Checkpoint, ReplayState] | None:
        """The saved position and a fresh copy of the saved state (None: nothing saved yet)."""
        meta = self._meta()
        if "height" not in meta:
            return None
        try:
            frontier_bytes = meta["log_frontier"]
            frontier = [frontier_bytes[i:i + 32] for i in range(0, len(frontier_bytes), 32)]
            position = ChainPosition(int(meta["height"]), meta["head_hash"], int(meta["timestamp_ms"]),
                                     int(meta["log_size"]), frontier)
            checkpoint = Checkpoint(position, meta["log_root"], meta["state_root"])
        except (KeyError, ValueError, TypeError) as error:
            raise CheckpointError("checkpoint_unusable", f"{self.path}: incomplete meta ({error})") from error
        try:
            log_root = TransparencyLog.from_frontier(position.log_size, frontier).root()
        except LedgerError as error:
            raise CheckpointError("checkpoint_unusable", f"{self.path}: {error.detail}") from error
        if log_root != checkpoint.log_root:
            raise CheckpointError("checkpoint_unusable", f"{self.path}: the saved log frontier is not the saved root")
        values: dict[bytes, bytes] = {}
        written_at: dict[bytes, int] = {}
        try:
            for key, value, height in self._conn.execute("SELECT key, value, height FROM state"):
                values[bytes(key)] = bytes(value)
                written_at[bytes(key)] = int(height)
        except (sqlite3.DatabaseError, TypeError, ValueError) as error:
            raise CheckpointError("checkpoint_unusable", f"{self.path}: unreadable state rows ({error})") from error
        try:
            state = ReplayState(values, written_at, checkpoint.state_root)
        except ValueError as error:
            raise CheckpointError("checkpoint_unusable", f"{self.path}: {error}") from error
        return checkpoint, state

    def save(self, position: ChainPosition, log_root: bytes, state: ReplayState) -> None:
        """Replace the saved checkpoint with this one, in one fsynced transaction."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM state")
            conn.executemany("INSERT INTO state (key, value, height) VALUES (?, ?, ?)", state.items())
            meta = {
                "format": FORMAT_VERSION, "chain_id": self.genesis.chain_id.encode(),
                "genesis_hash": self.genesis.compute_hash(), "height": str(position.height).encode(),
                "head_hash": position.head_hash, "timestamp_ms": str(position.timestamp_ms).encode(),
                "log_size": str(position.log_size).encode(), "log_root": log_root,
                "log_frontier": b"".join(position.log_frontier), "state_root": state.root,
            }
            conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(meta.items()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._conn.close()


__all__ = ["Checkpoint", "CheckpointError", "CheckpointFile"]
