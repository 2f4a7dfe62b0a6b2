"""``ledger bench``: the reproducible end-to-end benchmark.

Starts its own devnet of N validators in a temporary directory, signs the
whole load BEFORE the timed run (so the generator is not what is measured),
then submits it through the HTTP API in batches, round-robin over the nodes,
keeping at most ``window`` transactions in flight (submitted, not yet
committed). A watcher follows the committed blocks and records, for each
transaction, the time from its batch's submission to the moment its block
was seen committed. Prints committed tx/s and latency p50/p99; ``--json``
writes one record for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ledger import encoding as enc
from node import devnet
from node.devchain import DemoLoad, load_demo_network

BATCH_TXS = 500
WINDOW_TXS = 6_000
"""Default cap on transactions in flight; lower it to measure latency at a lighter load."""
WATCH_INTERVAL_S = 0.05


@dataclass
class Tracker:
    submitted_at: dict[str, float] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)
    committed: int = 0
    commits: list[tuple[float, int]] = field(default_factory=list)
    """(time a block was seen committed, its transactions)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def in_flight(self) -> int:
        with self.lock:
            return len(self.submitted_at)


def _sign_load(directory: Path, count: int) -> list[bytes]:
    network = load_demo_network(directory)
    load = DemoLoad(network, seed=1)
    transactions = load.issuance() + list(load.transfers(count))
    return [signed.encode() for signed in transactions]


def _watch(api: str, tracker: Tracker, stop: threading.Event, start_height: int) -> None:
    next_height = start_height + 1
    with httpx.Client(timeout=10) as http:
        while not stop.is_set():
            try:
                blocks = http.get(f"{api}/v1/blocks", params={"from": next_height, "limit": 100}).json()
            except httpx.HTTPError:
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


def _submit(apis: list[str], load: list[bytes], tracker: Tracker, deadline: float, stop: threading.Event,
            window: int) -> int:
    submitted = 0
    apis = list(apis)
    load_by_id = {hashlib.sha256(item).hexdigest(): item for item in load}
    with httpx.Client(timeout=30) as http:
        for number, start in enumerate(range(0, len(load), BATCH_TXS)):
            if time.monotonic() >= deadline or stop.is_set():
                break
            while tracker.in_flight() > window and time.monotonic() < deadline:
                time.sleep(0.005)
            batch = load[start:start + BATCH_TXS]
            body = enc.encode_array_of_encoded([enc.encode(item) for item in batch])
            sent_at = time.monotonic()
            while True:
                api = apis[number % len(apis)]
                try:
                    response = http.post(f"{api}/v1/transactions/batch", content=body,
                                         headers={"content-type": "application/msgpack"})
                    break
                except httpx.TransportError:  # that node is down (--kill-after): the same batch elsewhere
                    apis.remove(api)
                    _resubmit_in_flight(http, apis, load_by_id, tracker)
            response.raise_for_status()
            with tracker.lock:
                for result in response.json()["results"]:
                    if "tx_id" in result and result.get("outcome") == "admitted":
                        tracker.submitted_at.setdefault(result["tx_id"], sent_at)
            submitted += len(batch)
    return submitted


def _rss_mib(pid: int) -> float:
    """A node's resident memory now (VmRSS), in MiB; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def _resubmit_in_flight(http: httpx.Client, apis: list[str], load_by_id: dict[str, bytes], tracker: Tracker) -> None:
    """What a dead node admitted but never gossiped is lost with it: resubmit (idempotent) elsewhere."""
    with tracker.lock:
        pending = [load_by_id[tx_id] for tx_id in tracker.submitted_at if tx_id in load_by_id]
    for start in range(0, len(pending), BATCH_TXS):
        body = enc.encode_array_of_encoded([enc.encode(item) for item in pending[start:start + BATCH_TXS]])
        http.post(f"{apis[0]}/v1/transactions/batch", content=body,
                  headers={"content-type": "application/msgpack"}).raise_for_status()


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


def run_bench(nodes: int, seconds: int, txs: int | None = None, keep_dir: Path | None = None,
              window: int = WINDOW_TXS, kill_after_s: float | None = None) -> dict[str, Any]:
    directory = keep_dir or Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    count = txs or max(20_000, seconds * 6_000)
    ready = devnet.up(directory, nodes, progress=lambda _line: None)
    try:
        print(f"devnet of {nodes} up in {directory}; signing {count:,} transactions before the run ...")
        load = _sign_load(directory, count)
        apis = [node.api for node, _pid, _started in ready]
        start_height = httpx.get(f"{apis[0]}/v1/status", timeout=10).json()["height"]
        tracker, stop = Tracker(), threading.Event()
        watcher = threading.Thread(target=_watch, args=(apis[0], tracker, stop, start_height), daemon=True)
        watcher.start()
        killed_at: list[float] = []
        if kill_after_s is not None:  # kill -9 the last validator mid-run
            threading.Thread(target=_kill_later, args=(ready[-1][0], kill_after_s, killed_at), daemon=True).start()
        started = time.monotonic()
        submitted = _submit(apis, load, tracker, started + seconds, stop, window)
        drain_deadline = time.monotonic() + 30
        while tracker.in_flight() and time.monotonic() < drain_deadline:
            time.sleep(0.05)
        ended_at = time.monotonic()
        elapsed = ended_at - started
        stop.set()
        watcher.join(5)
        node_rss_mib = [_rss_mib(pid) for _node, pid, _started in ready]
    finally:
        devnet.down(directory)
    record = {
        "tx_per_s": tracker.committed / elapsed,
        "p50_ms": _percentile(tracker.latencies_s, 0.50) * 1000,
        "p99_ms": _percentile(tracker.latencies_s, 0.99) * 1000,
        "committed": tracker.committed,
        "submitted": submitted,
        "uncommitted_at_end": tracker.in_flight(),
        "nodes": nodes,
        "node_rss_mib": node_rss_mib,
        **(_after_kill(tracker, killed_at[0], ended_at) if killed_at else {}),
        "seconds": round(elapsed, 2),
        "batch_txs": BATCH_TXS,
        "window_txs": window,
        "cpu": f"{platform.machine()} x{os.cpu_count()}",
        "python": platform.python_version(),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                 cwd=Path(__file__).resolve().parent.parent).stdout.strip(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return record


def main(nodes: int, seconds: int, json_path: Path | None, window: int = WINDOW_TXS,
         kill_after_s: float | None = None) -> int:
    record = run_bench(nodes, seconds, window=window, kill_after_s=kill_after_s)
    print(f"{record['committed']:,} transactions committed in {record['seconds']}s on {nodes} validator(s): "
          f"{record['tx_per_s']:,.0f} tx/s; submit-to-commit latency p50 {record['p50_ms']:.0f} ms, "
          f"p99 {record['p99_ms']:.0f} ms; node RSS {record['node_rss_mib']} MiB")
    if "first_block_after_kill_s" in record:
        print(f"after kill -9 of one validator: first block {record['first_block_after_kill_s']} s later, "
              f"first non-empty {record['first_nonempty_block_after_kill_s']} s, "
              f"{record['tx_per_s_after_kill']:,.0f} tx/s from then on")
    if json_path is not None:
        json_path.write_text(json.dumps(record, indent=2) + "\n")
    return 0
