"""Where an audit reads a chain from: a node's data dir, or a node's API.

Either way the auditor gets blocks as raw bytes, exactly as they were hashed
and signed, and decodes and checks them itself; nothing a source says is
taken on trust. A data dir also offers what only a store has (its tx index,
its recorded state changes, its state rows, its state-tree pages), which the
audit compares with its own replay so that a node's copy is checked too.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ledger import merkle
from ledger.errors import LedgerError, StoreCorruption, StoreError
from ledger.genesis import Genesis
from ledger.keys import PrivateKey
from ledger.store import Store
from ledger.tlog import TransparencyLog
from node.client import ApiError, Client

API_BLOCKS_PER_REQUEST = 1_000
API_PREFETCH_REQUESTS = 4
"""Answers fetched ahead while the auditor checks earlier blocks (bounded memory: a few answers of <= 4 MiB)."""


class SourceUnavailable(Exception):
    """The audit could not run against this source (no store, node unreachable): exit code 2."""


@dataclass(slots=True)
class RawBlock:
    """One block as a source holds it; the checks decide what it is worth."""

    height: int
    header: bytes
    transactions: bytes
    certificate: bytes
    receipts: list[bytes] | None
    """The receipts the source stores, in block order (None: the source has none to compare)."""
    stored_hash: bytes | None = None
    """A store's recorded block hash (its index by hash); None for an API source."""
    tx_index: list[tuple[int, int, bytes]] | None = None
    """A store's tx index rows for this block: (position, log index, tx id)."""
    changes: dict[bytes, bytes | None] | None = None
    """A store's recorded state changes for this block."""


class ChainSource(Protocol):
    name: str
    kind: str

    def head_height(self) -> int: ...

    def blocks(self, start: int, end: int) -> Iterator[RawBlock]: ...

    def header_and_certificate(self, height: int) -> tuple[bytes, bytes] | None: ...

    def consistency_proof(self, size_from: int, size_to: int) -> list[bytes]: ...

    def close(self) -> None: ...


class StoreSource:
    """A node's data dir (a copy, or a live node's: SQLite's WAL gives a fixed snapshot).

    The whole audit reads inside one read transaction, so a node that keeps
    committing does not move the chain under the auditor.
    """

    kind = "data-dir"

    def __init__(self, directory: Path, genesis: Genesis | None = None) -> None:
        self.name = str(directory)
        try:
            # Nothing the store says is checked on opening (not even its head): the pass checks it all, in order.
            self.store = Store.open(directory, genesis, check_head=False)
        except StoreError as error:
            if error.code == "store_not_found":
                raise SourceUnavailable(error.detail) from error
            raise
        self.genesis = self.store.genesis
        conn = self.store._conn
        try:
            conn.execute("BEGIN")
            row = conn.execute("SELECT MAX(height) FROM blocks").fetchone()
        except sqlite3.DatabaseError as error:
            self.store.close()
            raise StoreCorruption("store_corrupt", f"{directory}: {error}") from error
        self._head = int(row[0] or 0)

    def head_height(self) -> int:
        return self._head

    def blocks(self, start: int, end: int) -> Iterator[RawBlock]:
        """Stored rows for [start, end] in height order, with the tx index, receipts and state changes.

        A row SQLite cannot read, or a cell of the wrong type, is the store's damage at the next height.
        """
        expected = start
        try:
            for raw in self._blocks(start, end):
                expected = raw.height + 1
                yield raw
        except (sqlite3.DatabaseError, TypeError, ValueError) as error:
            raise StoreCorruption("store_corrupt", f"unreadable rows: {type(error).__name__}: {error}",
                                  height=expected) from error

    def _blocks(self, start: int, end: int) -> Iterator[RawBlock]:
        store = self.store
        # Cells as stored: converted in their own block's turn, so a bad cell is named at its height.
        tx_rows = _Lookahead(store.iter_tx_rows(start, end))
        change_rows = _Lookahead(store.iter_state_change_rows(start, end))
        for height, block_hash, header, transactions, certificate in store.iter_raw_block_rows(start, end):
            receipts: list[bytes] = []
            index: list[tuple[int, int, bytes]] = []
            for _height, position, log_index, tx_id, receipt in tx_rows.take_while(height):
                receipts.append(_blob(receipt))
                index.append((int(position), int(log_index), _blob(tx_id)))
            changes = {_blob(key): None if value is None else _blob(value)
                       for _height, key, value in change_rows.take_while(height)}
            yield RawBlock(height, header, transactions, certificate, receipts, block_hash, index, changes)

    def header_and_certificate(self, height: int) -> tuple[bytes, bytes] | None:
        row = self.store.get_raw_block_row(height)
        return None if row is None else (row[1], row[3])

    def consistency_proof(self, size_from: int, size_to: int) -> list[bytes]:
        return TransparencyLog(self.store._log_nodes, size_to).consistency_proof(size_from, size_to)

    def stored_log_root(self, size: int) -> bytes:
        """The root the stored log nodes give for ``size`` leaves (what the node proves inclusions against)."""
        return TransparencyLog(self.store._log_nodes, size).root()

    def count_tx_rows(self) -> int:
        return self.store.count_txs()

    def count_state_change_rows_outside(self, low: int, high: int) -> int:
        return self.store.count_state_changes_outside(low, high)

    def state_rows(self) -> Iterator[tuple[bytes, bytes, bytes, int]]:
        """(key_hash, key, value, height) of every stored state row."""
        return self.store.iter_state_rows()

    def stored_state_pages(self, page_hashes: list[bytes]) -> Mapping[bytes, bytes]:
        return self.store._state_nodes.get_nodes(page_hashes)  # noqa: SLF001

    def close(self) -> None:
        try:
            self.store._conn.execute("ROLLBACK")  # noqa: SLF001
        except Exception:  # noqa: BLE001, S110 - no transaction open, or the connection is gone: nothing to end
            pass
        self.store.close()


def _blob(value: object) -> bytes:
    if type(value) is not bytes:
        raise TypeError(f"a {type(value).__name__} where the store keeps bytes")
    return value


class _Lookahead:
    """Rows sorted by height, consumed one height at a time."""

    def __init__(self, rows: Iterator[tuple[Any, ...]]) -> None:
        self._rows = rows
        self._next: tuple[Any, ...] | None = next(rows, None)

    def take_while(self, height: int) -> Iterator[tuple[Any, ...]]:
        while self._next is not None and self._next[0] <= height:
            row = self._next
            self._next = next(self._rows, None)
            if row[0] == height:
                yield row


class ApiSource:
    """A node's API, read as an auditor (signed reads; ``/v1/blocks/raw`` needs the auditor or regulator role)."""

    kind = "node"

    def __init__(self, url: str, member: str, key: PrivateKey, *, timeout_s: float = 30.0) -> None:
        self.name = url
        self.client = Client(url, member=member, key=key, timeout_s=timeout_s)
        try:
            status = self.client.status()
        except ApiError as error:
            self.client.close()
            raise SourceUnavailable(f"{url}: {error.detail}") from error
        self.chain_id = str(status.get("chain_id", ""))
        self._head = int(status.get("height", 0))

    def head_height(self) -> int:
        return self._head

    def refresh_head(self) -> int:
        self._head = int(self.client.status().get("height", 0))
        return self._head

    def blocks(self, start: int, end: int) -> Iterator[RawBlock]:
        """Blocks fetched by a background thread, a few answers ahead of the checks."""
        answers: queue.Queue[list[Any] | BaseException | None] = queue.Queue(maxsize=API_PREFETCH_REQUESTS)
        stop = threading.Event()

        def fetch() -> None:
            height = start
            try:
                while height <= end and not stop.is_set():
                    items = self.client.get_raw_blocks(height, min(API_BLOCKS_PER_REQUEST, end - height + 1))
                    if not items:
                        break
                    answers.put(items)
                    height = int(items[-1][0]) + 1 if _is_height(items[-1]) else end + 1
            except BaseException as error:  # noqa: BLE001 - handed to the reading side
                answers.put(error)
                return
            answers.put(None)

        thread = threading.Thread(target=fetch, name=f"audit-fetch {self.name}", daemon=True)
        thread.start()
        try:
            while True:
                answer = answers.get()
                if answer is None:
                    return
                if isinstance(answer, BaseException):
                    raise answer
                for item in answer:
                    yield _raw_block_from_api(item)
        finally:
            stop.set()
            while thread.is_alive():  # unblock a fetcher waiting on a full queue
                try:
                    answers.get(timeout=0.05)
                except queue.Empty:
                    pass

    def header_and_certificate(self, height: int) -> tuple[bytes, bytes] | None:
        items = self.client.get_raw_blocks(height, 1)
        if not items or not _is_height(items[0]) or items[0][0] != height:
            return None
        block = _raw_block_from_api(items[0])
        return block.header, block.certificate

    def consistency_proof(self, size_from: int, size_to: int) -> list[bytes]:
        answer = self.client.get_consistency(size_from, size_to)
        try:
            return [bytes.fromhex(item) for item in answer["proof"]]
        except (KeyError, TypeError, ValueError) as error:
            raise LedgerError("malformed_encoding", "the consistency proof answer is not a list of hashes") from error

    def close(self) -> None:
        self.client.close()


def _is_height(item: Any) -> bool:
    return type(item) is list and len(item) == 5 and type(item[0]) is int


def _raw_block_from_api(item: Any) -> RawBlock:
    """One answer item, its types checked (the bytes themselves are checked by the audit)."""
    if not _is_height(item) or not all(type(field) is bytes for field in item[1:4]) or type(item[4]) is not list \
            or not all(type(receipt) is bytes for receipt in item[4]):
        raise LedgerError("malformed_encoding", "a raw block from the node is not [height, header, transactions, "
                          "certificate, [receipt, ...]]")
    return RawBlock(item[0], item[1], item[2], item[3], list(item[4]))


def verify_extension(source: ChainSource, size_from: int, root_from: bytes, size_to: int, root_to: bytes) -> None:
    """RFC 9162: the log of ``size_to`` leaves with ``root_to`` extends the one the auditor verified before."""
    if size_from == 0 or size_from == size_to:
        if size_from == size_to and root_from != root_to:
            raise merkle.ProofError("invalid_consistency_proof", "same log size as verified before, different root")
        return
    proof = source.consistency_proof(size_from, size_to)
    merkle.verify_consistency(size_from, size_to, root_from, root_to, proof)


__all__ = ["ApiSource", "ChainSource", "RawBlock", "SourceUnavailable", "StoreSource", "verify_extension"]
