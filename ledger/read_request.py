"""Signed read requests: how a member proves who is asking for private data.

Balances, receipts and proofs are not public (docs/SECURITY.md). A member
signs each read with its transaction key, under its own domain so a read
signature can never be replayed as a transaction or a vote:

    message   = encode([method, target, timestamp_ms, nonce, SHA-256(body)])
    signature = Ed25519(key, encode(["ledger/read-request/v1", chain_id, message]))

``target`` is the request's path and query exactly as sent (bytes, e.g.
``/v1/accounts/bank-cn?proof=true``). The four values travel in headers.
The node accepts a timestamp within ``READ_SKEW_MS_MAX`` of its clock and
each (member, nonce) once in that window, so a captured request cannot be
replayed later, nor twice now.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from ledger import keys
from ledger.encoding import encode
from ledger.errors import LedgerError
from ledger.names import is_member_name

HEADER_MEMBER = "x-ledger-member"
HEADER_TIMESTAMP = "x-ledger-timestamp"
HEADER_NONCE = "x-ledger-nonce"
HEADER_SIGNATURE = "x-ledger-signature"
READ_NONCE_BYTES = 16
READ_SKEW_MS_MAX = 30_000
"""How far a request's timestamp may be from the node's clock, either way."""
TARGET_BYTES_MAX = 4096


class ReadAuthError(LedgerError):
    """A read request whose signature headers are missing, malformed, stale, replayed or wrong."""


@dataclass(frozen=True, slots=True)
class ReadCredentials:
    """The parsed signature headers of one request."""

    member: str
    timestamp_ms: int
    nonce: bytes
    signature: bytes


def read_request_message(method: str, target: bytes, timestamp_ms: int, nonce: bytes, body: bytes) -> bytes:
    return encode([method.upper(), target, timestamp_ms, nonce, hashlib.sha256(body).digest()])


def sign_read_request(key: keys.PrivateKey, member: str, chain_id: str, method: str, target: bytes,
                      body: bytes, timestamp_ms: int, nonce: bytes | None = None) -> dict[str, str]:
    """The headers that authenticate one read request as ``member``."""
    nonce = os.urandom(READ_NONCE_BYTES) if nonce is None else nonce
    message = read_request_message(method, target, timestamp_ms, nonce, body)
    return {
        HEADER_MEMBER: member,
        HEADER_TIMESTAMP: str(timestamp_ms),
        HEADER_NONCE: nonce.hex(),
        HEADER_SIGNATURE: key.sign(keys.DOMAIN_READ_REQUEST, chain_id, message).hex(),
    }


def parse_read_credentials(headers: dict[str, str]) -> ReadCredentials | None:
    """The credentials in ``headers`` (lower-case names); None when the request is anonymous."""
    member = headers.get(HEADER_MEMBER)
    if member is None:
        return None
    if not is_member_name(member):
        raise ReadAuthError("unauthenticated", f"{HEADER_MEMBER} is not a member name")
    try:
        timestamp_ms = int(headers.get(HEADER_TIMESTAMP, ""))
        nonce = bytes.fromhex(headers.get(HEADER_NONCE, ""))
        signature = bytes.fromhex(headers.get(HEADER_SIGNATURE, ""))
    except ValueError:
        raise ReadAuthError("unauthenticated", "signature headers are malformed (decimal timestamp, hex nonce "
                            "and signature)") from None
    if len(nonce) != READ_NONCE_BYTES or len(signature) != keys.SIGNATURE_BYTES or not 0 <= timestamp_ms < 2**63:
        raise ReadAuthError("unauthenticated", f"{HEADER_NONCE} must be {READ_NONCE_BYTES} bytes and "
                            f"{HEADER_SIGNATURE} {keys.SIGNATURE_BYTES} bytes, in hex")
    return ReadCredentials(member, timestamp_ms, nonce, signature)


def verify_read_request(credentials: ReadCredentials, public_key: bytes, chain_id: str, method: str,
                        target: bytes, body: bytes) -> bool:
    message = read_request_message(method, target, credentials.timestamp_ms, credentials.nonce, body)
    return keys.verify(public_key, keys.DOMAIN_READ_REQUEST, chain_id, message, credentials.signature)


__all__ = [
    "HEADER_MEMBER",
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "READ_SKEW_MS_MAX",
    "ReadAuthError",
    "ReadCredentials",
    "parse_read_credentials",
    "read_request_message",
    "sign_read_request",
    "verify_read_request",
]
