"""escrow: two-phase transfers (lock, then post or void), in the style of TigerBeetle's pending transfers.

A payer locks funds for a payee: ``lock`` moves them from the payer into
the holding account ``@escrow`` (through ``money.move``, so the payer's
balance really falls, supply stays conserved and compliance checks the
payer as a sender) and records the escrow. The escrow then resolves
exactly once:

- ``post`` releases it to the payee, fully or partly (the rest goes back
  to the payer). The payer may post; so may the arbiter, if one is named;
  and from ``release_height`` on (if set) anyone may post the full amount.
- ``void`` refunds it all to the payer. The payee may void (it gives the
  money up); so may the arbiter. The payer may not: locked funds stay
  locked until the payee, the arbiter or the timeout lets them go.
- ``expire`` refunds it all to the payer once ``height > timeout_height``.
  Anyone may call it: the outcome is fixed, and a keeper can sweep
  expired escrows while the payer is offline.

Post and void are refused after the timeout (``escrow_timed_out``); an
escrow that is no longer pending refuses all three. Locked funds therefore
leave ``@escrow`` once, and for each currency ``@escrow``'s balance equals
the sum of the pending escrows' amounts.

State:

    escrow/<payer>/<escrow_id>   Escrow: the terms, the state and what was posted

The id is chosen by the payer (member-name alphabet), unique per payer;
a lock with an id in use returns ``escrow_exists`` (same terms) or
``escrow_exists_with_different_<field>`` and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from contracts import arguments, compliance
from contracts.money import move
from contracts.runtime import CallContext, ContractError, register
from ledger import encoding as enc
from ledger.names import MEMBER_NAME_BYTES_MAX, is_member_name
from ledger.state import StateView

ESCROW_ACCOUNT = "@escrow"
"""The holding account of every pending escrow's funds."""
ESCROW_ID_BYTES_MAX = MEMBER_NAME_BYTES_MAX
HEIGHT_MAX = 2**63 - 1
TIMEOUT_HEIGHTS_MAX = 31_536_000
"""An escrow times out at most this many heights after its lock (a year of one-second blocks)."""

ESCROW_PENDING = 0
ESCROW_POSTED = 1
ESCROW_VOIDED = 2
ESCROW_EXPIRED = 3

assert TIMEOUT_HEIGHTS_MAX < HEIGHT_MAX


@dataclass(frozen=True, slots=True)
class Escrow(enc.Record):
    payer: str
    escrow_id: str
    """Chosen by the payer; unique per payer."""
    payee: str
    currency: str
    amount_minor: int
    """What was locked: the payer's debit, held by ``@escrow`` while pending."""
    arbiter: str
    """A member who may post or void; empty if none."""
    release_height: int
    """From this height on anyone may post the full amount; 0 if never."""
    timeout_height: int
    """After this height only ``expire`` (a refund to the payer) is possible."""
    state: int
    """ESCROW_PENDING, _POSTED, _VOIDED or _EXPIRED."""
    posted_minor: int
    """What went to the payee (0 unless posted); ``amount_minor - posted_minor`` went back to the payer."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.text(MEMBER_NAME_BYTES_MAX),
        enc.text(ESCROW_ID_BYTES_MAX),
        enc.text(MEMBER_NAME_BYTES_MAX),
        enc.text(8),
        enc.uint(63),
        enc.text(MEMBER_NAME_BYTES_MAX),
        enc.uint(63),
        enc.uint(63),
        enc.uint(8),
        enc.uint(63),
    )


@dataclass(frozen=True, slots=True)
class LockTerms:
    """The arguments of ``lock``, checked."""

    escrow_id: str
    payee: str
    currency: str
    amount_minor: int
    arbiter: str
    release_height: int
    timeout_height: int


def escrow_key(payer: str, escrow_id: str) -> bytes:
    return b"escrow/" + payer.encode() + b"/" + escrow_id.encode()


def get_escrow(state: StateView, payer: str, escrow_id: str) -> Escrow | None:
    data = state.get(escrow_key(payer, escrow_id))
    return None if data is None else Escrow.decode(data)


def put_escrow(state: StateView, escrow: Escrow) -> None:
    state.set(escrow_key(escrow.payer, escrow.escrow_id), escrow.encode())


# --- argument checks (stateless: run at admission and again in the call) ---------------------


def _escrow_id(args: dict[str, Any]) -> str:
    escrow_id = args.get("escrow_id")
    # Ids use the member-name alphabet: safe inside a state key, no "/".
    if not is_member_name(escrow_id):
        raise ContractError("invalid_argument", f"escrow_id {escrow_id!r} must be 1-64 of a-z 0-9 . _ -")
    assert isinstance(escrow_id, str)
    return escrow_id


def _height(args: dict[str, Any], field: str, default: int | None) -> int:
    value = args.get(field)
    if value is None and default is not None:
        return default
    if type(value) is not int or not 1 <= value <= HEIGHT_MAX:
        raise ContractError("invalid_argument", f"{field} must be a positive integer height")
    return value


def _lock_terms(state: StateView, args: dict[str, Any]) -> LockTerms:
    escrow_id = _escrow_id(args)
    supply = arguments.currency(state, args)
    amount = arguments.amount(args)
    payee = arguments.member(state, args, "to")
    arbiter = arguments.member(state, args, "arbiter") if args.get("arbiter") is not None else ""
    release_height = _height(args, "release_height", 0)
    timeout_height = _height(args, "timeout_height", None)
    # The payee arbitrating its own escrow could post it to itself.
    if arbiter == payee:
        raise ContractError("invalid_argument", "the arbiter must not be the payee")
    # A release height after the timeout could never release.
    if release_height > timeout_height:
        raise ContractError("invalid_argument", "release_height must not be after timeout_height")
    return LockTerms(escrow_id, payee, supply.code, amount, arbiter, release_height, timeout_height)


def check_lock_args(state: StateView, args: dict[str, Any]) -> None:
    _lock_terms(state, args)


def _escrow_name(state: StateView, args: dict[str, Any]) -> tuple[str, str]:
    """post, void and expire name an escrow by its payer (a member) and its id."""
    return arguments.member(state, args, "payer"), _escrow_id(args)


def check_resolve_args(state: StateView, args: dict[str, Any]) -> None:
    _escrow_name(state, args)


def _post_args(state: StateView, args: dict[str, Any]) -> tuple[str, str, int | None]:
    """The escrow's name and the optional partial amount (None: the full amount)."""
    payer, escrow_id = _escrow_name(state, args)
    return payer, escrow_id, None if args.get("amount_minor") is None else arguments.amount(args)


def check_post_args(state: StateView, args: dict[str, Any]) -> None:
    _post_args(state, args)


# --- methods ----------------------------------------------------------------------------------


def _check_not_exists(existing: Escrow, terms: LockTerms) -> None:
    """A lock with an id in use: ``escrow_exists`` if the terms are the same, else the first field that differs."""
    if existing.payee != terms.payee:
        raise ContractError("escrow_exists_with_different_payee")
    if existing.currency != terms.currency:
        raise ContractError("escrow_exists_with_different_currency")
    if existing.amount_minor != terms.amount_minor:
        raise ContractError("escrow_exists_with_different_amount_minor")
    if existing.arbiter != terms.arbiter:
        raise ContractError("escrow_exists_with_different_arbiter")
    if existing.release_height != terms.release_height:
        raise ContractError("escrow_exists_with_different_release_height")
    if existing.timeout_height != terms.timeout_height:
        raise ContractError("escrow_exists_with_different_timeout_height")
    raise ContractError("escrow_exists", f"escrow {existing.payer}/{existing.escrow_id} exists with these terms")


@register("escrow", "lock", check=check_lock_args)
def process_lock(context: CallContext, args: dict[str, Any]) -> None:
    terms = _lock_terms(context.state, args)
    payer, height = context.sender, context.block.height
    # Locking for oneself moves nothing.
    if terms.payee == payer:
        raise ContractError("payer_equals_payee")
    # The payer arbitrating could void its own escrow.
    if terms.arbiter == payer:
        raise ContractError("invalid_argument", "the arbiter must not be the payer")
    # An id is used once per payer (a resent lock changes nothing).
    existing = get_escrow(context.state, payer, terms.escrow_id)
    if existing is not None:
        _check_not_exists(existing, terms)
    # The timeout is in the future, and not too far.
    if not height < terms.timeout_height <= height + TIMEOUT_HEIGHTS_MAX:
        raise ContractError("invalid_timeout_height",
                            f"timeout_height must be in ({height}, {height + TIMEOUT_HEIGHTS_MAX}]")
    # The payee may receive now (and is checked again at release).
    compliance.check_may_receive(context, terms.payee)
    # Effects: the payer pays into @escrow (compliance checks the payer as a sender).
    move(context, payer, ESCROW_ACCOUNT, terms.currency, terms.amount_minor)
    put_escrow(context.state, Escrow(payer, terms.escrow_id, terms.payee, terms.currency, terms.amount_minor,
                                     terms.arbiter, terms.release_height, terms.timeout_height, ESCROW_PENDING, 0))
    context.emit("escrow_locked", payer=payer, escrow_id=terms.escrow_id, to=terms.payee, currency=terms.currency,
                 amount_minor=terms.amount_minor, arbiter=terms.arbiter, release_height=terms.release_height,
                 timeout_height=terms.timeout_height)


def _pending_escrow(context: CallContext, payer: str, escrow_id: str) -> Escrow:
    """The named escrow; it must exist and be pending."""
    escrow = get_escrow(context.state, payer, escrow_id)
    if escrow is None:
        raise ContractError("escrow_not_found", f"no escrow {payer}/{escrow_id}")
    if escrow.state == ESCROW_POSTED:
        raise ContractError("escrow_already_posted")
    if escrow.state == ESCROW_VOIDED:
        raise ContractError("escrow_already_voided")
    if escrow.state == ESCROW_EXPIRED:
        raise ContractError("escrow_already_expired")
    assert escrow.state == ESCROW_PENDING, escrow
    return escrow


def _check_not_timed_out(context: CallContext, escrow: Escrow) -> None:
    if context.block.height > escrow.timeout_height:
        raise ContractError("escrow_timed_out", f"timed out after height {escrow.timeout_height}; only expire refunds it")


@register("escrow", "post", check=check_post_args)
def process_post(context: CallContext, args: dict[str, Any]) -> None:
    payer, escrow_id, requested = _post_args(context.state, args)
    escrow = _pending_escrow(context, payer, escrow_id)
    posted = escrow.amount_minor if requested is None else requested
    is_party = context.sender in (escrow.payer, escrow.arbiter)
    is_released = escrow.release_height != 0 and context.block.height >= escrow.release_height
    # After the timeout the funds belong back to the payer.
    _check_not_timed_out(context, escrow)
    # At most what was locked.
    if posted > escrow.amount_minor:
        raise ContractError("exceeds_escrow_amount", f"{posted} above the {escrow.amount_minor} locked")
    # The payer or the arbiter approves; or the release height has come.
    if not is_party and not is_released:
        raise ContractError("not_authorized", f"{context.sender} may not post this escrow before its release height")
    # Only the arbiter may post less than was locked: a partial post refunds the rest to the payer, so the
    # payer doing it would be voiding alone, and anyone else could cut the payee's share.
    if posted != escrow.amount_minor and context.sender != escrow.arbiter:
        raise ContractError("not_authorized", "only the arbiter may post part of an escrow")
    # Effects: the payee receives (compliance checks it again), the rest goes back to the payer.
    refunded = escrow.amount_minor - posted
    put_escrow(context.state, replace(escrow, state=ESCROW_POSTED, posted_minor=posted))
    move(context, ESCROW_ACCOUNT, escrow.payee, escrow.currency, posted)
    if refunded:
        move(context, ESCROW_ACCOUNT, escrow.payer, escrow.currency, refunded)
    context.emit("escrow_posted", payer=escrow.payer, escrow_id=escrow.escrow_id, to=escrow.payee,
                 currency=escrow.currency, amount_minor=posted, refunded_minor=refunded)


@register("escrow", "void", check=check_resolve_args)
def process_void(context: CallContext, args: dict[str, Any]) -> None:
    escrow = _pending_escrow(context, *_escrow_name(context.state, args))
    # After the timeout, expire does the refund.
    _check_not_timed_out(context, escrow)
    # The payee gives the money up, or the arbiter decides; never the payer alone.
    if context.sender not in (escrow.payee, escrow.arbiter):
        raise ContractError("not_authorized", f"{context.sender} may not void this escrow")
    _refund(context, escrow, ESCROW_VOIDED, "escrow_voided")


@register("escrow", "expire", check=check_resolve_args)
def process_expire(context: CallContext, args: dict[str, Any]) -> None:
    escrow = _pending_escrow(context, *_escrow_name(context.state, args))
    # Anyone may refund an escrow, but only once it has timed out.
    if context.block.height <= escrow.timeout_height:
        raise ContractError("escrow_not_expired", f"pending until height {escrow.timeout_height}")
    _refund(context, escrow, ESCROW_EXPIRED, "escrow_expired")


def _refund(context: CallContext, escrow: Escrow, state: int, event: str) -> None:
    """Everything locked goes back to the payer (who must be allowed to receive)."""
    put_escrow(context.state, replace(escrow, state=state))
    move(context, ESCROW_ACCOUNT, escrow.payer, escrow.currency, escrow.amount_minor)
    context.emit(event, payer=escrow.payer, escrow_id=escrow.escrow_id, currency=escrow.currency,
                 amount_minor=escrow.amount_minor)


for _record in (Escrow,):
    enc.check_record_wire(_record)

__all__ = [
    "ESCROW_ACCOUNT",
    "ESCROW_EXPIRED",
    "ESCROW_PENDING",
    "ESCROW_POSTED",
    "ESCROW_VOIDED",
    "TIMEOUT_HEIGHTS_MAX",
    "Escrow",
    "escrow_key",
    "get_escrow",
]
