"""Every operation of the node's OpenAPI schema fuzzed with schemathesis: no 5xx, problem+json errors, no state change.

The schema is the node's own ``/openapi.json`` (checked to be the one a real
``Node`` serves), and the requests go to that node's app in process
(tests/api_harness.py: a store holding a short certified chain), through
schemathesis's own ASGI transport. Each operation is fuzzed with schema-valid
and schema-violating input (schemathesis's positive and negative generation,
its coverage phase of boundary values and unexpected methods, and the schema's
examples):

- ``test_fuzz_unsigned``: a signed read sent without credentials is refused
  with a 4xx (401, or 400 when a parameter is already wrong), never a 5xx;
- ``test_fuzz_signed_as_auditor``: every request is signed as the ``auditor``
  member just before it is sent (``ReadSigner``, over the exact path and query
  that go on the wire), so the fuzzer gets past 401 and reaches the handlers;
  values from the chain (its transaction ids, members, heights, log sizes) are
  mixed into the generated parameters, and most schema-valid submissions carry
  msgpack-shaped but forged transactions, so the handlers' deeper paths run too;
- ``test_fuzz_signed_then_tampered``: signed reads with one credential header
  replaced or dropped after signing are refused with a 4xx.

Checked on every answer: no status >= 500; the status is one the schema
documents for the operation; the media type and body match the schema; data
that violates the schema is refused; every error is ``application/problem+json``
with a ``code`` (and a ``type`` and ``status`` that agree with it). Before and
after each request, and across the whole run, the node's chain (head, log,
state root, committed transactions), its state rows and its mempool are
unchanged: no request the fuzzer makes is validly signed, so none may be admitted.

Deterministic (fixed seed, derandomized, no example database), so CI sees the
same requests on every run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import msgpack
import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.transport.serialization import Binary

from ledger import encoding as enc
from ledger.errors import LedgerError
from ledger.read_request import HEADER_MEMBER, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP
from node.api import MSGPACK, STATUS_BY_CODE, create_app
from tests.api_harness import Harness, demo_chain, open_harness

if TYPE_CHECKING:
    from node.service import Node

SEED = 20_240_405
MAX_EXAMPLES = 60
"""Examples per operation and mode in the fuzzing phase (the coverage phase adds its boundary cases)."""
SUBMISSIONS = ("/v1/transactions", "/v1/transactions/batch")
READER = "auditor"
"""A privileged member: it may read every account and receipt, so signed reads reach every handler's success path."""


@dataclass(frozen=True)
class Snapshot:
    head_height: int
    head_hash: bytes
    state_root: bytes
    log_size: int
    log_root: bytes
    committed_txs: int
    mempool_txs: int
    mempool_bytes: int


def _snapshot(harness: Harness) -> Snapshot:
    store, mempool = harness.node.store, harness.node.mempool
    return Snapshot(store.head_height, store.head_hash, store.state_root, store.log.size,
                    store.log.root_at(store.log.size), store.count_txs(), len(mempool), mempool.size_bytes)


def _state_digest(harness: Harness) -> bytes:
    """Every state row, hashed: a change the roots would miss (a row written outside the tree) still shows."""
    digest = hashlib.sha256()
    for row in harness.node.store.iter_state_rows():
        digest.update(repr(row).encode())
    return digest.digest()


class ReadSigner(requests.auth.AuthBase):
    """Signs each outgoing request as ``member`` (ledger/read_request.py), after schemathesis built it.

    A ``requests`` auth hook runs on the prepared request, so it signs the exact
    path and query that go on the wire, and replaces any ``x-ledger-*`` headers
    the fuzzer generated. Each call signs afresh (a new nonce and timestamp).
    """

    def __init__(self, harness: Harness, member: str) -> None:
        self.harness = harness
        self.member = member

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        assert request.method is not None
        request.headers.update(self.harness.sign(self.member, request.method, request.path_url.encode()))
        return request


def _schema_document() -> dict[str, Any]:
    """The node's OpenAPI document, as ``create_app`` builds it from the routes (no node is touched).

    It is needed at import, when schemathesis makes a test per operation; ``fuzz_target`` checks that the real node
    serves exactly this document at ``/openapi.json``. (Loading it from the running node instead, with
    ``schemathesis.pytest.from_fixture``, fails on pytest 9.2: schemathesis 4.32 uses ``Function._nodeid``, which
    pytest no longer has.)"""
    return create_app(cast("Node", None)).openapi()


@dataclass
class FuzzTarget:
    harness: Harness
    app: Any
    start: Snapshot
    start_digest: bytes


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    with open_harness(tmp_path_factory.mktemp("fuzz-node")) as harness:
        target = FuzzTarget(harness, create_app(harness.node), _snapshot(harness), _state_digest(harness))
        served = harness.request("GET", "/openapi.json")
        assert served.status_code == 200 and served.json() == _schema_document(), "the fuzzed schema is the served one"
        yield target
        # The whole run, every operation in both modes: the chain, the state and the mempool are as they were.
        assert _snapshot(harness) == target.start
        assert _state_digest(harness) == target.start_digest


# A single submission in msgpack is the transaction's bytes, a batch a msgpack array of bin: the schema says
# "string, format binary", so the fuzzer's raw bytes go on the wire as they are (as application/octet-stream would).
schemathesis.serializer.alias("application/msgpack", "application/octet-stream")


def _dictionaries() -> tuple[dict[str, Any], dict[str, Any]]:
    """Values the fuzzer mixes into its own for some parameters, so it reaches the handlers' deeper paths too:
    the committed transactions (receipts, inclusion proofs), the members (balances, and 404 for others), and
    log sizes and heights around the chain's (consistency proofs, blocks)."""
    network, issuance, transfers = demo_chain()
    tx_ids = [signed.tx_id.hex() for signed in (*issuance, *transfers)]
    members = sorted({*network.member_keys, *network.validator_keys})
    log_size = len(issuance) + len(transfers)
    dictionaries = {
        "tx_ids": {"values": [*tx_ids, tx_ids[0].upper(), "00" * 32]},
        "members": {"values": [*members, "nobody", "Not!A!Name"]},
        "sizes": {"values": [0, 1, 2, len(issuance), log_size - 1, log_size, log_size + 1]},
        "heights": {"values": [0, 1, 2, 3]},
    }
    parameters = {
        "path.tx_id": {"dictionary": "tx_ids", "probability": 0.5},
        "path.name": {"dictionary": "members", "probability": 0.5},
        "path.height": {"dictionary": "heights", "probability": 0.5},
        "query.from": {"dictionary": "sizes", "probability": 0.5},
        "query.to": {"dictionary": "sizes", "probability": 0.5},
    }
    return dictionaries, parameters


DICTIONARIES, PARAMETERS = _dictionaries()


def _config(*, examples: bool) -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "seed": SEED,
        "dictionaries": DICTIONARIES,
        "parameters": PARAMETERS,
        # Security parameters off: the x-ledger-* headers are written by ReadSigner (signed runs) or left out
        # (unsigned run), not generated, so that a signed read is never a "schema-violating" one the node accepts.
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none",
                       "with-security-parameters": False},
        "phases": {"examples": {"enabled": examples}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True},
                   "stateful": {"enabled": False}},
        # 413 is how the node refuses a body or batch over its limits (e.g. more than maxItems transactions).
        "checks": {"negative_data_rejection": {"expected-statuses": [
            "400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]}},
    })


schema = schemathesis.openapi.from_dict(_schema_document(), config=_config(examples=True))
signed_reads = schemathesis.openapi.from_dict(_schema_document(), config=_config(examples=False)).include(
    lambda ctx: "security" in ctx.operation.definition.raw)
"""The operations that need a signed read; without the schema's examples, which ``@given`` cannot be mixed with."""


# --- submissions that get past decoding ---
# The schema only says "bytes" or "hex", so the fuzzer's own bodies stop at the decoder (400). Three in four of the
# positive submission cases instead carry msgpack-shaped signed transactions: real and made-up senders, contracts, methods,
# argument maps of any type, nonces and expiries in and out of range, a signature that is 64 random bytes (rarely
# some other length). They reach the shape checks, the contracts' argument prechecks and the mempool's signature
# check; none of them is validly signed, so none may be admitted.

_MEMBERS = sorted(DICTIONARIES["members"]["values"])
_CURRENCIES = ["CNY", "USD", "JPY", "XXX", "cny"]
_SCALARS = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
            | st.text(max_size=24) | st.binary(max_size=24) | st.sampled_from([*_CURRENCIES, *_MEMBERS]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
_AMOUNTS = st.integers(-10, 10**6) | st.sampled_from([0, 2**62, 2**63 - 1, 2**63, 2**64 - 1])
_PAYMENT_ARGS = st.fixed_dictionaries(
    {"to": st.sampled_from(_MEMBERS), "amount_minor": _AMOUNTS, "currency": st.sampled_from(_CURRENCIES)},
    optional={"memo": st.text(max_size=12), "from": st.sampled_from(_MEMBERS)})
_ANY_ARGS = st.dictionaries(st.sampled_from(["to", "from", "amount_minor", "currency", "payer", "evidence"])
                            | st.text(max_size=12), _VALUES, max_size=6)


def _wire_bytes(value: Any) -> bytes:
    """Canonical when the ledger's encoder takes the value, else whatever msgpack makes of it."""
    try:
        return enc.encode(value)
    except LedgerError:
        return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def _signed_tx(sender: Any, nonce: Any, contract: Any, method: Any, args: Any, expiry: Any, signature: Any) -> bytes:
    return _wire_bytes([[sender, nonce, contract, method, args, expiry], signature])


# Plausible ones (every field in range, so the contracts' prechecks and the mempool's signature check are reached)
# three times as often as anything-goes ones (names, integers, argument values and signature lengths out of range).
_PLAUSIBLE_TX = st.builds(
    _signed_tx, st.sampled_from(_MEMBERS), st.integers(0, 20), st.sampled_from(["accounts", "evidence"]),
    st.sampled_from(["issue", "transfer", "redeem", "report", "steal"]), _PAYMENT_ARGS, st.integers(0, 5),
    st.binary(min_size=64, max_size=64))
_WILD_TX = st.builds(
    _signed_tx, st.text(max_size=70) | st.sampled_from(_MEMBERS), st.integers(-(2**63), 2**64 - 1),
    st.text(max_size=34), st.text(max_size=34), _ANY_ARGS | _PAYMENT_ARGS, st.integers(0, 2**64 - 1),
    st.binary(max_size=80))
_FORGED_TX = st.integers(0, 3).flatmap(lambda pick: _WILD_TX if pick == 3 else _PLAUSIBLE_TX)


def _forged_case(case: schemathesis.Case, items: list[bytes]) -> schemathesis.Case:
    """A new case (not a generated one: schemathesis does not relabel it "negative" for its binary body)."""
    batch = case.operation.path.endswith("/batch")
    body: Any
    if case.media_type == MSGPACK:
        body = Binary(enc.encode(items) if batch else items[0])
    else:
        body = {"transactions": [item.hex() for item in items]} if batch else {"transaction": items[0].hex()}
    return case.operation.Case(headers=case.headers, body=body, media_type=case.media_type)


@schema.hook
def flatmap_case(ctx: schemathesis.HookContext, case: schemathesis.Case) -> st.SearchStrategy[schemathesis.Case]:
    positive = case.meta is not None and case.meta.generation.mode == schemathesis.GenerationMode.POSITIVE
    if not positive or ctx.operation is None or ctx.operation.path not in SUBMISSIONS:
        return st.just(case)
    forged = st.lists(_FORGED_TX, min_size=1, max_size=4).map(lambda items: _forged_case(case, items))
    return st.integers(0, 3).flatmap(lambda pick: st.just(case) if pick == 0 else forged)


def problem_json_errors(ctx: schemathesis.CheckContext, response: schemathesis.Response,
                        case: schemathesis.Case) -> bool | None:
    """Every error answer is an RFC 9457 problem with the node's stable ``code``."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/problem+json"), (
        f"{response.status_code} answered as {content_type!r}, not application/problem+json: {response.text[:200]}")
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("code"), str) and body["code"], body
    assert body["type"] == f"urn:ledger:error:{body['code']}" and body["status"] == response.status_code, body
    if body["code"] in STATUS_BY_CODE:
        assert STATUS_BY_CODE[body["code"]] == response.status_code, body
    return True


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection, problem_json_errors]


def _fuzz(target: FuzzTarget, case: schemathesis.Case, auth: requests.auth.AuthBase | None) -> schemathesis.Response:
    before = _snapshot(target.harness)
    response = case.call(app=target.app, auth=auth)
    case.validate_response(response, checks=CHECKS, transport_kwargs={"auth": auth} if auth else None)
    assert _snapshot(target.harness) == before, f"{case.method} {case.formatted_path} -> {response.status_code}"
    return response


@schema.parametrize()
def test_fuzz_unsigned(case: schemathesis.Case, fuzz_target: FuzzTarget) -> None:
    response = _fuzz(fuzz_target, case, auth=None)
    if case.operation.definition.raw.get("security"):
        assert 400 <= response.status_code < 500, "an unsigned read is refused"


@schema.parametrize()
def test_fuzz_signed_as_auditor(case: schemathesis.Case, fuzz_target: FuzzTarget) -> None:
    _fuzz(fuzz_target, case, auth=ReadSigner(fuzz_target.harness, READER))


# --- signed reads with one credential header tampered with (or dropped) after signing ---

_HEADER_TEXT = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80)
"""Header values requests will send: printable ASCII, no spaces (a value may not start with one)."""
_TAMPERINGS = st.one_of(
    st.tuples(st.just(HEADER_MEMBER), st.sampled_from(_MEMBERS) | _HEADER_TEXT),
    st.tuples(st.just(HEADER_TIMESTAMP), st.builds(str, st.integers(-(2**64), 2**64)) | _HEADER_TEXT),
    st.tuples(st.just(HEADER_NONCE), st.binary(min_size=16, max_size=16).map(bytes.hex) | _HEADER_TEXT),
    st.tuples(st.just(HEADER_SIGNATURE), st.binary(min_size=64, max_size=64).map(bytes.hex) | _HEADER_TEXT),
    st.tuples(st.sampled_from([HEADER_MEMBER, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE]), st.none()),
)


class TamperingSigner(ReadSigner):
    """Signs like ``ReadSigner``, then replaces one credential header with ``value`` (None: drops it)."""

    def __init__(self, harness: Harness, member: str, header: str, value: str | None) -> None:
        super().__init__(harness, member)
        self.header = header
        self.value = value
        self.tampered = False

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        super().__call__(request)
        original = request.headers.get(self.header)
        if self.value is None:
            del request.headers[self.header]
        else:
            request.headers[self.header] = self.value
        self.tampered = self.value != original
        return request


@signed_reads.parametrize()
@signed_reads.given(tampering=_TAMPERINGS)
def test_fuzz_signed_then_tampered(case: schemathesis.Case, tampering: tuple[str, str | None],
                                   fuzz_target: FuzzTarget) -> None:
    signer = TamperingSigner(fuzz_target.harness, READER, *tampering)
    response = _fuzz(fuzz_target, case, auth=signer)
    if signer.tampered:
        assert 400 <= response.status_code < 500, "a read whose credentials were altered after signing is refused"
