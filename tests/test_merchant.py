"""merchant: payments through channels, T+0/T+1 batches, tiered commission, exact splits."""

from __future__ import annotations

import bisect
import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import merchant
from contracts.compliance import DAY_MS
from contracts.runtime import ContractError, precheck_call
from ledger.state import member_key, param_key
from ledger.transaction import Transaction
from node.devchain import make_demo_network
from tests.contract_harness import ContractChain

NETWORK = make_demo_network(["validator-0"], seed=5)
AGG = "alipay-agg"
M1 = "merchant-001"
M2 = "merchant-002"
CHANNELS = ("alipay", "ecny", "unionpay", "wechat")
PARAMS = {
    "channel_fee_bps_alipay": 20,
    "channel_fee_bps_ecny": 0,
    "channel_fee_bps_unionpay": 25,
    "channel_fee_bps_wechat": 20,
    "merchant_tier0_bps": 60,
    "merchant_tier1_bps": 45,
    "merchant_tier1_minor_cny": 100_000_000,  # 1,000,000.00 CNY a month
    "merchant_tier2_bps": 30,
    "merchant_tier2_minor_cny": 1_000_000_000,  # 10,000,000.00 CNY a month
}
FUNDS = 10**13


def _chain(cycle: int = 0, funds: int = FUNDS, **params: int) -> ContractChain:
    chain = ContractChain(NETWORK, params=PARAMS | params)
    assert chain.call("bank-cn", "accounts", "issue", currency="CNY", to=AGG, amount_minor=funds).is_ok
    assert chain.call(AGG, "merchant", "register_merchant", merchant=M1, settlement_cycle=cycle).is_ok
    return chain


def _code(receipt: Any) -> str:
    return "ok" if receipt.is_ok else receipt.code


def _record(chain: ContractChain, ref: str, amount: int, channel: str = "wechat", merchant_name: str = M1,
            currency: str = "CNY", sender: str = AGG) -> str:
    return _code(chain.call(sender, "merchant", "record_payment", merchant=merchant_name, channel=channel,
                            amount_minor=amount, currency=currency, payment_ref=ref))


def _settle(chain: ContractChain, sender: str = AGG, merchant_name: str = M1, currency: str = "CNY",
            **args: Any) -> tuple[str, dict[str, Any]]:
    receipt = chain.call(sender, "merchant", "settle", merchant=merchant_name, currency=currency, **args)
    settled = [event.data for event in receipt.events if event.name == "batch_settled"]
    return _code(receipt), settled[0] if settled else {}


def _to_day_start(chain: ContractChain, day: int) -> None:
    assert day * DAY_MS >= chain.timestamp_ms
    chain.timestamp_ms = day * DAY_MS
    chain.height += 1


def _today(chain: ContractChain) -> int:
    return chain.timestamp_ms // DAY_MS


# --- The rounding rule, on the worked example of docs/CONTRACTS.md -----------------------------------


def test_worked_example_ten_thousand_cny_through_two_channels() -> None:
    chain = _chain()
    for ref, amount, channel in (("wx-1", 199_999, "wechat"), ("wx-2", 200_001, "wechat"), ("wx-3", 200_000, "wechat"),
                                 ("up-1", 123_456, "unionpay"), ("up-2", 276_544, "unionpay")):
        assert _record(chain, ref, amount, channel) == "ok"
    # Per payment, rounded down: 399 + 400 + 400 (wechat, 20 bps) and 308 + 691 (unionpay, 25 bps).
    assert merchant.get_payment(chain.view, AGG, "wx-1").fee_minor == 399  # type: ignore[union-attr]
    assert merchant.get_payment(chain.view, AGG, "up-2").fee_minor == 691  # type: ignore[union-attr]
    before = chain.balance(AGG, "CNY")
    code, event = _settle(chain)
    assert code == "ok"
    assert event == {"merchant": M1, "currency": "CNY", "batch": 0, "payment_count": 5, "gross_minor": 1_000_000,
                     "channel_fees": {"unionpay": 999, "wechat": 1_199}, "fee_minor": 2_198, "commission_bps": 60,
                     "commission_minor": 6_000, "net_minor": 991_802}
    assert 991_802 + 2_198 + 6_000 == 1_000_000
    assert chain.balance(M1, "CNY") == 991_802
    assert chain.balance("wechat", "CNY") == 1_199
    assert chain.balance("unionpay", "CNY") == 999
    assert before - chain.balance(AGG, "CNY") == 1_000_000 - 6_000  # the commission stays with the aggregator
    batch = merchant.get_batch(chain.view, AGG, M1, "CNY", 0)
    assert batch is not None and batch.settlement == merchant.Settlement(chain.height, _today(chain), 60, 6_000,
                                                                         2_198, 991_802)
    chain.check_invariants()


def test_a_zero_fee_channel_moves_nothing_to_it() -> None:
    chain = _chain()
    assert _record(chain, "e-1", 50_000, "ecny") == "ok"
    code, event = _settle(chain)
    assert code == "ok" and event["channel_fees"] == {"ecny": 0} and event["net_minor"] == 50_000 - 300
    assert chain.balance("ecny", "CNY") == 0


def test_a_tiny_payment_pays_no_fee_and_no_commission() -> None:
    chain = _chain()
    assert _record(chain, "p-1", 1) == "ok"
    code, event = _settle(chain)
    assert code == "ok" and (event["fee_minor"], event["commission_minor"], event["net_minor"]) == (0, 0, 1)


@pytest.mark.parametrize(("gross", "fee", "bps"), [(0, 0, 60), (1, 0, 10_000), (10_000, 9_000, 1_000),
                                                    (2**63 - 1, 2**62, 5_000), (999, 1, 0)])
def test_compute_split_parts_sum_to_the_gross(gross: int, fee: int, bps: int) -> None:
    split = merchant.compute_split(gross, fee, bps)
    assert split.fee_minor + split.commission_minor + split.net_minor == gross and split.net_minor >= 0
    assert split.commission_minor == gross * bps // 10_000


def test_compute_split_refuses_rates_above_the_gross() -> None:
    with pytest.raises(ContractError) as error:
        merchant.compute_split(10_000, 9_000, 1_001)
    assert error.value.code == "invalid_fee_schedule"


# --- Batches and the settlement cycle -----------------------------------------------------------------


def test_t_plus_one_is_refused_on_the_same_day_and_allowed_the_next() -> None:
    chain = _chain(cycle=1)
    day = _today(chain)
    assert _record(chain, "p-1", 10_000) == "ok"
    chain.timestamp_ms = (day + 1) * DAY_MS - 1  # the last millisecond of day D
    chain.height += 1
    snapshot = chain.snapshot()
    assert _settle(chain)[0] == "settlement_not_due"
    assert chain.snapshot() == snapshot
    _to_day_start(chain, day + 1)
    code, event = _settle(chain)
    assert code == "ok" and event["batch"] == 0


def test_t_plus_zero_settles_the_same_day_and_the_next_payment_opens_a_new_batch() -> None:
    chain = _chain(cycle=0)
    assert _record(chain, "p-1", 10_000) == "ok"
    assert _settle(chain)[0] == "ok"
    assert _record(chain, "p-2", 20_000) == "ok"
    assert merchant.get_payment(chain.view, AGG, "p-2").batch == 1  # type: ignore[union-attr]
    code, event = _settle(chain)
    assert code == "ok" and event["batch"] == 1 and event["gross_minor"] == 20_000
    assert _settle(chain)[0] == "nothing_to_settle"


def test_a_batch_holds_one_days_payments_and_batches_settle_in_order() -> None:
    chain = _chain(cycle=1)
    day = _today(chain)
    assert _record(chain, "d0-a", 100) == "ok"
    assert _record(chain, "d0-b", 200, "alipay") == "ok"
    _to_day_start(chain, day + 1)
    assert _record(chain, "d1-a", 300) == "ok"
    assert merchant.get_cursor(chain.view, AGG, M1, "CNY") == merchant.BatchCursor(0, 2)
    assert _settle(chain, batch=1)[0] == "batch_out_of_order"
    assert _settle(chain, batch=2)[0] == "unknown_batch"
    code, event = _settle(chain, batch=0)
    assert code == "ok" and event["gross_minor"] == 300 and event["payment_count"] == 2
    assert _settle(chain, batch=0)[0] == "batch_already_settled"  # a retried settle cannot pay twice
    assert _settle(chain)[0] == "settlement_not_due"  # batch 1 is of today, T+1
    _to_day_start(chain, day + 2)
    assert _settle(chain)[1]["gross_minor"] == 300
    assert _settle(chain)[0] == "nothing_to_settle"
    assert _settle(chain, batch=1)[0] == "batch_already_settled"
    chain.check_invariants()


def test_new_terms_apply_to_the_next_batch() -> None:
    chain = _chain(cycle=1)
    assert _record(chain, "p-1", 100) == "ok"
    assert _code(chain.call(AGG, "merchant", "register_merchant", merchant=M1, settlement_cycle=0)) == "ok"
    assert _record(chain, "p-2", 200) == "ok"  # same day, new cycle: a new batch
    assert merchant.get_payment(chain.view, AGG, "p-2").batch == 1  # type: ignore[union-attr]
    assert _settle(chain)[0] == "settlement_not_due"  # batch 0 keeps T+1, and batches settle in order
    _to_day_start(chain, _today(chain) + 1)
    assert _settle(chain)[0] == "ok" and _settle(chain)[0] == "ok"


def test_currencies_have_separate_batches() -> None:
    chain = _chain()
    assert chain.call("bank-us", "accounts", "issue", currency="USD", to=AGG, amount_minor=10**9).is_ok
    assert _record(chain, "c-1", 1_000, currency="CNY") == "ok"
    assert _record(chain, "u-1", 2_000, currency="USD") == "ok"
    assert merchant.get_payment(chain.view, AGG, "u-1").batch == 0  # type: ignore[union-attr]
    assert _settle(chain, currency="USD")[1]["gross_minor"] == 2_000
    assert _settle(chain, currency="CNY")[1]["gross_minor"] == 1_000


def test_a_payment_that_does_not_fit_opens_the_next_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(merchant, "PAYMENTS_PER_BATCH_MAX", 2)
    monkeypatch.setattr(merchant, "CHANNELS_PER_BATCH_MAX", 2)
    chain = _chain()
    for ref, channel in (("a", "wechat"), ("b", "wechat"), ("c", "wechat"), ("d", "alipay"), ("e", "unionpay")):
        assert _record(chain, ref, 100, channel) == "ok"
    assert [merchant.get_payment(chain.view, AGG, ref).batch for ref in "abcde"] == [0, 0, 1, 1, 2]  # type: ignore
    chain2 = _chain()
    assert _record(chain2, "big", 2**63 - 1) == "ok"
    assert _record(chain2, "one", 1) == "ok"
    assert merchant.get_payment(chain2.view, AGG, "one").batch == 1  # type: ignore[union-attr]


# --- Commission tiers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("gross", "bps"), [(99_999_999, 60), (100_000_000, 45), (999_999_999, 45),
                                            (1_000_000_000, 30), (5_000_000_000, 30)])
def test_the_tier_is_chosen_by_the_months_volume_this_batch_included(gross: int, bps: int) -> None:
    chain = _chain()
    assert _record(chain, "p", gross) == "ok"
    code, event = _settle(chain)
    assert code == "ok" and event["commission_bps"] == bps and event["commission_minor"] == gross * bps // 10_000


def test_the_months_volume_accumulates_and_resets_in_a_new_month() -> None:
    chain = _chain()
    day = _today(chain)  # 2025-11-24
    assert merchant.compute_civil_date(day) == (2025, 11, 24)
    assert _record(chain, "n-1", 99_999_999) == "ok"
    assert _settle(chain)[1]["commission_bps"] == 60
    assert _record(chain, "n-2", 1) == "ok"  # reaches 1,000,000.00 this month
    assert _settle(chain)[1]["commission_bps"] == 45
    december = day + 7
    assert merchant.compute_civil_date(december) == (2025, 12, 1)
    _to_day_start(chain, december)
    assert _record(chain, "d-1", 50_000_000) == "ok"
    assert _settle(chain)[1]["commission_bps"] == 60
    volume = merchant.get_volume(chain.view, AGG, M1, "CNY")
    assert volume == merchant.MonthlyVolume(2025 * 12 + 11, 50_000_000)


def test_a_t_plus_one_batch_counts_in_the_month_its_payments_were_made() -> None:
    chain = _chain(cycle=1)
    last_of_november = _today(chain) + 6
    _to_day_start(chain, last_of_november)
    assert _record(chain, "n-1", 100_000_000) == "ok"
    _to_day_start(chain, last_of_november + 1)
    assert _settle(chain)[1]["commission_bps"] == 45  # settled on 1 December, counted in November
    assert merchant.get_volume(chain.view, AGG, M1, "CNY").month == 2025 * 12 + 10


def test_volume_is_per_aggregator_merchant_and_currency() -> None:
    chain = _chain()
    assert chain.call(AGG, "merchant", "register_merchant", merchant=M2, settlement_cycle=0).is_ok
    assert _record(chain, "m1", 100_000_000) == "ok"
    assert _settle(chain)[1]["commission_bps"] == 45
    assert _record(chain, "m2", 1_000, merchant_name=M2) == "ok"
    assert _settle(chain, merchant_name=M2)[1]["commission_bps"] == 60


def test_other_currencies_use_only_the_tiers_they_have_thresholds_for() -> None:
    chain = _chain(merchant_tier1_minor_usd=1_000)
    assert chain.call("bank-us", "accounts", "issue", currency="USD", to=AGG, amount_minor=10**9).is_ok
    assert _record(chain, "u", 10**8, currency="USD") == "ok"  # past tier 1; no USD threshold for tier 2
    assert _settle(chain, currency="USD")[1]["commission_bps"] == 45


def test_no_tiers_means_no_commission() -> None:
    chain = _chain()
    for name in [p.name for p in chain.genesis.params if p.name.startswith("merchant_tier")]:
        del chain.data[param_key(name)]  # a genesis without a commission schedule
    assert merchant.get_commission_tiers(chain.view, "CNY") == ()
    assert _record(chain, "p", 10**6) == "ok"
    code, event = _settle(chain)
    assert code == "ok" and (event["commission_bps"], event["commission_minor"]) == (0, 0)


def test_the_demo_genesis_has_the_documented_schedule() -> None:
    view = ContractChain(NETWORK).view
    assert merchant.get_commission_tiers(view, "CNY") == (
        merchant.Tier(0, 60), merchant.Tier(100_000_000, 45), merchant.Tier(1_000_000_000, 30))
    assert {channel: merchant.get_channel_fee_bps(view, channel) for channel in CHANNELS} == {
        "alipay": 20, "ecny": 0, "unionpay": 25, "wechat": 20}
    assert all(view.get_member(channel) is not None for channel in CHANNELS)


@settings(max_examples=300, deadline=None)
@given(thresholds=st.lists(st.integers(1, 10**12), max_size=7, unique=True),
       rates=st.lists(st.integers(0, 10_000), min_size=8, max_size=8), volume=st.integers(0, 2**63 - 1))
def test_select_commission_bps_is_the_highest_tier_reached(thresholds: list[int], rates: list[int],
                                                           volume: int) -> None:
    starts = [0, *sorted(thresholds)]
    tiers = tuple(merchant.Tier(start, rate) for start, rate in zip(starts, rates))
    expected = rates[bisect.bisect_right(starts, volume) - 1]
    assert merchant.select_commission_bps(tiers, volume) == expected
    for number, start in enumerate(starts):  # exactly at a boundary, that tier; one below it, the tier before
        assert merchant.select_commission_bps(tiers, start) == rates[number]
        if number:
            assert merchant.select_commission_bps(tiers, start - 1) == rates[number - 1]


@settings(max_examples=300, deadline=None)
@given(day=st.integers(0, 2_932_896))  # 1970-01-01 .. 9999-12-31
def test_compute_civil_date_matches_the_calendar(day: int) -> None:
    date = datetime.date(1970, 1, 1) + datetime.timedelta(days=day)
    assert merchant.compute_civil_date(day) == (date.year, date.month, date.day)
    assert merchant.compute_month(day) == date.year * 12 + date.month - 1


# --- The fee schedule ---------------------------------------------------------------------------------


@pytest.mark.parametrize("params", [
    {"channel_fee_bps_wechat": 10_001},
    {"channel_fee_bps_wechat": -1},
])
def test_invalid_channel_rates_are_refused_when_recording(params: dict[str, int]) -> None:
    chain = _chain(**params)
    assert _record(chain, "p", 1_000) == "invalid_fee_schedule"


@pytest.mark.parametrize("params", [
    {"merchant_tier0_bps": 10_001},
    {"merchant_tier2_bps": -5},
    {"merchant_tier2_minor_cny": 100_000_000},  # not above tier 1's threshold
    {"merchant_tier1_minor_cny": 0},
    {"channel_fee_bps_wechat": 9_000, "merchant_tier0_bps": 1_001},  # together above the gross
])
def test_invalid_schedules_make_settle_fail_and_change_nothing(params: dict[str, int]) -> None:
    chain = _chain(**params)
    assert _record(chain, "p", 10_000) == "ok"
    snapshot = chain.snapshot()
    assert _settle(chain)[0] == "invalid_fee_schedule"
    assert chain.snapshot() == snapshot


def test_full_rates_leave_the_merchant_nothing_but_still_add_up() -> None:
    chain = _chain(channel_fee_bps_wechat=4_000, merchant_tier0_bps=6_000)
    assert _record(chain, "p", 10_001) == "ok"
    code, event = _settle(chain)
    assert code == "ok" and (event["fee_minor"], event["commission_minor"], event["net_minor"]) == (4_000, 6_000, 1)
    chain.check_invariants()


# --- Refusals: each code, and a failed call changes nothing but the nonce -----------------------------

RECORD = {"merchant": M1, "channel": "wechat", "currency": "CNY", "amount_minor": 100, "payment_ref": "r-1"}
SETTLE = {"merchant": M1, "currency": "CNY"}


@pytest.mark.parametrize(("sender", "method", "args", "code"), [
    (AGG, "register_merchant", {"merchant": "nobody", "settlement_cycle": 0}, "unknown_account"),
    (AGG, "register_merchant", {"merchant": "Bad Name", "settlement_cycle": 0}, "unknown_account"),
    (AGG, "register_merchant", {"merchant": M2, "settlement_cycle": 2}, "invalid_argument"),
    (AGG, "register_merchant", {"merchant": M2, "settlement_cycle": True}, "invalid_argument"),
    (AGG, "register_merchant", {"merchant": M2}, "invalid_argument"),
    (AGG, "register_merchant", {"merchant": AGG, "settlement_cycle": 0}, "invalid_argument"),
    (AGG, "register_merchant", {"merchant": M1, "settlement_cycle": 0}, "merchant_exists"),
    ("auditor", "register_merchant", {"merchant": M1, "settlement_cycle": 0}, "not_authorized"),
    (AGG, "record_payment", RECORD | {"merchant": "nobody"}, "unknown_account"),
    (AGG, "record_payment", RECORD | {"channel": "paypal"}, "unknown_channel"),
    (AGG, "record_payment", RECORD | {"channel": "WeChat"}, "unknown_channel"),
    (AGG, "record_payment", RECORD | {"channel": 7}, "unknown_channel"),
    (AGG, "record_payment", RECORD | {"currency": "EUR"}, "unknown_currency"),
    (AGG, "record_payment", RECORD | {"amount_minor": 0}, "invalid_amount"),
    (AGG, "record_payment", RECORD | {"amount_minor": -3}, "invalid_amount"),
    (AGG, "record_payment", RECORD | {"amount_minor": "100"}, "invalid_amount"),
    (AGG, "record_payment", RECORD | {"amount_minor": True}, "invalid_amount"),
    (AGG, "record_payment", RECORD | {"amount_minor": 2**63}, "amount_too_large"),
    (AGG, "record_payment", RECORD | {"payment_ref": ""}, "invalid_argument"),
    (AGG, "record_payment", RECORD | {"payment_ref": "a/b"}, "invalid_argument"),
    (AGG, "record_payment", RECORD | {"payment_ref": "x" * 65}, "invalid_argument"),
    (AGG, "record_payment", RECORD | {"payment_ref": 12}, "invalid_argument"),
    ("auditor", "record_payment", RECORD, "not_authorized"),
    (AGG, "record_payment", RECORD | {"merchant": M2}, "merchant_not_registered"),
    ("bank-cn", "record_payment", RECORD, "merchant_not_registered"),  # registered with another aggregator
    (AGG, "settle", SETTLE | {"merchant": "nobody"}, "unknown_account"),
    (AGG, "settle", SETTLE | {"currency": 5}, "unknown_currency"),
    (AGG, "settle", SETTLE | {"batch": -1}, "invalid_argument"),
    (AGG, "settle", SETTLE | {"batch": "0"}, "invalid_argument"),
    ("regulator", "settle", SETTLE, "not_authorized"),
    (AGG, "settle", SETTLE | {"merchant": M2}, "merchant_not_registered"),
    (AGG, "settle", SETTLE, "nothing_to_settle"),
    (AGG, "settle", SETTLE | {"batch": 0}, "unknown_batch"),
])
def test_invalid_calls_fail_with_their_code_and_change_only_the_nonce(sender: str, method: str,
                                                                      args: dict[str, Any], code: str) -> None:
    chain = _chain()
    snapshot = chain.snapshot()
    receipt = chain.call(sender, "merchant", method, **args)
    assert (receipt.is_ok, receipt.code, receipt.events) == (False, code, ())
    assert chain.snapshot() == snapshot


@pytest.mark.parametrize(("method", "args", "code"), [
    ("register_merchant", {"merchant": "nobody", "settlement_cycle": 0}, "unknown_account"),
    ("register_merchant", {"merchant": M2, "settlement_cycle": -1}, "invalid_argument"),
    ("record_payment", RECORD | {"channel": "paypal"}, "unknown_channel"),
    ("record_payment", RECORD | {"currency": "EUR"}, "unknown_currency"),
    ("record_payment", RECORD | {"amount_minor": 0}, "invalid_amount"),
    ("record_payment", RECORD | {"payment_ref": "a b"}, "invalid_argument"),
    ("settle", SETTLE | {"batch": -1}, "invalid_argument"),
])
def test_admission_precheck_refuses_with_the_same_code(method: str, args: dict[str, Any], code: str) -> None:
    chain = _chain()
    signed = Transaction(AGG, 9, "merchant", method, args, 0).sign(NETWORK.member_keys[AGG], chain.genesis.chain_id)
    with pytest.raises(ContractError) as error:
        precheck_call(chain.view, signed)
    assert error.value.code == code
    assert chain.call(AGG, "merchant", method, **args).code == code


def test_a_payment_reference_is_recorded_once_per_aggregator() -> None:
    chain = _chain()
    assert chain.call("bank-us", "accounts", "issue", currency="USD", to=AGG, amount_minor=10**6).is_ok
    assert chain.call(AGG, "merchant", "register_merchant", merchant=M2, settlement_cycle=0).is_ok
    assert _record(chain, "ref-1", 500) == "ok"
    snapshot = chain.snapshot()
    assert _record(chain, "ref-1", 500) == "payment_exists"
    assert _record(chain, "ref-1", 500, merchant_name=M2) == "payment_exists_with_different_merchant"
    assert _record(chain, "ref-1", 500, channel="alipay") == "payment_exists_with_different_channel"
    assert _record(chain, "ref-1", 500, currency="USD") == "payment_exists_with_different_currency"
    assert _record(chain, "ref-1", 501) == "payment_exists_with_different_amount_minor"
    assert chain.snapshot() == snapshot
    assert chain.call("bank-cn", "merchant", "register_merchant", merchant=M1, settlement_cycle=0).is_ok
    assert _record(chain, "ref-1", 500, sender="bank-cn") == "ok"  # another aggregator's reference space
    assert _settle(chain)[0] == "ok"
    assert _record(chain, "ref-1", 500) == "payment_exists"  # still, after its batch settled


def test_the_merchant_must_be_in_good_standing_to_be_paid() -> None:
    chain = _chain()
    assert _record(chain, "p", 10_000) == "ok"
    assert chain.call("regulator", "compliance", "freeze", member=M1).is_ok
    snapshot = chain.snapshot()
    assert _settle(chain)[0] == "account_frozen"
    assert chain.snapshot() == snapshot
    assert chain.call("regulator", "compliance", "unfreeze", member=M1).is_ok
    assert _settle(chain)[0] == "ok"


def test_the_aggregator_must_hold_the_funds() -> None:
    chain = _chain(funds=9_000)
    assert _record(chain, "p", 10_000) == "ok"
    snapshot = chain.snapshot()
    assert _settle(chain)[0] == "amount_exceeds_balance"
    assert chain.snapshot() == snapshot
    assert chain.call("bank-cn", "accounts", "issue", currency="CNY", to=AGG, amount_minor=1_000).is_ok
    assert _settle(chain)[0] == "ok"
    assert chain.balance(AGG, "CNY") == 60  # what is left is exactly the commission


def test_a_channel_without_a_fee_account_cannot_be_paid() -> None:
    chain = _chain()
    assert _record(chain, "p", 10_000) == "ok"
    del chain.data[member_key("wechat")]  # no method removes a member yet: simulate what governance might do
    snapshot = chain.snapshot()
    assert _settle(chain)[0] == "unknown_channel"
    assert chain.snapshot() == snapshot


def test_an_aggregator_that_is_also_the_channel_keeps_that_fee() -> None:
    chain = _chain()
    assert chain.call("bank-cn", "accounts", "issue", currency="CNY", to="alipay", amount_minor=10**6).is_ok
    assert chain.call("alipay", "merchant", "register_merchant", merchant=M2, settlement_cycle=0).is_ok
    assert _record(chain, "own", 100_000, "alipay", merchant_name=M2, sender="alipay") == "ok"
    assert _record(chain, "other", 100_000, "wechat", merchant_name=M2, sender="alipay") == "ok"
    code, event = _settle(chain, sender="alipay", merchant_name=M2)
    assert code == "ok" and event["channel_fees"] == {"alipay": 200, "wechat": 200}
    assert chain.balance("wechat", "CNY") == 200 and chain.balance(M2, "CNY") == event["net_minor"]
    assert chain.balance("alipay", "CNY") == 10**6 - event["net_minor"] - 200
    chain.check_invariants()


def test_large_legs_are_reported_to_the_regulator() -> None:
    chain = _chain()
    assert _record(chain, "p", 10_000_000) == "ok"  # 100,000.00 CNY: above the demo AML threshold
    receipt = chain.call(AGG, "merchant", "settle", merchant=M1, currency="CNY")
    assert receipt.is_ok
    reports = [event.data for event in receipt.events if event.name == "aml_report"]
    assert reports == [{"member": AGG, "currency": "CNY", "amount_minor": 10_000_000 - 20_000 - 60_000}]


# --- Properties ---------------------------------------------------------------------------------------

payment = st.tuples(st.sampled_from(CHANNELS), st.integers(1, 10**9), st.integers(0, 2))
"""(channel, amount_minor, days to wait before recording it)."""


def _expected_batches(payments: list[tuple[str, int, int]], start_day: int) -> list[tuple[int, dict[str, int],
                                                                                          dict[str, int]]]:
    """The model: one batch per day; per channel its gross and its per-payment fees rounded down."""
    batches: list[tuple[int, dict[str, int], dict[str, int]]] = []
    day = start_day
    for channel, amount, wait in payments:
        day += wait
        if not batches or batches[-1][0] != day:
            batches.append((day, {}, {}))
        gross, fees = batches[-1][1], batches[-1][2]
        gross[channel] = gross.get(channel, 0) + amount
        fees[channel] = fees.get(channel, 0) + amount * PARAMS[f"channel_fee_bps_{channel}"] // 10_000
    return batches


def _model_bps(volume: int) -> int:
    starts = [0, PARAMS["merchant_tier1_minor_cny"], PARAMS["merchant_tier2_minor_cny"]]
    rates = [PARAMS["merchant_tier0_bps"], PARAMS["merchant_tier1_bps"], PARAMS["merchant_tier2_bps"]]
    return rates[bisect.bisect_right(starts, volume) - 1]


@settings(max_examples=40, deadline=None)
@given(payments=st.lists(payment, min_size=1, max_size=25), cycle=st.sampled_from([0, 1]),
       month_end=st.booleans())
def test_settling_random_payments_splits_every_batch_exactly(payments: list[tuple[str, int, int]], cycle: int,
                                                             month_end: bool) -> None:
    chain = _chain(cycle=cycle)
    if month_end:  # cross into December
        _to_day_start(chain, _today(chain) + 5)
    start_day = _today(chain)
    for number, (_channel, _amount, wait) in enumerate(payments):
        if wait:
            _to_day_start(chain, _today(chain) + wait)
        assert _record(chain, f"p-{number}", _amount, _channel) == "ok"
    _to_day_start(chain, _today(chain) + 1)
    expected = _expected_batches(payments, start_day)
    paid = {name: 0 for name in (M1, *CHANNELS)}
    volumes: dict[int, int] = {}
    aggregator_before = chain.balance(AGG, "CNY")
    for number, (day, gross_by_channel, fee_by_channel) in enumerate(expected):
        code, event = _settle(chain, batch=number)
        assert code == "ok"
        gross, fee = sum(gross_by_channel.values()), sum(fee_by_channel.values())
        month = merchant.compute_month(day)
        volumes[month] = volumes.get(month, 0) + gross
        bps = _model_bps(volumes[month])
        assert (event["gross_minor"], event["fee_minor"], event["channel_fees"]) == (gross, fee, fee_by_channel)
        assert event["commission_bps"] == bps and event["commission_minor"] == gross * bps // 10_000
        assert event["net_minor"] >= 0
        assert event["net_minor"] + event["fee_minor"] + event["commission_minor"] == gross
        paid[M1] += event["net_minor"]
        for channel, channel_fee in fee_by_channel.items():
            paid[channel] += channel_fee
    assert _settle(chain)[0] == "nothing_to_settle"
    for name, amount in paid.items():
        assert chain.balance(name, "CNY") == amount
    total_gross = sum(amount for _channel, amount, _wait in payments)
    commission = total_gross - sum(paid.values())
    assert aggregator_before - chain.balance(AGG, "CNY") == total_gross - commission
    chain.check_invariants()


step = st.one_of(
    st.tuples(st.just("record"), st.sampled_from(CHANNELS), st.integers(1, 5 * 10**7)),
    st.tuples(st.just("record"), st.sampled_from(CHANNELS), st.integers(1, 10**4)),
    st.tuples(st.just("settle"), st.sampled_from([None, 0, 1, 2, 3]), st.just(0)),
    st.tuples(st.just("wait"), st.sampled_from([DAY_MS // 3, DAY_MS]), st.just(0)),
    st.tuples(st.just("freeze"), st.sampled_from([M1, "wechat"]), st.booleans()),
    st.tuples(st.just("issue"), st.just(""), st.integers(1, 10**7)),
)


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(step, min_size=10, max_size=40), cycle=st.sampled_from([0, 1]))
def test_every_call_is_all_or_nothing_and_supply_is_conserved(steps: list[tuple[str, Any, Any]], cycle: int) -> None:
    chain = _chain(cycle=cycle, funds=10**6)
    refs = 0
    for kind, first, second in steps:
        snapshot = chain.snapshot()
        if kind == "record":
            refs += 1
            receipt = chain.call(AGG, "merchant", "record_payment", merchant=M1, channel=first, amount_minor=second,
                                 currency="CNY", payment_ref=f"r{refs}")
            assert receipt.is_ok
        elif kind == "settle":
            cursor = merchant.get_cursor(chain.view, AGG, M1, "CNY")
            batch_args = {} if first is None else {"batch": first}
            receipt = chain.call(AGG, "merchant", "settle", merchant=M1, currency="CNY", **batch_args)
            if receipt.is_ok:
                settled = merchant.get_batch(chain.view, AGG, M1, "CNY", cursor.first_unsettled)
                assert settled is not None and settled.settlement is not None
                assert settled.day + settled.settlement_cycle <= _today(chain)
                parts = settled.settlement
                assert parts.net_minor + parts.fee_minor + parts.commission_minor == settled.gross_minor
                assert merchant.get_cursor(chain.view, AGG, M1, "CNY").first_unsettled == cursor.first_unsettled + 1
            else:
                assert chain.snapshot() == snapshot, receipt.code
        elif kind == "wait":
            chain.next_block(ms=first)
        elif kind == "freeze":
            method = "freeze" if second else "unfreeze"
            assert chain.call("regulator", "compliance", method, member=first).is_ok
        else:
            assert chain.call("bank-cn", "accounts", "issue", currency="CNY", to=AGG, amount_minor=second).is_ok
        chain.check_invariants()


@settings(max_examples=25, deadline=None)
@given(grosses=st.lists(st.tuples(st.integers(0, 12), st.integers(1, 6 * 10**8)), min_size=1, max_size=12))
def test_tiers_follow_the_months_volume_across_month_changes(grosses: list[tuple[int, int]]) -> None:
    chain = _chain()
    volumes: dict[int, int] = {}
    for number, (wait, gross) in enumerate(grosses):
        if wait:
            _to_day_start(chain, _today(chain) + wait)
        assert _record(chain, f"g{number}", gross, "ecny") == "ok"
        month = merchant.compute_month(_today(chain))
        volumes[month] = volumes.get(month, 0) + gross
        code, event = _settle(chain)
        assert code == "ok" and event["commission_bps"] == _model_bps(volumes[month])
        assert merchant.get_volume(chain.view, AGG, M1, "CNY") == merchant.MonthlyVolume(month, volumes[month])


# --- Scale ----------------------------------------------------------------------------------------------


def test_a_batch_of_ten_thousand_payments_settles_in_one_call() -> None:
    chain = _chain()
    amounts = [1 + (number * 7_919) % 100_000 for number in range(10_000)]
    for number, amount in enumerate(amounts):
        assert _record(chain, f"b{number}", amount, CHANNELS[number % 4]) == "ok"
    receipt = chain.call(AGG, "merchant", "settle", merchant=M1, currency="CNY", batch=0)
    assert receipt.is_ok
    event = next(event.data for event in receipt.events if event.name == "batch_settled")
    assert event["payment_count"] == 10_000 and event["gross_minor"] == sum(amounts)
    assert event["net_minor"] + event["fee_minor"] + event["commission_minor"] == sum(amounts)
    chain.check_invariants()
