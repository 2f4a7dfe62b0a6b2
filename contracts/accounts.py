"""accounts: issue, transfer and redeem multi-currency balances.

Checks come first, one per line, then effects. Amounts are integer minor
units. For each currency, the sum of all balances equals issued minus
redeemed at every height: only ``issue`` and ``redeem`` change supply.
"""

from __future__ import annotations

from typing import Any

from contracts import arguments, compliance
from contracts.money import credit, debit, is_holding_account, move
from contracts.runtime import CallContext, ContractError, register
from ledger.state import BALANCE_MAX, CurrencySupply, StateView


def check_payment_args(state: StateView, args: dict[str, Any]) -> None:
    """issue and transfer: a known currency, a positive amount, a payee who is a member."""
    arguments.currency(state, args)
    arguments.amount(args)
    arguments.member(state, args, "to")


def check_redeem_args(state: StateView, args: dict[str, Any]) -> None:
    arguments.currency(state, args)
    arguments.amount(args)


@register("accounts", "issue", check=check_payment_args)
def process_issue(context: CallContext, args: dict[str, Any]) -> None:
    supply = arguments.currency(context.state, args)
    amount = arguments.amount(args)
    recipient = arguments.member(context.state, args, "to")
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
    supply = arguments.currency(context.state, args)
    amount = arguments.amount(args)
    payee = arguments.member(context.state, args, "to")
    # A transfer to oneself moves nothing and would hide mistakes (money.move refuses it).
    move(context, context.sender, payee, supply.code, amount)
    context.emit("transferred", currency=supply.code, to=payee, amount_minor=amount)


@register("accounts", "redeem", check=check_redeem_args)
def process_redeem(context: CallContext, args: dict[str, Any]) -> None:
    supply = arguments.currency(context.state, args)
    amount = arguments.amount(args)
    compliance.check_standing(context, context.sender)
    debit(context, context.sender, supply.code, amount)
    context.state.put_currency(
        CurrencySupply(supply.code, supply.exponent, supply.issued_minor, supply.redeemed_minor + amount)
    )
    context.emit("redeemed", currency=supply.code, amount_minor=amount)
