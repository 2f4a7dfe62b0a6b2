"""compliance: KYC, freezes, limits and AML reports apply to every payment leg."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.compliance import DAY_MS, KYC_REVOKED, get_status
from node.devchain import make_demo_network
from tests.contract_harness import ContractChain

NETWORK = make_demo_network(["validator-0"], seed=4)


def _chain(**params: int) -> ContractChain:
    chain = ContractChain(NETWORK, params=params or None)
    assert chain.call("bank-cn", "accounts", "issue", currency="CNY", to="alipay-agg", amount_minor=10**9).is_ok
    return chain


def _pay(chain: ContractChain, amount: int, payer: str = "alipay-agg", payee: str = "merchant-001") -> str:
    receipt = chain.call(payer, "accounts", "transfer", currency="CNY", to=payee, amount_minor=amount)
    return "ok" if receipt.is_ok else receipt.code


def test_a_frozen_member_can_neither_send_nor_receive_until_unfrozen() -> None:
    chain = _chain()
    assert _pay(chain, 500) == "ok"
    assert chain.call("regulator", "compliance", "freeze", member="merchant-001").is_ok
    assert _pay(chain, 100) == "account_frozen"  # cannot receive
    assert _pay(chain, 100, payer="merchant-001", payee="merchant-002") == "account_frozen"  # cannot send
    assert chain.call("bank-cn", "accounts", "issue", currency="CNY", to="merchant-001", amount_minor=1).code \
        == "account_frozen"
    assert chain.call("regulator", "compliance", "unfreeze", member="merchant-001").is_ok
    assert _pay(chain, 100, payer="merchant-001", payee="merchant-002") == "ok"
    chain.check_invariants()


def test_only_a_regulator_freezes_and_only_a_registrar_sets_kyc() -> None:
    chain = _chain()
    assert chain.call("alipay-agg", "compliance", "freeze", member="merchant-001").code == "not_authorized"
    assert chain.call("regulator", "compliance", "set_kyc", member="merchant-001", verified=False).code \
        == "not_authorized"
    assert chain.call("registrar", "compliance", "set_kyc", member="nobody", verified=True).code == "unknown_account"
    assert chain.call("registrar", "compliance", "set_kyc", member="merchant-001", verified=1).code \
        == "invalid_argument"


def test_without_verified_kyc_no_payment_either_way() -> None:
    chain = _chain()
    assert chain.call("registrar", "compliance", "set_kyc", member="merchant-002", verified=False).is_ok
    assert get_status(chain.view, "merchant-002").kyc == KYC_REVOKED
    assert _pay(chain, 10, payee="merchant-002") == "kyc_required"
    assert chain.call("registrar", "compliance", "set_kyc", member="merchant-002", verified=True).is_ok
    assert _pay(chain, 10, payee="merchant-002") == "ok"


def test_per_payment_and_daily_limits_reset_each_day() -> None:
    chain = _chain(tx_limit_minor_cny=1_000, daily_limit_minor_cny=2_500)
    assert _pay(chain, 1_001) == "tx_limit_exceeded"
    assert [_pay(chain, 1_000), _pay(chain, 1_000), _pay(chain, 600), _pay(chain, 500)] == \
        ["ok", "ok", "daily_limit_exceeded", "ok"]
    chain.next_block(ms=DAY_MS)  # the next day (block time): the budget is back
    assert [_pay(chain, 1_000), _pay(chain, 1_000), _pay(chain, 500), _pay(chain, 1)] == \
        ["ok", "ok", "ok", "daily_limit_exceeded"]
    # other members have budgets of their own
    assert _pay(chain, 100, payer="merchant-001", payee="merchant-002") == "ok"


def test_large_payments_are_made_and_reported() -> None:
    chain = _chain(aml_threshold_minor_cny=50_000)
    receipt = chain.call("alipay-agg", "accounts", "transfer", currency="CNY", to="merchant-001", amount_minor=50_000)
    assert receipt.is_ok
    assert [e.name for e in receipt.events] == ["aml_report", "transferred"]
    assert receipt.events[0].data == {"member": "alipay-agg", "currency": "CNY", "amount_minor": 50_000}
    small = chain.call("alipay-agg", "accounts", "transfer", currency="CNY", to="merchant-001", amount_minor=49_999)
    assert [e.name for e in small.events] == ["transferred"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["pay", "freeze", "unfreeze", "revoke", "verify", "day"]),
                          st.sampled_from(["alipay-agg", "merchant-001", "merchant-002"]),
                          st.integers(1, 3_000)), max_size=30))
def test_refused_payments_change_nothing_and_supply_is_conserved(steps: list[tuple[str, str, int]]) -> None:
    chain = _chain(tx_limit_minor_cny=2_000, daily_limit_minor_cny=5_000)
    for action, member, amount in steps:
        if action == "day":
            chain.next_block(ms=DAY_MS)
            continue
        if action != "pay":
            method, args = {"freeze": ("freeze", {}), "unfreeze": ("unfreeze", {}),
                            "revoke": ("set_kyc", {"verified": False}),
                            "verify": ("set_kyc", {"verified": True})}[action]
            signer = "registrar" if method == "set_kyc" else "regulator"
            assert chain.call(signer, "compliance", method, member=member, **args).is_ok
            continue
        payee = "merchant-002" if member != "merchant-002" else "merchant-001"
        before = chain.snapshot()
        outcome = _pay(chain, amount, payer=member, payee=payee)
        if outcome != "ok":
            assert chain.snapshot() == before, outcome
            assert outcome in {"account_frozen", "kyc_required", "tx_limit_exceeded", "daily_limit_exceeded",
                               "amount_exceeds_balance"}
        chain.check_invariants()


@pytest.mark.parametrize("method", ["freeze", "unfreeze"])
def test_freeze_needs_a_member(method: str) -> None:
    chain = _chain()
    assert chain.call("regulator", "compliance", method, member="Bad Name").code == "unknown_account"
