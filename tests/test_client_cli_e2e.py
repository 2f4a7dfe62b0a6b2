"""The client and the CLI against a real node process (a one-validator devnet on loopback)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.genesis import Genesis
from node import devnet
from node.cli import main
from node.client import ApiError, Client, Submitted


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("devnet")
    devnet.up(directory, 1, progress=lambda _line: None)
    try:
        yield directory
    finally:
        devnet.down(directory)


def _ledger(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_client_pays_reads_back_and_verifies_proofs(net: Path) -> None:
    genesis = Genesis.load(net / "genesis.json")
    with Client.from_devnet(net, "bank-us") as issuer:
        issued = issuer.issue("fx-hk", 50_000, "USD", wait=True)
    assert issued.status == "committed" and issued.events[0].data == {"currency": "USD", "to": "fx-hk",
                                                                       "amount_minor": 50_000}
    with Client.from_devnet(net, "fx-hk") as client:
        before = client.get_account("fx-hk").balances.get("USD", 0)
        paid = client.transfer("bank-us", 1_234, "USD", wait=True)
        assert paid.status == "committed"
        info = client.get_account("fx-hk", proof=True)
        assert info.balances["USD"] == before - 1_234
        assert info.proof is not None
        account = info.proof.verify(genesis.chain_id, genesis.validator_set)
        assert account is not None and account.get_balance("USD") == info.balances["USD"]
        inclusion = client.get_tx_proof(paid.tx_id)
        assert inclusion.verify(genesis.chain_id, genesis.validator_set).height == paid.height

        # A failed call still consumes its nonce and says why.
        failed = client.transfer("bank-us", 10**15, "USD", wait=True)
        assert (failed.status, failed.code) == ("failed", "amount_exceeds_balance")

        # Resubmitting the same signed bytes is safe: same id, applied once.
        again = client.sign("accounts", "transfer", {"to": "bank-us", "amount_minor": 1, "currency": "USD"})
        first, second = client.submit(again), client.submit(again)
        assert first.tx_id == second.tx_id == again.tx_id
        assert client.wait_for(again.tx_id).status == "committed"
        assert client.submit(again) == Submitted(again.tx_id, "committed")
        assert client.get_account("fx-hk").balances["USD"] == before - 1_235

        with pytest.raises(ApiError) as caught:
            client.get_account("bank-us")
        assert (caught.value.code, caught.value.status) == ("forbidden", 403)


def test_client_fails_over_from_a_dead_node(net: Path) -> None:
    live = devnet.load_devnet(net)[0].api
    with Client(["http://127.0.0.1:9", live], retries=0) as client:
        assert client.status()["chain_id"]


def test_cli_transfer_and_query(net: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = ["--dir", str(net)]
    code, out, err = _ledger(capsys, "tx", "issue", *d, "--from", "bank-cn", "--to", "alipay-agg",
                             "--amount", "1,000 CNY", "--wait")
    assert code == 0, err
    assert "committed at height" in out and "amount 1,000.00 CNY" in out
    code, out, err = _ledger(capsys, "tx", "transfer", *d, "--from", "alipay-agg", "--to", "merchant-002",
                             "--amount", "12.34 CNY", "--wait", "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["status"] == "committed" and record["events"][0]["data"]["amount_minor"] == 1234

    code, out, err = _ledger(capsys, "query", "account", "merchant-002", *d, "--proof")
    assert code == 0, err
    assert "12.34 CNY" in out and "verified" in out
    code, out, err = _ledger(capsys, "query", "tx", record["tx_id"], *d, "--as", "merchant-002", "--proof")
    assert code == 0, err
    assert "committed" in out and "verified: leaf" in out
    code, out, err = _ledger(capsys, "query", "block", str(record["height"]), *d)
    assert code == 0 and record["tx_id"] in out

    # Mistakes a person makes: each is one clear line and a non-zero exit.
    code, out, err = _ledger(capsys, "tx", "transfer", *d, "--from", "alipay-agg", "--to", "merchant-002",
                             "--amount", "12.345 CNY")
    assert code == 2 and "3 decimal places" in err
    code, out, err = _ledger(capsys, "query", "account", "merchant-002", *d, "--as", "merchant-001")
    assert code == 1 and "forbidden" in err
    code, out, err = _ledger(capsys, "tx", "transfer", *d, "--from", "merchant-001", "--to", "merchant-002",
                             "--amount", "1 CNY", "--wait")
    assert code == 1 and "amount_exceeds_balance" in out
    code, out, err = _ledger(capsys, "tx", "call", *d, "--from", "alipay-agg", "accounts", "transfer",
                             "--args", '{"to": "merchant-002", "amount_minor": 1.5, "currency": "CNY"}')
    assert code == 2 and "not an integer" in err
    code, out, err = _ledger(capsys, "query", "account", "bank-cn", "--node", "http://127.0.0.1:9", *d)
    assert code == 2 and "Connect" in err


def test_audit_through_the_api_replays_compares_balances_and_resumes(net: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    with Client.from_devnet(net, "bank-us") as issuer:
        paid = issuer.issue("fx-hk", 7_000, "USD", wait=True)
    state = tmp_path / "auditor.db"
    assert main(["audit", "--dir", str(net), "--json", "--state", str(state)]) == 0
    report = json.loads(capsys.readouterr().out)
    source = report["sources"][0]
    assert (source["kind"], source["ok"], source["replayed"], source["from_height"]) == ("node", True, True, 1)
    assert source["head_height"] >= paid.height and source["transactions"] >= 1
    assert any("accounts read back from the node with proofs" in note for note in source["notes"])
    first_head = source["head_height"]

    with Client.from_devnet(net, "bank-us") as issuer:
        issuer.issue("fx-hk", 1, "USD", wait=True)
    assert main(["audit", "--dir", str(net), "--json", "--state", str(state)]) == 0
    resumed = json.loads(capsys.readouterr().out)["sources"][0]
    assert resumed["from_height"] == first_head + 1 and resumed["ok"], resumed
    assert any("consistent extension" in note for note in resumed["notes"])

    # a participant's check of one transaction: a proof, not the chain
    assert main(["audit", "--dir", str(net), "--tx", paid.tx_id.hex(), "--json"]) == 0
    outcome = json.loads(capsys.readouterr().out)
    assert (outcome["ok"], outcome["height"]) == (True, paid.height) and outcome["signers"] == ["validator-0"]
    assert main(["audit", "--dir", str(net), "--tx", "00" * 32]) == 1
    assert "not_found" in capsys.readouterr().out


def test_audit_through_the_api_needs_an_auditor_and_a_live_node(net: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = devnet.load_devnet(net)[0].api
    genesis = str(net / "genesis.json")
    code = main(["audit", "--node", url, "--genesis", genesis, "--key", str(net / "keys" / "bank-us.json"), "--json"])
    source = json.loads(capsys.readouterr().out)["sources"][0]
    assert (code, source["could_run"]) == (2, False) and "auditors and regulators" in source["detail"], source
    code = main(["audit", "--node", "http://127.0.0.1:9", "--genesis", genesis,
                 "--key", str(net / "keys" / "auditor.json")])
    assert code == 2
    assert "could not run" in capsys.readouterr().out
