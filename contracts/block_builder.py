"""Turn transactions into a block, and a block into state changes.

Both proposing and replaying go through ``execute_block_on``: the same
transactions on the same state give the same changes and receipts on every
node, and the header's roots are computed from them by the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from contracts.runtime import BlockContext, Receipt, SignatureCache, execute_block
from ledger.block import Block, BlockHeader, compute_tx_root
from ledger.state import StateReader, StateView
from ledger.store import Store
from ledger.transaction import SignedTransaction


@dataclass(frozen=True, slots=True)
class ExecutedBlock:
    block: Block
    changes: dict[bytes, bytes | None]
    receipts: list[Receipt]

    @property
    def encoded_receipts(self) -> list[bytes]:
        return [receipt.encode() for receipt in self.receipts]


def execute_block_on(
    state: StateReader, transactions: Sequence[SignedTransaction], context: BlockContext,
    already_verified: SignatureCache | None = None,
) -> tuple[dict[bytes, bytes | None], list[Receipt]]:
    """Run a block's transactions on a view of ``state``; return its writes and receipts."""
    view = StateView(state)
    receipts = execute_block(view, transactions, context, already_verified)
    return dict(view.changes()), receipts


def build_block(
    store: Store, transactions: Sequence[SignedTransaction], proposer: str, timestamp_ms: int,
    already_verified: SignatureCache | None = None,
) -> ExecutedBlock:
    """Execute ``transactions`` on the store's head and make the header that commits to them."""
    height = store.head_height + 1
    if store.head_header is not None:
        timestamp_ms = max(timestamp_ms, store.head_header.timestamp_ms)
    context = BlockContext(store.chain_id, height, timestamp_ms)
    changes, receipts = execute_block_on(store, transactions, context, already_verified)
    roots = store.prepare_roots(transactions, changes)
    header = BlockHeader(
        chain_id=store.chain_id,
        height=height,
        parent_hash=store.head_hash,
        timestamp_ms=timestamp_ms,
        proposer=proposer,
        tx_count=len(transactions),
        tx_root=compute_tx_root([signed.tx_id for signed in transactions]),
        log_size=roots.log_size,
        log_root=roots.log_root,
        state_root=roots.state_root,
        validator_set_hash=store.get_validator_set_at(height).compute_hash(),
    )
    return ExecutedBlock(Block(header, tuple(transactions)), changes, receipts)
