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

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ledger import encoding as enc
from ledger.errors import ERROR_CODES, EncodingError, LedgerError
from ledger.transaction import TX_BYTES_MAX

if TYPE_CHECKING:
    from node.service import Node

BODY_BYTES_MAX = 8 * 1024 * 1024
BATCH_TXS_MAX = 5_000
assert BATCH_TXS_MAX * 1024 <= BODY_BYTES_MAX  # a batch of typical transactions fits one body
assert TX_BYTES_MAX <= BODY_BYTES_MAX
MSGPACK = "application/msgpack"

STATUS_BY_CODE: dict[str, int] = {
    "malformed_encoding": 400, "non_canonical_encoding": 400, "wrong_type": 400, "invalid_name": 400,
    "wrong_chain": 400, "too_large": 413, "invalid_signature": 401, "invalid_public_key": 400,
    "unknown_sender": 403, "nonce_already_used": 409, "nonce_already_pending": 409, "bad_nonce": 409,
    "nonce_too_far_ahead": 409, "mempool_full": 503, "not_found": 404, "expired": 422,
    "invalid_argument": 400, "store_corrupt": 500,
}
for _code in STATUS_BY_CODE:
    assert _code in ERROR_CODES, _code


def problem(code: str, detail: str, status: int | None = None) -> JSONResponse:
    status = status or STATUS_BY_CODE.get(code, 422)
    headers = {"Retry-After": "1"} if status == 503 else None
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
        hexes = data["transactions"] if batch else [data["transaction"]]
        if not isinstance(hexes, list):
            raise TypeError("transactions must be a list")
        return [bytes.fromhex(item) for item in hexes]
    except (ValueError, KeyError, TypeError):
        shape = '{"transactions": ["<hex>", ...]}' if batch else '{"transaction": "<hex>"}'
        raise EncodingError("malformed_encoding", f"expected a JSON body {shape} of canonical transaction bytes, "
                            f"or Content-Type: {MSGPACK}") from None


def create_app(node: Node) -> FastAPI:
    app = FastAPI(title="Settlement ledger node", version="0.1.0",
                  description="Submit signed transactions and read blocks, receipts and status.")

    @app.exception_handler(LedgerError)
    async def ledger_error(_request: Request, error: LedgerError) -> JSONResponse:
        return problem(error.code, error.detail)

    @app.exception_handler(RequestValidationError)
    async def invalid_parameter(_request: Request, error: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{'.'.join(str(part) for part in item.get('loc', ()))}: {item.get('msg', '')}"
                          for item in error.errors())
        return problem("invalid_argument", where or "invalid request parameter")

    @app.post("/v1/transactions", status_code=202)
    async def submit(request: Request) -> Any:
        items = _parse_transactions(request, await read_body(request), batch=False)
        result = (await node.submit_transactions(items))[0]
        if isinstance(result, LedgerError):
            raise result
        return {"tx_id": result.tx_id.hex(), "outcome": result.outcome}

    @app.post("/v1/transactions/batch")
    async def submit_batch(request: Request) -> Any:
        items = _parse_transactions(request, await read_body(request), batch=True)
        if len(items) > BATCH_TXS_MAX:
            raise EncodingError("too_large", f"at most {BATCH_TXS_MAX} transactions per batch")
        results = await node.submit_transactions(items)
        return {"results": [
            {"error": {"code": r.code, "detail": r.detail, "status": STATUS_BY_CODE.get(r.code, 422)}}
            if isinstance(r, LedgerError) else {"tx_id": r.tx_id.hex(), "outcome": r.outcome}
            for r in results]}

    @app.get("/v1/transactions/{tx_id}")
    async def get_transaction(tx_id: str, wait_ms: int = 0) -> Any:
        return await node.get_transaction_status(_parse_id(tx_id), min(max(wait_ms, 0), 30_000))

    @app.get("/v1/accounts/{name}/nonce")
    async def account_nonce(name: str) -> Any:
        # Public: a nonce reveals no balance. Balances need signed reads (participants' issue).
        return {"name": name, "nonce": node.get_account_nonce(name)}

    @app.get("/v1/status")
    async def status() -> Any:
        return node.get_status()

    @app.get("/v1/blocks/latest")
    async def latest_block() -> Any:
        return node.get_block_json(node.store.head_height)

    @app.get("/v1/blocks/{height}")
    async def block(height: int) -> Any:
        return node.get_block_json(height)

    @app.get("/v1/blocks")
    async def blocks(from_height: int = Query(1, alias="from", ge=1), limit: int = Query(10, ge=1, le=100)) -> Any:
        return [node.get_block_json(h) for h in range(max(from_height, 1),
                min(from_height + min(max(limit, 0), 100), node.store.head_height + 1))]

    @app.get("/v1/evidence")
    async def evidence() -> Any:
        return node.get_evidence_json()

    @app.get("/metrics")
    async def metrics() -> Response:
        return PlainTextResponse(node.get_metrics_text(), media_type="text/plain; version=0.0.4")

    return app


def _parse_id(text: str) -> bytes:
    try:
        tx_id = bytes.fromhex(text)
    except ValueError:
        raise LedgerError("invalid_argument", "a transaction id is 64 hex digits") from None
    if len(tx_id) != 32:
        raise LedgerError("invalid_argument", "a transaction id is 64 hex digits")
    return tx_id
