"""The node's HTTP API (FastAPI), served by uvicorn inside the node's event loop.

Route functions parse the request, call one method of the node, and return;
every ``LedgerError`` becomes an RFC 9457 ``application/problem+json``
answer in ONE handler, with the status from ``STATUS_BY_CODE``.

Bodies: a transaction is its canonical bytes. With ``Content-Type:
application/msgpack`` the body IS those bytes (a batch: a msgpack array of
bin); with JSON, ``{"transaction": "<hex>"}`` (a batch:
``{"transactions": ["<hex>", ...]}``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger import encoding as enc
from ledger.errors import ERROR_CODES, EncodingError, LedgerError
from ledger.names import check_member_name
from ledger.read_request import TARGET_BYTES_MAX
from ledger.transaction import TX_BYTES_MAX
from node.read_auth import Reader

if TYPE_CHECKING:
    from node.service import Node

BODY_BYTES_MAX = 8 * 1024 * 1024
BATCH_TXS_MAX = 5_000
assert BATCH_TXS_MAX * 1024 <= BODY_BYTES_MAX  # a batch of typical transactions fits one body
assert TX_BYTES_MAX <= BODY_BYTES_MAX
MSGPACK = "application/msgpack"
WAIT_MS_MAX = 30_000
RAW_BLOCKS_PER_RESPONSE_MAX = 1_000
RAW_BLOCKS_BYTES_MAX = 4 * 1024 * 1024
"""An export answer stays small enough not to hold the event loop for long (tens of ms)."""
API_DESCRIPTION = """Submit signed transactions; read receipts, balances, blocks and proofs.

Errors are RFC 9457 `application/problem+json` with a stable `code`.
Reads other than `/v1/status` and `/metrics` are signed by a member
(headers `x-ledger-member`, `x-ledger-timestamp`, `x-ledger-nonce`,
`x-ledger-signature`; docs/SECURITY.md). Submissions need no such
headers: the transaction is itself signed by its sender."""
PROBLEM_SCHEMA = {
    "type": "object", "required": ["type", "title", "status", "detail", "code"],
    "properties": {"type": {"type": "string", "example": "urn:ledger:error:bad_nonce"},
                   "title": {"type": "string"}, "status": {"type": "integer"},
                   "detail": {"type": "string"}, "code": {"type": "string", "example": "bad_nonce"}}}

STATUS_BY_CODE: dict[str, int] = {
    "malformed_encoding": 400, "non_canonical_encoding": 400, "wrong_type": 400, "invalid_name": 400,
    "wrong_chain": 400, "too_large": 413, "invalid_signature": 401, "invalid_public_key": 400,
    "unknown_sender": 403, "nonce_already_used": 409, "nonce_already_pending": 409, "bad_nonce": 409,
    "nonce_too_far_ahead": 409, "mempool_full": 503, "not_found": 404, "expired": 422,
    "invalid_argument": 400, "store_corrupt": 500,
    "method_not_allowed": 405, "unauthenticated": 401, "stale_request": 401, "replayed_request": 401, "forbidden": 403,
    "too_many_requests": 429, "unknown_method": 400, "invalid_amount": 422, "amount_too_large": 422,
    "unknown_currency": 422, "unknown_account": 422,
}
for _code in STATUS_BY_CODE:
    assert _code in ERROR_CODES, _code


def problem(code: str, detail: str, status: int | None = None) -> JSONResponse:
    status = status or STATUS_BY_CODE.get(code, 422)
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    return JSONResponse(
        {"type": f"urn:ledger:error:{code}", "title": ERROR_CODES.get(code, code), "status": status,
         "detail": detail, "code": code},
        status_code=status, media_type="application/problem+json", headers=headers)


async def read_body(request: Request) -> bytes:
    """The body, refused early if it is larger than the limit."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > BODY_BYTES_MAX:
        raise EncodingError("too_large", f"body over {BODY_BYTES_MAX} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > BODY_BYTES_MAX:
            raise EncodingError("too_large", f"body over {BODY_BYTES_MAX} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_transactions(request: Request, body: bytes, batch: bool) -> list[bytes]:
    if request.headers.get("content-type", "").split(";")[0].strip() == MSGPACK:
        if not batch:
            return [body]
        items = enc.decode(body)
        if type(items) is not list or not all(type(item) is bytes for item in items):
            raise EncodingError("wrong_type", "a batch is a msgpack array of byte strings")
        return items
    try:
        data = json.loads(body)
        if not isinstance(data, dict) or len(data) != 1:  # the one documented key, nothing else
            raise TypeError("expected an object with one key")
        hexes = data["transactions"] if batch else [data["transaction"]]
        if not isinstance(hexes, list):
            raise TypeError("transactions must be a list")
        return [_canonical_hex(item) for item in hexes]
    except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: JSON nested too deep to parse
        shape = '{"transactions": ["<hex>", ...]}' if batch else '{"transaction": "<hex>"}'
        raise EncodingError("malformed_encoding", f"expected a JSON body {shape} of canonical transaction bytes, "
                            f"or Content-Type: {MSGPACK}") from None


async def authenticate(node: Node, request: Request) -> Reader:
    """The member who signed this read (``ledger.read_request``); 401 when anonymous or wrong."""
    target = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string") or b""
    if query:
        target = target + b"?" + query
    if len(target) > TARGET_BYTES_MAX:
        raise EncodingError("too_large", f"request target over {TARGET_BYTES_MAX} bytes")
    return node.read_auth.authenticate(request.headers, request.method, target, b"")


_PROBLEM: dict[str, Any] = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
_SIGNED_READ: dict[str, Any] = {"security": [{"memberSignature": []}]}


def _responses(*statuses: int, example: Any = None, ok: int = 200) -> dict[int | str, dict[str, Any]]:
    """The documented answers of one route: its success example and its problem+json errors."""
    described = {400: "malformed request", 401: "unsigned, stale, replayed or badly signed read",
                 403: "signer may not read this", 404: "unknown id", 409: "stale or reused nonce",
                 413: "too large", 422: "rule violated", 429: "shedding signed reads", 503: "mempool full"}
    answers: dict[int | str, dict[str, Any]] = {
        status: {"description": described[status], "content": _PROBLEM} for status in statuses}
    if example is not None:
        answers[ok] = {"description": "success", "content": {"application/json": {"example": example}}}
    return answers


_TX_ID = "43e6443aee82b8dfd14c7a6c328aa8a3534c6bf4044b93e6d5bd8707533dfeaf"
_EXAMPLE_SUBMITTED = {"tx_id": _TX_ID, "outcome": "admitted"}
_EXAMPLE_BATCH = {"results": [_EXAMPLE_SUBMITTED, {"error": {"code": "unknown_currency", "detail": "currency 'CNX'",
                                                             "status": 422}}]}
_EXAMPLE_TX = {"tx_id": _TX_ID, "status": "committed", "height": 5, "index": 0, "log_index": 1,
               "receipt": {"ok": True, "code": "", "events": [
                   {"name": "transferred", "data": {"amount_minor": 1234, "currency": "CNY", "to": "merchant-001"}}]}}
_EXAMPLE_ACCOUNT = {"name": "merchant-001", "height": 8, "nonce": 0, "next_nonce": 0,
                    "balances": [{"currency": "CNY", "amount_minor": 1234, "amount": "12.34 CNY"}]}


def _submission_body(batch: bool) -> dict[str, Any]:
    tx_hex = "93a1...(canonical signed transaction bytes, hex)"
    json_schema: dict[str, Any] = (
        {"type": "object", "required": ["transactions"], "additionalProperties": False,
         "properties": {"transactions": {"type": "array", "maxItems": BATCH_TXS_MAX,
                                         "items": {"type": "string", "pattern": "^([0-9a-f]{2})+$"}}}}
        if batch else
        {"type": "object", "required": ["transaction"], "additionalProperties": False,
         "properties": {"transaction": {"type": "string", "pattern": "^([0-9a-f]{2})+$"}}})
    example = {"transactions": [tx_hex, tx_hex]} if batch else {"transaction": tx_hex}
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": json_schema, "example": example},
        MSGPACK: {"schema": {"type": "string", "format": "binary"},
                  "description": "a msgpack array of bin (batch), or the transaction's canonical bytes"}}}}


def create_app(node: Node) -> FastAPI:
    app = FastAPI(title="Settlement ledger node", version="0.2.0", description=API_DESCRIPTION)

    @app.exception_handler(LedgerError)
    async def ledger_error(_request: Request, error: LedgerError) -> JSONResponse:
        return problem(error.code, error.detail)

    @app.exception_handler(StarletteHTTPException)
    async def routing_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        # The router's own refusals (no such path: 404, a method the path does not have: 405 with Allow)
        # are problems too, not FastAPI's default {"detail": ...}.
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "invalid_argument")
        answer = problem(code, str(error.detail), error.status_code)
        answer.headers.update(error.headers or {})
        return answer

    @app.exception_handler(RequestValidationError)
    async def invalid_parameter(_request: Request, error: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{'.'.join(str(part) for part in item.get('loc', ()))}: {item.get('msg', '')}"
                          for item in error.errors())
        return problem("invalid_argument", where or "invalid request parameter")

    @app.post("/v1/transactions", status_code=202, openapi_extra=_submission_body(batch=False),
              responses=_responses(400, 401, 403, 409, 413, 422, 503, example=_EXAMPLE_SUBMITTED, ok=202),
              summary="Submit one signed transaction (idempotent)")
    async def submit(request: Request) -> Any:
        """Admit a signed transaction. The same bytes again answer the same ``tx_id`` and are applied
        at most once, so a client may retry freely. ``outcome``: ``admitted``, ``queued`` (its nonce
        waits for an earlier one), ``duplicate`` (already pending) or ``committed``."""
        items = _parse_transactions(request, await read_body(request), batch=False)
        result = (await node.submit_transactions(items))[0]
        if isinstance(result, LedgerError):
            raise result
        return {"tx_id": result.tx_id.hex(), "outcome": result.outcome}

    @app.post("/v1/transactions/batch", openapi_extra=_submission_body(batch=True),
              responses=_responses(400, 413, example=_EXAMPLE_BATCH), summary="Submit many signed transactions; a result per item")
    async def submit_batch(request: Request) -> Any:
        """Each item's result is ``{"tx_id", "outcome"}`` or ``{"error": {"code", "detail", "status"}}``,
        in the order submitted. One bad item does not refuse the others."""
        items = _parse_transactions(request, await read_body(request), batch=True)
        if len(items) > BATCH_TXS_MAX:
            raise EncodingError("too_large", f"at most {BATCH_TXS_MAX} transactions per batch")
        results = await node.submit_transactions(items)
        return {"results": [
            {"error": {"code": r.code, "detail": r.detail, "status": STATUS_BY_CODE.get(r.code, 422)}}
            if isinstance(r, LedgerError) else {"tx_id": r.tx_id.hex(), "outcome": r.outcome}
            for r in results]}

    @app.get("/v1/transactions/{tx_id}", openapi_extra=_SIGNED_READ,
             responses=_responses(400, 401, 403, example=_EXAMPLE_TX),
             summary="A transaction's status and receipt (its parties, auditors, regulators)")
    async def get_transaction(request: Request, tx_id: str,
                              wait_ms: int = Query(0, ge=0, le=WAIT_MS_MAX,
                                                   description="long-poll: wait up to this long for a pending "
                                                               "transaction to commit")) -> Any:
        reader = await authenticate(node, request)
        return await node.get_transaction_status(_parse_id(tx_id), wait_ms, reader)

    @app.get("/v1/transactions/{tx_id}/proof", openapi_extra=_SIGNED_READ, responses=_responses(400, 401, 404),
             summary="Inclusion proof of a transaction in the log, with its block's certified header")
    async def get_transaction_proof(request: Request, tx_id: str) -> Any:
        await authenticate(node, request)
        return node.get_tx_proof_json(_parse_id(tx_id))

    @app.get("/v1/log/consistency", openapi_extra=_SIGNED_READ, responses=_responses(400, 401),
             summary="RFC 9162 consistency proof between two sizes of the transparency log")
    async def log_consistency(request: Request, size_from: int = Query(alias="from", ge=1, le=2**62),
                              size_to: int | None = Query(None, alias="to", ge=0, le=2**62)) -> Any:
        await authenticate(node, request)
        return node.get_consistency_json(size_from, size_to)

    @app.get("/v1/accounts/{name}", openapi_extra=_SIGNED_READ,
             responses=_responses(400, 401, 403, 404, example=_EXAMPLE_ACCOUNT),
             summary="Balances and next nonce (the owner, auditors, regulators)")
    async def account(request: Request, name: str,
                      proof: bool = Query(False, description="add a state proof against the certified head")) -> Any:
        reader = await authenticate(node, request)
        return node.get_account_json(check_member_name(name, "account"), reader, proof)

    @app.get("/v1/status", summary="Node, chain, height, validators, peers, consensus round (public)")
    async def status() -> Any:
        return node.get_status()

    @app.get("/v1/blocks/latest", openapi_extra=_SIGNED_READ, responses=_responses(401))
    async def latest_block(request: Request) -> Any:
        await authenticate(node, request)
        return node.get_block_json(node.store.head_height)

    @app.get("/v1/blocks/raw", openapi_extra=_SIGNED_READ, response_class=Response,
             responses={**_responses(400, 401, 403), 200: {"content": {MSGPACK: {}},
                        "description": "msgpack [[height, header, transactions, certificate, [receipt, ...]], ...]"}},
             summary="Blocks with their transactions and receipts as stored, for auditors (msgpack)")
    async def raw_blocks(request: Request, from_height: int = Query(1, alias="from", ge=1, le=2**62),
                         limit: int = Query(100, ge=1, le=RAW_BLOCKS_PER_RESPONSE_MAX)) -> Response:
        reader = await authenticate(node, request)
        return Response(node.get_raw_blocks(reader, from_height, limit), media_type=MSGPACK)

    @app.get("/v1/blocks/{height}", openapi_extra=_SIGNED_READ, responses=_responses(400, 401, 404))
    async def block(request: Request, height: int = Path(ge=0, le=2**62)) -> Any:
        await authenticate(node, request)
        return node.get_block_json(height)

    @app.get("/v1/blocks", openapi_extra=_SIGNED_READ, responses=_responses(400, 401))
    async def blocks(request: Request, from_height: int = Query(1, alias="from", ge=1, le=2**62),
                     limit: int = Query(10, ge=1, le=100)) -> Any:
        await authenticate(node, request)
        return [node.get_block_json(h) for h in range(from_height, min(from_height + limit,
                                                                       node.store.head_height + 1))]

    @app.get("/v1/evidence", openapi_extra=_SIGNED_READ, responses=_responses(401))
    async def evidence(request: Request) -> Any:
        await authenticate(node, request)
        return node.get_evidence_json()

    @app.get("/metrics", summary="Prometheus metrics (public)", response_class=PlainTextResponse)
    async def metrics() -> Response:
        return PlainTextResponse(node.get_metrics_text(), media_type="text/plain; version=0.0.4")

    def custom_openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
            components["securitySchemes"] = {"memberSignature": {
                "type": "apiKey", "in": "header", "name": "x-ledger-signature",
                "description": "with x-ledger-member, x-ledger-timestamp and x-ledger-nonce; see docs/SECURITY.md"}}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = custom_openapi  # type: ignore[method-assign]
    return app


def _canonical_hex(item: Any) -> bytes:
    """The bytes of documented hex (``^([0-9a-f]{2})+$``: lower case, no spaces, not empty); ValueError otherwise."""
    data = bytes.fromhex(item)  # TypeError for a non-string
    if not data or data.hex() != item:
        raise ValueError("transaction bytes are lower-case hex, at least one byte")
    return data


def _parse_id(text: str) -> bytes:
    try:
        tx_id = bytes.fromhex(text)
    except ValueError:
        raise LedgerError("invalid_argument", "a transaction id is 64 hex digits") from None
    if len(tx_id) != 32:
        raise LedgerError("invalid_argument", "a transaction id is 64 hex digits")
    return tx_id
