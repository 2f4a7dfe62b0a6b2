"""A real ``Node`` in process, on a store holding a short certified chain, for the HTTP API tests.

Shared by tests/test_api.py (hand-written requests) and tests/test_api_fuzz.py
(schemathesis). The store holds two certified blocks: the demo issuance, then
``CHAIN_TRANSFERS`` transfers, so reads see committed balances and receipts;
submissions go through the real admission path. No sockets: requests go
straight to the ASGI app.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ledger.keys import PrivateKey
from ledger.read_request import sign_read_request
from ledger.store import Store
from ledger.transaction import SignedTransaction, Transaction
from node.api import create_app
from node.config import NodeConfig
from node.devchain import DemoLoad, DemoNetwork, append_certified_block, make_demo_network
from node.service import Node

CHAIN_TRANSFERS = 12


@dataclass
class Harness:
    node: Node
    network: DemoNetwork
    transfers: list[SignedTransaction]
    loop: asyncio.AbstractEventLoop

    @property
    def chain_id(self) -> str:
        return str(self.network.genesis.chain_id)

    def key(self, member: str) -> PrivateKey:
        keys = {**self.network.member_keys, **self.network.validator_keys}
        return keys[member]  # type: ignore[no-any-return]

    def request(self, method: str, path: str, *, member: str | None = None, key: PrivateKey | None = None,
                content: bytes = b"", headers: dict[str, str] | None = None,
                timestamp_ms: int | None = None, signed_headers: dict[str, str] | None = None) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=create_app(self.node))  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
                request = client.build_request(method, path, content=content, headers=headers)
                if signed_headers is not None:
                    request.headers.update(signed_headers)
                elif member is not None:
                    request.headers.update(self.sign(member, method, request.url.raw_path, key, timestamp_ms))
                return await client.send(request)

        return self.loop.run_until_complete(send())

    def sign(self, member: str, method: str, target: bytes, key: PrivateKey | None = None,
             timestamp_ms: int | None = None) -> dict[str, str]:
        now = time.time_ns() // 1_000_000 if timestamp_ms is None else timestamp_ms
        return sign_read_request(key or self.key(member), member, self.chain_id, method, target, b"", now)

    def submit(self, signed: SignedTransaction | bytes) -> httpx.Response:
        data = signed if isinstance(signed, bytes) else signed.encode()
        return self.request("POST", "/v1/transactions", content=data, headers={"content-type": "application/msgpack"})

    def sign_tx(self, sender: str, method: str, args: dict[str, Any], *, nonce: int | None = None,
                contract: str = "accounts", chain_id: str | None = None, key: PrivateKey | None = None) -> SignedTransaction:
        if nonce is None:
            nonce = self.node.mempool.get_next_nonce(sender, self.node.store)
        body = Transaction(sender, nonce, contract, method, args, 0)
        return body.sign(key or self.key(sender), chain_id or self.chain_id)


def demo_chain() -> tuple[DemoNetwork, list[SignedTransaction], list[SignedTransaction]]:
    """The network and the two blocks' transactions (issuance, transfers): deterministic, the same on every call."""
    network = make_demo_network(["validator-0"], seed=11)
    load = DemoLoad(network, seed=2)
    return network, load.issuance(), list(load.transfers(CHAIN_TRANSFERS))


@contextmanager
def open_harness(home: Path) -> Iterator[Harness]:
    """A node named validator-0 (the only validator) in ``home``, its chain at height 2; closed on exit."""
    network, issuance, transfers = demo_chain()
    store = Store.create(home / "data", network.genesis)
    append_certified_block(store, network, issuance, network.genesis.genesis_time_ms + 1000)
    append_certified_block(store, network, transfers, network.genesis.genesis_time_ms + 2000)
    store.close()
    config = NodeConfig(home, "validator-0", "127.0.0.1", 0, "127.0.0.1", 0, ())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    node = Node(config, network.genesis, network.validator_keys["validator-0"])
    try:
        yield Harness(node, network, transfers, loop)
    finally:
        node.store.close()
        node.wal.close()
        asyncio.set_event_loop(None)
        loop.close()
