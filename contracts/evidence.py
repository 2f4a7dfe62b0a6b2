"""evidence: the chain's own record of a validator that signed two conflicting votes.

A validator whose node caught the double vote submits both signed votes in
a ``report`` transaction. The contract re-checks everything itself (the
sender is not trusted): both votes are by one validator of the set in
force, for one height, round and kind, for different blocks, with valid
signatures; the offence is not already recorded. It then stores the pair
under ``evidence/<validator>/<height>/<round>/<kind>`` and emits a
``double_vote`` event, so every auditor replaying the chain sees it.
"""

from __future__ import annotations

from typing import Any

from contracts.runtime import CallContext, ContractError, register
from ledger import encoding as enc
from ledger import keys
from ledger.block import Vote
from ledger.errors import EncodingError
from ledger.transaction import SignedTransaction, Transaction


def make_report(reporter: str, key: keys.PrivateKey, nonce: int, chain_id: str,
                vote_a: Vote, signature_a: bytes, vote_b: Vote, signature_b: bytes) -> SignedTransaction:
    """The ``evidence.report`` transaction a validator signs to put a double vote on chain."""
    body = Transaction(reporter, nonce, "evidence", "report",
                       {"vote_a": vote_a.encode(), "signature_a": signature_a,
                        "vote_b": vote_b.encode(), "signature_b": signature_b}, 0)
    return body.sign(key, chain_id)


def evidence_key(vote: Vote) -> bytes:
    return f"evidence/{vote.validator}/{vote.height}/{vote.round}/{vote.kind}".encode()


def _vote(args: dict[str, Any], field: str) -> tuple[Vote, bytes]:
    vote_bytes, signature = args.get(f"vote_{field}"), args.get(f"signature_{field}")
    if type(vote_bytes) is not bytes or type(signature) is not bytes:
        raise ContractError("invalid_evidence", f"vote_{field} and signature_{field} must be bytes")
    try:
        return Vote.decode(vote_bytes, max_bytes=256), signature
    except EncodingError as error:
        raise ContractError("invalid_evidence", f"vote_{field}: {error.detail}") from error


@register("evidence", "report")
def process_report(context: CallContext, args: dict[str, Any]) -> None:
    vote_a, signature_a = _vote(args, "a")
    vote_b, signature_b = _vote(args, "b")
    # One offence: the same validator, height, round and kind ...
    if (vote_a.validator, vote_a.height, vote_a.round, vote_a.kind) != (
            vote_b.validator, vote_b.height, vote_b.round, vote_b.kind):
        raise ContractError("invalid_evidence", "the votes are not for one validator, height, round and kind")
    # ... for two different blocks (one may be nil).
    if vote_a.block_hash == vote_b.block_hash:
        raise ContractError("invalid_evidence", "the votes do not conflict")
    # Only a past height can hold a committed offence.
    if vote_a.height >= context.block.height:
        raise ContractError("invalid_evidence", "evidence must be for an earlier height")
    validator = context.state.get_validator_set().get(vote_a.validator)
    if validator is None:
        raise ContractError("invalid_evidence", f"{vote_a.validator} is not a validator")
    for vote, signature in ((vote_a, signature_a), (vote_b, signature_b)):
        if not keys.verify(validator.public_key, keys.DOMAIN_VOTE, context.block.chain_id, vote.encode(), signature):
            raise ContractError("invalid_evidence", "a vote's signature does not verify")
    key = evidence_key(vote_a)
    if context.state.get(key) is not None:
        raise ContractError("evidence_already_recorded")
    first, second = sorted([(vote_a, signature_a), (vote_b, signature_b)], key=lambda pair: pair[0].block_hash)
    context.state.set(key, enc.encode([first[0].encode(), first[1], second[0].encode(), second[1]]))
    context.emit("double_vote", validator=vote_a.validator, height=vote_a.height, round=vote_a.round,
                 kind=vote_a.kind, reporter=context.sender)
