"""Ed25519 keys against standard vectors, domain separation and batch verification.

The vectors in tests/vectors/ are copied verbatim from the shared vector
store (see tests/vectors/README.md for their upstream sources):

- RFC 8032 §7.1: the public key is derived from the seed, the signature is
  byte-exact (Ed25519 signing is deterministic) and it verifies.
- Project Wycheproof: every case's ``result`` is our verdict, and a
  wrong-length signature or key is simply invalid, never an exception.
- CCTV (C2SP): libsodium accepts a vector iff its flags are a subset of
  ``{low_order_component_A, low_order_component_R}``; ``verify_raw`` (the
  routine every node shares) and PyNaCl's public API agree on every vector.
"""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import keys
from ledger.encoding import encode
from ledger.errors import SignatureError
from ledger.keys import (
    DOMAIN_PEER_HANDSHAKE,
    DOMAIN_READ_REQUEST,
    DOMAIN_TRANSACTION,
    DOMAIN_VOTE,
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    PrivateKey,
    signing_input,
    verify,
    verify_many,
    verify_raw,
    verify_with_pynacl,
)

VECTORS_DIR = Path(__file__).parent / "vectors"
ALL_DOMAINS = (DOMAIN_TRANSACTION, DOMAIN_VOTE, DOMAIN_PEER_HANDSHAKE, DOMAIN_READ_REQUEST)


def load_vector(name: str) -> Any:
    return json.loads((VECTORS_DIR / name).read_text())


RFC8032 = load_vector("rfc8032_ed25519_section7_1.json")["vectors"]
WYCHEPROOF = load_vector("wycheproof_ed25519_test.json")
WYCHEPROOF_CASES = [
    (bytes.fromhex(group["publicKey"]["pk"]), test)
    for group in WYCHEPROOF["testGroups"]
    for test in group["tests"]
]
CCTV = load_vector("cctv_ed25519vectors.json")
LIBSODIUM_ACCEPTED_FLAGS = frozenset({"low_order_component_A", "low_order_component_R"})


def flip_bit(data: bytes, bit: int) -> bytes:
    changed = bytearray(data)
    changed[bit // 8] ^= 1 << (bit % 8)
    return bytes(changed)


# --- The vector files are the ones the README describes ---------------------------------------


def test_vector_files_have_the_documented_case_counts() -> None:
    assert len(RFC8032) == 5
    assert len(WYCHEPROOF_CASES) == WYCHEPROOF["numberOfTests"] == 151
    results = [test["result"] for _, test in WYCHEPROOF_CASES]
    assert results.count("valid") == 88
    assert results.count("invalid") == 63
    assert len(CCTV) == 914
    assert [vector["number"] for vector in CCTV] == list(range(914))


# --- RFC 8032 §7.1 ----------------------------------------------------------------------------


@pytest.mark.parametrize("vector", RFC8032, ids=[vector["name"] for vector in RFC8032])
def test_rfc8032_public_key_and_signature_are_byte_exact(vector: dict[str, Any]) -> None:
    seed = bytes.fromhex(vector["secret_key"])
    public_key = bytes.fromhex(vector["public_key"])
    message = bytes.fromhex(vector["message"])
    signature = bytes.fromhex(vector["signature"])
    assert len(message) == vector["message_length"]
    key = PrivateKey(seed)
    assert key.public_key == public_key
    assert key.sign_raw(message) == signature
    assert verify_raw(public_key, message, signature)
    assert verify_with_pynacl(public_key, message, signature)


@pytest.mark.parametrize("vector", RFC8032, ids=[vector["name"] for vector in RFC8032])
def test_rfc8032_any_flipped_bit_fails(vector: dict[str, Any]) -> None:
    public_key = bytes.fromhex(vector["public_key"])
    message = bytes.fromhex(vector["message"])
    signature = bytes.fromhex(vector["signature"])
    for bit in (0, 7, 255, 256, 511):  # first/last byte of R, first/last bit of S
        assert not verify_raw(public_key, message, flip_bit(signature, bit))
    for bit in (0, 100, 255):
        assert not verify_raw(flip_bit(public_key, bit), message, signature)
    if message:
        assert not verify_raw(public_key, flip_bit(message, 0), signature)
    assert not verify_raw(public_key, message + b"\x00", signature)


# --- Wycheproof -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("public_key", "case"),
    WYCHEPROOF_CASES,
    ids=[f"tcId{test['tcId']}" for _, test in WYCHEPROOF_CASES],
)
def test_wycheproof_verdict(public_key: bytes, case: dict[str, Any]) -> None:
    message = bytes.fromhex(case["msg"])
    signature = bytes.fromhex(case["sig"])
    expected = case["result"] == "valid"
    # A wrong-length signature must come back as False, not raise: calling it bare proves that.
    assert verify_raw(public_key, message, signature) is expected
    assert verify_with_pynacl(public_key, message, signature) is expected


@pytest.mark.parametrize("length", [0, 1, 31, 33, 64])
def test_wrong_length_public_key_is_false_not_an_exception(length: int) -> None:
    key = PrivateKey(b"\x07" * 32)
    message = b"hello"
    signature = key.sign_raw(message)
    public_key = (key.public_key * 2)[:length]
    assert verify_raw(public_key, message, signature) is False
    assert verify_with_pynacl(public_key, message, signature) is False


@pytest.mark.parametrize("length", [0, 1, 32, 63, 65, 96, 128])
def test_wrong_length_signature_is_false_not_an_exception(length: int) -> None:
    key = PrivateKey(b"\x07" * 32)
    message = b"hello"
    signature = (key.sign_raw(message) * 2)[:length]
    assert verify_raw(key.public_key, message, signature) is False
    assert verify_with_pynacl(key.public_key, message, signature) is False


@pytest.mark.parametrize("bad", [None, "x" * 32, bytearray(32), 0, [0] * 32])
def test_non_bytes_inputs_are_false_not_an_exception(bad: Any) -> None:
    key = PrivateKey(b"\x07" * 32)
    signature = key.sign_raw(b"m")
    assert verify_raw(bad, b"m", signature) is False
    assert verify_raw(key.public_key, b"m", bad) is False


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_private_key_rejects_wrong_seed_length(length: int) -> None:
    with pytest.raises(SignatureError) as caught:
        PrivateKey(b"\x01" * length)
    assert caught.value.code == "invalid_public_key"


# --- CCTV edge cases --------------------------------------------------------------------------


@pytest.mark.parametrize("vector", CCTV, ids=[f"cctv{vector['number']}" for vector in CCTV])
def test_cctv_verdict_matches_libsodium_rule(vector: dict[str, Any]) -> None:
    public_key = bytes.fromhex(vector["key"])
    signature = bytes.fromhex(vector["sig"])
    message = vector["msg"].encode("utf-8")
    flags = frozenset(vector["flags"] or ())
    expected = flags <= LIBSODIUM_ACCEPTED_FLAGS
    ours = verify_raw(public_key, message, signature)
    assert ours is expected, f"flags {sorted(flags)}"
    assert verify_with_pynacl(public_key, message, signature) is ours


def test_cctv_covers_both_verdicts_and_every_flag() -> None:
    """Guard against a vector file that silently tests only one side."""
    accepted = [v for v in CCTV if frozenset(v["flags"] or ()) <= LIBSODIUM_ACCEPTED_FLAGS]
    assert 0 < len(accepted) < len(CCTV)
    all_flags = {flag for vector in CCTV for flag in vector["flags"] or ()}
    assert all_flags == {
        "low_order_A",
        "low_order_R",
        "low_order_component_A",
        "low_order_component_R",
        "low_order_residue",
        "non_canonical_A",
        "non_canonical_R",
        "reencoded_k",
    }


# --- Domain separation ------------------------------------------------------------------------

CHAIN_IDS = ("chain-a", "chain-b", "", "chain-a ")


@pytest.mark.parametrize(
    ("signed_as", "checked_as"),
    [
        (a, b)
        for a, b in itertools.product(itertools.product(ALL_DOMAINS, CHAIN_IDS), repeat=2)
        if a != b
    ],
)
def test_signature_never_verifies_under_another_domain_or_chain(
    signed_as: tuple[str, str], checked_as: tuple[str, str]
) -> None:
    key = PrivateKey(b"\x11" * 32)
    message = b"\x93\x01\x02\x03"
    signature = key.sign(signed_as[0], signed_as[1], message)
    assert verify(key.public_key, signed_as[0], signed_as[1], message, signature)
    assert not verify(key.public_key, checked_as[0], checked_as[1], message, signature)


@settings(max_examples=150, deadline=None)
@given(
    domains=st.tuples(st.sampled_from(ALL_DOMAINS), st.sampled_from(ALL_DOMAINS)),
    chain_ids=st.tuples(st.text(max_size=12), st.text(max_size=12)),
    messages=st.tuples(st.binary(max_size=24), st.binary(max_size=24)),
)
def test_signing_input_is_injective_and_binds_the_signature(
    domains: tuple[str, str], chain_ids: tuple[str, str], messages: tuple[bytes, bytes]
) -> None:
    first = (domains[0], chain_ids[0], messages[0])
    second = (domains[1], chain_ids[1], messages[1])
    if first == second:
        assert signing_input(*first) == signing_input(*second)
        return
    assert signing_input(*first) != signing_input(*second)
    key = PrivateKey(b"\x22" * 32)
    signature = key.sign(*first)
    assert verify(key.public_key, *first, signature)
    assert not verify(key.public_key, *second, signature)


def test_signing_input_cannot_shift_bytes_between_chain_id_and_message() -> None:
    assert signing_input(DOMAIN_TRANSACTION, "ab", b"c") != signing_input(
        DOMAIN_TRANSACTION, "a", b"bc"
    )
    assert signing_input(DOMAIN_VOTE, "", b"x") != signing_input(DOMAIN_VOTE, "x", b"")


@pytest.mark.parametrize("length", [0, 1, 0xFF, 0x100, 0xFFFF, 0x10000, 0x10001])
def test_signing_input_is_the_canonical_encoding_at_bin_length_boundaries(length: int) -> None:
    message = bytes(range(256)) * (length // 256) + bytes(range(length % 256))
    for domain in ALL_DOMAINS:
        assert signing_input(domain, "chain-a", message) == encode([domain, "chain-a", message])


@settings(max_examples=100, deadline=None)
@given(
    domain=st.sampled_from(ALL_DOMAINS),
    chain_id=st.text(max_size=70),
    message=st.binary(max_size=300),
)
def test_signing_input_is_the_canonical_encoding(
    domain: str, chain_id: str, message: bytes
) -> None:
    """A fast path may build these bytes by hand; they must equal the generic encoder's."""
    assert signing_input(domain, chain_id, message) == encode([domain, chain_id, message])


def test_signing_input_refuses_an_unknown_domain() -> None:
    with pytest.raises(AssertionError):
        signing_input("ledger/unknown/v1", "chain-a", b"")


def test_sign_raw_is_deterministic_and_sign_covers_signing_input() -> None:
    key = PrivateKey(b"\x33" * 32)
    assert key.sign(DOMAIN_VOTE, "c", b"m") == key.sign(DOMAIN_VOTE, "c", b"m")
    assert key.sign(DOMAIN_VOTE, "c", b"m") == key.sign_raw(signing_input(DOMAIN_VOTE, "c", b"m"))
    assert not verify_raw(key.public_key, b"m", key.sign(DOMAIN_VOTE, "c", b"m"))


# --- Batch verification -----------------------------------------------------------------------

BATCH_SIZE = 4 * keys.VERIFY_BATCH_CHUNK_MAX + 37  # > 600, several chunks, a ragged last chunk


def make_batch() -> list[tuple[bytes, bytes, bytes]]:
    """Valid triples mixed with every kind of invalid one, in a fixed pattern."""
    signers = [PrivateKey(bytes([index + 1]) * 32) for index in range(8)]
    items = []
    for index in range(BATCH_SIZE):
        key = signers[index % len(signers)]
        message = index.to_bytes(4, "big") * (index % 5)
        signature = key.sign_raw(message)
        public_key = key.public_key
        kind = index % 9
        if kind == 1:
            signature = flip_bit(signature, index % 512)
        elif kind == 2:
            public_key = signers[(index + 1) % len(signers)].public_key
        elif kind == 3:
            message = message + b"!"
        elif kind == 4:
            signature = signature[:63]
        elif kind == 5:
            public_key = public_key[:31]
        elif kind == 6 and index % 2:
            signature = b""
        items.append((public_key, message, signature))
    return items


def test_verify_many_agrees_with_one_by_one_on_one_and_two_threads() -> None:
    items = make_batch()
    assert len(items) > 600 and len(items) >= 2 * keys.VERIFY_BATCH_CHUNK_MAX
    one_by_one = [verify_raw(*item) for item in items]
    assert 0 < sum(one_by_one) < len(items)
    assert verify_many(items, threads=1) == one_by_one
    assert verify_many(items, threads=2) == one_by_one
    assert verify_many(items) == one_by_one
    assert verify_many(items[:1], threads=2) == one_by_one[:1]
    assert verify_many([], threads=2) == []


def test_verify_many_with_two_threads_runs_off_the_calling_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The threaded path really runs (so the agreement above is not vacuous)."""
    seen: set[int] = set()
    original = keys._verify_chunk

    def recording(items: Any) -> list[bool]:
        seen.add(threading.get_ident())
        return original(items)

    monkeypatch.setattr(keys, "_verify_chunk", recording)
    items = make_batch()
    assert verify_many(items, threads=2) == [verify_raw(*item) for item in items]
    assert seen and threading.get_ident() not in seen


def test_sizes_are_the_ed25519_sizes() -> None:
    assert PUBLIC_KEY_BYTES == 32
    assert SIGNATURE_BYTES == 64
