"""The argument rules every contract shares: amounts, currencies, members.

One definition each, so a negative, float or overflowing amount, an unknown
currency or a name that is not a member gets the same code from every
method, at admission (``precheck_call``) and when the call runs.
"""

from __future__ import annotations

from typing import Any

from contracts.runtime import ContractError
from ledger.names import is_member_name
from ledger.state import BALANCE_MAX, CurrencySupply, StateView


def amount(args: dict[str, Any], field: str = "amount_minor", *, zero_allowed: bool = False) -> int:
    """A count of minor units: ``invalid_amount`` unless a (positive) integer, ``amount_too_large`` above 2^63-1."""
    value = args.get(field, 0 if zero_allowed else None)
    if type(value) is not int:
        raise ContractError("invalid_amount", f"{field} must be an integer")
    if value < 0 or (value == 0 and not zero_allowed):
        raise ContractError("invalid_amount", f"{field} must be {'non-negative' if zero_allowed else 'positive'}")
    if value > BALANCE_MAX:
        raise ContractError("amount_too_large", f"{field} above 2^63-1")
    return value


def currency(state: StateView, args: dict[str, Any], field: str = "currency") -> CurrencySupply:
    """A currency registered on the chain: ``unknown_currency`` otherwise."""
    code = args.get(field)
    supply = state.get_currency(code) if isinstance(code, str) else None
    if supply is None:
        raise ContractError("unknown_currency", f"{field} {code!r}")
    return supply


def member(state: StateView, args: dict[str, Any], field: str) -> str:
    """The name of a current member: ``unknown_account`` otherwise."""
    name = args.get(field)
    if not is_member_name(name) or state.get_member(name) is None:  # type: ignore[arg-type]
        raise ContractError("unknown_account", f"{field} {name!r} is not a member")
    assert isinstance(name, str)
    return name


__all__ = ["amount", "currency", "member"]
