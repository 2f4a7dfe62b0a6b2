"""Genesis: the document that defines a chain.

It names the chain, its first validator set, its members and their roles,
its currencies with their minor-unit exponents, and its parameters. Its hash
is the chain's identity: block 1's parent hash is the genesis hash, and a
store refuses to open under a different genesis.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ledger import encoding as enc
from ledger import keys
from ledger.errors import GenesisError, LedgerError
from ledger.hashing import TAG_GENESIS, tagged_hash
from ledger.names import is_currency_code, is_identifier, is_member_name, is_role
from ledger.validators import Validator, ValidatorSet

MEMBERS_MAX = 10_000
CURRENCIES_MAX = 256
PARAMS_MAX = 256
ROLES_PER_MEMBER_MAX = 16
CURRENCY_EXPONENT_MAX = 18
_CHAIN_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


@dataclass(frozen=True, slots=True)
class Member(enc.Record):
    name: str
    """Unique member name; the sender of its transactions."""
    public_key: bytes
    """Ed25519 key that signs its transactions."""
    roles: tuple[str, ...]
    """Sorted roles: participant, fx_provider, auditor, regulator, registrar, issuer:<CCY>."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.text(64),
        enc.fixed_bytes(keys.PUBLIC_KEY_BYTES),
        enc.array_of(enc.text(32), ROLES_PER_MEMBER_MAX),
    )


@dataclass(frozen=True, slots=True)
class Currency(enc.Record):
    code: str
    """e.g. CNY, USD, JPY."""
    exponent: int
    """Minor units per major unit = 10**exponent (CNY 2, JPY 0)."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (enc.text(8), enc.uint(8))


@dataclass(frozen=True, slots=True)
class Param(enc.Record):
    name: str
    value: int

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (enc.text(32), enc.sint64)


@dataclass(frozen=True, slots=True)
class Genesis(enc.Record):
    chain_id: str
    genesis_time_ms: int
    validator_set: ValidatorSet
    members: tuple[Member, ...]
    """Sorted by name."""
    currencies: tuple[Currency, ...]
    """Sorted by code."""
    params: tuple[Param, ...]
    """Sorted by name; integers only."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.text(64),
        enc.uint(64),
        enc.record(ValidatorSet),
        enc.array_of(enc.record(Member), MEMBERS_MAX),
        enc.array_of(enc.record(Currency), CURRENCIES_MAX),
        enc.array_of(enc.record(Param), PARAMS_MAX),
    )

    def __post_init__(self) -> None:
        check_genesis(self)

    def compute_hash(self) -> bytes:
        return tagged_hash(TAG_GENESIS, self.encode())

    def get_member(self, name: str) -> Member | None:
        for member in self.members:
            if member.name == name:
                return member
        return None

    def get_param(self, name: str, default: int) -> int:
        for param in self.params:
            if param.name == name:
                return param.value
        return default

    # --- JSON form (what operators edit and ship between machines) ---

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "genesis_time_ms": self.genesis_time_ms,
            "validators": [
                {"name": v.name, "public_key": v.public_key.hex(), "voting_power": v.voting_power}
                for v in self.validator_set.validators
            ],
            "members": [
                {"name": m.name, "public_key": m.public_key.hex(), "roles": list(m.roles)} for m in self.members
            ],
            "currencies": [{"code": c.code, "exponent": c.exponent} for c in self.currencies],
            "params": {p.name: p.value for p in self.params},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Genesis:
        """Parse the JSON form strictly: integers must be JSON integers, keys hex."""
        integer = _strict_int
        try:
            validators = ValidatorSet(
                tuple(
                    sorted(
                        (Validator(v["name"], bytes.fromhex(v["public_key"]), integer(v["voting_power"]))
                         for v in data["validators"]),
                        key=lambda v: v.name,
                    )
                )
            )
            members = tuple(
                sorted(
                    (Member(m["name"], bytes.fromhex(m["public_key"]), tuple(sorted(m["roles"])))
                     for m in data["members"]),
                    key=lambda m: m.name,
                )
            )
            currencies = tuple(
                sorted((Currency(c["code"], integer(c["exponent"])) for c in data["currencies"]), key=lambda c: c.code)
            )
            params = tuple(sorted((Param(k, integer(v)) for k, v in data.get("params", {}).items()), key=lambda p: p.name))
            genesis = cls(str(data["chain_id"]), integer(data["genesis_time_ms"]), validators, members, currencies, params)
            # Round-trip through the canonical encoding so every typed check runs.
            return cls.decode(genesis.encode())
        except GenesisError:
            raise
        except LedgerError as error:
            raise GenesisError("invalid_genesis", error.detail) from error
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise GenesisError("invalid_genesis", f"malformed genesis JSON: {error!r}") from error

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Genesis:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise GenesisError("invalid_genesis", f"cannot read genesis {path}: {error}") from error
        return cls.from_json(data)


def _strict_int(value: Any) -> int:
    """A JSON integer, never a float, boolean or string that happens to convert."""
    if type(value) is not int:
        raise GenesisError("invalid_genesis", f"expected an integer, got {value!r}")
    return value


def check_genesis(genesis: Genesis) -> None:
    """All the rules a genesis must satisfy, one per line."""
    fail = lambda why: GenesisError("invalid_genesis", why)  # noqa: E731
    if _CHAIN_ID.fullmatch(genesis.chain_id) is None:
        raise fail(f"chain id {genesis.chain_id!r} must match {_CHAIN_ID.pattern}")
    names = [m.name for m in genesis.members]
    if names != sorted(names) or len(set(names)) != len(names):
        raise fail("members must be sorted by name and distinct")
    codes = [c.code for c in genesis.currencies]
    if codes != sorted(codes) or len(set(codes)) != len(codes):
        raise fail("currencies must be sorted by code and distinct")
    for currency in genesis.currencies:
        if not is_currency_code(currency.code):
            raise fail(f"bad currency code {currency.code!r}")
        if currency.exponent > CURRENCY_EXPONENT_MAX:
            raise fail(f"exponent of {currency.code} above {CURRENCY_EXPONENT_MAX}")
    for member in genesis.members:
        if not is_member_name(member.name):
            raise fail(f"bad member name {member.name!r}")
        if list(member.roles) != sorted(set(member.roles)):
            raise fail(f"roles of {member.name} must be sorted and distinct")
        for role in member.roles:
            if not is_role(role):
                raise fail(f"unknown role {role!r} for {member.name}")
            if role.startswith("issuer:") and role.split(":", 1)[1] not in codes:
                raise fail(f"{member.name} issues unknown currency {role}")
    param_names = [p.name for p in genesis.params]
    if param_names != sorted(param_names) or len(set(param_names)) != len(param_names):
        raise fail("params must be sorted by name and distinct")
    if not all(is_identifier(name) for name in param_names):
        raise fail("param names must be identifiers")


for _record in (Member, Currency, Param, Genesis):
    enc.check_record_wire(_record)

__all__ = ["Currency", "Genesis", "Member", "Param", "check_genesis"]
