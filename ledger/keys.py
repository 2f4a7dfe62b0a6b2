"""Ed25519 keys and domain-separated signatures (PyNaCl / libsodium).

Every signature covers ``encode([domain, chain_id, message])``: the domain
names the kind of object (a transaction, a vote, a handshake, a read
request) and the chain id names the network, so a signature on one kind of
object or on one chain can never be replayed as another. Validators must
agree on which signatures are valid, so one library decides: libsodium's
``crypto_sign_open`` (cofactorless; it rejects small-order and
non-canonical points; see tests/vectors/README.md for the CCTV verdicts).

Verification releases the GIL inside libsodium, so ``verify_many`` spreads a
batch over threads to use every core.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing
from nacl.bindings import crypto_sign_open  # the one verification routine every node shares

from ledger.encoding import encode
from ledger.errors import SignatureError

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
SEED_BYTES = 32

DOMAIN_TRANSACTION = "ledger/tx/v1"
DOMAIN_VOTE = "ledger/vote/v1"
DOMAIN_PROPOSAL = "ledger/proposal/v1"
DOMAIN_PEER_HANDSHAKE = "ledger/handshake/v1"
DOMAIN_READ_REQUEST = "ledger/read-request/v1"
DOMAINS = (DOMAIN_TRANSACTION, DOMAIN_VOTE, DOMAIN_PROPOSAL, DOMAIN_PEER_HANDSHAKE, DOMAIN_READ_REQUEST)
assert len(set(DOMAINS)) == len(DOMAINS)

SIGNING_PREFIXES_MAX = 64
"""Cached (domain, chain id) prefixes; a node serves one chain, so a few suffice."""
VERIFY_BATCH_CHUNK_MAX = 256
"""Signatures per thread task: large enough to amortise dispatch, small enough to balance."""


_signing_prefixes: dict[tuple[str, str], bytes] = {}


def signing_input(domain: str, chain_id: str, message: bytes) -> bytes:
    """The exact bytes an Ed25519 signature covers: ``encode([domain, chain_id, message])``.

    Built from a cached prefix (array header, domain, chain id) and the bin
    header of ``message``: the same bytes as the generic encoder, without
    re-walking the values on every transaction (tests check both agree).
    """
    prefix = _signing_prefixes.get((domain, chain_id))
    if prefix is None:
        assert domain in DOMAINS, domain
        prefix = encode([domain, chain_id, b""])[:-2]  # drop the empty bin (c4 00)
        if len(_signing_prefixes) >= SIGNING_PREFIXES_MAX:
            _signing_prefixes.clear()
        _signing_prefixes[(domain, chain_id)] = prefix
    length = len(message)
    if length < 0x100:
        header = b"\xc4" + length.to_bytes(1, "big")
    elif length < 0x10000:
        header = b"\xc5" + length.to_bytes(2, "big")
    else:
        header = b"\xc6" + length.to_bytes(4, "big")
    return prefix + header + message


@dataclass(frozen=True, slots=True)
class PrivateKey:
    """A member's or validator's signing key (the 32-byte Ed25519 seed)."""

    seed: bytes

    def __post_init__(self) -> None:
        if len(self.seed) != SEED_BYTES:
            raise SignatureError("invalid_public_key", "an Ed25519 seed is 32 bytes")

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(os.urandom(SEED_BYTES))

    @property
    def public_key(self) -> bytes:
        return bytes(nacl.signing.SigningKey(self.seed).verify_key)

    def sign_raw(self, message: bytes) -> bytes:
        return nacl.signing.SigningKey(self.seed).sign(message).signature

    def sign(self, domain: str, chain_id: str, message: bytes) -> bytes:
        return self.sign_raw(signing_input(domain, chain_id, message))


def verify_raw(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is a valid Ed25519 signature of ``message``.

    Wrong lengths are simply invalid (PyNaCl would raise a different
    exception for them than for a bad signature; here both are False).
    """
    if type(public_key) is not bytes or len(public_key) != PUBLIC_KEY_BYTES:
        return False
    if type(signature) is not bytes or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        return False
    return True


def verify(public_key: bytes, domain: str, chain_id: str, message: bytes, signature: bytes) -> bool:
    return verify_raw(public_key, signing_input(domain, chain_id, message), signature)


def verify_with_pynacl(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """The same verdict through PyNaCl's public API (a cross-check for tests)."""
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
        return True
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False


def _verify_chunk(items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
    return [verify_raw(key, message, signature) for key, message, signature in items]


VERIFY_THREADS_MAX = 64
_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _get_pool(threads: int) -> ThreadPoolExecutor:
    with _pools_lock:
        pool = _pools.get(threads)
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"verify{threads}")
            _pools[threads] = pool
        return pool


def verify_many(items: Sequence[tuple[bytes, bytes, bytes]], threads: int | None = None) -> list[bool]:
    """Verify (public_key, message, signature) triples, in parallel when worth it.

    ``threads`` defaults to the number of cores; libsodium releases the GIL,
    so threads give real parallelism.
    """
    threads = min(threads or os.cpu_count() or 1, VERIFY_THREADS_MAX)
    if threads <= 1 or len(items) < 2 * VERIFY_BATCH_CHUNK_MAX:
        return _verify_chunk(items)
    chunk = max(VERIFY_BATCH_CHUNK_MAX, -(-len(items) // (threads * 4)))
    chunks = [items[i : i + chunk] for i in range(0, len(items), chunk)]
    results: list[bool] = []
    for chunk_result in _get_pool(threads).map(_verify_chunk, chunks):
        results.extend(chunk_result)
    return results


__all__ = [
    "DOMAIN_PEER_HANDSHAKE",
    "DOMAIN_PROPOSAL",
    "DOMAIN_READ_REQUEST",
    "DOMAIN_TRANSACTION",
    "DOMAIN_VOTE",
    "PUBLIC_KEY_BYTES",
    "PrivateKey",
    "SIGNATURE_BYTES",
    "signing_input",
    "verify",
    "verify_many",
    "verify_raw",
    "verify_with_pynacl",
]
