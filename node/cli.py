"""The ``ledger`` command line (see docs and ../shared/INTERFACE.md for the stable names).

Every failure a user can cause ends in one clear line on stderr and a
non-zero exit code, never a stack trace: 1 when a check failed, 2 when the
command could not run (bad arguments, missing files).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

from audit import cli as audit_cli
from ledger import merkle, smt
from ledger.errors import LedgerError
from ledger.keyfile import save_key
from ledger.keys import PrivateKey
from ledger.state import Account, account_key
from ledger.store import STORE_FILE_NAME, Store
from ledger.verify import verify_store
from node import cli_tx
from node.devchain import build_demo_chain, create_demo_network
from node.progress import ProgressBar

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_CANNOT_RUN = 2


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_CANNOT_RUN
    try:
        return int(args.run(args))
    except LedgerError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_CANNOT_RUN
    except BrokenPipeError:  # e.g. `ledger net status --json | head`
        sys.stderr.close()
        return EXIT_OK


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ledger", description="Permissioned settlement ledger")
    commands = parser.add_subparsers(title="commands")

    demo = commands.add_parser("demo", help="build a demo chain of certified blocks and verify it")
    demo.add_argument("--dir", type=Path, default=Path(".demo"), help="where keys, genesis and data go")
    demo.add_argument("--blocks", type=int, default=50)
    demo.add_argument("--txs-per-block", type=int, default=200)
    demo.add_argument("--fresh", action="store_true", help="delete DIR first")
    demo.set_defaults(run=_run_demo)

    audit_cli.add_command(commands)

    node = commands.add_parser("node", help="run a validator node")
    node_commands = node.add_subparsers(title="node commands")
    node_run = node_commands.add_parser("run", help="run one node in the foreground (what a container runs)")
    node_run.add_argument("--home", type=Path, required=True, help="the node's directory (node.json, key.json, ...)")
    node_run.add_argument("--data-dir", type=Path, help="store and WAL here instead of HOME/data (e.g. a volume)")
    node_run.set_defaults(run=_run_node)

    net = commands.add_parser("net", help="a local network of validators on loopback")
    net_commands = net.add_subparsers(title="net commands")
    net_up = net_commands.add_parser("up", help="create (if needed) and start a local network")
    net_up.add_argument("--nodes", type=int, default=4)
    net_up.add_argument("--dir", type=Path, default=Path(".devnet"))
    net_up.set_defaults(run=_run_net_up)
    net_status = net_commands.add_parser("status", help="each node's height, head, peers, health (exit 1 if any is down)")
    net_status.add_argument("--dir", type=Path, default=Path(".devnet"))
    net_status.add_argument("--json", action="store_true")
    net_status.set_defaults(run=_run_net_status)
    net_down = net_commands.add_parser("down", help="stop the local network cleanly")
    net_down.add_argument("--dir", type=Path, default=Path(".devnet"))
    net_down.set_defaults(run=_run_net_down)

    bench = commands.add_parser("bench", help="end-to-end benchmark on a fresh devnet (committed tx/s, latency)")
    bench.add_argument("--nodes", type=int, default=4)
    bench.add_argument("--seconds", type=int, default=30)
    bench.add_argument("--json", type=Path, help="write one JSON record here")
    bench.add_argument("--window", type=int, default=6000, help="most transactions in flight (lower: latency runs)")
    bench.add_argument("--kill-after", type=float, help="kill -9 one validator this many seconds into the run")
    bench.add_argument("--mode", choices=("batch", "single", "idle"), default="batch",
                       help="batch: 500 per POST /v1/transactions/batch; single: one per POST /v1/transactions; "
                            "idle: no writes (--reads or --flood alone)")
    bench.add_argument("--threads", type=int, default=8,
                       help="--mode single: threads, one sender each (at most 9 + --nodes)")
    bench.add_argument("--client", choices=("stdlib", "httpx"), default="stdlib",
                       help="--mode single: keep-alive connections of http.client (lighter) or httpx.Client")
    bench.add_argument("--reads", type=float, default=0, metavar="PER_S",
                       help="also make signed reads at this rate from another process; p50/p99 per endpoint")
    bench.add_argument("--flood", type=int, default=0, metavar="THREADS",
                       help="run twice: honest load alone, then with THREADS threads flooding one node with "
                            "malformed and badly signed requests")
    bench.set_defaults(run=_run_bench)

    keygen = commands.add_parser("keygen", help="create an Ed25519 key file")
    keygen.add_argument("--name", required=True)
    keygen.add_argument("--out", type=Path, required=True)
    keygen.set_defaults(run=_run_keygen)

    genesis = commands.add_parser(
        "genesis", help="keys, a genesis and a node home per validator, for a network spread over machines",
        description="Writes DIR/<validator>/ (node.json, key.json, genesis.json: copy each to its machine), "
                    "DIR/keys/ and DIR/genesis.json. Refuses a DIR that is not empty.")
    genesis.add_argument("--out", type=Path, required=True, metavar="DIR",
                         help="where to write (must not exist or be empty)")
    genesis.add_argument("--validator", nargs=3, action="append", required=True,
                         metavar=("NAME", "HOST:PEER_PORT", "API_PORT"),
                         help="a validator, the host name its peers dial, and its API port; repeat per validator")
    genesis.add_argument("--bind", metavar="HOST",
                         help="the host nodes listen on (default: each validator's own HOST; 0.0.0.0 in containers)")
    genesis.add_argument("--chain-id", help="the chain's id (default: demo-settlement)")
    genesis.add_argument("--demo-members", action="store_true",
                         help="add the demo members (banks, merchants, auditor, ...) and their keys")
    genesis.set_defaults(run=_run_genesis)

    cli_tx.add_commands(commands)
    return parser


def _run_demo(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    if args.blocks < 1 or args.txs_per_block < 1:
        print("error: --blocks and --txs-per-block must be at least 1", file=sys.stderr)
        return EXIT_CANNOT_RUN
    if args.fresh and directory.exists():
        shutil.rmtree(directory)
    if (directory / "data" / STORE_FILE_NAME).exists():
        print(f"error: {directory} already holds a demo chain; pass --fresh to rebuild it", file=sys.stderr)
        return EXIT_CANNOT_RUN
    network = create_demo_network(directory)
    store = Store.create(directory / "data", network.genesis)
    started = time.monotonic()
    build_demo_chain(store, network, args.blocks, args.txs_per_block, ProgressBar("building"))
    built_s = time.monotonic() - started
    txs = store.count_txs()
    print(f"built {store.head_height} certified blocks, {txs} transactions in {built_s:.1f}s "
          f"({txs / built_s:,.0f} tx/s, fsynced per block) into {directory / 'data'}")
    store.close()

    store = Store.open(directory / "data", network.genesis)  # a reopen: reads the head only
    print(f"reopened: head {store.head_height} {store.head_hash.hex()[:16]}")
    report = verify_store(store, ProgressBar("verifying"))
    print("verification:", report.describe())
    _show_proofs(store)
    store.close()
    return EXIT_OK if report.ok else EXIT_CHECK_FAILED


def _show_proofs(store: Store) -> None:
    """Prove one balance against the head's state root and one transaction against its log root."""
    header = store.head_header
    assert header is not None
    key = account_key("merchant-001")
    value = store.get(key)
    proof = store.tree.get_proof(header.state_root, key)
    smt.verify_proof(header.state_root, key, value, proof)
    account = Account.decode(value) if value else None
    balance = account.get_balance("CNY") if account else 0
    print(f"state proof: merchant-001 holds {balance / 100:,.2f} CNY at height {header.height} "
          f"({len(proof.siblings)} sibling hashes, verified against the header's state root)")
    block = store.get_block(header.height)
    tx_id = block.transactions[0].tx_id
    location = store.get_tx_location(tx_id)
    assert location is not None
    path = store.log.inclusion_proof(location.log_index, header.log_size)
    merkle.verify_inclusion(merkle.hash_leaf(tx_id), location.log_index, header.log_size, path, header.log_root)
    print(f"log proof: tx {tx_id.hex()[:16]} is leaf {location.log_index} of {header.log_size} "
          f"({len(path)} hashes, verified against the header's log root)")


def _run_node(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415
    import logging  # noqa: PLC0415

    from node.config import load_config, load_genesis, load_node_key  # noqa: PLC0415
    from node.service import Node  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(args.home)
    if args.data_dir is not None:
        config = dataclasses.replace(config, data_dir_override=args.data_dir)
    node = Node(config, load_genesis(args.home), load_node_key(args.home))
    asyncio.run(node.run())
    return EXIT_OK


def _run_net_up(args: argparse.Namespace) -> int:
    from node import devnet  # noqa: PLC0415

    ready = devnet.up(args.dir, args.nodes, progress=lambda line: print(line, file=sys.stderr))
    for node, pid, started in ready:
        print(f"{node.name}  {node.api}  pid {pid}{'  (started)' if started else ''}")
    return EXIT_OK


def _run_net_status(args: argparse.Namespace) -> int:
    from node import devnet  # noqa: PLC0415

    rows = []
    for node in devnet.load_devnet(args.dir):
        status = devnet.get_status(node) or {}
        peers = status.get("peers", [])
        rows.append({"name": node.name, "api": node.api, "pid": devnet.get_pid(node), "home": str(node.home),
                     "height": status.get("height"), "head_hash": status.get("head_hash"),
                     "peers_connected": sum(1 for p in peers if p.get("connected")), "peers": len(peers),
                     "healthy": bool(status)})
    all_healthy = all(row["healthy"] for row in rows)
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK if all_healthy else EXIT_CHECK_FAILED
    for row in rows:
        health = "up" if row["healthy"] else ("no answer" if row["pid"] else "down")
        head = (row["head_hash"] or "")[:16]
        print(f"{row['name']:<14} {row['api']:<24} pid {str(row['pid'] or '-'):<8} height {str(row['height'] or '-'):<8}"
              f" head {head or '-':<16} peers {str(row['peers_connected']) + '/' + str(row['peers']) if row['healthy'] else '-':<5}"
              f"  {health}")
    return EXIT_OK if all_healthy else EXIT_CHECK_FAILED


def _run_net_down(args: argparse.Namespace) -> int:
    from node import devnet  # noqa: PLC0415

    stopped = devnet.down(args.dir)
    print(f"stopped {', '.join(stopped) if stopped else 'nothing (no node was running)'}")
    return EXIT_OK


def _run_bench(args: argparse.Namespace) -> int:
    from node import bench  # noqa: PLC0415

    if args.seconds < 1 or not 1 <= args.nodes <= 16:
        print("error: --seconds must be >= 1 and --nodes between 1 and 16", file=sys.stderr)
        return EXIT_CANNOT_RUN
    if not 1 <= args.threads <= 9 + args.nodes or args.reads < 0 or args.flood < 0:
        print(f"error: --threads must be between 1 and {9 + args.nodes}, --reads and --flood >= 0", file=sys.stderr)
        return EXIT_CANNOT_RUN
    if args.kill_after is not None and (args.mode != "batch" or args.flood):
        print("error: --kill-after is for --mode batch without --flood", file=sys.stderr)
        return EXIT_CANNOT_RUN
    return bench.main(args.nodes, args.seconds, args.json, max(args.window, 500), args.kill_after, mode=args.mode,
                      threads=args.threads, reads_per_s=args.reads, flood_threads=args.flood, client=args.client)


def _run_genesis(args: argparse.Namespace) -> int:
    from node import netgen

    validators = [netgen.parse_validator(*triple) for triple in args.validator]
    network = netgen.create_network(args.out, validators, bind_host=args.bind, demo_members=args.demo_members,
                                    chain_id=args.chain_id, genesis_time_ms=int(time.time() * 1000))
    print(f"wrote a genesis of chain {network.genesis.chain_id} ({network.genesis.compute_hash().hex()[:16]}), "
          f"{len(validators)} node homes and {len(network.validator_keys) + len(network.member_keys)} keys "
          f"into {args.out}")
    for validator in validators:
        print(f"  {args.out / validator.name}: peers dial {validator.host}:{validator.peer_port}, "
              f"API on port {validator.api_port}")
    return EXIT_OK


def _run_keygen(args: argparse.Namespace) -> int:
    if args.out.exists():
        print(f"error: {args.out} exists; refusing to overwrite a key", file=sys.stderr)
        return EXIT_CANNOT_RUN
    key = PrivateKey.generate()
    save_key(args.out, args.name, key)
    print(json.dumps({"name": args.name, "public_key": key.public_key.hex(), "file": str(args.out)}))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
