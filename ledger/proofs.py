"""Proofs a participant checks without trusting the node that served them.

Each bundle carries a block header and its commit certificate. Checking one
needs only the chain id and the validator set in force at that height
(from the genesis): the certificate shows more than 2/3 of the voting power
signed the header, and the header's log or state root anchors the rest.

- ``TxInclusion``: a transaction id is leaf ``log_index`` of the
  transparency log whose root and size the header carries (RFC 9162 path).
- ``AccountProof``: an account's stored value (or its absence) under the
  header's state root (state-tree proof, PROTOCOL.md §6).
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger import merkle, smt
from ledger.block import BlockHeader, CommitCertificate, decode_header
from ledger.errors import InvalidBlock
from ledger.state import Account, account_key
from ledger.validators import ValidatorSet


@dataclass(frozen=True, slots=True)
class CertifiedHeader:
    header_bytes: bytes
    certificate_bytes: bytes

    def verify(self, chain_id: str, validator_set: ValidatorSet) -> BlockHeader:
        """The header, once its certificate is shown to be signed by the set in force."""
        header = decode_header(self.header_bytes)
        if header.chain_id != chain_id:
            raise InvalidBlock("wrong_chain", f"header of chain {header.chain_id!r}", height=header.height)
        if header.validator_set_hash != validator_set.compute_hash():
            raise InvalidBlock("wrong_validator_set", "header names another validator set", height=header.height)
        certificate = CommitCertificate.decode(self.certificate_bytes)
        certificate.verify(chain_id, validator_set, header.compute_hash(), header.height)
        return header


@dataclass(frozen=True, slots=True)
class TxInclusion:
    tx_id: bytes
    log_index: int
    path: tuple[bytes, ...]
    anchor: CertifiedHeader

    def verify(self, chain_id: str, validator_set: ValidatorSet) -> BlockHeader:
        header = self.anchor.verify(chain_id, validator_set)
        merkle.verify_inclusion(merkle.hash_leaf(self.tx_id), self.log_index, header.log_size, list(self.path),
                                header.log_root)
        return header


@dataclass(frozen=True, slots=True)
class AccountProof:
    name: str
    value: bytes | None
    """The account's stored bytes at that height; None if it has never held anything."""
    state_proof: bytes
    anchor: CertifiedHeader

    def verify(self, chain_id: str, validator_set: ValidatorSet) -> Account | None:
        header = self.anchor.verify(chain_id, validator_set)
        smt.verify_proof(header.state_root, account_key(self.name), self.value,
                         smt.StateProof.decode(self.state_proof))
        return None if self.value is None else Account.decode(self.value)


__all__ = ["AccountProof", "CertifiedHeader", "TxInclusion"]
