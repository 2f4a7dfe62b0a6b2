"""The consensus Application over the store and the mempool.

Consensus decides *which* block; this module says what a block *is*: the
proposer reaps the mempool and executes a block on the committed head; a
validator re-executes a proposed block and accepts it only if every header
field it can recompute matches (links, validator set, transaction root,
log root, state root). Execution results are kept by block hash so that a
block validated once is committed without executing it again.
"""

from __future__ import annotations

import logging

from contracts.block_builder import ExecutedBlock, build_block, execute_block_on
from contracts.runtime import BlockContext
from ledger.block import BLOCK_TXS_MAX, Block, BlockHeader, CommitCertificate, compute_tx_root
from ledger.errors import LedgerError
from ledger.state import StateView
from ledger.store import PreparedRoots, Store
from ledger.transaction import SignedTransaction
from node.mempool import Mempool

log = logging.getLogger("ledger.app")

PROPOSAL_TXS_MAX = 2_000
"""Transactions per proposed block: large enough to amortise a round, small enough to gossip fast."""
PROPOSAL_BYTES_MAX = 4 * 1024 * 1024
EXECUTED_CACHE_MAX = 8
"""Executed blocks kept for commit (one per round seen at this height is plenty)."""
assert PROPOSAL_TXS_MAX <= BLOCK_TXS_MAX


class LedgerApplication:
    """Implements ``node.consensus.Application`` for a node's store and mempool."""

    def __init__(self, store: Store, mempool: Mempool, proposer_name: str) -> None:
        self.store = store
        self.mempool = mempool
        self.proposer_name = proposer_name
        self._executed: dict[bytes, ExecutedBlock] = {}

    def propose_block(self, height: int, round: int, timestamp_ms: int) -> Block:
        assert height == self.store.head_height + 1, (height, self.store.head_height)
        transactions = self._drop_stale_signers(self.mempool.reap(self.store, PROPOSAL_TXS_MAX, PROPOSAL_BYTES_MAX))
        try:
            executed = build_block(self.store, transactions, self.proposer_name, timestamp_ms,
                                   self.mempool.is_verified)
        except LedgerError as error:
            # A pending transaction that fails admission (e.g. its sender's key rotated) is dropped.
            log.warning("dropping the proposal's transactions after %s; proposing an empty block", error)
            self.mempool.remove_committed(transactions, self.store)
            executed = build_block(self.store, [], self.proposer_name, timestamp_ms)
        self._remember(executed)
        return executed.block

    def _drop_stale_signers(self, transactions: list[SignedTransaction]) -> list[SignedTransaction]:
        """Leave out (and forget) transactions whose sender left or whose key changed since they were admitted.

        Governance may remove a member or rotate a key while its transactions
        wait; one of them in a proposal would make the whole block invalid.
        A sender's later nonces are left out of this proposal too (they stay
        pending): without the earlier one they cannot be included yet.
        """
        view = StateView(self.store)
        kept: list[SignedTransaction] = []
        stale: list[SignedTransaction] = []
        blocked: set[str] = set()
        for signed in transactions:
            sender = signed.body.sender
            if sender in blocked:
                continue
            member = view.get_member(sender)
            if member is None or not self.mempool.is_verified(signed.tx_id, member.public_key):
                stale.append(signed)
                blocked.add(sender)
                continue
            kept.append(signed)
        if stale:
            log.warning("dropping %d pending transactions whose senders left or changed keys", len(stale))
            self.mempool.remove_committed(stale, self.store)
        return kept

    def validate_block(self, block: Block) -> bool:
        block_hash = block.compute_hash()
        if block_hash in self._executed:
            return True
        try:
            executed = self._execute_and_check(block)
        except LedgerError as error:
            log.warning("rejecting block %d %s: %s", block.height, block_hash.hex()[:12], error)
            return False
        if executed is None:
            return False
        self._remember(executed)
        return True

    def _execute_and_check(self, block: Block) -> ExecutedBlock | None:
        header = block.header
        store = self.store
        if header.height != store.head_height + 1 or header.parent_hash != store.head_hash:
            return None
        if header.chain_id != store.chain_id:
            return None
        if store.head_header is not None and header.timestamp_ms < store.head_header.timestamp_ms:
            return None
        if header.validator_set_hash != store.get_validator_set_at(header.height).compute_hash():
            return None
        tx_ids = [signed.tx_id for signed in block.transactions]
        if header.tx_count != len(tx_ids) or header.tx_root != compute_tx_root(tx_ids):
            return None
        executed, roots = self._execute(block)
        if (roots.state_root, roots.log_size, roots.log_root) != (header.state_root, header.log_size, header.log_root):
            return None
        return executed

    def commit(self, block: Block, certificate: CommitCertificate) -> ExecutedBlock:
        """Store a certified block durably (fsynced) and drop its transactions from the mempool."""
        block_hash = block.compute_hash()
        executed = self._executed.get(block_hash)
        if executed is None:  # certified but not validated here (e.g. decided while we lagged)
            executed, _roots = self._execute(block)
        self.store.append_block(block, certificate, executed.changes, executed.encoded_receipts)
        self._executed.clear()
        self.mempool.remove_committed(block.transactions, self.store)
        return executed

    def _execute(self, block: Block) -> tuple[ExecutedBlock, PreparedRoots]:
        """Execute on the committed head; the store remembers the new state nodes for ``append_block``."""
        header: BlockHeader = block.header
        context = BlockContext(self.store.chain_id, header.height, header.timestamp_ms)
        changes, receipts = execute_block_on(self.store, block.transactions, context, self.mempool.is_verified)
        roots = self.store.prepare_roots(block.transactions, changes)
        return ExecutedBlock(block, changes, receipts), roots

    def _remember(self, executed: ExecutedBlock) -> None:
        if len(self._executed) >= EXECUTED_CACHE_MAX:
            self._executed.pop(next(iter(self._executed)))
        self._executed[executed.block.compute_hash()] = executed
