"""``ledger audit``: the auditor's command (INTERFACE.md; docs/AUDITING.md explains the report).

    ledger audit --data-dir DIR [--data-dir DIR ...]         copied or local stores
    ledger audit --node URL [--node URL ...] --genesis FILE --key FILE
    ledger audit --dir DEVNET                                every node of a local devnet, as its auditor
    ledger audit --tx ID (--node URL ... | --data-dir DIR | --dir DEVNET)   one transaction's proof only

Options: ``--state FILE`` (incremental: verify only what is new since the
last run with this file), ``--json``, ``--workers N`` (signature processes,
default: one per core), ``--deep`` (data dirs: also every historical log
node and state-tree page), ``--no-replay`` (data dirs: the structural checks
of the stored state changes only, without the contracts).

Exit codes: 0 intact; 1 a check failed (the report names the first bad
height and why) or a fork was found; 2 the audit could not run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from audit.engine import SourceResult
from audit.run import EXIT_CANNOT_RUN, EXIT_CHECK_FAILED, EXIT_OK, AuditReport, audit_sources, open_node, open_store
from audit.txproof import check_transaction
from ledger.errors import LedgerError
from ledger.genesis import Genesis
from ledger.keyfile import load_key
from ledger.keys import PrivateKey
from ledger.store import Store
from ledger.verify import verify_store
from node.progress import ProgressBar

DEVNET_AUDITOR = "auditor"


class AuditArgumentError(LedgerError):
    """The command line does not say what to audit, or how: exit code 2."""


def add_command(commands: Any) -> None:
    audit = commands.add_parser(
        "audit", help="verify a chain's integrity: against nodes' APIs, copied data dirs or a local devnet",
        description="Checks every block from the genesis (or from the last run's --state): hash links, commit "
                    "certificates, signatures and nonces, transaction and log roots, a full replay through the "
                    "contracts against every state root, receipts and balances; then compares the sources and "
                    "reports forks with the validators who signed both blocks. Exit 0 intact, 1 a check failed, "
                    "2 could not run.")
    where = audit.add_argument_group("what to audit (one kind)")
    where.add_argument("--data-dir", type=Path, action="append", default=[], metavar="DIR",
                       help="a node's data dir (holding ledger.sqlite), or a copy of one; repeatable")
    where.add_argument("--node", action="append", default=[], metavar="URL",
                       help="a node's API URL; repeatable (needs --genesis and --key)")
    where.add_argument("--dir", type=Path, metavar="DEVNET",
                       help="every node of a local devnet, through their APIs, with the devnet's auditor key")
    audit.add_argument("--genesis", type=Path, metavar="FILE",
                       help="the genesis you trust (genesis.json); default for --data-dir: the first store's own")
    audit.add_argument("--key", type=Path, metavar="FILE",
                       help="an auditor's or regulator's key file, for the nodes' signed reads")
    audit.add_argument("--tx", metavar="ID", help="only check this transaction's inclusion proof and certificate")
    audit.add_argument("--state", type=Path, metavar="FILE",
                       help="the auditor's state file: resume from the last verified height (created if missing)")
    audit.add_argument("--json", action="store_true", help="print a JSON report")
    audit.add_argument("--workers", type=int, metavar="N", help="signature-checking processes (default: one per core)")
    audit.add_argument("--deep", action="store_true",
                       help="data dirs: also compare every historical log node and state-tree page with the chain")
    audit.add_argument("--no-replay", action="store_true",
                       help="data dirs: check the recorded state changes against the state roots, without "
                            "re-executing the contracts (faster, proves less)")
    audit.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except AuditArgumentError as error:
        print(f"error: {error.detail}", file=sys.stderr)
        return EXIT_CANNOT_RUN


def _run(args: argparse.Namespace) -> int:
    kinds = [kind for kind, given in (("--data-dir", args.data_dir), ("--node", args.node), ("--dir", args.dir))
             if given]
    if len(kinds) != 1:
        raise AuditArgumentError("invalid_argument", "say what to audit: --data-dir DIR ..., --node URL ... "
                                 "or --dir DEVNET (one kind)")
    if args.workers is not None and not 0 <= args.workers <= 64:
        raise AuditArgumentError("invalid_argument", "--workers is between 0 and 64")
    if args.data_dir:
        found = _data_dir_genesis(args)
        if found is None:
            return _report_unreadable(args)
        genesis, anchor = found
        if args.tx:
            return _print_tx(check_transaction(args.tx, genesis, store_dir=args.data_dir[0]), args.json)
        if args.no_replay:
            if args.state is not None or args.deep:
                raise AuditArgumentError("invalid_argument", "--no-replay checks stores only: without --state "
                                         "and --deep")
            return _run_no_replay(args, genesis, anchor)
        openers = [(str(d), "data-dir", open_store(d)) for d in args.data_dir]
    else:
        genesis, anchor, urls, member, key = _node_access(args)
        if args.no_replay or args.deep:
            raise AuditArgumentError("invalid_argument", "--no-replay and --deep are for --data-dir")
        if args.tx:
            return _print_tx(check_transaction(args.tx, genesis, url=urls[0], member=member, key=key), args.json)
        openers = [(url, "node", open_node(url, member, key)) for url in urls]
    report = audit_sources(genesis, openers, anchor=anchor, state_file=args.state, workers=args.workers,
                           progress=lambda name: None if args.json else ProgressBar(f"auditing {name}"))
    if args.deep and report.ok:
        _deep_checks(args.data_dir, genesis, report, args.json)
    _print_report(report, args.json)
    return report.exit_code


def _report_unreadable(args: argparse.Namespace) -> int:
    """No data dir holds a readable genesis (and none was given): say what is wrong with each."""
    report = AuditReport(anchor="nothing: no genesis given and none readable in the data dirs")
    for directory in args.data_dir:
        result = SourceResult(str(directory), "data-dir")
        report.sources.append(result)
        try:
            Store.read_genesis(directory)
        except LedgerError as error:
            if error.code == "store_not_found":
                result.cannot_run(error.detail)
            else:
                result.fail(error, error.height if error.height is not None else 0)
    _print_report(report, args.json)
    return report.exit_code


def _data_dir_genesis(args: argparse.Namespace) -> tuple[Genesis, str] | None:
    if args.genesis is not None:
        return _load_genesis(args.genesis), f"the genesis in {args.genesis}"
    for directory in args.data_dir:
        try:
            genesis = Store.read_genesis(directory)
        except LedgerError:
            continue  # this one's own audit will say what is wrong with it
        return genesis, (f"the genesis stored in {directory} (hash {genesis.compute_hash().hex()[:16]}; "
                         "pass --genesis FILE to anchor on your own copy)")
    return None


def _load_genesis(path: Path) -> Genesis:
    try:
        return Genesis.load(path)
    except (OSError, LedgerError, ValueError) as error:
        raise AuditArgumentError("invalid_argument", f"cannot read the genesis {path}: {error}") from error


def _node_access(args: argparse.Namespace) -> tuple[Genesis, str, list[str], str, PrivateKey]:
    """Genesis, anchor, URLs and the auditor's key for --node or --dir."""
    if args.dir is not None:
        from node.devnet import load_devnet  # noqa: PLC0415

        if not (args.dir / "devnet.json").exists():
            raise AuditArgumentError("invalid_argument", f"{args.dir} is not a devnet (no devnet.json)")
        urls = [node.api for node in load_devnet(args.dir)]
        genesis_path = args.genesis or args.dir / "genesis.json"
        key_path = args.key or args.dir / "keys" / f"{DEVNET_AUDITOR}.json"
    else:
        urls = list(args.node)
        if args.genesis is None or args.key is None:
            raise AuditArgumentError("invalid_argument", "--node needs --genesis FILE (the genesis you trust) and "
                                     "--key FILE (an auditor's or regulator's key, for signed reads)")
        genesis_path, key_path = args.genesis, args.key
    genesis = _load_genesis(genesis_path)
    try:
        member, key = load_key(key_path)
    except (OSError, LedgerError, ValueError) as error:
        raise AuditArgumentError("invalid_argument", f"cannot read the key {key_path}: {error}") from error
    return genesis, f"the genesis in {genesis_path} (hash {genesis.compute_hash().hex()[:16]})", urls, member, key


def _run_no_replay(args: argparse.Namespace, genesis: Genesis, anchor: str) -> int:
    """The structural audit of stored state changes (ledger.verify), without the contracts."""
    report = AuditReport(anchor=anchor)
    for directory in args.data_dir:
        result = SourceResult(str(directory), "data-dir", replayed=False)
        report.sources.append(result)
        _verify_store_into(directory, genesis, result, None if args.json else ProgressBar(f"verifying {directory}"))
    _print_report(report, args.json)
    return report.exit_code


def _verify_store_into(directory: Path, genesis: Genesis, result: SourceResult, progress: Any) -> None:
    started = time.monotonic()
    try:
        store = Store.open(directory, genesis)
    except LedgerError as error:
        if error.code == "store_not_found":
            result.cannot_run(error.detail)
        else:
            result.fail(error, error.height if error.code != "genesis_mismatch" else 0)
        return
    try:
        verified = verify_store(store, progress)
    finally:
        store.close()
        result.seconds += time.monotonic() - started
    result.blocks = max(result.blocks, verified.blocks_verified)
    result.transactions = max(result.transactions, verified.transactions_verified)
    result.head_height = verified.head_height
    result.head_hash = verified.head_hash.hex()
    if not verified.ok:
        result.ok = False
        result.height = verified.failure_height
        result.code = verified.failure_code
        result.detail = verified.failure_detail


def _deep_checks(directories: list[Path], genesis: Genesis, report: AuditReport, quiet: bool) -> None:
    for directory, result in zip(directories, report.sources):
        _verify_store_into(directory, genesis, result, None if quiet else ProgressBar(f"deep check {directory}"))
        if result.ok:
            result.notes.append("deep: every stored log node and state-tree page matches the verified chain")


def _print_report(report: AuditReport, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        for line in report.describe():
            print(line)


def _print_tx(outcome: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(outcome, indent=2))
    elif outcome["ok"]:
        print(f"verified: tx {outcome['tx_id']} is leaf {outcome['log_index']} of the log of {outcome['log_size']} "
              f"in block {outcome['height']} ({outcome['path_hashes']} hashes), certified by "
              f"{', '.join(outcome['signers'])} ({outcome['power']} of {outcome['total_power']} voting power)")
    elif outcome.get("could_run", True):
        print(f"FAILED: tx {outcome['tx_id']}: {outcome['code']}: {outcome['detail']}")
    else:
        print(f"could not run: {outcome['detail']}", file=sys.stderr)
    if outcome["ok"]:
        return EXIT_OK
    return EXIT_CHECK_FAILED if outcome.get("could_run", True) else EXIT_CANNOT_RUN


__all__ = ["add_command", "run"]
