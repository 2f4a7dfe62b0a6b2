"""The minimal accounts contract and the runtime's atomicity, nonce and receipt rules."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.runtime import BlockContext, Receipt, execute_transaction
from ledger.errors import InvalidBlock
from ledger.state import StateView, compute_genesis_state
from ledger.transaction import SignedTransaction, Transaction
from node.devchain import DemoNetwork, create_demo_network



class _DictState:
    def __init__(self, data: dict[bytes, bytes]) -> None:
        self.data = data

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)


def _fresh_view(network: DemoNetwork) -> StateView:
    return StateView(_DictState(compute_genesis_state(network.genesis)))


class Caller:
    """Signs transactions with the right nonces for a test."""

    def __init__(self, network: DemoNetwork) -> None:
        self.network = network
        self.nonces: dict[str, int] = {}

    def sign(self, sender: str, method: str, **args: Any) -> SignedTransaction:
        nonce = self.nonces.get(sender, 0)
        self.nonces[sender] = nonce + 1
        tx = Transaction(sender, nonce, "accounts", method, args, 0)
        return tx.sign(self.network.member_keys[sender], self.network.genesis.chain_id)


def _run(view: StateView, network: DemoNetwork, signed: SignedTransaction, height: int = 1) -> Receipt:
    return execute_transaction(view, signed, BlockContext(network.genesis.chain_id, height, 0))


def test_issue_then_transfer(network: DemoNetwork) -> None:
    view, caller = _fresh_view(network), Caller(network)
    receipt = _run(view, network, caller.sign("bank-cn", "issue", currency="CNY", to="alipay-agg", amount_minor=500))
    assert receipt.is_ok and receipt.events[0].name == "issued"
    receipt = _run(view, network, caller.sign("alipay-agg", "transfer", currency="CNY", to="merchant-001", amount_minor=120))
    assert receipt.is_ok
    assert view.get_account("alipay-agg").get_balance("CNY") == 380
    assert view.get_account("merchant-001").get_balance("CNY") == 120
    assert view.get_currency("CNY").issued_minor == 500  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("sender", "method", "args", "code"),
    [
        ("bank-us", "issue", {"currency": "CNY", "to": "alipay-agg", "amount_minor": 1}, "not_issuer"),
        ("bank-cn", "issue", {"currency": "XXX", "to": "alipay-agg", "amount_minor": 1}, "unknown_currency"),
        ("bank-cn", "issue", {"currency": "CNY", "to": "nobody", "amount_minor": 1}, "unknown_account"),
        ("bank-cn", "issue", {"currency": "CNY", "to": "alipay-agg", "amount_minor": 0}, "invalid_amount"),
        ("bank-cn", "issue", {"currency": "CNY", "to": "alipay-agg", "amount_minor": -5}, "invalid_amount"),
        ("bank-cn", "issue", {"currency": "CNY", "to": "alipay-agg", "amount_minor": "5"}, "invalid_amount"),
        ("bank-cn", "issue", {"currency": "CNY", "to": "alipay-agg", "amount_minor": 2**63}, "amount_too_large"),
        ("alipay-agg", "transfer", {"currency": "CNY", "to": "alipay-agg", "amount_minor": 1}, "payer_equals_payee"),
        ("alipay-agg", "transfer", {"currency": "CNY", "to": "bank-cn", "amount_minor": 1}, "amount_exceeds_balance"),
        ("alipay-agg", "redeem", {"currency": "CNY", "amount_minor": 1}, "amount_exceeds_balance"),
        ("alipay-agg", "nosuch", {}, "unknown_method"),
    ],
)
def test_invalid_calls_fail_with_their_code_and_change_only_the_nonce(
    network: DemoNetwork, sender: str, method: str, args: dict[str, Any], code: str
) -> None:
    view, caller = _fresh_view(network), Caller(network)
    before = {key: view.get(key) for key in compute_genesis_state(network.genesis)}
    receipt = _run(view, network, caller.sign(sender, method, **args))
    assert not receipt.is_ok and receipt.code == code
    changed = {key for key, value in view.changes().items() if before.get(key) != value}
    assert changed == {b"account/" + sender.encode()}
    assert view.get_account(sender).nonce == 1


def test_admission_failures_invalidate_the_block(network: DemoNetwork) -> None:
    view, caller = _fresh_view(network), Caller(network)
    signed = caller.sign("alipay-agg", "transfer", currency="CNY", to="bank-cn", amount_minor=1)
    _run(view, network, signed)
    with pytest.raises(InvalidBlock) as replayed:
        _run(view, network, signed)  # the same nonce again
    assert replayed.value.code == "bad_nonce"
    forged = SignedTransaction(caller.sign("alipay-agg", "redeem", currency="CNY", amount_minor=1).body, b"\x00" * 64)
    with pytest.raises(InvalidBlock) as bad_signature:
        _run(view, network, forged)
    assert bad_signature.value.code == "invalid_signature"
    stranger = Transaction("stranger", 0, "accounts", "redeem", {}, 0).sign(
        network.member_keys["bank-cn"], network.genesis.chain_id)
    with pytest.raises(InvalidBlock) as unknown:
        _run(view, network, stranger)
    assert unknown.value.code == "unknown_sender"
    late = Transaction("alipay-agg", 1, "accounts", "redeem", {"currency": "CNY", "amount_minor": 1}, 3).sign(
        network.member_keys["alipay-agg"], network.genesis.chain_id)
    with pytest.raises(InvalidBlock) as expired:
        _run(view, network, late, height=4)
    assert expired.value.code == "expired"


MEMBERS = ["alipay-agg", "bank-cn", "bank-us", "fx-hk", "merchant-001"]
operation = st.one_of(
    st.tuples(st.just("issue"), st.sampled_from(["bank-cn", "bank-us", "fx-hk"]), st.sampled_from(MEMBERS),
              st.sampled_from(["CNY", "USD"]), st.integers(-5, 10**6)),
    st.tuples(st.just("transfer"), st.sampled_from(MEMBERS), st.sampled_from(MEMBERS),
              st.sampled_from(["CNY", "USD", "JPY"]), st.integers(-5, 10**6)),
    st.tuples(st.just("redeem"), st.sampled_from(MEMBERS), st.just(""),
              st.sampled_from(["CNY", "USD"]), st.integers(-5, 10**6)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=st.lists(operation, max_size=40))
def test_supply_is_conserved_and_balances_never_negative(network: DemoNetwork, operations: list[tuple]) -> None:
    view, caller = _fresh_view(network), Caller(network)
    for method, sender, payee, currency, amount in operations:
        args: dict[str, Any] = {"currency": currency, "amount_minor": amount}
        if method != "redeem":
            args["to"] = payee
        before = dict(view.changes())
        receipt = _run(view, network, caller.sign(sender, method, **args))
        if not receipt.is_ok:  # a failed call changes nothing but the sender's nonce
            changed = {k for k, v in view.changes().items() if k not in before or before[k] != v}
            assert changed <= {b"account/" + sender.encode()}
        for code in ("CNY", "USD", "JPY"):
            supply = view.get_currency(code)
            assert supply is not None
            total = sum(view.get_account(name).get_balance(code) for name in network.member_keys)
            assert total == supply.issued_minor - supply.redeemed_minor
            assert all(view.get_account(name).get_balance(code) >= 0 for name in network.member_keys)


def test_a_precomputed_verdict_counts_only_for_the_key_in_force(network: DemoNetwork) -> None:
    view, caller = _fresh_view(network), Caller(network)
    forged = SignedTransaction(caller.sign("alipay-agg", "redeem", currency="CNY", amount_minor=1).body, b"\x00" * 64)
    stale_key = network.member_keys["bank-cn"].public_key  # a verdict made under some other key
    with pytest.raises(InvalidBlock) as error:
        execute_transaction(view, forged, BlockContext(network.genesis.chain_id, 1, 0), (True, stale_key))
    assert error.value.code == "invalid_signature"
    member_key = network.member_keys["alipay-agg"].public_key
    receipt = execute_transaction(view, forged, BlockContext(network.genesis.chain_id, 1, 0), (True, member_key))
    assert receipt.code == "amount_exceeds_balance"  # the verdict was trusted: it was made under this key
