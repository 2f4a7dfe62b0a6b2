"""Across sources: the same block at every height they share, or a fork with its double signers.

Each source's chain was verified on its own first, so every block up to a
source's verified height links to its parent by hash. Two sources that
hold the same block at their highest shared verified height therefore hold
the same blocks at every height below it; only when those differ does the
comparison look further, by binary search, for the first height where they
part. There both blocks are validly certified (each source's audit checked
its certificate): that is a fork, and every validator whose precommit is in
both certificates signed two blocks at one height.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    """The certificates' rounds: in one round, signing both is equivocation by the consensus rules."""

    def to_json(self) -> dict[str, Any]:
        return {"height": self.height, "sources": list(self.sources), "block_hashes": list(self.block_hashes),
                "rounds": list(self.rounds), "double_signers": list(self.double_signers)}

    def describe(self) -> str:
        signers = ", ".join(self.double_signers) or "none (different validators certified each block)"
        return (f"FORK at height {self.height}: {self.sources[0]} holds {self.block_hashes[0][:16]}, "
                f"{self.sources[1]} holds {self.block_hashes[1][:16]}; signed both: {signers}")


@dataclass
class VerifiedSource:
    source: ChainSource
    verified_height: int
    """Every block up to here passed this source's own audit."""
    first_height: int = 1
    """Blocks below this were verified in an earlier run (the checkpoint): shared by construction."""


def find_forks(sources: list[VerifiedSource], chain_id: str, validator_sets: list[ValidatorSet]) -> list[Fork]:
    """Compare every pair; ``validator_sets`` are the sets the audits saw in force (to re-check certificates)."""
    forks = []
    for i, first in enumerate(sources):
        for second in sources[i + 1:]:
            fork = _compare(first, second, chain_id, validator_sets)
            if fork is not None:
                forks.append(fork)
    return forks


def _compare(a: VerifiedSource, b: VerifiedSource, chain_id: str, validator_sets: list[ValidatorSet]) -> Fork | None:
    shared = min(a.verified_height, b.verified_height)
    low = max(a.first_height, b.first_height)
    if shared < low or _block_hash(a, shared) == _block_hash(b, shared):
        return None
    high = shared  # they differ here; find the lowest height where they differ
    while low < high:
        middle = (low + high) // 2
        if _block_hash(a, middle) == _block_hash(b, middle):
            low = middle + 1
        else:
            high = middle
    # A node is asked again here: check what it answers now, as its audit did before.
    sides = [_certified(side, low, chain_id, validator_sets) for side in (a, b)]
    if sides[0] is None or sides[1] is None:
        return None  # a source no longer serves a validly certified block there: its own result is what counts
    (hash_a, cert_a), (hash_b, cert_b) = sides  # type: ignore[misc]
    signers = sorted({s.validator for s in cert_a.signatures} & {s.validator for s in cert_b.signatures})
    return Fork(low, (a.source.name, b.source.name), (hash_a.hex(), hash_b.hex()), tuple(signers),
                (cert_a.round, cert_b.round))


def _certified(side: VerifiedSource, height: int, chain_id: str,
               validator_sets: list[ValidatorSet]) -> tuple[bytes, CommitCertificate] | None:
    """The block hash and certificate a source holds at ``height``, if the certificate verifies."""
    try:
        found = side.source.header_and_certificate(height)
        if found is None:
            return None
        header = BlockHeader.decode(found[0])
        certificate = CommitCertificate.decode(found[1])
        block_hash = header.compute_hash()
        for validator_set in validator_sets:
            if validator_set.compute_hash() == header.validator_set_hash:
                certificate.verify(chain_id, validator_set, block_hash, height)
                return block_hash, certificate
    except (LedgerError, ApiError):
        pass
    return None


def _block_hash(side: VerifiedSource, height: int) -> bytes | None:
    """The block hash a source holds at ``height`` (None if it no longer serves a readable block there)."""
    try:
        found = side.source.header_and_certificate(height)
        return None if found is None else BlockHeader.decode(found[0]).compute_hash()
    except (LedgerError, ApiError):
        return None


__all__ = ["Fork", "VerifiedSource", "find_forks"]
