"""Naming rules for members, contracts, methods, currencies and roles.

Names appear in signed data and in state keys, so they are restricted to a
small ASCII alphabet: no two names can look alike, and a name can be used
inside a state key (``account/<name>``) without escaping.
"""

from __future__ import annotations

import re

from ledger.errors import InvalidTransaction

MEMBER_NAME_BYTES_MAX = 64
CONTRACT_NAME_BYTES_MAX = 32
METHOD_NAME_BYTES_MAX = 32
CURRENCY_CODE_BYTES_MAX = 8
ROLE_BYTES_MAX = 32

_MEMBER = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]{0,31}")
_CURRENCY = re.compile(r"[A-Z][A-Z0-9]{2,7}")
_ROLE = re.compile(r"[a-z][a-z_-]{0,22}(:[A-Z][A-Z0-9]{2,7})?")

ROLES_PLAIN = ("participant", "fx_provider", "auditor", "regulator", "registrar", "validator")
"""Roles without a qualifier; ``issuer:<CURRENCY>`` is the qualified one."""


def is_member_name(name: object) -> bool:
    return isinstance(name, str) and _MEMBER.fullmatch(name) is not None


def is_identifier(name: object) -> bool:
    return isinstance(name, str) and _IDENTIFIER.fullmatch(name) is not None


def is_currency_code(code: object) -> bool:
    return isinstance(code, str) and _CURRENCY.fullmatch(code) is not None


def is_role(role: object) -> bool:
    if not isinstance(role, str) or _ROLE.fullmatch(role) is None:
        return False
    base, _, currency = role.partition(":")
    return (base == "issuer" and bool(currency)) or (base in ROLES_PLAIN and not currency)


def check_member_name(name: object, what: str = "member name") -> str:
    if not is_member_name(name):
        raise InvalidTransaction("invalid_name", f"{what} {name!r} must match {_MEMBER.pattern}")
    assert isinstance(name, str)
    return name


__all__ = [
    "ROLES_PLAIN",
    "check_member_name",
    "is_currency_code",
    "is_identifier",
    "is_member_name",
    "is_role",
]
