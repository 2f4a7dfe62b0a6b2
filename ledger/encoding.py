"""The one canonical encoding: msgpack, arrays in declared field order.

Everything that is hashed, signed, stored or sent is these bytes. A value
has exactly one encoding, and decoding accepts only that encoding, so two
nodes that agree on a value agree on its hash. The rules (see
docs/PROTOCOL.md):

- Allowed values: nil, booleans, integers in [-2**63, 2**64 - 1], byte
  strings (msgpack bin), UTF-8 text (msgpack str), arrays, and maps whose
  keys are text, written in ascending order of their UTF-8 bytes. Floats
  and extension types are never accepted.
- Every integer, length and container header uses its shortest msgpack form
  (what msgpack-python writes with ``use_bin_type=True``).
- Records (transactions, headers, votes, ...) are arrays of their fields in
  declared order: no field names on the wire, no optional trailing fields.

Decoding checks canonicity the simple, exhaustive way: it re-encodes the
decoded value and requires the same bytes. That rejects non-minimal
integers and lengths, unsorted or duplicate map keys, str/bin confusion and
trailing bytes in one rule instead of a dozen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import msgpack

from ledger.errors import EncodingError

MESSAGE_BYTES_MAX = 8 * 1024 * 1024
"""Largest encoded object accepted anywhere (a full block must fit)."""
NESTING_DEPTH_MAX = 16
"""Most levels of nested arrays and maps in any accepted value (a top-level array is level 1)."""
CONTAINER_ITEMS_MAX = 100_000
"""Most items in one array or map."""
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
U64_MAX = 2**64 - 1

_packer_options: dict[str, Any] = {"use_bin_type": True, "strict_types": False}


def _reject_ext(code: int, data: bytes) -> Any:
    raise EncodingError("malformed_encoding", f"extension type {code} is not allowed")


def _normalise(value: Any, depth: int) -> Any:
    """Check ``value`` is in the allowed domain and sort its maps' keys."""
    kind = type(value)
    if kind is bytes or kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if not INT_MIN <= value <= INT_MAX:
            raise EncodingError("wrong_type", f"integer {value} out of range")
        return value
    if depth >= NESTING_DEPTH_MAX:
        raise EncodingError("too_large", "value nested too deeply")
    if kind is list or kind is tuple:
        if len(value) > CONTAINER_ITEMS_MAX:
            raise EncodingError("too_large", "array has too many items")
        return [_normalise(item, depth + 1) for item in value]
    if kind is dict:
        if len(value) > CONTAINER_ITEMS_MAX:
            raise EncodingError("too_large", "map has too many items")
        if not all(type(key) is str for key in value):
            raise EncodingError("wrong_type", "map keys must be text")
        ordered = sorted(value, key=lambda key: key.encode("utf-8"))
        return {key: _normalise(value[key], depth + 1) for key in ordered}
    raise EncodingError("wrong_type", f"type {kind.__name__} cannot be encoded (only exact built-in types)")


def encode(value: Any) -> bytes:
    """Encode a value canonically (tuples encode as arrays)."""
    try:
        data = msgpack.packb(_normalise(value, 0), **_packer_options)
    except UnicodeEncodeError as error:  # e.g. a lone surrogate: not encodable as UTF-8
        raise EncodingError("wrong_type", "text is not valid Unicode") from error
    assert isinstance(data, bytes)
    return data


def pack_normalised(value: Any) -> bytes:
    """Pack a value the caller built already in canonical form (allowed types, maps in key order).

    For hot records with a direct encoder; their tests check it equals ``encode``.
    """
    data = msgpack.packb(value, **_packer_options)
    assert isinstance(data, bytes)
    return data


def _check_decoded(value: Any, depth: int) -> None:
    """Reject floats and over-deep values that msgpack itself accepts, and maps not in canonical key order.

    After this, packing ``value`` as decoded gives the canonical encoding:
    every other rule of ``_normalise`` holds for anything msgpack decodes.
    """
    kind = type(value)
    if kind is float:
        raise EncodingError("wrong_type", "floats are not allowed")
    if kind is msgpack.Timestamp:  # ext type -1 bypasses ext_hook; it is an extension all the same
        raise EncodingError("malformed_encoding", "extension type -1 (timestamp) is not allowed")
    if kind is list or kind is dict:
        if depth >= NESTING_DEPTH_MAX:
            raise EncodingError("too_large", "value nested too deeply")
        for item in value if kind is list else value.values():
            _check_decoded(item, depth + 1)
        if kind is dict:  # after the values, so a float anywhere is reported as such first
            if not all(type(key) is str for key in value):
                raise EncodingError("wrong_type", "map keys must be text")
            keys = [key.encode("utf-8") for key in value]
            if any(keys[i] >= keys[i + 1] for i in range(len(keys) - 1)):
                raise EncodingError("non_canonical_encoding", "map keys are not in canonical order")


def decode(data: bytes, *, max_bytes: int = MESSAGE_BYTES_MAX) -> Any:
    """Decode canonical bytes; anything else raises ``EncodingError``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise EncodingError("wrong_type", "expected bytes")
    data = bytes(data)
    if len(data) > max_bytes:
        raise EncodingError("too_large", f"{len(data)} bytes exceeds the {max_bytes} limit")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            ext_hook=_reject_ext,
            max_array_len=CONTAINER_ITEMS_MAX,
            max_map_len=CONTAINER_ITEMS_MAX,
        )
    except EncodingError:
        raise
    except msgpack.ExtraData as error:
        raise EncodingError("malformed_encoding", "trailing bytes after the value") from error
    except ValueError as error:
        if "exceeds max_" in str(error):  # msgpack's own container-size limit
            raise EncodingError("too_large", str(error)) from error
        raise EncodingError("malformed_encoding", str(error) or type(error).__name__) from error
    except (TypeError, UnicodeDecodeError, RecursionError) as error:
        # msgpack's own errors (OutOfData, FormatError, StackError) are ValueErrors.
        raise EncodingError("malformed_encoding", str(error) or type(error).__name__) from error
    _check_decoded(value, 0)
    if msgpack.packb(value, **_packer_options) != data:  # canonical: what encode(value) gives (see above)
        raise EncodingError("non_canonical_encoding", "not the canonical encoding of its value")
    return value


def encode_array_header(count: int) -> bytes:
    """The canonical msgpack header of an array of ``count`` items."""
    if count < 16:
        return bytes([0x90 | count])
    if count < 0x10000:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


def encode_array_of_encoded(items: Sequence[bytes]) -> bytes:
    """``encode(list)`` from items that are each already canonical bytes (no re-walk)."""
    return encode_array_header(len(items)) + b"".join(items)


# --- Typed fields and records -------------------------------------------------------------

T = TypeVar("T")
FieldCheck = Callable[[Any], Any]
"""Checks one decoded wire value and returns the typed Python value."""


def _fail(what: str) -> EncodingError:
    return EncodingError("wrong_type", what)


def uint(bits: int) -> FieldCheck:
    """An unsigned integer of at most ``bits`` bits."""
    upper = 2**bits - 1

    def check(value: Any) -> int:
        if type(value) is not int or not 0 <= value <= upper:
            raise _fail(f"expected an integer in [0, 2**{bits})")
        return value

    return check


def sint64(value: Any) -> int:
    """A signed 64-bit integer."""
    if type(value) is not int or not INT_MIN <= value <= 2**63 - 1:
        raise _fail("expected a signed 64-bit integer")
    return value


def boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise _fail("expected a boolean")
    return value


def fixed_bytes(length: int) -> FieldCheck:
    """A byte string of exactly ``length`` bytes."""

    def check(value: Any) -> bytes:
        if type(value) is not bytes or len(value) != length:
            raise _fail(f"expected {length} bytes")
        return value

    return check


def var_bytes(length_max: int) -> FieldCheck:
    """A byte string of at most ``length_max`` bytes."""

    def check(value: Any) -> bytes:
        if type(value) is not bytes or len(value) > length_max:
            raise _fail(f"expected at most {length_max} bytes")
        return value

    return check


def text(length_max: int) -> FieldCheck:
    """UTF-8 text of at most ``length_max`` encoded bytes."""

    def check(value: Any) -> str:
        if type(value) is not str or len(value.encode("utf-8")) > length_max:
            raise _fail(f"expected text of at most {length_max} bytes")
        return value

    return check


def array_of(item: FieldCheck, count_max: int) -> FieldCheck:
    """An array of at most ``count_max`` items, decoded to a tuple."""

    def check(value: Any) -> tuple[Any, ...]:
        if type(value) is not list or len(value) > count_max:
            raise _fail(f"expected an array of at most {count_max} items")
        return tuple(item(element) for element in value)

    return check


def any_value(value: Any) -> Any:
    """Any value of the canonical domain (already checked by ``decode``)."""
    return value


def text_map(value: Any) -> dict[str, Any]:
    """A map with text keys (contract call arguments)."""
    if type(value) is not dict:
        raise _fail("expected a map")
    return value


class Record:
    """A frozen dataclass that encodes as an array of its fields in order.

    Subclasses declare ``WIRE``: one check per dataclass field, in the
    dataclass's field order. Nested records use ``record(Cls)``.
    """

    __slots__ = ()
    WIRE: ClassVar[tuple[FieldCheck, ...]]

    def to_wire(self) -> list[Any]:
        return [_to_wire(getattr(self, name)) for name in _wire_field_names(type(self))]

    @classmethod
    def from_wire(cls: type[T], value: Any) -> T:
        checks = cls.WIRE  # type: ignore[attr-defined]
        if type(value) is not list or len(value) != len(checks):
            raise _fail(f"{cls.__name__}: expected an array of {len(checks)} fields")
        try:
            return cls(*(check(item) for check, item in zip(checks, value)))
        except EncodingError as error:
            raise EncodingError(error.code, f"{cls.__name__}: {error.detail}") from None

    def encode(self) -> bytes:
        return encode(self.to_wire())

    @classmethod
    def decode(cls: type[T], data: bytes, *, max_bytes: int = MESSAGE_BYTES_MAX) -> T:
        return cls.from_wire(decode(data, max_bytes=max_bytes))  # type: ignore[attr-defined, no-any-return]


_field_names: dict[type, tuple[str, ...]] = {}


def _wire_field_names(cls: type) -> tuple[str, ...]:
    """The dataclass fields that go on the wire: all but private caches (``_name``)."""
    names = _field_names.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls) if not f.name.startswith("_"))
        _field_names[cls] = names
    return names


def _to_wire(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_wire()
    if isinstance(value, tuple):
        return [_to_wire(item) for item in value]
    return value


def record(cls: type[Record]) -> FieldCheck:
    """A nested record field."""
    return cls.from_wire


def optional(check: FieldCheck) -> FieldCheck:
    """A field that may be nil."""

    def checked(value: Any) -> Any:
        return None if value is None else check(value)

    return checked


def check_record_wire(cls: type[Record]) -> None:
    """Assert at import time that a record's ``WIRE`` matches its fields."""
    assert dataclasses.is_dataclass(cls), cls
    assert len(cls.WIRE) == len(_wire_field_names(cls)), cls


def encode_all(records: Sequence[Record]) -> list[bytes]:
    return [item.encode() for item in records]


__all__ = [
    "CONTAINER_ITEMS_MAX",
    "MESSAGE_BYTES_MAX",
    "NESTING_DEPTH_MAX",
    "pack_normalised",
    "Record",
    "any_value",
    "array_of",
    "boolean",
    "check_record_wire",
    "decode",
    "encode",
    "encode_array_header",
    "encode_array_of_encoded",
    "fixed_bytes",
    "optional",
    "record",
    "sint64",
    "text",
    "text_map",
    "uint",
    "var_bytes",
]
