"""Fast paths (signing input, arrays of encoded items) give exactly the generic encoding."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.encoding import encode, encode_array_of_encoded
from ledger.keys import DOMAINS, signing_input


@settings(max_examples=200)
@given(domain=st.sampled_from(DOMAINS), chain_id=st.text(max_size=70),
       message=st.one_of(st.binary(max_size=300), st.integers(0, 70_000).map(lambda n: b"\x07" * n)))
def test_signing_input_equals_generic_encoding(domain: str, chain_id: str, message: bytes) -> None:
    assert signing_input(domain, chain_id, message) == encode([domain, chain_id, message])


@settings(max_examples=100)
@given(items=st.lists(st.one_of(st.integers(-(2**63), 2**64 - 1), st.binary(max_size=40), st.text(max_size=10)),
                      max_size=40))
def test_array_of_encoded_equals_generic_encoding(items: list[object]) -> None:
    assert encode_array_of_encoded([encode(item) for item in items]) == encode(items)


def test_array_headers_at_their_boundaries() -> None:
    for count in (0, 15, 16, 65535, 65536):
        assert encode_array_of_encoded([b"\x01"] * count) == encode([1] * count)


@given(st.integers(0, 2**63 - 1),
       st.dictionaries(st.from_regex(r"[A-Z][A-Z0-9]{2,7}", fullmatch=True), st.integers(1, 2**63 - 1), max_size=8))
def test_account_fast_encode_is_the_canonical_encoding(nonce: int, balances: dict[str, int]) -> None:
    from ledger import encoding as enc
    from ledger.state import Account, Balance

    account = Account(nonce, tuple(Balance(code, amount) for code, amount in sorted(balances.items())))
    assert account.encode() == enc.encode(account.to_wire())
    assert Account.decode(account.encode()) == account


_flat = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
                  st.text(max_size=8), st.binary(max_size=8))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 1), st.text(max_size=12),
       st.lists(st.tuples(st.text(min_size=1, max_size=10),
                          st.dictionaries(st.text(max_size=6), _flat | st.lists(_flat, max_size=2), max_size=5)),
                max_size=4))
def test_receipt_fast_encode_is_the_canonical_encoding(status: int, code: str,
                                                       events: list[tuple[str, dict[str, object]]]) -> None:
    from contracts.runtime import Event, Receipt
    from ledger import encoding as enc

    receipt = Receipt(status, code, tuple(Event(name, data) for name, data in events))
    assert receipt.encode() == enc.encode(receipt.to_wire())
    assert Receipt.decode(receipt.encode()) == receipt
