"""compliance: KYC status, freezes, transaction limits and AML reports.

State:

    compliance/<member>               ComplianceStatus [kyc: u8, frozen: bool]; absent = a genesis
                                      member in good standing (KYC verified, not frozen)
    compliance/spent/<member>/<CCY>   DailySpend [day: u64, spent_minor: u63]: what the member has sent today

A day is ``block timestamp_ms // day_ms`` (UTC days of the block's agreed
time, ``day_ms`` = 86,400,000 unless the chain parameter says otherwise;
contracts have no clock of their own).

Rules, applied by ``contracts.money.move`` to every payment leg:

- a member whose KYC is not verified, or who is frozen, can neither send nor receive
  (``kyc_required``, ``account_frozen``);
- a payment above the parameter ``tx_limit_minor_<ccy>`` is refused (``tx_limit_exceeded``);
- a member's payments in one currency over one day above ``daily_limit_minor_<ccy>`` are refused
  (``daily_limit_exceeded``);
- a payment of at least ``aml_threshold_minor_<ccy>`` (or, if that is not set, the chain-wide
  ``aml_report_threshold_minor``) goes through and emits an ``aml_report`` event for the regulator.

Methods: ``set_kyc {member, verified}`` by a registrar; ``freeze {member}`` and
``unfreeze {member}`` by a regulator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from contracts import arguments
from contracts.runtime import CallContext, ContractError, register
from ledger import encoding as enc
from ledger.state import StateView

KYC_PENDING = 0
KYC_VERIFIED = 1
KYC_REVOKED = 2
DAY_MS = 86_400_000
DAY_MS_MIN = 1_000


@dataclass(frozen=True, slots=True)
class ComplianceStatus(enc.Record):
    kyc: int
    frozen: bool

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (enc.uint(8), enc.boolean)


GOOD_STANDING = ComplianceStatus(KYC_VERIFIED, False)


@dataclass(frozen=True, slots=True)
class DailySpend(enc.Record):
    day: int
    spent_minor: int

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (enc.uint(64), enc.uint(63))


def current_day(context: CallContext) -> int:
    """The block's day number: ``timestamp_ms // day_ms`` (chain parameter ``day_ms``, default 86,400,000).

    A devnet may shorten its day (e.g. 20 s) so that daily limits and T+1
    settlement can be seen working in a demo; a production genesis leaves it unset.
    """
    day_ms = context.state.get_param("day_ms", DAY_MS)
    return context.block.timestamp_ms // (day_ms if day_ms >= DAY_MS_MIN else DAY_MS)


def status_key(member: str) -> bytes:
    return b"compliance/" + member.encode()


def spent_key(member: str, currency: str) -> bytes:
    return b"compliance/spent/" + member.encode() + b"/" + currency.encode()


def get_status(state: StateView, member: str) -> ComplianceStatus:
    data = state.get(status_key(member))
    return GOOD_STANDING if data is None else ComplianceStatus.decode(data)


def put_status(state: StateView, member: str, status: ComplianceStatus) -> None:
    state.set(status_key(member), status.encode())


def _check_standing(state: StateView, member: str) -> None:
    status = get_status(state, member)
    if status.frozen:
        raise ContractError("account_frozen", f"{member} is frozen")
    if status.kyc != KYC_VERIFIED:
        raise ContractError("kyc_required", f"{member} has no verified KYC")


def check_may_receive(context: CallContext, member: str) -> None:
    _check_standing(context.state, member)


def check_standing(context: CallContext, member: str) -> None:
    """KYC verified and not frozen (e.g. to redeem: money leaves circulation, no payee)."""
    _check_standing(context.state, member)


def check_may_send(context: CallContext, member: str, currency: str, amount: int) -> None:
    """The payer's standing and limits; records today's spending and reports large amounts."""
    state = context.state
    _check_standing(state, member)
    suffix = currency.lower()
    tx_limit = state.get_param(f"tx_limit_minor_{suffix}", 0)
    if tx_limit and amount > tx_limit:
        raise ContractError("tx_limit_exceeded", f"{amount} {currency} above the limit of {tx_limit} per payment")
    daily_limit = state.get_param(f"daily_limit_minor_{suffix}", 0)
    day = current_day(context)
    data = state.get(spent_key(member, currency))
    spent = DailySpend.decode(data) if data is not None else DailySpend(day, 0)
    spent_today = spent.spent_minor if spent.day == day else 0
    if daily_limit and spent_today + amount > daily_limit:
        raise ContractError("daily_limit_exceeded", f"{member} would send {spent_today + amount} {currency} today, "
                            f"limit {daily_limit}")
    if daily_limit:  # only tracked where a limit applies: a write per payment is not free
        state.set(spent_key(member, currency), DailySpend(day, spent_today + amount).encode())
    threshold = state.get_param(f"aml_threshold_minor_{suffix}", state.get_param("aml_report_threshold_minor", 0))
    if threshold and amount >= threshold:
        context.emit("aml_report", member=member, currency=currency, amount_minor=amount)


def _require_role(context: CallContext, role: str) -> None:
    sender = context.state.get_member(context.sender)
    assert sender is not None  # admission checked the sender is a member
    if role not in sender.roles:
        raise ContractError("not_authorized", f"{context.sender} lacks the role {role}")


@register("compliance", "set_kyc")
def process_set_kyc(context: CallContext, args: dict[str, Any]) -> None:
    _require_role(context, "registrar")
    member = arguments.member(context.state, args, "member")
    verified = args.get("verified")
    if type(verified) is not bool:
        raise ContractError("invalid_argument", "verified must be true or false")
    status = get_status(context.state, member)
    put_status(context.state, member, ComplianceStatus(KYC_VERIFIED if verified else KYC_REVOKED, status.frozen))
    context.emit("kyc_set", member=member, verified=verified)


@register("compliance", "freeze")
def process_freeze(context: CallContext, args: dict[str, Any]) -> None:
    _set_frozen(context, args, True)


@register("compliance", "unfreeze")
def process_unfreeze(context: CallContext, args: dict[str, Any]) -> None:
    _set_frozen(context, args, False)


def _set_frozen(context: CallContext, args: dict[str, Any], frozen: bool) -> None:
    """The regulator freezes or unfreezes a member; its KYC status stays as it is."""
    _require_role(context, "regulator")
    member = arguments.member(context.state, args, "member")
    status = get_status(context.state, member)
    put_status(context.state, member, ComplianceStatus(status.kyc, frozen))
    context.emit("frozen" if frozen else "unfrozen", member=member)


for _record in (ComplianceStatus, DailySpend):
    enc.check_record_wire(_record)

__all__ = ["ComplianceStatus", "DailySpend", "check_may_receive", "check_may_send", "check_standing", "get_status",
           "put_status"]
