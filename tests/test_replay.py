"""Replay re-executes a stored chain through the contracts: roots and receipts must agree."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from contracts.runtime import Receipt
from ledger.store import STORE_FILE_NAME, Store
from node.cli import main
from node.devchain import build_demo_chain, create_demo_network
from audit.run import audit_data_dir


@pytest.fixture
def chain(tmp_path: Path) -> Path:
    network = create_demo_network(tmp_path / "net", validators=4, seed=3)
    store = Store.create(tmp_path / "data", network.genesis)
    build_demo_chain(store, network, blocks=6, txs_per_block=20)
    store.close()
    return tmp_path / "data"


def test_an_honest_chain_replays_to_every_header(chain: Path) -> None:
    report = audit_data_dir(chain)
    assert report.ok, report.to_json()
    assert (report.head_height, report.transactions, report.replayed) == (7, 3 + 6 * 20, True)


def test_a_receipt_the_contracts_did_not_produce_is_found_with_its_height(chain: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    conn = sqlite3.connect(chain / STORE_FILE_NAME)
    tx_id, receipt = conn.execute("SELECT tx_id, receipt FROM txs WHERE height = 4 AND idx = 2").fetchone()
    forged = Receipt(1, "amount_exceeds_balance", ()).encode()
    assert forged != bytes(receipt)
    conn.execute("UPDATE txs SET receipt = ? WHERE tx_id = ?", (forged, tx_id))
    conn.commit()
    conn.close()
    report = audit_data_dir(chain)
    assert (report.ok, report.height, report.code) == (False, 4, "wrong_receipt")
    # the engine alone cannot see it (receipts are not under a header root): replay is what finds it
    assert main(["audit", "--data-dir", str(chain), "--no-replay"]) == 0
    capsys.readouterr()
    assert main(["audit", "--data-dir", str(chain)]) == 1
    assert "FAILED at height 4: wrong_receipt" in capsys.readouterr().out


def test_money_created_by_a_colluding_validator_set_is_caught_only_by_replay(tmp_path: Path) -> None:
    """Every validator signs a block whose recorded state gives a member money no contract paid:
    hash links, certificates and roots are all consistent, so only re-execution can tell."""
    from dataclasses import replace

    from contracts.block_builder import build_block
    from ledger.block import sign_commit
    from ledger.state import account_key
    from ledger.verify import verify_store
    from node.devchain import DemoLoad

    network = create_demo_network(tmp_path / "net", validators=4, seed=8)
    store = Store.create(tmp_path / "data", network.genesis)
    build_demo_chain(store, network, blocks=2, txs_per_block=5)
    load = DemoLoad(network, seed=99)
    load.nonces["alipay-agg"] = store.get_block(3).transactions[-1].body.nonce + 1
    transfers = list(load.transfers(3))
    honest = build_block(store, transfers, "validator-0", store.head_header.timestamp_ms + 1000)  # type: ignore[union-attr]
    forged_changes = dict(honest.changes)
    key = account_key("merchant-002")
    current = store.get(key)
    from ledger.state import EMPTY_ACCOUNT, Account

    account = Account.decode(current) if current else EMPTY_ACCOUNT
    forged_changes[key] = account.with_balance("CNY", account.get_balance("CNY") + 10**9).encode()
    roots = store.prepare_roots(transfers, forged_changes)
    header = replace(honest.block.header, state_root=roots.state_root)
    block = replace(honest.block, header=header)
    certificate = sign_commit(store.chain_id, header, 0, list(network.validator_keys.items()))
    store.append_block(block, certificate, forged_changes, honest.encoded_receipts)
    store.close()

    store = Store.open(tmp_path / "data")
    try:
        engine = verify_store(store)
    finally:
        store.close()
    # the supply check sees money that was never issued; the replay says where it came from
    replay = audit_data_dir(tmp_path / "data")
    assert (replay.ok, replay.height, replay.code) == (False, 4, "wrong_state_root")
    assert not engine.ok and engine.failure_code == "supply_mismatch"
