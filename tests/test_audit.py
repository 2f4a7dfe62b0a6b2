"""The auditor (audit/): its own state tree, its decoding, the parallel signature checks, incremental runs
from a state file, and forks across sources. Tampering with a store is tests/test_tamper.py; the API side
is tests/test_client_cli_e2e.py."""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.engine import decode_transactions
from audit.run import audit_data_dir, audit_sources, open_store
from audit.state import PruningNodeStore, ReplayState
from contracts.block_builder import build_block
from contracts.runtime import BlockContext, execute_transaction
from ledger import smt
from ledger.block import Block, compute_tx_root, sign_commit
from ledger.errors import EncodingError
from ledger.state import Account, StateView, account_key
from ledger.store import STORE_FILE_NAME, Store, _decode_transactions, _encode_transactions
from ledger.transaction import Transaction
from node.cli import main
from node.devchain import DemoLoad, DemoNetwork, build_demo_chain, create_demo_network

# --- the auditor's own state tree ---

keys_strategy = st.binary(min_size=1, max_size=3)
block_strategy = st.dictionaries(keys_strategy, st.one_of(st.none(), st.binary(min_size=0, max_size=4)), max_size=12)


@settings(max_examples=150, deadline=None)
@given(st.lists(block_strategy, max_size=12))
def test_the_pruned_tree_has_the_full_trees_roots_and_only_the_live_pages(blocks: list[dict]) -> None:  # type: ignore[type-arg]
    state = ReplayState({}, {})
    full = smt.StateTree(smt.MemoryNodeStore())
    root = smt.EMPTY_HASH
    values: dict[bytes, bytes] = {}
    for height, changes in enumerate(blocks, start=1):
        real = {k: v for k, v in changes.items() if v is not None or k in values}
        root = full.update(root, real)
        for key, value in changes.items():
            if value is None:
                values.pop(key, None)
            else:
                values[key] = value
        assert state.apply(changes, height) == root
        assert state.values == values
    rebuilt = smt.MemoryNodeStore()
    assert smt.StateTree(rebuilt).update(smt.EMPTY_HASH, values) == state.root
    assert state.pages() == rebuilt.nodes  # exactly the pages reachable from the root, nothing stale


def test_pruning_forgets_what_an_update_read_and_replaced() -> None:
    pages = PruningNodeStore()
    tree = smt.StateTree(pages)
    root = tree.update(smt.EMPTY_HASH, {bytes([i]): b"v" for i in range(40)})
    pages.drop_replaced()
    before = dict(pages.pages)
    root = tree.update(root, {b"\x05": b"w"})
    pages.drop_replaced()
    assert len(pages.pages) == len(before)  # each page on the changed path was replaced, not added
    assert set(pages.pages) != set(before)


# --- decoding a block's transactions from the stored bytes ---


def test_transactions_decode_with_their_ids_from_the_stored_bytes(tmp_path: Path) -> None:
    network = create_demo_network(tmp_path / "net", seed=4)
    transactions = [*DemoLoad(network).issuance(), *DemoLoad(network, seed=2).transfers(20)]
    data = _encode_transactions(transactions)
    decoded, tx_ids = decode_transactions(data)
    assert decoded == _decode_transactions(data)
    assert tx_ids == [signed.tx_id for signed in transactions]
    assert [signed.encode() for signed in decoded] == [signed.encode() for signed in transactions]
    assert decode_transactions(_encode_transactions([])) == ((), [])
    with pytest.raises(EncodingError):
        decode_transactions(data + b"\x00")  # trailing bytes
    with pytest.raises(EncodingError):
        decode_transactions(b"\xdc\x00\x01" + data[1:])  # a non-canonical array header


# --- chains for the tests below ---


def make_chain(directory: Path, seed: int = 5, blocks: int = 6, txs_per_block: int = 30) -> DemoNetwork:
    network = create_demo_network(directory / "net", seed=seed)
    store = Store.create(directory / "data", network.genesis, durable=False)
    build_demo_chain(store, network, blocks, txs_per_block)
    store.close()
    return network


def append_transfers(directory: Path, network: DemoNetwork, blocks: int, txs_per_block: int = 5,
                     signers: list[str] | None = None, load_seed: int = 11) -> None:
    store = Store.open(directory / "data")
    try:
        load = DemoLoad(network, seed=load_seed)
        load.nonces["alipay-agg"] = _nonce(store, "alipay-agg")
        for _ in range(blocks):
            height = store.head_height + 1
            executed = build_block(store, list(load.transfers(txs_per_block)), "validator-0",
                                   network.genesis.genesis_time_ms + 10_000 * height)
            names = signers or sorted(network.validator_keys)
            certificate = sign_commit(store.chain_id, executed.block.header, 0,
                                      [(name, network.validator_keys[name]) for name in names])
            store.append_block(executed.block, certificate, executed.changes, executed.encoded_receipts)
    finally:
        store.close()


def _nonce(store: Store, name: str) -> int:

    value = store.get(account_key(name))
    return Account.decode(value).nonce if value else 0


# --- the pass: workers, signatures ---


def test_every_worker_count_gives_the_same_verdict(tmp_path: Path) -> None:
    make_chain(tmp_path, blocks=8, txs_per_block=400)  # big enough for several signature jobs in flight
    results = [audit_data_dir(tmp_path / "data", workers=workers) for workers in (0, 1, 2)]
    assert all(r.ok for r in results), [r.to_json() for r in results]
    assert {(r.head_height, r.head_hash, r.transactions) for r in results} == {(9, results[0].head_hash, 3203)}


def test_a_certified_block_with_a_forged_transaction_signature_is_refused_at_its_height(tmp_path: Path) -> None:
    network = make_chain(tmp_path, blocks=3, txs_per_block=10)
    store = Store.open(tmp_path / "data")
    try:
        load = DemoLoad(network, seed=11)
        load.nonces["alipay-agg"] = _nonce(store, "alipay-agg")
        transfers = list(load.transfers(5))
        body = transfers[2].body
        forged = Transaction(body.sender, body.nonce, body.contract, body.method,
                             {**body.args, "amount_minor": 10**9}, 0)
        transfers[2] = type(transfers[2])(forged, transfers[2].signature)  # the old signature on a new body
        height = store.head_height + 1
        # the proposer's own check would refuse it: write the block as colluding validators would

        view = StateView(store)
        context = BlockContext(store.chain_id, height, network.genesis.genesis_time_ms + 10_000 * height)
        receipts = [execute_transaction(view, signed, context, (True, network.member_keys["alipay-agg"].public_key))
                    for signed in transfers]
        changes = dict(view.changes())
        roots = store.prepare_roots(transfers, changes)

        template = build_block(store, [], "validator-0", context.timestamp_ms).block.header

        header = replace(template, tx_count=5, tx_root=compute_tx_root([t.tx_id for t in transfers]),
                         log_size=roots.log_size, log_root=roots.log_root, state_root=roots.state_root)
        certificate = sign_commit(store.chain_id, header, 0, list(network.validator_keys.items()))
        store.append_block(Block(header, tuple(transfers)), certificate, changes, [r.encode() for r in receipts])
    finally:
        store.close()
    for workers in (0, 2):
        result = audit_data_dir(tmp_path / "data", workers=workers)
        assert (result.ok, result.height, result.code) == (False, height, "invalid_signature"), result.to_json()


# --- incremental runs ---


def test_an_incremental_run_checks_only_the_new_blocks(tmp_path: Path) -> None:
    network = make_chain(tmp_path, blocks=4, txs_per_block=20)
    state = tmp_path / "auditor.db"
    first = audit_data_dir(tmp_path / "data", state_file=state)
    assert first.ok and (first.from_height, first.head_height) == (1, 5), first.to_json()
    append_transfers(tmp_path, network, blocks=3)
    second = audit_data_dir(tmp_path / "data", state_file=state)
    assert second.ok, second.to_json()
    assert (second.from_height, second.blocks, second.transactions, second.head_height) == (6, 3, 15, 8)
    assert any("consistent extension" in note for note in second.notes)
    full = audit_data_dir(tmp_path / "data")
    assert full.head_hash == second.head_hash
    third = audit_data_dir(tmp_path / "data", state_file=state)
    assert third.ok and (third.from_height, third.blocks) == (9, 0)


def test_a_rewritten_history_is_caught_without_reading_the_old_blocks_again(tmp_path: Path) -> None:
    make_chain(tmp_path / "a", seed=5, blocks=4)
    network_b = create_demo_network(tmp_path / "b" / "net", seed=5)  # the same genesis, keys and validators
    state = tmp_path / "auditor.db"
    assert audit_data_dir(tmp_path / "a" / "data", state_file=state).ok
    # the node now serves a different, validly certified history of the same chain, one block longer
    store = Store.create(tmp_path / "b" / "data", network_b.genesis, durable=False)
    build_demo_chain(store, network_b, 4, 31)
    store.close()
    result = audit_data_dir(tmp_path / "b" / "data", state_file=state)
    assert (result.ok, result.height, result.code) == (False, 5, "history_changed"), result.to_json()
    # a shorter chain than the one verified: blocks have gone
    shutil.rmtree(tmp_path / "b" / "data")
    store = Store.create(tmp_path / "b" / "data", network_b.genesis, durable=False)
    build_demo_chain(store, network_b, 2, 30)
    store.close()
    result = audit_data_dir(tmp_path / "b" / "data", state_file=state)
    assert (result.ok, result.code) == (False, "history_changed"), result.to_json()


def test_a_state_file_of_another_chain_or_altered_cannot_be_used(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    make_chain(tmp_path / "a", seed=5, blocks=2)
    make_chain(tmp_path / "b", seed=6, blocks=2)
    state = tmp_path / "auditor.db"
    assert main(["audit", "--data-dir", str(tmp_path / "a" / "data"), "--state", str(state)]) == 0
    capsys.readouterr()
    assert main(["audit", "--data-dir", str(tmp_path / "b" / "data"), "--state", str(state)]) == 2
    assert "another chain" in capsys.readouterr().err
    db = sqlite3.connect(state)
    db.execute("UPDATE state SET value = X'00' WHERE key = (SELECT key FROM state LIMIT 1)")
    db.commit()
    db.close()
    assert main(["audit", "--data-dir", str(tmp_path / "a" / "data"), "--state", str(state)]) == 2
    assert "does not give its saved root" in capsys.readouterr().err


# --- across sources ---


def test_two_certified_blocks_at_one_height_are_a_fork_naming_who_signed_both(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    network = make_chain(tmp_path / "a", seed=5, blocks=3)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    append_transfers(tmp_path / "a", network, blocks=2, signers=["validator-0", "validator-1", "validator-2"],
                     load_seed=21)
    append_transfers(tmp_path / "b", network, blocks=1, signers=["validator-1", "validator-2", "validator-3"],
                     load_seed=22)
    code = main(["audit", "--data-dir", str(tmp_path / "a" / "data"), "--data-dir", str(tmp_path / "b" / "data"),
                 "--json", "--workers", "0"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert all(source["ok"] for source in report["sources"])  # each chain is valid on its own
    assert report["forks"] == [{
        "height": 5, "sources": [str(tmp_path / "a" / "data"), str(tmp_path / "b" / "data")],
        "block_hashes": report["forks"][0]["block_hashes"], "rounds": [0, 0],
        "double_signers": ["validator-1", "validator-2"]}]
    assert len(set(report["forks"][0]["block_hashes"])) == 2
    assert main(["audit", "--data-dir", str(tmp_path / "a" / "data"), "--data-dir",
                 str(tmp_path / "b" / "data")]) == 1
    assert "FORK at height 5" in capsys.readouterr().out


def test_sources_at_different_heights_of_one_chain_agree(tmp_path: Path) -> None:
    network = make_chain(tmp_path / "a", seed=5, blocks=3)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    append_transfers(tmp_path / "a", network, blocks=2)
    genesis = Store.read_genesis(tmp_path / "a" / "data")
    state = tmp_path / "auditor.db"
    report = audit_sources(genesis, [(str(d), "data-dir", open_store(d / "data")) for d in (tmp_path / "a",
                                                                                           tmp_path / "b")],
                           anchor="test", workers=0, state_file=state)
    assert report.exit_code == 0 and not report.forks, report.to_json()
    assert report.checkpoint is not None and report.checkpoint["height"] == 4  # the lowest head both verified


def test_the_audit_command_refuses_what_it_cannot_run(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["audit"]) == 2
    assert "say what to audit" in capsys.readouterr().err
    assert main(["audit", "--data-dir", str(tmp_path / "nothing")]) == 2
    capsys.readouterr()
    assert main(["audit", "--node", "http://127.0.0.1:9"]) == 2
    assert "--genesis" in capsys.readouterr().err
    make_chain(tmp_path / "a", blocks=1)
    (tmp_path / "empty").mkdir()
    assert main(["audit", "--data-dir", str(tmp_path / "a" / "data"), "--data-dir", str(tmp_path / "empty"),
                 "--json"]) == 2
    sources = json.loads(capsys.readouterr().out)["sources"]
    assert [(s["ok"], s["could_run"]) for s in sources] == [(True, True), (False, False)]
    assert not (tmp_path / "empty" / STORE_FILE_NAME).exists()  # the auditor never creates a store


def test_the_pass_reads_a_bounded_distance_ahead_of_its_checks(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory stays flat whatever the chain's length: blocks are decoded only a window ahead of the replay."""
    from audit import engine  # noqa: PLC0415
    from audit.signatures import SignatureChecks  # noqa: PLC0415
    from audit.sources import StoreSource  # noqa: PLC0415

    monkeypatch.setattr(engine, "LOOKAHEAD_TXS", 20)
    monkeypatch.setattr(engine, "JOB_TXS_MIN", 4)
    make_chain(tmp_path, blocks=300, txs_per_block=1)
    source = StoreSource(tmp_path / "data")
    read = [0]
    leads = []
    blocks = source.blocks

    def counting(start: int, end: int):  # type: ignore[no-untyped-def]
        for raw in blocks(start, end):
            read[0] += 1
            yield raw

    source.blocks = counting  # type: ignore[method-assign]
    try:
        with SignatureChecks(0) as signatures:
            auditor = engine.ChainAuditor.from_genesis(source.genesis, signatures)
            result = engine.SourceResult(source.name, source.kind)
            auditor.run(source, source.head_height(), result, lambda height, head: leads.append(read[0] - height))
            auditor.close()
    finally:
        source.close()
    assert result.ok and result.head_height == 301, result.to_json()
    assert max(leads) <= 20 // 2 + 4 + 1  # the window (2 per one-transaction block) plus one group of blocks


# --- what the reviewer of the first version found: each must fail, with a report, never pass ---


class _LyingStore:
    """A data dir that streams its own chain but answers single-block reads from another, or not at all."""

    def __new__(cls, directory: Path, other: Path | None):  # type: ignore[no-untyped-def]
        from audit.sources import StoreSource  # noqa: PLC0415

        source = StoreSource(directory)
        if other is None:
            source.header_and_certificate = lambda height: None  # type: ignore[method-assign]
        else:
            other_store = Store.open(other)
            source.header_and_certificate = lambda height: (  # type: ignore[method-assign]
                lambda row: None if row is None else (row[1], row[3]))(other_store.get_raw_block_row(height))
        return source


@pytest.mark.parametrize("lie", ["answers_from_the_other_chain", "refuses_single_blocks"])
def test_a_fork_is_found_from_the_audited_hashes_whatever_a_source_answers_later(tmp_path: Path, lie: str) -> None:
    network = make_chain(tmp_path / "a", seed=5, blocks=3)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    append_transfers(tmp_path / "a", network, blocks=2, load_seed=21)
    append_transfers(tmp_path / "b", network, blocks=2, load_seed=22)
    a, b = tmp_path / "a" / "data", tmp_path / "b" / "data"
    other = b if lie == "answers_from_the_other_chain" else None
    report = audit_sources(Store.read_genesis(a), [("a", "data-dir", lambda: _LyingStore(a, other)),
                                                   ("b", "data-dir", open_store(b))], anchor="test", workers=0)
    assert [fork.height for fork in report.forks] == [5] and report.exit_code == 1, report.to_json()


def _tamper(directory: Path, statement: str, *parameters: object) -> None:
    db = sqlite3.connect(directory / STORE_FILE_NAME)
    with db:
        db.execute(statement, parameters)
    db.close()


@pytest.mark.parametrize(("statement", "parameters", "height", "code"), [
    # another validator key in the state: the store's head would check against it; the audit names the row
    ("UPDATE state SET value = ? WHERE key = ?", ("validators-of-someone-else", b"validators"), 0,
     "state_row_mismatch"),
    ("INSERT INTO txs (tx_id, height, idx, log_index, receipt) VALUES (?, 0, 0, 0, X'00')", (b"\x01" * 32,), 7,
     "wrong_tx_index"),
    ("INSERT INTO state_changes (height, key, value) VALUES (99, ?, X'00')", (b"account/ghost",), 7,
     "wrong_state_root"),
    ("UPDATE blocks SET certificate = 'text, not bytes' WHERE height = 3", (), 3, "store_corrupt"),
    ("UPDATE txs SET receipt = 'text' WHERE height = 4", (), 4, "store_corrupt"),
])
def test_damage_the_first_version_missed_is_found_and_located(tmp_path: Path, statement: str,
                                                              parameters: tuple[object, ...], height: int,
                                                              code: str, capsys) -> None:  # type: ignore[no-untyped-def]
    make_chain(tmp_path, blocks=6, txs_per_block=10)
    if parameters and parameters[0] == "validators-of-someone-else":
        other = create_demo_network(tmp_path / "other", seed=99).genesis.validator_set.encode()
        parameters = (other, *parameters[1:])
    _tamper(tmp_path / "data", statement, *parameters)
    assert main(["audit", "--data-dir", str(tmp_path / "data"), "--json", "--workers", "0"]) == 1
    source = json.loads(capsys.readouterr().out)["sources"][0]
    assert (source["height"], source["code"]) == (height, code), source


def test_a_state_file_altered_consistently_is_refused_not_blamed_on_the_node(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from audit.checkpoint import CheckpointFile  # noqa: PLC0415

    make_chain(tmp_path, blocks=3)
    state = tmp_path / "auditor.db"
    assert main(["audit", "--data-dir", str(tmp_path / "data"), "--state", str(state)]) == 0
    genesis = Store.read_genesis(tmp_path / "data")
    checkpoint_file = CheckpointFile(state, genesis)
    loaded = checkpoint_file.load()
    assert loaded is not None
    checkpoint, replayed = loaded
    key = account_key("merchant-001")
    account = Account.decode(replayed.values[key])
    replayed.apply({key: account.with_balance("CNY", account.get_balance("CNY") + 1).encode()}, 4)
    checkpoint_file.save(checkpoint.position, checkpoint.log_root, replayed)  # a root that fits the forged state
    checkpoint_file.close()
    capsys.readouterr()
    assert main(["audit", "--data-dir", str(tmp_path / "data"), "--state", str(state), "--json"]) == 2
    source = json.loads(capsys.readouterr().out)["sources"][0]
    assert (source["could_run"], source["code"]) == (False, "cannot_run") and "altered" in source["detail"], source
