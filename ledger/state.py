"""World state: typed records under byte keys, and copy-on-write views.

The state is a map from byte keys to canonical record bytes:

    member/<name>     Member      (name, public key, roles)
    account/<name>    Account     (next nonce, balance per currency)
    currency/<code>   CurrencySupply (exponent, issued, redeemed)
    validators        ValidatorSet   (the set in force for the next height)

Contracts add their own prefixes (``escrow/...``). The state tree
(``ledger.smt``) authenticates every key/value pair under one root that
each header carries. Execution runs against a ``StateView``: reads fall
through to the committed state, writes stay in the view until it is
committed into its parent or dropped. That is how one call, one leg or one
block either applies all its writes or none.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar, Protocol

import msgpack

from ledger import encoding as enc
from ledger.genesis import CURRENCIES_MAX, Genesis, Member
from ledger.validators import ValidatorSet

KEY_BYTES_MAX = 256
VALUE_BYTES_MAX = 64 * 1024
BALANCE_MAX = 2**63 - 1
"""No balance or supply may exceed this; sums are checked before they are written."""

KEY_VALIDATORS = b"validators"
KEY_PENDING_VALIDATORS = b"validators/pending"


def member_key(name: str) -> bytes:
    return b"member/" + name.encode()


def account_key(name: str) -> bytes:
    return b"account/" + name.encode()


def currency_key(code: str) -> bytes:
    return b"currency/" + code.encode()


def param_key(name: str) -> bytes:
    return b"param/" + name.encode()


@dataclass(frozen=True, slots=True)
class Balance(enc.Record):
    currency: str
    amount_minor: int
    """Integer count of the currency's minor unit; never negative."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (enc.text(8), enc.uint(63))


@dataclass(frozen=True, slots=True)
class Account(enc.Record):
    nonce: int
    """The nonce the member's next transaction must carry."""
    balances: tuple[Balance, ...]
    """Sorted by currency; zero balances are omitted."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.uint(63),
        enc.array_of(enc.record(Balance), CURRENCIES_MAX),
    )

    def get_balance(self, currency: str) -> int:
        for balance in self.balances:
            if balance.currency == currency:
                return balance.amount_minor
        return 0

    def with_balance(self, currency: str, amount_minor: int) -> Account:
        assert 0 <= amount_minor <= BALANCE_MAX, (currency, amount_minor)
        others = [b for b in self.balances if b.currency != currency]
        if amount_minor:
            others.append(Balance(currency, amount_minor))
        return Account(self.nonce, tuple(sorted(others, key=lambda b: b.currency)))

    def with_nonce(self, nonce: int) -> Account:
        return Account(nonce, self.balances)

    def encode(self) -> bytes:
        """The canonical bytes, built directly: the hottest record (tests check it equals the generic encoder)."""
        assert 0 <= self.nonce < 2**63
        data = msgpack.packb([self.nonce, [[b.currency, b.amount_minor] for b in self.balances]], use_bin_type=True)
        assert isinstance(data, bytes)
        return data


EMPTY_ACCOUNT = Account(0, ())


@dataclass(frozen=True, slots=True)
class CurrencySupply(enc.Record):
    code: str
    exponent: int
    issued_minor: int
    """Everything ever issued; with redeemed, bounds what all balances may sum to."""
    redeemed_minor: int

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (enc.text(8), enc.uint(8), enc.uint(63), enc.uint(63))

    @property
    def outstanding_minor(self) -> int:
        return self.issued_minor - self.redeemed_minor


@dataclass(frozen=True, slots=True)
class PendingValidators(enc.Record):
    """A validator set decided by governance, in force from ``effective_height`` on."""

    effective_height: int
    validator_set: ValidatorSet

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (enc.uint(63), enc.record(ValidatorSet))


def validator_set_in_force(state: StateReader, height: int) -> ValidatorSet:
    """The set that certifies block ``height``, read from the state after ``height - 1`` (or after ``height``).

    ``validators`` holds the set in force; a set scheduled by governance waits
    under ``validators/pending`` and counts from its effective height on (the
    block at that height moves it into ``validators`` before its transactions).
    """
    pending = state.get(KEY_PENDING_VALIDATORS)
    if pending is not None:
        scheduled = PendingValidators.decode(pending)
        if scheduled.effective_height <= height:
            return scheduled.validator_set
    data = state.get(KEY_VALIDATORS)
    assert data is not None, "the state always holds a validator set"
    return ValidatorSet.decode(data)


class StateReader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...


class EmptyState:
    def get(self, key: bytes) -> bytes | None:
        return None


_DELETED = None


class StateView:
    """A copy-on-write view over a reader; ``commit`` folds it into its parent view."""

    def __init__(self, base: StateReader) -> None:
        self._base = base
        self._writes: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        if key in self._writes:
            return self._writes[key]
        return self._base.get(key)

    def set(self, key: bytes, value: bytes) -> None:
        assert len(key) <= KEY_BYTES_MAX and len(value) <= VALUE_BYTES_MAX, key
        self._writes[key] = value

    def delete(self, key: bytes) -> None:
        self._writes[key] = _DELETED

    def child(self) -> StateView:
        return StateView(self)

    def snapshot(self) -> StateView:
        """A view frozen as this one is now: later writes here do not show through it."""
        frozen = StateView(self._base)
        frozen._writes = dict(self._writes)
        return frozen

    def commit(self) -> None:
        """Fold this view's writes into its parent (which must be a StateView)."""
        assert isinstance(self._base, StateView), "only a child view can be committed"
        self._base._writes.update(self._writes)
        self._writes = {}

    def changes(self) -> Mapping[bytes, bytes | None]:
        return self._writes

    # --- typed accessors ---

    def get_account(self, name: str) -> Account:
        data = self.get(account_key(name))
        if data is None:
            return EMPTY_ACCOUNT
        account = _written_accounts.get(data)
        return account if account is not None else _decode_account(data)

    def put_account(self, name: str, account: Account) -> None:
        data = account.encode()
        # The next read of these bytes (often in the same block) needs no decode.
        if len(_written_accounts) >= WRITTEN_ACCOUNTS_CACHED:
            _written_accounts.clear()
        _written_accounts[data] = account
        self.set(account_key(name), data)

    def get_member(self, name: str) -> Member | None:
        data = self.get(member_key(name))
        return None if data is None else _decode_member(data)

    def put_member(self, member: Member) -> None:
        self.set(member_key(member.name), member.encode())

    def get_currency(self, code: str) -> CurrencySupply | None:
        data = self.get(currency_key(code))
        return None if data is None else _decode_currency(data)

    def put_currency(self, supply: CurrencySupply) -> None:
        self.set(currency_key(supply.code), supply.encode())

    def get_param(self, name: str, default: int) -> int:
        """A chain parameter (genesis ``params``; governance may change them): a signed 64-bit integer."""
        data = self.get(param_key(name))
        return default if data is None else _decode_param(data)

    def put_param(self, name: str, value: int) -> None:
        self.set(param_key(name), enc.encode(enc.sint64(value)))

    def get_validator_set(self) -> ValidatorSet:
        data = self.get(KEY_VALIDATORS)
        assert data is not None, "the state always holds a validator set"
        return ValidatorSet.decode(data)


@lru_cache(maxsize=65_536)
def _decode_account(data: bytes) -> Account:
    """A busy account is read many times per block: decode each version once (records are immutable)."""
    return Account.decode(data)


@lru_cache(maxsize=1024)
def _decode_currency(data: bytes) -> CurrencySupply:
    """Read by every payment (its exponent, its existence); changed only by issue and redeem."""
    return CurrencySupply.decode(data)


@lru_cache(maxsize=1024)
def _decode_param(data: bytes) -> int:
    return enc.sint64(enc.decode(data))


WRITTEN_ACCOUNTS_CACHED = 65_536
_written_accounts: dict[bytes, Account] = {}
"""Accounts by the bytes ``put_account`` wrote: records are immutable and equal bytes are equal accounts."""


@lru_cache(maxsize=4096)
def _decode_member(data: bytes) -> Member:
    """Members are read on every transaction and rarely change: decode each version once."""
    return Member.decode(data)


def read_member(state: StateReader, name: str) -> Member | None:
    """A member's record in a state (decoded once per version)."""
    data = state.get(member_key(name))
    return None if data is None else _decode_member(data)


def compute_genesis_state(genesis: Genesis) -> dict[bytes, bytes]:
    """The state at height 0: members, empty accounts, currencies, parameters, validators."""
    view = StateView(EmptyState())
    for member in genesis.members:
        view.put_member(member)
        view.put_account(member.name, EMPTY_ACCOUNT)
    for currency in genesis.currencies:
        view.put_currency(CurrencySupply(currency.code, currency.exponent, 0, 0))
    for param in genesis.params:
        view.put_param(param.name, param.value)
    view.set(KEY_VALIDATORS, genesis.validator_set.encode())
    writes = view.changes()
    return {key: value for key, value in writes.items() if value is not None}


def iter_sorted(changes: Mapping[bytes, bytes | None]) -> Iterator[tuple[bytes, bytes | None]]:
    for key in sorted(changes):
        yield key, changes[key]


for _record in (Balance, Account, CurrencySupply, PendingValidators):
    enc.check_record_wire(_record)

__all__ = [
    "Account",
    "BALANCE_MAX",
    "Balance",
    "CurrencySupply",
    "EMPTY_ACCOUNT",
    "EmptyState",
    "KEY_PENDING_VALIDATORS",
    "KEY_VALIDATORS",
    "PendingValidators",
    "StateReader",
    "StateView",
    "account_key",
    "compute_genesis_state",
    "currency_key",
    "iter_sorted",
    "member_key",
    "param_key",
    "read_member",
    "validator_set_in_force",
]
