"""Signature checks on every core, ahead of the replay.

Ed25519 verification is most of an audit's work (about 55 us per
signature here, against about 25 us for everything else a transfer
costs), so the auditor hands the (key, message, signature) triples of the
next blocks to worker processes while it replays the current one.

The keys used are the ones in force as far as the replay has got; if a
block rotates a key, a later transaction's triple may carry the old key.
That is safe: the runtime counts a verdict only for the key it finds in
force at the transaction's block, and checks any other signature itself.
A signature found invalid is simply not reported as verified, so the
runtime checks it again and refuses the block with ``invalid_signature``.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor

from ledger import keys

Triple = tuple[bytes, bytes, bytes]


def _verify_all(items: Sequence[Triple]) -> bytes:
    """Worker side: one byte per triple, 1 when valid."""
    return bytes(keys.verify_raw(key, message, signature) for key, message, signature in items)


def _ready() -> bool:
    return True


class SignatureChecks:
    """A pool of ``workers`` processes (0: check in this process, when the result is asked for)."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        self._pool: ProcessPoolExecutor | None = None
        if self.workers > 0:
            # Fork before any thread of ours starts (the API source's fetcher); every worker starts now.
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("fork"))
            for future in [self._pool.submit(_ready) for _ in range(self.workers)]:
                future.result()

    def submit(self, items: list[Triple]) -> SignatureJob:
        future = self._pool.submit(_verify_all, items) if self._pool is not None else None
        return SignatureJob(items, future)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> SignatureChecks:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SignatureJob:
    """The verdicts for a run of triples; ``slice`` gives one block's share."""

    def __init__(self, items: list[Triple], future: Future[bytes] | None, offset: int = 0,
                 count: int | None = None, parent: SignatureJob | None = None) -> None:
        self._items = items
        self._future = future
        self._offset = offset
        self._count = len(items) if count is None else count
        self._parent = parent
        self._verdicts: bytes | None = None

    def slice(self, offset: int, count: int) -> SignatureJob:
        return SignatureJob(self._items, None, offset, count, self)

    def _all_verdicts(self) -> bytes:
        if self._parent is not None:
            return self._parent._all_verdicts()
        if self._verdicts is None:
            self._verdicts = self._future.result() if self._future is not None else _verify_all(self._items)
        return self._verdicts

    def verified_keys(self, tx_ids: Sequence[bytes]) -> dict[bytes, bytes]:
        """tx id -> the key its signature verified under, for the valid ones of this slice."""
        verdicts = self._all_verdicts()
        items, offset = self._items, self._offset
        assert len(tx_ids) == self._count
        return {tx_id: items[offset + i][0] for i, tx_id in enumerate(tx_ids) if verdicts[offset + i]}


__all__ = ["SignatureChecks", "SignatureJob"]
