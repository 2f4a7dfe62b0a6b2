"""Amounts as people write them: exact conversion to minor units, refusal instead of rounding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.amounts import format_amount, parse_decimal, split_amount
from ledger.errors import LedgerError
from ledger.state import BALANCE_MAX


@pytest.mark.parametrize(("text", "exponent", "minor"), [
    ("12.34 CNY", 2, 1234), ("12.3 CNY", 2, 1230), ("12 CNY", 2, 1200), ("0.01 USD", 2, 1),
    ("1,000,000 JPY", 0, 1_000_000), ("CNY 5.5", 2, 550), ("0.000001 BTC", 8, 100),
])
def test_parses_exactly(text: str, exponent: int, minor: int) -> None:
    number, currency = split_amount(text)
    assert parse_decimal(number, exponent, currency) == minor


@pytest.mark.parametrize(("text", "exponent", "code"), [
    ("12.345 CNY", 2, "invalid_amount"), ("1.5 JPY", 0, "invalid_amount"), ("0 CNY", 2, "invalid_amount"),
    ("-5 CNY", 2, "invalid_amount"), ("1e3 CNY", 2, "invalid_amount"), ("12.34", 2, "invalid_amount"),
    ("12.34 cny", 2, "invalid_amount"), ("NaN CNY", 2, "invalid_amount"), (".5 CNY", 2, "invalid_amount"),
    ("99999999999999999 CNY", 2, "amount_too_large"),
])
def test_refuses_what_would_need_rounding_or_is_not_an_amount(text: str, exponent: int, code: str) -> None:
    with pytest.raises(LedgerError) as caught:
        number, currency = split_amount(text)
        parse_decimal(number, exponent, currency)
    assert caught.value.code == code


@given(st.integers(1, BALANCE_MAX), st.integers(0, 8))
def test_format_then_parse_is_the_identity(minor: int, exponent: int) -> None:
    text = format_amount(minor, exponent, "CNY")
    number, currency = split_amount(text)
    assert currency == "CNY"
    assert parse_decimal(number, exponent, currency) == minor


def test_format_shows_every_minor_digit() -> None:
    assert format_amount(123456789, 2, "CNY") == "1,234,567.89 CNY"
    assert format_amount(5, 2) == "0.05"
    assert format_amount(7, 0, "JPY") == "7 JPY"
    assert format_amount(-150, 2, "USD") == "-1.50 USD"
