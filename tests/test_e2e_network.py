"""End to end with real processes on loopback: 4 validators, a kill -9 mid-stream, a restart.

Checks what the operator and the participant rely on: every acknowledged
transaction is committed exactly once, all four nodes converge to the same
head, and the verification engine passes on every node's store.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from ledger.store import Store
from ledger.verify import verify_store
from node import devnet
from node.client import Client, Submitted
from node.devchain import DemoLoad, load_demo_network

TRANSFERS = 1_000
BATCH = 100
CONVERGE_TIMEOUT_S = 90


def _wait_for(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


@pytest.mark.timeout(300)
def test_four_validators_survive_a_kill_and_commit_every_acknowledged_transaction(tmp_path: Path) -> None:
    directory = tmp_path / "devnet"
    nodes = [node for node, _pid, _started in devnet.up(directory, 4, progress=lambda _line: None)]
    try:
        network = load_demo_network(directory)
        load = DemoLoad(network, seed=5)
        transactions = load.issuance() + list(load.transfers(TRANSFERS))
        victim = nodes[2]
        acknowledged: set[bytes] = set()
        auditor = network.member_keys["auditor"]
        with Client([n.api for n in nodes if n is not victim] + [victim.api], member="auditor", key=auditor,
                    timeout_s=30) as client:
            for number, start in enumerate(range(0, len(transactions), BATCH)):
                batch = transactions[start:start + BATCH]
                results = client.submit_batch(batch)
                for signed, result in zip(batch, results):
                    assert isinstance(result, Submitted), result
                    assert result.tx_id == signed.tx_id
                    acknowledged.add(signed.tx_id)
                if number == 3:  # mid-stream: kill -9 one validator
                    pid = devnet.get_pid(victim)
                    assert pid is not None
                    os.kill(pid, signal.SIGKILL)
                    _wait_for(lambda: devnet.get_pid(victim) is None, 10, "the victim to die")
                # resubmitting the same signed batch is idempotent: same ids, nothing applied twice
                again = client.submit_batch(batch[:5])
                assert [r.tx_id for r in again if isinstance(r, Submitted)] == [s.tx_id for s in batch[:5]]
            last = transactions[-1].tx_id
            _wait_for(lambda: client.get_transaction(last, wait_ms=2000).status == "committed",
                      CONVERGE_TIMEOUT_S, "the last transaction to commit")
        restarted = [node.name for node, _pid, started in devnet.up(directory, 4, progress=lambda _line: None)
                     if started]
        assert restarted == [victim.name], "net up restarts only the node that is down"

        def heads() -> set[tuple[int, str]]:
            statuses = [devnet.get_status(node) for node in nodes]
            return {(s["height"], s["head_hash"]) for s in statuses if s} if all(statuses) else set()

        target = max(h for h, _ in heads() or {(0, "")})
        _wait_for(lambda: all((devnet.get_status(n) or {}).get("height", 0) >= target for n in nodes),
                  CONVERGE_TIMEOUT_S, "the restarted node to catch up")
        with Client(victim.api, member="auditor", key=auditor) as restarted:
            for tx_id in list(acknowledged)[:50]:
                assert restarted.get_transaction(tx_id).status == "committed"
    finally:
        devnet.down(directory)
    for node in nodes:  # SIGTERM: every node closed its store and WAL and said so
        assert "stopped cleanly" in (node.home / devnet.LOG_FILE).read_text(), node.name

    head_hashes = set()
    for node in nodes:
        store = Store.open(node.home / "data")
        try:
            report = verify_store(store)
            assert report.ok, f"{node.name}: {report.describe()}"
            assert store.log.size == len(acknowledged), "every acknowledged transaction exactly once"
            for tx_id in acknowledged:
                assert store.get_tx_location(tx_id) is not None
            head_hashes.add(store.get_header(target).compute_hash())
        finally:
            store.close()
    assert len(head_hashes) == 1, "all four nodes hold the same block at the common height"


@pytest.mark.timeout(300)
def test_a_node_down_for_many_blocks_catches_up_by_itself(tmp_path: Path) -> None:
    directory = tmp_path / "devnet"
    nodes = [node for node, _pid, _started in devnet.up(directory, 4, progress=lambda _line: None)]
    try:
        laggard = nodes[3]
        pid = devnet.get_pid(laggard)
        assert pid is not None
        os.kill(pid, signal.SIGTERM)
        _wait_for(lambda: devnet.get_pid(laggard) is None, 15, "the node to stop")
        network = load_demo_network(directory)
        load = DemoLoad(network, seed=9)
        auditor = network.member_keys["auditor"]
        with Client([n.api for n in nodes[:3]], member="auditor", key=auditor) as client:
            down_at = client.status()["height"]
            batches = [load.issuance()] + [list(load.transfers(10)) for _ in range(45)]
            for batch in batches:  # one batch per block, so the others move well ahead
                client.submit_batch(batch)
                assert client.wait_for(batch[-1].tx_id, timeout_s=10).status == "committed"
            target = client.status()["height"]
        assert target - down_at >= 40, "the others committed many blocks while it was down"
        devnet.up(directory, 4, progress=lambda _line: None)
        _wait_for(lambda: (devnet.get_status(laggard) or {}).get("height", 0) >= target, CONVERGE_TIMEOUT_S,
                  "the laggard to sync")
        with Client(laggard.api, member="auditor", key=auditor) as client:
            assert client.get_transaction(batches[-1][-1].tx_id).status == "committed"
    finally:
        devnet.down(directory)
    store = Store.open(laggard.home / "data")
    try:
        assert verify_store(store).ok
    finally:
        store.close()
