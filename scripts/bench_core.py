"""Benchmark of the ledger core on this machine (issue 2's figures).

    python scripts/bench_core.py [--txs 1000000] [--block-txs 1000] [--json FILE]

Measures, each printed with its setup:
  1. Ed25519: signatures made per second; verifications per second by raw
     PyNaCl (VerifyKey.verify), by our transaction check on one thread, and
     by ``verify_many`` on all cores;
  2. canonical encode / decode of signed transactions per second;
  3. the store: blocks of ``--block-txs`` transactions executed, and
     appended (state tree, log, rows, one fsynced SQLite transaction) per
     second, up to ``--txs`` transactions in all; then the time to reopen the
     store, and the writer's peak resident memory.

Speed is measured here, never asserted in a timed test: the machine is
shared and noisy. Record results in docs/BENCHMARKS.md with the command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nacl.signing

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contracts.block_builder import build_block  # noqa: E402
from ledger import keys  # noqa: E402
from ledger.block import sign_commit  # noqa: E402
from ledger.store import Store  # noqa: E402
from ledger.transaction import SignedTransaction  # noqa: E402
from node.devchain import DemoLoad, create_demo_network  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def bench_signatures(count: int) -> dict[str, float]:
    network = create_demo_network(Path(tempfile.mkdtemp()), seed=1)
    load = DemoLoad(network)
    started = time.perf_counter()
    transactions = list(load.transfers(count))
    sign_s = time.perf_counter() - started
    chain_id = network.genesis.chain_id
    public_key = network.member_keys["alipay-agg"].public_key
    wire = [signed.encode() for signed in transactions]
    decoded = [SignedTransaction.decode(data) for data in wire]
    inputs = [(public_key, signed.body.signing_bytes(chain_id), signed.signature) for signed in decoded]

    verify_key = nacl.signing.VerifyKey(public_key)
    started = time.perf_counter()
    for _key, message, signature in inputs:
        verify_key.verify(message, signature)
    raw_s = time.perf_counter() - started

    fresh = [SignedTransaction.decode(data) for data in wire]  # no cached signing bytes
    started = time.perf_counter()
    assert all(signed.is_signed_by(public_key, chain_id) for signed in fresh)
    ours_s = time.perf_counter() - started

    fresh = [SignedTransaction.decode(data) for data in wire]
    started = time.perf_counter()
    batch = [(public_key, signed.body.signing_bytes(chain_id), signed.signature) for signed in fresh]
    assert all(keys.verify_many(batch))
    many_s = time.perf_counter() - started
    return {
        "sign_per_s": rate(count, sign_s),
        "verify_raw_pynacl_per_s": rate(count, raw_s),
        "verify_tx_one_thread_per_s": rate(count, ours_s),
        "verify_tx_batch_all_cores_per_s": rate(count, many_s),
        "cores": os.cpu_count() or 1,
    }


def bench_encoding(count: int) -> dict[str, float]:
    network = create_demo_network(Path(tempfile.mkdtemp()), seed=2)
    transactions = list(DemoLoad(network).transfers(count))
    fresh = [SignedTransaction(signed.body.__class__(**{f: getattr(signed.body, f) for f in
             ("sender", "nonce", "contract", "method", "args", "expiry_height")}), signed.signature)
             for signed in transactions]
    started = time.perf_counter()
    wire = [signed.encode() for signed in fresh]
    encode_s = time.perf_counter() - started
    started = time.perf_counter()
    for data in wire:
        SignedTransaction.decode(data)
    decode_s = time.perf_counter() - started
    return {"encode_per_s": rate(count, encode_s), "decode_per_s": rate(count, decode_s),
            "bytes_per_tx": sum(map(len, wire)) / count}


def bench_store(total_txs: int, block_txs: int, directory: Path) -> dict[str, float]:
    network = create_demo_network(directory / "net", seed=3)
    store = Store.create(directory / "data", network.genesis)
    load = DemoLoad(network)
    signers = list(network.validator_keys.items())
    execute_s = append_s = 0.0
    blocks = 0
    timestamp_ms = network.genesis.genesis_time_ms
    pending = load.issuance()
    report_every = max(1, (total_txs // block_txs) // 20)
    while True:
        if not pending:
            pending = list(load.transfers(block_txs))
        started = time.perf_counter()
        executed = build_block(store, pending, "validator-0", timestamp_ms)
        middle = time.perf_counter()
        certificate = sign_commit(store.chain_id, executed.block.header, 0, signers)
        signed_at = time.perf_counter()
        store.append_block(executed.block, certificate, executed.changes, executed.encoded_receipts)
        ended = time.perf_counter()
        execute_s += middle - started
        append_s += ended - signed_at
        blocks += 1
        timestamp_ms += 1000
        pending = []
        if store.log.size >= total_txs:
            break
        if blocks % report_every == 0:
            print(f"  ... {store.log.size:,} txs, {blocks} blocks, rss {peak_rss_mib():.0f} MiB", file=sys.stderr)
    txs = store.log.size
    store.close()
    writer_rss = peak_rss_mib()
    reopen = subprocess.run(
        [sys.executable, "-c", (
            "import sys, time, resource; sys.path.insert(0, sys.argv[2]);"
            "from pathlib import Path; from ledger.store import Store;"
            "t = time.perf_counter(); s = Store.open(Path(sys.argv[1])); e = time.perf_counter() - t;"
            "rss = [l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1];"
            "print(e, s.head_height, int(rss) / 1024)"),
         str(directory / "data"), str(Path(__file__).resolve().parent.parent)],
        capture_output=True, text=True, check=True)
    reopen_s, reopen_height, reopen_rss = reopen.stdout.split()
    size_mib = sum(p.stat().st_size for p in (directory / "data").iterdir()) / 2**20
    return {
        "transactions": txs,
        "blocks": blocks,
        "block_txs": block_txs,
        "execute_and_prepare_tx_per_s": rate(txs, execute_s),
        "append_blocks_per_s": rate(blocks, append_s),
        "append_tx_per_s": rate(txs, append_s),
        "end_to_end_tx_per_s": rate(txs, execute_s + append_s),
        "reopen_s": float(reopen_s),
        "reopen_height": int(reopen_height),
        "reopen_rss_mib": float(reopen_rss),  # VmRSS after open (ru_maxrss would include the forking parent)
        "writer_peak_rss_mib": writer_rss,
        "store_mib": size_mib,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--signatures", type=int, default=20_000)
    parser.add_argument("--txs", type=int, default=1_000_000)
    parser.add_argument("--block-txs", type=int, default=1000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    record: dict[str, object] = {
        "benchmark": "core",
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    }
    print(f"signatures ({args.signatures:,} transfers) ...", file=sys.stderr)
    record["signatures"] = bench_signatures(args.signatures)
    print(json.dumps(record["signatures"], indent=2))
    print("encoding ...", file=sys.stderr)
    record["encoding"] = bench_encoding(args.signatures)
    print(json.dumps(record["encoding"], indent=2))
    with tempfile.TemporaryDirectory() as directory:
        print(f"store ({args.txs:,} txs in blocks of {args.block_txs}) ...", file=sys.stderr)
        record["store"] = bench_store(args.txs, args.block_txs, Path(directory))
    print(json.dumps(record["store"], indent=2))
    if args.json:
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
