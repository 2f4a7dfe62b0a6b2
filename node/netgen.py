"""Keys, a genesis and one node home per validator: ``ledger genesis``.

Why a module of its own: a network spread over machines (or containers)
is generated once, in one place, and then shipped: every node must carry
the same genesis bytes and know every peer's address and public key before
any of them starts. ``ledger net up`` needs the same thing for processes on
loopback, so ``node/devnet.py`` calls this too; only the addresses differ.

    DIR/<validator>/        one node home per validator (copy it to that validator's machine):
        node.json           listen and API addresses (on the bind host), peers by their host names
        key.json            the validator's key (0600)
        genesis.json        the chain (the same bytes in every home)
    DIR/keys/<name>.json    every key made: validators' and, with demo members, members' (0600)
    DIR/genesis.json        written last: a DIR that has it is complete

A node binds its own address unless a bind host is given (``0.0.0.0`` in a
container, whose own host name other containers resolve but it may not
bind); peers always dial each other by the names given here.
Nothing is overwritten: DIR must not exist or be empty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ledger.errors import LedgerError
from ledger.keyfile import save_key
from ledger.names import is_member_name
from node import devchain
from node.config import GENESIS_FILE, KEY_FILE, NodeConfig, PeerConfig

KEYS_DIR = "keys"


class NetgenError(LedgerError):
    """``ledger genesis`` was given a network it cannot write (the message says what to change)."""


@dataclass(frozen=True, slots=True)
class ValidatorAddress:
    name: str
    host: str
    """The name (or IP) its peers dial; in docker compose, its service name."""
    peer_port: int
    api_port: int


def parse_validator(name: str, address: str, api_port: str) -> ValidatorAddress:
    """``NAME HOST:PORT API_PORT`` as typed on the command line."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not api_port.isdigit():
        raise NetgenError("invalid_config", f"--validator {name} {address} {api_port}: "
                          "expected NAME HOST:PEER_PORT API_PORT, e.g. validator-0 node0.example.com:26650 8000")
    return ValidatorAddress(name, host, int(port), int(api_port))


def check_validators(validators: Sequence[ValidatorAddress], demo_members: bool) -> None:
    if not validators:
        raise NetgenError("invalid_config", "give at least one --validator")
    names = [v.name for v in validators]
    for validator in validators:
        if not is_member_name(validator.name) or validator.name == KEYS_DIR:
            raise NetgenError("invalid_config", f"{validator.name!r} cannot name a validator (a member name, not "
                              f"{KEYS_DIR!r})")
        for port in (validator.peer_port, validator.api_port):
            if not 1 <= port <= 65535:
                raise NetgenError("invalid_config", f"{validator.name}: port {port} is not between 1 and 65535")
    if len(set(names)) != len(names):
        raise NetgenError("invalid_config", "validator names must be distinct")
    if demo_members and (taken := sorted(set(names) & {name for name, _roles in devchain.DEMO_MEMBERS})):
        raise NetgenError("invalid_config", f"{', '.join(taken)}: already a demo member's name")
    listeners = [(v.host, port) for v in validators for port in (v.peer_port, v.api_port)]
    if len(set(listeners)) != len(listeners):
        raise NetgenError("invalid_config", "two listeners share a host and port: on one host, give every "
                          "validator its own peer and API ports")


def create_network(directory: Path, validators: Sequence[ValidatorAddress], *, bind_host: str | None = None,
                   demo_members: bool = False, chain_id: str | None = None,
                   genesis_time_ms: int = devchain.DEMO_GENESIS_TIME_MS,
                   extra_params: Mapping[str, int] | None = None) -> devchain.DemoNetwork:
    """Write the layout in the module docstring; refuses a DIR that holds anything."""
    check_validators(validators, demo_members)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise NetgenError("output_exists", f"{directory} already exists and is not empty; nothing was written "
                          "(remove it or choose another directory)")
    network = devchain.make_demo_network([v.name for v in validators], demo_members=demo_members,
                                         chain_id=chain_id or devchain.DEMO_CHAIN_ID,
                                         genesis_time_ms=genesis_time_ms, extra_params=extra_params)
    for validator in validators:
        home = directory / validator.name
        peers = tuple(PeerConfig(p.name, p.host, p.peer_port, network.validator_keys[p.name].public_key)
                      for p in validators if p.name != validator.name)
        bind = bind_host or validator.host
        NodeConfig(home, validator.name, bind, validator.peer_port, bind, validator.api_port, peers).save()
        save_key(home / KEY_FILE, validator.name, network.validator_keys[validator.name])
        network.genesis.save(home / GENESIS_FILE)
    devchain.save_demo_network(network, directory)  # genesis.json last
    return network
