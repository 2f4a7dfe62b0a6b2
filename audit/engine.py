"""The audit: one pass over a chain that checks everything INTERFACE.md lists.

For each block, in height order, from raw bytes (numbers as in "What
ledger audit checks"):

1. it decodes, its height is the next one, it links to its parent's hash;
2. its certificate holds valid precommits of more than 2/3 of the power of
   the set in force (read from the auditor's own replayed state);
3. replay: the contracts execute its transactions on the auditor's own
   state; admission refuses an unknown sender, a signature that is not the
   sender's key in force, a nonce that is not the next one, an expired
   transaction (signatures are checked ahead, on every core);
4. its transaction root, and the transparency log's size and root after it
   (the auditor keeps its own log frontier), match the header;
5. the state root after the replay is the header's; the receipts the source
   stores are the ones the contracts produce; a store's recorded state
   changes and tx index rows are the replay's.

At the head: a store's state rows are exactly the replayed state (each bad
row named with the height of its key's last write), its state-tree pages
for the head are the auditor's own, and each currency's balances sum to
issued minus redeemed. The first failure stops the pass and is reported
with its height and reason.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

import msgpack

import contracts  # noqa: F401 - registers every contract before any block is replayed
from audit.signatures import SignatureChecks, SignatureJob
from audit.sources import ChainSource, RawBlock, StoreSource
from audit.state import ReplayState
from contracts.block_builder import execute_block_on
from contracts.runtime import BlockContext
from ledger import encoding as enc
from ledger.block import BLOCK_BYTES_MAX, BLOCK_TXS_MAX, BlockHeader, CommitCertificate
from ledger.errors import EncodingError, InvalidBlock, LedgerError, StoreCorruption, VerificationFailure
from ledger.genesis import Genesis
from ledger.hashing import sha256
from ledger.state import read_member, validator_set_in_force
from ledger.tlog import TransparencyLog
from ledger.transaction import TX_BYTES_MAX, SignedTransaction, check_shape
from ledger.validators import ValidatorSet
from ledger.verify import append_checked, check_header_links, check_supply

ProgressCallback = Callable[[int, int], None]

LOOKAHEAD_TXS = 6_000
"""Transactions decoded and sent for signature checks ahead of the replay (bounds memory)."""
JOB_TXS_MIN = 1_000
"""Small blocks are grouped so that one signature job carries at least this many transactions."""


@dataclass
class ChainPosition:
    """Where a verified chain stands: what the auditor carries from one block (or one run) to the next."""

    height: int
    head_hash: bytes
    timestamp_ms: int
    log_size: int
    log_frontier: list[bytes]
    """Roots of the log's perfect subtrees, largest first: enough to extend the log and compute its root."""

    @classmethod
    def at_genesis(cls, genesis: Genesis) -> ChainPosition:
        return cls(0, genesis.compute_hash(), 0, 0, [])


@dataclass
class SourceResult:
    """What one source's audit found."""

    source: str
    kind: str
    ok: bool = True
    could_run: bool = True
    height: int | None = None
    """The first bad height (None when intact)."""
    code: str = ""
    detail: str = ""
    from_height: int = 1
    blocks: int = 0
    transactions: int = 0
    head_height: int = 0
    head_hash: str = ""
    replayed: bool = True
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def fail(self, error: LedgerError, height: int | None) -> None:
        self.ok = False
        self.height = error.height if error.height is not None else height
        self.code = error.code
        self.detail = error.detail

    def cannot_run(self, detail: str) -> None:
        self.ok = False
        self.could_run = False
        self.code = "cannot_run"
        self.detail = detail

    @property
    def tx_per_s(self) -> float:
        return self.transactions / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "kind": self.kind, "ok": self.ok, "could_run": self.could_run,
                "height": self.height, "code": self.code, "detail": self.detail,
                "from_height": self.from_height, "blocks": self.blocks, "transactions": self.transactions,
                "head_height": self.head_height, "head_hash": self.head_hash, "replayed": self.replayed,
                "seconds": round(self.seconds, 3), "tx_per_s": round(self.tx_per_s), "notes": self.notes}


@dataclass(slots=True)
class _Pending:
    raw: RawBlock
    header: BlockHeader
    transactions: tuple[SignedTransaction, ...]
    tx_ids: list[bytes]
    job: SignatureJob | None
    error: LedgerError | None = None


class ChainAuditor:
    """Replays one source's chain from a verified position and checks every block (see the module doc)."""

    def __init__(self, genesis: Genesis, state: ReplayState, position: ChainPosition,
                 signatures: SignatureChecks) -> None:
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.state = state
        self.position = position
        self.signatures = signatures
        self._log = TransparencyLog.from_frontier(position.log_size, position.log_frontier)
        self.verified_hashes = VerifiedHashes(position.height + 1)
        """The hash of every block this pass verified: what cross-source comparison uses, never a re-read."""
        self.validator_sets: dict[bytes, ValidatorSet] = {}
        """Every validator set that certified a block of this pass, by hash."""

    @classmethod
    def from_genesis(cls, genesis: Genesis, signatures: SignatureChecks) -> ChainAuditor:
        return cls(genesis, ReplayState.from_genesis(genesis), ChainPosition.at_genesis(genesis), signatures)

    def log_root(self) -> bytes:
        return self._log.root()

    def close(self) -> None:
        self.verified_hashes.close()

    # --- the pass ---

    def run(self, source: ChainSource, end: int, result: SourceResult,
            progress: ProgressCallback | None = None) -> None:
        """Check blocks position.height + 1 .. end; record counts and the first failure in ``result``."""
        started = time.monotonic()
        expected = self.position.height + 1
        try:
            for pending in self._prepared(source.blocks(expected, end), expected):
                self._check_block(pending)
                result.blocks += 1
                result.transactions += len(pending.transactions)
                if progress is not None:
                    progress(self.position.height, end)
            if self.position.height < end:
                raise InvalidBlock("wrong_height", f"block {self.position.height + 1} is missing",
                                   height=self.position.height + 1)
            if isinstance(source, StoreSource):
                self._check_store_at_head(source)
            self._check_supply()
        except LedgerError as error:
            result.fail(error, self.position.height + 1)
        except (sqlite3.DatabaseError, TypeError, ValueError, KeyError, OverflowError, msgpack.UnpackException,
                BrokenProcessPool) as error:
            # Damage the typed checks did not anticipate (a TEXT cell, a malformed page, a dead worker):
            # still a report, never a traceback.
            code = "store_corrupt" if isinstance(source, StoreSource) else "malformed_encoding"
            result.fail(LedgerError(code, f"{type(error).__name__}: {error}"), self.position.height + 1)
        finally:
            result.seconds += time.monotonic() - started
            result.head_height = self.position.height
            result.head_hash = self.position.head_hash.hex()

    def _prepared(self, raw_blocks: Iterator[RawBlock], first: int) -> Iterator[_Pending]:
        """Decode blocks ahead of the replay and start their signature checks on the other cores."""
        window: deque[_Pending] = deque()
        group: list[_Pending] = []
        group_txs = in_window = 0
        expected = first
        blocks = iter(raw_blocks)
        while True:
            try:
                raw = next(blocks)
                if raw.height != expected:  # a gap, or rows out of order
                    raise InvalidBlock("wrong_height", f"block {expected} is missing", height=expected)
            except StopIteration:
                break
            except LedgerError:  # a failure at a later height: everything before it is checked first
                window.extend(self._submit(group))
                yield from window
                raise
            expected += 1
            pending = self._decode(raw)
            group.append(pending)
            group_txs += len(pending.transactions)
            if group_txs >= JOB_TXS_MIN or len(group) >= 64:
                window.extend(self._submit(group))
                in_window += group_txs + len(group)
                group, group_txs = [], 0
            while window and in_window > LOOKAHEAD_TXS:
                done = window.popleft()
                in_window -= len(done.transactions) + 1
                yield done
        window.extend(self._submit(group))
        yield from window

    def _decode(self, raw: RawBlock) -> _Pending:
        """Decode a block's bytes; a block that does not decode fails when its turn comes."""
        try:
            header = BlockHeader.decode(raw.header)
            transactions, tx_ids = decode_transactions(raw.transactions)
        except EncodingError as error:
            failure: LedgerError = InvalidBlock("block_unreadable", error.detail, height=raw.height)
            return _Pending(raw, None, (), [], None, failure)  # type: ignore[arg-type]
        except LedgerError as error:  # e.g. a transaction of an invalid shape: fails in its block's turn
            error.height = raw.height
            return _Pending(raw, None, (), [], None, error)  # type: ignore[arg-type]
        return _Pending(raw, header, transactions, tx_ids, None)

    def _submit(self, group: list[_Pending]) -> list[_Pending]:
        """One signature job for a group of blocks, under the keys in force as far as the replay has got."""
        items = []
        for pending in group:
            for signed in pending.transactions:
                member = self.state_member_key(signed.body.sender)
                items.append((member, signed.body.signing_bytes(self.chain_id), signed.signature))
        job = self.signatures.submit(items) if items else None
        offset = 0
        for pending in group:
            if job is not None and pending.transactions:
                pending.job = job.slice(offset, len(pending.transactions))
                offset += len(pending.transactions)
        return group

    def state_member_key(self, name: str) -> bytes:
        member = read_member(self.state, name)
        return member.public_key if member is not None else b""

    def _check_block(self, pending: _Pending) -> None:
        if pending.error is not None:
            raise pending.error
        raw, header = pending.raw, pending.header
        height = self.position.height + 1
        block_hash = header.compute_hash()
        if raw.stored_hash is not None and raw.stored_hash != block_hash:
            raise InvalidBlock("wrong_block_hash", "the stored hash is not the header's hash", height=height)
        check_header_links(header, self.chain_id, height, self.position.head_hash, self.position.timestamp_ms)
        in_force = validator_set_in_force(self.state, height)
        set_hash = in_force.compute_hash()
        if header.validator_set_hash != set_hash:
            raise InvalidBlock("wrong_validator_set", "the header names another validator set", height=height)
        self.validator_sets.setdefault(set_hash, in_force)
        try:
            certificate = CommitCertificate.decode(raw.certificate)
        except EncodingError as error:
            raise InvalidBlock("block_unreadable", f"certificate: {error.detail}", height=height) from error
        certificate.verify(self.chain_id, in_force, block_hash, height)
        tx_ids = pending.tx_ids
        log_start = self._log.size
        append_checked(self._log, header, tx_ids)
        verified = pending.job.verified_keys(tx_ids) if pending.job is not None else {}
        context = BlockContext(self.chain_id, height, header.timestamp_ms)
        changes, receipts = execute_block_on(
            self.state, pending.transactions, context,
            lambda tx_id, key: verified.get(tx_id) == key)
        encoded = [receipt.encode() for receipt in receipts]
        if raw.tx_index is not None:
            expected_index = [(i, log_start + i, tx_id) for i, tx_id in enumerate(tx_ids)]
            if raw.tx_index != expected_index:
                raise VerificationFailure("wrong_tx_index", "the tx index rows of this block are wrong or missing",
                                          height=height)
        if raw.receipts is not None and raw.receipts != encoded:
            index = next((i for i, (a, b) in enumerate(zip(encoded, raw.receipts)) if a != b),
                         min(len(encoded), len(raw.receipts)))
            raise VerificationFailure("wrong_receipt", f"transaction {index} of the block: the stored receipt is "
                                      "not what the contracts produce", height=height)
        if raw.changes is not None and raw.changes != changes:
            raise InvalidBlock("wrong_state_root", "the stored state changes are not what the contracts produce",
                               height=height)
        if self.state.apply(changes, height) != header.state_root:
            raise InvalidBlock("wrong_state_root", "replaying the block does not give the header's state root",
                               height=height)
        self.position = ChainPosition(height, block_hash, header.timestamp_ms, self._log.size, self._log.frontier)
        self.verified_hashes.append(height, block_hash)

    # --- at the head ---

    def _check_store_at_head(self, source: StoreSource) -> None:
        """A store's state rows, head state-tree pages, head log frontier and row counts are the replayed ones."""
        height = self.position.height
        if source.stored_log_root(self.position.log_size) != self._log.root():
            raise StoreCorruption("store_corrupt", "the stored log nodes disagree with the head's log root",
                                  height=height)
        if source.count_tx_rows() != self.position.log_size:
            raise VerificationFailure("wrong_tx_index", f"the tx index holds {source.count_tx_rows()} rows for "
                                      f"{self.position.log_size} transactions", height=height)
        if source.count_state_change_rows_outside(1, height):
            raise VerificationFailure("wrong_state_root", "the store records state changes of heights it does not "
                                      "hold", height=height)
        values, written_at = self.state.values, self.state.written_at
        seen = 0
        for key_hash, key, value, row_height in source.state_rows():
            if key_hash != sha256(key):
                raise VerificationFailure("state_row_mismatch", f"state row key hash wrong for {key!r}",
                                          height=written_at.get(key, height))
            replayed = values.get(key)
            if replayed is None:
                raise VerificationFailure("state_row_mismatch", f"state row {key!r} was never written (or deleted)",
                                          height=row_height if row_height <= height else height)
            if replayed != value or written_at[key] != row_height:
                raise VerificationFailure("state_row_mismatch", f"state row {key!r} was altered",
                                          height=written_at[key])
            seen += 1
        if seen != len(values):
            missing = min(written_at[key] for key in values if source.store.get(key) is None)
            raise VerificationFailure("state_row_mismatch", f"{len(values) - seen} written keys have no state row",
                                      height=missing)
        pages = self.state.pages()
        stored = source.stored_state_pages(list(pages))
        for page_hash, body in pages.items():
            if stored.get(page_hash) != body:
                raise VerificationFailure("store_corrupt", f"stored state page {page_hash.hex()[:16]} of the head's "
                                          "state tree missing or altered", height=height)

    def _check_supply(self) -> None:
        check_supply(self.state.values.items(), self.position.height)


class VerifiedHashes:
    """Block hashes by height, 32 bytes each in a temporary file: flat memory whatever the chain's length."""

    def __init__(self, first_height: int) -> None:
        self.first_height = first_height
        self.count = 0
        self._file = tempfile.TemporaryFile(prefix="ledger-audit-hashes-")  # noqa: SIM115 - closed by close()

    def append(self, height: int, block_hash: bytes) -> None:
        assert height == self.first_height + self.count and len(block_hash) == 32
        self._file.seek(0, 2)
        self._file.write(block_hash)
        self.count += 1

    def get(self, height: int) -> bytes | None:
        index = height - self.first_height
        if not 0 <= index < self.count:
            return None
        self._file.seek(32 * index)
        return self._file.read(32)

    def close(self) -> None:
        self._file.close()


def decode_transactions(data: bytes) -> tuple[tuple[SignedTransaction, ...], list[bytes]]:
    """A block's transactions and their ids, from the stored array of canonical transactions.

    The array is checked canonical once; each transaction keeps its own
    slice of the bytes, so its id is hashed from them without re-encoding.
    """
    if len(data) > BLOCK_BYTES_MAX:
        raise EncodingError("too_large", f"a block's transactions are at most {BLOCK_BYTES_MAX} bytes")
    wire = enc.decode(data, max_bytes=BLOCK_BYTES_MAX)
    if type(wire) is not list:
        raise EncodingError("wrong_type", "transactions must be an array")
    if len(wire) > BLOCK_TXS_MAX:
        raise EncodingError("too_large", f"a block holds at most {BLOCK_TXS_MAX} transactions")
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    unpacker.read_array_header()
    offset = unpacker.tell()
    transactions = []
    tx_ids = []
    for item in wire:
        unpacker.skip()
        end = unpacker.tell()
        encoded = data[offset:end]
        offset = end
        if len(encoded) > TX_BYTES_MAX:
            raise EncodingError("too_large", f"a transaction is at most {TX_BYTES_MAX} bytes")
        signed = SignedTransaction.from_wire(item)
        check_shape(signed.body)
        object.__setattr__(signed, "_encoded", encoded)
        object.__setattr__(signed.body, "_encoded", encoded[1:-66])
        transactions.append(signed)
        tx_ids.append(sha256(encoded))
    return tuple(transactions), tx_ids


__all__ = ["ChainAuditor", "ChainPosition", "SourceResult", "VerifiedHashes", "decode_transactions"]
