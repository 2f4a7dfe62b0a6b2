"""``ledger bench``: the reproducible end-to-end benchmark.

Starts its own devnet of N validators in a temporary directory, signs the
whole load BEFORE the timed run (so the generator is not what is measured),
commits the issuance that funds the senders, then drives transfers through
the HTTP API, keeping at most ``window`` transactions in flight (submitted,
not yet committed). A watcher follows the committed blocks (signed reads, as
the devnet's auditor) and records, for each transaction, the time from its
submission to the moment its block was seen committed.

Modes (``--mode``):

- ``batch`` (default): one sender's transfers in batches of ``BATCH_TXS``
  through ``POST /v1/transactions/batch``, round-robin over the nodes.
- ``single``: one transaction per ``POST /v1/transactions``; ``threads``
  threads, each a sender with its own keep-alive connection to one node
  (thread i talks to node i mod N; the stdlib's ``http.client``, or
  ``httpx.Client`` with ``client="httpx"``), each posting its sender's
  transactions in nonce order.
- ``idle``: no writes, for the reads or the flood alone (a reference).

Options that add to any mode:

- ``reads_per_s``: a separate process makes signed reads (as the auditor) at
  that steady rate, open loop (each read starts on schedule on a worker of
  its own, so a stalled node cannot hide the reads queued behind it),
  round-robin over the nodes and over ``GET /v1/accounts/{name}``,
  ``GET /v1/transactions/{id}`` and ``GET /v1/transactions/{id}/proof`` of
  committed transactions; latency counts from each read's scheduled start,
  reported as p50/p99 per endpoint.
- ``flood_threads``: the run is done twice on the same devnet, first honest
  load alone, then with a separate process of that many threads flooding the
  last node with malformed bodies, transactions and batches with bad
  signatures, and unsigned and badly signed reads, each thread as fast as the
  node answers it; the record gives honest tx/s in both phases, their ratio,
  and the nodes' RSS before and after.

Every phase also records the CPU seconds the validators used, per committed
transaction (``nodes_cpu_ms_per_tx``): the network's cost of a transaction.
Prints the figures; ``--json`` writes one record for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import multiprocessing
import os
import platform
import queue
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from ledger import encoding as enc
from ledger.keys import PrivateKey
from ledger.transaction import Transaction
from node import devnet
from node.client import ApiError, Client
from node.devchain import load_demo_network

BATCH_TXS = 500
WINDOW_TXS = 6_000
"""Default cap on transactions in flight; lower it to measure latency at a lighter load."""
WATCH_INTERVAL_S = 0.05
MODES = ("batch", "single", "idle")
SINGLE_THREADS = 8
BATCH_TXS_PER_S_PLANNED = 6_000
SINGLE_TXS_PER_S_PLANNED = 3_000
"""Transactions signed ahead per second of run (more than the network commits, so the load never runs out)."""
ISSUED_MINOR = 10**12
READ_WORKERS_MAX = 64
READ_CONNECTIONS_MAX = 32
"""Per node; made before the timed reads (an httpx.Client costs ~25 ms of CPU to make)."""
READ_ENDPOINTS = ("account", "transaction", "proof")
READ_IDS_REFRESH_S = 0.5
FLOOD_BAD_BATCH_TXS = 100
CHILD_START_TIMEOUT_S = 60
MSGPACK = "application/msgpack"


@dataclass
class Tracker:
    submitted_at: dict[str, float] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)
    committed: int = 0
    commits: list[tuple[float, int]] = field(default_factory=list)
    """(time a block was seen committed, its transactions)."""
    errors: Counter[str] = field(default_factory=Counter)
    """Submissions the node refused, by error code (none expected)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def in_flight(self) -> int:
        with self.lock:
            return len(self.submitted_at)


@dataclass
class Load:
    """Signed before the run: the issuance that funds the senders, then each sender's transfers in nonce order."""

    setup: list[bytes]
    streams: list[list[bytes]]
    positions: list[int]
    batches_sent: int = 0


def _sign_load(directory: Path, count: int, senders: int) -> Load:
    """``count`` transfers in CNY spread over ``senders`` members, after an issuance to each of them."""
    network = load_demo_network(directory)
    chain_id = network.genesis.chain_id
    keys = {**network.member_keys, **network.validator_keys}
    names = ["alipay-agg", *sorted(name for name in network.member_keys if name != "alipay-agg"),
             *sorted(network.validator_keys)][:senders]
    if len(names) < senders:
        raise ValueError(f"at most {len(names)} senders on this devnet")
    nonces = dict.fromkeys(keys, 0)
    rng = random.Random(1)

    def sign(sender: str, method: str, args: dict[str, object]) -> bytes:
        tx = Transaction(sender, nonces[sender], "accounts", method, args, 0)
        nonces[sender] += 1
        return tx.sign(keys[sender], chain_id).encode()

    setup = [sign("bank-cn", "issue", {"currency": "CNY", "to": name, "amount_minor": ISSUED_MINOR}) for name in names]
    payees = ["merchant-001", "merchant-002", "bank-cn", "alipay-agg"]
    streams = []
    for number, sender in enumerate(names):
        share = count // senders + (1 if number < count % senders else 0)
        choices = [payee for payee in payees if payee != sender]
        streams.append([sign(sender, "transfer", {"currency": "CNY", "to": rng.choice(choices),
                                                  "amount_minor": rng.randint(1, 1_000_000)})
                        for _ in range(share)])
    return Load(setup, streams, [0] * len(streams))


def _tx_id(item: bytes) -> str:
    return hashlib.sha256(item).hexdigest()


def _commit_setup(directory: Path, api: str, setup: list[bytes]) -> None:
    """Submit the issuance and wait until it is committed (so the timed transfers are funded)."""
    body = enc.encode_array_of_encoded([enc.encode(item) for item in setup])
    httpx.post(f"{api}/v1/transactions/batch", content=body, headers={"content-type": MSGPACK},
               timeout=30).raise_for_status()
    with Client.from_devnet(directory, "auditor") as client:
        client.urls = [api]
        for item in setup:
            status = client.wait_for(bytes.fromhex(_tx_id(item)), timeout_s=60)
            if status.status != "committed":
                raise RuntimeError(f"the issuance {status.tx_id.hex()} is {status.status} ({status.code})")


def _watch(directory: Path, api: str, tracker: Tracker, stop: threading.Event, start_height: int) -> None:
    next_height = start_height + 1
    with Client.from_devnet(directory, "auditor", retries=0) as client:
        client.urls = [api]
        while not stop.is_set():
            try:
                blocks = client.get_blocks(next_height, 100)
            except ApiError:
                time.sleep(WATCH_INTERVAL_S)
                continue
            seen_at = time.monotonic()
            for block in blocks:
                with tracker.lock:
                    tracker.commits.append((seen_at, len(block["transactions"])))
                    for tx_id in block["transactions"]:
                        started = tracker.submitted_at.pop(tx_id, None)
                        if started is not None:
                            tracker.latencies_s.append(seen_at - started)
                            tracker.committed += 1
                next_height = block["height"] + 1
            if not blocks:
                time.sleep(WATCH_INTERVAL_S)


def _submit_batches(apis: list[str], load: Load, tracker: Tracker, deadline: float, stop: threading.Event,
                    window: int) -> int:
    """Batches of one sender's transfers, round-robin over the nodes; returns how many were submitted."""
    submitted = 0
    stream = load.streams[0]
    load_by_id: dict[str, bytes] | None = None
    with httpx.Client(timeout=30) as http:
        while load.positions[0] < len(stream):
            if time.monotonic() >= deadline or stop.is_set():
                break
            while tracker.in_flight() > window and time.monotonic() < deadline:
                time.sleep(0.005)
            start = load.positions[0]
            batch = stream[start:start + BATCH_TXS]
            body = enc.encode_array_of_encoded([enc.encode(item) for item in batch])
            sent_at = time.monotonic()
            while True:
                api = apis[load.batches_sent % len(apis)]
                try:
                    response = http.post(f"{api}/v1/transactions/batch", content=body,
                                         headers={"content-type": MSGPACK})
                    break
                except httpx.TransportError:  # that node is down (--kill-after): the same batch elsewhere
                    apis.remove(api)
                    if load_by_id is None:
                        load_by_id = {_tx_id(item): item for item in stream}
                    _resubmit_in_flight(http, apis, load_by_id, tracker)
            response.raise_for_status()
            with tracker.lock:
                for result in response.json()["results"]:
                    if "tx_id" in result and result.get("outcome") in ("admitted", "queued"):
                        tracker.submitted_at.setdefault(result["tx_id"], sent_at)
                    elif "error" in result:
                        tracker.errors[result["error"]["code"]] += 1
            load.positions[0] = start + len(batch)
            load.batches_sent += 1
            submitted += len(batch)
    return submitted


class _KeepAlive:
    """One keep-alive HTTP/1.1 connection to one node: the stdlib's ``http.client`` (about a third of httpx's
    CPU per request here, which matters when the generator shares the validators' cores), or ``httpx.Client``."""

    def __init__(self, api: str, client: str) -> None:
        self.api = api
        self._httpx = httpx.Client(timeout=30) if client == "httpx" else None
        parts = urlsplit(api)
        self._connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """(status, body); raises ``OSError``, ``HTTPException`` or ``httpx.TransportError`` if the node is down."""
        if self._httpx is not None:
            answer = self._httpx.request(method, self.api + path, content=body, headers=headers)
            return answer.status_code, answer.content
        try:
            self._connection.request(method, path, body=body or None, headers=headers or {})
            response = self._connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self._connection.close()  # the next request reconnects
            raise

    def post(self, path: str, body: bytes, content_type: str = MSGPACK) -> tuple[int, Any]:
        """(status, decoded JSON answer)."""
        status, answer = self.request("POST", path, body, {"content-type": content_type})
        return status, json.loads(answer)

    def close(self) -> None:
        if self._httpx is not None:
            self._httpx.close()
        self._connection.close()


def _submit_singles(apis: list[str], load: Load, tracker: Tracker, deadline: float, stop: threading.Event,
                    window: int, client: str = "stdlib") -> int:
    """One transaction per request: a thread per sender, each with its own keep-alive connection to one node."""
    counts = [0] * len(load.streams)

    def run(number: int) -> None:
        stream = load.streams[number]
        node = number % len(apis)
        connection = _KeepAlive(apis[node], client)
        try:
            while load.positions[number] < len(stream) and time.monotonic() < deadline and not stop.is_set():
                while tracker.in_flight() > window and time.monotonic() < deadline:
                    time.sleep(0.005)
                item = stream[load.positions[number]]
                sent_at = time.monotonic()
                try:
                    status, data = connection.post("/v1/transactions", item)
                except (OSError, http.client.HTTPException, httpx.TransportError):  # the same bytes elsewhere
                    node = (node + 1) % len(apis)
                    connection.close()
                    connection = _KeepAlive(apis[node], client)
                    continue
                if status in (429, 503):  # shedding: back off, then the same transaction again
                    time.sleep(0.05)
                    continue
                if status == 202:
                    if data["outcome"] in ("admitted", "queued"):
                        with tracker.lock:
                            tracker.submitted_at.setdefault(data["tx_id"], sent_at)
                else:
                    with tracker.lock:
                        tracker.errors[str(data.get("code", status))] += 1
                load.positions[number] += 1
                counts[number] += 1
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(number,), daemon=True) for number in range(len(load.streams))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts)


def _rss_mib(pid: int) -> float:
    """A node's resident memory now (VmRSS), in MiB; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _resubmit_in_flight(http: httpx.Client, apis: list[str], load_by_id: dict[str, bytes], tracker: Tracker) -> None:
    """What a dead node admitted but never gossiped is lost with it: resubmit (idempotent) elsewhere."""
    with tracker.lock:
        pending = [load_by_id[tx_id] for tx_id in tracker.submitted_at if tx_id in load_by_id]
    for start in range(0, len(pending), BATCH_TXS):
        body = enc.encode_array_of_encoded([enc.encode(item) for item in pending[start:start + BATCH_TXS]])
        http.post(f"{apis[0]}/v1/transactions/batch", content=body,
                  headers={"content-type": MSGPACK}).raise_for_status()


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _kill_later(node: devnet.DevnetNode, delay_s: float, killed_at: list[float]) -> None:
    time.sleep(delay_s)
    pid = devnet.get_pid(node)
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
        killed_at.append(time.monotonic())


def _after_kill(tracker: Tracker, killed_at: float, ended_at: float) -> dict[str, float]:
    after = [(seen, count) for seen, count in tracker.commits if seen > killed_at]
    nonempty = [seen for seen, count in after if count]
    return {
        "first_block_after_kill_s": round(after[0][0] - killed_at, 3) if after else float("nan"),
        "first_nonempty_block_after_kill_s": round(nonempty[0] - killed_at, 3) if nonempty else float("nan"),
        "tx_per_s_after_kill": sum(count for _seen, count in after) / max(ended_at - killed_at, 1e-9),
    }


# --- the reader and the flood: separate processes, so they do not share the submitter's GIL ---


def _read_process(directory: str, apis: list[str], reads_per_s: float, known_ids: list[str], stop: Any,
                  results: multiprocessing.Queue[Any]) -> None:
    """Signed reads at a steady rate until ``stop`` is set; puts ("ready", None), then ("reads", figures).

    Transactions read: ``known_ids`` and those of the blocks committed meanwhile."""
    ids = [bytes.fromhex(tx_id) for tx_id in known_ids]
    accounts = ["alipay-agg", "merchant-001", "merchant-002", "bank-cn"]
    latencies: dict[str, list[float]] = {name: [] for name in READ_ENDPOINTS}
    errors: dict[str, Counter[str]] = {name: Counter() for name in READ_ENDPOINTS}
    lock = threading.Lock()

    def follow_ids() -> None:
        with Client.from_devnet(directory, "auditor", retries=0) as client:
            client.urls = [apis[0]]
            while not stop.is_set():
                with contextlib.suppress(ApiError):
                    block = client.get_block("latest")
                    with lock:
                        ids.extend(bytes.fromhex(tx_id) for tx_id in block["transactions"])
                stop.wait(READ_IDS_REFRESH_S)

    pools: list[queue.SimpleQueue[Client]] = [queue.SimpleQueue() for _ in apis]

    def new_client(node: int) -> Client:
        client = Client.from_devnet(directory, "auditor", retries=0)
        client.urls = [apis[node]]
        _ = client.chain_id  # asked once per connection
        return client

    def read(number: int, scheduled: float, tx_id: bytes | None, account: str) -> None:
        endpoint = READ_ENDPOINTS[number % len(READ_ENDPOINTS)]
        if endpoint != "account" and tx_id is None:  # no transaction committed yet
            endpoint = "account"
        node = (number // len(READ_ENDPOINTS)) % len(apis)
        try:
            client = pools[node].get_nowait()
        except queue.Empty:
            client = new_client(node)
        try:
            if endpoint == "account":
                client.get_account(account)
            elif endpoint == "transaction":
                assert tx_id is not None
                client.get_transaction(tx_id)
            else:
                assert tx_id is not None
                client.get_tx_proof(tx_id)
            outcome = None
        except ApiError as error:
            outcome = error.code
        done = time.monotonic()
        pools[node].put(client)
        with lock:
            if outcome is None:
                latencies[endpoint].append(done - scheduled)
            else:
                errors[endpoint][outcome] += 1

    for node in range(len(apis)):
        for _ in range(min(READ_CONNECTIONS_MAX, -(-READ_WORKERS_MAX // len(apis)))):
            pools[node].put(new_client(node))
    rng = random.Random(1)
    results.put(("ready", None))
    started = time.monotonic()
    follower = threading.Thread(target=follow_ids, daemon=True)
    follower.start()
    # Open loop: each read starts at its scheduled time on a worker of its own, so a slow answer does not
    # delay the reads after it; latency counts from the scheduled time (queueing for a worker included).
    with ThreadPoolExecutor(READ_WORKERS_MAX) as workers:
        number = 0
        while not stop.is_set():
            scheduled = started + number / reads_per_s
            delay = scheduled - time.monotonic()
            if delay > 0 and stop.wait(delay):
                break
            with lock:
                tx_id = rng.choice(ids) if ids else None
            workers.submit(read, number, scheduled, tx_id, rng.choice(accounts))
            number += 1
    follower.join()
    for pool in pools:
        while not pool.empty():
            pool.get_nowait().close()
    elapsed = time.monotonic() - started
    figures: dict[str, Any] = {"reads_per_s_target": reads_per_s, "reader_cpu_s": round(time.process_time(), 2)}
    for endpoint in READ_ENDPOINTS:
        values = latencies[endpoint]
        figures[endpoint] = {"count": len(values), "p50_ms": round(_percentile(values, 0.50) * 1000, 2),
                             "p99_ms": round(_percentile(values, 0.99) * 1000, 2),
                             "max_ms": round(max(values, default=float("nan")) * 1000, 2),
                             "errors": dict(errors[endpoint])}
    figures["reads_per_s"] = round(sum(len(values) for values in latencies.values()) / elapsed, 1)
    results.put(("reads", figures))


def _flood_process(directory: str, api: str, threads: int, stop: Any, results: multiprocessing.Queue[Any]) -> None:
    """Malformed and badly signed requests as fast as ``threads`` threads can send them, at one node, until
    ``stop`` is set."""
    network = load_demo_network(Path(directory))
    chain_id = network.genesis.chain_id
    wrong_key = PrivateKey.generate()  # signs as alipay-agg with a key that is not alipay-agg's
    bad_txs = [Transaction("alipay-agg", 10**9 + number, "accounts", "transfer",
                           {"currency": "CNY", "to": "merchant-001", "amount_minor": 1}, 0).sign(wrong_key, chain_id)
               .encode() for number in range(2 * FLOOD_BAD_BATCH_TXS)]
    bad_batch = enc.encode_array_of_encoded([enc.encode(item) for item in bad_txs[:FLOOD_BAD_BATCH_TXS]])
    kinds = ("garbage_tx", "garbage_batch", "bad_signature_tx", "bad_signature_batch", "unsigned_read",
             "bad_signature_read")
    sent: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    lock = threading.Lock()

    def run(thread: int) -> None:
        rng = random.Random(thread)
        number = thread
        connection = _KeepAlive(api, "stdlib")
        while not stop.is_set():
            kind = kinds[number % len(kinds)]
            number += 1
            try:
                if kind == "garbage_tx":
                    status, _ = connection.request("POST", "/v1/transactions", rng.randbytes(rng.randint(1, 400)),
                                                   {"content-type": MSGPACK})
                elif kind == "garbage_batch":
                    status, _ = connection.request("POST", "/v1/transactions/batch",
                                                   b'{"transactions": [' + rng.randbytes(200) + b"]}",
                                                   {"content-type": "application/json"})
                elif kind == "bad_signature_tx":
                    status, _ = connection.request("POST", "/v1/transactions", rng.choice(bad_txs),
                                                   {"content-type": MSGPACK})
                elif kind == "bad_signature_batch":
                    status, _ = connection.request("POST", "/v1/transactions/batch", bad_batch,
                                                   {"content-type": MSGPACK})
                elif kind == "unsigned_read":
                    status, _ = connection.request("GET", "/v1/accounts/alipay-agg")
                else:
                    status, _ = connection.request("GET", "/v1/accounts/alipay-agg", headers={
                        "x-ledger-member": "auditor", "x-ledger-timestamp": str(time.time_ns() // 10**6),
                        "x-ledger-nonce": rng.randbytes(16).hex(), "x-ledger-signature": rng.randbytes(64).hex()})
                outcome = str(status)
            except (OSError, http.client.HTTPException) as error:
                outcome = type(error).__name__
                time.sleep(0.01)  # the node closed the connection or is down: reconnect
            with lock:
                sent[kind] += 1
                statuses[outcome] += 1
        connection.close()

    results.put(("ready", None))
    started = time.monotonic()
    cpu_started = time.process_time()
    workers = [threading.Thread(target=run, args=(number,), daemon=True) for number in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - started
    results.put(("flood", {"flood_threads": threads, "flood_requests": sum(sent.values()),
                           "flood_requests_per_s": round(sum(sent.values()) / elapsed, 1),
                           "flood_by_kind": dict(sent), "flood_statuses": dict(statuses),
                           "flood_client_cpu_s": round(time.process_time() - cpu_started, 2)}))


class _Child:
    """A reader or flood process; ``start`` returns once it is ready to begin (imports are slow)."""

    def __init__(self, target: Any, *args: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self.stop = context.Event()
        self.results: multiprocessing.Queue[Any] = context.Queue()
        self.process = context.Process(target=target, args=(*args, self.stop, self.results), daemon=True)

    def start(self) -> None:
        self.process.start()
        kind, _ = self.results.get(timeout=CHILD_START_TIMEOUT_S)
        assert kind == "ready"

    def result(self, timeout_s: float) -> dict[str, Any]:
        """Stop the child and return its figures."""
        self.stop.set()
        try:
            _kind, figures = self.results.get(timeout=timeout_s)
        except queue.Empty:
            figures = {"error": "no result"}
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.results.close()
        self.results.join_thread()
        return figures  # type: ignore[no-any-return]


@dataclass
class Phase:
    """One timed run of the honest load (with or without a flood)."""

    tx_per_s: float
    p50_ms: float
    p99_ms: float
    committed: int
    submitted: int
    uncommitted_at_end: int
    seconds: float
    started_at: float
    ended_at: float
    nodes_cpu_s: float
    """CPU seconds all the validators used during the phase."""
    bench_cpu_s: float
    """CPU seconds this process (the submitters and the watcher) used."""
    extra: dict[str, Any] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        return {"tx_per_s": self.tx_per_s, "p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "committed": self.committed,
                "submitted": self.submitted, "uncommitted_at_end": self.uncommitted_at_end, "seconds": self.seconds,
                "nodes_cpu_s": round(self.nodes_cpu_s, 2), "bench_cpu_s": round(self.bench_cpu_s, 2),
                "nodes_cpu_ms_per_tx": round(1000 * self.nodes_cpu_s / self.committed, 3) if self.committed else None,
                **self.extra}


def _run_phase(mode: str, directory: Path, apis: list[str], pids: list[int], load: Load, tracker: Tracker,
               seconds: int, window: int, reads_per_s: float, flood_threads: int, client: str) -> Phase:
    known_ids = [_tx_id(item) for item in load.setup]
    reader = _Child(_read_process, str(directory), list(apis), reads_per_s, known_ids) if reads_per_s > 0 else None
    flood = _Child(_flood_process, str(directory), apis[-1], flood_threads) if flood_threads else None
    for child in (reader, flood):
        if child is not None:
            child.start()
    with tracker.lock:
        committed_before, latencies_before = tracker.committed, len(tracker.latencies_s)
    cpu_before = sum(_cpu_s(pid) for pid in pids)
    bench_cpu_before = time.process_time()
    started = time.monotonic()
    if mode == "batch":
        submitted = _submit_batches(apis, load, tracker, started + seconds, threading.Event(), window)
    elif mode == "single":
        submitted = _submit_singles(apis, load, tracker, started + seconds, threading.Event(), window, client)
    else:  # idle: no write load (reads or a flood alone)
        time.sleep(seconds)
        submitted = 0
    drain_deadline = time.monotonic() + 30
    while tracker.in_flight() and time.monotonic() < drain_deadline:
        time.sleep(0.05)
    ended = time.monotonic()
    nodes_cpu = sum(_cpu_s(pid) for pid in pids) - cpu_before
    with tracker.lock:
        committed = tracker.committed - committed_before
        latencies = tracker.latencies_s[latencies_before:]
        block_sizes = [count for seen, count in tracker.commits if started < seen <= ended]
    extra: dict[str, Any] = {"blocks": len(block_sizes),
                             "block_txs_mean": round(sum(block_sizes) / max(len(block_sizes), 1), 1),
                             "block_txs_max": max(block_sizes, default=0)}
    if flood is not None:  # the flood lasts until the honest load has drained
        extra.update(flood.result(timeout_s=60))
    if reader is not None:
        extra["reads"] = reader.result(timeout_s=60)
    elapsed = ended - started
    return Phase(committed / elapsed, _percentile(latencies, 0.50) * 1000, _percentile(latencies, 0.99) * 1000,
                 committed, submitted, tracker.in_flight(), round(elapsed, 2), started, ended, nodes_cpu,
                 time.process_time() - bench_cpu_before, extra)


def run_bench(nodes: int, seconds: int, txs: int | None = None, keep_dir: Path | None = None,
              window: int = WINDOW_TXS, kill_after_s: float | None = None, *, mode: str = "batch",
              threads: int = SINGLE_THREADS, reads_per_s: float = 0, flood_threads: int = 0,
              client: str = "stdlib") -> dict[str, Any]:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    if kill_after_s is not None and (mode != "batch" or flood_threads):
        raise ValueError("--kill-after is for the batch mode without --flood")
    loadavg_at_start = round(os.getloadavg()[0], 2)  # the machine may be shared: how busy it was
    directory = keep_dir or Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    phases = 2 if flood_threads else 1
    per_s = BATCH_TXS_PER_S_PLANNED if mode == "batch" else SINGLE_TXS_PER_S_PLANNED
    count = 0 if mode == "idle" else txs or phases * max(20_000, seconds * per_s)
    senders = 1 if mode == "batch" else threads
    ready = devnet.up(directory, nodes, progress=lambda _line: None)
    pids = [pid for _node, pid, _started in ready]
    try:
        print(f"devnet of {nodes} up in {directory}; signing {count:,} transactions before the run ...")
        load = _sign_load(directory, count, senders)
        apis = [node.api for node, _pid, _started in ready]
        _commit_setup(directory, apis[0], load.setup)
        start_height = httpx.get(f"{apis[0]}/v1/status", timeout=10).json()["height"]
        tracker, stop = Tracker(), threading.Event()
        watcher = threading.Thread(target=_watch, args=(directory, apis[0], tracker, stop, start_height), daemon=True)
        watcher.start()
        killed_at: list[float] = []
        if kill_after_s is not None:  # kill -9 the last validator mid-run
            threading.Thread(target=_kill_later, args=(ready[-1][0], kill_after_s, killed_at), daemon=True).start()
        rss_at_start = rss_before = [_rss_mib(pid) for pid in pids]
        baseline = None
        if flood_threads:
            print(f"phase 1 of 2: {seconds}s of honest load alone ...")
            baseline = _run_phase(mode, directory, apis, pids, load, tracker, seconds, window, reads_per_s, 0, client)
            rss_before = [_rss_mib(pid) for pid in pids]
            print(f"phase 2 of 2: {seconds}s of honest load with {flood_threads} flood threads at {apis[-1]} ...")
        phase = _run_phase(mode, directory, apis, pids, load, tracker, seconds, window, reads_per_s, flood_threads,
                           client)
        stop.set()
        watcher.join(5)
        node_rss_mib = [_rss_mib(pid) for pid in pids]
    finally:
        devnet.down(directory)
    if keep_dir is None:  # kept only when the run failed (its node.log files say why)
        shutil.rmtree(directory, ignore_errors=True)
    figures = phase.figures()
    record: dict[str, Any] = {
        "mode": mode,
        **{key: figures.pop(key) for key in ("tx_per_s", "p50_ms", "p99_ms", "committed", "submitted",
                                             "uncommitted_at_end")},
        "submit_errors": dict(tracker.errors),
        "nodes": nodes,
        "node_rss_mib": node_rss_mib,
        **(_after_kill(tracker, killed_at[0], phase.ended_at) if killed_at else {}),
        "seconds": figures.pop("seconds"),
        **({"batch_txs": BATCH_TXS} if mode == "batch" else {"threads": threads, "client": client}),
        "window_txs": window,
        **figures,
    }
    if baseline is not None:
        record["baseline"] = baseline.figures()
        record["tx_per_s_without_flood"] = baseline.tx_per_s
        record["flood_ratio"] = round(phase.tx_per_s / baseline.tx_per_s, 3) if baseline.tx_per_s else float("nan")
        record["flooded_node"] = ready[-1][0].name
        record["node_rss_mib_at_start"] = rss_at_start
        record["node_rss_mib_before_flood"] = rss_before
    record.update({
        "cpu": f"{platform.machine()} x{os.cpu_count()}",
        "loadavg_1m_at_start": loadavg_at_start,
        "python": platform.python_version(),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False,
                                 cwd=Path(__file__).resolve().parent.parent).stdout.strip(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    return record


def _describe_reads(reads: dict[str, Any]) -> str:
    parts = [f"{endpoint} p50 {reads[endpoint]['p50_ms']:.1f} / p99 {reads[endpoint]['p99_ms']:.1f} ms "
             f"(n={reads[endpoint]['count']}{', errors ' + str(reads[endpoint]['errors']) if reads[endpoint]['errors'] else ''})"
             for endpoint in READ_ENDPOINTS if endpoint in reads]
    return f"signed reads at {reads.get('reads_per_s', 0)}/s: " + "; ".join(parts)


def main(nodes: int, seconds: int, json_path: Path | None, window: int = WINDOW_TXS,
         kill_after_s: float | None = None, *, mode: str = "batch", threads: int = SINGLE_THREADS,
         reads_per_s: float = 0, flood_threads: int = 0, client: str = "stdlib") -> int:
    record = run_bench(nodes, seconds, window=window, kill_after_s=kill_after_s, mode=mode, threads=threads,
                       reads_per_s=reads_per_s, flood_threads=flood_threads, client=client)
    how = {"batch": "in batches", "single": f"one per request from {threads} threads"}.get(mode, "no write load")
    print(f"{record['committed']:,} transactions ({how}) committed in {record['seconds']}s on {nodes} validator(s): "
          f"{record['tx_per_s']:,.0f} tx/s; submit-to-commit latency p50 {record['p50_ms']:.0f} ms, "
          f"p99 {record['p99_ms']:.0f} ms; node RSS {record['node_rss_mib']} MiB; "
          f"validators' CPU {record['nodes_cpu_s']} s, {record['nodes_cpu_ms_per_tx']} ms per committed tx")
    if record["submit_errors"]:
        print(f"refused submissions: {record['submit_errors']}")
    if "reads" in record:
        print(_describe_reads(record["reads"]))
    if "flood_ratio" in record:
        print(f"flood: {record['flood_requests_per_s']:,.0f} bad requests/s at {record['flooded_node']} "
              f"({record['flood_statuses']}); honest {record['tx_per_s']:,.0f} tx/s vs "
              f"{record['tx_per_s_without_flood']:,.0f} tx/s without = {record['flood_ratio']:.2f} x; "
              f"node RSS {record['node_rss_mib_before_flood']} -> {record['node_rss_mib']} MiB")
    if "first_block_after_kill_s" in record:
        print(f"after kill -9 of one validator: first block {record['first_block_after_kill_s']} s later, "
              f"first non-empty {record['first_nonempty_block_after_kill_s']} s, "
              f"{record['tx_per_s_after_kill']:,.0f} tx/s from then on")
    if json_path is not None:
        json_path.write_text(json.dumps(record, indent=2) + "\n")
    return 0
