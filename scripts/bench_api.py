"""Where the validators' time goes under ``ledger bench`` load: py-spy on every node during the timed run.

    .venv/bin/pip install py-spy
    .venv/bin/python scripts/bench_api.py --nodes 4 --mode batch --seconds 20 --out bench-results/prof_batch
    .venv/bin/python scripts/bench_api.py --nodes 4 --mode single --seconds 20 --out bench-results/prof_single

Runs the benchmark (``node.bench.run_bench``) on a devnet in a known
directory, attaches ``py-spy record --nonblocking`` to each validator once
the timed load has started, and writes, per node, the collapsed stacks
(OUT/<node>.txt, for flame graphs) and a summary (OUT/summary.json): the
share of samples in each category of work (each sample in the first
category of ``CATEGORIES`` that one of its frames falls in) and the functions with the most
self time. Printed: the same summary over all nodes. Profiling costs some
CPU itself (sampling at --rate Hz), so the tx/s of a profiled run is not a
benchmark figure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node import bench, devnet

CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # A sample goes to the FIRST category one of whose needles is in one of its frames ("function (file:line)"),
    # so the shares add up to 100 %: the specific stages first, what they run inside (transport, HTTP) last.
    ("reads (answers, read authentication)", ("get_account_json", "get_tx_proof_json", "get_transaction_status",
                                              "get_block_json", "read_auth.py", "authenticate (node/api.py")),
    ("execute blocks (proposal, validation: contracts, state reads)", ("_execute (node/app.py", "build_block",
                                                                       "execute_block")),
    ("commit blocks (SQLite rows, state tree, log, fsync)", ("append_block", "commit (node/app.py")),
    ("consensus (votes, proposals, timeouts)", ("node/consensus.py",)),
    ("decode transactions (admission, gossip, proposals)", ("SignedTransaction.decode", "Block.decode")),
    ("admission precheck (state reads)", ("precheck_call",)),
    ("admission: already committed? (tx index)", ("get_tx_location",)),
    ("signature checks of transactions", ("_verify_chunk", "verify_many", "crypto_sign_open", "verify_raw")),
    ("mempool (insert, reap, remove)", ("node/mempool.py",)),
    ("gossip of admitted transactions", ("_gossip_loop",)),
    ("peer transport (frames, encryption)", ("node/transport.py",)),
    ("HTTP server (uvicorn, FastAPI, body parsing)", ("uvicorn/", "starlette/", "fastapi/", "h11", "httptools",
                                                      "node/api.py")),
)


def _wait_for_load(directory: Path, threshold: int, timeout_s: float = 300) -> list[tuple[str, int]]:
    """Once the timed load is going (the log has grown past the setup): [(node name, pid)]."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            nodes = devnet.load_devnet(directory)
            status = httpx.get(f"{nodes[0].api}/v1/status", timeout=2).json()
            if status["log_size"] > threshold:
                return [(node.name, devnet.get_pid(node) or 0) for node in nodes]
        except (devnet.DevnetError, httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.2)
    raise SystemExit("the load did not start")


def _summarise(collapsed: Path) -> dict[str, object]:
    samples = 0
    by_category: Counter[str] = Counter()
    by_self: Counter[str] = Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        by_self[frames[-1]] += count
        category = next((name for name, needles in CATEGORIES
                         if any(needle in frame for frame in frames for needle in needles)), "other")
        by_category[category] += count
    return {"samples": samples,
            "categories_pct": {name: round(100 * n / max(samples, 1), 1) for name, n in by_category.most_common()},
            "top_self_pct": {name: round(100 * n / max(samples, 1), 1) for name, n in by_self.most_common(25)}}


def _report(out: Path, names: list[str], duration_s: int, rate: int, record: dict[str, object]) -> None:
    summary = {name: _summarise(out / f"{name}.txt") for name in names if (out / f"{name}.txt").exists()}
    total: Counter[str] = Counter()
    samples = 0
    for node_summary in summary.values():
        node_samples = int(node_summary["samples"])  # type: ignore[call-overload]
        samples += node_samples
        for name, pct in node_summary["categories_pct"].items():  # type: ignore[attr-defined]
            total[name] += pct * node_samples / 100
    possible = len(names) * duration_s * rate
    overall = {"busy_pct_of_one_core_per_node": round(100 * samples / max(possible, 1), 1),
               "categories_pct": {name: round(100 * n / max(samples, 1), 1) for name, n in total.most_common()}}
    (out / "summary.json").write_text(json.dumps(
        {"bench": record, "duration_s": duration_s, "rate": rate, "overall": overall, "nodes": summary},
        indent=2) + "\n")
    if "tx_per_s" in record:
        print(f"bench (profiled, so slower than unprofiled): {record['tx_per_s']:,.0f} tx/s")  # type: ignore[str-format]
    print(f"validators' threads sampled busy {overall['busy_pct_of_one_core_per_node']} % of the time; "
          "share of their busy samples:")
    for name, pct in overall["categories_pct"].items():  # type: ignore[attr-defined]
        print(f"  {pct:5.1f} %  {name}")
    print(f"per node, with the functions of most self time: {out / 'summary.json'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--mode", choices=bench.MODES, default="batch")
    parser.add_argument("--threads", type=int, default=bench.SINGLE_THREADS)
    parser.add_argument("--reads", type=float, default=0)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--summarise-only", action="store_true", help="only summarise OUT/*.txt again")
    args = parser.parse_args()
    if args.summarise_only:
        previous = json.loads((args.out / "summary.json").read_text())
        _report(args.out, sorted(path.stem for path in args.out.glob("*.txt")), previous["duration_s"],
                previous["rate"], previous["bench"])
        return 0
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        raise SystemExit("py-spy not found: .venv/bin/pip install py-spy")
    args.out.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="ledger-prof-")) / "net"
    record: dict[str, object] = {}
    runner = threading.Thread(target=lambda: record.update(bench.run_bench(
        args.nodes, args.seconds, keep_dir=directory, mode=args.mode, threads=args.threads,
        reads_per_s=args.reads)))
    runner.start()
    senders = 1 if args.mode == "batch" else args.threads
    nodes = _wait_for_load(directory, threshold=senders + 50)
    duration = max(1, args.seconds - 2)
    spies = [subprocess.Popen([py_spy, "record", "--pid", str(pid), "--duration", str(duration), "--rate",
                               str(args.rate), "--nonblocking", "--format", "raw", "--output",
                               str(args.out / f"{name}.txt")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for name, pid in nodes]
    for spy in spies:
        spy.wait()
    runner.join()
    _report(args.out, [name for name, _pid in nodes], duration, args.rate, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
