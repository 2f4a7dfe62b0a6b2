"""The HTTP API of a real ``Node`` in process (no sockets): permissions, proofs, and bad input.

The node is built on a store that already holds a short certified chain, so
reads see committed balances and receipts; submissions go through the real
admission path. Each refused request is checked for its documented status
and code, and for leaving the state and the mempool untouched.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgpack
import pytest

from ledger import encoding as enc
from ledger import merkle
from ledger.errors import LedgerError
from ledger.keys import PrivateKey
from ledger.proofs import AccountProof, CertifiedHeader, TxInclusion
from ledger.read_request import READ_SKEW_MS_MAX
from ledger.state import BALANCE_MAX
from ledger.transaction import Transaction
from node.api import BODY_BYTES_MAX
from tests.api_harness import CHAIN_TRANSFERS, Harness, open_harness


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    with open_harness(tmp_path_factory.mktemp("node")) as opened:
        yield opened


def _problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code and body["status"] == status and body["type"] == f"urn:ledger:error:{code}"
    assert body["detail"]


# --- read permissions ---


@pytest.mark.parametrize("path", ["/v1/accounts/alipay-agg", "/v1/blocks/latest", "/v1/blocks/1", "/v1/blocks?from=1",
                                  "/v1/log/consistency?from=1", "/v1/evidence", "/v1/transactions/" + "ab" * 32,
                                  "/v1/transactions/" + "ab" * 32 + "/proof"])
def test_anonymous_reads_get_401(harness: Harness, path: str) -> None:
    _problem(harness.request("GET", path), 401, "unauthenticated")


def test_status_metrics_and_docs_are_public(harness: Harness) -> None:
    status = harness.request("GET", "/v1/status").json()
    assert status["chain_id"] == harness.chain_id and status["height"] == 2
    assert {"code": "CNY", "exponent": 2} in status["currencies"]
    assert "ledger_height 2" in harness.request("GET", "/metrics").text
    schema = harness.request("GET", "/openapi.json").json()
    assert "/v1/accounts/{name}" in schema["paths"] and "memberSignature" in schema["components"]["securitySchemes"]


def test_owner_auditor_and_regulator_read_balances_others_get_403(harness: Harness) -> None:
    mine = harness.request("GET", "/v1/accounts/merchant-001", member="merchant-001")
    assert mine.status_code == 200, mine.text
    expected = sum(t.body.args["amount_minor"] for t in harness.transfers if t.body.args["to"] == "merchant-001")
    balances = {b["currency"]: b for b in mine.json()["balances"]}
    assert balances["CNY"]["amount_minor"] == expected
    assert balances["CNY"]["amount"].endswith(" CNY")
    for reader in ("auditor", "regulator"):
        assert harness.request("GET", "/v1/accounts/merchant-001", member=reader).json()["balances"] == mine.json()["balances"]
    _problem(harness.request("GET", "/v1/accounts/merchant-001", member="merchant-002"), 403, "forbidden")
    _problem(harness.request("GET", "/v1/accounts/nobody", member="auditor"), 404, "not_found")
    _problem(harness.request("GET", "/v1/accounts/Not!A!Name", member="auditor"), 400, "invalid_name")


def test_account_proof_verifies_against_the_certified_head(harness: Harness) -> None:
    data = harness.request("GET", "/v1/accounts/alipay-agg?proof=true", member="alipay-agg").json()
    proof = AccountProof("alipay-agg", bytes.fromhex(data["proof"]["value"]), bytes.fromhex(data["proof"]["state_proof"]),
                         CertifiedHeader(bytes.fromhex(data["proof"]["header_bytes"]),
                                         bytes.fromhex(data["proof"]["certificate_bytes"])))
    account = proof.verify(harness.chain_id, harness.network.genesis.validator_set)
    assert account is not None and account.nonce == data["nonce"] == CHAIN_TRANSFERS
    assert account.get_balance("CNY") == next(b["amount_minor"] for b in data["balances"] if b["currency"] == "CNY")
    forged = AccountProof("alipay-agg", account.with_balance("CNY", 1).encode(), proof.state_proof, proof.anchor)
    with pytest.raises(LedgerError):
        forged.verify(harness.chain_id, harness.network.genesis.validator_set)


def test_receipts_are_visible_to_the_parties_auditors_and_regulators_only(harness: Harness) -> None:
    transfer = next(t for t in harness.transfers if t.body.args["to"] == "merchant-001")
    path = f"/v1/transactions/{transfer.tx_id.hex()}"
    for reader in ("alipay-agg", "merchant-001", "auditor", "regulator"):
        response = harness.request("GET", path, member=reader)
        assert response.status_code == 200, (reader, response.text)
        body = response.json()
        assert body["status"] == "committed" and body["height"] == 2
        assert body["receipt"]["events"][0]["data"]["to"] == "merchant-001"
    _problem(harness.request("GET", path, member="merchant-002"), 403, "forbidden")
    unknown = harness.request("GET", "/v1/transactions/" + "00" * 32, member="merchant-002")
    assert unknown.json()["status"] == "unknown"


def test_inclusion_and_consistency_proofs_verify(harness: Harness) -> None:
    transfer = harness.transfers[5]
    data = harness.request("GET", f"/v1/transactions/{transfer.tx_id.hex()}/proof", member="merchant-002").json()
    proof = TxInclusion(transfer.tx_id, data["log_index"], tuple(bytes.fromhex(h) for h in data["path"]),
                        CertifiedHeader(bytes.fromhex(data["header_bytes"]), bytes.fromhex(data["certificate_bytes"])))
    header = proof.verify(harness.chain_id, harness.network.genesis.validator_set)
    assert header.height == 2 and data["log_index"] == 3 + 5
    wrong = TxInclusion(harness.transfers[6].tx_id, proof.log_index, proof.path, proof.anchor)
    with pytest.raises(LedgerError):
        wrong.verify(harness.chain_id, harness.network.genesis.validator_set)
    _problem(harness.request("GET", "/v1/transactions/" + "00" * 32 + "/proof", member="auditor"), 404, "not_found")

    consistency = harness.request("GET", "/v1/log/consistency?from=3", member="auditor").json()
    assert consistency["to"] == 3 + CHAIN_TRANSFERS == header.log_size
    assert consistency["to_root"] == header.log_root.hex()
    merkle.verify_consistency(3, consistency["to"], bytes.fromhex(consistency["from_root"]),
                              bytes.fromhex(consistency["to_root"]), [bytes.fromhex(h) for h in consistency["proof"]])
    _problem(harness.request("GET", "/v1/log/consistency?from=9&to=4", member="auditor"), 400, "invalid_argument")
    _problem(harness.request("GET", "/v1/log/consistency?from=1&to=999", member="auditor"), 400, "invalid_argument")


def test_blocks_are_readable_by_any_member(harness: Harness) -> None:
    block = harness.request("GET", "/v1/blocks/2", member="merchant-002").json()
    assert block["height"] == 2 and len(block["transactions"]) == CHAIN_TRANSFERS
    assert harness.request("GET", "/v1/blocks/latest", member="validator-0").json()["hash"] == block["hash"]
    _problem(harness.request("GET", "/v1/blocks/99", member="merchant-002"), 404, "not_found")


def test_signed_reads_refuse_replay_stale_clock_wrong_key_unknown_member_and_other_target(harness: Harness) -> None:
    path = "/v1/accounts/bank-cn"
    headers = harness.sign("bank-cn", "GET", path.encode())
    assert harness.request("GET", path, signed_headers=headers).status_code == 200
    _problem(harness.request("GET", path, signed_headers=headers), 401, "replayed_request")
    stale = time.time_ns() // 1_000_000 - READ_SKEW_MS_MAX - 5_000
    _problem(harness.request("GET", path, member="bank-cn", timestamp_ms=stale), 401, "stale_request")
    _problem(harness.request("GET", path, member="bank-cn", key=PrivateKey.generate()), 401, "invalid_signature")
    _problem(harness.request("GET", path, member="nobody", key=PrivateKey.generate()), 401, "unauthenticated")
    other_target = harness.sign("bank-cn", "GET", b"/v1/accounts/bank-cn?proof=true")
    _problem(harness.request("GET", path, signed_headers=other_target), 401, "invalid_signature")
    _problem(harness.request("GET", path, signed_headers={"x-ledger-member": "bank-cn", "x-ledger-nonce": "zz"}),
             401, "unauthenticated")


# --- bad input: each refused with its documented status and code, nothing changed ---


def _unchanged(harness: Harness, action: Any) -> Any:
    before = (harness.node.store.head_hash, len(harness.node.mempool), harness.node.store.log.size)
    result = action()
    assert (harness.node.store.head_hash, len(harness.node.mempool), harness.node.store.log.size) == before
    assert harness.request("GET", "/v1/status").status_code == 200, "the node keeps serving"
    return result


def test_oversize_and_malformed_bodies(harness: Harness) -> None:
    big = b"\x00" * (BODY_BYTES_MAX + 1)
    _problem(_unchanged(harness, lambda: harness.submit(big)), 413, "too_large")
    _problem(_unchanged(harness, lambda: harness.submit(b"\xc1garbage")), 400, "malformed_encoding")
    valid = harness.sign_tx("alipay-agg", "transfer", {"to": "bank-cn", "amount_minor": 1, "currency": "CNY"})
    non_canonical = b"\xdc\x00\x02" + valid.encode()[1:]  # array16 header for a 2-array
    _problem(_unchanged(harness, lambda: harness.submit(non_canonical)), 400, "non_canonical_encoding")
    _problem(_unchanged(harness, lambda: harness.request("POST", "/v1/transactions", content=b'{"transaction": 7}',
                                                         headers={"content-type": "application/json"})),
             400, "malformed_encoding")
    _problem(_unchanged(harness, lambda: harness.request("POST", "/v1/transactions/batch", content=enc.encode([1, 2]),
                                                         headers={"content-type": "application/msgpack"})),
             400, "wrong_type")


@pytest.mark.parametrize(("case", "status", "code"), [
    ("wrong_chain", 401, "invalid_signature"),
    ("bad_signature", 401, "invalid_signature"),
    ("unknown_sender", 403, "unknown_sender"),
    ("used_nonce", 409, "nonce_already_used"),
    ("unknown_contract", 400, "unknown_method"),
    ("unknown_method", 400, "unknown_method"),
    ("negative_amount", 422, "invalid_amount"),
    ("float_amount", 400, "wrong_type"),
    ("overflowing_amount", 422, "amount_too_large"),
    ("uint64_max_amount", 422, "amount_too_large"),
    ("unknown_currency", 422, "unknown_currency"),
    ("unknown_payee", 422, "unknown_account"),
])
def test_refused_transactions_get_their_documented_status(harness: Harness, case: str, status: int, code: str) -> None:
    args = {"to": "bank-cn", "amount_minor": 100, "currency": "CNY"}
    sign = harness.sign_tx
    data: bytes
    if case == "wrong_chain":
        data = sign("alipay-agg", "transfer", args, chain_id="another-chain").encode()
    elif case == "bad_signature":
        data = sign("alipay-agg", "transfer", args, key=PrivateKey.generate()).encode()
    elif case == "unknown_sender":
        data = Transaction("nobody", 0, "accounts", "transfer", args, 0).sign(PrivateKey.generate(),
                                                                               harness.chain_id).encode()
    elif case == "used_nonce":
        data = sign("alipay-agg", "transfer", args, nonce=0).encode()
    elif case == "unknown_contract":
        data = sign("alipay-agg", "transfer", args, contract="nosuch").encode()
    elif case == "unknown_method":
        data = sign("alipay-agg", "steal", args).encode()
    elif case == "negative_amount":
        data = sign("alipay-agg", "transfer", {**args, "amount_minor": -5}).encode()
    elif case == "overflowing_amount":
        data = sign("alipay-agg", "transfer", {**args, "amount_minor": BALANCE_MAX + 1}).encode()
    elif case == "float_amount":
        data = msgpack.packb([["alipay-agg", 99, "accounts", "transfer", {**args, "amount_minor": 1.5}, 0],
                              b"\x00" * 64], use_bin_type=True)
    elif case == "uint64_max_amount":
        valid = sign("alipay-agg", "transfer", {**args, "amount_minor": 2**63 - 1}).encode()
        data = valid.replace(b"\xcf\x7f\xff\xff\xff\xff\xff\xff\xff", b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff")
        assert data != valid
    elif case == "unknown_currency":
        data = sign("alipay-agg", "transfer", {**args, "currency": "CNX"}).encode()
    else:
        data = sign("alipay-agg", "transfer", {**args, "to": "nobody"}).encode()
    _problem(_unchanged(harness, lambda: harness.submit(data)), status, code)


def test_idempotent_submission_and_a_skipped_nonce_is_queued(harness: Harness) -> None:
    args = {"to": "bank-cn", "amount_minor": 100, "currency": "CNY"}
    next_nonce = harness.node.mempool.get_next_nonce("merchant-001", harness.node.store)
    first = harness.sign_tx("merchant-001", "transfer", args, nonce=next_nonce)
    answer = harness.submit(first)
    assert answer.status_code == 202 and answer.json() == {"tx_id": first.tx_id.hex(), "outcome": "admitted"}
    again = harness.submit(first)
    assert again.status_code == 202 and again.json() == {"tx_id": first.tx_id.hex(), "outcome": "duplicate"}
    conflicting = harness.sign_tx("merchant-001", "transfer", {**args, "amount_minor": 7}, nonce=next_nonce)
    _problem(harness.submit(conflicting), 409, "nonce_already_pending")
    skipped = harness.sign_tx("merchant-001", "transfer", args, nonce=next_nonce + 2)
    assert harness.submit(skipped).json()["outcome"] == "queued"
    status = harness.request("GET", f"/v1/transactions/{first.tx_id.hex()}", member="merchant-001").json()
    assert status["status"] == "pending"
    account = harness.request("GET", "/v1/accounts/merchant-001", member="merchant-001").json()
    assert account["next_nonce"] == next_nonce + 1, "the gap at next_nonce + 1 is what the sender must fill"


def test_batch_gives_per_item_results(harness: Harness) -> None:
    good = harness.sign_tx("bank-jp", "transfer", {"to": "fx-hk", "amount_minor": 5, "currency": "JPY"})
    bad = harness.sign_tx("bank-jp", "transfer", {"to": "fx-hk", "amount_minor": 5, "currency": "XXX"}, nonce=99)
    response = harness.request("POST", "/v1/transactions/batch",
                               content=enc.encode_array_of_encoded([enc.encode(good.encode()), enc.encode(bad.encode()),
                                                                    enc.encode(b"\x01")]),
                               headers={"content-type": "application/msgpack"})
    assert response.status_code == 200
    results = response.json()["results"]
    assert results[0] == {"tx_id": good.tx_id.hex(), "outcome": "admitted"}
    assert results[1]["error"]["code"] == "unknown_currency" and results[1]["error"]["status"] == 422
    assert results[2]["error"]["status"] == 400


def test_security_doc_states_the_status_of_every_code() -> None:
    from pathlib import Path

    from node.api import STATUS_BY_CODE

    doc = (Path(__file__).resolve().parent.parent / "docs" / "SECURITY.md").read_text()
    rows = {int(line.split("|")[1]): line for line in doc.splitlines() if line[:5].strip("| ").isdigit()}
    for code, status in STATUS_BY_CODE.items():
        if status >= 500 and code != "mempool_full":
            continue  # store_corrupt: the node's fault, not the caller's
        assert f"`{code}`" in rows.get(status, ""), f"{code} ({status}) is not in docs/SECURITY.md's table"


# --- regressions found by fuzzing the OpenAPI schema (tests/test_api_fuzz.py) ---


def test_router_refusals_are_problems_too(harness: Harness) -> None:
    # Was FastAPI's {"detail": "Method Not Allowed"} as application/json (the fuzzer's unexpected-method cases).
    refused = _unchanged(harness, lambda: harness.request("DELETE", "/v1/transactions"))
    _problem(refused, 405, "method_not_allowed")
    assert refused.headers["allow"] == "POST"
    _problem(harness.request("GET", "/v1/no-such-thing"), 404, "not_found")


def test_consistency_from_the_empty_log_is_a_documented_400(harness: Harness) -> None:
    # Was 422 size_out_of_range from the log (undocumented for this operation): RFC 9162 has no proof from size 0.
    _problem(harness.request("GET", "/v1/log/consistency?from=0", member="auditor"), 400, "invalid_argument")
    _problem(harness.request("GET", "/v1/log/consistency?from=0&to=3", member="auditor"), 400, "invalid_argument")


def test_metrics_are_documented_as_text(harness: Harness) -> None:
    # Was documented as application/json while the answer is Prometheus text.
    schema = harness.request("GET", "/openapi.json").json()
    assert list(schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    assert harness.request("GET", "/metrics").headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(("path", "body"), [
    # Bodies the schema rules out that were accepted: an unknown key, and hex that is not the documented
    # ^([0-9a-f]{2})+$ (empty, upper case, spaced), which reached the decoder as other bytes, or as none at all.
    ("/v1/transactions/batch", b'{"transactions": [], "x-unknown": 42}'),
    ("/v1/transactions", b'{"transaction": "00", "x-unknown": 42}'),
    ("/v1/transactions/batch", b'{"transactions": [""]}'),
    ("/v1/transactions/batch", b'{"transactions": ["AB"]}'),
    ("/v1/transactions", b'{"transaction": "ab cd"}'),
    ("/v1/transactions", b'{"transaction": ""}'),
    # Found in review of the same code, not by the fuzzer: JSON nested too deep for the parser was a 500
    # (RecursionError escaped), reachable with a body far under the size limit.
    ("/v1/transactions", b"[" * 100_000),
    ("/v1/transactions/batch", b'{"transactions": ' + b"[" * 100_000),
])
def test_json_submissions_off_the_schema_are_refused_whole(harness: Harness, path: str, body: bytes) -> None:
    refused = _unchanged(harness, lambda: harness.request("POST", path, content=body,
                                                          headers={"content-type": "application/json"}))
    _problem(refused, 400, "malformed_encoding")
