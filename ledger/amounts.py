"""Amounts as people write them ("12.34 CNY") and as the ledger holds them (1234 minor units).

Exact decimal arithmetic on strings and integers: no float ever touches an
amount. A currency's ``exponent`` is its number of minor-unit digits (CNY 2,
JPY 0). An amount with more fractional digits than the exponent is refused,
never rounded: "12.345 CNY" is a mistake, not 12.34 or 12.35.
"""

from __future__ import annotations

import re

from ledger.errors import LedgerError
from ledger.names import is_currency_code
from ledger.state import BALANCE_MAX

_AMOUNT = re.compile(r"(\d{1,19})(?:\.(\d{1,18}))?")


def split_amount(text: str) -> tuple[str, str]:
    """``"12.34 CNY"`` -> ``("12.34", "CNY")``; also accepts ``"CNY 12.34"`` and thousands separators."""
    parts = text.replace(",", "").replace("_", "").split()
    if len(parts) == 2 and is_currency_code(parts[0]) and not is_currency_code(parts[1]):
        parts.reverse()
    if len(parts) != 2 or not is_currency_code(parts[1]):
        raise LedgerError("invalid_amount", f"write an amount as '12.34 CNY', got {text!r}")
    return parts[0], parts[1]


def parse_decimal(number: str, exponent: int, currency: str = "") -> int:
    """Minor units for a decimal string with at most ``exponent`` fractional digits."""
    assert 0 <= exponent <= 18
    match = _AMOUNT.fullmatch(number)
    if match is None:
        raise LedgerError("invalid_amount", f"{number!r} is not a positive decimal number")
    whole, fraction = match.group(1), match.group(2) or ""
    if len(fraction) > exponent:
        raise LedgerError("invalid_amount", f"{number} {currency} has {len(fraction)} decimal places; "
                          f"{currency or 'this currency'} has {exponent}")
    minor = int(whole) * 10**exponent + int(fraction.ljust(exponent, "0") or "0")
    if minor <= 0:
        raise LedgerError("invalid_amount", "an amount must be positive")
    if minor > BALANCE_MAX:
        raise LedgerError("amount_too_large", f"{number} {currency} is more than an account can hold")
    return minor


def format_amount(minor: int, exponent: int, currency: str = "") -> str:
    """``1234, 2, "CNY"`` -> ``"12.34 CNY"`` with thousands separators; exact for any integer."""
    assert 0 <= exponent <= 18
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), 10**exponent)
    text = f"{sign}{whole:,}" + (f".{fraction:0{exponent}d}" if exponent else "")
    return f"{text} {currency}" if currency else text


__all__ = ["format_amount", "parse_decimal", "split_amount"]
