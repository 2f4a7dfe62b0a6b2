"""Contract execution speed on one core, signatures already verified (issue 5's figures).

    python scripts/bench_contracts.py [--transfers 20000] [--json FILE]

Measures execution alone: transactions are signed before the clock starts,
the signature check is skipped as a node does for transactions it verified
at admission (``already_verified``), and the state is an in-memory map (no
SQLite, no state tree). Prints transfers/s through ``execute_block`` in
blocks of 2,000. Contracts add their own measurements below as they land.
Speed is measured here, never asserted in a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contracts.runtime import BlockContext, execute_block  # noqa: E402
from ledger.state import StateView, compute_genesis_state  # noqa: E402
from ledger.transaction import SignedTransaction, Transaction  # noqa: E402
from node.devchain import DemoLoad, DemoNetwork, make_demo_network  # noqa: E402

BLOCK_TXS = 2_000


class DictState:
    def __init__(self, data: dict[bytes, bytes]) -> None:
        self.data = data

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def apply(self, view: StateView) -> None:
        for key, value in view.changes().items():
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value


def _verified(_tx_id: bytes, _key: bytes) -> bool:
    return True


def bench_transfers(count: int) -> dict[str, Any]:
    network = make_demo_network(["validator-0"], seed=1)
    load = DemoLoad(network, seed=1)
    state = DictState(compute_genesis_state(network.genesis))
    chain_id = network.genesis.chain_id
    view = StateView(state)
    execute_block(view, load.issuance(), BlockContext(chain_id, 1, 0), _verified)
    state.apply(view)
    # as a node holds them: decoded from the bytes it received (so ids and signing bytes are cached)
    transfers = [SignedTransaction.decode(signed.encode()) for signed in load.transfers(count)]
    blocks = [transfers[start:start + BLOCK_TXS] for start in range(0, count, BLOCK_TXS)]
    started = time.process_time()
    for height, block in enumerate(blocks, start=2):
        view = StateView(state)
        receipts = execute_block(view, block, BlockContext(chain_id, height, height * 1000), _verified)
        assert all(receipt.is_ok for receipt in receipts)
        state.apply(view)
    seconds = time.process_time() - started
    return {"transfers": count, "cpu_s": round(seconds, 3), "transfers_per_s": round(count / seconds),
            "us_per_transfer": round(seconds / count * 1e6, 1)}


class Signer:
    """Pre-signs calls of the demo members with their next nonces, decoded as a node holds them."""

    def __init__(self, network: DemoNetwork) -> None:
        self.network = network
        self.nonces: dict[str, int] = {}

    def __call__(self, sender: str, contract: str, method: str, **args: Any) -> SignedTransaction:
        nonce = self.nonces.get(sender, 0)
        self.nonces[sender] = nonce + 1
        signed = Transaction(sender, nonce, contract, method, args, 0).sign(self.network.member_keys[sender],
                                                                             self.network.genesis.chain_id)
        return SignedTransaction.decode(signed.encode())


def _run(state: DictState, chain_id: str, height: int, block: list[SignedTransaction]) -> float:
    """CPU seconds to execute one block; every call must succeed."""
    view = StateView(state)
    started = time.process_time()
    receipts = execute_block(view, block, BlockContext(chain_id, height, height * 30_000), _verified)
    seconds = time.process_time() - started
    failed = [receipt.code for receipt in receipts if not receipt.is_ok]
    assert not failed, failed[:3]
    state.apply(view)
    return seconds


def bench_fx(count: int) -> dict[str, Any]:
    """fx.pay by source amount, CNY -> USD, against one quote of fx-hk."""
    network = make_demo_network(["validator-0"], seed=1)
    sign, chain_id = Signer(network), network.genesis.chain_id
    state = DictState(compute_genesis_state(network.genesis))
    _run(state, chain_id, 1, [sign("bank-cn", "accounts", "issue", currency="CNY", to="alipay-agg", amount_minor=10**15),
                              sign("bank-us", "accounts", "issue", currency="USD", to="fx-hk", amount_minor=10**15),
                              sign("fx-hk", "fx", "post_quote", quote_id="cnyusd", source_currency="CNY",
                                   target_currency="USD", rate_num=10_000, rate_den=71_234, spread_bps=25,
                                   fee_minor=500, valid_until_height=10_000, size_target_minor=10**14)])
    payments = [sign("alipay-agg", "fx", "pay", provider="fx-hk", quote_id="cnyusd", to="supplier-us",
                     source_currency="CNY", target_currency="USD", source_minor=100_000 + n, min_target_minor=1)
                for n in range(count)]
    seconds = sum(_run(state, chain_id, height, payments[start:start + BLOCK_TXS])
                  for height, start in enumerate(range(0, count, BLOCK_TXS), start=2))
    return {"payments": count, "cpu_s": round(seconds, 3), "fx_payments_per_s": round(count / seconds),
            "us_per_payment": round(seconds / count * 1e6, 1)}


def bench_merchant(payments: int) -> dict[str, Any]:
    """record_payment x N (through three channels), then one settle of the whole batch (T+0)."""
    network = make_demo_network(["validator-0"], seed=1)
    sign, chain_id = Signer(network), network.genesis.chain_id
    state = DictState(compute_genesis_state(network.genesis))
    _run(state, chain_id, 1, [sign("bank-cn", "accounts", "issue", currency="CNY", to="alipay-agg", amount_minor=10**15),
                              sign("alipay-agg", "merchant", "register_merchant", merchant="merchant-001",
                                   settlement_cycle=0)])
    channels = ("wechat", "alipay", "unionpay")
    records = [sign("alipay-agg", "merchant", "record_payment", merchant="merchant-001", channel=channels[n % 3],
                    currency="CNY", amount_minor=1_000 + n, payment_ref=f"p{n}") for n in range(payments)]
    record_seconds = sum(_run(state, chain_id, 2, records[start:start + BLOCK_TXS])
                         for start in range(0, payments, BLOCK_TXS))
    settle_seconds = _run(state, chain_id, 2, [sign("alipay-agg", "merchant", "settle", merchant="merchant-001",
                                                    currency="CNY")])
    return {"payments": payments, "record_payments_per_s": round(payments / record_seconds),
            "settle_batch_ms": round(settle_seconds * 1000, 3)}


def bench_netting(obligations: int, participants: int) -> dict[str, Any]:
    """add_obligation x N among P members (validators as the banks), then one settle of the cycle."""
    names = [f"bank-{n:03d}" for n in range(participants)]
    network = make_demo_network(names, seed=1)
    network.member_keys.update(network.validator_keys)  # the validators are members too: here, the banks
    sign, chain_id = Signer(network), network.genesis.chain_id
    state = DictState(compute_genesis_state(network.genesis))
    _run(state, chain_id, 1, [sign("bank-cn", "accounts", "issue", currency="CNY", to=name, amount_minor=10**12)
                              for name in names] +
         [sign(names[0], "netting", "open_cycle", cycle_id="cycle-1", currency="CNY", participants=names)])
    adds = [sign(names[n % participants], "netting", "add_obligation", cycle_id="cycle-1",
                 to=names[(n * 7 + 1) % participants] if (n * 7 + 1) % participants != n % participants
                 else names[(n + 1) % participants], amount_minor=1_000 + n) for n in range(obligations)]
    add_seconds = sum(_run(state, chain_id, 2, adds[start:start + BLOCK_TXS])
                      for start in range(0, obligations, BLOCK_TXS))
    settle_seconds = _run(state, chain_id, 3, [sign(names[0], "netting", "settle", cycle_id="cycle-1")])
    return {"obligations": obligations, "participants": participants,
            "add_obligations_per_s": round(obligations / add_seconds), "settle_cycle_ms": round(settle_seconds * 1000, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transfers", type=int, default=20_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    record: dict[str, Any] = {"transfer": bench_transfers(args.transfers), "fx": bench_fx(args.transfers // 2),
                              "merchant": bench_merchant(10_000), "netting": bench_netting(10_000, 100)}
    print(f"transfers: {record['transfer']['transfers_per_s']:,}/s ({record['transfer']['us_per_transfer']} µs each)")
    print(f"fx payments: {record['fx']['fx_payments_per_s']:,}/s ({record['fx']['us_per_payment']} µs each)")
    print(f"merchant: record_payment {record['merchant']['record_payments_per_s']:,}/s; settling a batch of "
          f"10,000 payments: {record['merchant']['settle_batch_ms']} ms")
    print(f"netting: add_obligation {record['netting']['add_obligations_per_s']:,}/s; settling 10,000 obligations "
          f"among 100 participants: {record['netting']['settle_cycle_ms']} ms")
    print("(one core, CPU time, signatures pre-verified as at admission, in-memory state)")
    record.update({
        "cpu": f"{platform.machine()} x{os.cpu_count()}", "python": platform.python_version(),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                 check=False, cwd=Path(__file__).resolve().parent.parent).stdout.strip(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    if args.json:
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
