"""Measure how long a block of writes takes to update the state root.

Why: the state tree promises O(k log N) work per block, and the target is a
block of 1,000 writes in under 100 ms with 1,000,000 entries in the state.
This script builds a state of ``--entries`` accounts in an SQLite file
(bulk-loaded in committed batches), reopens it so the caches start cold (as
after a restart), then applies ``--blocks`` blocks of ``--block-writes``
random writes, a mix of updates to existing keys and new keys, each in its
own transaction, the way the node writes a block. Per block it measures
``StateTree.update`` (reading pages, hashing, and handing the new pages to
SQLite) and, separately, the COMMIT (WAL write, and a checkpoint whenever
the WAL passes ``--wal-autocheckpoint`` pages), and reports median and p99,
rows written and read, and the peak RSS of the process.

    .venv/bin/python scripts/bench_state_root.py --entries 1000000 --json out.json

``--db FILE --reuse`` skips the build when FILE already holds a state of
``--entries``; every run starts from the state as built (old roots stay
valid), and each run's blocks differ because the run number seeds them.
Times are integer microseconds; the printed milliseconds are formatted from
them.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import json
import os
import platform
import pstats
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.smt import CACHE_NODES_DEFAULT, EMPTY_HASH, SqliteNodeStore, StateTree  # noqa: E402

LOAD_BATCH_ENTRIES_DEFAULT = 10_000
BLOCKS_DEFAULT = 50
BLOCK_WRITES_DEFAULT = 1_000
NEW_KEYS_PERCENT_DEFAULT = 20
SQLITE_CACHE_KIB_DEFAULT = 65_536
"""SQLite's own page cache; the node's store sets this in production."""
WAL_AUTOCHECKPOINT_PAGES_DEFAULT = 1_000
"""SQLite's default: checkpoint at the first commit after the WAL passes 1,000 pages."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000, help="accounts in the state")
    parser.add_argument("--blocks", type=int, default=BLOCKS_DEFAULT)
    parser.add_argument("--block-writes", type=int, default=BLOCK_WRITES_DEFAULT)
    parser.add_argument("--new-keys-percent", type=int, default=NEW_KEYS_PERCENT_DEFAULT,
                        help="share of a block's writes that create new keys")
    parser.add_argument("--load-batch", type=int, default=LOAD_BATCH_ENTRIES_DEFAULT,
                        help="entries per committed bulk-load batch")
    parser.add_argument("--db", type=Path, default=None,
                        help="SQLite file (default: a fresh file in a temporary dir)")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse --db if it already holds a state of --entries")
    parser.add_argument("--cache-nodes", type=int, default=CACHE_NODES_DEFAULT,
                        help="SqliteNodeStore cache bound (pages)")
    parser.add_argument("--sqlite-cache-kib", type=int, default=SQLITE_CACHE_KIB_DEFAULT)
    parser.add_argument("--wal-autocheckpoint", type=int,
                        default=WAL_AUTOCHECKPOINT_PAGES_DEFAULT)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", type=Path, default=None,
                        help="write cProfile stats of the measured updates to this file")
    parser.add_argument("--json", type=Path, default=None, help="write one result record here")
    return parser.parse_args()


def connect(path: Path, args: argparse.Namespace) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)  # we BEGIN and COMMIT explicitly
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA cache_size=-{args.sqlite_cache_kib}")
    conn.execute(f"PRAGMA wal_autocheckpoint={args.wal_autocheckpoint}")
    conn.execute("CREATE TABLE IF NOT EXISTS bench_meta (name TEXT PRIMARY KEY, value BLOB)")
    return conn


def account_key(index: int) -> bytes:
    return b"account/%d" % index


def account_value(balance_minor: int, nonce: int) -> bytes:
    """What the state layer would store: canonical msgpack of the account."""
    data = msgpack.packb([{"CNY": balance_minor}, nonce], use_bin_type=True)
    assert isinstance(data, bytes)
    return data


def load_state(conn: sqlite3.Connection, args: argparse.Namespace) -> bytes:
    """Insert accounts 0..entries-1 in committed batches, printing progress."""
    tree = StateTree(SqliteNodeStore(conn, cache_nodes_max=args.cache_nodes))
    entries, batch = args.entries, args.load_batch
    root = EMPTY_HASH
    started_ns = time.perf_counter_ns()
    progress_step = max(entries // 10, batch)
    for start in range(0, entries, batch):
        end = min(entries, start + batch)
        changes = {account_key(i): account_value(i, 0) for i in range(start, end)}
        conn.execute("BEGIN")
        root = tree.update(root, changes)
        conn.execute("INSERT OR REPLACE INTO bench_meta VALUES ('root', ?), ('entries', ?)",
                     (root, end))
        conn.execute("COMMIT")
        if end % progress_step == 0 or end == entries:
            elapsed_s = (time.perf_counter_ns() - started_ns) // 1_000_000_000
            print(f"  loaded {end:>9,} / {entries:,} entries  ({elapsed_s} s)", flush=True)
    return root


def load_or_reuse(args: argparse.Namespace, path: Path) -> tuple[bytes, int, int]:
    """The root of a state of ``args.entries`` accounts, the load time in ms, and the run."""
    conn = connect(path, args)
    meta = dict(conn.execute("SELECT name, value FROM bench_meta").fetchall())
    if args.reuse and meta.get("entries") == args.entries:
        run = int(meta.get("runs", 0)) + 1
        conn.execute("INSERT OR REPLACE INTO bench_meta VALUES ('runs', ?)", (run,))
        conn.close()
        print(f"reusing {path} ({args.entries:,} entries), run {run}")
        return meta["root"], 0, run
    assert not meta, f"{path} holds another or a partial state; pass a fresh --db"
    print(f"building {args.entries:,} entries in {path} (batches of {args.load_batch:,})")
    started_ns = time.perf_counter_ns()
    root = load_state(conn, args)
    conn.close()
    return root, (time.perf_counter_ns() - started_ns) // 1_000_000, 0


def make_block(rng: random.Random, next_index: int, args: argparse.Namespace,
               height: int) -> tuple[dict[bytes, bytes | None], int]:
    """One block of writes: updates to random existing accounts and some new ones."""
    changes: dict[bytes, bytes | None] = {}
    while len(changes) < args.block_writes:
        if rng.randrange(100) < args.new_keys_percent:
            changes[account_key(next_index)] = account_value(rng.randrange(10**6), 0)
            next_index += 1
        else:
            index = rng.randrange(next_index)
            changes[account_key(index)] = account_value(rng.randrange(10**12), height)
    return changes, next_index


def run_blocks(args: argparse.Namespace, path: Path, root: bytes, run: int) -> dict[str, list[int]]:
    """Apply and commit the blocks on a fresh connection; per-block measurements."""
    conn = connect(path, args)
    store = SqliteNodeStore(conn, cache_nodes_max=args.cache_nodes)
    tree = StateTree(store)
    rng = random.Random(args.seed * 1_000_003 + run)
    next_index = args.entries
    measured: dict[str, list[int]] = {
        "update_us": [], "commit_us": [], "rows_written": [], "rows_read": []}
    profiler = cProfile.Profile() if args.profile else None
    for height in range(1, args.blocks + 1):
        changes, next_index = make_block(rng, next_index, args, height)
        rows_read, rows_written = store.rows_read, conn.total_changes
        conn.execute("BEGIN")
        started_ns = time.perf_counter_ns()
        if profiler:
            profiler.enable()
        root = tree.update(root, changes)
        if profiler:
            profiler.disable()
        updated_ns = time.perf_counter_ns()
        conn.execute("COMMIT")
        committed_ns = time.perf_counter_ns()
        measured["update_us"].append((updated_ns - started_ns) // 1_000)
        measured["commit_us"].append((committed_ns - updated_ns) // 1_000)
        measured["rows_read"].append(store.rows_read - rows_read)
        measured["rows_written"].append(conn.total_changes - rows_written)
    conn.close()
    if profiler and args.profile:
        profiler.dump_stats(str(args.profile))
        pstats.Stats(str(args.profile)).sort_stats("tottime").print_stats(15)
    return measured


def percentile(values: list[int], percent: int) -> int:
    """Nearest-rank percentile (integer arithmetic)."""
    ordered = sorted(values)
    rank = max(1, -(-percent * len(ordered) // 100))
    return ordered[rank - 1]


def ms(us: int) -> str:
    return f"{us // 1000}.{us % 1000 // 10:02d} ms"


def file_bytes(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def make_record(args: argparse.Namespace, load_ms: int, db_bytes: int,
                measured: dict[str, list[int]]) -> dict[str, Any]:
    update_us, commit_us = measured["update_us"], measured["commit_us"]
    total_us = [update + commit for update, commit in zip(update_us, commit_us)]
    return {
        "entries": args.entries,
        "blocks": args.blocks,
        "block_writes": args.block_writes,
        "new_keys_percent": args.new_keys_percent,
        "load_batch": args.load_batch,
        "load_ms": load_ms,
        "db_bytes": db_bytes,
        "update_p50_us": percentile(update_us, 50),
        "update_p99_us": percentile(update_us, 99),
        "update_first_block_us": update_us[0],
        "commit_p50_us": percentile(commit_us, 50),
        "commit_p99_us": percentile(commit_us, 99),
        "block_total_p50_us": percentile(total_us, 50),
        "block_total_p99_us": percentile(total_us, 99),
        "rows_written_p50": percentile(measured["rows_written"], 50),
        "rows_read_p50": percentile(measured["rows_read"], 50),
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,  # KiB on Linux
        "cache_nodes": args.cache_nodes,
        "sqlite_cache_kib": args.sqlite_cache_kib,
        "wal_autocheckpoint": args.wal_autocheckpoint,
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def print_record(record: dict[str, Any]) -> None:
    print(f"state of {record['entries']:,} entries, {record['blocks']} blocks of "
          f"{record['block_writes']:,} writes ({record['new_keys_percent']}% new keys); "
          f"load took {record['load_ms'] // 1000} s, db {record['db_bytes'] >> 20} MiB")
    print(f"  root update : p50 {ms(record['update_p50_us'])}  p99 {ms(record['update_p99_us'])}"
          f"  first block (cold caches) {ms(record['update_first_block_us'])}")
    print(f"  commit      : p50 {ms(record['commit_p50_us'])}  p99 {ms(record['commit_p99_us'])}")
    print(f"  block total : p50 {ms(record['block_total_p50_us'])}"
          f"  p99 {ms(record['block_total_p99_us'])}")
    print(f"  rows per block (p50): {record['rows_written_p50']:,} written, "
          f"{record['rows_read_p50']:,} read from SQLite (cache misses)")
    print(f"  peak RSS    : {record['peak_rss_kib'] >> 10} MiB")


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-state-") as scratch:
        path = args.db or Path(scratch) / "state.sqlite"
        root, load_ms, run = load_or_reuse(args, path)
        db_bytes = file_bytes(path)
        measured = run_blocks(args, path, root, run)
    record = make_record(args, load_ms, db_bytes, measured)
    print_record(record)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
