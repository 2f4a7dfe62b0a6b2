"""A demo network on one machine: keys, a genesis, and a chain of real blocks.

Used by ``ledger demo`` (build a chain, verify it, prove a balance and a
transaction) and by tests and benchmarks that need a realistic store. The
validators' keys sign every block's commit certificate directly: there is
no consensus in this one-process chain builder, but every block is
certified, stored and verifiable exactly as a network's blocks are.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from contracts.block_builder import build_block
from ledger.block import sign_commit
from ledger.genesis import Currency, Genesis, Member, Param
from ledger.keyfile import load_key, save_key
from ledger.keys import PrivateKey
from ledger.store import Store
from ledger.transaction import SignedTransaction, Transaction
from ledger.validators import Validator, ValidatorSet

DEMO_CHAIN_ID = "demo-settlement"
DEMO_GENESIS_TIME_MS = 1_764_000_000_000
DEMO_MEMBERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("alipay-agg", ("participant",)),
    ("auditor", ("auditor",)),
    ("bank-cn", ("issuer:CNY", "participant")),
    ("bank-jp", ("issuer:JPY", "participant")),
    ("bank-us", ("issuer:USD", "participant")),
    ("fx-hk", ("fx_provider", "participant")),
    ("merchant-001", ("participant",)),
    ("merchant-002", ("participant",)),
    ("regulator", ("regulator",)),
    ("registrar", ("registrar",)),  # last, so the seeded keys of the others stay what they were
    # Payment channels: each one's fee account (contracts/merchant.py); appended, so earlier keys stay the same.
    ("wechat", ("participant",)),
    ("alipay", ("participant",)),
    ("unionpay", ("participant",)),
    ("ecny", ("participant",)),
    ("supplier-us", ("participant",)),  # a US supplier paid in USD through an FX quote (the cross-border demo)
)
DEMO_CURRENCIES = (Currency("CNY", 2), Currency("JPY", 0), Currency("USD", 2))
DEMO_MERCHANT_PARAMS = (
    # Channel fees in basis points (a channel exists where its fee is set; e-CNY charges none).
    Param("channel_fee_bps_alipay", 20),
    Param("channel_fee_bps_ecny", 0),
    Param("channel_fee_bps_unionpay", 25),
    Param("channel_fee_bps_wechat", 20),
    # The aggregator's commission by the merchant's monthly volume: 0.60 %, 0.45 % from 1,000,000.00 CNY,
    # 0.30 % from 10,000,000.00 CNY (and the like in JPY and USD).
    Param("merchant_tier0_bps", 60),
    Param("merchant_tier1_bps", 45),
    Param("merchant_tier1_minor_cny", 100_000_000),
    Param("merchant_tier1_minor_jpy", 20_000_000),
    Param("merchant_tier1_minor_usd", 15_000_000),
    Param("merchant_tier2_bps", 30),
    Param("merchant_tier2_minor_cny", 1_000_000_000),
    Param("merchant_tier2_minor_jpy", 200_000_000),
    Param("merchant_tier2_minor_usd", 150_000_000),
)


@dataclass
class DemoNetwork:
    genesis: Genesis
    validator_keys: dict[str, PrivateKey]
    member_keys: dict[str, PrivateKey]


def make_demo_network(validator_names: Sequence[str], seed: int | None = None, *, demo_members: bool = True,
                      chain_id: str = DEMO_CHAIN_ID, genesis_time_ms: int = DEMO_GENESIS_TIME_MS,
                      extra_params: Mapping[str, int] | None = None) -> DemoNetwork:
    """Keys and a genesis, in memory: the validators and, if asked, the demo members and their roles."""
    rng = random.Random(seed) if seed is not None else None
    new_key = (lambda: PrivateKey(rng.randbytes(32))) if rng else PrivateKey.generate  # type: ignore[union-attr]
    validator_keys = {name: new_key() for name in validator_names}
    member_keys = {name: new_key() for name, _roles in DEMO_MEMBERS} if demo_members else {}
    genesis = Genesis(
        chain_id=chain_id,
        genesis_time_ms=genesis_time_ms,
        validator_set=ValidatorSet(tuple(Validator(n, k.public_key, 1) for n, k in sorted(validator_keys.items()))),
        # Validators are members too (role "validator"), so they can report evidence on chain.
        members=tuple(sorted(
            [Member(n, member_keys[n].public_key, tuple(sorted(r))) for n, r in DEMO_MEMBERS if n in member_keys]
            + [Member(n, k.public_key, ("validator",)) for n, k in validator_keys.items()],
            key=lambda member: member.name)),
        currencies=DEMO_CURRENCIES,
        params=tuple(sorted((Param("aml_report_threshold_minor", 5_000_000), *DEMO_MERCHANT_PARAMS,
                             *(Param(name, value) for name, value in (extra_params or {}).items())),
                            key=lambda param: param.name)),
    )
    return DemoNetwork(genesis, validator_keys, member_keys)


def save_demo_network(network: DemoNetwork, directory: Path) -> None:
    """Write every key (keys/<name>.json, 0600), then genesis.json: a directory with a genesis is complete."""
    for name, key in {**network.validator_keys, **network.member_keys}.items():
        save_key(directory / "keys" / f"{name}.json", name, key)
    network.genesis.save(directory / "genesis.json")


def create_demo_network(directory: Path, validators: int = 4, seed: int | None = None) -> DemoNetwork:
    """Write keys and a genesis into ``directory`` (keys/, genesis.json)."""
    network = make_demo_network([f"validator-{i}" for i in range(validators)], seed)
    directory.mkdir(parents=True, exist_ok=True)
    save_demo_network(network, directory)
    return network


def load_demo_network(directory: Path) -> DemoNetwork:
    genesis = Genesis.load(directory / "genesis.json")
    keys = dict(load_key(path) for path in sorted((directory / "keys").glob("*.json")))
    validator_names = {v.name for v in genesis.validator_set.validators}
    return DemoNetwork(
        genesis,
        {n: k for n, k in keys.items() if n in validator_names},
        {n: k for n, k in keys.items() if n not in validator_names},
    )


class DemoLoad:
    """Deterministic, valid demo transactions: issuance first, then transfers."""

    def __init__(self, network: DemoNetwork, seed: int = 7) -> None:
        self.network = network
        self.rng = random.Random(seed)
        self.nonces = {name: 0 for name in network.member_keys}

    def _sign(self, sender: str, contract: str, method: str, args: dict[str, object]) -> SignedTransaction:
        tx = Transaction(sender, self.nonces[sender], contract, method, args, 0)
        self.nonces[sender] += 1
        return tx.sign(self.network.member_keys[sender], self.network.genesis.chain_id)

    def issuance(self) -> list[SignedTransaction]:
        return [
            self._sign("bank-cn", "accounts", "issue", {"currency": "CNY", "to": "alipay-agg", "amount_minor": 10**12}),
            self._sign("bank-us", "accounts", "issue", {"currency": "USD", "to": "fx-hk", "amount_minor": 10**11}),
            self._sign("bank-jp", "accounts", "issue", {"currency": "JPY", "to": "bank-jp", "amount_minor": 10**10}),
        ]

    def transfers(self, count: int) -> Iterator[SignedTransaction]:
        payees = ["merchant-001", "merchant-002", "bank-cn"]
        for _ in range(count):
            payee = self.rng.choice(payees)
            amount = self.rng.randint(1, 1_000_000)
            yield self._sign("alipay-agg", "accounts", "transfer",
                             {"currency": "CNY", "to": payee, "amount_minor": amount})


def append_certified_block(store: Store, network: DemoNetwork, transactions: list[SignedTransaction],
                           timestamp_ms: int) -> None:
    """Execute, certify with every validator's key, and store one block."""
    proposer = store.get_validator_set_at(store.head_height + 1).get_proposer(store.head_height + 1, 0).name
    executed = build_block(store, transactions, proposer, timestamp_ms)
    certificate = sign_commit(store.chain_id, executed.block.header, 0, list(network.validator_keys.items()))
    store.append_block(executed.block, certificate, executed.changes, executed.encoded_receipts)


def build_demo_chain(store: Store, network: DemoNetwork, blocks: int, txs_per_block: int,
                     progress: object = None) -> None:
    load = DemoLoad(network)
    timestamp_ms = network.genesis.genesis_time_ms
    append_certified_block(store, network, load.issuance(), timestamp_ms)
    transfers = load.transfers(blocks * txs_per_block)
    for number in range(blocks):
        timestamp_ms += 1000
        append_certified_block(store, network, [next(transfers) for _ in range(txs_per_block)], timestamp_ms)
        if callable(progress):
            progress(number + 1, blocks)
