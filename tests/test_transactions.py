"""Signed transactions: ids, signatures, chain binding and stateless checks.

The tx id is SHA-256 of the signed transaction's canonical bytes. Ed25519
is deterministic, so signing the same body twice gives the same bytes and
the same id; any change to the body or the signature changes the id, and a
changed body no longer verifies. The signature covers the chain id, so a
transaction signed for one chain is refused on another.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import keys
from ledger.encoding import decode, encode
from ledger.errors import EncodingError, InvalidTransaction, SignatureError
from ledger.keys import PrivateKey
from ledger.transaction import (
    TX_ARGS_COUNT_MAX,
    TX_BYTES_MAX,
    SignedTransaction,
    Transaction,
    check_shape,
    decode_and_verify,
)

CHAIN_A = "chain-a"
CHAIN_B = "chain-b"
ALICE = PrivateKey(b"\xa1" * 32)
BOB = PrivateKey(b"\xb0" * 32)
TX = Transaction(
    "alice", 0, "accounts", "transfer", {"to": "bob", "amount_minor": 1250, "currency": "CNY"}, 0
)


def sign(tx: Transaction, key: PrivateKey = ALICE, chain_id: str = CHAIN_A) -> SignedTransaction:
    return tx.sign(key, chain_id)


def with_memo(length: int) -> SignedTransaction:
    return sign(dataclasses.replace(TX, args={**TX.args, "memo": "m" * length}))


# --- Ids ----------------------------------------------------------------------------------------


def test_tx_id_is_sha256_of_the_signed_bytes() -> None:
    signed = sign(TX)
    data = signed.encode()
    assert signed.tx_id == hashlib.sha256(data).digest()
    assert data == encode([TX.to_wire(), signed.signature])
    decoded = SignedTransaction.decode(data)
    assert decoded == signed
    assert decoded.tx_id == signed.tx_id


def test_signing_twice_gives_the_same_bytes_and_id() -> None:
    first, second = sign(TX), sign(dataclasses.replace(TX))
    assert first.signature == second.signature
    assert first.encode() == second.encode()
    assert first.tx_id == second.tx_id


def test_argument_order_does_not_change_the_id() -> None:
    reordered = dataclasses.replace(TX, args=dict(reversed(list(TX.args.items()))))
    assert sign(reordered).tx_id == sign(TX).tx_id


def test_another_signer_or_chain_gives_another_id() -> None:
    assert sign(TX, BOB).tx_id != sign(TX, ALICE).tx_id
    assert sign(TX, chain_id=CHAIN_B).tx_id != sign(TX, chain_id=CHAIN_A).tx_id


FIELD_CHANGES: list[tuple[str, Any]] = [
    ("sender", "alicf"),
    ("nonce", 1),
    ("contract", "accountz"),
    ("method", "transfers"),
    ("args", {**TX.args, "amount_minor": 1251}),
    ("args", {**TX.args, "memo": ""}),
    ("args", {"to": "bob", "amount_minor": 1250}),
    ("args", {**TX.args, "amount_minor": "1250"}),
    ("expiry_height", 1),
]


@pytest.mark.parametrize(
    ("field", "value"), FIELD_CHANGES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(FIELD_CHANGES)]
)
def test_changing_any_field_changes_the_id_and_breaks_the_signature(field: str, value: Any) -> None:
    signed = sign(TX)
    tampered = SignedTransaction(dataclasses.replace(TX, **{field: value}), signed.signature)
    assert tampered.tx_id != signed.tx_id
    assert signed.is_signed_by(ALICE.public_key, CHAIN_A)
    assert not tampered.is_signed_by(ALICE.public_key, CHAIN_A)
    with pytest.raises(SignatureError) as caught:
        tampered.check_signature(ALICE.public_key, CHAIN_A)
    assert caught.value.code == "invalid_signature"
    with pytest.raises(SignatureError):
        decode_and_verify(tampered.encode(), ALICE.public_key, CHAIN_A)


def test_changing_the_signature_changes_the_id_and_fails() -> None:
    signed = sign(TX)
    for index in (0, 31, 32, 63):
        changed = bytearray(signed.signature)
        changed[index] ^= 0x01
        tampered = SignedTransaction(TX, bytes(changed))
        assert tampered.tx_id != signed.tx_id
        assert not tampered.is_signed_by(ALICE.public_key, CHAIN_A)


@settings(max_examples=40, deadline=None)
@given(
    nonce=st.integers(0, 2**63 - 1),
    amount=st.integers(0, 2**64 - 1),
    expiry=st.integers(0, 2**64 - 1),
    memo=st.text(max_size=30),
)
def test_sign_decode_verify_round_trip(nonce: int, amount: int, expiry: int, memo: str) -> None:
    tx = dataclasses.replace(
        TX, nonce=nonce, expiry_height=expiry, args={"amount_minor": amount, "memo": memo}
    )
    signed = sign(tx)
    data = signed.encode()
    assert signed.tx_id == hashlib.sha256(data).digest()
    verified = decode_and_verify(data, ALICE.public_key, CHAIN_A)
    assert verified == signed and verified.tx_id == signed.tx_id
    assert verified.body.signing_bytes(CHAIN_A) == tx.signing_bytes(CHAIN_A)


# --- Chain and domain binding -------------------------------------------------------------------


def test_signature_for_chain_a_fails_on_chain_b() -> None:
    signed = sign(TX, chain_id=CHAIN_A)
    assert signed.is_signed_by(ALICE.public_key, CHAIN_A)
    assert not signed.is_signed_by(ALICE.public_key, CHAIN_B)
    with pytest.raises(SignatureError) as caught:
        decode_and_verify(signed.encode(), ALICE.public_key, CHAIN_B)
    assert caught.value.code == "invalid_signature"
    assert decode_and_verify(signed.encode(), ALICE.public_key, CHAIN_A) == signed


def test_signature_by_another_key_fails() -> None:
    signed = sign(TX, BOB)
    assert not signed.is_signed_by(ALICE.public_key, CHAIN_A)
    with pytest.raises(SignatureError):
        decode_and_verify(signed.encode(), ALICE.public_key, CHAIN_A)


def test_signing_bytes_are_the_transaction_domain_over_the_body() -> None:
    assert TX.signing_bytes(CHAIN_A) == encode([keys.DOMAIN_TRANSACTION, CHAIN_A, TX.encode()])


@pytest.mark.parametrize(
    "domain", [keys.DOMAIN_VOTE, keys.DOMAIN_PEER_HANDSHAKE, keys.DOMAIN_READ_REQUEST]
)
def test_signature_in_another_domain_is_not_a_transaction_signature(domain: str) -> None:
    forged = SignedTransaction(TX, ALICE.sign(domain, CHAIN_A, TX.encode()))
    assert not forged.is_signed_by(ALICE.public_key, CHAIN_A)


def test_signature_over_the_bare_body_is_not_a_transaction_signature() -> None:
    forged = SignedTransaction(TX, ALICE.sign_raw(TX.encode()))
    assert not forged.is_signed_by(ALICE.public_key, CHAIN_A)


# --- Stateless checks on decode ----------------------------------------------------------------


def test_decode_accepts_exactly_tx_bytes_max() -> None:
    base = len(with_memo(1000).encode())
    signed = with_memo(1000 + TX_BYTES_MAX - base)
    assert len(signed.encode()) == TX_BYTES_MAX
    assert SignedTransaction.decode(signed.encode()) == signed


def test_invalid_oversize_transaction() -> None:
    base = len(with_memo(1000).encode())
    signed = with_memo(1001 + TX_BYTES_MAX - base)
    data = signed.encode()
    assert len(data) == TX_BYTES_MAX + 1
    with pytest.raises(EncodingError) as caught:
        SignedTransaction.decode(data)
    assert caught.value.code == "too_large"
    with pytest.raises(EncodingError) as caught:
        decode_and_verify(data, ALICE.public_key, CHAIN_A)
    assert caught.value.code == "too_large"
    with pytest.raises(EncodingError) as caught:
        SignedTransaction.decode(b"\xc0" * (10 * TX_BYTES_MAX))
    assert caught.value.code == "too_large"


def test_decode_applies_a_smaller_max_bytes() -> None:
    data = sign(TX).encode()
    with pytest.raises(EncodingError) as caught:
        SignedTransaction.decode(data, max_bytes=len(data) - 1)
    assert caught.value.code == "too_large"


def test_invalid_too_many_arguments() -> None:
    at_limit = sign(dataclasses.replace(TX, args={f"a{i}": i for i in range(TX_ARGS_COUNT_MAX)}))
    assert SignedTransaction.decode(at_limit.encode()) == at_limit
    over = sign(dataclasses.replace(TX, args={f"a{i}": i for i in range(TX_ARGS_COUNT_MAX + 1)}))
    with pytest.raises(EncodingError) as caught:
        SignedTransaction.decode(over.encode())
    assert caught.value.code == "too_large"


BAD_NAMES = [
    ("sender", "Alice"),
    ("sender", ""),
    ("sender", "-alice"),
    ("sender", ".alice"),
    ("sender", "_alice"),
    ("sender", "al ice"),
    ("sender", "alice/bob"),
    ("sender", "al\u00efce"),
    ("sender", "alice\n"),
    ("contract", "Accounts"),
    ("contract", ""),
    ("contract", "1accounts"),
    ("contract", "_accounts"),
    ("contract", "acc-ounts"),
    ("contract", "acc.ounts"),
    ("method", "Transfer"),
    ("method", ""),
    ("method", "9transfer"),
    ("method", "trans fer"),
    ("method", "transfer!"),
]


@pytest.mark.parametrize(("field", "name"), BAD_NAMES)
def test_invalid_name(field: str, name: str) -> None:
    signed = sign(dataclasses.replace(TX, **{field: name}))
    with pytest.raises(InvalidTransaction) as caught:
        SignedTransaction.decode(signed.encode())
    assert caught.value.code == "invalid_name"
    with pytest.raises(InvalidTransaction) as caught:
        check_shape(signed.body)
    assert caught.value.code == "invalid_name"


@pytest.mark.parametrize(
    ("field", "name"),
    [
        ("sender", "a"),
        ("sender", "0"),
        ("sender", "a" * 64),
        ("sender", "bank-1.cn_x"),
        ("contract", "a"),
        ("contract", "a" * 32),
        ("method", "get_balance2"),
    ],
)
def test_valid_names_at_the_edges(field: str, name: str) -> None:
    signed = sign(dataclasses.replace(TX, **{field: name}))
    assert SignedTransaction.decode(signed.encode()) == signed


@pytest.mark.parametrize(
    ("field", "name"), [("sender", "a" * 65), ("contract", "a" * 33), ("method", "m" * 33)]
)
def test_invalid_name_too_long_is_a_wire_type_error(field: str, name: str) -> None:
    signed = sign(dataclasses.replace(TX, **{field: name}))
    with pytest.raises(EncodingError) as caught:
        SignedTransaction.decode(signed.encode())
    assert caught.value.code == "wrong_type"


@pytest.mark.parametrize(
    ("nonce", "ok"), [(0, True), (2**63 - 1, True), (2**63, False), (2**64 - 1, False)]
)
def test_nonce_range(nonce: int, ok: bool) -> None:
    signed = sign(dataclasses.replace(TX, nonce=nonce))
    if ok:
        assert SignedTransaction.decode(signed.encode()).body.nonce == nonce
    else:
        with pytest.raises(EncodingError) as caught:
            SignedTransaction.decode(signed.encode())
        assert caught.value.code == "wrong_type"


def test_invalid_non_canonical_transaction_bytes() -> None:
    signed = sign(TX)
    wire = decode(signed.encode())
    # The same value with its signature as bin16 instead of bin8: same meaning, other bytes.
    body = encode(wire[0])
    data = b"\x92" + body + b"\xc5\x00\x40" + signed.signature
    with pytest.raises(EncodingError) as caught:
        SignedTransaction.decode(data)
    assert caught.value.code == "non_canonical_encoding"
    with pytest.raises(EncodingError):
        decode_and_verify(data, ALICE.public_key, CHAIN_A)


def test_invalid_float_argument() -> None:
    wire = TX.to_wire()
    wire[4] = {**wire[4], "amount_minor": 0}
    data = encode([wire, b"\x00" * 64])
    # Swap the fixint 0 for a float64 0.0 (the map stays sorted and well formed).
    float_data = data.replace(b"\xacamount_minor\x00", b"\xacamount_minor\xcb" + b"\x00" * 8)
    assert float_data != data
    with pytest.raises(EncodingError) as caught:
        SignedTransaction.decode(float_data)
    assert caught.value.code == "wrong_type"


def test_any_admissible_transaction_still_decodes_inside_a_block() -> None:
    from ledger.block import Block, BlockHeader
    from ledger.transaction import TX_ARGS_DEPTH_MAX

    key = PrivateKey(bytes(32))
    header = BlockHeader("c", 1, b"\0" * 32, 0, "v", 1, b"\0" * 32, 1, b"\0" * 32, b"\0" * 32, b"\0" * 32)
    for depth in range(1, TX_ARGS_DEPTH_MAX + 3):
        value: object = 1
        for _ in range(depth - 1):
            value = [value]
        signed = Transaction("a", 0, "accounts", "x", {"v": value}, 0).sign(key, "c")
        try:
            SignedTransaction.decode(signed.encode())
        except EncodingError as error:
            assert depth > TX_ARGS_DEPTH_MAX and error.code == "too_large"
            continue
        assert Block.decode(Block(header, (signed,)).encode()).transactions[0] == signed
