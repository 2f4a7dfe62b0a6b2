"""The mempool: admitted once, signature checked once, nonces contiguous, bounded, cleaned on commit."""

from __future__ import annotations

from pathlib import Path

from ledger.state import StateView, compute_genesis_state
from ledger.transaction import SignedTransaction, Transaction
from node.devchain import DemoNetwork
from node.mempool import ADMITTED, DUPLICATE, Admission, Mempool, MempoolError


class _State:
    def __init__(self, network: DemoNetwork) -> None:
        self.data = compute_genesis_state(network.genesis)

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def set_nonce(self, name: str, nonce: int) -> None:
        view = StateView(self)
        view.put_account(name, view.get_account(name).with_nonce(nonce))
        self.data.update({k: v for k, v in view.changes().items() if v is not None})


def _tx(network: DemoNetwork, sender: str, nonce: int, amount: int = 1) -> SignedTransaction:
    body = Transaction(sender, nonce, "accounts", "transfer", {"currency": "CNY", "to": "bank-cn", "amount_minor": amount}, 0)
    return body.sign(network.member_keys[sender], network.genesis.chain_id)


def _codes(results: list[Admission | MempoolError]) -> list[str]:
    return [r.outcome if isinstance(r, Admission) else r.code for r in results]


def test_admits_once_and_reports_duplicates(network: DemoNetwork) -> None:
    pool, state = Mempool(network.genesis.chain_id), _State(network)
    first = _tx(network, "alipay-agg", 0)
    assert _codes(pool.admit_many([first, first], state)) == [ADMITTED, DUPLICATE]
    assert _codes(pool.admit_many([first], state)) == [DUPLICATE]
    assert len(pool) == 1


def test_rejects_bad_signature_unknown_sender_and_used_or_pending_nonces(network: DemoNetwork) -> None:
    pool, state = Mempool(network.genesis.chain_id), _State(network)
    state.set_nonce("alipay-agg", 3)
    forged = SignedTransaction(_tx(network, "alipay-agg", 3).body, b"\x01" * 64)
    stranger = Transaction("stranger", 0, "accounts", "transfer", {}, 0).sign(
        network.member_keys["bank-cn"], network.genesis.chain_id)
    used = _tx(network, "alipay-agg", 2)
    good = _tx(network, "alipay-agg", 3)
    same_nonce_other_body = _tx(network, "alipay-agg", 3, amount=2)
    results = pool.admit_many([forged, stranger, used, good, same_nonce_other_body], state)
    assert _codes(results) == ["invalid_signature", "unknown_sender", "nonce_already_used", ADMITTED,
                               "nonce_already_pending"]


def test_reaps_only_contiguous_nonces_from_the_committed_nonce(network: DemoNetwork) -> None:
    pool, state = Mempool(network.genesis.chain_id), _State(network)
    pool.admit_many([_tx(network, "alipay-agg", n) for n in (0, 1, 3)] + [_tx(network, "bank-cn", 0)], state)
    reaped = pool.reap(state, 100, 10**9)
    assert sorted((s.body.sender, s.body.nonce) for s in reaped) == [("alipay-agg", 0), ("alipay-agg", 1), ("bank-cn", 0)]
    assert len(pool.reap(state, 2, 10**9)) == 2


def test_commit_removes_transactions_and_stale_nonces(network: DemoNetwork) -> None:
    pool, state = Mempool(network.genesis.chain_id), _State(network)
    txs = [_tx(network, "alipay-agg", n) for n in range(4)]
    pool.admit_many(txs, state)
    state.set_nonce("alipay-agg", 3)  # a block committed nonces 0..2 (say, one of them via another node)
    pool.remove_committed(txs[:1], state)
    assert [s.body.nonce for s in pool.reap(state, 100, 10**9)] == [3]
    assert len(pool) == 1 and pool.size_bytes == len(txs[3].encode())


def test_full_pool_says_so_and_stays_bounded(network: DemoNetwork, tmp_path: Path) -> None:
    pool, state = Mempool(network.genesis.chain_id, txs_max=3), _State(network)
    results = pool.admit_many([_tx(network, "alipay-agg", n) for n in range(5)], state)
    assert _codes(results) == [ADMITTED] * 3 + ["mempool_full"] * 2
    assert len(pool) == 3
