"""Signed reads: the node's authenticator, with an injected clock."""

from __future__ import annotations

import pytest

from ledger.genesis import Member
from ledger.keys import PrivateKey
from ledger.read_request import READ_SKEW_MS_MAX, ReadAuthError, sign_read_request
from node.read_auth import ReadAuthenticator, Reader

CHAIN = "test-chain"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def setup() -> tuple[ReadAuthenticator, Clock, PrivateKey]:
    key = PrivateKey(b"\x07" * 32)
    members = {"bank-cn": Member("bank-cn", key.public_key, ("participant",))}
    clock = Clock()
    return ReadAuthenticator(CHAIN, members.get, clock, nonces_max=3, nonces_per_member_max=3), clock, key


def _headers(key: PrivateKey, now: int, nonce: bytes, target: bytes = b"/v1/accounts/bank-cn") -> dict[str, str]:
    return sign_read_request(key, "bank-cn", CHAIN, "GET", target, b"", now, nonce)


def test_a_nonce_is_accepted_once_and_forgotten_only_after_its_window(setup) -> None:  # type: ignore[no-untyped-def]
    auth, clock, key = setup
    headers = _headers(key, clock.now, b"\x01" * 16)
    assert auth.authenticate(headers, "GET", b"/v1/accounts/bank-cn", b"") == Reader("bank-cn", ("participant",))
    with pytest.raises(ReadAuthError) as caught:
        auth.authenticate(headers, "GET", b"/v1/accounts/bank-cn", b"")
    assert caught.value.code == "replayed_request"
    clock.now += READ_SKEW_MS_MAX + 1  # the nonce may be forgotten now: its timestamp is stale anyway
    with pytest.raises(ReadAuthError) as caught:
        auth.authenticate(headers, "GET", b"/v1/accounts/bank-cn", b"")
    assert caught.value.code == "stale_request"


def test_the_nonce_memory_is_bounded_and_sheds_load_when_full(setup) -> None:  # type: ignore[no-untyped-def]
    auth, clock, key = setup
    for number in range(3):
        auth.authenticate(_headers(key, clock.now, bytes([number]) * 16), "GET", b"/v1/accounts/bank-cn", b"")
    with pytest.raises(ReadAuthError) as caught:
        auth.authenticate(_headers(key, clock.now, b"\x09" * 16), "GET", b"/v1/accounts/bank-cn", b"")
    assert caught.value.code == "too_many_requests"
    clock.now += READ_SKEW_MS_MAX + 1  # the window passed: old nonces expire, room again
    auth.authenticate(_headers(key, clock.now, b"\x09" * 16), "GET", b"/v1/accounts/bank-cn", b"")


def test_the_signature_covers_method_target_and_clock(setup) -> None:  # type: ignore[no-untyped-def]
    auth, clock, key = setup
    headers = _headers(key, clock.now, b"\x02" * 16)
    for method, target in [("POST", b"/v1/accounts/bank-cn"), ("GET", b"/v1/accounts/bank-cn?proof=true")]:
        with pytest.raises(ReadAuthError) as caught:
            auth.authenticate(headers, method, target, b"")
        assert caught.value.code == "invalid_signature"
    moved = dict(headers, **{"x-ledger-timestamp": str(clock.now + 1)})
    with pytest.raises(ReadAuthError) as caught:
        auth.authenticate(moved, "GET", b"/v1/accounts/bank-cn", b"")
    assert caught.value.code == "invalid_signature"
    with pytest.raises(ReadAuthError) as caught:
        auth.authenticate({}, "GET", b"/v1/accounts/bank-cn", b"")
    assert caught.value.code == "unauthenticated"


def test_permissions() -> None:
    owner, auditor, other = Reader("a", ("participant",)), Reader("x", ("auditor",)), Reader("b", ("participant",))
    assert owner.may_read_account("a") and auditor.may_read_account("a") and not other.may_read_account("a")
    assert Reader("r", ("regulator",)).may_read_account("a")
    assert other.may_read_transaction("a", {"to": "b"}) and not other.may_read_transaction("a", {"to": "c"})
    assert not Reader("v", ("validator",)).may_read_account("a")


def test_one_member_reading_too_fast_does_not_crowd_out_the_others() -> None:
    keys = {name: PrivateKey(bytes([n + 1]) * 32) for n, name in enumerate(("greedy", "other"))}
    members = {name: Member(name, key.public_key, ("participant",)) for name, key in keys.items()}
    clock = Clock()
    auth = ReadAuthenticator(CHAIN, members.get, clock, nonces_max=10, nonces_per_member_max=2)

    def read(name: str, nonce: int) -> None:
        headers = sign_read_request(keys[name], name, CHAIN, "GET", b"/v1/status", b"", clock.now, bytes([nonce]) * 16)
        auth.authenticate(headers, "GET", b"/v1/status", b"")

    read("greedy", 1)
    read("greedy", 2)
    with pytest.raises(ReadAuthError) as caught:
        read("greedy", 3)
    assert caught.value.code == "too_many_requests"
    read("other", 1)  # the others still get through
    clock.now += READ_SKEW_MS_MAX + 1
    read("greedy", 4)  # and the greedy one again once its window has passed
