"""The client's transport rules, against a scripted node (httpx.MockTransport): failover, retries, signing."""

from __future__ import annotations

import httpx
import pytest

from ledger.keys import PrivateKey
from ledger.read_request import HEADER_NONCE, HEADER_SIGNATURE, sign_read_request
from node.client import ApiError, Client

STATUS = {"chain_id": "test-chain", "height": 3, "currencies": [{"code": "CNY", "exponent": 2}]}
ACCOUNT = {"name": "bank-cn", "height": 3, "nonce": 4, "next_nonce": 5,
           "balances": [{"currency": "CNY", "amount_minor": 1234, "amount": "12.34 CNY"}]}


def _problem(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"type": f"urn:ledger:error:{code}", "title": code, "status": status,
                                        "detail": "scripted", "code": code},
                          headers={"content-type": "application/problem+json"})


def _client(handler, urls=("http://a", "http://b"), retries: int = 2) -> Client:  # type: ignore[no-untyped-def]
    return Client(list(urls), member="bank-cn", key=PrivateKey(b"\x05" * 32), retries=retries, backoff_s=0.001,
                  transport=httpx.MockTransport(handler))


def test_fails_over_to_the_next_node_when_one_is_down() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        if request.url.host == "a":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json=STATUS)

    with _client(handler) as client:
        assert client.status()["chain_id"] == "test-chain"
        assert client.status()["height"] == 3
    assert seen == ["a", "b", "b"], "after a failover the client stays on the node that answered"


def test_retries_a_shedding_node_with_backoff_then_gives_its_error() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        return _problem(503, "mempool_full") if calls["n"] < 3 else httpx.Response(200, json=STATUS)

    with _client(handler, urls=["http://a"]) as client:
        assert client.status()["height"] == 3
    assert calls["n"] == 3

    with _client(lambda request: _problem(503, "mempool_full"), urls=["http://a"], retries=1) as client:
        with pytest.raises(ApiError) as caught:
            client.status()
    assert (caught.value.code, caught.value.status) == ("mempool_full", 503)


def test_a_refusal_is_not_retried_and_keeps_its_code() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        return _problem(409, "nonce_already_used")

    with _client(handler) as client, pytest.raises(ApiError) as caught:
        client.status()
    assert (caught.value.code, caught.value.status, calls["n"]) == ("nonce_already_used", 409, 1)


def test_every_attempt_of_a_read_is_signed_afresh() -> None:
    key = PrivateKey(b"\x05" * 32)
    nonces: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/status":
            return httpx.Response(200, json=STATUS)
        assert request.headers["x-ledger-member"] == "bank-cn"
        timestamp = int(request.headers["x-ledger-timestamp"])
        nonce = bytes.fromhex(request.headers[HEADER_NONCE])
        expected = sign_read_request(key, "bank-cn", "test-chain", "GET", request.url.raw_path, b"", timestamp, nonce)
        assert request.headers[HEADER_SIGNATURE] == expected[HEADER_SIGNATURE]
        nonces.append(request.headers[HEADER_NONCE])
        if len(nonces) == 1:
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(200, json=ACCOUNT)

    with _client(handler) as client:
        info = client.get_account("bank-cn")
    assert info.balances == {"CNY": 1234} and info.display == {"CNY": "12.34 CNY"} and info.next_nonce == 5
    assert len(nonces) == 2 and nonces[0] != nonces[1], "a retried read carries a new nonce (no replay refusal)"


def test_signing_needs_a_member_and_key() -> None:
    with Client("http://a", transport=httpx.MockTransport(lambda r: httpx.Response(200, json=STATUS))) as client:
        with pytest.raises(ApiError) as caught:
            client.get_account("bank-cn")
    assert caught.value.code == "unauthenticated"
