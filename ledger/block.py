"""Blocks, votes and commit certificates.

A block is a header and its signed transactions. The header commits to
everything an auditor checks: the parent (hash chain), the transactions
(an RFC 9162 Merkle root over their ids), the transparency log after the
block, the state root after applying the block, and the validator set in
force. The block hash is ``SHA-256(TAG_BLOCK_HEADER || encode(header))``.

A commit certificate holds the precommit signatures of validators with
more than 2/3 of the voting power for one block hash. Each signature
covers ``encode(["ledger/vote/v1", chain_id, encode(vote)])`` where vote is
the ``Vote`` the validator cast, so a certificate is a set of votes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ledger import encoding as enc
from ledger import keys, merkle
from ledger.errors import InvalidBlock
from ledger.hashing import HASH_BYTES, TAG_BLOCK_HEADER, tagged_hash
from ledger.transaction import TX_BYTES_MAX, SignedTransaction
from ledger.validators import VALIDATORS_MAX, ValidatorSet

BLOCK_TXS_MAX = 10_000
BLOCK_BYTES_MAX = 8 * 1024 * 1024
assert BLOCK_BYTES_MAX <= enc.MESSAGE_BYTES_MAX
assert BLOCK_TXS_MAX <= enc.CONTAINER_ITEMS_MAX
assert BLOCK_TXS_MAX * 400 <= BLOCK_BYTES_MAX  # a full block of typical (~400 B) txs fits
assert TX_BYTES_MAX <= BLOCK_BYTES_MAX

VOTE_PREVOTE = 1
VOTE_PRECOMMIT = 2
NIL_BLOCK_HASH = b""
"""A vote for no block (Tendermint's nil)."""


@dataclass(frozen=True, slots=True)
class BlockHeader(enc.Record):
    chain_id: str
    """The network; a header of another chain never verifies here."""
    height: int
    """1 for the first block after genesis, then consecutive."""
    parent_hash: bytes
    """Hash of the previous header; the genesis hash at height 1."""
    timestamp_ms: int
    """Proposer's clock in Unix milliseconds; never decreases along the chain."""
    proposer: str
    """Name of the validator that proposed this block."""
    tx_count: int
    """Number of transactions in the block."""
    tx_root: bytes
    """RFC 9162 root over SHA-256(0x00 || tx_id) of the block's transactions in order."""
    log_size: int
    """Transactions in the transparency log after this block (all blocks so far)."""
    log_root: bytes
    """RFC 9162 root of the transparency log at ``log_size``."""
    state_root: bytes
    """Root of the state tree after applying this block."""
    validator_set_hash: bytes
    """Hash of the validator set in force at this height (it signs this block)."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.text(64),
        enc.uint(64),
        enc.fixed_bytes(HASH_BYTES),
        enc.uint(64),
        enc.text(64),
        enc.uint(32),
        enc.fixed_bytes(HASH_BYTES),
        enc.uint(64),
        enc.fixed_bytes(HASH_BYTES),
        enc.fixed_bytes(HASH_BYTES),
        enc.fixed_bytes(HASH_BYTES),
    )

    def compute_hash(self) -> bytes:
        return tagged_hash(TAG_BLOCK_HEADER, self.encode())


@dataclass(frozen=True, slots=True)
class Block(enc.Record):
    header: BlockHeader
    transactions: tuple[SignedTransaction, ...]

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.record(BlockHeader),
        enc.array_of(enc.record(SignedTransaction), BLOCK_TXS_MAX),
    )

    @classmethod
    def decode(cls, data: bytes, *, max_bytes: int = BLOCK_BYTES_MAX) -> Block:
        return cls.from_wire(enc.decode(data, max_bytes=max_bytes))

    @property
    def height(self) -> int:
        return self.header.height

    def compute_hash(self) -> bytes:
        return self.header.compute_hash()


def compute_tx_root(tx_ids: list[bytes]) -> bytes:
    return merkle.compute_root([merkle.hash_leaf(tx_id) for tx_id in tx_ids])


@dataclass(frozen=True, slots=True)
class Vote(enc.Record):
    """A validator's prevote or precommit for a block (or nil) at a height and round."""

    height: int
    round: int
    kind: int
    """VOTE_PREVOTE or VOTE_PRECOMMIT."""
    block_hash: bytes
    """The header hash voted for, or b"" for nil."""
    validator: str

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.uint(64),
        enc.uint(32),
        enc.uint(8),
        enc.var_bytes(HASH_BYTES),
        enc.text(64),
    )

    def signing_bytes(self, chain_id: str) -> bytes:
        return keys.signing_input(keys.DOMAIN_VOTE, chain_id, self.encode())


@dataclass(frozen=True, slots=True)
class CommitSignature(enc.Record):
    validator: str
    signature: bytes

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.text(64),
        enc.fixed_bytes(keys.SIGNATURE_BYTES),
    )


@dataclass(frozen=True, slots=True)
class CommitCertificate(enc.Record):
    """Precommits of more than 2/3 of the power for one block at one round."""

    height: int
    round: int
    block_hash: bytes
    signatures: tuple[CommitSignature, ...]
    """Sorted by validator name, each validator at most once."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.uint(64),
        enc.uint(32),
        enc.fixed_bytes(HASH_BYTES),
        enc.array_of(enc.record(CommitSignature), VALIDATORS_MAX),
    )

    def vote_of(self, validator: str) -> Vote:
        return Vote(self.height, self.round, VOTE_PRECOMMIT, self.block_hash, validator)

    def verify(self, chain_id: str, validator_set: ValidatorSet, block_hash: bytes, height: int) -> None:
        """Raise ``InvalidBlock`` unless this certifies ``block_hash`` at ``height``."""
        if self.height != height:
            raise InvalidBlock("bad_certificate", f"certificate is for height {self.height}", height=height)
        if self.block_hash != block_hash:
            raise InvalidBlock("bad_certificate", "certificate is for another block", height=height)
        names = [item.validator for item in self.signatures]
        if len(set(names)) != len(names):
            raise InvalidBlock("duplicate_signer", "a validator signed twice", height=height)
        if names != sorted(names):
            raise InvalidBlock("bad_certificate", "signatures are not sorted by validator", height=height)
        items = []
        for item in self.signatures:
            validator = validator_set.get(item.validator)
            if validator is None:
                raise InvalidBlock("unknown_validator", f"{item.validator} is not a validator", height=height)
            items.append((validator.public_key, self.vote_of(item.validator).signing_bytes(chain_id), item.signature))
        for item, is_valid in zip(self.signatures, keys.verify_many(items, threads=1)):
            if not is_valid:
                raise InvalidBlock("invalid_signature", f"bad precommit signature of {item.validator}", height=height)
        power = sum(validator_set.get(name).voting_power for name in names)  # type: ignore[union-attr]
        if not validator_set.has_quorum(power):
            raise InvalidBlock(
                "insufficient_voting_power",
                f"signers hold {power} of {validator_set.total_power} voting power",
                height=height,
            )


def sign_commit(
    chain_id: str, header: BlockHeader, round_number: int, signers: list[tuple[str, keys.PrivateKey]]
) -> CommitCertificate:
    """Build a certificate from validators' keys (tests, demo and a one-node dev chain)."""
    block_hash = header.compute_hash()
    signatures = []
    for name, key in sorted(signers, key=lambda pair: pair[0]):
        vote = Vote(header.height, round_number, VOTE_PRECOMMIT, block_hash, name)
        signatures.append(CommitSignature(name, key.sign_raw(vote.signing_bytes(chain_id))))
    return CommitCertificate(header.height, round_number, block_hash, tuple(signatures))


def decode_header(data: bytes) -> BlockHeader:
    header: BlockHeader = BlockHeader.decode(data, max_bytes=4096)
    return header


for _record in (BlockHeader, Block, Vote, CommitSignature, CommitCertificate):
    enc.check_record_wire(_record)

__all__ = [
    "BLOCK_BYTES_MAX",
    "BLOCK_TXS_MAX",
    "Block",
    "BlockHeader",
    "CommitCertificate",
    "CommitSignature",
    "NIL_BLOCK_HASH",
    "VOTE_PRECOMMIT",
    "VOTE_PREVOTE",
    "Vote",
    "compute_tx_root",
    "decode_header",
    "sign_commit",
]
