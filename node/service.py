"""A validator process: the shell around the pure consensus core.

One process, one asyncio event loop, serving the peer transport, the HTTP
API (uvicorn embedded) and the consensus timers. The core decides; this
module performs its actions:

- ``SignVote`` / ``SignProposal``: through the signer WAL (fsynced before the
  signature exists outside it), then fed back into the core;
- ``Broadcast``: to every peer through the transport;
- ``ScheduleTimeout``: ``loop.call_later``;
- ``CommitBlock``: ``LedgerApplication.commit`` (one fsynced SQLite
  transaction), then ``core.on_committed``;
- ``ReportEvidence``: kept (``GET /v1/evidence``) and logged.

Besides consensus messages, peers exchange: ``STATUS [height, head_hash]``
every second; ``TX_BATCH [tx bytes...]`` to share admitted transactions;
``BLOCK_REQUEST [from_height, count]`` and ``BLOCK_RESPONSE [[block bytes,
certificate bytes]...]`` for a node that is behind (block sync). A synced
block is checked like any other: its certificate against the validator set
in force, and its header roots against re-execution, by ``Store.append_block``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import OrderedDict, deque
from typing import Any

import uvicorn

from contracts.evidence import make_report
from contracts.runtime import ContractError, Receipt, precheck_call
from ledger import encoding as enc
from ledger.amounts import format_amount
from ledger.block import Block, CommitCertificate
from ledger.errors import ERROR_CODES, EncodingError, InvalidBlock, LedgerError
from ledger.genesis import Member
from ledger.keys import PrivateKey
from ledger.state import StateView, account_key, member_key
from ledger.store import Store
from ledger.transaction import SignedTransaction
from node.api import RAW_BLOCKS_BYTES_MAX, create_app
from node.app import LedgerApplication
from node.config import NodeConfig
from node.consensus import (
    Action,
    Broadcast,
    CommitBlock,
    ConsensusCore,
    ReportEvidence,
    ScheduleTimeout,
    SignProposal,
    SignVote,
    Timeout,
)
from node.mempool import ADMITTED, QUEUED, Admission, Mempool, MempoolError
from node.messages import (
    ENVELOPE_KIND_BLOCK_REQUEST,
    ENVELOPE_KIND_BLOCK_RESPONSE,
    ENVELOPE_KIND_PROPOSAL,
    ENVELOPE_KIND_STATUS,
    ENVELOPE_KIND_TX_BATCH,
    ENVELOPE_KIND_VOTE,
    ProposalMessage,
    SignedProposal,
    SignedVote,
    decode_consensus_message,
    decode_envelope,
    encode_consensus_message,
    encode_envelope,
)
from node.read_auth import ReadAuthenticator, Reader
from node.transport import PeerAddress, PeerNetwork
from node.wal import SIGN_STEP_BY_VOTE_KIND, SIGN_STEP_PROPOSAL, DoubleSignRefused, SignerWal

log = logging.getLogger("ledger.node")

TICK_INTERVAL_MS = 200
COMMIT_PAUSE_BUSY_MS = 20
COMMIT_PAUSE_IDLE_MS = 1000
STATUS_INTERVAL_MS = 1000
TX_GOSSIP_INTERVAL_MS = 20
TX_GOSSIP_BATCH_MAX = 2_000
SYNC_BLOCKS_PER_RESPONSE_MAX = 32
SYNC_RESPONSE_BYTES_MAX = 6 * 1024 * 1024
EVIDENCE_KEPT_MAX = 1_000
WAITERS_MAX = 100_000
RECENT_BLOCKS_CACHED = 8


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Node:
    """Everything one validator runs; ``run()`` until SIGTERM/SIGINT or ``stop()``."""

    def __init__(self, config: NodeConfig, genesis: Any, key: PrivateKey) -> None:
        self.config = config
        self.name = config.name
        self.key = key
        self.store = Store.open_or_create(config.data_dir, genesis)
        self.store.add_missing_indexes()
        self.chain_id = self.store.chain_id
        self.mempool = Mempool(self.chain_id)
        self.app = LedgerApplication(self.store, self.mempool, self.name)
        self.wal = SignerWal(config.wal_path)
        self.evidence: deque[dict[str, Any]] = deque(maxlen=EVIDENCE_KEPT_MAX)
        self.peer_heights: dict[str, int] = {}
        self._timers: dict[Timeout, asyncio.TimerHandle] = {}
        self._commit_waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self._gossip_queue: list[bytes] = []
        self._recent_blocks: OrderedDict[int, Block] = OrderedDict()
        self._sync_requested_at_ms = 0
        self._stopping = asyncio.Event()
        self._started_ms = now_ms()
        self.core = self._new_core()
        self.read_auth = ReadAuthenticator(self.chain_id, self.get_member, now_ms)
        self.transport = PeerNetwork(
            self.chain_id, self.name, key, config.listen_host, config.listen_port,
            [PeerAddress(p.name, p.host, p.port, p.public_key) for p in config.peers],
            self._on_peer_message, on_connection_change=self._on_connection_change)

    def _new_core(self) -> ConsensusCore:
        height = self.store.head_height + 1
        validator_set = self.store.get_validator_set_at(height)
        wal_state = self.wal.load()
        # The core decides per height whether we are in the set (a node may join it later).
        return ConsensusCore(
            chain_id=self.chain_id, validator_set=validator_set, height=height, application=self.app,
            validator_name=self.name, resume=wal_state.state, proof_of_lock=wal_state.proof_of_lock)

    # --- running ---

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self._stopping.set)
        await self.transport.start()
        server = uvicorn.Server(uvicorn.Config(
            create_app(self), host=self.config.api_host, port=self.config.api_port,
            log_level="warning", access_log=False, lifespan="off"))
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        api_task = asyncio.create_task(server.serve(), name="api")
        log.info("node %s: chain %s, head %d, peers on %s:%d, API on http://%s:%d", self.name, self.chain_id,
                 self.store.head_height, self.config.listen_host, self.transport.listen_port,
                 self.config.api_host, self.config.api_port)
        self._resend_wal_votes()
        self._perform(self.core.start(now_ms()))
        background = [asyncio.create_task(self._tick_loop(), name="tick"),
                      asyncio.create_task(self._status_loop(), name="status"),
                      asyncio.create_task(self._gossip_loop(), name="gossip")]
        stop_wait = asyncio.create_task(self._stopping.wait())
        done, _pending = await asyncio.wait([stop_wait, api_task, *background], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stop_wait and task.exception() is not None:
                log.error("task %s failed: %r", task.get_name(), task.exception())
        log.info("node %s stopping", self.name)
        server.should_exit = True
        for task in background:
            task.cancel()
        for handle in self._timers.values():
            handle.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(api_task, 5)
        stop_wait.cancel()
        await self.transport.stop()
        self.wal.close()
        self.store.close()
        log.info("node %s stopped cleanly at height %d", self.name, self.store.head_height)

    def stop(self) -> None:
        self._stopping.set()

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_INTERVAL_MS / 1000)
            self._perform(self.core.on_tick(now_ms()))

    async def _status_loop(self) -> None:
        while True:
            payload = enc.encode([self.store.head_height, self.store.head_hash])
            self.transport.broadcast(encode_envelope(ENVELOPE_KIND_STATUS, payload))
            await asyncio.sleep(STATUS_INTERVAL_MS / 1000)

    async def _gossip_loop(self) -> None:
        while True:
            await asyncio.sleep(TX_GOSSIP_INTERVAL_MS / 1000)
            while self._gossip_queue:
                batch, self._gossip_queue = (self._gossip_queue[:TX_GOSSIP_BATCH_MAX],
                                             self._gossip_queue[TX_GOSSIP_BATCH_MAX:])
                self.transport.broadcast(encode_envelope(ENVELOPE_KIND_TX_BATCH, enc.encode_array_of_encoded(
                    [enc.encode(item) for item in batch])))

    # --- performing the core's actions ---

    def _perform(self, actions: list[Action]) -> None:
        queue = deque(actions)
        while queue:
            action = queue.popleft()
            if isinstance(action, SignVote):
                queue.extend(self._sign_vote(action))
            elif isinstance(action, SignProposal):
                queue.extend(self._sign_proposal(action))
            elif isinstance(action, Broadcast):
                self.transport.broadcast(encode_consensus_message(action.message))
            elif isinstance(action, ScheduleTimeout):
                self._schedule(action)
            elif isinstance(action, CommitBlock):
                queue.extend(self._commit(action.block, action.certificate))
            elif isinstance(action, ReportEvidence):
                self._keep_evidence(action)
            else:
                raise AssertionError(f"unknown action {action!r}")

    def _sign_vote(self, action: SignVote) -> list[Action]:
        vote = action.vote
        sign_bytes = vote.signing_bytes(self.chain_id)
        try:
            signature = self.wal.check_and_record(vote.height, vote.round, SIGN_STEP_BY_VOTE_KIND[vote.kind],
                                                  sign_bytes, self.key.sign_raw, action.state, action.proof_of_lock)
        except DoubleSignRefused as error:
            log.warning("refused to sign %s: %s", vote, error)
            return []
        return self.core.on_vote(SignedVote(vote, signature), now_ms())

    def _sign_proposal(self, action: SignProposal) -> list[Action]:
        proposal = action.proposal
        sign_bytes = proposal.signing_bytes(self.chain_id)
        try:
            signature = self.wal.check_and_record(proposal.height, proposal.round, SIGN_STEP_PROPOSAL,
                                                  sign_bytes, self.key.sign_raw, action.state)
        except DoubleSignRefused as error:
            log.warning("refused to sign proposal %s: %s", proposal, error)
            return []
        message = ProposalMessage(SignedProposal(proposal, signature), action.block)
        return self.core.on_proposal(message, now_ms())

    def _schedule(self, action: ScheduleTimeout) -> None:
        timeout = action.timeout
        old = self._timers.pop(timeout, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[timeout] = loop.call_later(action.delay_ms / 1000, self._fire_timeout, timeout)

    def _fire_timeout(self, timeout: Timeout) -> None:
        self._timers.pop(timeout, None)
        self._perform(self.core.on_timeout(timeout, now_ms()))

    def _commit(self, block: Block, certificate: CommitCertificate) -> list[Action]:
        started = time.perf_counter()
        self.app.commit(block, certificate)
        log.info("committed height %d (%d txs, %s) in %.0f ms", block.height, len(block.transactions),
                 block.compute_hash().hex()[:12], (time.perf_counter() - started) * 1000)
        self._wake_waiters(block)
        self._timers_clear_below(block.height)
        # Tendermint's timeout_commit: a short pause gathers transactions (and late precommits);
        # an idle chain makes one empty block a second instead of spinning.
        has_proposable = bool(self.mempool.reap(self.store, 1, 2**31))  # not just stuck behind a nonce gap
        delay_ms = COMMIT_PAUSE_BUSY_MS if has_proposable else COMMIT_PAUSE_IDLE_MS
        asyncio.get_running_loop().call_later(delay_ms / 1000, self._start_next_height)
        return []

    def _start_next_height(self) -> None:
        next_height = self.store.head_height + 1
        self._perform(self.core.on_committed(self.store.head_height, self.store.get_validator_set_at(next_height),
                                             now_ms()))

    def _keep_evidence(self, action: ReportEvidence) -> None:
        first, second = action.vote_a, action.vote_b
        record = {
            "validator": first.vote.validator, "height": first.vote.height, "round": first.vote.round,
            "kind": first.vote.kind, "vote_a": first.encode().hex(), "vote_b": second.encode().hex(),
            "block_hash_a": first.vote.block_hash.hex(), "block_hash_b": second.vote.block_hash.hex(),
        }
        self.evidence.append(record)
        log.warning("EVIDENCE: %s signed two different votes at height %d round %d",
                    record["validator"], record["height"], record["round"])
        self._report_evidence_on_chain(first, second)

    def _report_evidence_on_chain(self, first: SignedVote, second: SignedVote) -> None:
        """Submit the pair in an ``evidence.report`` transaction signed with our key, so the chain records it."""
        if self.store.get(member_key(self.name)) is None:
            log.warning("cannot record evidence on chain: %s is not a member", self.name)
            return
        signed = make_report(self.name, self.key, self.mempool.get_next_nonce(self.name, self.store), self.chain_id,
                             first.vote, first.signature, second.vote, second.signature)
        result = self.mempool.admit_many([signed], self.store)[0]
        if isinstance(result, Admission):
            self._gossip_queue.append(signed.encode())
        else:
            log.warning("evidence report not admitted: %s", result)

    def _resend_wal_votes(self) -> None:
        """After a restart, re-send what we signed at the current height (identical bytes: not a double sign)."""
        for record in self.wal.load().records:
            signed = record.to_signed_vote()
            if signed is not None and signed.vote.height == self.core.height:
                self._perform(self.core.on_vote(signed, now_ms()))

    # --- peers ---

    def _on_connection_change(self, peer: str, is_connected: bool) -> None:
        if is_connected:
            payload = enc.encode([self.store.head_height, self.store.head_hash])
            self.transport.send(peer, encode_envelope(ENVELOPE_KIND_STATUS, payload))
        else:
            self.peer_heights.pop(peer, None)

    def _on_peer_message(self, peer: str, payload: bytes) -> None:
        try:
            envelope = decode_envelope(payload)
            if envelope.kind in (ENVELOPE_KIND_PROPOSAL, ENVELOPE_KIND_VOTE):
                message = decode_consensus_message(envelope)
                if isinstance(message, ProposalMessage):
                    self._perform(self.core.on_proposal(message, now_ms()))
                else:
                    self._perform(self.core.on_vote(message, now_ms()))
            elif envelope.kind == ENVELOPE_KIND_TX_BATCH:
                self._admit_from_peer(envelope.payload)
            elif envelope.kind == ENVELOPE_KIND_STATUS:
                self._on_status(peer, envelope.payload)
            elif envelope.kind == ENVELOPE_KIND_BLOCK_REQUEST:
                self._on_block_request(peer, envelope.payload)
            elif envelope.kind == ENVELOPE_KIND_BLOCK_RESPONSE:
                self._on_block_response(peer, envelope.payload)
        except LedgerError as error:
            log.warning("dropping a message from %s: %s", peer, error)

    def _admit_from_peer(self, payload: bytes) -> None:
        items = enc.decode(payload)
        if type(items) is not list or not all(type(item) is bytes for item in items):
            raise EncodingError("wrong_type", "a tx batch is an array of byte strings")
        self._admit(items, gossip=False)  # peers are a full mesh: the sender already told everyone

    def _on_status(self, peer: str, payload: bytes) -> None:
        status = enc.decode(payload)
        if type(status) is not list or len(status) != 2 or type(status[0]) is not int:
            raise EncodingError("wrong_type", "status is [height, head_hash]")
        self.peer_heights[peer] = status[0]
        self._maybe_sync(peer)

    def _maybe_sync(self, peer: str) -> None:
        """Ask a peer that is ahead for the blocks we lack (at most one request in flight per second)."""
        peer_height = self.peer_heights.get(peer, 0)
        if peer_height <= self.store.head_height:
            return
        current = now_ms()
        if current - self._sync_requested_at_ms < STATUS_INTERVAL_MS:
            return
        self._sync_requested_at_ms = current
        request = enc.encode([self.store.head_height + 1, SYNC_BLOCKS_PER_RESPONSE_MAX])
        self.transport.send(peer, encode_envelope(ENVELOPE_KIND_BLOCK_REQUEST, request))

    def _on_block_request(self, peer: str, payload: bytes) -> None:
        request = enc.decode(payload)
        if type(request) is not list or len(request) != 2 or not all(type(x) is int for x in request):
            raise EncodingError("wrong_type", "a block request is [from_height, count]")
        start, count = request[0], min(max(request[1], 0), SYNC_BLOCKS_PER_RESPONSE_MAX)
        items: list[bytes] = []
        total = 0
        for height in range(max(start, 1), min(start + count, self.store.head_height + 1)):
            row = self.store.get_raw_block_row(height)
            assert row is not None
            _hash, header, transactions, certificate = row
            block_bytes = enc.encode_array_of_encoded([header, transactions])
            item = enc.encode([block_bytes, certificate])
            if items and total + len(item) > SYNC_RESPONSE_BYTES_MAX:
                break
            items.append(item)
            total += len(item)
        if items:
            self.transport.send(peer, encode_envelope(ENVELOPE_KIND_BLOCK_RESPONSE, enc.encode_array_of_encoded(items)))

    def _on_block_response(self, peer: str, payload: bytes) -> None:
        items = enc.decode(payload, max_bytes=SYNC_RESPONSE_BYTES_MAX + enc.MESSAGE_BYTES_MAX)
        if type(items) is not list:
            raise EncodingError("wrong_type", "a block response is an array")
        applied = 0
        for item in items:
            if type(item) is not list or len(item) != 2 or not all(type(x) is bytes for x in item):
                raise EncodingError("wrong_type", "a synced block is [block bytes, certificate bytes]")
            block = Block.decode(item[0])
            certificate = CommitCertificate.decode(item[1])
            if block.height != self.store.head_height + 1:
                continue  # already have it (consensus got there first) or a gap: ask again later
            try:
                self.app.commit(block, certificate)  # checks the certificate and re-executes
            except InvalidBlock as error:
                log.warning("peer %s sent an invalid block %d: %s", peer, block.height, error)
                return
            self._wake_waiters(block)
            applied += 1
        if applied:
            log.info("synced %d blocks from %s, head %d", applied, peer, self.store.head_height)
            self._timers_clear_below(self.store.head_height)
            self._start_next_height()
            self._sync_requested_at_ms = 0
            self._maybe_sync(peer)

    def _timers_clear_below(self, height: int) -> None:
        for timeout in [t for t in self._timers if t.height <= height]:
            self._timers.pop(timeout).cancel()

    # --- the API's calls ---

    async def submit_transactions(self, items: list[bytes]) -> list[Admission | LedgerError]:
        """Decode, dedupe against the chain, admit to the mempool, queue for gossip; per-item results."""
        return self._admit(items, gossip=True)

    def _admit(self, items: list[bytes], gossip: bool) -> list[Admission | LedgerError]:
        results: list[Admission | LedgerError | None] = [None] * len(items)
        fresh: list[tuple[int, SignedTransaction]] = []
        view = StateView(self.store)
        for index, data in enumerate(items):
            try:
                signed = SignedTransaction.decode(data)
            except LedgerError as error:
                results[index] = error
                continue
            if self.store.get_tx_location(signed.tx_id) is not None:
                results[index] = Admission(signed.tx_id, "committed")
                continue
            try:
                precheck_call(view, signed)
            except ContractError as error:
                known = error.code in ERROR_CODES
                detail = error.detail if error.detail != error.code else ""
                results[index] = LedgerError(error.code if known else "invalid_argument",
                                             detail if known else f"{error.code}: {detail}")
                continue
            fresh.append((index, signed))
        admitted = self.mempool.admit_many([signed for _index, signed in fresh], self.store)
        for (index, signed), result in zip(fresh, admitted):
            results[index] = result
            if gossip and isinstance(result, Admission) and result.outcome in (ADMITTED, QUEUED):
                self._gossip_queue.append(signed.encode())
        assert all(result is not None for result in results)
        return results  # type: ignore[return-value]

    async def get_transaction_status(self, tx_id: bytes, wait_ms: int, reader: Reader) -> dict[str, Any]:
        """Status and receipt; waits up to ``wait_ms`` for a pending one to commit (long-poll)."""
        location = self.store.get_tx_location(tx_id)
        if location is None and wait_ms > 0 and self.mempool.contains(tx_id):
            self._check_may_read_tx(reader, self.mempool.get(tx_id))
            waiters = self._commit_waiters.setdefault(tx_id, [])
            if sum(map(len, self._commit_waiters.values())) < WAITERS_MAX:
                future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                waiters.append(future)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(future, wait_ms / 1000)
            location = self.store.get_tx_location(tx_id)
        if location is not None:
            self._check_may_read_tx(reader, self._get_block(location.height).transactions[location.index])
            receipt = Receipt.decode(location.receipt)
            return {"tx_id": tx_id.hex(), "status": "committed" if receipt.is_ok else "failed",
                    "height": location.height, "index": location.index, "log_index": location.log_index,
                    "receipt": {"ok": receipt.is_ok, "code": receipt.code,
                                "events": [{"name": e.name, "data": _jsonable(e.data)} for e in receipt.events]}}
        pending = self.mempool.get(tx_id)
        if pending is not None:
            self._check_may_read_tx(reader, pending)
            return {"tx_id": tx_id.hex(), "status": "pending"}
        return {"tx_id": tx_id.hex(), "status": "unknown"}

    def _get_block(self, height: int) -> Block:
        """A committed block, decoded once for the reads that follow a commit (a small LRU)."""
        block = self._recent_blocks.pop(height, None) or self.store.get_block(height)
        self._recent_blocks[height] = block
        while len(self._recent_blocks) > RECENT_BLOCKS_CACHED:
            self._recent_blocks.popitem(last=False)
        return block

    @staticmethod
    def _check_may_read_tx(reader: Reader, signed: SignedTransaction | None) -> None:
        if signed is not None and not reader.may_read_transaction(signed.body.sender, signed.body.args):
            raise LedgerError("forbidden", f"{reader.name} is not a party to this transaction "
                              "(only its parties, auditors and regulators may read it)")

    def get_tx_proof_json(self, tx_id: bytes) -> dict[str, Any]:
        """The transaction's RFC 9162 inclusion path in the log, against its block's certified header."""
        location = self.store.get_tx_location(tx_id)
        if location is None:
            raise LedgerError("not_found", f"no committed transaction {tx_id.hex()}")
        header = self.store.get_header(location.height)
        path = self.store.log.inclusion_proof(location.log_index, header.log_size)
        return {"tx_id": tx_id.hex(), "height": location.height, "log_index": location.log_index,
                "log_size": header.log_size, "log_root": header.log_root.hex(), "path": [h.hex() for h in path],
                **self._certified_header_json(location.height)}

    def get_consistency_json(self, size_from: int, size_to: int | None) -> dict[str, Any]:
        """RFC 9162 consistency proof between two sizes of the log (``to`` defaults to the head's size)."""
        head_size = self.store.log.size
        size_to = head_size if size_to is None else size_to
        if not 0 < size_from <= size_to <= head_size:  # RFC 9162: no consistency proof from the empty tree
            raise LedgerError("invalid_argument", f"need 0 < from <= to <= {head_size} (the log's size)")
        proof = self.store.log.consistency_proof(size_from, size_to)
        return {"from": size_from, "to": size_to, "from_root": self.store.log.root_at(size_from).hex(),
                "to_root": self.store.log.root_at(size_to).hex(), "proof": [h.hex() for h in proof]}

    def get_account_json(self, name: str, reader: Reader, with_proof: bool) -> dict[str, Any]:
        """Balances at the committed head, the next nonce, and (optionally) a state proof of them."""
        if not reader.may_read_account(name):
            raise LedgerError("forbidden", f"{reader.name} may not read {name}'s account "
                              "(only its owner, auditors and regulators may)")
        view = StateView(self.store)
        if view.get_member(name) is None:
            raise LedgerError("not_found", f"no member {name!r}")
        height = self.store.head_height
        value = self.store.get(account_key(name))
        account = view.get_account(name)
        exponents = self._currency_exponents()
        result: dict[str, Any] = {
            "name": name, "height": height, "nonce": account.nonce,
            "next_nonce": self.mempool.get_next_nonce(name, self.store),
            "balances": [{"currency": b.currency, "amount_minor": b.amount_minor,
                          "amount": format_amount(b.amount_minor, exponents.get(b.currency, 0), b.currency)}
                         for b in account.balances]}
        if with_proof:
            header = self.store.get_header(height)
            proof = self.store.tree.get_proof(header.state_root, account_key(name))
            result["proof"] = {"value": None if value is None else value.hex(),
                               "state_proof": proof.encode().hex(), **self._certified_header_json(height)}
        return result

    def _certified_header_json(self, height: int) -> dict[str, Any]:
        return {"header_bytes": self.store.get_header(height).encode().hex(),
                "certificate_bytes": self.store.get_certificate(height).encode().hex()}

    def _currency_exponents(self) -> dict[str, int]:
        view = StateView(self.store)
        supplies = (view.get_currency(currency.code) for currency in self.store.genesis.currencies)
        return {supply.code: supply.exponent for supply in supplies if supply is not None}

    def get_member(self, name: str) -> Member | None:
        """A member as committed at the head (who may sign reads, with which key and roles)."""
        return StateView(self.store).get_member(name)

    def _wake_waiters(self, block: Block) -> None:
        for signed in block.transactions:
            for future in self._commit_waiters.pop(signed.tx_id, []):
                if not future.done():
                    future.set_result(None)

    def get_status(self) -> dict[str, Any]:
        state = self.core.get_state()
        validator_set = self.core.validator_set
        return {
            "name": self.name, "chain_id": self.chain_id, "height": self.store.head_height,
            "head_hash": self.store.head_hash.hex(), "log_size": self.store.log.size,
            "consensus": {"height": state.height, "round": state.round, "step": state.step,
                          "locked_round": state.locked_round},
            "validators": [{"name": v.name, "voting_power": v.voting_power, "public_key": v.public_key.hex()}
                           for v in validator_set.validators],
            "peers": [{"name": name, "connected": name in self.transport.connected_peers(),
                       "height": self.peer_heights.get(name)} for name in sorted(p.name for p in self.config.peers)],
            "mempool": {"transactions": len(self.mempool), "bytes": self.mempool.size_bytes},
            "evidence": len(self.evidence),
            "currencies": [{"code": code, "exponent": exponent} for code, exponent in self._currency_exponents().items()],
            "uptime_s": (now_ms() - self._started_ms) // 1000,
        }

    def get_raw_blocks(self, reader: Reader, from_height: int, limit: int) -> bytes:
        """Blocks as stored, for an auditor's replay: msgpack ``[[height, header, transactions, certificate,
        [receipt, ...]], ...]``, all bytes exactly as hashed and signed; at most ``limit`` blocks and about
        ``RAW_BLOCKS_BYTES_MAX`` bytes (always at least one block when ``from_height`` exists).

        Only auditors and regulators: the transactions and receipts are everyone's payments.
        """
        if not reader.is_privileged:
            raise LedgerError("forbidden", f"{reader.name} may not export blocks: auditors and regulators only")
        end = min(from_height + limit - 1, self.store.head_height)
        items: list[list[Any]] = []
        size = 0
        for height, _hash, header, transactions, certificate in self.store.iter_raw_block_rows(from_height, end, 1):
            receipts = self.store.get_receipts(height)
            size += len(header) + len(transactions) + len(certificate) + sum(map(len, receipts))
            if items and size > RAW_BLOCKS_BYTES_MAX:
                break
            items.append([height, header, transactions, certificate, receipts])
        return enc.encode(items)

    def get_block_json(self, height: int) -> dict[str, Any]:
        block = self.store.get_block(height)
        certificate = self.store.get_certificate(height)
        header = block.header
        return {
            "height": header.height, "hash": header.compute_hash().hex(),
            "header": {"chain_id": header.chain_id, "height": header.height, "parent_hash": header.parent_hash.hex(),
                       "timestamp_ms": header.timestamp_ms, "proposer": header.proposer,
                       "tx_count": header.tx_count, "tx_root": header.tx_root.hex(), "log_size": header.log_size,
                       "log_root": header.log_root.hex(), "state_root": header.state_root.hex(),
                       "validator_set_hash": header.validator_set_hash.hex()},
            "header_bytes": header.encode().hex(),
            "certificate": {"round": certificate.round, "block_hash": certificate.block_hash.hex(),
                            "signatures": [{"validator": s.validator, "signature": s.signature.hex()}
                                           for s in certificate.signatures]},
            "certificate_bytes": certificate.encode().hex(),
            "transactions": [signed.tx_id.hex() for signed in block.transactions],
        }

    def get_evidence_json(self) -> list[dict[str, Any]]:
        return list(self.evidence)

    def get_metrics_text(self) -> str:
        stats = self.transport.stats()
        lines = [
            "# TYPE ledger_height gauge", f"ledger_height {self.store.head_height}",
            "# TYPE ledger_log_size gauge", f"ledger_log_size {self.store.log.size}",
            "# TYPE ledger_mempool_transactions gauge", f"ledger_mempool_transactions {len(self.mempool)}",
            "# TYPE ledger_consensus_round gauge", f"ledger_consensus_round {self.core.round}",
            "# TYPE ledger_peers_connected gauge", f"ledger_peers_connected {len(self.transport.connected_peers())}",
            "# TYPE ledger_evidence_total counter", f"ledger_evidence_total {len(self.evidence)}",
            "# TYPE ledger_peer_frames_sent_total counter", f"ledger_peer_frames_sent_total {stats['frames_sent']}",
            "# TYPE ledger_peer_frames_received_total counter",
            f"ledger_peer_frames_received_total {stats['frames_received']}",
        ]
        return "\n".join(lines) + "\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


__all__ = ["MempoolError", "Node"]
