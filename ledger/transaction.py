"""Signed transactions: who calls which contract method with what arguments.

A ``Transaction`` is the body the sender signs; a ``SignedTransaction`` is
the body with its Ed25519 signature. The signature covers
``encode(["ledger/tx/v1", chain_id, body_bytes])``; the chain id is not in
the body, it is in what is signed. The transaction id is the plain SHA-256
of the signed transaction's canonical bytes, so the same signed bytes
always have the same id (that is what makes resubmission idempotent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ledger import encoding as enc
from ledger import keys
from ledger.errors import EncodingError, InvalidTransaction, SignatureError
from ledger.hashing import sha256
from ledger.names import check_member_name, is_identifier

TX_BYTES_MAX = 16 * 1024
"""Largest signed transaction accepted (arguments included)."""
TX_ARGS_COUNT_MAX = 64
"""Most top-level arguments in one call."""
NONCE_MAX = 2**63 - 1


TX_ARGS_DEPTH_MAX = enc.NESTING_DEPTH_MAX - 4
"""Nesting inside args: a block wraps them in 4 more levels (block, tx list, signed tx, body)."""


def _nesting_depth(value: Any) -> int:
    if type(value) is list:
        return 1 + max((_nesting_depth(item) for item in value), default=0)
    if type(value) is dict:
        return 1 + max((_nesting_depth(item) for item in value.values()), default=0)
    return 0


def _check_args(value: Any) -> dict[str, Any]:
    args = enc.text_map(value)
    if len(args) > TX_ARGS_COUNT_MAX:
        raise EncodingError("too_large", f"more than {TX_ARGS_COUNT_MAX} arguments")
    # A transaction must still decode inside a block, which adds nesting levels above it.
    if _nesting_depth(args) > TX_ARGS_DEPTH_MAX:
        raise EncodingError("too_large", f"arguments nested deeper than {TX_ARGS_DEPTH_MAX} levels")
    return args


@dataclass(frozen=True, slots=True)
class Transaction(enc.Record):
    """The signed body of a contract call."""

    sender: str
    """Member name of the signer; its key in force at the block's height must verify."""
    nonce: int
    """The sender's next nonce: 0 for its first transaction, then +1 each time."""
    contract: str
    """Registered contract name, e.g. ``accounts``."""
    method: str
    """Method of that contract, e.g. ``transfer``."""
    args: dict[str, Any]
    """Arguments: a map with text keys and canonical values (no floats)."""
    expiry_height: int
    """Last height at which the transaction may be included; 0 means no expiry."""
    _encoded: bytes | None = field(default=None, init=False, repr=False, compare=False)
    """Cache of the canonical bytes (not on the wire): every signature check reuses them."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.text(64),
        enc.uint(63),
        enc.text(32),
        enc.text(32),
        _check_args,
        enc.uint(64),
    )

    def encode(self) -> bytes:
        if self._encoded is None:
            object.__setattr__(self, "_encoded", enc.encode(self.to_wire()))
        assert self._encoded is not None
        return self._encoded

    def signing_bytes(self, chain_id: str) -> bytes:
        return keys.signing_input(keys.DOMAIN_TRANSACTION, chain_id, self.encode())

    def sign(self, key: keys.PrivateKey, chain_id: str) -> SignedTransaction:
        return SignedTransaction(self, key.sign_raw(self.signing_bytes(chain_id)))


@dataclass(frozen=True, slots=True)
class SignedTransaction(enc.Record):
    """A transaction body and its sender's signature, as stored in blocks."""

    body: Transaction
    signature: bytes
    _encoded: bytes | None = field(default=None, init=False, repr=False, compare=False)
    """Cache of the canonical bytes (not on the wire): ids and roots reuse them."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.record(Transaction),
        enc.fixed_bytes(keys.SIGNATURE_BYTES),
    )
    def encode(self) -> bytes:
        if self._encoded is None:
            object.__setattr__(self, "_encoded", enc.encode(self.to_wire()))
        assert self._encoded is not None
        return self._encoded

    @classmethod
    def decode(cls, data: bytes, *, max_bytes: int = TX_BYTES_MAX) -> SignedTransaction:
        """Decode and check the shape (stateless rules, not the signature)."""
        max_bytes = min(max_bytes, TX_BYTES_MAX)
        if len(data) > max_bytes:
            raise EncodingError("too_large", f"a transaction is at most {max_bytes} bytes")
        signed: SignedTransaction = cls.from_wire(enc.decode(data, max_bytes=max_bytes))
        check_shape(signed.body)
        # decode proved these are the canonical bytes: [body, bin8(64) signature]
        object.__setattr__(signed, "_encoded", bytes(data))
        object.__setattr__(signed.body, "_encoded", bytes(data[1 : -2 - keys.SIGNATURE_BYTES]))
        assert data[-2 - keys.SIGNATURE_BYTES : -keys.SIGNATURE_BYTES] == b"\xc4\x40"
        return signed

    @property
    def tx_id(self) -> bytes:
        return sha256(self.encode())

    def is_signed_by(self, public_key: bytes, chain_id: str) -> bool:
        return keys.verify_raw(public_key, self.body.signing_bytes(chain_id), self.signature)

    def check_signature(self, public_key: bytes, chain_id: str) -> None:
        if not self.is_signed_by(public_key, chain_id):
            raise SignatureError("invalid_signature", f"transaction from {self.body.sender}")


def check_shape(tx: Transaction) -> None:
    """Stateless rules beyond the wire types: names and sizes."""
    check_member_name(tx.sender, "sender")
    if not is_identifier(tx.contract):
        raise InvalidTransaction("invalid_name", f"contract name {tx.contract!r}")
    if not is_identifier(tx.method):
        raise InvalidTransaction("invalid_name", f"method name {tx.method!r}")
    if tx.nonce > NONCE_MAX:
        raise InvalidTransaction("bad_nonce", "nonce out of range")


def decode_and_verify(data: bytes, public_key: bytes, chain_id: str) -> SignedTransaction:
    """Full stateless validation of submitted bytes: canonical, well-shaped, signed."""
    signed = SignedTransaction.decode(data)
    if signed.encode() != data:  # decode already enforced canonicity; this is a cheap guard
        raise EncodingError("non_canonical_encoding")
    signed.check_signature(public_key, chain_id)
    return signed


__all__ = [
    "NONCE_MAX",
    "SignedTransaction",
    "TX_ARGS_COUNT_MAX",
    "TX_BYTES_MAX",
    "Transaction",
    "check_shape",
    "decode_and_verify",
]
