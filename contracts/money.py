"""Moving money between accounts: the one path every contract takes, with compliance on both legs.

A ``move`` debits the payer and credits the payee in the call's view; if
anything fails the call raises ``ContractError`` and the runtime drops the
view, so a payment is all or nothing. Both legs are checked by the
compliance rules (contracts/compliance.py): a frozen or non-KYC member can
neither send nor receive, the payer's per-transaction and daily limits
apply, and a large amount emits an AML report event.

Accounts whose name starts with ``@`` are the ledger's own holding accounts
(e.g. ``@escrow`` holds locked funds). They are not members, cannot sign,
and are not subject to member compliance; they count in a currency's
supply like any other balance.
"""

from __future__ import annotations

from contracts import compliance
from contracts.runtime import CallContext, ContractError
from ledger.state import BALANCE_MAX

HOLDING_PREFIX = "@"


def is_holding_account(name: str) -> bool:
    return name.startswith(HOLDING_PREFIX)


def credit(context: CallContext, name: str, currency: str, amount: int) -> None:
    assert amount > 0, amount
    account = context.state.get_account(name)
    balance = account.get_balance(currency)
    if balance + amount > BALANCE_MAX:
        raise ContractError("balance_overflow")
    context.state.put_account(name, account.with_balance(currency, balance + amount))


def debit(context: CallContext, name: str, currency: str, amount: int) -> None:
    assert amount > 0, amount
    account = context.state.get_account(name)
    balance = account.get_balance(currency)
    if amount > balance:
        raise ContractError("amount_exceeds_balance", f"{name} holds {balance} {currency}")
    context.state.put_account(name, account.with_balance(currency, balance - amount))


def move(context: CallContext, payer: str, payee: str, currency: str, amount: int) -> None:
    """Move ``amount`` minor units of ``currency`` from ``payer`` to ``payee``, compliance checked."""
    if payer == payee:
        raise ContractError("payer_equals_payee")
    if not is_holding_account(payer):
        compliance.check_may_send(context, payer, currency, amount)
    if not is_holding_account(payee):
        compliance.check_may_receive(context, payee)
    debit(context, payer, currency, amount)
    credit(context, payee, currency, amount)


__all__ = ["HOLDING_PREFIX", "credit", "debit", "is_holding_account", "move"]
