"""The mempool: signed transactions admitted once, waiting to be proposed.

Admission does the stateless checks (canonical bytes, shape, size) and the
signature check exactly once, against the sender's key at the committed
head; a transaction is then identified by its id and never admitted twice.
Nonces: a sender's transactions are kept by nonce; only a contiguous run
starting at the sender's committed nonce is proposable, so a block never
carries a gap. The pool is bounded in count and bytes; when full it says so
(``MempoolFull``), and the API turns that into 503 with Retry-After.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ledger import keys
from ledger.errors import LedgerError
from ledger.state import StateReader, StateView
from ledger.transaction import SignedTransaction

MEMPOOL_TXS_MAX = 50_000
MEMPOOL_BYTES_MAX = 64 * 1024 * 1024
PENDING_PER_SENDER_MAX = 10_000
"""How far ahead of its committed nonce one sender may queue."""


class MempoolError(LedgerError):
    """A transaction the mempool refuses (the API maps each code to a status)."""


ADMITTED = "admitted"
QUEUED = "queued"
"""Admitted, but its nonce waits for an earlier one of the same sender that this pool does not hold yet."""
DUPLICATE = "duplicate"
"""Already in the pool: the same id again is not an error (idempotent submission)."""


@dataclass(frozen=True, slots=True)
class Admission:
    tx_id: bytes
    outcome: str


class Mempool:
    """Pending transactions by sender and nonce; not thread-safe (one event loop owns it)."""

    def __init__(self, chain_id: str, txs_max: int = MEMPOOL_TXS_MAX, bytes_max: int = MEMPOOL_BYTES_MAX) -> None:
        self.chain_id = chain_id
        self.txs_max = txs_max
        self.bytes_max = bytes_max
        self._by_id: dict[bytes, SignedTransaction] = {}
        self._by_sender: dict[str, dict[int, bytes]] = {}
        self._verified_key: dict[bytes, bytes] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._by_id)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def contains(self, tx_id: bytes) -> bool:
        return tx_id in self._by_id

    def get(self, tx_id: bytes) -> SignedTransaction | None:
        return self._by_id.get(tx_id)

    def is_verified(self, tx_id: bytes, public_key: bytes) -> bool:
        """True if this pool checked the transaction's signature under ``public_key`` at admission."""
        return self._verified_key.get(tx_id) == public_key

    def admit_many(self, items: Sequence[SignedTransaction], state: StateReader) -> list[Admission | MempoolError]:
        """Admit decoded transactions; signatures are checked in one batch on all cores."""
        view = StateView(state)
        results: list[Admission | MempoolError | None] = [None] * len(items)
        to_verify: list[int] = []
        triples: list[tuple[bytes, bytes, bytes]] = []
        for index, signed in enumerate(items):
            tx_id = signed.tx_id
            if tx_id in self._by_id:
                results[index] = Admission(tx_id, DUPLICATE)
                continue
            member = view.get_member(signed.body.sender)
            if member is None:
                results[index] = MempoolError("unknown_sender", f"{signed.body.sender} is not a member")
                continue
            to_verify.append(index)
            triples.append((member.public_key, signed.body.signing_bytes(self.chain_id), signed.signature))
        for index, triple, is_valid in zip(to_verify, triples, keys.verify_many(triples)):
            signed = items[index]
            if not is_valid:
                results[index] = MempoolError("invalid_signature", f"transaction from {signed.body.sender}")
                continue
            result = self._insert(signed, view)
            if isinstance(result, Admission) and result.outcome in (ADMITTED, QUEUED):
                self._verified_key[result.tx_id] = triple[0]
            results[index] = result
        return [result for result in results if result is not None]

    def _insert(self, signed: SignedTransaction, view: StateView) -> Admission | MempoolError:
        tx = signed.body
        tx_id = signed.tx_id
        if tx_id in self._by_id:  # the same transaction twice in one batch
            return Admission(tx_id, DUPLICATE)
        committed_nonce = view.get_account(tx.sender).nonce
        if tx.nonce < committed_nonce:
            return MempoolError("nonce_already_used", f"nonce {tx.nonce} < next nonce {committed_nonce}")
        if tx.nonce >= committed_nonce + PENDING_PER_SENDER_MAX:
            return MempoolError("nonce_too_far_ahead", f"nonce {tx.nonce}, next nonce {committed_nonce}")
        pending = self._by_sender.setdefault(tx.sender, {})
        if tx.nonce in pending:
            return MempoolError("nonce_already_pending", f"another transaction holds nonce {tx.nonce}")
        size = len(signed.encode())
        if len(self._by_id) >= self.txs_max or self._bytes + size > self.bytes_max:
            return MempoolError("mempool_full", f"{len(self._by_id)} transactions pending")
        is_next = tx.nonce == committed_nonce or tx.nonce - 1 in pending
        pending[tx.nonce] = tx_id
        self._by_id[tx_id] = signed
        self._bytes += size
        return Admission(tx_id, ADMITTED if is_next else QUEUED)

    def get_next_nonce(self, sender: str, state: StateReader) -> int:
        """The nonce a new transaction of ``sender`` should carry, counting its pending ones."""
        nonce = StateView(state).get_account(sender).nonce
        pending = self._by_sender.get(sender, {})
        while nonce in pending:
            nonce += 1
        return nonce

    def reap(self, state: StateReader, txs_max: int, bytes_max: int) -> list[SignedTransaction]:
        """Proposable transactions: per sender, the contiguous nonces from its committed nonce."""
        view = StateView(state)
        chosen: list[SignedTransaction] = []
        total = 0
        for sender, pending in self._by_sender.items():
            nonce = view.get_account(sender).nonce
            while nonce in pending and len(chosen) < txs_max:
                signed = self._by_id[pending[nonce]]
                size = len(signed.encode())
                if total + size > bytes_max:
                    return chosen
                chosen.append(signed)
                total += size
                nonce += 1
            if len(chosen) >= txs_max:
                break
        return chosen

    def remove_committed(self, transactions: Iterable[SignedTransaction], state: StateReader) -> None:
        """Drop committed transactions and any pending ones their nonces made stale."""
        senders = set()
        for signed in transactions:
            self._remove(signed.tx_id)
            senders.add(signed.body.sender)
        view = StateView(state)
        for sender in senders:
            pending = self._by_sender.get(sender)
            if not pending:
                continue
            committed_nonce = view.get_account(sender).nonce
            for nonce in [n for n in pending if n < committed_nonce]:
                self._remove(pending[nonce])

    def _remove(self, tx_id: bytes) -> None:
        signed = self._by_id.pop(tx_id, None)
        if signed is None:
            return
        self._verified_key.pop(tx_id, None)
        self._bytes -= len(signed.encode())
        pending = self._by_sender.get(signed.body.sender)
        if pending is not None:
            pending.pop(signed.body.nonce, None)
            if not pending:
                del self._by_sender[signed.body.sender]
        assert self._bytes >= 0
