"""Run contract calls on an in-memory state, for unit and property tests of contracts.

    chain = ContractChain(make_demo_network(["validator-0"], seed=1))
    receipt = chain.call("bank-cn", "accounts", "issue", currency="CNY", to="alipay-agg", amount_minor=500)
    chain.check_invariants()     # no negative balance; per currency, balances sum to issued - redeemed

Each ``call`` signs a transaction with the sender's demo key and the next
nonce, executes it at the current height through the real runtime, and
applies its writes to a plain dict (what a block commit would write).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from contracts.runtime import BlockContext, Receipt, execute_transaction, run_block_steps
from ledger.genesis import Genesis, Param
from ledger.state import Account, CurrencySupply, StateView, compute_genesis_state
from ledger.transaction import Transaction
from node.devchain import DemoNetwork

DAY_MS = 86_400_000


class _DictState:
    def __init__(self, data: dict[bytes, bytes]) -> None:
        self.data = data

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)


class ContractChain:
    def __init__(self, network: DemoNetwork, params: dict[str, int] | None = None) -> None:
        genesis = network.genesis
        if params:
            merged = {p.name: p.value for p in genesis.params} | params
            genesis = Genesis(genesis.chain_id, genesis.genesis_time_ms, genesis.validator_set, genesis.members,
                              genesis.currencies, tuple(Param(k, v) for k, v in sorted(merged.items())))
        self.network = network
        self.genesis = genesis
        self.data: dict[bytes, bytes] = compute_genesis_state(genesis)
        self.nonces: dict[str, int] = defaultdict(int)
        self.height = 1
        self.timestamp_ms = genesis.genesis_time_ms

    @property
    def view(self) -> StateView:
        """A read view of the current state (writes to it are not kept)."""
        return StateView(_DictState(self.data))

    def call(self, sender: str, contract: str, method: str, **args: Any) -> Receipt:
        key = {**self.network.member_keys, **self.network.validator_keys}[sender]
        tx = Transaction(sender, self.nonces[sender], contract, method, args, 0)
        self.nonces[sender] += 1
        view = StateView(_DictState(self.data))
        receipt = execute_transaction(view, tx.sign(key, self.genesis.chain_id),
                                      BlockContext(self.genesis.chain_id, self.height, self.timestamp_ms))
        self._apply(view)
        return receipt

    def next_block(self, blocks: int = 1, ms: int = 1_000) -> None:
        """Move to a later block; each new block first runs the runtime's block steps (as execute_block does)."""
        for _ in range(blocks):
            self.height += 1
            self.timestamp_ms += ms
            view = StateView(_DictState(self.data))
            run_block_steps(view, BlockContext(self.genesis.chain_id, self.height, self.timestamp_ms))
            self._apply(view)

    def _apply(self, view: StateView) -> None:
        for state_key, value in view.changes().items():
            if value is None:
                self.data.pop(state_key, None)
            else:
                self.data[state_key] = value

    def balance(self, name: str, currency: str) -> int:
        return self.view.get_account(name).get_balance(currency)

    def balances(self, currency: str) -> dict[str, int]:
        """Every account's (holding accounts' too) non-zero balance in ``currency``."""
        result = {}
        for key, value in self.data.items():
            if key.startswith(b"account/"):
                amount = Account.decode(value).get_balance(currency)
                if amount:
                    result[key[len(b"account/"):].decode()] = amount
        return result

    def check_invariants(self) -> None:
        """Supply is conserved per currency and no balance is negative (the ledger's invariants)."""
        for key, value in self.data.items():
            if key.startswith(b"currency/"):
                supply = CurrencySupply.decode(value)
                balances = self.balances(supply.code)
                assert all(amount > 0 for amount in balances.values())
                assert sum(balances.values()) == supply.issued_minor - supply.redeemed_minor, supply.code

    def snapshot(self) -> dict[bytes, bytes]:
        """The state apart from nonces (to show that a failed call changed nothing else)."""
        return {k: v for k, v in self.data.items() if not k.startswith(b"account/")} | {
            k: Account(0, Account.decode(v).balances).encode() for k, v in self.data.items() if k.startswith(b"account/")}
