"""netting: settlement cycles that pay only each participant's multilateral net position.

A member opens a cycle (it becomes the cycle's operator) for one currency
and a fixed list of participants. Each participant adds what it owes to
another (``add_obligation``); nothing moves yet, but the contract keeps,
per participant, the running sums of what it owes and what it is owed, so
a cycle of any number of obligations settles by reading one position per
participant. ``settle`` (by the operator) computes each net position
(owed to it minus owed by it) and, in one atomic call, every net payer
pays its net into the holding account ``@netting`` and ``@netting`` pays
every net receiver its net. The net positions sum to zero, so
``@netting`` ends where it began; every balance ends exactly where paying
every obligation gross would have put it. If one net payer lacks the
funds (or any other leg fails) the call fails and nothing moves.

Compliance: each obligation is checked as the payment it stands for when
it is added (the debtor as a sender of that amount: standing, limits,
daily volume, AML report; the creditor as a receiver). At settlement every
participant with a non-zero net position is checked again for standing
(KYC, not frozen), but the per-payment limits, daily volumes and AML
reports are not applied a second time to the net legs: they were applied
to the payments themselves, a net leg sums many payments, and counting it
again would refuse cycles whose every payment is allowed.

State:

    netting/<cycle_id>                       NettingCycle [operator, currency, participants]
    netting/<cycle_id>/status                CycleStatus [settled, obligations_count, gross_minor]
    netting/<cycle_id>/position/<member>     Position [owed_minor, owed_to_minor]

Cycle ids are global (first come, first served) and use the member-name
alphabet. No division anywhere: nothing is rounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from contracts import arguments, compliance
from contracts.money import credit, debit
from contracts.runtime import EVENTS_PER_TX_MAX, WRITES_PER_TX_MAX, CallContext, ContractError, register
from ledger import encoding as enc
from ledger.names import MEMBER_NAME_BYTES_MAX, is_member_name
from ledger.state import BALANCE_MAX, StateView

NETTING_ACCOUNT = "@netting"
"""The holding account every net leg passes through within one settle call."""
CYCLE_ID_BYTES_MAX = MEMBER_NAME_BYTES_MAX
PARTICIPANTS_PER_CYCLE_MIN = 2
PARTICIPANTS_PER_CYCLE_MAX = 200
OBLIGATIONS_PER_CYCLE_MAX = 1_000_000

# open_cycle writes the cycle, its status and a position per participant; settle writes every
# participant's account, @netting's and the status (its standing checks write nothing): both fit a transaction.
assert PARTICIPANTS_PER_CYCLE_MAX + 2 <= WRITES_PER_TX_MAX
# settle emits one event (all net positions in it), however many participants.
assert EVENTS_PER_TX_MAX >= 1
assert OBLIGATIONS_PER_CYCLE_MAX < 2**32  # CycleStatus.obligations_count is a u32


@dataclass(frozen=True, slots=True)
class NettingCycle(enc.Record):
    operator: str
    """The member who opened the cycle; only it may settle."""
    currency: str
    participants: tuple[str, ...]
    """Sorted and distinct; only they may owe or be owed in this cycle."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.text(MEMBER_NAME_BYTES_MAX),
        enc.text(8),
        enc.array_of(enc.text(MEMBER_NAME_BYTES_MAX), PARTICIPANTS_PER_CYCLE_MAX),
    )


@dataclass(frozen=True, slots=True)
class CycleStatus(enc.Record):
    settled: bool
    obligations_count: int
    gross_minor: int
    """The sum of every obligation; kept at most BALANCE_MAX, so every position fits too."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (enc.boolean, enc.uint(32), enc.uint(63))


@dataclass(frozen=True, slots=True)
class Position(enc.Record):
    owed_minor: int
    """The sum of the participant's obligations to others (what it would pay gross)."""
    owed_to_minor: int
    """The sum of others' obligations to the participant (what it would receive gross)."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (enc.uint(63), enc.uint(63))

    @property
    def net_minor(self) -> int:
        """Positive: a net receiver; negative: a net payer."""
        return self.owed_to_minor - self.owed_minor


NO_POSITION = Position(0, 0)


def cycle_key(cycle_id: str) -> bytes:
    return b"netting/" + cycle_id.encode()


def status_key(cycle_id: str) -> bytes:
    return cycle_key(cycle_id) + b"/status"


def position_key(cycle_id: str, member: str) -> bytes:
    return cycle_key(cycle_id) + b"/position/" + member.encode()


def get_cycle(state: StateView, cycle_id: str) -> NettingCycle | None:
    data = state.get(cycle_key(cycle_id))
    return None if data is None else NettingCycle.decode(data)


def get_status(state: StateView, cycle_id: str) -> CycleStatus | None:
    data = state.get(status_key(cycle_id))
    return None if data is None else CycleStatus.decode(data)


def get_position(state: StateView, cycle_id: str, member: str) -> Position | None:
    """None if ``member`` is not a participant of the cycle."""
    data = state.get(position_key(cycle_id, member))
    return None if data is None else Position.decode(data)


# --- argument checks (stateless: run at admission and again in the call) ---------------------


def _cycle_id(args: dict[str, Any]) -> str:
    cycle_id = args.get("cycle_id")
    # Ids use the member-name alphabet: safe inside a state key, no "/".
    if not is_member_name(cycle_id):
        raise ContractError("invalid_argument", f"cycle_id {cycle_id!r} must be 1-64 of a-z 0-9 . _ -")
    assert isinstance(cycle_id, str)
    return cycle_id


def _participants(state: StateView, args: dict[str, Any]) -> tuple[str, ...]:
    """The cycle's participants: distinct members, sorted."""
    names = args.get("participants")
    if type(names) is not list or not PARTICIPANTS_PER_CYCLE_MIN <= len(names) <= PARTICIPANTS_PER_CYCLE_MAX:
        raise ContractError("invalid_argument", f"participants must be a list of {PARTICIPANTS_PER_CYCLE_MIN} to "
                            f"{PARTICIPANTS_PER_CYCLE_MAX} members")
    for name in names:
        if not is_member_name(name) or state.get_member(name) is None:
            raise ContractError("unknown_account", f"participant {name!r} is not a member")
    if len(set(names)) != len(names):
        raise ContractError("invalid_argument", "participants must be distinct")
    return tuple(sorted(names))


def _open_args(state: StateView, args: dict[str, Any]) -> tuple[str, str, tuple[str, ...]]:
    return _cycle_id(args), arguments.currency(state, args).code, _participants(state, args)


def check_open_args(state: StateView, args: dict[str, Any]) -> None:
    _open_args(state, args)


def _obligation_args(state: StateView, args: dict[str, Any]) -> tuple[str, str, int]:
    return _cycle_id(args), arguments.member(state, args, "to"), arguments.amount(args)


def check_obligation_args(state: StateView, args: dict[str, Any]) -> None:
    _obligation_args(state, args)


def check_settle_args(state: StateView, args: dict[str, Any]) -> None:
    _cycle_id(args)


# --- methods ----------------------------------------------------------------------------------


def _check_not_exists(existing: NettingCycle, wanted: NettingCycle) -> None:
    """An open_cycle with an id in use: ``cycle_exists`` if it is the same cycle, else the first field that differs."""
    if existing.operator != wanted.operator:
        raise ContractError("cycle_exists_with_different_operator")
    if existing.currency != wanted.currency:
        raise ContractError("cycle_exists_with_different_currency")
    if existing.participants != wanted.participants:
        raise ContractError("cycle_exists_with_different_participants")
    raise ContractError("cycle_exists", "the cycle exists with these terms")


@register("netting", "open_cycle", check=check_open_args)
def process_open_cycle(context: CallContext, args: dict[str, Any]) -> None:
    cycle_id, currency, participants = _open_args(context.state, args)
    cycle = NettingCycle(context.sender, currency, participants)
    # A cycle id is used once (a resent open changes nothing).
    existing = get_cycle(context.state, cycle_id)
    if existing is not None:
        _check_not_exists(existing, cycle)
    # Effects: the cycle, an open status, a zero position per participant (which also marks who takes part).
    context.state.set(cycle_key(cycle_id), cycle.encode())
    context.state.set(status_key(cycle_id), CycleStatus(False, 0, 0).encode())
    for participant in participants:
        context.state.set(position_key(cycle_id, participant), NO_POSITION.encode())
    context.emit("cycle_opened", cycle_id=cycle_id, currency=currency, participants=list(participants))


def _open_status(context: CallContext, cycle_id: str) -> CycleStatus:
    status = get_status(context.state, cycle_id)
    if status is None:
        raise ContractError("cycle_not_found", f"no netting cycle {cycle_id}")
    if status.settled:
        raise ContractError("cycle_already_settled", f"netting cycle {cycle_id} is settled")
    return status


@register("netting", "add_obligation", check=check_obligation_args)
def process_add_obligation(context: CallContext, args: dict[str, Any]) -> None:
    cycle_id, creditor, amount = _obligation_args(context.state, args)
    debtor = context.sender
    status = _open_status(context, cycle_id)
    # Owing oneself nets to nothing and would hide mistakes.
    if creditor == debtor:
        raise ContractError("payer_equals_payee")
    # Both sides take part in the cycle.
    debtor_position = get_position(context.state, cycle_id, debtor)
    if debtor_position is None:
        raise ContractError("not_participant", f"{debtor} is not a participant of {cycle_id}")
    creditor_position = get_position(context.state, cycle_id, creditor)
    if creditor_position is None:
        raise ContractError("not_participant", f"{creditor} is not a participant of {cycle_id}")
    # Bounded: the count, and the gross sum (which bounds every position).
    if status.obligations_count >= OBLIGATIONS_PER_CYCLE_MAX:
        raise ContractError("too_many_obligations", f"at most {OBLIGATIONS_PER_CYCLE_MAX} per cycle")
    if status.gross_minor + amount > BALANCE_MAX:
        raise ContractError("cycle_gross_overflow", "the cycle's obligations would sum above 2^63 - 1")
    # Each obligation is checked as the payment it stands for.
    cycle = get_cycle(context.state, cycle_id)
    assert cycle is not None  # a status is written only with its cycle
    compliance.check_may_send(context, debtor, cycle.currency, amount)
    compliance.check_may_receive(context, creditor)
    # Effects: the running sums; no money moves until settle.
    context.state.set(status_key(cycle_id), CycleStatus(False, status.obligations_count + 1,
                                                        status.gross_minor + amount).encode())
    context.state.set(position_key(cycle_id, debtor),
                      Position(debtor_position.owed_minor + amount, debtor_position.owed_to_minor).encode())
    context.state.set(position_key(cycle_id, creditor),
                      Position(creditor_position.owed_minor, creditor_position.owed_to_minor + amount).encode())
    context.emit("obligation_added", cycle_id=cycle_id, to=creditor, currency=cycle.currency, amount_minor=amount)


def compute_net_positions(state: StateView, cycle_id: str, cycle: NettingCycle) -> dict[str, int]:
    """Each participant's net position (owed to it minus owed by it); they sum to zero."""
    positions = {}
    for participant in cycle.participants:
        position = get_position(state, cycle_id, participant)
        assert position is not None  # open_cycle wrote one per participant
        positions[participant] = position.net_minor
    assert sum(positions.values()) == 0, positions  # every obligation is owed by one and owed to another
    return positions


@register("netting", "settle", check=check_settle_args)
def process_settle(context: CallContext, args: dict[str, Any]) -> None:
    cycle_id = _cycle_id(args)
    status = _open_status(context, cycle_id)
    cycle = get_cycle(context.state, cycle_id)
    assert cycle is not None  # a status is written only with its cycle
    # Only the operator closes its cycle.
    if context.sender != cycle.operator:
        raise ContractError("not_authorized", f"only {cycle.operator} may settle {cycle_id}")
    positions = compute_net_positions(context.state, cycle_id, cycle)
    netting_before = context.state.get_account(NETTING_ACCOUNT).get_balance(cycle.currency)
    # Net payers pay in (in participant order: the first one short of funds names the failure) ...
    for participant, net in positions.items():
        if net < 0:
            compliance.check_standing(context, participant)
            debit(context, participant, cycle.currency, -net)
            credit(context, NETTING_ACCOUNT, cycle.currency, -net)
    # ... then net receivers are paid out.
    for participant, net in positions.items():
        if net > 0:
            compliance.check_standing(context, participant)
            debit(context, NETTING_ACCOUNT, cycle.currency, net)
            credit(context, participant, cycle.currency, net)
    assert context.state.get_account(NETTING_ACCOUNT).get_balance(cycle.currency) == netting_before
    context.state.set(status_key(cycle_id), CycleStatus(True, status.obligations_count, status.gross_minor).encode())
    context.emit("cycle_settled", cycle_id=cycle_id, currency=cycle.currency,
                 obligations_count=status.obligations_count, gross_minor=status.gross_minor,
                 net_minor=sum(net for net in positions.values() if net > 0), positions=positions)


for _record in (NettingCycle, CycleStatus, Position):
    enc.check_record_wire(_record)

__all__ = [
    "NETTING_ACCOUNT",
    "OBLIGATIONS_PER_CYCLE_MAX",
    "PARTICIPANTS_PER_CYCLE_MAX",
    "CycleStatus",
    "NettingCycle",
    "Position",
    "compute_net_positions",
    "cycle_key",
    "get_cycle",
    "get_position",
    "get_status",
    "position_key",
    "status_key",
]
