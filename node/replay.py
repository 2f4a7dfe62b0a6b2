"""Replay: re-execute a stored chain from genesis through the contracts and compare.

The verification engine (ledger/verify.py) checks that each block's
recorded state changes lead to its header's state root. Replay checks the
other half: that those changes are what the contracts compute. Every block
is executed again, in order, on a scratch store built from the same
genesis, exactly as a node syncing the chain would; the scratch store
refuses a block whose header roots disagree with the result
(``wrong_state_root``, ``wrong_log_root``), and each transaction's receipt
must equal the stored one (``wrong_receipt``). At the end the replayed state
root is the head's, so the balances the node reports (its state rows,
checked against that root by the engine) are the replayed ones.

The scratch store lives in a temporary directory and is not fsynced.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from contracts.block_builder import execute_block_on
from contracts.runtime import BlockContext
from ledger.errors import LedgerError, VerificationFailure
from ledger.store import Store

ProgressCallback = Callable[[int, int], None]


@dataclass
class ReplayReport:
    ok: bool
    height: int
    """The last height replayed (the head when ``ok``)."""
    transactions: int
    code: str = ""
    detail: str = ""

    def describe(self) -> str:
        if self.ok:
            return f"replayed {self.height} blocks, {self.transactions} transactions: every state root and receipt agrees"
        return f"replay FAILED at height {self.height}: {self.code}: {self.detail}"


def replay_store(source: Store, progress: ProgressCallback | None = None, scratch_dir: Path | None = None) -> ReplayReport:
    """Replay every block of ``source`` (up to its head when called) on a scratch store."""
    head = source.head_height
    transactions = 0
    with tempfile.TemporaryDirectory(prefix="ledger-replay-", dir=scratch_dir) as directory:
        scratch = Store.create(Path(directory), source.genesis, durable=False)
        try:
            for height in range(1, head + 1):
                try:
                    block = source.get_block(height)
                    certificate = source.get_certificate(height)
                    context = BlockContext(source.chain_id, height, block.header.timestamp_ms)
                    changes, receipts = execute_block_on(scratch, block.transactions, context)
                    encoded = [receipt.encode() for receipt in receipts]
                    stored = source.get_receipts(height)
                    if encoded != stored:
                        index = next((i for i, (a, b) in enumerate(zip(encoded, stored)) if a != b),
                                     min(len(encoded), len(stored)))
                        raise VerificationFailure("wrong_receipt", f"transaction {index} of the block: the stored "
                                                  "receipt is not what the contracts produce", height=height)
                    scratch.append_block(block, certificate, changes, encoded)
                except LedgerError as error:
                    return ReplayReport(False, height, transactions, error.code, error.detail)
                transactions += len(block.transactions)
                if progress is not None:
                    progress(height, head)
        finally:
            scratch.close()
    return ReplayReport(True, head, transactions)


__all__ = ["ReplayReport", "replay_store"]
