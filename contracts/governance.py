"""governance: changes to who takes part, decided by more than 2/3 of the validators' voting power.

A validator proposes a change (its proposal counts as its approval); other
validators approve it; the approval that brings the approvers' power above
two thirds of the set in force executes it, in that transaction. Voting
power is counted in the set in force when each approval is made, and again
at execution (an approver no longer in the set no longer counts).

Actions, each with its arguments in ``args``:

- ``add_member {name, public_key, roles}``: a new member, with an empty
  account and KYC pending (a registrar verifies it: contracts/compliance.py);
- ``remove_member {name}``: only with no balance left; its account (nonce)
  is kept, so its old transactions can never be replayed;
- ``set_roles {name, roles}``; ``rotate_key {name, public_key}``;
- ``set_param {name, value}``: a chain parameter;
- ``set_validators {validators: [[name, public_key, voting_power], ...],
  effective_height}``: the validator set changes at ``effective_height``, which
  must be at least two heights after the executing block, one change at a
  time. The set waits under ``validators/pending`` and certifies blocks from
  ``effective_height`` on (``ledger.state.validator_set_in_force``); the block
  at that height moves it into ``validators`` before its transactions (a
  block step), so nodes, the store and the auditor switch at the same height.

State: ``governance/proposal/<id>`` = Proposal; ``validators/pending`` =
PendingValidators [effective_height, ValidatorSet].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from contracts import compliance
from contracts.runtime import BlockContext, CallContext, ContractError, register, register_block_step
from ledger import encoding as enc
from ledger.errors import LedgerError
from ledger.genesis import ROLES_PER_MEMBER_MAX, Member
from ledger.keys import PUBLIC_KEY_BYTES
from ledger.names import is_identifier, is_member_name, is_role
from ledger.state import EMPTY_ACCOUNT, KEY_PENDING_VALIDATORS, KEY_VALIDATORS, PendingValidators, StateView
from ledger.validators import VALIDATORS_MAX, Validator, ValidatorSet

ACTIONS = ("add_member", "remove_member", "set_roles", "rotate_key", "set_param", "set_validators")
APPROVERS_MAX = VALIDATORS_MAX
FIXED_PARAMS = frozenset({"day_ms"})
"""Parameters governance may not change: day numbers already recorded (batches, daily limits) depend on them."""
EFFECTIVE_DELAY_MIN = 2
"""A validator-set change takes effect at least this many heights after the block that decides it."""


@dataclass(frozen=True, slots=True)
class Proposal(enc.Record):
    proposer: str
    action: str
    args: dict[str, Any]
    approvals: tuple[str, ...]
    """Sorted names of the validators who approved (the proposer first approves by proposing)."""
    executed_height: int
    """0 while open; the height of the block that executed it."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.text(64), enc.text(32), enc.text_map, enc.array_of(enc.text(64), APPROVERS_MAX), enc.uint(63))


def proposal_key(proposal_id: str) -> bytes:
    return b"governance/proposal/" + proposal_id.encode()


def _validator_power(context: CallContext) -> int:
    validator = context.state.get_validator_set().get(context.sender)
    if validator is None:
        raise ContractError("not_a_validator", f"{context.sender} is not in the validator set in force")
    return validator.voting_power


def _proposal_id(args: dict[str, Any]) -> str:
    proposal_id = args.get("proposal_id")
    if not is_identifier(proposal_id):
        raise ContractError("invalid_argument", "proposal_id must be an identifier ([a-z][a-z0-9_]{0,31})")
    assert isinstance(proposal_id, str)
    return proposal_id


def _public_key(value: Any) -> bytes:
    if type(value) is not bytes or len(value) != PUBLIC_KEY_BYTES:
        raise ContractError("invalid_argument", f"public_key must be {PUBLIC_KEY_BYTES} bytes")
    return value


def _roles(value: Any) -> tuple[str, ...]:
    if type(value) is not list or not value or not all(is_role(role) for role in value):
        raise ContractError("invalid_argument", "roles must be a non-empty list of known roles")
    roles = tuple(sorted(set(value)))
    if len(roles) > ROLES_PER_MEMBER_MAX:  # the member record could not be decoded again
        raise ContractError("invalid_argument", f"at most {ROLES_PER_MEMBER_MAX} roles")
    return roles


def _name(args: dict[str, Any]) -> str:
    name = args.get("name")
    if not is_member_name(name):
        raise ContractError("invalid_argument", f"name {name!r} is not a valid member name")
    assert isinstance(name, str)
    return name


def _validator_set(value: Any) -> ValidatorSet:
    if type(value) is not list or not value or len(value) > VALIDATORS_MAX:
        raise ContractError("invalid_argument", f"validators must be a list of 1 to {VALIDATORS_MAX} entries")
    entries = []
    for entry in value:
        if type(entry) is not list or len(entry) != 3 or not is_member_name(entry[0]) or type(entry[2]) is not int:
            raise ContractError("invalid_argument", "each validator is [name, public_key, voting_power]")
        entries.append(Validator(entry[0], _public_key(entry[1]), entry[2]))
    try:
        return ValidatorSet(tuple(sorted(entries, key=lambda validator: validator.name)))
    except LedgerError as error:
        raise ContractError("invalid_argument", error.detail) from None


def check_action(state: StateView, action: Any, args: Any, height: int | None = None) -> None:
    """The action's arguments are well formed (and, when ``height`` is given, still applicable)."""
    if action not in ACTIONS:
        raise ContractError("invalid_argument", f"action must be one of {', '.join(ACTIONS)}")
    if type(args) is not dict:
        raise ContractError("invalid_argument", "args must be a map")
    if action == "set_param":
        if not is_identifier(args.get("name")) or type(args.get("value")) is not int:
            raise ContractError("invalid_argument", "set_param needs an identifier name and an integer value")
        if not -(2**63) <= args["value"] < 2**63:
            raise ContractError("invalid_argument", "a parameter is a signed 64-bit integer")
        if args["name"] in FIXED_PARAMS:
            raise ContractError("param_fixed", f"{args['name']} is fixed at genesis")
        return
    if action == "set_validators":
        _validator_set(args.get("validators"))
        effective = args.get("effective_height")
        if type(effective) is not int or effective < 1:
            raise ContractError("invalid_argument", "effective_height must be a positive height")
        if height is not None and effective < height + EFFECTIVE_DELAY_MIN:
            raise ContractError("effective_height_passed",
                                f"effective_height {effective} is less than {EFFECTIVE_DELAY_MIN} after {height}")
        if height is not None and state.get(KEY_PENDING_VALIDATORS) is not None:
            raise ContractError("validator_change_pending", "another validator-set change is scheduled")
        return
    name = _name(args)
    member = state.get_member(name)
    if action == "add_member":
        _public_key(args.get("public_key"))
        _roles(args.get("roles"))
        if member is not None:
            raise ContractError("member_exists", f"{name} is already a member")
        return
    if member is None:
        raise ContractError("unknown_account", f"{name} is not a member")
    if action == "set_roles":
        _roles(args.get("roles"))
    elif action == "rotate_key":
        _public_key(args.get("public_key"))


def _check_propose_args(state: StateView, args: dict[str, Any]) -> None:
    _proposal_id(args)
    check_action(state, args.get("action"), args.get("args"))


@register("governance", "propose", check=_check_propose_args)
def process_propose(context: CallContext, args: dict[str, Any]) -> None:
    power = _validator_power(context)
    proposal_id = _proposal_id(args)
    check_action(context.state, args.get("action"), args.get("args"))
    if context.state.get(proposal_key(proposal_id)) is not None:
        raise ContractError("proposal_exists", f"a proposal {proposal_id!r} exists")
    proposal = Proposal(context.sender, args["action"], args["args"], (context.sender,), 0)
    context.emit("proposed", proposal_id=proposal_id, proposer=context.sender, action=proposal.action)
    _maybe_execute(context, proposal_id, proposal, power)


def _check_approve_args(_state: StateView, args: dict[str, Any]) -> None:
    _proposal_id(args)


@register("governance", "approve", check=_check_approve_args)
def process_approve(context: CallContext, args: dict[str, Any]) -> None:
    _validator_power(context)
    proposal_id = _proposal_id(args)
    data = context.state.get(proposal_key(proposal_id))
    if data is None:
        raise ContractError("unknown_proposal", f"no proposal {proposal_id!r}")
    proposal = Proposal.decode(data)
    if proposal.executed_height:
        raise ContractError("proposal_executed", f"{proposal_id} was executed at height {proposal.executed_height}")
    if context.sender in proposal.approvals:
        raise ContractError("already_approved", f"{context.sender} already approved {proposal_id}")
    approvals = tuple(sorted((*proposal.approvals, context.sender)))
    proposal = Proposal(proposal.proposer, proposal.action, proposal.args, approvals, 0)
    context.emit("approved", proposal_id=proposal_id, validator=context.sender)
    validator_set = context.state.get_validator_set()
    power = sum(v.voting_power for name in approvals if (v := validator_set.get(name)) is not None)
    _maybe_execute(context, proposal_id, proposal, power)


def _maybe_execute(context: CallContext, proposal_id: str, proposal: Proposal, power: int) -> None:
    validator_set = context.state.get_validator_set()
    if not validator_set.has_quorum(power):
        context.state.set(proposal_key(proposal_id), proposal.encode())
        return
    check_action(context.state, proposal.action, proposal.args, context.block.height)
    _execute(context, proposal.action, proposal.args)
    executed = Proposal(proposal.proposer, proposal.action, proposal.args, proposal.approvals, context.block.height)
    context.state.set(proposal_key(proposal_id), executed.encode())
    context.emit("executed", proposal_id=proposal_id, action=proposal.action, power=power,
                 total_power=validator_set.total_power)


def _execute(context: CallContext, action: str, args: dict[str, Any]) -> None:
    state = context.state
    if action == "set_param":
        state.put_param(args["name"], args["value"])
    elif action == "set_validators":
        pending = PendingValidators(args["effective_height"], _validator_set(args["validators"]))
        state.set(KEY_PENDING_VALIDATORS, pending.encode())
    elif action == "add_member":
        name = args["name"]
        state.put_member(Member(name, args["public_key"], _roles(args["roles"])))
        if state.get(b"account/" + name.encode()) is None:
            state.put_account(name, EMPTY_ACCOUNT)
        # KYC pending, not frozen (also for a member removed before and added again).
        compliance.put_status(state, name, compliance.ComplianceStatus(compliance.KYC_PENDING, False))
    elif action == "remove_member":
        if state.get_account(args["name"]).balances:
            raise ContractError("member_has_balance", f"{args['name']} still holds money")
        state.delete(b"member/" + args["name"].encode())
        # Nothing may be paid to an account nobody can sign for any more (escrow releases, net positions).
        compliance.put_status(state, args["name"], compliance.ComplianceStatus(compliance.KYC_REVOKED, True))
    else:
        member = state.get_member(args["name"])
        assert member is not None  # check_action ran on this state
        if action == "set_roles":
            state.put_member(Member(member.name, member.public_key, _roles(args["roles"])))
        else:
            state.put_member(Member(member.name, _public_key(args["public_key"]), member.roles))


@register_block_step
def apply_due_validator_set(state: StateView, block: BlockContext) -> None:
    """The block at the effective height, before its transactions, makes the scheduled set the one in force.

    (It already certified that block: ``validator_set_in_force`` counts a pending set from its effective height.)
    """
    data = state.get(KEY_PENDING_VALIDATORS)
    if data is None:
        return
    pending = PendingValidators.decode(data)
    if block.height >= pending.effective_height:
        state.set(KEY_VALIDATORS, pending.validator_set.encode())
        state.delete(KEY_PENDING_VALIDATORS)


enc.check_record_wire(Proposal)

__all__ = ["Proposal", "apply_due_validator_set", "check_action"]
