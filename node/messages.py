"""Consensus messages and the wire envelope every peer message travels in.

Every message is a ``ledger.encoding.Record``: a frozen dataclass that
encodes as a msgpack array of its fields in declared order (PROTOCOL.md §1).

    Proposal         [height: u64, round: u32, pol_round: i64, block_hash: bytes32, proposer: text(64)]
    SignedProposal   [proposal: Proposal, signature: bytes64]
                     signature over signing_input("ledger/proposal/v1", chain_id, encode(proposal))
    SignedVote       [vote: Vote, signature: bytes64]
                     signature over signing_input("ledger/vote/v1", chain_id, encode(vote)); a
                     precommit's signature is exactly a CommitSignature of a CommitCertificate
    ProposalMessage  [signed_proposal: SignedProposal, block: bin (encode(Block))]
    Envelope         [kind: u8, payload: bin]

``pol_round`` is the proposer's ``validRound`` (Tendermint's proof-of-lock
round), ``-1`` when it proposes a fresh block.

The block inside a ``ProposalMessage`` travels as its canonical bytes (a
``bin``), not as a nested array: a block that decodes on its own must also
decode inside a proposal, and ``ledger.encoding`` limits nesting depth from the
outermost value, so nesting the block's array would lose a level.

Envelope kinds 1 and 2 are defined here; 10..13 are reserved for the node's
other messages (their payloads are the node's to define). Anything else is
rejected with ``EncodingError("wrong_type")``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ledger import encoding as enc
from ledger import keys
from ledger.block import BLOCK_BYTES_MAX, NIL_BLOCK_HASH, VOTE_PRECOMMIT, Block, CommitSignature, Vote
from ledger.errors import EncodingError
from ledger.hashing import HASH_BYTES

ENVELOPE_KIND_PROPOSAL = 1
ENVELOPE_KIND_VOTE = 2
ENVELOPE_KIND_TX_BATCH = 10
"""Reserved: gossip of mempool transactions (payload defined by the node)."""
ENVELOPE_KIND_BLOCK_REQUEST = 11
"""Reserved: block sync request (payload defined by the node)."""
ENVELOPE_KIND_BLOCK_RESPONSE = 12
"""Reserved: block sync response (payload defined by the node)."""
ENVELOPE_KIND_STATUS = 13
"""Reserved: a peer's height/round status (payload defined by the node)."""
ENVELOPE_KINDS = frozenset(
    {
        ENVELOPE_KIND_PROPOSAL,
        ENVELOPE_KIND_VOTE,
        ENVELOPE_KIND_TX_BATCH,
        ENVELOPE_KIND_BLOCK_REQUEST,
        ENVELOPE_KIND_BLOCK_RESPONSE,
        ENVELOPE_KIND_STATUS,
    }
)

POL_ROUND_NONE = -1
"""``pol_round`` of a proposal of a fresh block (no proof-of-lock round)."""
SIGNED_VOTE_BYTES_MAX = 256
"""A signed vote: ~120 bytes of vote (64-byte name) plus a 64-byte signature."""
SIGNED_PROPOSAL_BYTES_MAX = 256
PROPOSAL_MESSAGE_BYTES_MAX = BLOCK_BYTES_MAX + 1024
"""A full block plus the signed proposal and the array and bin headers."""
ENVELOPE_PAYLOAD_BYTES_MAX = PROPOSAL_MESSAGE_BYTES_MAX
ENVELOPE_BYTES_MAX = ENVELOPE_PAYLOAD_BYTES_MAX + 16
"""The largest frame a peer may send: kind, bin32 header and the largest payload."""

assert SIGNED_PROPOSAL_BYTES_MAX + BLOCK_BYTES_MAX + 16 <= PROPOSAL_MESSAGE_BYTES_MAX
assert SIGNED_VOTE_BYTES_MAX <= ENVELOPE_PAYLOAD_BYTES_MAX
assert 2 + 5 + ENVELOPE_PAYLOAD_BYTES_MAX <= ENVELOPE_BYTES_MAX  # array + kind, bin32 header, payload
assert all(0 <= kind <= 255 for kind in ENVELOPE_KINDS)


def _block_hash_or_nil(value: Any) -> bytes:
    """A vote's block hash: 32 bytes, or empty for nil."""
    if type(value) is not bytes or len(value) not in (0, HASH_BYTES):
        raise EncodingError("wrong_type", "expected a 32-byte block hash or empty bytes (nil)")
    return value


@dataclass(frozen=True, slots=True)
class Proposal(enc.Record):
    """A proposer's claim: at (height, round) the block with this hash is proposed."""

    height: int
    """The height being decided."""
    round: int
    """The round within the height; the proposer is ``ValidatorSet.get_proposer(height, round)``."""
    pol_round: int
    """The round of the proof-of-lock (the proposer's validRound), or -1 for a fresh block."""
    block_hash: bytes
    """Hash of the proposed block's header."""
    proposer: str
    """Name of the proposing validator."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.uint(64),
        enc.uint(32),
        enc.sint64,
        enc.fixed_bytes(HASH_BYTES),
        enc.text(64),
    )

    def signing_bytes(self, chain_id: str) -> bytes:
        return keys.signing_input(keys.DOMAIN_PROPOSAL, chain_id, self.encode())


@dataclass(frozen=True, slots=True)
class SignedProposal(enc.Record):
    proposal: Proposal
    signature: bytes
    """The proposer's Ed25519 signature over ``proposal.signing_bytes(chain_id)``."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.record(Proposal),
        enc.fixed_bytes(keys.SIGNATURE_BYTES),
    )

    def is_signed_by(self, public_key: bytes, chain_id: str) -> bool:
        return keys.verify_raw(public_key, self.proposal.signing_bytes(chain_id), self.signature)


def sign_proposal(proposal: Proposal, key: keys.PrivateKey, chain_id: str) -> SignedProposal:
    return SignedProposal(proposal, key.sign_raw(proposal.signing_bytes(chain_id)))


@dataclass(frozen=True, slots=True)
class SignedVote(enc.Record):
    vote: Vote
    signature: bytes
    """The validator's Ed25519 signature over ``vote.signing_bytes(chain_id)``."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.record(Vote),
        enc.fixed_bytes(keys.SIGNATURE_BYTES),
    )

    @classmethod
    def decode(cls, data: bytes, *, max_bytes: int = SIGNED_VOTE_BYTES_MAX) -> SignedVote:
        signed: SignedVote = cls.from_wire(enc.decode(data, max_bytes=max_bytes))
        _block_hash_or_nil(signed.vote.block_hash)
        return signed

    def is_signed_by(self, public_key: bytes, chain_id: str) -> bool:
        return keys.verify_raw(public_key, self.vote.signing_bytes(chain_id), self.signature)

    def to_commit_signature(self) -> CommitSignature:
        """This precommit as one signature of a ``CommitCertificate`` (same signing bytes)."""
        assert self.vote.kind == VOTE_PRECOMMIT and self.vote.block_hash != NIL_BLOCK_HASH, self.vote
        return CommitSignature(self.vote.validator, self.signature)


def sign_vote(vote: Vote, key: keys.PrivateKey, chain_id: str) -> SignedVote:
    return SignedVote(vote, key.sign_raw(vote.signing_bytes(chain_id)))


def decode_block_bytes(value: Any) -> Block:
    """A wire field holding a block as its canonical bytes (see the module docstring)."""
    if type(value) is not bytes:
        raise EncodingError("wrong_type", "expected the block's canonical bytes")
    return Block.decode(value)


@dataclass(frozen=True, slots=True)
class ProposalMessage(enc.Record):
    """A signed proposal and the block it proposes (they travel together)."""

    signed_proposal: SignedProposal
    block: Block
    """On the wire: ``encode(block)`` as a bin (see the module docstring)."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.record(SignedProposal),
        decode_block_bytes,
    )

    def to_wire(self) -> list[Any]:
        return [self.signed_proposal.to_wire(), self.block.encode()]

    @classmethod
    def decode(cls, data: bytes, *, max_bytes: int = PROPOSAL_MESSAGE_BYTES_MAX) -> ProposalMessage:
        message: ProposalMessage = cls.from_wire(enc.decode(data, max_bytes=max_bytes))
        return message

    @property
    def proposal(self) -> Proposal:
        return self.signed_proposal.proposal


@dataclass(frozen=True, slots=True)
class Envelope(enc.Record):
    """One frame between peers: what kind of message, and its canonical bytes."""

    kind: int
    """One of ``ENVELOPE_KINDS``."""
    payload: bytes
    """The message's canonical encoding."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.uint(8),
        enc.var_bytes(ENVELOPE_PAYLOAD_BYTES_MAX),
    )


ConsensusMessage = ProposalMessage | SignedVote


def encode_envelope(kind: int, payload: bytes) -> bytes:
    if kind not in ENVELOPE_KINDS:
        raise EncodingError("wrong_type", f"unknown envelope kind {kind}")
    return Envelope(kind, payload).encode()


def decode_envelope(data: bytes) -> Envelope:
    """Decode a frame; unknown kinds, oversized or non-canonical frames raise ``EncodingError``."""
    envelope: Envelope = Envelope.decode(data, max_bytes=ENVELOPE_BYTES_MAX)
    if envelope.kind not in ENVELOPE_KINDS:
        raise EncodingError("wrong_type", f"unknown envelope kind {envelope.kind}")
    return envelope


def encode_consensus_message(message: ConsensusMessage) -> bytes:
    """A proposal or vote, wrapped in its envelope."""
    if isinstance(message, ProposalMessage):
        return encode_envelope(ENVELOPE_KIND_PROPOSAL, message.encode())
    return encode_envelope(ENVELOPE_KIND_VOTE, message.encode())


def decode_consensus_message(envelope: Envelope) -> ConsensusMessage:
    """The proposal or vote inside an envelope of kind 1 or 2."""
    if envelope.kind == ENVELOPE_KIND_PROPOSAL:
        return ProposalMessage.decode(envelope.payload)
    if envelope.kind == ENVELOPE_KIND_VOTE:
        return SignedVote.decode(envelope.payload)
    raise EncodingError("wrong_type", f"envelope kind {envelope.kind} is not a consensus message")


for _record in (Proposal, SignedProposal, SignedVote, ProposalMessage, Envelope):
    enc.check_record_wire(_record)

__all__ = [
    "ENVELOPE_BYTES_MAX",
    "ENVELOPE_KINDS",
    "ENVELOPE_KIND_BLOCK_REQUEST",
    "ENVELOPE_KIND_BLOCK_RESPONSE",
    "ENVELOPE_KIND_PROPOSAL",
    "ENVELOPE_KIND_STATUS",
    "ENVELOPE_KIND_TX_BATCH",
    "ENVELOPE_KIND_VOTE",
    "ENVELOPE_PAYLOAD_BYTES_MAX",
    "POL_ROUND_NONE",
    "PROPOSAL_MESSAGE_BYTES_MAX",
    "SIGNED_PROPOSAL_BYTES_MAX",
    "SIGNED_VOTE_BYTES_MAX",
    "ConsensusMessage",
    "Envelope",
    "Proposal",
    "ProposalMessage",
    "SignedProposal",
    "SignedVote",
    "decode_block_bytes",
    "decode_consensus_message",
    "decode_envelope",
    "encode_consensus_message",
    "encode_envelope",
    "sign_proposal",
    "sign_vote",
]
