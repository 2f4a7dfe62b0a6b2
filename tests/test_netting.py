"""netting: cycles of obligations settled by net position; each rule, each code, and netting == gross."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import netting
from contracts.netting import (
    NETTING_ACCOUNT,
    PARTICIPANTS_PER_CYCLE_MAX,
    CycleStatus,
    NettingCycle,
    Position,
    get_cycle,
    get_position,
    get_status,
)
from contracts.runtime import ContractError, precheck_call
from ledger.genesis import Member
from ledger.keys import PrivateKey
from ledger.state import BALANCE_MAX
from ledger.transaction import Transaction
from node.devchain import DemoNetwork, make_demo_network
from tests.contract_harness import ContractChain

NETWORK = make_demo_network(["validator-0"], seed=6)
BANKS = ["bank-cn", "bank-jp", "bank-us", "fx-hk"]
OPERATOR = "alipay-agg"
FUNDS = 1_000_000


def make_network_with_participants(count: int, seed: int = 6) -> tuple[DemoNetwork, list[str]]:
    """The demo network plus ``count`` members ``p-000``, ``p-001``, ... (deterministic keys)."""
    network = make_demo_network(["validator-0"], seed=seed)
    names = [f"p-{index:03d}" for index in range(count)]
    keys = {name: PrivateKey(index.to_bytes(2, "big") * 16) for index, name in enumerate(names)}
    members = tuple(sorted(network.genesis.members + tuple(Member(name, keys[name].public_key, ("participant",))
                                                           for name in names), key=lambda member: member.name))
    genesis = replace(network.genesis, members=members)
    return DemoNetwork(genesis, network.validator_keys, network.member_keys | keys), names


def _chain(network: DemoNetwork = NETWORK, funded: list[str] = BANKS, **params: int) -> ContractChain:
    chain = ContractChain(network, params=params or None)
    for member in funded:
        for issuer, currency in (("bank-cn", "CNY"), ("bank-us", "USD")):
            assert chain.call(issuer, "accounts", "issue", currency=currency, to=member, amount_minor=FUNDS).is_ok
    return chain


def _code(chain: ContractChain, sender: str, method: str, **args: Any) -> str:
    receipt = chain.call(sender, "netting", method, **args)
    return "ok" if receipt.is_ok else receipt.code


def _open(chain: ContractChain, cycle_id: str = "c1", currency: str = "CNY", participants: list[str] = BANKS,
          operator: str = OPERATOR) -> str:
    return _code(chain, operator, "open_cycle", cycle_id=cycle_id, currency=currency, participants=participants)


def _owe(chain: ContractChain, debtor: str, creditor: str, amount: int, cycle_id: str = "c1") -> str:
    return _code(chain, debtor, "add_obligation", cycle_id=cycle_id, to=creditor, amount_minor=amount)


def _precheck(network: DemoNetwork, chain: ContractChain, sender: str, method: str, args: dict[str, Any]) -> str:
    signed = Transaction(sender, 0, "netting", method, args, 0).sign(network.member_keys[sender],
                                                                      network.genesis.chain_id)
    try:
        precheck_call(chain.view, signed)
    except ContractError as error:
        return error.code
    return "ok"


# --- open_cycle ---------------------------------------------------------------------------------


def test_open_cycle_records_the_cycle_and_a_zero_position_per_participant() -> None:
    chain = _chain()
    receipt = chain.call(OPERATOR, "netting", "open_cycle", cycle_id="c1", currency="CNY",
                         participants=["fx-hk", "bank-cn", "bank-us"])
    assert receipt.is_ok
    assert receipt.events[-1].name == "cycle_opened"
    assert receipt.events[-1].data == {"cycle_id": "c1", "currency": "CNY",
                                       "participants": ["bank-cn", "bank-us", "fx-hk"]}
    assert get_cycle(chain.view, "c1") == NettingCycle(OPERATOR, "CNY", ("bank-cn", "bank-us", "fx-hk"))
    assert get_status(chain.view, "c1") == CycleStatus(False, 0, 0)
    assert get_position(chain.view, "c1", "fx-hk") == Position(0, 0)
    assert get_position(chain.view, "c1", "bank-jp") is None


@pytest.mark.parametrize(("change", "code"), [
    ({"cycle_id": "C1"}, "invalid_argument"),
    ({"cycle_id": None}, "invalid_argument"),
    ({"currency": "XXX"}, "unknown_currency"),
    ({"currency": 1}, "unknown_currency"),
    ({"participants": "bank-cn,bank-us"}, "invalid_argument"),
    ({"participants": ["bank-cn"]}, "invalid_argument"),
    ({"participants": ["bank-cn", "bank-cn"]}, "invalid_argument"),
    ({"participants": ["bank-cn", "nobody"]}, "unknown_account"),
    ({"participants": ["bank-cn", 5]}, "unknown_account"),
    ({"participants": [f"p{index}" for index in range(PARTICIPANTS_PER_CYCLE_MAX + 1)]}, "invalid_argument"),
])
def test_invalid_open_arguments_fail_at_precheck_and_in_the_call_with_one_code(change: dict[str, Any],
                                                                               code: str) -> None:
    chain = _chain()
    args = {"cycle_id": "c1", "currency": "CNY", "participants": BANKS} | change
    args = {key: value for key, value in args.items() if value is not None}
    assert _precheck(NETWORK, chain, OPERATOR, "open_cycle", args) == code
    before = chain.snapshot()
    assert _code(chain, OPERATOR, "open_cycle", **args) == code
    assert chain.snapshot() == before


def test_a_used_cycle_id_returns_exists_or_names_the_first_field_that_differs() -> None:
    chain = _chain()
    assert _open(chain) == "ok"
    before = chain.snapshot()
    assert _open(chain, participants=list(reversed(BANKS))) == "cycle_exists"  # the same set of participants
    assert _open(chain, operator="bank-cn") == "cycle_exists_with_different_operator"
    assert _open(chain, currency="USD") == "cycle_exists_with_different_currency"
    assert _open(chain, participants=BANKS[:3]) == "cycle_exists_with_different_participants"
    assert chain.snapshot() == before


# --- add_obligation -----------------------------------------------------------------------------


def test_obligations_update_the_running_positions_and_move_no_money() -> None:
    chain = _chain()
    assert _open(chain) == "ok"
    receipt = chain.call("bank-cn", "netting", "add_obligation", cycle_id="c1", to="bank-us", amount_minor=300)
    assert receipt.is_ok
    assert receipt.events[-1].name == "obligation_added"
    assert receipt.events[-1].data == {"cycle_id": "c1", "to": "bank-us", "currency": "CNY", "amount_minor": 300}
    assert _owe(chain, "bank-us", "bank-cn", 100) == "ok"
    assert _owe(chain, "bank-cn", "bank-us", 50) == "ok"
    assert get_position(chain.view, "c1", "bank-cn") == Position(350, 100)
    assert get_position(chain.view, "c1", "bank-us") == Position(100, 350)
    assert get_status(chain.view, "c1") == CycleStatus(False, 3, 450)
    assert chain.balance("bank-cn", "CNY") == FUNDS and chain.balance("bank-us", "CNY") == FUNDS


def test_invalid_obligations() -> None:
    chain = _chain()
    assert _open(chain, participants=BANKS[:3]) == "ok"
    before = chain.snapshot()
    assert _owe(chain, "bank-cn", "bank-us", 1, cycle_id="c2") == "cycle_not_found"
    assert _owe(chain, "bank-cn", "bank-cn", 1) == "payer_equals_payee"
    assert _owe(chain, "fx-hk", "bank-cn", 1) == "not_participant"  # the debtor is not in the cycle
    assert _owe(chain, "bank-cn", "fx-hk", 1) == "not_participant"  # nor the creditor
    assert _owe(chain, OPERATOR, "bank-cn", 1) == "not_participant"  # operating a cycle is not taking part
    assert chain.snapshot() == before


@pytest.mark.parametrize(("change", "code"), [
    ({"cycle_id": "a/b"}, "invalid_argument"),
    ({"to": "nobody"}, "unknown_account"),
    ({"to": None}, "unknown_account"),
    ({"amount_minor": 0}, "invalid_amount"),
    ({"amount_minor": -3}, "invalid_amount"),
    ({"amount_minor": 2**63}, "amount_too_large"),
])
def test_invalid_obligation_arguments_fail_at_precheck_and_in_the_call_with_one_code(change: dict[str, Any],
                                                                                     code: str) -> None:
    chain = _chain()
    assert _open(chain) == "ok"
    args = {"cycle_id": "c1", "to": "bank-us", "amount_minor": 5} | change
    args = {key: value for key, value in args.items() if value is not None}
    assert _precheck(NETWORK, chain, "bank-cn", "add_obligation", args) == code
    before = chain.snapshot()
    assert _code(chain, "bank-cn", "add_obligation", **args) == code
    assert chain.snapshot() == before


def test_a_cycle_is_bounded_in_obligations_and_in_its_gross_sum(monkeypatch: pytest.MonkeyPatch) -> None:
    chain = _chain()
    assert _open(chain) == "ok"
    assert _owe(chain, "bank-cn", "bank-us", BALANCE_MAX - 1) == "ok"
    assert _owe(chain, "bank-us", "bank-cn", 2) == "cycle_gross_overflow"
    assert _owe(chain, "bank-us", "bank-cn", 1) == "ok"
    monkeypatch.setattr(netting, "OBLIGATIONS_PER_CYCLE_MAX", 3)
    assert _open(chain, "c2") == "ok"
    for _ in range(3):
        assert _owe(chain, "bank-cn", "bank-us", 1, "c2") == "ok"
    assert _owe(chain, "bank-cn", "bank-us", 1, "c2") == "too_many_obligations"


# --- settle -------------------------------------------------------------------------------------


def test_settle_pays_only_net_positions_through_the_holding_account() -> None:
    chain = _chain()
    assert _open(chain) == "ok"
    # bank-cn owes bank-us 100, bank-us owes bank-jp 80, bank-jp owes bank-cn 50:
    # gross 230 moves; net: bank-cn -50, bank-us +20, bank-jp +30, fx-hk 0.
    assert _owe(chain, "bank-cn", "bank-us", 100) == "ok"
    assert _owe(chain, "bank-us", "bank-jp", 80) == "ok"
    assert _owe(chain, "bank-jp", "bank-cn", 50) == "ok"
    receipt = chain.call(OPERATOR, "netting", "settle", cycle_id="c1")
    assert receipt.is_ok
    assert receipt.events[-1].name == "cycle_settled"
    assert receipt.events[-1].data == {
        "cycle_id": "c1", "currency": "CNY", "obligations_count": 3, "gross_minor": 230, "net_minor": 50,
        "positions": {"bank-cn": -50, "bank-jp": 30, "bank-us": 20, "fx-hk": 0}}
    assert chain.balance("bank-cn", "CNY") == FUNDS - 50
    assert chain.balance("bank-us", "CNY") == FUNDS + 20
    assert chain.balance("bank-jp", "CNY") == FUNDS + 30
    assert chain.balance("fx-hk", "CNY") == FUNDS
    assert chain.balance(NETTING_ACCOUNT, "CNY") == 0
    assert get_status(chain.view, "c1") == CycleStatus(True, 3, 230)
    chain.check_invariants()
    assert _code(chain, OPERATOR, "settle", cycle_id="c1") == "cycle_already_settled"
    assert _owe(chain, "bank-cn", "bank-us", 1) == "cycle_already_settled"


def test_only_the_operator_settles_a_cycle_that_exists() -> None:
    chain = _chain()
    assert _open(chain) == "ok"
    assert _code(chain, "bank-cn", "settle", cycle_id="c1") == "not_authorized"
    assert _code(chain, OPERATOR, "settle", cycle_id="c9") == "cycle_not_found"
    assert _precheck(NETWORK, chain, OPERATOR, "settle", {"cycle_id": ""}) == "invalid_argument"
    assert _code(chain, OPERATOR, "settle", cycle_id="") == "invalid_argument"
    assert _code(chain, OPERATOR, "settle", cycle_id="c1") == "ok"  # an empty cycle settles, moving nothing


def test_a_net_payer_short_of_funds_fails_the_whole_settlement_and_nothing_moves() -> None:
    chain = _chain(funded=["bank-cn", "bank-jp"])  # bank-us and fx-hk hold nothing
    assert _open(chain) == "ok"
    assert _owe(chain, "bank-cn", "bank-jp", 500) == "ok"
    assert _owe(chain, "bank-us", "fx-hk", 10) == "ok"
    before = chain.snapshot()
    assert _code(chain, OPERATOR, "settle", cycle_id="c1") == "amount_exceeds_balance"
    assert chain.snapshot() == before
    assert chain.call("bank-cn", "accounts", "transfer", currency="CNY", to="bank-us", amount_minor=10).is_ok
    assert _code(chain, OPERATOR, "settle", cycle_id="c1") == "ok"
    assert chain.balance("fx-hk", "CNY") == 10 and chain.balance("bank-us", "CNY") == 0
    chain.check_invariants()


def test_only_the_net_needs_funding() -> None:
    chain = _chain(funded=[])
    assert chain.call("bank-cn", "accounts", "issue", currency="CNY", to="bank-us", amount_minor=10).is_ok
    assert _open(chain) == "ok"
    assert _owe(chain, "bank-us", "bank-jp", 1_000) == "ok"  # 100 times what bank-us holds ...
    assert _owe(chain, "bank-jp", "bank-us", 990) == "ok"  # ... but it owes 10 net
    assert _code(chain, OPERATOR, "settle", cycle_id="c1") == "ok"
    assert chain.balance("bank-us", "CNY") == 0 and chain.balance("bank-jp", "CNY") == 10


def test_a_cycle_of_the_most_participants_settles_within_the_write_limit() -> None:
    network, names = make_network_with_participants(PARTICIPANTS_PER_CYCLE_MAX)
    chain = _chain(network, funded=[])
    for name in names:
        assert chain.call("bank-cn", "accounts", "issue", currency="CNY", to=name, amount_minor=1).is_ok
    assert _open(chain, participants=names) == "ok"
    # A chain of obligations in which every participant has a non-zero net: every account is written.
    for index in range(len(names) - 1):
        assert _owe(chain, names[index], names[index + 1], index + 1) == "ok"
    receipt = chain.call(OPERATOR, "netting", "settle", cycle_id="c1")
    assert receipt.is_ok, receipt.code
    positions = receipt.events[-1].data["positions"]
    assert sum(1 for net in positions.values() if net) == len(names)
    assert chain.balance(names[-1], "CNY") == len(names)
    assert all(chain.balance(name, "CNY") == 0 for name in names[:-1])
    chain.check_invariants()
    assert _open(chain, "c2", participants=[*names, "bank-cn"]) == "invalid_argument"


# --- compliance ---------------------------------------------------------------------------------


def test_each_obligation_is_checked_as_the_payment_it_stands_for() -> None:
    chain = _chain(tx_limit_minor_cny=1_000, aml_threshold_minor_cny=800)
    assert _open(chain) == "ok"
    assert _owe(chain, "bank-cn", "bank-us", 1_001) == "tx_limit_exceeded"
    receipt = chain.call("bank-cn", "netting", "add_obligation", cycle_id="c1", to="bank-us", amount_minor=900)
    assert [event.name for event in receipt.events] == ["aml_report", "obligation_added"]
    assert chain.call("regulator", "compliance", "freeze", member="bank-jp").is_ok
    assert _owe(chain, "bank-jp", "bank-us", 1) == "account_frozen"
    assert chain.call("registrar", "compliance", "set_kyc", member="fx-hk", verified=False).is_ok
    assert _owe(chain, "bank-us", "fx-hk", 1) == "kyc_required"


def test_daily_limits_count_each_obligation_once() -> None:
    chain = _chain(daily_limit_minor_cny=1_000)
    assert _open(chain) == "ok"
    assert _owe(chain, "bank-cn", "bank-us", 600) == "ok"
    assert _owe(chain, "bank-cn", "bank-jp", 400) == "ok"
    assert _owe(chain, "bank-cn", "bank-jp", 1) == "daily_limit_exceeded"
    # Settlement moves 1,000 net from bank-cn without counting it against the limit again.
    assert _code(chain, OPERATOR, "settle", cycle_id="c1") == "ok"
    assert chain.balance("bank-cn", "CNY") == FUNDS - 1_000


def test_the_limits_apply_to_obligations_not_to_the_net_legs() -> None:
    chain = _chain(tx_limit_minor_cny=1_000)
    assert _open(chain) == "ok"
    for creditor in ("bank-us", "bank-jp", "fx-hk"):
        assert _owe(chain, "bank-cn", creditor, 1_000) == "ok"
    assert _code(chain, OPERATOR, "settle", cycle_id="c1") == "ok"  # a net leg of 3,000: each payment was allowed
    assert chain.balance("bank-cn", "CNY") == FUNDS - 3_000


def test_settlement_rechecks_the_standing_of_every_participant_whose_balance_moves() -> None:
    chain = _chain()
    assert _open(chain) == "ok"
    assert _owe(chain, "bank-cn", "bank-us", 100) == "ok"
    assert _owe(chain, "bank-jp", "fx-hk", 100) == "ok"
    assert _owe(chain, "fx-hk", "bank-jp", 100) == "ok"  # bank-jp and fx-hk net to zero
    assert chain.call("regulator", "compliance", "freeze", member="fx-hk").is_ok
    assert chain.call("regulator", "compliance", "freeze", member="bank-us").is_ok
    before = chain.snapshot()
    assert _code(chain, OPERATOR, "settle", cycle_id="c1") == "account_frozen"  # bank-us may not receive
    assert chain.snapshot() == before
    assert chain.call("regulator", "compliance", "unfreeze", member="bank-us").is_ok
    assert chain.call("registrar", "compliance", "set_kyc", member="bank-cn", verified=False).is_ok
    assert _code(chain, OPERATOR, "settle", cycle_id="c1") == "kyc_required"  # bank-cn may not pay
    assert chain.call("registrar", "compliance", "set_kyc", member="bank-cn", verified=True).is_ok
    assert _code(chain, OPERATOR, "settle", cycle_id="c1") == "ok"  # frozen fx-hk's net is zero: it moves nothing
    assert chain.balance("bank-us", "CNY") == FUNDS + 100


# --- netting == gross ---------------------------------------------------------------------------

PARTICIPANTS = ["bank-cn", "bank-jp", "bank-us", "fx-hk", "merchant-001"]
obligation = st.tuples(st.sampled_from(["n1", "n2"]), st.sampled_from(PARTICIPANTS), st.sampled_from(PARTICIPANTS),
                       st.integers(1, 300_000))
funding = st.dictionaries(st.sampled_from(PARTICIPANTS), st.integers(0, 400_000))


def compute_gross_balances(start: dict[str, int], obligations: list[tuple[str, str, int]]) -> dict[str, int]:
    """Every obligation paid in full, one by one, in the order it was added (intermediate overdrafts allowed)."""
    balances = dict(start)
    for debtor, creditor, amount in obligations:
        balances[debtor] -= amount
        balances[creditor] += amount
    return balances


@settings(max_examples=100, deadline=None)
@given(funds=funding, obligations=st.lists(obligation, max_size=40), settle_order=st.permutations(["n1", "n2"]))
def test_settling_net_positions_gives_the_balances_of_settling_every_obligation_gross(
        funds: dict[str, int], obligations: list[tuple[str, str, str, int]], settle_order: list[str]) -> None:
    chain = _chain(funded=[])
    for member, amount in funds.items():
        for issuer, currency in (("bank-cn", "CNY"), ("bank-us", "USD")):
            if amount:
                assert chain.call(issuer, "accounts", "issue", currency=currency, to=member, amount_minor=amount).is_ok
    currencies = {"n1": "CNY", "n2": "USD"}
    assert _open(chain, "n1", "CNY", PARTICIPANTS) == "ok"
    assert _open(chain, "n2", "USD", PARTICIPANTS[1:]) == "ok"  # bank-cn takes no part in n2
    accepted: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    for cycle_id, debtor, creditor, amount in obligations:
        code = _owe(chain, debtor, creditor, amount, cycle_id)
        takes_part = cycle_id == "n1" or "bank-cn" not in (debtor, creditor)
        expected = "payer_equals_payee" if debtor == creditor else "ok" if takes_part else "not_participant"
        assert code == expected
        if code == "ok":
            accepted[cycle_id].append((debtor, creditor, amount))
    for cycle_id in settle_order:
        currency = currencies[cycle_id]
        start = {member: chain.balance(member, currency) for member in PARTICIPANTS}
        gross = compute_gross_balances(start, accepted[cycle_id])
        before = chain.snapshot()
        receipt = chain.call(OPERATOR, "netting", "settle", cycle_id=cycle_id)
        if all(balance >= 0 for balance in gross.values()):
            assert receipt.is_ok, receipt.code
            assert {member: chain.balance(member, currency) for member in PARTICIPANTS} == gross
            positions = receipt.events[-1].data["positions"]
            assert {member: start[member] + net for member, net in positions.items()} == \
                {member: gross[member] for member in positions}
        else:  # some net payer cannot pay: nothing moves
            assert receipt.code == "amount_exceeds_balance"
            assert chain.snapshot() == before
        assert chain.balance(NETTING_ACCOUNT, currency) == 0
        chain.check_invariants()
