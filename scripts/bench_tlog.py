"""Benchmark the transparency log over SQLite at a million leaves.

Why: the log must keep up with block commits without ever rehashing history,
and serve proofs fast at scale. Targets: at least 100,000 appends/s amortised
over 1,000,000 leaves (committing every 1,000 appends, like blocks), and an
inclusion or consistency proof under 1 ms at 1,000,000 leaves.

The append figure times ``append_many`` + ``root()`` + ``commit`` per block;
the leaf hashes are made before the clock starts for each block, because in
the node they come from transaction ids already computed. The figure with
leaf hashing included is printed too.

Usage:
    .venv/bin/python scripts/bench_tlog.py [--leaves N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sqlite3
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.merkle import hash_leaf, verify_consistency, verify_inclusion
from ledger.tlog import SqliteLogNodeStore, TransparencyLog

APPENDS_PER_SECOND_TARGET = 100_000
PROOF_US_TARGET = 1_000


@dataclass(frozen=True, slots=True)
class BenchResult:
    """Every figure the benchmark reports; times are in the unit their name ends with."""

    leaves: int
    block_leaves: int
    journal_mode: str
    synchronous: str
    append_s: float
    append_with_leaf_hashing_s: float
    appends_per_s: float
    appends_per_s_with_leaf_hashing: float
    proofs: int
    inclusion_proof_us: float
    consistency_proof_us: float
    inclusion_verify_us: float
    consistency_verify_us: float
    historical_inclusion_proof_us: float
    reopen_ms: float
    db_bytes: int
    peak_rss_mib: float
    root_hex: str


def make_block_leaves(start: int, count: int) -> list[bytes]:
    """Leaf hashes for leaves [start, start + count): deterministic, distinct."""
    return [hash_leaf(index.to_bytes(8, "big")) for index in range(start, start + count)]


def open_db(path: Path, journal_mode: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA journal_mode={journal_mode}")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


def run_appends(
    log: TransparencyLog, conn: sqlite3.Connection, leaves: int, block_leaves: int
) -> tuple[float, float]:
    """Append ``leaves`` in blocks, committing after each; return (append_s, total_s)."""
    append_s = 0.0
    total_start = time.perf_counter()
    for start in range(0, leaves, block_leaves):
        block = make_block_leaves(start, min(block_leaves, leaves - start))
        began = time.perf_counter()
        log.append_many(block)
        log.root()  # a block header carries the log root
        conn.commit()
        append_s += time.perf_counter() - began
        if start and start % (block_leaves * 100) == 0:
            print(f"  {start:>9,} leaves, {start / append_s:,.0f} appends/s so far", flush=True)
    return append_s, time.perf_counter() - total_start


def time_proofs(log: TransparencyLog, proofs: int, seed: int) -> dict[str, float]:
    """Average microseconds per proof and per verification at the log's size."""
    rng = random.Random(seed)
    size = log.size
    root = log.root()
    indices = [rng.randrange(size) for _ in range(proofs)]
    old_sizes = [rng.randint(1, size) for _ in range(proofs)]
    historical_indices = [rng.randrange(size) for _ in range(proofs)]
    historical = [(index, rng.randint(index + 1, size)) for index in historical_indices]

    began = time.perf_counter()
    inclusion = [log.inclusion_proof(index, size) for index in indices]
    inclusion_us = (time.perf_counter() - began) / proofs * 1e6

    began = time.perf_counter()
    consistency = [log.consistency_proof(old_size, size) for old_size in old_sizes]
    consistency_us = (time.perf_counter() - began) / proofs * 1e6

    began = time.perf_counter()
    for index, size2 in historical:
        log.inclusion_proof(index, size2)
    historical_us = (time.perf_counter() - began) / proofs * 1e6

    leaf_hashes = [hash_leaf(index.to_bytes(8, "big")) for index in indices]
    began = time.perf_counter()
    for leaf_hash, index, proof in zip(leaf_hashes, indices, inclusion, strict=True):
        verify_inclusion(leaf_hash, index, size, proof, root)
    inclusion_verify_us = (time.perf_counter() - began) / proofs * 1e6

    old_roots = [log.root_at(old_size) for old_size in old_sizes]
    began = time.perf_counter()
    for old_size, old_root, proof in zip(old_sizes, old_roots, consistency, strict=True):
        verify_consistency(old_size, size, old_root, root, proof)
    consistency_verify_us = (time.perf_counter() - began) / proofs * 1e6

    return {
        "inclusion_proof_us": inclusion_us,
        "consistency_proof_us": consistency_us,
        "historical_inclusion_proof_us": historical_us,
        "inclusion_verify_us": inclusion_verify_us,
        "consistency_verify_us": consistency_verify_us,
    }


def run(arguments: argparse.Namespace) -> BenchResult:
    with tempfile.TemporaryDirectory(prefix="bench_tlog_") as directory:
        path = Path(directory) / "log.sqlite"
        conn = open_db(path, arguments.journal_mode, arguments.synchronous)
        log = TransparencyLog(SqliteLogNodeStore(conn))
        print(f"appending {arguments.leaves:,} leaves in blocks of {arguments.block_leaves:,}")
        append_s, total_s = run_appends(log, conn, arguments.leaves, arguments.block_leaves)
        root = log.root()
        began = time.perf_counter()
        reopened = TransparencyLog(SqliteLogNodeStore(conn), log.size)
        reopen_ms = (time.perf_counter() - began) * 1e3
        assert reopened.root() == root  # the frontier rebuilt from the store agrees
        print(f"timing {arguments.proofs:,} random proofs of each kind")
        proof_times = time_proofs(reopened, arguments.proofs, arguments.seed)
        conn.close()
        db_bytes = sum(p.stat().st_size for p in Path(directory).iterdir())
    return BenchResult(
        leaves=arguments.leaves,
        block_leaves=arguments.block_leaves,
        journal_mode=arguments.journal_mode,
        synchronous=arguments.synchronous,
        append_s=append_s,
        append_with_leaf_hashing_s=total_s,
        appends_per_s=arguments.leaves / append_s,
        appends_per_s_with_leaf_hashing=arguments.leaves / total_s,
        proofs=arguments.proofs,
        reopen_ms=reopen_ms,
        db_bytes=db_bytes,
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        root_hex=root.hex(),
        **proof_times,
    )


def report(result: BenchResult) -> str:
    append_ok = result.appends_per_s >= APPENDS_PER_SECOND_TARGET
    proof_ok = max(result.inclusion_proof_us, result.consistency_proof_us) < PROOF_US_TARGET
    return "\n".join(
        [
            f"leaves                     {result.leaves:,} (commit every {result.block_leaves:,}; "
            f"journal_mode={result.journal_mode}, synchronous={result.synchronous})",
            f"appends/s amortised        {result.appends_per_s:,.0f}  "
            f"[target >= {APPENDS_PER_SECOND_TARGET:,}: {'met' if append_ok else 'MISSED'}]",
            f"  incl. leaf hashing       {result.appends_per_s_with_leaf_hashing:,.0f}",
            f"inclusion proof at size n  {result.inclusion_proof_us:,.1f} us",
            f"consistency proof to n     {result.consistency_proof_us:,.1f} us  "
            f"[target < {PROOF_US_TARGET:,} us: {'met' if proof_ok else 'MISSED'}]",
            f"inclusion proof, old size  {result.historical_inclusion_proof_us:,.1f} us",
            f"verify inclusion           {result.inclusion_verify_us:,.1f} us",
            f"verify consistency         {result.consistency_verify_us:,.1f} us",
            f"reopen (rebuild frontier)  {result.reopen_ms:,.2f} ms",
            f"database size              {result.db_bytes / 2**20:,.1f} MiB",
            f"peak RSS                   {result.peak_rss_mib:,.1f} MiB",
            f"root                       {result.root_hex}",
        ]
    )


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--block-leaves", type=int, default=1_000)
    parser.add_argument("--proofs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--journal-mode", default="wal", choices=["wal", "delete", "truncate"])
    parser.add_argument("--synchronous", default="normal", choices=["off", "normal", "full"])
    parser.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    result = run(arguments)
    print(report(result))
    if arguments.json is not None:
        arguments.json.write_text(json.dumps(asdict(result), indent=2) + "\n")
        print(f"wrote {arguments.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
