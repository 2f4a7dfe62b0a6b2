"""The canonical encoding: one value, one byte string, and nothing else decodes.

Properties (STYLE.md §6): ``decode(encode(x)) == x`` over the whole value
domain; for any byte string, ``decode`` either returns a value whose
encoding is exactly those bytes or raises ``EncodingError`` (never another
exception); distinct records never encode the same. Then one explicit test
per way bytes can be non-canonical, each pinned to its stable error code,
and the typed-record checks (field count, field type, fixed lengths) for
every record that is hashed or signed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ledger.block import BlockHeader, CommitCertificate, CommitSignature, Vote
from ledger.encoding import (
    CONTAINER_ITEMS_MAX,
    MESSAGE_BYTES_MAX,
    NESTING_DEPTH_MAX,
    Record,
    decode,
    encode,
)
from ledger.errors import EncodingError
from ledger.genesis import Currency, Genesis, Member, Param
from ledger.names import ROLES_PLAIN
from ledger.transaction import SignedTransaction, Transaction
from ledger.validators import Validator, ValidatorSet

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1

# --- Strategies for the canonical value domain -------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(INT_MIN, INT_MAX),
    st.sampled_from([0, 127, 128, 255, 256, 2**16, 2**32, INT_MAX, -1, -32, -33, -129, INT_MIN]),
    st.binary(max_size=40),
    st.text(max_size=20),
)
map_keys = st.text(max_size=8)


def values(depth: int, *, tuples: bool = True) -> st.SearchStrategy[Any]:
    """Canonical values nested at most ``depth`` containers deep."""
    if depth == 0:
        return scalars
    child = values(depth - 1, tuples=tuples)
    containers = [st.lists(child, max_size=4), st.dictionaries(map_keys, child, max_size=4)]
    if tuples:
        containers.append(st.lists(child, max_size=4).map(tuple))
    return st.one_of(scalars, *containers)


canonical_values = values(4)


def normalise(value: Any) -> Any:
    """What decode gives back for a value: tuples become lists."""
    if isinstance(value, (list, tuple)):
        return [normalise(item) for item in value]
    if isinstance(value, dict):
        return {key: normalise(item) for key, item in value.items()}
    return value


def utf8_sorted(keys: Any) -> list[str]:
    return sorted(keys, key=lambda key: key.encode("utf-8"))


def assert_keys_sorted(value: Any) -> None:
    if isinstance(value, list):
        for item in value:
            assert_keys_sorted(item)
    elif isinstance(value, dict):
        assert list(value) == utf8_sorted(value)
        for item in value.values():
            assert_keys_sorted(item)


def nested_lists(levels: int) -> list[Any]:
    """``levels`` nested arrays: 1 is ``[]``, 2 is ``[[]]`` (a top-level array is level 1)."""
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


def nested_maps(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


def decode_error(data: bytes, **kwargs: Any) -> EncodingError:
    with pytest.raises(EncodingError) as caught:
        decode(data, **kwargs)
    return caught.value


def encode_error(value: Any) -> EncodingError:
    with pytest.raises(EncodingError) as caught:
        encode(value)
    return caught.value


# --- Round-trip properties ----------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(canonical_values)
def test_decode_encode_round_trip(value: Any) -> None:
    data = encode(value)
    decoded = decode(data)
    assert decoded == normalise(value)
    assert_keys_sorted(decoded)
    assert encode(decoded) == data
    assert encode(normalise(value)) == data


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=6), scalars, max_size=8), st.randoms(use_true_random=False))
def test_map_encoding_ignores_insertion_order(mapping: dict[str, Any], rng: Any) -> None:
    items = list(mapping.items())
    rng.shuffle(items)
    assert encode(dict(items)) == encode(mapping)


@st.composite
def mutated_encodings(draw: st.DrawFn) -> bytes:
    """A valid encoding with one small corruption: most are invalid, some still decode."""
    data = bytearray(encode(draw(canonical_values)))
    operation = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "append"]))
    position = draw(st.integers(0, len(data)))
    byte = draw(st.integers(0, 255))
    if operation == "flip" and position < len(data):
        data[position] ^= 1 << draw(st.integers(0, 7))
    elif operation == "set" and position < len(data):
        data[position] = byte
    elif operation == "insert":
        data.insert(position, byte)
    elif operation == "delete" and position < len(data):
        del data[position]
    elif operation == "truncate":
        del data[position:]
    elif operation == "append":
        data.append(byte)
    return bytes(data)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=48), mutated_encodings()))
def test_arbitrary_bytes_decode_canonically_or_raise_encoding_error(data: bytes) -> None:
    try:
        value = decode(data)
    except EncodingError as error:
        assert error.code in {
            "malformed_encoding",
            "non_canonical_encoding",
            "too_large",
            "wrong_type",
        }
        return
    assert encode(value) == data


@pytest.mark.parametrize(
    ("value", "expected_hex"),
    [
        (0, "00"),
        (127, "7f"),
        (128, "cc80"),
        (255, "ccff"),
        (256, "cd0100"),
        (65535, "cdffff"),
        (65536, "ce00010000"),
        (2**32 - 1, "ceffffffff"),
        (2**32, "cf0000000100000000"),
        (INT_MAX, "cfffffffffffffffff"),
        (-1, "ff"),
        (-32, "e0"),
        (-33, "d0df"),
        (-128, "d080"),
        (-129, "d1ff7f"),
        (-32768, "d18000"),
        (-32769, "d2ffff7fff"),
        (-(2**31), "d280000000"),
        (-(2**31) - 1, "d3ffffffff7fffffff"),
        (INT_MIN, "d38000000000000000"),
        (None, "c0"),
        (False, "c2"),
        (True, "c3"),
        ("", "a0"),
        ("a" * 31, "bf" + "61" * 31),
        ("a" * 32, "d920" + "61" * 32),
        ("é", "a2c3a9"),
        (b"", "c400"),
        (b"\x01", "c40101"),
        ([], "90"),
        ([0] * 15, "9f" + "00" * 15),
        ([0] * 16, "dc0010" + "00" * 16),
        ({}, "80"),
        ({"b": 1, "a": 2}, "82a16102a16201"),
        ({"b": 0, "aa": 0}, "82a2616100a16200"),  # byte order, not length-first
        ({"é": 0, "z": 0}, "82a17a00a2c3a900"),  # UTF-8 bytes: "z" (7a) before "é" (c3 a9)
        ((1, 2), "920102"),
    ],
)
def test_shortest_forms_are_the_canonical_bytes(value: Any, expected_hex: str) -> None:
    assert encode(value).hex() == expected_hex
    assert decode(bytes.fromhex(expected_hex)) == normalise(value)


def test_booleans_are_not_integers() -> None:
    assert encode(True) != encode(1) and encode(False) != encode(0)
    assert decode(encode(True)) is True
    assert type(decode(encode(1))) is int


def test_integer_range_boundaries_round_trip() -> None:
    for value in (INT_MIN, INT_MIN + 1, 2**63 - 1, 2**63, INT_MAX):
        assert decode(encode(value)) == value


# --- Explicit rejections (decode) -------------------------------------------------------------

FLOAT32_ONE = b"\xca\x3f\x80\x00\x00"
FLOAT64_ONE = b"\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00"


@pytest.mark.parametrize(
    "data",
    [
        FLOAT32_ONE,
        FLOAT64_ONE,
        b"\xca\x00\x00\x00\x00",
        b"\xcb" + b"\x00" * 8,
        b"\x91" + FLOAT64_ONE,
        b"\x81\xa1a" + FLOAT32_ONE,
        b"\x92\x01\x91" + FLOAT32_ONE,
    ],
)
def test_invalid_float(data: bytes) -> None:
    assert decode_error(data).code == "wrong_type"


@pytest.mark.parametrize(
    "data",
    [
        b"\xcc\x05",  # 5 as uint8: fixint
        b"\xd0\x01",  # 1 as int8: fixint
        b"\xcd\x00\x10",  # 16 as uint16: fixint
        b"\xcd\x00\xff",  # 255 as uint16: uint8
        b"\xce\x00\x00\x01\x00",  # 256 as uint32: uint16
        b"\xcf\x00\x00\x00\x00\xff\xff\xff\xff",  # 2**32-1 as uint64: uint32
        b"\xd0\xff",  # -1 as int8: negative fixint
        b"\xd0\x7f",  # 127 as int8: fixint
        b"\xd1\x00\x80",  # 128 as int16: uint8
        b"\xd1\xff\x80",  # -128 as int16: int8
        b"\xd2\xff\xff\xff\xe0",  # -32 as int32: negative fixint
        b"\xd3\x00\x00\x00\x00\x00\x00\x00\x05",  # 5 as int64
        b"\xd3\xff\xff\xff\xff\x80\x00\x00\x00",  # -2**31 as int64: int32
    ],
)
def test_invalid_non_minimal_int(data: bytes) -> None:
    assert decode_error(data).code == "non_canonical_encoding"


@pytest.mark.parametrize(
    "data",
    [
        b"\xd9\x01a",  # str8 for a fixstr
        b"\xda\x00\x01a",  # str16 for a fixstr
        b"\xdb\x00\x00\x00\x01a",  # str32 for a fixstr
        b"\xda\x00\x20" + b"a" * 32,  # str16 for a str8
        b"\xd9\x00",  # empty str8
        b"\xc5\x00\x01a",  # bin16 for a bin8
        b"\xc6\x00\x00\x00\x01a",  # bin32 for a bin8
        b"\xc5\x00\x00",  # empty bin16
        b"\xdc\x00\x01\x01",  # array16 for a fixarray
        b"\xdd\x00\x00\x00\x01\x01",  # array32 for a fixarray
        b"\xdc\x00\x00",  # empty array16
        b"\xde\x00\x01\xa1a\x01",  # map16 for a fixmap
        b"\xdf\x00\x00\x00\x01\xa1a\x01",  # map32 for a fixmap
        b"\xde\x00\x00",  # empty map16
        b"\x91\xd9\x01a",  # nested non-minimal str
    ],
)
def test_invalid_non_minimal_length(data: bytes) -> None:
    assert decode_error(data).code == "non_canonical_encoding"


@pytest.mark.parametrize(
    "data",
    [
        b"\x82\xa1b\x01\xa1a\x02",  # "b" before "a"
        b"\x82\xa1b\x00\xa2aa\x00",  # length-first order is not ours
        b"\x82\xa2\xc3\xa9\x00\xa1z\x00",  # "é" before "z"
        b"\x91\x82\xa1b\x01\xa1a\x02",  # nested
    ],
)
def test_invalid_unsorted_map_keys(data: bytes) -> None:
    assert decode_error(data).code == "non_canonical_encoding"


@pytest.mark.parametrize(
    "data",
    [
        b"\x82\xa1a\x01\xa1a\x02",
        b"\x82\xa1a\x01\xa1a\x01",  # same value twice
        b"\x83\xa1a\x01\xa1b\x01\xa1b\x01",
    ],
)
def test_invalid_duplicate_map_keys(data: bytes) -> None:
    assert decode_error(data).code == "non_canonical_encoding"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\x81\x01\x01", "malformed_encoding"),  # int key
        (b"\x81\xc0\x01", "malformed_encoding"),  # nil key
        (b"\x81\xc3\x01", "malformed_encoding"),  # bool key
        (b"\x81\x90\x01", "malformed_encoding"),  # array key
        (b"\x81\x80\x01", "malformed_encoding"),  # map key
        (b"\x81\xc4\x01a\x01", "wrong_type"),  # bin key
    ],
)
def test_invalid_non_text_map_key(data: bytes, code: str) -> None:
    assert decode_error(data).code == code


@pytest.mark.parametrize(
    "data",
    [
        b"\xd4\x01\x00",  # fixext1
        b"\xd5\x02\x00\x00",  # fixext2
        b"\xd6\x05\x00\x00\x00\x00",  # fixext4
        b"\xd7\x7f" + b"\x00" * 8,  # fixext8
        b"\xd8\x00" + b"\x00" * 16,  # fixext16, type 0
        b"\xc7\x03\x01abc",  # ext8
        b"\xc8\x00\x01\x01a",  # ext16
        b"\xc9\x00\x00\x00\x01\x01a",  # ext32
        b"\xd4\x80\x00",  # negative (reserved) type -128
        b"\xc7\x03\xff\x00\x00\x00",  # type -1 with a length that is no timestamp
        b"\x91\xd4\x01\x00",  # nested
    ],
)
def test_invalid_ext_type(data: bytes) -> None:
    assert decode_error(data).code == "malformed_encoding"


@pytest.mark.parametrize(
    "data",
    [
        b"\xd6\xff\x00\x00\x00\x00",  # timestamp32
        b"\xd7\xff" + b"\x00" * 8,  # timestamp64
        b"\xc7\x0c\xff" + b"\x00" * 12,  # timestamp96
    ],
)
def test_invalid_ext_type_timestamp_is_rejected(data: bytes) -> None:
    decode_error(data)


@pytest.mark.parametrize(
    "data",
    [b"\xd6\xff\x00\x00\x00\x00", b"\xd7\xff" + b"\x00" * 8, b"\xc7\x0c\xff" + b"\x00" * 12],
)
def test_invalid_ext_type_timestamp_has_the_ext_code(data: bytes) -> None:
    assert decode_error(data).code == "malformed_encoding"


@pytest.mark.parametrize(
    "data", [b"\x01\x02", b"\x90\x00", b"\xc0\xc0", b"\xa1a\x00", b"\x80\x80", b"\xc3 "]
)
def test_invalid_trailing_bytes(data: bytes) -> None:
    assert decode_error(data).code == "malformed_encoding"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x92\x01",
        b"\xa2a",
        b"\xcd\x01",
        b"\xc4\x05ab",
        b"\x81\xa1a",
        b"\xcf\x00",
        b"\xdc\x00",
        b"\xc4",
    ],
)
def test_invalid_truncated(data: bytes) -> None:
    assert decode_error(data).code == "malformed_encoding"


def test_invalid_truncated_every_prefix_of_a_valid_encoding() -> None:
    data = encode({"a": [1, -200, b"xyz", "text", None, True, {"b": 2**40}], "c": INT_MIN})
    for end in range(len(data)):
        assert decode_error(data[:end]).code == "malformed_encoding", end


@pytest.mark.parametrize(
    "data",
    [
        b"\xa1\xff",  # invalid start byte
        b"\xa2\xc3\x28",  # bad continuation byte
        b"\xa2\xc0\xaf",  # overlong "/"
        b"\xa3\xed\xa0\x80",  # UTF-8-encoded surrogate U+D800
        b"\xa4\xf4\x90\x80\x80",  # above U+10FFFF
        b"\xa1\xc3",  # truncated sequence inside the string
        b"\x81\xa1\xff\x01",  # in a map key
        b"\x91\xa1\xff",  # nested
    ],
)
def test_invalid_utf8(data: bytes) -> None:
    assert decode_error(data).code == "malformed_encoding"


def test_invalid_unknown_type_byte() -> None:
    assert decode_error(b"\xc1").code == "malformed_encoding"


def test_invalid_oversize_input() -> None:
    data = encode([b"x" * 100, "y" * 100])
    assert decode(data, max_bytes=len(data)) == [b"x" * 100, "y" * 100]
    assert decode_error(data, max_bytes=len(data) - 1).code == "too_large"
    assert decode_error(b"\x00", max_bytes=0).code == "too_large"


def test_invalid_oversize_input_default_limit() -> None:
    # Over the limit is refused on size alone, before any parsing.
    assert decode_error(b"\xc0" * (MESSAGE_BYTES_MAX + 1)).code == "too_large"


def test_nesting_at_the_limit_round_trips() -> None:
    for value in (nested_lists(NESTING_DEPTH_MAX), nested_maps(NESTING_DEPTH_MAX)):
        assert decode(encode(value)) == value
    assert decode(b"\x91" * (NESTING_DEPTH_MAX - 1) + b"\x90") == nested_lists(NESTING_DEPTH_MAX)


@pytest.mark.parametrize("build", [nested_lists, nested_maps])
def test_invalid_nesting_deeper_than_the_limit(build: Any) -> None:
    value = build(NESTING_DEPTH_MAX + 1)
    assert encode_error(value).code == "too_large"
    data = (b"\x91" if build is nested_lists else b"\x81\xa1k") * NESTING_DEPTH_MAX
    data += b"\x90" if build is nested_lists else b"\x80"
    assert decode_error(data).code == "too_large"


def test_invalid_nesting_far_too_deep_is_still_an_encoding_error() -> None:
    # msgpack's own stack limit (about 1024) may answer first; either way it is an EncodingError.
    assert decode_error(b"\x91" * 5000 + b"\x90").code in {"too_large", "malformed_encoding"}
    assert decode_error(b"\x91" * 100 + b"\x90").code == "too_large"


CONTAINERS_OVER_THE_LIMIT = [
    b"\xdd" + (CONTAINER_ITEMS_MAX + 1).to_bytes(4, "big") + b"\x00" * (CONTAINER_ITEMS_MAX + 1),
    b"\xdf"
    + (CONTAINER_ITEMS_MAX + 1).to_bytes(4, "big")
    + b"".join(
        encode(key) + b"\x00" for key in utf8_sorted(str(i) for i in range(CONTAINER_ITEMS_MAX + 1))
    ),
]


def test_containers_at_the_item_limit_round_trip() -> None:
    assert decode(encode([0] * CONTAINER_ITEMS_MAX)) == [0] * CONTAINER_ITEMS_MAX


@pytest.mark.parametrize("data", CONTAINERS_OVER_THE_LIMIT, ids=["array", "map"])
def test_invalid_too_many_items(data: bytes) -> None:
    decode_error(data)
    assert encode_error([0] * (CONTAINER_ITEMS_MAX + 1)).code == "too_large"
    assert encode_error({str(i): 0 for i in range(CONTAINER_ITEMS_MAX + 1)}).code == "too_large"


@pytest.mark.parametrize("data", CONTAINERS_OVER_THE_LIMIT, ids=["array", "map"])
def test_invalid_too_many_items_is_too_large(data: bytes) -> None:
    assert decode_error(data).code == "too_large"


def test_invalid_decode_input_not_bytes() -> None:
    with pytest.raises(EncodingError) as caught:
        decode("\x90")  # type: ignore[arg-type]
    assert caught.value.code == "wrong_type"


# --- Explicit rejections (encode) -------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [INT_MAX + 1, 2**100, INT_MIN - 1, [INT_MAX + 1], {"a": INT_MIN - 1}]
)
def test_invalid_integer_out_of_range_on_encode(value: Any) -> None:
    assert encode_error(value).code == "wrong_type"


@pytest.mark.parametrize(
    "value",
    [
        1.0,
        0.5,
        float("nan"),
        [1.5],
        {"a": 0.0},
        bytearray(b"a"),
        memoryview(b"a"),
        {1, 2},
        object(),
    ],
)
def test_invalid_type_on_encode(value: Any) -> None:
    assert encode_error(value).code == "wrong_type"


@pytest.mark.parametrize("value", [{1: "a"}, {b"a": 1}, {None: 1}, {("a",): 1}, [{"ok": {2: 0}}]])
def test_invalid_non_text_map_key_on_encode(value: Any) -> None:
    assert encode_error(value).code == "wrong_type"


@pytest.mark.parametrize("value", ["\ud800", ["ok", "\udfff"], {"\ud800": 1}])
def test_invalid_text_that_is_not_utf8_on_encode(value: Any) -> None:
    assert encode_error(value).code == "wrong_type"


# --- Records ------------------------------------------------------------------------------------

uint8 = st.integers(0, 2**8 - 1)
uint32 = st.integers(0, 2**32 - 1)
uint64 = st.integers(0, 2**64 - 1)
hashes = st.binary(min_size=32, max_size=32)
signatures = st.binary(min_size=64, max_size=64)
public_keys = st.binary(min_size=32, max_size=32)
member_names = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,11}", fullmatch=True)
identifiers = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True)
currency_codes = st.from_regex(r"[A-Z][A-Z0-9]{2,7}", fullmatch=True)
short_text = st.text(max_size=16)
argument_values = values(3, tuples=False)

transactions = st.builds(
    Transaction,
    sender=member_names,
    nonce=st.integers(0, 2**63 - 1),
    contract=identifiers,
    method=identifiers,
    args=st.dictionaries(st.text(max_size=10), argument_values, max_size=5),
    expiry_height=uint64,
)
signed_transactions = st.builds(SignedTransaction, transactions, signatures)
headers = st.builds(
    BlockHeader,
    chain_id=short_text,
    height=uint64,
    parent_hash=hashes,
    timestamp_ms=uint64,
    proposer=short_text,
    tx_count=uint32,
    tx_root=hashes,
    log_size=uint64,
    log_root=hashes,
    state_root=hashes,
    validator_set_hash=hashes,
)
votes = st.builds(
    Vote,
    height=uint64,
    round=uint32,
    kind=uint8,
    block_hash=st.binary(max_size=32),
    validator=short_text,
)
certificates = st.builds(
    CommitCertificate,
    height=uint64,
    round=uint32,
    block_hash=hashes,
    signatures=st.lists(st.builds(CommitSignature, short_text, signatures), max_size=5).map(tuple),
)


@st.composite
def geneses(draw: st.DrawFn) -> Genesis:
    """A valid genesis: sorted, distinct names; roles drawn from the known ones."""
    validator_names = sorted(draw(st.lists(member_names, min_size=1, max_size=4, unique=True)))
    validators = tuple(
        Validator(name, draw(public_keys), draw(st.integers(1, 2**32 - 1)))
        for name in validator_names
    )
    codes = sorted(draw(st.lists(currency_codes, max_size=3, unique=True)))
    currencies = tuple(Currency(code, draw(st.integers(0, 18))) for code in codes)
    role_pool = sorted([*ROLES_PLAIN, *(f"issuer:{code}" for code in codes)])
    members = tuple(
        Member(
            name,
            draw(public_keys),
            tuple(sorted(draw(st.sets(st.sampled_from(role_pool), max_size=3)))),
        )
        for name in sorted(draw(st.lists(member_names, max_size=4, unique=True)))
    )
    params = tuple(
        Param(name, draw(st.integers(-(2**63), 2**63 - 1)))
        for name in sorted(draw(st.lists(identifiers, max_size=3, unique=True)))
    )
    chain_id = draw(st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True))
    return Genesis(chain_id, draw(uint64), ValidatorSet(validators), members, currencies, params)


RECORD_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "Transaction": transactions,
    "SignedTransaction": signed_transactions,
    "BlockHeader": headers,
    "Vote": votes,
    "CommitCertificate": certificates,
    "Genesis": geneses(),
}
RECORD_NAMES = sorted(RECORD_STRATEGIES)


def strict(value: Any) -> Any:
    """A form of a wire value where equality also compares types (Python has 1 == True)."""
    if isinstance(value, (list, tuple)):
        return ("array", tuple(strict(item) for item in value))
    if isinstance(value, dict):
        return ("map", tuple(sorted((key, strict(item)) for key, item in value.items())))
    return (type(value).__name__, value)


def decode_as(record: Record, data: bytes) -> Record:
    result: Record = type(record).decode(data)
    return result


def wrong_type_for(value: Any) -> Any:
    """A wire value of another kind: str↔bin, int→str, bool→int, array↔map, nil→int."""
    if value is None or type(value) is bool:
        return 0
    if type(value) is int:
        return str(value)
    if type(value) is str:
        return value.encode("utf-8")  # bin where text is expected
    if type(value) is bytes:
        return "x" * len(value)  # text where bin is expected, same length
    if type(value) is list:
        return {"a": value}
    if type(value) is dict:
        return list(value.values())
    raise AssertionError(f"unexpected wire value {value!r}")


@pytest.mark.parametrize("name", RECORD_NAMES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_record_round_trip(name: str, data: st.DataObject) -> None:
    record = data.draw(RECORD_STRATEGIES[name])
    encoded = record.encode()
    assert encoded == encode(record.to_wire())
    decoded = decode_as(record, encoded)
    assert decoded == record
    assert decoded.encode() == encoded


@pytest.mark.parametrize("name", RECORD_NAMES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_record_distinct_values_encode_differently(name: str, data: st.DataObject) -> None:
    first = data.draw(RECORD_STRATEGIES[name])
    second = data.draw(RECORD_STRATEGIES[name])
    same = strict(first.to_wire()) == strict(second.to_wire())
    assume(not same)
    assert first.encode() != second.encode()


@pytest.mark.parametrize("name", RECORD_NAMES)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_invalid_record_field_count(name: str, data: st.DataObject) -> None:
    record = data.draw(RECORD_STRATEGIES[name])
    wire = record.to_wire()
    for changed in (wire + [0], wire + [None], wire[:-1], [], [wire]):
        with pytest.raises(EncodingError) as caught:
            decode_as(record, encode(changed))
        assert caught.value.code == "wrong_type"


@pytest.mark.parametrize("name", RECORD_NAMES)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_invalid_record_field_type(name: str, data: st.DataObject) -> None:
    record = data.draw(RECORD_STRATEGIES[name])
    wire = record.to_wire()
    for index, value in enumerate(wire):
        changed = list(wire)
        changed[index] = wrong_type_for(value)
        with pytest.raises(EncodingError) as caught:
            decode_as(record, encode(changed))
        assert caught.value.code == "wrong_type", index


def test_invalid_record_not_an_array() -> None:
    for value in ({"sender": "alice"}, "alice", 1, None, b"\x00"):
        with pytest.raises(EncodingError) as caught:
            Transaction.decode(encode(value))
        assert caught.value.code == "wrong_type"


# Fixed examples for the per-field checks.

KEY = bytes(range(32))
TX = Transaction("alice", 3, "accounts", "transfer", {"to": "bob", "amount_minor": 100}, 0)
SIGNED_TX = SignedTransaction(TX, b"\x05" * 64)
HEADER = BlockHeader(
    "chain-a",
    7,
    b"\x01" * 32,
    1_700_000_000_000,
    "v0",
    2,
    b"\x02" * 32,
    9,
    b"\x03" * 32,
    b"\x04" * 32,
    b"\x06" * 32,
)
VOTE = Vote(7, 0, 2, b"\x07" * 32, "v0")
CERTIFICATE = CommitCertificate(
    7, 0, b"\x07" * 32, (CommitSignature("v0", b"\x08" * 64), CommitSignature("v1", b"\x09" * 64))
)
GENESIS = Genesis(
    "chain-a",
    0,
    ValidatorSet((Validator("v0", KEY, 1), Validator("v1", KEY, 2))),
    (Member("alice", KEY, ("issuer:CNY", "participant")), Member("bob", KEY, ("participant",))),
    (Currency("CNY", 2), Currency("JPY", 0)),
    (Param("block_txs_max", 100),),
)
EXAMPLES: dict[str, Record] = {
    "Transaction": TX,
    "SignedTransaction": SIGNED_TX,
    "BlockHeader": HEADER,
    "Vote": VOTE,
    "CommitCertificate": CERTIFICATE,
    "Genesis": GENESIS,
}


def replace_at(wire: Any, path: tuple[int, ...], value: Any) -> Any:
    if not path:
        return value
    changed = list(wire)
    changed[path[0]] = replace_at(wire[path[0]], path[1:], value)
    return changed


def get_at(wire: Any, path: tuple[int, ...]) -> Any:
    for index in path:
        wire = wire[index]
    return wire


# (record, path to a fixed-length byte field in its wire form, required length)
FIXED_BYTES_FIELDS = [
    ("SignedTransaction", (1,), 64),
    ("BlockHeader", (2,), 32),
    ("BlockHeader", (6,), 32),
    ("BlockHeader", (8,), 32),
    ("BlockHeader", (9,), 32),
    ("BlockHeader", (10,), 32),
    ("CommitCertificate", (2,), 32),
    ("CommitCertificate", (3, 1, 1), 64),
    ("Genesis", (2, 0, 0, 1), 32),
    ("Genesis", (3, 1, 1), 32),
]


@pytest.mark.parametrize(("name", "path", "length"), FIXED_BYTES_FIELDS)
def test_invalid_record_fixed_bytes_length(name: str, path: tuple[int, ...], length: int) -> None:
    record = EXAMPLES[name]
    wire = record.to_wire()
    assert len(get_at(wire, path)) == length
    assert decode_as(record, encode(wire)) == record
    for wrong in (0, 1, length - 1, length + 1, 2 * length):
        with pytest.raises(EncodingError) as caught:
            decode_as(record, encode(replace_at(wire, path, b"\xab" * wrong)))
        assert caught.value.code == "wrong_type", wrong


def test_vote_block_hash_is_empty_or_at_most_32_bytes() -> None:
    for length in (0, 32):
        vote = dataclasses.replace(VOTE, block_hash=b"\x01" * length)
        assert Vote.decode(vote.encode()) == vote
    with pytest.raises(EncodingError) as caught:
        Vote.decode(encode(replace_at(VOTE.to_wire(), (3,), b"\x01" * 33)))
    assert caught.value.code == "wrong_type"


@pytest.mark.parametrize(
    ("name", "path", "value"),
    [
        ("Transaction", (0,), b"alice"),  # bin where the sender text is expected
        ("Transaction", (2,), b"accounts"),
        ("SignedTransaction", (1,), "x" * 64),  # text where the signature bin is expected
        ("SignedTransaction", (0, 3), b"transfer"),
        ("BlockHeader", (0,), b"chain-a"),
        ("BlockHeader", (2,), "x" * 32),
        ("Vote", (3,), "x" * 32),
        ("Vote", (4,), b"v0"),
        ("CommitCertificate", (3, 0, 0), b"v0"),
        ("CommitCertificate", (3, 0, 1), "x" * 64),
        ("Genesis", (0,), b"chain-a"),
        ("Genesis", (3, 0, 1), "x" * 32),
    ],
)
def test_invalid_record_str_bin_confusion(name: str, path: tuple[int, ...], value: Any) -> None:
    record = EXAMPLES[name]
    with pytest.raises(EncodingError) as caught:
        decode_as(record, encode(replace_at(record.to_wire(), path, value)))
    assert caught.value.code == "wrong_type"


@pytest.mark.parametrize(
    ("name", "path", "value"),
    [
        ("Transaction", (1,), -1),  # nonce below range
        ("Transaction", (1,), 2**63),  # nonce above uint63
        ("Transaction", (1,), True),  # a boolean is not an integer
        ("Transaction", (5,), -1),
        ("BlockHeader", (1,), -1),
        ("BlockHeader", (5,), 2**32),  # tx_count is uint32
        ("Vote", (1,), 2**32),  # round is uint32
        ("Vote", (2,), 256),  # kind is uint8
        ("Vote", (0,), False),
        ("CommitCertificate", (1,), -5),
        ("Genesis", (1,), -1),
        ("Genesis", (5, 0, 1), 2**63),  # param value is sint64
    ],
)
def test_invalid_record_integer_out_of_range(name: str, path: tuple[int, ...], value: Any) -> None:
    record = EXAMPLES[name]
    with pytest.raises(EncodingError) as caught:
        decode_as(record, encode(replace_at(record.to_wire(), path, value)))
    assert caught.value.code == "wrong_type"


def test_records_are_arrays_in_declared_field_order() -> None:
    assert decode(TX.encode()) == [
        "alice",
        3,
        "accounts",
        "transfer",
        {"amount_minor": 100, "to": "bob"},
        0,
    ]
    assert decode(VOTE.encode()) == [7, 0, 2, b"\x07" * 32, "v0"]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # Indy Plenum's ambiguity: these must never share bytes.
        (
            dataclasses.replace(TX, args={"amount": "10", "to": "bob"}),
            dataclasses.replace(TX, args={"amount": "10|to:bob"}),
        ),
        (
            dataclasses.replace(TX, sender="ab", contract="c"),
            dataclasses.replace(TX, sender="a", contract="bc"),
        ),
        (dataclasses.replace(TX, args={"a": 1}), dataclasses.replace(TX, args={"a": True})),
        (dataclasses.replace(TX, args={"a": b"1"}), dataclasses.replace(TX, args={"a": "1"})),
        (dataclasses.replace(TX, args={"a": None}), dataclasses.replace(TX, args={})),
        (
            dataclasses.replace(TX, args={"a": [1, 2]}),
            dataclasses.replace(TX, args={"a": [[1], 2]}),
        ),
        (dataclasses.replace(VOTE, block_hash=b""), dataclasses.replace(VOTE, block_hash=b"\x00")),
        (dataclasses.replace(VOTE, kind=1), dataclasses.replace(VOTE, kind=2)),
        (
            dataclasses.replace(VOTE, height=1, round=23),
            dataclasses.replace(VOTE, height=12, round=3),
        ),
        (
            dataclasses.replace(CERTIFICATE, signatures=()),
            dataclasses.replace(CERTIFICATE, signatures=CERTIFICATE.signatures[:1]),
        ),
        (
            dataclasses.replace(HEADER, chain_id="a", proposer="bc"),
            dataclasses.replace(HEADER, chain_id="ab", proposer="c"),
        ),
        (dataclasses.replace(GENESIS, params=()), GENESIS),
    ],
)
def test_record_injectivity_spot_checks(first: Record, second: Record) -> None:
    # Not ``first != second``: Python says {"a": 1} == {"a": True}; the bytes must not.
    assert strict(first.to_wire()) != strict(second.to_wire())
    assert first.encode() != second.encode()


_plain_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.binary(max_size=8)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(_plain_values)
def test_decode_accepts_exactly_the_bytes_encode_gives(value: object) -> None:
    """Packed as built (maps in insertion order, maybe not canonical), the bytes decode iff they are encode()'s."""
    import msgpack

    packed = msgpack.packb(value, use_bin_type=True)
    canonical = encode(value)
    if packed == canonical:
        assert decode(packed) == value
    else:
        with pytest.raises(EncodingError):
            decode(packed)
