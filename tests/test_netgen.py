"""``ledger genesis``: a genesis and one node home per validator, generated once for many machines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.genesis import Genesis
from ledger.keyfile import load_key
from node.config import load_config, load_genesis, load_node_key
from node.devchain import DEMO_MEMBERS
from node.netgen import NetgenError, ValidatorAddress, create_network, parse_validator

VALIDATORS = [("validator-0", "node0.example.com:26650", "8000"),
              ("validator-1", "node1.example.com:26650", "8000"),
              ("validator-2", "10.0.0.3:26660", "8010")]


def ledger(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node.cli", *args], capture_output=True, text=True, timeout=60,
                          check=False)


def genesis_args(out: Path, *extra: str) -> list[str]:
    return ["genesis", "--out", str(out), *extra, *[arg for triple in VALIDATORS for arg in ("--validator", *triple)]]


def test_genesis_writes_one_home_per_validator(tmp_path: Path) -> None:
    out = tmp_path / "net"
    result = ledger(*genesis_args(out, "--bind", "0.0.0.0", "--demo-members", "--chain-id", "pay-net"))
    assert result.returncode == 0, result.stderr
    assert "3 node homes" in result.stdout

    genesis_bytes = (out / "genesis.json").read_bytes()
    genesis = Genesis.load(out / "genesis.json")
    assert genesis.chain_id == "pay-net"
    assert [v.name for v in genesis.validator_set.validators] == ["validator-0", "validator-1", "validator-2"]
    assert {m.name for m in genesis.members} == {n for n, _ in DEMO_MEMBERS} | {n for n, _, _ in VALIDATORS}
    for name, address, api_port in VALIDATORS:
        home = out / name
        assert (home / "genesis.json").read_bytes() == genesis_bytes, "the same genesis bytes in every home"
        assert (home / "key.json").stat().st_mode & 0o777 == 0o600
        assert load_node_key(home).public_key == genesis.validator_set.get(name).public_key  # type: ignore[union-attr]
        assert load_genesis(home) == genesis
        config = load_config(home)
        assert (config.name, config.listen_host, config.api_host) == (name, "0.0.0.0", "0.0.0.0")
        assert (config.listen_port, config.api_port) == (int(address.rsplit(":")[1]), int(api_port))
        peers = {p.name: (f"{p.host}:{p.port}", p.public_key) for p in config.peers}
        assert peers == {n: (a, genesis.validator_set.get(n).public_key)  # type: ignore[union-attr]
                         for n, a, _ in VALIDATORS if n != name}, "peers are dialled by the names given"
    for key_file in (out / "keys").iterdir():
        assert key_file.stat().st_mode & 0o777 == 0o600
        name, key = load_key(key_file)
        assert genesis.get_member(name).public_key == key.public_key  # type: ignore[union-attr]


def test_genesis_binds_each_validators_own_host_by_default(tmp_path: Path) -> None:
    create_network(tmp_path / "net", [parse_validator(*triple) for triple in VALIDATORS])
    config = load_config(tmp_path / "net" / "validator-2")
    assert (config.listen_host, config.listen_port, config.api_host, config.api_port) == ("10.0.0.3", 26660,
                                                                                          "10.0.0.3", 8010)
    assert not (tmp_path / "net" / "keys" / "bank-cn.json").exists(), "demo members only when asked"


def test_genesis_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    out = tmp_path / "net"
    assert ledger(*genesis_args(out)).returncode == 0
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    again = ledger(*genesis_args(out))
    assert again.returncode == 2 and "output_exists" in again.stderr and "not empty" in again.stderr
    assert "Traceback" not in again.stderr
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before, "nothing overwritten"

    (tmp_path / "empty").mkdir()  # an empty directory (a fresh volume) is fine
    assert ledger(*genesis_args(tmp_path / "empty")).returncode == 0


@pytest.mark.parametrize(("validators", "why"), [
    ([], "at least one"),
    ([ValidatorAddress("v-0", "a", 1, 2), ValidatorAddress("v-0", "b", 1, 2)], "distinct"),
    ([ValidatorAddress("v-0", "a", 1, 2), ValidatorAddress("v-1", "a", 2, 3)], "share a host and port"),
    ([ValidatorAddress("v-0", "a", 1, 1)], "share a host and port"),
    ([ValidatorAddress("v-0", "a", 0, 2)], "between 1 and 65535"),
    ([ValidatorAddress("Bad Name", "a", 1, 2)], "cannot name a validator"),
    ([ValidatorAddress("keys", "a", 1, 2)], "cannot name a validator"),
    ([ValidatorAddress("bank-cn", "a", 1, 2)], "demo member"),
])
def test_genesis_rejects_a_bad_network_before_writing(tmp_path: Path, validators: list[ValidatorAddress],
                                                      why: str) -> None:
    with pytest.raises(NetgenError, match=why) as caught:
        create_network(tmp_path / "net", validators, demo_members=True)
    assert caught.value.code == "invalid_config"
    assert not (tmp_path / "net").exists()


def test_genesis_command_line_errors_are_one_line(tmp_path: Path) -> None:
    result = ledger("genesis", "--out", str(tmp_path / "net"), "--validator", "v-0", "no-port", "8000")
    assert result.returncode == 2 and "HOST:PEER_PORT" in result.stderr and "Traceback" not in result.stderr
    result = ledger("genesis", "--out", str(tmp_path / "net"))
    assert result.returncode == 2 and "--validator" in result.stderr
    assert not (tmp_path / "net").exists()


def test_node_json_is_what_config_reads(tmp_path: Path) -> None:
    create_network(tmp_path / "net", [ValidatorAddress("v-0", "h0", 1, 2), ValidatorAddress("v-1", "h1", 1, 2)],
                   bind_host="0.0.0.0")
    data = json.loads((tmp_path / "net" / "v-1" / "node.json").read_text())
    assert data["listen"] == "0.0.0.0:1" and data["api"] == "0.0.0.0:2"
    assert [p["address"] for p in data["peers"]] == ["h0:1"]
