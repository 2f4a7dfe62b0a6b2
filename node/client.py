"""A small Python client for a node's HTTP API (the participants' issue grows it).

Submission is idempotent (the same signed bytes have the same id and are
applied at most once), so ``submit_batch`` may retry on another node after a
connection error without risk of a double payment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from ledger import encoding as enc
from ledger.transaction import SignedTransaction

MSGPACK = "application/msgpack"


class NodeClient:
    def __init__(self, urls: str | Sequence[str], timeout_s: float = 30.0) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        assert self.urls, "at least one node URL"
        self._http = httpx.Client(timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        last_error: Exception | None = None
        for url in self.urls:
            try:
                return self._http.request(method, url + path, **kwargs)
            except httpx.TransportError as error:  # node down: the next one (submission is idempotent)
                last_error = error
        assert last_error is not None
        raise last_error

    def submit_batch(self, transactions: Sequence[SignedTransaction]) -> list[dict[str, Any]]:
        body = enc.encode_array_of_encoded([enc.encode(signed.encode()) for signed in transactions])
        response = self._request("POST", "/v1/transactions/batch", content=body, headers={"content-type": MSGPACK})
        response.raise_for_status()
        return response.json()["results"]  # type: ignore[no-any-return]

    def get_transaction(self, tx_id: bytes, wait_ms: int = 0) -> dict[str, Any]:
        response = self._request("GET", f"/v1/transactions/{tx_id.hex()}", params={"wait_ms": wait_ms})
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def get_account_nonce(self, name: str) -> int:
        """The nonce the member's next transaction should carry (counting ones pending at that node)."""
        response = self._request("GET", f"/v1/accounts/{name}/nonce")
        response.raise_for_status()
        return int(response.json()["nonce"])

    def get_status(self) -> dict[str, Any]:
        response = self._request("GET", "/v1/status")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]
