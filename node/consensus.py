"""The BFT consensus core: Tendermint as a pure state machine.

We implement Algorithm 1 of Buchman, Kwon and Milosevic, "The latest gossip
on BFT consensus" (2018, arXiv:1807.04938). Comments give the paper's line
numbers (L22 is line 22). n = 3f + 1 validators weighted by voting power;
"2f+1" means ``ValidatorSet.has_quorum`` (strictly more than 2/3 of the
power) and "f+1" means strictly more than 1/3 of the power.

The core does no I/O. It has no socket, clock, thread, randomness or disk.
Events come in, and each one carries the current time ``now_ms``:

    start(now_ms)                              begin (or resume) the current height
    on_proposal(ProposalMessage, now_ms)       a proposal and its block, from a peer or from us
    on_vote(SignedVote, now_ms)                a prevote or precommit, from a peer or from us
    on_timeout(Timeout, now_ms)                a timeout we scheduled has fired
    on_committed(height, validator_set, now_ms)  the shell stored the block at ``height``
    on_tick(now_ms)                            periodic; re-sends our messages if we are stuck

Each event returns a list of actions for the shell to perform *in order*:

    SignProposal(proposal, block, state)
    SignVote(vote, state, proof_of_lock)  sign via the WAL (recording state and proof), then feed back
    Broadcast(message)                    send to every peer
    ScheduleTimeout(height, round, step, delay_ms)
    CommitBlock(block, certificate)       store durably, then call on_committed
    ReportEvidence(vote_a, vote_b)        one validator signed two different votes

Signing goes through the shell. The core asks with ``SignVote`` or
``SignProposal``. The shell checks its signer WAL (``node.wal``), which never
signs a lower (height, round, step) or a different payload at the same one.
The shell records ``state`` (and, with a precommit for a block, its
``ProofOfLock``), fsyncs, signs, and feeds the signed message back
through ``on_vote`` / ``on_proposal`` like any other input. The core counts
its own messages only when they come back, and it broadcasts them from there.
The shell must handle sign actions in the order they were emitted (a FIFO
queue that appends the actions of fed-back messages at the end), because the
WAL refuses to go back in (round, step).

Deviations from Algorithm 1, each on purpose:

1. Signing through the shell (above). If the WAL refuses, the core still
   moves on (its step has advanced). It just lacks that vote.
2. The proposer also schedules timeoutPropose (the paper does so only for
   other validators, L21). If its proposal is refused or lost, it does not
   wait forever.
3. A commit step. L49 decides and emits ``CommitBlock``. L52-54 (next
   height, reset, StartRound(0)) run on ``on_committed``, once the block is
   durable. ``on_committed`` may also skip heights the shell got by block
   sync, and a notice for a height already passed is ignored.
4. Retransmission. The paper assumes gossip delivers every message after
   GST. We have point-to-point broadcast with loss, so ``on_tick`` re-sends
   our own votes at this height (the latest ``OWN_VOTES_RESENT_MAX``), our
   proposal for this round, and the proof-of-lock prevotes behind it, when
   the round and step have not changed for ``rebroadcast_interval_ms``. A
   proposer that re-proposes its validValue also broadcasts the
   proof-of-lock prevotes with it, as CometBFT's gossip does.
5. Bounded memory. Votes and proposals are kept for the current height and
   rounds up to ``round + ROUNDS_AHEAD_MAX``. Messages for height + 1 are
   buffered, at most ``FUTURE_MESSAGES_MAX`` in all and
   ``FUTURE_MESSAGES_PER_SENDER_MAX`` per claimed sender. They are checked
   when that height starts. Older and further heights are dropped (block
   sync is the shell's job). At most ``PROPOSALS_PER_ROUND_MAX`` signed
   proposals are kept per round. L22/L28 use the first, and L36/L49 accept
   any of them: a second signed proposal from the same proposer is still
   "a PROPOSAL from proposer(h, r)".
6. Restart. ``resume`` (the state last recorded in the WAL) restores round,
   step, lock and valid round. ``proof_of_lock`` (the block and 2f+1
   prevotes recorded with our last precommit for a block) restores
   validValue, so a validator that crashed while locked can re-propose it
   with its proof. Without it, the locked validators of a crashed majority
   could wait forever for a block nobody holds. The paper keeps everything
   in memory and has no restarts. A validValue set later, while already in
   precommit (L42 without L37), is not recorded. If the resumed proposer
   lacks that block, it proposes a fresh one (pol_round -1). That is safe,
   because locked validators prevote nil, but it costs the round.
7. L55 jumps to the highest round that has f+1 power, not just any such round.
8. valid(v) (``Application.validate_block``) runs at most once per block
   hash per height. It is deterministic, so caching does not change a verdict.
9. Equivocation. The paper counts messages, so an equivocator's two
   prevotes count for both values. We do the same for "2f+1 for id(v)", but
   only for nil or a value proposed at this height (a bound on memory), and
   "2f+1 of any kind" and "f+1" count each validator once. Keeping only the
   first vote would be simpler, but it loses liveness: a node that first saw
   the equivocator's nil could never accept a proof-of-lock that holds its
   prevote for the block. The simulator found that case.

Messages are checked before they count. A proposal must come from the
proposer of its (height, round), carry its block (same hash, same height),
have -1 <= pol_round < round, and carry a valid signature. A vote must come
from a validator of the set, be a prevote or precommit for a 32-byte hash or
nil, and carry a valid signature. An identical copy of a vote is ignored
before its signature is checked. A second, different vote of one validator
for one (round, kind) with a valid signature is reported once as
``ReportEvidence`` (and counted as in deviation 9). A core without a key
(``validator_name`` None or not in the set) runs the same rules and commits,
but never asks to sign.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar, Protocol

from ledger import encoding as enc
from ledger.block import (
    NIL_BLOCK_HASH,
    VOTE_PRECOMMIT,
    VOTE_PREVOTE,
    Block,
    CommitCertificate,
    Vote,
)
from ledger.hashing import HASH_BYTES
from ledger.validators import VALIDATORS_MAX, ValidatorSet
from node.messages import POL_ROUND_NONE, Proposal, ProposalMessage, SignedVote, decode_block_bytes

ROUNDS_AHEAD_MAX = 32
"""Votes and proposals for rounds above ``round + ROUNDS_AHEAD_MAX`` are dropped."""
FUTURE_MESSAGES_PER_SENDER_MAX = 16
"""Messages buffered for height + 1 per claimed sender (a few rounds of one fast peer)."""
FUTURE_MESSAGES_MAX = 2048
"""Messages buffered for height + 1 in all."""
PROPOSALS_PER_ROUND_MAX = 2
"""Signed proposals kept per round (more than one only from an equivocating proposer)."""
OWN_VOTES_RESENT_MAX = 64
"""Our own votes re-sent by ``on_tick``: the latest 32 rounds' prevote and precommit."""
RULE_FIRINGS_PER_EVENT_MAX = 10_000
"""Bound on the upon-rule loop per event (each firing advances a step or sets a once-flag)."""
ROUND_MAX = 2**32 - 2
"""The last round we may start (round is a u32 on the wire; round + 1 must still fit)."""

assert FUTURE_MESSAGES_PER_SENDER_MAX * VALIDATORS_MAX <= FUTURE_MESSAGES_MAX
assert OWN_VOTES_RESENT_MAX >= 2  # at least this round's prevote and precommit
assert PROPOSALS_PER_ROUND_MAX >= 1


class Step(IntEnum):
    """step_p of the paper, plus COMMIT: decided, waiting for the block to be durable."""

    PROPOSE = 1
    PREVOTE = 2
    PRECOMMIT = 3
    COMMIT = 4


@dataclass(frozen=True, slots=True)
class ConsensusConfig:
    """Timeouts grow linearly with the round (the paper's timeoutX(r) = initX + r * deltaX)."""

    timeout_propose_base_ms: int = 1000
    timeout_propose_delta_ms: int = 500
    timeout_prevote_base_ms: int = 500
    timeout_prevote_delta_ms: int = 250
    timeout_precommit_base_ms: int = 500
    timeout_precommit_delta_ms: int = 250
    rebroadcast_interval_ms: int = 1000
    """Re-send our messages when the round and step have not changed for this long."""

    def __post_init__(self) -> None:
        """Operators set these: a bad value is a ValueError, not an assert."""
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            is_positive_required = not name.endswith("_delta_ms")
            if type(value) is not int or value < 0 or (is_positive_required and value == 0):
                raise ValueError(f"consensus config {name} must be a {'positive' if is_positive_required else 'non-negative'} integer")

    def timeout_ms(self, step: Step, round_number: int) -> int:
        if step == Step.PROPOSE:
            return self.timeout_propose_base_ms + round_number * self.timeout_propose_delta_ms
        if step == Step.PREVOTE:
            return self.timeout_prevote_base_ms + round_number * self.timeout_prevote_delta_ms
        assert step == Step.PRECOMMIT, step
        return self.timeout_precommit_base_ms + round_number * self.timeout_precommit_delta_ms


@dataclass(frozen=True, slots=True)
class ConsensusState(enc.Record):
    """What the core is doing: for ``GET /v1/status`` and for resuming after a restart."""

    height: int
    """h_p: the height being decided."""
    round: int
    """round_p."""
    step: int
    """step_p (a ``Step``)."""
    locked_round: int
    """lockedRound_p, -1 when not locked."""
    locked_block_hash: bytes
    """id(lockedValue_p), b"" when not locked."""
    valid_round: int
    """validRound_p, -1 when none."""
    valid_block_hash: bytes
    """id(validValue_p), b"" when none."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.uint(64),
        enc.uint(32),
        enc.uint(8),
        enc.sint64,
        enc.var_bytes(HASH_BYTES),
        enc.sint64,
        enc.var_bytes(HASH_BYTES),
    )


@dataclass(frozen=True, slots=True)
class ProofOfLock(enc.Record):
    """validValue with the 2f+1 prevotes that made it valid: what a restarted proposer needs.

    The core attaches one to every precommit for a block (the moment it locks, L36-43); the
    shell records it in the WAL with that signature, so a validator that crashes while locked
    can still re-propose its valid value with its proof (L15-16, L28) instead of knowing only
    a hash. On the wire the block is its canonical bytes, as in ``ProposalMessage``.
    """

    round: int
    """validRound: the round of the prevotes."""
    block: Block
    """validValue."""
    prevotes: tuple[SignedVote, ...]
    """Prevotes for the block at ``round`` holding more than 2/3 of the power."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.uint(32),
        decode_block_bytes,
        enc.array_of(enc.record(SignedVote), VALIDATORS_MAX),
    )

    def to_wire(self) -> list[object]:
        return [self.round, self.block.encode(), [prevote.to_wire() for prevote in self.prevotes]]

    @property
    def height(self) -> int:
        return self.block.height


class Application(Protocol):
    """What consensus needs from the node (and from the simulator's fake)."""

    def propose_block(self, height: int, round: int, timestamp_ms: int) -> Block:
        """Build a block at ``height`` on the committed head."""
        ...

    def validate_block(self, block: Block) -> bool:
        """Deterministic: header links, roots, transactions (re-executes)."""
        ...


# --- Events and actions -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timeout:
    height: int
    round: int
    step: Step


@dataclass(frozen=True, slots=True)
class SignProposal:
    """Ask the shell to sign ``proposal`` (WAL first), then feed back ``ProposalMessage(signed, block)``."""

    proposal: Proposal
    block: Block
    state: ConsensusState
    """The core's state as it asks: the shell records it with the signature."""


@dataclass(frozen=True, slots=True)
class SignVote:
    """Ask the shell to sign ``vote`` (WAL first), then feed the ``SignedVote`` back."""

    vote: Vote
    state: ConsensusState
    """The core's state as it asks (for a precommit: with the new lock)."""
    proof_of_lock: ProofOfLock | None = None
    """With a precommit for a block: the block and its prevotes, to record with the signature."""


@dataclass(frozen=True, slots=True)
class Broadcast:
    message: SignedVote | ProposalMessage


@dataclass(frozen=True, slots=True)
class ScheduleTimeout:
    height: int
    round: int
    step: Step
    delay_ms: int

    @property
    def timeout(self) -> Timeout:
        return Timeout(self.height, self.round, self.step)


@dataclass(frozen=True, slots=True)
class CommitBlock:
    block: Block
    certificate: CommitCertificate


@dataclass(frozen=True, slots=True)
class ReportEvidence:
    """``vote_a`` (counted first) and ``vote_b`` are both signed by one validator, for the same
    (height, round, kind), and differ."""

    vote_a: SignedVote
    vote_b: SignedVote


Action = SignProposal | SignVote | Broadcast | ScheduleTimeout | CommitBlock | ReportEvidence


# --- Vote bookkeeping ---------------------------------------------------------------------


@dataclass(slots=True)
class VoteSet:
    """The votes of one (height, round, kind), with power sums.

    ``votes`` holds the first vote of each validator. It decides "2f+1 of any
    kind" (L34, L47), and a later different vote is evidence against it.
    ``by_block_hash`` holds every validator's vote for each value, an
    equivocator's conflicting votes included. It decides "2f+1 for id(v)", as
    the paper counts messages for a value. Otherwise a node that first saw an
    equivocator's nil prevote could never count a proof-of-lock that holds the
    equivocator's prevote for the block (CometBFT admits such votes the same
    way, through ``SetPeerMaj23``).
    """

    votes: dict[str, SignedVote] = field(default_factory=dict)
    by_block_hash: dict[bytes, dict[str, SignedVote]] = field(default_factory=dict)
    power_by_block_hash: dict[bytes, int] = field(default_factory=dict)
    power_total: int = 0

    def add(self, signed_vote: SignedVote, power: int) -> None:
        """A validator's first vote: it counts for its value and for "any"."""
        vote = signed_vote.vote
        assert vote.validator not in self.votes, vote
        self.votes[vote.validator] = signed_vote
        self.power_total += power
        self.add_for_block(signed_vote, power)

    def add_for_block(self, signed_vote: SignedVote, power: int) -> None:
        """A vote for its value only (an equivocator's second vote adds here, not to "any")."""
        vote = signed_vote.vote
        for_block = self.by_block_hash.setdefault(vote.block_hash, {})
        assert vote.validator not in for_block, vote
        for_block[vote.validator] = signed_vote
        self.power_by_block_hash[vote.block_hash] = self.power_by_block_hash.get(vote.block_hash, 0) + power

    def has_vote_for(self, block_hash: bytes, validator: str) -> bool:
        return validator in self.by_block_hash.get(block_hash, {})

    def get_power(self, block_hash: bytes) -> int:
        return self.power_by_block_hash.get(block_hash, 0)

    def get_votes_for(self, block_hash: bytes) -> list[SignedVote]:
        return list(self.by_block_hash.get(block_hash, {}).values())


# --- The core -----------------------------------------------------------------------------


class ConsensusCore:
    """One validator's (or follower's) Tendermint state machine for one chain."""

    def __init__(
        self,
        *,
        chain_id: str,
        validator_set: ValidatorSet,
        height: int,
        application: Application,
        validator_name: str | None = None,
        config: ConsensusConfig | None = None,
        resume: ConsensusState | None = None,
        proof_of_lock: ProofOfLock | None = None,
    ) -> None:
        assert height >= 1, height
        self.chain_id = chain_id
        self.application = application
        self.validator_name = validator_name
        self.config = config or ConsensusConfig()
        self._actions: list[Action] = []
        self._now_ms = 0
        self._is_started = False
        self._future_messages: list[SignedVote | ProposalMessage] = []
        self._future_keys: set[bytes] = set()
        self._future_count_by_sender: dict[str, int] = {}
        self._enter_height(height, validator_set)
        if resume is not None and resume.height == height:
            self._restore(resume, proof_of_lock)

    # --- Reading the state ---

    @property
    def height(self) -> int:
        return self._height

    @property
    def round(self) -> int:
        return self._round

    @property
    def step(self) -> Step:
        return self._step

    @property
    def validator_set(self) -> ValidatorSet:
        return self._validator_set

    @property
    def is_validator(self) -> bool:
        """True if this core has a key in the set in force at its height (it signs)."""
        return self._is_validator

    def get_state(self) -> ConsensusState:
        return ConsensusState(
            self._height,
            self._round,
            int(self._step),
            self._locked_round,
            self._locked_block_hash,
            self._valid_round,
            self._valid_block_hash,
        )

    # --- Events ---

    def start(self, now_ms: int) -> list[Action]:
        """L10: StartRound(0), or resume the round and step restored from the WAL."""
        assert not self._is_started
        self._now_ms = now_ms
        self._is_started = True
        self._last_progress_ms = now_ms
        if self._step == Step.PROPOSE:
            self._start_round(self._round)
        self._process_rules()
        return self._take_actions()

    def on_proposal(self, message: ProposalMessage, now_ms: int) -> list[Action]:
        self._now_ms = now_ms
        proposal = message.proposal
        if proposal.height == self._height + 1:
            self._buffer_future(message, proposal.proposer, message.signed_proposal.signature)
        elif proposal.height == self._height and self._accept_proposal(message):
            self._process_rules()
        return self._take_actions()

    def on_vote(self, signed_vote: SignedVote, now_ms: int) -> list[Action]:
        self._now_ms = now_ms
        vote = signed_vote.vote
        if vote.height == self._height + 1:
            self._buffer_future(signed_vote, vote.validator, signed_vote.signature)
        elif vote.height == self._height and self._accept_vote(signed_vote):
            self._process_rules()
        return self._take_actions()

    def on_timeout(self, timeout: Timeout, now_ms: int) -> list[Action]:
        """L57-67: a timeout acts only if we are still in its height, round (and step)."""
        self._now_ms = now_ms
        is_current = timeout.height == self._height and timeout.round == self._round
        if not self._is_started or not is_current or self._step == Step.COMMIT:
            return self._take_actions()
        if timeout.step == Step.PROPOSE and self._step == Step.PROPOSE:
            self._enter_prevote(NIL_BLOCK_HASH)  # L57-60: OnTimeoutPropose
        elif timeout.step == Step.PREVOTE and self._step == Step.PREVOTE:
            self._enter_precommit(NIL_BLOCK_HASH)  # L61-64: OnTimeoutPrevote
        elif timeout.step == Step.PRECOMMIT:
            self._start_round(self._round + 1)  # L65-67: OnTimeoutPrecommit
        self._process_rules()
        return self._take_actions()

    def on_committed(self, height: int, validator_set: ValidatorSet, now_ms: int) -> list[Action]:
        """L52-54 once the block at ``height`` is durable; ``validator_set`` is in force at height + 1.

        ``height`` may be above our height (the shell synced blocks); a notice for a height we
        have already left is ignored (a sync overtook it).
        """
        self._now_ms = now_ms
        if height < self._height:
            return self._take_actions()
        buffered = self._future_messages
        self._future_messages = []
        self._future_keys = set()
        self._future_count_by_sender = {}
        self._enter_height(height + 1, validator_set)  # L52-53
        for message in buffered:
            if isinstance(message, ProposalMessage):
                if message.proposal.height == self._height:
                    self._accept_proposal(message)
            elif message.vote.height == self._height:
                self._accept_vote(message)
        if self._is_started:
            self._start_round(0)  # L54
            self._process_rules()
        return self._take_actions()

    def on_tick(self, now_ms: int) -> list[Action]:
        """Re-send our messages for this height if the round and step have not moved (deviation 4)."""
        self._now_ms = now_ms
        is_stuck = now_ms - self._last_progress_ms >= self.config.rebroadcast_interval_ms
        if self._is_started and self._step != Step.COMMIT and is_stuck:
            self._last_progress_ms = now_ms
            self._rebroadcast()
        return self._take_actions()

    # --- Heights and rounds ---

    def _enter_height(self, height: int, validator_set: ValidatorSet) -> None:
        """Reset everything per height (L53): lock, valid value, message log."""
        self._height = height
        self._validator_set = validator_set
        self._total_power = validator_set.total_power
        self._validators = {validator.name: validator for validator in validator_set.validators}
        self._is_validator = self.validator_name is not None and self.validator_name in self._validators
        self._round = 0
        self._step = Step.PROPOSE
        self._last_progress_ms = self._now_ms
        self._locked_round = -1  # L7
        self._locked_block_hash = NIL_BLOCK_HASH  # L6 (id of lockedValue)
        self._valid_round = -1  # L9
        self._valid_block_hash = NIL_BLOCK_HASH  # L8 (id of validValue)
        self._proposals: dict[int, dict[bytes, ProposalMessage]] = {}
        self._votes: dict[tuple[int, int], VoteSet] = {}
        self._round_power: dict[int, int] = {}
        self._round_senders: dict[int, set[str]] = {}
        self._precommit_quorums: dict[int, set[bytes]] = {}
        self._rules_fired: set[tuple[int, int]] = set()
        self._validity_by_block_hash: dict[bytes, bool] = {}
        self._evidence_reported: set[tuple[str, int, int]] = set()
        self._own_votes: list[SignedVote] = []
        self._known_blocks: dict[bytes, Block] = {}
        """Blocks known without a proposal: the valid block restored from the WAL."""

    def _restore(self, resume: ConsensusState, proof_of_lock: ProofOfLock | None) -> None:
        """Deviation 6: continue where the WAL says we were, with the valid block if it was recorded."""
        self._round = resume.round
        self._step = Step.PRECOMMIT if resume.step == Step.COMMIT else Step(resume.step)
        self._locked_round = resume.locked_round
        self._locked_block_hash = resume.locked_block_hash
        self._valid_round = resume.valid_round
        self._valid_block_hash = resume.valid_block_hash
        if proof_of_lock is not None and proof_of_lock.height == self._height:
            self._known_blocks[proof_of_lock.block.compute_hash()] = proof_of_lock.block
            for prevote in proof_of_lock.prevotes:
                if prevote.vote.height == self._height and prevote.vote.round == proof_of_lock.round:
                    self._accept_vote(prevote)  # checked like any vote

    def _start_round(self, round_number: int) -> None:
        """L11-21: StartRound(round)."""
        assert round_number <= ROUND_MAX, round_number
        self._round = round_number  # L12
        self._step = Step.PROPOSE  # L13
        self._last_progress_ms = self._now_ms
        proposer = self._validator_set.get_proposer(self._height, round_number)
        if self._is_validator and proposer.name == self.validator_name:  # L14
            self._propose()  # L15-19
        self._schedule_timeout(Step.PROPOSE)  # L21 (for the proposer too: deviation 2)

    def _propose(self) -> None:
        """L15-19: propose validValue with its round, else a new block from the application."""
        valid_block = self._get_known_block(self._valid_block_hash)
        if self._valid_round >= 0 and valid_block is not None:
            block, pol_round = valid_block, self._valid_round  # L16
        else:
            block = self.application.propose_block(self._height, self._round, self._now_ms)  # L18
            pol_round = POL_ROUND_NONE
        assert block.height == self._height, (block.height, self._height)
        assert self.validator_name is not None
        proposal = Proposal(self._height, self._round, pol_round, block.compute_hash(), self.validator_name)
        self._actions.append(SignProposal(proposal, block, self.get_state()))  # L19
        if pol_round >= 0:
            self._broadcast_proof_of_lock(pol_round, proposal.block_hash)

    def _enter_prevote(self, block_hash: bytes) -> None:
        self._step = Step.PREVOTE
        self._last_progress_ms = self._now_ms
        self._ask_to_sign_vote(VOTE_PREVOTE, block_hash)

    def _enter_precommit(self, block_hash: bytes, proof_of_lock: ProofOfLock | None = None) -> None:
        self._step = Step.PRECOMMIT
        self._last_progress_ms = self._now_ms
        self._ask_to_sign_vote(VOTE_PRECOMMIT, block_hash, proof_of_lock)

    def _ask_to_sign_vote(self, kind: int, block_hash: bytes, proof_of_lock: ProofOfLock | None = None) -> None:
        if not self._is_validator:
            return
        assert self.validator_name is not None
        vote = Vote(self._height, self._round, kind, block_hash, self.validator_name)
        self._actions.append(SignVote(vote, self.get_state(), proof_of_lock))

    def _schedule_timeout(self, step: Step) -> None:
        delay_ms = self.config.timeout_ms(step, self._round)
        self._actions.append(ScheduleTimeout(self._height, self._round, step, delay_ms))

    # --- The upon rules ---

    def _process_rules(self) -> None:
        """Fire enabled upon-rules until none is enabled (each firing changes what is enabled)."""
        if not self._is_started:
            return
        for _ in range(RULE_FIRINGS_PER_EVENT_MAX):
            if self._step == Step.COMMIT or not self._fire_one_rule():
                return
        raise AssertionError("upon-rules did not settle")

    def _fire_one_rule(self) -> bool:
        return (
            self._upon_decision()  # L49
            or self._upon_round_skip()  # L55
            or self._upon_proposal()  # L22
            or self._upon_proposal_with_proof_of_lock()  # L28
            or self._upon_prevote_any()  # L34
            or self._upon_prevote_value()  # L36
            or self._upon_prevote_nil()  # L44
            or self._upon_precommit_any()  # L47
        )

    def _upon_decision(self) -> bool:
        """L49-54: PROPOSAL(h, r, v, *) and 2f+1 PRECOMMIT(h, r, id(v)), any round r: decide v."""
        for round_number, block_hashes in self._precommit_quorums.items():
            for block_hash in block_hashes:
                message = self._proposals.get(round_number, {}).get(block_hash)
                if message is not None and self._is_valid(message.block):  # L50
                    self._decide(round_number, message)  # L51
                    return True
        return False

    def _upon_round_skip(self) -> bool:
        """L55-56: f+1 power sent messages for a round above ours: StartRound(that round)."""
        skip_to = -1
        for round_number, power in self._round_power.items():
            if round_number > self._round and 3 * power > self._total_power and round_number > skip_to:
                skip_to = round_number
        if skip_to < 0:
            return False
        self._start_round(skip_to)
        return True

    def _upon_proposal(self) -> bool:
        """L22-27: PROPOSAL(h, r, v, -1) while step = propose: prevote v if valid and not locked elsewhere."""
        message = self._get_first_proposal(self._round)
        if self._step != Step.PROPOSE or message is None or message.proposal.pol_round != POL_ROUND_NONE:
            return False
        block_hash = message.proposal.block_hash
        is_acceptable = self._locked_round == -1 or self._locked_block_hash == block_hash  # L23
        if self._is_valid(message.block) and is_acceptable:
            self._enter_prevote(block_hash)  # L24, L27
        else:
            self._enter_prevote(NIL_BLOCK_HASH)  # L26, L27
        return True

    def _upon_proposal_with_proof_of_lock(self) -> bool:
        """L28-33: PROPOSAL(h, r, v, vr) and 2f+1 PREVOTE(h, vr, id(v)), 0 <= vr < r, step = propose."""
        message = self._get_first_proposal(self._round)
        if self._step != Step.PROPOSE or message is None:
            return False
        pol_round = message.proposal.pol_round
        block_hash = message.proposal.block_hash
        if not 0 <= pol_round < self._round or not self._has_quorum(self._get_prevote_power(pol_round, block_hash)):
            return False
        is_acceptable = self._locked_round <= pol_round or self._locked_block_hash == block_hash  # L29
        if self._is_valid(message.block) and is_acceptable:
            self._enter_prevote(block_hash)  # L30, L33
        else:
            self._enter_prevote(NIL_BLOCK_HASH)  # L32, L33
        return True

    def _upon_prevote_any(self) -> bool:
        """L34-35: 2f+1 PREVOTE(h, r, *) while step = prevote, first time: schedule timeoutPrevote."""
        prevotes = self._votes.get((self._round, VOTE_PREVOTE))
        key = (self._round, 34)
        if self._step != Step.PREVOTE or prevotes is None or key in self._rules_fired:
            return False
        if not self._has_quorum(prevotes.power_total):
            return False
        self._rules_fired.add(key)
        self._schedule_timeout(Step.PREVOTE)
        return True

    def _upon_prevote_value(self) -> bool:
        """L36-43: PROPOSAL(h, r, v, *) and 2f+1 PREVOTE(h, r, id(v)), valid(v), step >= prevote, first time."""
        key = (self._round, 36)
        if self._step < Step.PREVOTE or key in self._rules_fired:
            return False
        for block_hash, message in self._proposals.get(self._round, {}).items():
            if not self._has_quorum(self._get_prevote_power(self._round, block_hash)):
                continue
            if not self._is_valid(message.block):
                continue
            self._rules_fired.add(key)
            # L42-43 first (the rule is atomic), so the state recorded with the precommit has them.
            self._valid_block_hash = block_hash  # L42
            self._valid_round = self._round  # L43
            if self._step == Step.PREVOTE:  # L37
                self._locked_block_hash = block_hash  # L38
                self._locked_round = self._round  # L39
                prevotes = self._votes[(self._round, VOTE_PREVOTE)].get_votes_for(block_hash)
                proof = ProofOfLock(self._round, message.block, tuple(prevotes))
                self._enter_precommit(block_hash, proof)  # L40-41
            return True
        return False

    def _upon_prevote_nil(self) -> bool:
        """L44-46: 2f+1 PREVOTE(h, r, nil) while step = prevote: precommit nil."""
        if self._step != Step.PREVOTE:
            return False
        if not self._has_quorum(self._get_prevote_power(self._round, NIL_BLOCK_HASH)):
            return False
        self._enter_precommit(NIL_BLOCK_HASH)
        return True

    def _upon_precommit_any(self) -> bool:
        """L47-48: 2f+1 PRECOMMIT(h, r, *) for the first time: schedule timeoutPrecommit."""
        precommits = self._votes.get((self._round, VOTE_PRECOMMIT))
        key = (self._round, 47)
        if precommits is None or key in self._rules_fired or not self._has_quorum(precommits.power_total):
            return False
        self._rules_fired.add(key)
        self._schedule_timeout(Step.PRECOMMIT)
        return True

    def _decide(self, round_number: int, message: ProposalMessage) -> None:
        """L51: decision = v. The certificate is every precommit we hold for it, sorted by validator."""
        block_hash = message.proposal.block_hash
        precommits = self._votes[(round_number, VOTE_PRECOMMIT)].get_votes_for(block_hash)
        signatures = tuple(
            signed.to_commit_signature() for signed in sorted(precommits, key=lambda s: s.vote.validator)
        )
        certificate = CommitCertificate(self._height, round_number, block_hash, signatures)
        self._step = Step.COMMIT
        self._actions.append(CommitBlock(message.block, certificate))

    # --- Accepting messages ---

    def _accept_proposal(self, message: ProposalMessage) -> bool:
        """Check and store a proposal for our height; True if it is new and valid."""
        proposal = message.proposal
        round_number = proposal.round
        if round_number > self._round + ROUNDS_AHEAD_MAX:
            return False
        in_round = self._proposals.get(round_number, {})
        known = in_round.get(proposal.block_hash)
        if known is not None and known.signed_proposal.signature == message.signed_proposal.signature:
            return False  # a duplicate: already checked and counted
        if len(in_round) >= PROPOSALS_PER_ROUND_MAX:
            return False
        if not self._is_proposal_authentic(message):
            return False
        self._proposals.setdefault(round_number, {})[proposal.block_hash] = message
        self._note_sender(round_number, proposal.proposer)
        if proposal.proposer == self.validator_name:
            self._actions.append(Broadcast(message))
        return True

    def _is_proposal_authentic(self, message: ProposalMessage) -> bool:
        proposal = message.proposal
        proposer = self._validator_set.get_proposer(proposal.height, proposal.round)
        if proposal.proposer != proposer.name:  # only proposer(h, r) may propose
            return False
        if not POL_ROUND_NONE <= proposal.pol_round < proposal.round:
            return False
        if message.block.height != proposal.height:
            return False
        if message.block.compute_hash() != proposal.block_hash:
            return False
        return message.signed_proposal.is_signed_by(proposer.public_key, self.chain_id)

    def _accept_vote(self, signed_vote: SignedVote) -> bool:
        """Check and store a vote for our height; True if it counts (new, authentic, first)."""
        vote = signed_vote.vote
        if vote.round > self._round + ROUNDS_AHEAD_MAX:
            return False
        if vote.kind not in (VOTE_PREVOTE, VOTE_PRECOMMIT) or len(vote.block_hash) not in (0, HASH_BYTES):
            return False
        vote_set = self._votes.get((vote.round, vote.kind))
        first = vote_set.votes.get(vote.validator) if vote_set is not None else None
        if vote_set is not None and vote_set.has_vote_for(vote.block_hash, vote.validator):
            return False  # a duplicate (even with another valid signature): counted once
        validator = self._validators.get(vote.validator)
        if validator is None or not signed_vote.is_signed_by(validator.public_key, self.chain_id):
            return False
        if vote_set is None:
            vote_set = self._votes[(vote.round, vote.kind)] = VoteSet()
        if first is None:
            vote_set.add(signed_vote, validator.voting_power)
            self._note_sender(vote.round, vote.validator)
            if vote.validator == self.validator_name:
                self._own_votes.append(signed_vote)
                self._actions.append(Broadcast(signed_vote))
        else:
            self._report_evidence(first, signed_vote)
            if not self._is_known_value(vote.block_hash):
                return False  # bounds what an equivocator can make us store
            vote_set.add_for_block(signed_vote, validator.voting_power)
        is_precommit_for_block = vote.kind == VOTE_PRECOMMIT and vote.block_hash != NIL_BLOCK_HASH
        if is_precommit_for_block and self._has_quorum(vote_set.get_power(vote.block_hash)):
            self._precommit_quorums.setdefault(vote.round, set()).add(vote.block_hash)  # a candidate for L49
        return True

    def _report_evidence(self, first: SignedVote, second: SignedVote) -> None:
        key = (first.vote.validator, first.vote.round, first.vote.kind)
        if key not in self._evidence_reported:
            self._evidence_reported.add(key)
            self._actions.append(ReportEvidence(first, second))

    def _note_sender(self, round_number: int, name: str) -> None:
        """Count ``name`` once towards round ``round_number`` for the f+1 rule (L55)."""
        senders = self._round_senders.setdefault(round_number, set())
        if name not in senders:
            senders.add(name)
            validator = self._validators.get(name)
            assert validator is not None, name
            self._round_power[round_number] = self._round_power.get(round_number, 0) + validator.voting_power

    def _buffer_future(self, message: SignedVote | ProposalMessage, sender: str, signature: bytes) -> None:
        """Keep a bounded number of height + 1 messages; they are checked when that height starts."""
        if signature in self._future_keys or len(self._future_messages) >= FUTURE_MESSAGES_MAX:
            return
        count = self._future_count_by_sender.get(sender, 0)
        if count >= FUTURE_MESSAGES_PER_SENDER_MAX:
            return
        self._future_count_by_sender[sender] = count + 1
        self._future_keys.add(signature)
        self._future_messages.append(message)

    # --- Retransmission (deviation 4) ---

    def _rebroadcast(self) -> None:
        for message in self._proposals.get(self._round, {}).values():
            if message.proposal.proposer == self.validator_name:
                self._actions.append(Broadcast(message))
                if message.proposal.pol_round >= 0:
                    self._broadcast_proof_of_lock(message.proposal.pol_round, message.proposal.block_hash)
        for signed_vote in self._own_votes[-OWN_VOTES_RESENT_MAX:]:
            self._actions.append(Broadcast(signed_vote))

    def _broadcast_proof_of_lock(self, pol_round: int, block_hash: bytes) -> None:
        prevotes = self._votes.get((pol_round, VOTE_PREVOTE))
        if prevotes is not None:
            for signed_vote in prevotes.get_votes_for(block_hash):
                self._actions.append(Broadcast(signed_vote))

    # --- Small reads ---

    def _has_quorum(self, power: int) -> bool:
        return 3 * power > 2 * self._total_power

    def _get_prevote_power(self, round_number: int, block_hash: bytes) -> int:
        prevotes = self._votes.get((round_number, VOTE_PREVOTE))
        return 0 if prevotes is None else prevotes.get_power(block_hash)

    def _get_first_proposal(self, round_number: int) -> ProposalMessage | None:
        in_round = self._proposals.get(round_number)
        if not in_round:
            return None
        return next(iter(in_round.values()))

    def _is_known_value(self, block_hash: bytes) -> bool:
        """nil, or the hash of a block proposed (or restored) at this height."""
        return (
            block_hash == NIL_BLOCK_HASH
            or block_hash in self._known_blocks
            or any(block_hash in in_round for in_round in self._proposals.values())
        )

    def _get_known_block(self, block_hash: bytes) -> Block | None:
        if block_hash == NIL_BLOCK_HASH:
            return None
        if block_hash in self._known_blocks:
            return self._known_blocks[block_hash]
        for in_round in self._proposals.values():
            message = in_round.get(block_hash)
            if message is not None:
                return message.block
        return None

    def _is_valid(self, block: Block) -> bool:
        """valid(v), asked of the application once per block hash (deviation 8)."""
        block_hash = block.compute_hash()
        verdict = self._validity_by_block_hash.get(block_hash)
        if verdict is None:
            verdict = self._validity_by_block_hash[block_hash] = bool(self.application.validate_block(block))
        return verdict

    def _take_actions(self) -> list[Action]:
        actions, self._actions = self._actions, []
        return actions


enc.check_record_wire(ConsensusState)
enc.check_record_wire(ProofOfLock)

__all__ = [
    "FUTURE_MESSAGES_MAX",
    "FUTURE_MESSAGES_PER_SENDER_MAX",
    "OWN_VOTES_RESENT_MAX",
    "PROPOSALS_PER_ROUND_MAX",
    "ROUNDS_AHEAD_MAX",
    "Action",
    "Application",
    "Broadcast",
    "CommitBlock",
    "ConsensusConfig",
    "ConsensusCore",
    "ConsensusState",
    "ProofOfLock",
    "ReportEvidence",
    "ScheduleTimeout",
    "SignProposal",
    "SignVote",
    "Step",
    "Timeout",
    "VoteSet",
]
