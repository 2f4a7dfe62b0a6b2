"""A node's home directory: its config, key, genesis and data.

    HOME/node.json      name, peer listen address, API address, peers
    HOME/key.json       the validator's Ed25519 key (0600)
    HOME/genesis.json   the chain's genesis (same bytes on every node)
    HOME/data/          ledger.sqlite (the store) and consensus.wal (or ``node run --data-dir DIR``)

A config that cannot be read gives one clear ``ConfigError`` naming the
file and the field, never a stack trace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.errors import LedgerError
from ledger.files import write_file_atomically
from ledger.genesis import Genesis
from ledger.keyfile import load_key
from ledger.keys import PrivateKey

CONFIG_FILE = "node.json"
KEY_FILE = "key.json"
GENESIS_FILE = "genesis.json"
DATA_DIR = "data"
WAL_FILE = "consensus.wal"


class ConfigError(LedgerError):
    """A node's home directory or config file is missing or malformed."""


@dataclass(frozen=True, slots=True)
class PeerConfig:
    name: str
    host: str
    port: int
    public_key: bytes


@dataclass(frozen=True, slots=True)
class NodeConfig:
    home: Path
    name: str
    listen_host: str
    listen_port: int
    api_host: str
    api_port: int
    peers: tuple[PeerConfig, ...]
    data_dir_override: Path | None = None
    """``ledger node run --data-dir``: data elsewhere than HOME/data (a container's own volume)."""

    @property
    def data_dir(self) -> Path:
        return self.data_dir_override or self.home / DATA_DIR

    @property
    def wal_path(self) -> Path:
        return self.data_dir / WAL_FILE

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "listen": f"{self.listen_host}:{self.listen_port}",
            "api": f"{self.api_host}:{self.api_port}",
            "peers": [{"name": p.name, "address": f"{p.host}:{p.port}", "public_key": p.public_key.hex()}
                      for p in self.peers],
        }

    def save(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        write_file_atomically(self.home / CONFIG_FILE, (json.dumps(self.to_json(), indent=2) + "\n").encode(), 0o644)


def _split_address(text: Any, field: str, path: Path) -> tuple[str, int]:
    if not isinstance(text, str) or ":" not in text:
        raise ConfigError("invalid_config", f"{path}: {field} must be 'host:port', got {text!r}")
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise ConfigError("invalid_config", f"{path}: {field} has a bad host or port: {text!r}")
    return host, int(port)


def load_config(home: Path) -> NodeConfig:
    path = home / CONFIG_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError("invalid_config", f"no {CONFIG_FILE} in {home}: is --home a node's directory?") from None
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError("invalid_config", f"cannot read {path}: {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise ConfigError("invalid_config", f"{path}: 'name' is missing")
    listen = _split_address(data.get("listen"), "listen", path)
    api = _split_address(data.get("api"), "api", path)
    peers = []
    for index, peer in enumerate(data.get("peers", [])):
        try:
            host, port = _split_address(peer["address"], f"peers[{index}].address", path)
            peers.append(PeerConfig(str(peer["name"]), host, port, bytes.fromhex(peer["public_key"])))
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError("invalid_config", f"{path}: peers[{index}] is malformed: {error}") from error
    return NodeConfig(home, data["name"], listen[0], listen[1], api[0], api[1], tuple(peers))


def load_node_key(home: Path) -> PrivateKey:
    name, key = load_key(home / KEY_FILE)
    return key


def load_genesis(home: Path) -> Genesis:
    return Genesis.load(home / GENESIS_FILE)
