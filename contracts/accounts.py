"""accounts: issue, transfer and redeem multi-currency balances.

Checks come first, one per line, then effects. Amounts are integer minor
units. For each currency, the sum of all balances equals issued minus
redeemed at every height: only ``issue`` and ``redeem`` change supply.
"""

from __future__ import annotations

from typing import Any

from contracts import compliance
from contracts.money import credit, debit, is_holding_account, move
from contracts.runtime import CallContext, ContractError, register
from ledger.names import is_member_name
from ledger.state import BALANCE_MAX, CurrencySupply, StateView


def _amount(args: dict[str, Any]) -> int:
    """The positive integer ``amount_minor``; the rule for negative, zero, float and overflowing amounts."""
    amount = args.get("amount_minor")
    if type(amount) is not int:
        raise ContractError("invalid_amount", "amount_minor must be an integer")
    if amount <= 0:
        raise ContractError("invalid_amount", "amount_minor must be positive")
    if amount > BALANCE_MAX:
        raise ContractError("amount_too_large")
    return amount


def _currency(state: StateView, args: dict[str, Any]) -> CurrencySupply:
    code = args.get("currency")
    supply = state.get_currency(code) if isinstance(code, str) else None
    if supply is None:
        raise ContractError("unknown_currency", f"currency {code!r}")
    return supply


def _member(state: StateView, args: dict[str, Any], field: str) -> str:
    name = args.get(field)
    if not is_member_name(name) or state.get_member(name) is None:  # type: ignore[arg-type]
        raise ContractError("unknown_account", f"{field} {name!r} is not a member")
    assert isinstance(name, str)
    return name


def check_payment_args(state: StateView, args: dict[str, Any]) -> None:
    """issue and transfer: a known currency, a positive amount, a payee who is a member."""
    _currency(state, args)
    _amount(args)
    _member(state, args, "to")


def check_redeem_args(state: StateView, args: dict[str, Any]) -> None:
    _currency(state, args)
    _amount(args)


@register("accounts", "issue", check=check_payment_args)
def process_issue(context: CallContext, args: dict[str, Any]) -> None:
    supply = _currency(context.state, args)
    amount = _amount(args)
    recipient = _member(context.state, args, "to")
    issuer = context.state.get_member(context.sender)
    assert issuer is not None  # admission checked the sender is a member
    # Only a holder of issuer:<CCY> may create that currency.
    if f"issuer:{supply.code}" not in issuer.roles:
        raise ContractError("not_issuer", f"{context.sender} may not issue {supply.code}")
    if supply.issued_minor + amount > BALANCE_MAX:
        raise ContractError("supply_overflow")
    if not is_holding_account(recipient):
        compliance.check_may_receive(context, recipient)
    credit(context, recipient, supply.code, amount)
    context.state.put_currency(
        CurrencySupply(supply.code, supply.exponent, supply.issued_minor + amount, supply.redeemed_minor)
    )
    context.emit("issued", currency=supply.code, to=recipient, amount_minor=amount)


@register("accounts", "transfer", check=check_payment_args)
def process_transfer(context: CallContext, args: dict[str, Any]) -> None:
    supply = _currency(context.state, args)
    amount = _amount(args)
    payee = _member(context.state, args, "to")
    # A transfer to oneself moves nothing and would hide mistakes (money.move refuses it).
    move(context, context.sender, payee, supply.code, amount)
    context.emit("transferred", currency=supply.code, to=payee, amount_minor=amount)


@register("accounts", "redeem", check=check_redeem_args)
def process_redeem(context: CallContext, args: dict[str, Any]) -> None:
    supply = _currency(context.state, args)
    amount = _amount(args)
    compliance.check_standing(context, context.sender)
    debit(context, context.sender, supply.code, amount)
    context.state.put_currency(
        CurrencySupply(supply.code, supply.exponent, supply.issued_minor, supply.redeemed_minor + amount)
    )
    context.emit("redeemed", currency=supply.code, amount_minor=amount)
