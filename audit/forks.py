"""Across sources: the same block at every height they share, or a fork with its double signers.

Each source's chain was verified on its own first, and its audit kept the
hash of every block it verified: the comparison uses those, never a second
answer from a node. Chains are hash-linked, so two sources that verified the
same block at their highest shared height hold the same blocks below it;
only when those differ does a binary search look for the first height where
they part. There both blocks were validly certified (each audit checked its
certificate): that is a fork. The two certificates are fetched once more and
checked again against the set each audit saw certify that height; every
validator with a precommit in both signed two blocks at one height.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from audit.engine import VerifiedHashes
from audit.sources import ChainSource
from ledger.block import BlockHeader, CommitCertificate
from ledger.errors import LedgerError
from ledger.validators import ValidatorSet
from node.client import ApiError


@dataclass(frozen=True)
class Fork:
    height: int
    sources: tuple[str, str]
    block_hashes: tuple[str, str]
    double_signers: tuple[str, ...]
    """Validators with a precommit in both certificates: the evidence names them."""
    rounds: tuple[int, int] = (0, 0)
    """The certificates' rounds (in one round, signing both is equivocation); (-1, -1) when not re-read."""

    def to_json(self) -> dict[str, Any]:
        return {"height": self.height, "sources": list(self.sources), "block_hashes": list(self.block_hashes),
                "rounds": list(self.rounds), "double_signers": list(self.double_signers)}

    def describe(self) -> str:
        if self.rounds == (-1, -1):
            signers = "unknown (a source no longer serves that certificate)"
        else:
            signers = ", ".join(self.double_signers) or "none (different validators certified each block)"
        return (f"FORK at height {self.height}: {self.sources[0]} holds {self.block_hashes[0][:16]}, "
                f"{self.sources[1]} holds {self.block_hashes[1][:16]}; signed both: {signers}")


@dataclass
class VerifiedSource:
    name: str
    hashes: VerifiedHashes
    """The hash of every block this source's audit verified (from ``hashes.first_height`` on)."""
    verified_height: int
    """Every block up to here passed this source's own audit."""
    source: ChainSource
    validator_sets: dict[bytes, ValidatorSet]


def find_forks(sources: list[VerifiedSource], chain_id: str) -> list[Fork]:
    """Compare every pair by the hashes their audits verified; name who signed both at the first difference."""
    forks = []
    for i, first in enumerate(sources):
        for second in sources[i + 1:]:
            fork = _compare(first, second, chain_id)
            if fork is not None:
                forks.append(fork)
    return forks


def _hash(side: VerifiedSource, height: int) -> bytes | None:
    return side.hashes.get(height) if height <= side.verified_height else None


def _compare(a: VerifiedSource, b: VerifiedSource, chain_id: str) -> Fork | None:
    shared = min(a.verified_height, b.verified_height)
    low = max(a.hashes.first_height, b.hashes.first_height)  # below: the checkpoint both extend
    if shared < low or _hash(a, shared) == _hash(b, shared):
        return None
    high = shared  # they differ here (hash-linked chains); find the lowest height where they differ
    while low < high:
        middle = (low + high) // 2
        if _hash(a, middle) == _hash(b, middle):
            low = middle + 1
        else:
            high = middle
    hash_a, hash_b = _hash(a, low), _hash(b, low)
    assert hash_a is not None and hash_b is not None and hash_a != hash_b
    cert_a = _certificate(a, low, hash_a, chain_id)
    cert_b = _certificate(b, low, hash_b, chain_id)
    signers: tuple[str, ...] = ()
    rounds = (-1, -1)
    if cert_a is not None and cert_b is not None:
        signers = tuple(sorted({s.validator for s in cert_a.signatures} & {s.validator for s in cert_b.signatures}))
        rounds = (cert_a.round, cert_b.round)
    return Fork(low, (a.name, b.name), (hash_a.hex(), hash_b.hex()), signers, rounds)


def _certificate(side: VerifiedSource, height: int, block_hash: bytes, chain_id: str) -> CommitCertificate | None:
    """The certificate of the block the audit verified at ``height``, fetched again and checked again.

    None when the source no longer serves that block with a valid certificate (the fork stands, by the
    hashes both audits verified; only the names of the double signers are then unknown).
    """
    try:
        found = side.source.header_and_certificate(height)
        if found is None:
            return None
        header = BlockHeader.decode(found[0])
        certificate = CommitCertificate.decode(found[1])
        validator_set = side.validator_sets.get(header.validator_set_hash)
        if header.compute_hash() != block_hash or validator_set is None:
            return None
        certificate.verify(chain_id, validator_set, block_hash, height)
        return certificate
    except (LedgerError, ApiError):
        return None


__all__ = ["Fork", "VerifiedSource", "find_forks"]
