"""Focused tests of the consensus core (node/consensus.py) and its messages (node/messages.py).

Four validators of power 1 (f = 1): a quorum ("2f+1") is 3 votes, "f+1" is 2.
The core under test is ``validator-0``; the proposer of (height 1, round r)
is ``validator-{(1 + r) % 4}``, so validator-0 proposes round 3.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import encoding as enc
from ledger.block import (
    NIL_BLOCK_HASH,
    VOTE_PRECOMMIT,
    VOTE_PREVOTE,
    Block,
    BlockHeader,
    CommitCertificate,
    Vote,
)
from ledger.errors import EncodingError
from ledger.hashing import sha256
from ledger.keys import PrivateKey
from ledger.transaction import Transaction
from ledger.validators import Validator, ValidatorSet
from node.consensus import (
    ROUNDS_AHEAD_MAX,
    Action,
    Broadcast,
    CommitBlock,
    ConsensusConfig,
    ConsensusCore,
    ConsensusState,
    ReportEvidence,
    ScheduleTimeout,
    SignProposal,
    SignVote,
    Step,
    Timeout,
    VoteSet,
)
from node.messages import (
    ENVELOPE_KIND_PROPOSAL,
    ENVELOPE_KIND_STATUS,
    ENVELOPE_KIND_VOTE,
    Envelope,
    Proposal,
    ProposalMessage,
    SignedProposal,
    SignedVote,
    decode_consensus_message,
    decode_envelope,
    encode_consensus_message,
    encode_envelope,
    sign_proposal,
    sign_vote,
)

CHAIN_ID = "core-test"
KEYS = {f"validator-{index}": PrivateKey(bytes([index + 1]) * 32) for index in range(4)}
VALIDATOR_SET = ValidatorSet(tuple(Validator(name, key.public_key, 1) for name, key in sorted(KEYS.items())))
CONFIG = ConsensusConfig()  # propose 1000 + 500 r, prevote 500 + 250 r, precommit 500 + 250 r


def make_block(height: int, tag: str = "a") -> Block:
    """A block whose hash depends on ``tag``: distinct tags are distinct values."""
    digest = sha256(tag.encode())
    header = BlockHeader(CHAIN_ID, height, digest, 1, "validator-1", 0, digest, 0, digest, digest, digest)
    return Block(header, ())


@dataclass
class StubApplication:
    invalid: set[bytes] = field(default_factory=set)
    proposed: list[tuple[int, int, int]] = field(default_factory=list)

    def propose_block(self, height: int, round: int, timestamp_ms: int) -> Block:
        self.proposed.append((height, round, timestamp_ms))
        return make_block(height, f"proposed-{round}")

    def validate_block(self, block: Block) -> bool:
        return block.compute_hash() not in self.invalid


def proposal_message(height: int, round_number: int, block: Block, pol_round: int = -1, signer: str | None = None) -> ProposalMessage:
    proposer = VALIDATOR_SET.get_proposer(height, round_number).name
    proposal = Proposal(height, round_number, pol_round, block.compute_hash(), proposer)
    return ProposalMessage(sign_proposal(proposal, KEYS[signer or proposer], CHAIN_ID), block)


def vote(name: str, kind: int, round_number: int, block_hash: bytes, height: int = 1) -> SignedVote:
    return sign_vote(Vote(height, round_number, kind, block_hash, name), KEYS[name], CHAIN_ID)


def of_type(actions: list[Action], kind: type) -> list:
    return [action for action in actions if isinstance(action, kind)]


class Harness:
    """A core plus a shell that signs its requests (no WAL) and feeds them back, as the node does."""

    def __init__(self, name: str | None = "validator-0", height: int = 1, resume: ConsensusState | None = None,
                 config: ConsensusConfig = CONFIG) -> None:
        self.application = StubApplication()
        self.core = ConsensusCore(chain_id=CHAIN_ID, validator_set=VALIDATOR_SET, height=height,
                                  application=self.application, validator_name=name, config=config, resume=resume)
        self.name = name
        self.now_ms = 1_000
        self.actions: list[Action] = []
        """Every action the core emitted, in order (including those of fed-back messages)."""

    def run(self, actions: list[Action]) -> list[Action]:
        emitted: list[Action] = []
        queue = list(actions)
        while queue:
            action = queue.pop(0)
            emitted.append(action)
            if isinstance(action, SignVote):
                queue += self.core.on_vote(sign_vote(action.vote, KEYS[action.vote.validator], CHAIN_ID), self.now_ms)
            elif isinstance(action, SignProposal):
                signed = sign_proposal(action.proposal, KEYS[action.proposal.proposer], CHAIN_ID)
                queue += self.core.on_proposal(ProposalMessage(signed, action.block), self.now_ms)
        self.actions += emitted
        return emitted

    def start(self) -> list[Action]:
        return self.run(self.core.start(self.now_ms))

    def proposal(self, message: ProposalMessage) -> list[Action]:
        return self.run(self.core.on_proposal(message, self.now_ms))

    def votes(self, *signed_votes: SignedVote) -> list[Action]:
        emitted: list[Action] = []
        for signed in signed_votes:
            emitted += self.run(self.core.on_vote(signed, self.now_ms))
        return emitted

    def timeout(self, step: Step, round_number: int | None = None, height: int = 1) -> list[Action]:
        round_number = self.core.round if round_number is None else round_number
        return self.run(self.core.on_timeout(Timeout(height, round_number, step), self.now_ms))

    def signed_votes(self, actions: list[Action]) -> list[Vote]:
        return [action.vote for action in actions if isinstance(action, SignVote)]


def fail_round(harness: Harness, round_number: int) -> None:
    """Drive ``harness`` through a round in which the others prevote and precommit nil."""
    others = ("validator-1", "validator-2", "validator-3")
    if harness.core.step == Step.PROPOSE:
        harness.timeout(Step.PROPOSE)
    harness.votes(*(vote(name, VOTE_PREVOTE, round_number, NIL_BLOCK_HASH) for name in others))
    harness.votes(*(vote(name, VOTE_PRECOMMIT, round_number, NIL_BLOCK_HASH) for name in others))
    harness.timeout(Step.PRECOMMIT, round_number)
    assert harness.core.round == round_number + 1


def lock_on(harness: Harness, block: Block, round_number: int = 0) -> None:
    """Lead ``harness`` to lock on ``block`` in ``round_number`` (it precommits the block)."""
    harness.proposal(proposal_message(1, round_number, block))
    block_hash = block.compute_hash()
    harness.votes(*(vote(name, VOTE_PREVOTE, round_number, block_hash) for name in ("validator-1", "validator-2")))
    state = harness.core.get_state()
    assert (state.locked_round, state.locked_block_hash) == (round_number, block_hash)


# --- Timeouts ---------------------------------------------------------------------------


def test_timeout_grows_linearly_with_the_round() -> None:
    assert [CONFIG.timeout_ms(Step.PROPOSE, r) for r in range(3)] == [1000, 1500, 2000]
    assert [CONFIG.timeout_ms(Step.PREVOTE, r) for r in range(3)] == [500, 750, 1000]
    assert [CONFIG.timeout_ms(Step.PRECOMMIT, r) for r in range(3)] == [500, 750, 1000]


def test_start_schedules_timeout_propose_when_not_proposer() -> None:
    harness = Harness()
    assert harness.start() == [ScheduleTimeout(1, 0, Step.PROPOSE, 1000)]


def test_timeouts_are_scheduled_with_growing_delays_across_rounds() -> None:
    harness = Harness()
    harness.start()
    for round_number in range(3):
        fail_round(harness, round_number)
    scheduled = [(a.round, a.step, a.delay_ms) for a in of_type(harness.actions, ScheduleTimeout)]
    assert scheduled == [
        (0, Step.PROPOSE, 1000), (0, Step.PREVOTE, 500), (0, Step.PRECOMMIT, 500),
        (1, Step.PROPOSE, 1500), (1, Step.PREVOTE, 750), (1, Step.PRECOMMIT, 750),
        (2, Step.PROPOSE, 2000), (2, Step.PREVOTE, 1000), (2, Step.PRECOMMIT, 1000),
        (3, Step.PROPOSE, 2500),
    ]


def test_timeout_propose_prevotes_nil_and_stale_timeouts_do_nothing() -> None:
    harness = Harness()
    harness.start()
    assert harness.timeout(Step.PROPOSE, round_number=5) == []  # not our round
    assert harness.timeout(Step.PREVOTE) == []  # not our step
    actions = harness.timeout(Step.PROPOSE)
    assert harness.signed_votes(actions) == [Vote(1, 0, VOTE_PREVOTE, NIL_BLOCK_HASH, "validator-0")]
    assert harness.core.step == Step.PREVOTE


# --- The normal path ----------------------------------------------------------------------


def test_a_round_that_decides_commits_with_a_verifiable_certificate() -> None:
    harness = Harness()
    harness.start()
    block = make_block(1)
    block_hash = block.compute_hash()
    actions = harness.proposal(proposal_message(1, 0, block))
    assert harness.signed_votes(actions) == [Vote(1, 0, VOTE_PREVOTE, block_hash, "validator-0")]  # L24
    assert any(isinstance(a, Broadcast) and isinstance(a.message, SignedVote) for a in actions)  # own vote sent
    actions = harness.votes(vote("validator-1", VOTE_PREVOTE, 0, block_hash), vote("validator-2", VOTE_PREVOTE, 0, block_hash))
    assert harness.signed_votes(actions) == [Vote(1, 0, VOTE_PRECOMMIT, block_hash, "validator-0")]  # L40
    state = harness.core.get_state()
    assert (state.step, state.locked_round, state.locked_block_hash) == (Step.PRECOMMIT, 0, block_hash)
    assert (state.valid_round, state.valid_block_hash) == (0, block_hash)
    sign_requests = of_type(actions, SignVote)
    assert sign_requests[0].state.locked_block_hash == block_hash  # the lock is recorded with the precommit
    actions = harness.votes(vote("validator-1", VOTE_PRECOMMIT, 0, block_hash), vote("validator-3", VOTE_PRECOMMIT, 0, block_hash))
    [commit] = of_type(actions, CommitBlock)
    assert commit.block == block
    commit.certificate.verify(CHAIN_ID, VALIDATOR_SET, block_hash, 1)
    assert [s.validator for s in commit.certificate.signatures] == ["validator-0", "validator-1", "validator-3"]
    assert harness.core.step == Step.COMMIT
    actions = harness.run(harness.core.on_committed(1, VALIDATOR_SET, harness.now_ms))
    assert (harness.core.height, harness.core.round, harness.core.step) == (2, 0, Step.PROPOSE)
    assert harness.core.get_state().locked_round == -1
    assert ScheduleTimeout(2, 0, Step.PROPOSE, 1000) in actions


def test_proposer_asks_to_sign_then_prevotes_its_own_block() -> None:
    harness = Harness(name="validator-1")
    actions = harness.start()
    [request] = of_type(actions, SignProposal)
    assert request.proposal == Proposal(1, 0, -1, request.block.compute_hash(), "validator-1")
    assert harness.application.proposed == [(1, 0, harness.now_ms)]
    assert any(isinstance(a, Broadcast) and isinstance(a.message, ProposalMessage) for a in actions)
    assert harness.signed_votes(actions) == [Vote(1, 0, VOTE_PREVOTE, request.block.compute_hash(), "validator-1")]


def test_late_precommits_of_a_past_round_decide() -> None:
    harness = Harness()
    harness.start()
    block = make_block(1)
    harness.proposal(proposal_message(1, 0, block))
    harness.timeout(Step.PROPOSE)
    harness.votes(*(vote(name, VOTE_PREVOTE, 0, NIL_BLOCK_HASH) for name in ("validator-1", "validator-2")))
    harness.votes(*(vote(name, VOTE_PRECOMMIT, 1, NIL_BLOCK_HASH) for name in ("validator-1", "validator-2")))
    assert harness.core.round == 1  # f+1 at round 1
    actions = harness.votes(*(vote(name, VOTE_PRECOMMIT, 0, block.compute_hash()) for name in ("validator-1", "validator-2", "validator-3")))
    [commit] = of_type(actions, CommitBlock)
    assert commit.certificate.round == 0


# --- Locking ---------------------------------------------------------------------------------


def test_locked_node_prevotes_nil_for_a_different_value() -> None:
    harness = Harness()
    harness.start()
    locked = make_block(1, "locked")
    lock_on(harness, locked, round_number=0)
    fail_round(harness, 0)
    other = make_block(1, "other")
    actions = harness.proposal(proposal_message(1, 1, other))  # pol_round -1
    assert harness.signed_votes(actions) == [Vote(1, 1, VOTE_PREVOTE, NIL_BLOCK_HASH, "validator-0")]  # L26


def test_locked_node_prevotes_its_locked_value_again() -> None:
    harness = Harness()
    harness.start()
    locked = make_block(1, "locked")
    lock_on(harness, locked, round_number=0)
    fail_round(harness, 0)
    actions = harness.proposal(proposal_message(1, 1, locked))
    assert harness.signed_votes(actions) == [Vote(1, 1, VOTE_PREVOTE, locked.compute_hash(), "validator-0")]  # L23


def test_locked_node_prevotes_a_value_with_a_newer_proof_of_lock() -> None:
    harness = Harness()
    harness.start()
    lock_on(harness, make_block(1, "locked"), round_number=0)
    fail_round(harness, 0)
    other = make_block(1, "other")
    other_hash = other.compute_hash()
    harness.proposal(proposal_message(1, 1, other))
    harness.votes(*(vote(name, VOTE_PREVOTE, 1, other_hash) for name in ("validator-1", "validator-2", "validator-3")))
    harness.votes(*(vote(name, VOTE_PRECOMMIT, 1, NIL_BLOCK_HASH) for name in ("validator-1", "validator-2", "validator-3")))
    harness.timeout(Step.PRECOMMIT, 1)
    assert harness.core.round == 2
    actions = harness.proposal(proposal_message(1, 2, other, pol_round=1))
    assert harness.signed_votes(actions) == [Vote(1, 2, VOTE_PREVOTE, other_hash, "validator-0")]  # L30


def test_proof_of_lock_older_than_the_lock_does_not_unlock() -> None:
    harness = Harness()
    harness.start()
    older = make_block(1, "older")
    older_hash = older.compute_hash()
    harness.proposal(proposal_message(1, 0, older))
    harness.votes(*(vote(name, VOTE_PREVOTE, 0, older_hash) for name in ("validator-1", "validator-2")))  # we lock at 0 ...
    harness.votes(*(vote(name, VOTE_PRECOMMIT, 0, NIL_BLOCK_HASH) for name in ("validator-1", "validator-2", "validator-3")))
    harness.timeout(Step.PRECOMMIT, 0)
    newer = make_block(1, "newer")
    harness.proposal(proposal_message(1, 1, newer))  # we prevote nil (locked), the others prevote it:
    others = ("validator-1", "validator-2", "validator-3")
    harness.votes(*(vote(name, VOTE_PREVOTE, 1, newer.compute_hash()) for name in others))
    assert harness.core.get_state().locked_round == 1  # ... so we re-lock on it at round 1 (L36)
    harness.votes(*(vote(name, VOTE_PRECOMMIT, 1, NIL_BLOCK_HASH) for name in ("validator-1", "validator-2", "validator-3")))
    harness.timeout(Step.PRECOMMIT, 1)
    actions = harness.proposal(proposal_message(1, 2, older, pol_round=0))  # POL at 0 < lockedRound 1
    assert harness.signed_votes(actions) == [Vote(1, 2, VOTE_PREVOTE, NIL_BLOCK_HASH, "validator-0")]  # L32


def test_proof_of_lock_round_without_quorum_waits_for_the_timeout() -> None:
    harness = Harness()
    harness.start()
    lock_on(harness, make_block(1, "locked"), round_number=0)
    fail_round(harness, 0)
    other = make_block(1, "other")
    actions = harness.proposal(proposal_message(1, 1, other, pol_round=0))  # no 2f+1 prevotes for it at 0
    assert harness.signed_votes(actions) == []
    assert harness.signed_votes(harness.timeout(Step.PROPOSE)) == [Vote(1, 1, VOTE_PREVOTE, NIL_BLOCK_HASH, "validator-0")]


def test_invalid_block_gets_a_nil_prevote() -> None:
    harness = Harness()
    harness.start()
    block = make_block(1, "bad")
    harness.application.invalid.add(block.compute_hash())
    actions = harness.proposal(proposal_message(1, 0, block))
    assert harness.signed_votes(actions) == [Vote(1, 0, VOTE_PREVOTE, NIL_BLOCK_HASH, "validator-0")]


def test_proposer_reproposes_its_valid_value_with_its_proof_of_lock() -> None:
    harness = Harness()  # validator-0 proposes round 3
    harness.start()
    valid = make_block(1, "valid")
    lock_on(harness, valid, round_number=0)
    for round_number in range(3):
        fail_round(harness, round_number)
    assert harness.core.round == 3
    [request] = of_type(harness.actions, SignProposal)
    assert request.proposal.pol_round == 0 and request.block == valid
    assert harness.application.proposed == []
    resent = [a.message for a in harness.actions if isinstance(a, Broadcast) and isinstance(a.message, SignedVote)]
    assert {v.vote.validator for v in resent if v.vote.round == 0 and v.vote.kind == VOTE_PREVOTE} >= {"validator-1", "validator-2"}


# --- Rounds ----------------------------------------------------------------------------------


def test_f_plus_one_messages_of_a_higher_round_skip_to_it() -> None:
    harness = Harness()
    harness.start()
    assert harness.votes(vote("validator-2", VOTE_PREVOTE, 3, NIL_BLOCK_HASH)) == []  # 1 of 4: not > 1/3
    actions = harness.votes(vote("validator-3", VOTE_PRECOMMIT, 3, NIL_BLOCK_HASH))  # 2 of 4 > 1/3 (L55)
    assert harness.core.round == 3
    assert ScheduleTimeout(1, 3, Step.PROPOSE, 2500) in actions


def test_votes_too_far_ahead_are_dropped() -> None:
    harness = Harness()
    harness.start()
    far = ROUNDS_AHEAD_MAX + 1
    harness.votes(*(vote(name, VOTE_PREVOTE, far, NIL_BLOCK_HASH) for name in ("validator-1", "validator-2", "validator-3")))
    assert harness.core.round == 0


# --- Checking messages ------------------------------------------------------------------------


def test_duplicate_vote_is_counted_once() -> None:
    harness = Harness()
    harness.start()
    harness.timeout(Step.PROPOSE)  # our prevote nil
    nil_1 = vote("validator-1", VOTE_PREVOTE, 0, NIL_BLOCK_HASH)
    assert harness.votes(nil_1) == []
    assert harness.votes(nil_1, nil_1) == []  # two copies more: still 2 of 4
    assert harness.core.step == Step.PREVOTE
    actions = harness.votes(vote("validator-2", VOTE_PREVOTE, 0, NIL_BLOCK_HASH))
    assert harness.signed_votes(actions) == [Vote(1, 0, VOTE_PRECOMMIT, NIL_BLOCK_HASH, "validator-0")]  # L44


def test_vote_with_an_invalid_signature_is_ignored() -> None:
    harness = Harness()
    harness.start()
    harness.timeout(Step.PROPOSE)
    forged = [sign_vote(Vote(1, 0, VOTE_PREVOTE, NIL_BLOCK_HASH, name), KEYS["validator-3"], CHAIN_ID)
              for name in ("validator-1", "validator-2")]
    assert harness.votes(*forged) == []
    assert harness.core.step == Step.PREVOTE  # no quorum counted
    bad_kind = sign_vote(Vote(1, 0, 7, NIL_BLOCK_HASH, "validator-1"), KEYS["validator-1"], CHAIN_ID)
    stranger = sign_vote(Vote(1, 0, VOTE_PREVOTE, NIL_BLOCK_HASH, "stranger"), KEYS["validator-1"], CHAIN_ID)
    assert harness.votes(bad_kind, stranger) == []
    assert harness.core.step == Step.PREVOTE


def test_proposals_that_fail_a_check_are_ignored() -> None:
    harness = Harness()
    harness.start()
    block = make_block(1)
    wrong_signer = proposal_message(1, 0, block, signer="validator-2")
    wrong_proposer = ProposalMessage(
        sign_proposal(Proposal(1, 0, -1, block.compute_hash(), "validator-2"), KEYS["validator-2"], CHAIN_ID), block)
    wrong_block = ProposalMessage(proposal_message(1, 0, block).signed_proposal, make_block(1, "other"))
    bad_pol = proposal_message(1, 0, block, pol_round=0)
    for message in (wrong_signer, wrong_proposer, wrong_block, bad_pol):
        assert harness.proposal(message) == []
    assert harness.core.step == Step.PROPOSE


def test_second_different_vote_is_reported_once_as_evidence() -> None:
    harness = Harness()
    harness.start()
    first = vote("validator-2", VOTE_PREVOTE, 0, NIL_BLOCK_HASH)
    second = vote("validator-2", VOTE_PREVOTE, 0, make_block(1).compute_hash())
    third = vote("validator-2", VOTE_PREVOTE, 0, make_block(1, "third").compute_hash())
    harness.votes(first)
    assert harness.votes(second) == [ReportEvidence(first, second)]
    assert harness.votes(third) == []  # reported once per (validator, round, kind)


def test_equivocators_second_vote_counts_for_its_value_but_not_for_any() -> None:
    """A proof-of-lock may hold an equivocator's vote for v although we first saw its nil."""
    harness = Harness()
    harness.start()
    block = make_block(1)
    block_hash = block.compute_hash()
    harness.proposal(proposal_message(1, 0, block))  # we prevote the block
    nil_3 = vote("validator-3", VOTE_PREVOTE, 0, NIL_BLOCK_HASH)
    harness.votes(vote("validator-1", VOTE_PREVOTE, 0, block_hash), nil_3)
    assert harness.core.step == Step.PREVOTE  # 2 for the block, 3 of any kind
    for_block_3 = vote("validator-3", VOTE_PREVOTE, 0, block_hash)
    actions = harness.votes(for_block_3)
    assert ReportEvidence(nil_3, for_block_3) in actions
    assert harness.signed_votes(actions) == [Vote(1, 0, VOTE_PRECOMMIT, block_hash, "validator-0")]
    [request] = of_type(actions, SignVote)
    assert request.proof_of_lock is not None and request.proof_of_lock.block == block
    assert {p.vote.validator for p in request.proof_of_lock.prevotes} == {"validator-0", "validator-1", "validator-3"}


def test_vote_set_counts_each_validator_once_for_any() -> None:
    vote_set = VoteSet()
    vote_set.add(vote("validator-3", VOTE_PREVOTE, 0, NIL_BLOCK_HASH), 1)
    vote_set.add_for_block(vote("validator-3", VOTE_PREVOTE, 0, b"\x01" * 32), 1)
    assert (vote_set.power_total, vote_set.get_power(b""), vote_set.get_power(b"\x01" * 32)) == (1, 1, 1)


def test_conflicting_vote_for_an_unknown_value_is_reported_but_not_stored() -> None:
    harness = Harness()
    harness.start()
    first = vote("validator-2", VOTE_PREVOTE, 0, NIL_BLOCK_HASH)
    unknown = vote("validator-2", VOTE_PREVOTE, 0, b"\x09" * 32)
    harness.votes(first)
    assert harness.votes(unknown) == [ReportEvidence(first, unknown)]
    assert harness.core._votes[(0, VOTE_PREVOTE)].get_power(b"\x09" * 32) == 0


# --- Heights, followers, restarts ------------------------------------------------------------


def test_messages_for_the_next_height_wait_for_it() -> None:
    harness = Harness()
    harness.start()
    next_block = make_block(2, "next")
    next_hash = next_block.compute_hash()
    harness.proposal(proposal_message(2, 0, next_block))
    precommits = [vote(name, VOTE_PRECOMMIT, 0, next_hash, height=2) for name in ("validator-1", "validator-2", "validator-3")]
    assert harness.votes(*precommits) == []
    actions = harness.run(harness.core.on_committed(1, VALIDATOR_SET, harness.now_ms))  # e.g. after block sync
    [commit] = of_type(actions, CommitBlock)
    assert commit.block == next_block and commit.certificate.height == 2


def test_stale_committed_notice_is_ignored() -> None:
    harness = Harness(height=3)
    harness.start()
    assert harness.core.on_committed(1, VALIDATOR_SET, harness.now_ms) == []
    assert harness.core.height == 3


def test_non_validator_follows_and_commits_without_signing() -> None:
    for name in (None, "not-a-validator"):
        harness = Harness(name=name)
        harness.start()
        block = make_block(1)
        block_hash = block.compute_hash()
        harness.proposal(proposal_message(1, 0, block))
        harness.votes(*(vote(v, VOTE_PREVOTE, 0, block_hash) for v in ("validator-1", "validator-2", "validator-3")))
        harness.votes(*(vote(v, VOTE_PRECOMMIT, 0, block_hash) for v in ("validator-1", "validator-2", "validator-3")))
        assert len(of_type(harness.actions, CommitBlock)) == 1
        assert not of_type(harness.actions, SignVote) and not of_type(harness.actions, SignProposal)
        assert not harness.core.is_validator


def test_non_validator_never_proposes() -> None:
    harness = Harness(name=None)
    harness.start()
    for round_number in range(4):  # every validator's turn, including validator-0's
        fail_round(harness, round_number)
    assert not of_type(harness.actions, SignProposal)


def test_resumed_core_keeps_its_lock() -> None:
    locked_hash = make_block(1, "locked").compute_hash()
    resume = ConsensusState(1, 2, int(Step.PROPOSE), 1, locked_hash, 1, locked_hash)
    harness = Harness(resume=resume)
    harness.start()
    assert (harness.core.round, harness.core.get_state()) == (2, resume)
    actions = harness.proposal(proposal_message(1, 2, make_block(1, "other")))
    assert harness.signed_votes(actions) == [Vote(1, 2, VOTE_PREVOTE, NIL_BLOCK_HASH, "validator-0")]


def test_resumed_core_in_precommit_does_not_sign_again() -> None:
    resume = ConsensusState(1, 0, int(Step.PRECOMMIT), -1, b"", -1, b"")
    harness = Harness(resume=resume)
    assert harness.start() == []
    assert harness.core.step == Step.PRECOMMIT


def test_resumed_proposer_without_its_valid_block_proposes_a_fresh_one() -> None:
    valid_hash = make_block(1, "valid").compute_hash()
    resume = ConsensusState(1, 3, int(Step.PROPOSE), 0, valid_hash, 0, valid_hash)
    harness = Harness(resume=resume)  # validator-0 proposes round 3
    [request] = of_type(harness.start(), SignProposal)
    assert request.proposal.pol_round == -1 and harness.application.proposed == [(1, 3, harness.now_ms)]


def test_tick_rebroadcasts_own_votes_only_when_stuck() -> None:
    harness = Harness()
    harness.start()
    harness.timeout(Step.PROPOSE)  # prevote nil, then nothing happens
    assert harness.core.on_tick(harness.now_ms + CONFIG.rebroadcast_interval_ms - 1) == []
    actions = harness.core.on_tick(harness.now_ms + CONFIG.rebroadcast_interval_ms)
    resent = [a.message for a in actions if isinstance(a, Broadcast)]
    assert [m.vote for m in resent if isinstance(m, SignedVote)] == [Vote(1, 0, VOTE_PREVOTE, b"", "validator-0")]
    assert len(resent) == 1
    assert harness.core.on_tick(harness.now_ms + CONFIG.rebroadcast_interval_ms + 1) == []


# --- Messages -----------------------------------------------------------------------------


def test_precommit_signature_is_a_commit_signature() -> None:
    block = make_block(1)
    block_hash = block.compute_hash()
    precommits = [vote(name, VOTE_PRECOMMIT, 4, block_hash) for name in ("validator-0", "validator-2", "validator-3")]
    certificate = CommitCertificate(1, 4, block_hash, tuple(p.to_commit_signature() for p in precommits))
    certificate.verify(CHAIN_ID, VALIDATOR_SET, block_hash, 1)


def test_messages_round_trip_through_the_envelope() -> None:
    block = make_block(1)
    message = proposal_message(1, 0, block)
    signed_vote = vote("validator-1", VOTE_PREVOTE, 0, NIL_BLOCK_HASH)
    for original in (message, signed_vote):
        assert decode_consensus_message(decode_envelope(encode_consensus_message(original))) == original
    assert message.signed_proposal.is_signed_by(KEYS["validator-1"].public_key, CHAIN_ID)
    assert not message.signed_proposal.is_signed_by(KEYS["validator-1"].public_key, "other-chain")
    assert SignedProposal.decode(message.signed_proposal.encode()) == message.signed_proposal
    assert decode_envelope(encode_envelope(ENVELOPE_KIND_STATUS, b"x")) == Envelope(ENVELOPE_KIND_STATUS, b"x")


@pytest.mark.parametrize("kind", [0, 3, 9, 14, 255])
def test_unknown_envelope_kind_is_rejected(kind: int) -> None:
    with pytest.raises(EncodingError):
        decode_envelope(enc.encode([kind, b""]))
    with pytest.raises(EncodingError):
        encode_envelope(kind, b"")


def test_malformed_consensus_messages_are_rejected() -> None:
    with pytest.raises(EncodingError):  # a status envelope is not a consensus message
        decode_consensus_message(Envelope(ENVELOPE_KIND_STATUS, b""))
    bad_hash = enc.encode([[1, 0, VOTE_PREVOTE, b"short", "validator-1"], b"\0" * 64])
    with pytest.raises(EncodingError):
        decode_consensus_message(Envelope(ENVELOPE_KIND_VOTE, bad_hash))
    non_canonical = b"\x92\xcc\x01\xc4\x00"  # [uint8 1, b""]: 1 must be a fixint
    with pytest.raises(EncodingError):
        decode_envelope(non_canonical)
    with pytest.raises(EncodingError):  # the block must travel as bytes
        message = proposal_message(1, 0, make_block(1))
        decode_consensus_message(Envelope(ENVELOPE_KIND_PROPOSAL, enc.encode([message.signed_proposal.to_wire(), message.block.to_wire()])))


def test_block_at_the_nesting_limit_still_fits_in_a_proposal() -> None:
    """The block travels as bytes, so a proposal adds no nesting to what a block may hold."""
    nested: object = 1
    for _ in range(11):
        nested = [nested]
    tx = Transaction("alice", 0, "accounts", "transfer", {"a": nested}, 0).sign(KEYS["validator-0"], CHAIN_ID)
    digest = sha256(b"x")
    block = Block(BlockHeader(CHAIN_ID, 1, digest, 1, "validator-1", 1, digest, 1, digest, digest, digest), (tx,))
    assert Block.decode(block.encode()) == block
    message = proposal_message(1, 0, block)
    assert decode_consensus_message(decode_envelope(encode_consensus_message(message))) == message


@given(
    height=st.integers(0, 2**64 - 1),
    round_number=st.integers(0, 2**32 - 1),
    kind=st.sampled_from([VOTE_PREVOTE, VOTE_PRECOMMIT]),
    block_hash=st.sampled_from([b"", b"\x01" * 32, b"\x02" * 32]),
    validator=st.sampled_from(["validator-0", "v", "x" * 64]),
    signature=st.binary(min_size=64, max_size=64),
)
def test_signed_vote_encoding_round_trips(height: int, round_number: int, kind: int, block_hash: bytes, validator: str, signature: bytes) -> None:
    signed = SignedVote(Vote(height, round_number, kind, block_hash, validator), signature)
    data = signed.encode()
    assert SignedVote.decode(data) == signed
    other = SignedVote(Vote(height, round_number, 3 - kind, block_hash, validator), signature)
    assert other.encode() != data


@given(
    height=st.integers(0, 2**64 - 1),
    round_number=st.integers(0, 2**32 - 1),
    pol_round=st.integers(-1, 2**32 - 1),
)
def test_proposal_encoding_round_trips(height: int, round_number: int, pol_round: int) -> None:
    proposal = Proposal(height, round_number, pol_round, b"\x07" * 32, "validator-3")
    assert Proposal.decode(proposal.encode()) == proposal
    assert ConsensusState.decode(ConsensusState(height, round_number, 2, pol_round, b"", -1, b"").encode()).height == height
