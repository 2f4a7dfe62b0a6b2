"""The Python client for a node's HTTP API: what an institution integrates with.

    with Client.from_devnet(".devnet", "alipay-agg") as client:
        receipt = client.transfer("merchant-001", 1234, "CNY", wait=True)
        print(client.get_account("alipay-agg").balances)

Retries are safe because submission is idempotent: the same signed bytes
have the same id and are applied at most once, so the client retries a
submission after a timeout or a dropped connection, on the same node or on
another one, without risk of a double payment. Reads are signed per attempt
(a fresh nonce each time, since the node refuses a replayed read).

Errors the node reports become ``ApiError`` with the node's stable ``code``
and HTTP ``status``; a node that cannot be reached is failed over to the
next URL, and after the last attempt the error is ``ApiError("unavailable")``.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ledger import encoding as enc
from ledger.errors import EncodingError
from ledger.keys import PrivateKey
from ledger.proofs import AccountProof, CertifiedHeader, TxInclusion
from ledger.read_request import sign_read_request
from ledger.transaction import SignedTransaction, Transaction

MSGPACK = "application/msgpack"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
ANSWER_BYTES_MAX = 16 * 1024 * 1024
"""The largest answer a client reads: a full block with its receipts, plus the node's export batch."""
WAIT_CHUNK_MS = 10_000
FINAL_STATUSES = frozenset({"committed", "failed"})


class ApiError(Exception):
    """A request the node refused (``code``, ``status`` from its problem+json) or could not serve."""

    def __init__(self, code: str, detail: str, status: int = 0) -> None:
        super().__init__(f"{code}: {detail}" + (f" (HTTP {status})" if status else ""))
        self.code = code
        self.detail = detail
        self.status = status

    @classmethod
    def from_response(cls, response: httpx.Response, body: bytes) -> ApiError:
        try:
            problem = json.loads(body)
            return cls(str(problem["code"]), str(problem.get("detail", "")), response.status_code)
        except (ValueError, KeyError, TypeError):
            text = body[:200].decode("utf-8", "replace")
            return cls("http_error", text or response.reason_phrase, response.status_code)


@dataclass(frozen=True, slots=True)
class Submitted:
    tx_id: bytes
    outcome: str
    """admitted, queued (waits for an earlier nonce), duplicate (already pending) or committed."""


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TxStatus:
    tx_id: bytes
    status: str
    """pending, committed, failed or unknown."""
    height: int | None = None
    index: int | None = None
    log_index: int | None = None
    code: str = ""
    """The contract's error code when the call failed."""
    events: tuple[Event, ...] = ()

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TxStatus:
        receipt = data.get("receipt") or {}
        return cls(bytes.fromhex(data["tx_id"]), data["status"], data.get("height"), data.get("index"),
                   data.get("log_index"), receipt.get("code", ""),
                   tuple(Event(e["name"], e["data"]) for e in receipt.get("events", ())))


@dataclass(frozen=True, slots=True)
class AccountInfo:
    name: str
    height: int
    nonce: int
    next_nonce: int
    balances: dict[str, int]
    """Minor units per currency (currencies with a zero balance are absent)."""
    display: dict[str, str]
    """The same, written as people read them ("1,234.56 CNY")."""
    proof: AccountProof | None = field(default=None, compare=False)


class Client:
    """A connection-reusing client for one or more nodes of one chain (failover in order)."""

    def __init__(self, urls: str | Sequence[str], *, member: str | None = None, key: PrivateKey | None = None,
                 timeout_s: float = 10.0, retries: int = 3, backoff_s: float = 0.2,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("at least one node URL")
        self.member = member
        self.key = key
        self.retries = retries
        self.backoff_s = backoff_s
        self._http = httpx.Client(timeout=timeout_s, transport=transport)
        self._preferred = 0
        self._chain_id: str | None = None
        self._next_nonce: int | None = None

    @classmethod
    def from_devnet(cls, directory: str | Path, member: str | None = None, **options: Any) -> Client:
        """A client of a local devnet's nodes, signing as ``member`` with the key in DIR/keys/."""
        from ledger.keyfile import load_key  # noqa: PLC0415
        from node.devnet import load_devnet  # noqa: PLC0415

        directory = Path(directory)
        urls = [node.api for node in load_devnet(directory)]
        key = load_key(directory / "keys" / f"{member}.json")[1] if member else None
        return cls(urls, member=member, key=key, **options)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- transport: failover, retries, signed reads ---

    def _send(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, content: bytes = b"",
              headers: Mapping[str, str] | None = None, signed: bool = False, raw: bool = False) -> Any:
        """The decoded JSON answer (``raw``: the body's bytes); retried on other nodes and with backoff when a
        node is down or shedding."""
        last: ApiError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1) * (0.5 + random.random()))  # noqa: S311 (jitter)
            for offset in range(len(self.urls)):
                index = (self._preferred + offset) % len(self.urls)
                request = self._http.build_request(method, self.urls[index] + path, params=params, content=content,
                                                   headers=headers)
                if signed:
                    request.headers.update(self._read_headers(method, request.url.raw_path, content))
                try:
                    response = self._http.send(request, stream=True)
                    try:
                        body = _read_capped(response, ANSWER_BYTES_MAX)
                    finally:
                        response.close()
                except httpx.TransportError as error:  # down or timed out: the next node
                    last = ApiError("unavailable", f"{self.urls[index]}: {type(error).__name__} {error}")
                    continue
                if response.status_code in RETRY_STATUSES:
                    last = ApiError.from_response(response, body)
                    continue
                self._preferred = index
                if response.status_code >= 400:
                    raise ApiError.from_response(response, body)
                return body if raw else json.loads(body)
        assert last is not None
        raise last

    def _read_headers(self, method: str, target: bytes, body: bytes) -> dict[str, str]:
        if self.member is None or self.key is None:
            raise ApiError("unauthenticated", "this read needs a member and a key: Client(url, member=..., key=...)")
        return sign_read_request(self.key, self.member, self.chain_id, method, target, body, time.time_ns() // 10**6)

    @property
    def chain_id(self) -> str:
        if self._chain_id is None:
            self._chain_id = str(self.status()["chain_id"])
        return self._chain_id

    # --- public reads ---

    def status(self) -> dict[str, Any]:
        return self._send("GET", "/v1/status")  # type: ignore[no-any-return]

    # --- submission ---

    def submit(self, transaction: SignedTransaction) -> Submitted:
        data = self._send("POST", "/v1/transactions", content=transaction.encode(), headers={"content-type": MSGPACK})
        return Submitted(bytes.fromhex(data["tx_id"]), data["outcome"])

    def submit_batch(self, transactions: Sequence[SignedTransaction]) -> list[Submitted | ApiError]:
        """Per-item results in order: ``Submitted`` or the ``ApiError`` the node gave that item."""
        body = enc.encode_array_of_encoded([enc.encode(signed.encode()) for signed in transactions])
        data = self._send("POST", "/v1/transactions/batch", content=body, headers={"content-type": MSGPACK})
        return [ApiError(r["error"]["code"], r["error"]["detail"], r["error"]["status"]) if "error" in r
                else Submitted(bytes.fromhex(r["tx_id"]), r["outcome"]) for r in data["results"]]

    def sign(self, contract: str, method: str, args: dict[str, Any], *, nonce: int | None = None,
             expiry_height: int = 0) -> SignedTransaction:
        """A transaction from this client's member, with its next nonce (asked once, then counted here)."""
        if self.member is None or self.key is None:
            raise ApiError("unauthenticated", "signing needs a member and a key: Client(url, member=..., key=...)")
        if nonce is None:
            if self._next_nonce is None:
                self._next_nonce = self.get_account(self.member).next_nonce
            nonce = self._next_nonce
        self._next_nonce = nonce + 1
        return Transaction(self.member, nonce, contract, method, args, expiry_height).sign(self.key, self.chain_id)

    def call(self, contract: str, method: str, args: dict[str, Any], *, wait: bool = False,
             timeout_s: float = 30.0) -> TxStatus:
        """Sign, submit and (``wait``) return once committed; a refused submission raises ``ApiError``."""
        signed = self.sign(contract, method, args)
        try:
            submitted = self.submit(signed)
        except ApiError:
            self._next_nonce = None  # the nonce was not taken: ask the node again next time
            raise
        if wait:
            return self.wait_for(submitted.tx_id, timeout_s)
        return TxStatus(submitted.tx_id, "committed" if submitted.outcome == "committed" else "pending")

    def transfer(self, to: str, amount_minor: int, currency: str, **options: Any) -> TxStatus:
        return self.call("accounts", "transfer", {"to": to, "amount_minor": amount_minor, "currency": currency},
                         **options)

    def issue(self, to: str, amount_minor: int, currency: str, **options: Any) -> TxStatus:
        return self.call("accounts", "issue", {"to": to, "amount_minor": amount_minor, "currency": currency},
                         **options)

    def redeem(self, amount_minor: int, currency: str, **options: Any) -> TxStatus:
        return self.call("accounts", "redeem", {"amount_minor": amount_minor, "currency": currency}, **options)

    # --- signed reads ---

    def get_transaction(self, tx_id: bytes, wait_ms: int = 0) -> TxStatus:
        return TxStatus.from_json(self._send("GET", f"/v1/transactions/{tx_id.hex()}",
                                             params={"wait_ms": wait_ms} if wait_ms else None, signed=True))

    def wait_for(self, tx_id: bytes, timeout_s: float = 30.0) -> TxStatus:
        """Long-poll until the transaction is committed or failed, or ``timeout_s`` passes (then its status)."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            status = self.get_transaction(tx_id, wait_ms=max(0, min(remaining_ms, WAIT_CHUNK_MS)))
            if status.is_final or remaining_ms <= 0:
                return status
            if status.status == "unknown":  # not (yet) at this node: gossip is a few ms behind
                time.sleep(0.05)

    def get_account(self, name: str, *, proof: bool = False) -> AccountInfo:
        data = self._send("GET", f"/v1/accounts/{name}", params={"proof": "true"} if proof else None, signed=True)
        account_proof = None
        if "proof" in data:
            raw = data["proof"]
            account_proof = AccountProof(name, None if raw["value"] is None else bytes.fromhex(raw["value"]),
                                         bytes.fromhex(raw["state_proof"]), _certified(raw))
        return AccountInfo(data["name"], data["height"], data["nonce"], data["next_nonce"],
                           {b["currency"]: b["amount_minor"] for b in data["balances"]},
                           {b["currency"]: b["amount"] for b in data["balances"]}, account_proof)

    def get_tx_proof(self, tx_id: bytes) -> TxInclusion:
        """The inclusion proof; check it with ``.verify(chain_id, validator_set)`` (trusting only the genesis)."""
        data = self._send("GET", f"/v1/transactions/{tx_id.hex()}/proof", signed=True)
        return TxInclusion(bytes.fromhex(data["tx_id"]), data["log_index"],
                           tuple(bytes.fromhex(h) for h in data["path"]), _certified(data))

    def get_block(self, height: int | str = "latest") -> dict[str, Any]:
        return self._send("GET", f"/v1/blocks/{height}", signed=True)  # type: ignore[no-any-return]

    def get_blocks(self, from_height: int, limit: int = 100) -> list[dict[str, Any]]:
        return self._send("GET", "/v1/blocks", params={"from": from_height, "limit": limit},  # type: ignore[no-any-return]
                          signed=True)

    def get_raw_blocks(self, from_height: int, limit: int = 1_000) -> list[list[Any]]:
        """Blocks as stored (auditors and regulators): ``[[height, header, transactions, certificate,
        [receipt, ...]], ...]``, every bytes field exactly as hashed and signed."""
        data = self._send("GET", "/v1/blocks/raw", params={"from": from_height, "limit": limit}, signed=True, raw=True)
        blocks = enc.decode(data, max_bytes=ANSWER_BYTES_MAX)
        if type(blocks) is not list:
            raise EncodingError("wrong_type", "the raw blocks answer is not an array")
        return blocks

    def get_consistency(self, size_from: int, size_to: int | None = None) -> dict[str, Any]:
        params = {"from": size_from} | ({"to": size_to} if size_to is not None else {})
        return self._send("GET", "/v1/log/consistency", params=params, signed=True)  # type: ignore[no-any-return]

    def get_evidence(self) -> list[dict[str, Any]]:
        return self._send("GET", "/v1/evidence", signed=True)  # type: ignore[no-any-return]


def _read_capped(response: httpx.Response, limit: int) -> bytes:
    """The body, refused past ``limit`` bytes: a node cannot make its client hold more than that."""
    chunks = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise ApiError("too_large", f"the answer exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _certified(data: Mapping[str, Any]) -> CertifiedHeader:
    return CertifiedHeader(bytes.fromhex(data["header_bytes"]), bytes.fromhex(data["certificate_bytes"]))


__all__ = ["AccountInfo", "ApiError", "Client", "Event", "Submitted", "TxStatus"]
