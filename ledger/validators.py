"""The validator set: who may vote on blocks, and with how much power.

A commit needs votes from validators holding strictly more than two thirds
of the set's total voting power. The set is ordered by name so that its
encoding, and therefore its hash in every header, is canonical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ledger import encoding as enc
from ledger import keys
from ledger.errors import GenesisError
from ledger.hashing import TAG_VALIDATOR_SET, tagged_hash
from ledger.names import is_member_name

VALIDATORS_MAX = 128
VOTING_POWER_MAX = 2**32 - 1
"""Per validator; keeps total power far below 2**63 so sums never overflow."""
assert VALIDATORS_MAX * VOTING_POWER_MAX < 2**63


@dataclass(frozen=True, slots=True)
class Validator(enc.Record):
    name: str
    """Validator name, unique in the set (member-name rules)."""
    public_key: bytes
    """Ed25519 public key that signs this validator's votes."""
    voting_power: int
    """Weight of its vote, 1 .. VOTING_POWER_MAX."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.text(64),
        enc.fixed_bytes(keys.PUBLIC_KEY_BYTES),
        enc.uint(32),
    )


@dataclass(frozen=True, slots=True)
class ValidatorSet(enc.Record):
    validators: tuple[Validator, ...]
    """Sorted by name, names distinct."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.array_of(enc.record(Validator), VALIDATORS_MAX),
    )

    def __post_init__(self) -> None:
        names = [v.name for v in self.validators]
        if not names:
            raise GenesisError("invalid_genesis", "the validator set is empty")
        if names != sorted(names) or len(set(names)) != len(names):
            raise GenesisError("invalid_genesis", "validators must be sorted by name and distinct")
        for validator in self.validators:
            if not is_member_name(validator.name):
                raise GenesisError("invalid_genesis", f"bad validator name {validator.name!r}")
            if not 1 <= validator.voting_power <= VOTING_POWER_MAX:
                raise GenesisError("invalid_genesis", f"bad voting power for {validator.name}")

    @property
    def total_power(self) -> int:
        return sum(v.voting_power for v in self.validators)

    def get(self, name: str) -> Validator | None:
        for validator in self.validators:
            if validator.name == name:
                return validator
        return None

    def has_quorum(self, power: int) -> bool:
        """Strictly more than two thirds of the total power (integer arithmetic)."""
        return 3 * power > 2 * self.total_power

    def compute_hash(self) -> bytes:
        return tagged_hash(TAG_VALIDATOR_SET, self.encode())

    def get_proposer(self, height: int, round_number: int) -> Validator:
        """Round-robin by height and round, weighted by voting power."""
        total = self.total_power
        slot = (height + round_number) % total
        for validator in self.validators:
            if slot < validator.voting_power:
                return validator
            slot -= validator.voting_power
        raise AssertionError("unreachable: slot is below the total power")


for _record in (Validator, ValidatorSet):
    enc.check_record_wire(_record)

__all__ = ["VALIDATORS_MAX", "Validator", "ValidatorSet"]
