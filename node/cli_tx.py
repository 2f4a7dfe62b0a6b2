"""``ledger tx ...`` and ``ledger query ...``: a person's way to pay and to look.

Both talk to nodes through ``node.client.Client``. The nodes, the keys and
the genesis come from a devnet directory (``--dir``, default ``.devnet``)
unless given: ``--node URL`` (repeatable) and ``--key FILE`` (a key file
names its member). Amounts are typed as people write them, ``12.34 CNY``,
and converted exactly with the currency's exponent from the chain;
``12.345 CNY`` is refused, never rounded.

Exit codes: 0 done; 1 the node refused the request or the transaction
failed (the message gives the stable code); 2 the command could not run
(bad arguments, no key, no node reachable).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ledger.amounts import format_amount, parse_decimal, split_amount
from ledger.errors import LedgerError
from ledger.genesis import Genesis
from ledger.keyfile import load_key
from ledger.proofs import TxInclusion
from node.client import ApiError, Client, TxStatus

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_CANNOT_RUN = 2


class CliError(LedgerError):
    """A ``tx``/``query`` command that cannot run as asked (no key, no node, bad arguments)."""


def add_commands(commands: Any) -> None:
    tx = commands.add_parser("tx", help="sign and submit a transaction (transfer, issue, redeem, call)")
    kinds = tx.add_subparsers(title="kinds", required=True)
    transfer = kinds.add_parser("transfer", help="pay another member", description="ledger tx transfer --from "
                                "alipay-agg --to merchant-001 --amount '12.34 CNY' --wait")
    _tx_options(transfer, to=True)
    transfer.set_defaults(run=_run_tx, contract="accounts", method="transfer")
    issue = kinds.add_parser("issue", help="create money (a member with the role issuer:<CCY>)")
    _tx_options(issue, to=True)
    issue.set_defaults(run=_run_tx, contract="accounts", method="issue")
    redeem = kinds.add_parser("redeem", help="take money out of circulation")
    _tx_options(redeem, to=False)
    redeem.set_defaults(run=_run_tx, contract="accounts", method="redeem")
    call = kinds.add_parser("call", help="any contract method with JSON arguments (integers only, no floats)")
    _common(call)
    call.add_argument("--from", dest="sender", help="the signing member (its key from DIR/keys/)")
    call.add_argument("--wait", action="store_true", help="return when committed and print the receipt")
    call.add_argument("contract")
    call.add_argument("method")
    call.add_argument("--args", default="{}", help='JSON object, e.g. \'{"to": "bank-cn", "amount_minor": 5}\'')
    call.set_defaults(run=_run_tx)

    query = commands.add_parser("query", help="read an account, a transaction or a block (signed read)")
    things = query.add_subparsers(title="what", required=True)
    account = things.add_parser("account", help="balances and next nonce (owner, auditors, regulators)")
    account.add_argument("name")
    account.add_argument("--proof", action="store_true", help="verify the balances against a certified header")
    _reader_options(account)
    account.set_defaults(run=_run_query_account)
    tx_query = things.add_parser("tx", help="a transaction's status and receipt")
    tx_query.add_argument("tx_id")
    tx_query.add_argument("--proof", action="store_true", help="verify its inclusion against a certified header")
    _reader_options(tx_query)
    tx_query.set_defaults(run=_run_query_tx)
    block = things.add_parser("block", help="a block's header, certificate and transactions")
    block.add_argument("height", help="a height, or 'latest'")
    _reader_options(block)
    block.set_defaults(run=_run_query_block)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, default=Path(".devnet"), help="devnet directory (nodes, keys, genesis)")
    parser.add_argument("--node", action="append", metavar="URL", help="a node's API URL (repeat to fail over)")
    parser.add_argument("--key", type=Path, metavar="FILE", help="a key file (default: DIR/keys/<member>.json)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _tx_options(parser: argparse.ArgumentParser, *, to: bool) -> None:
    _common(parser)
    parser.add_argument("--from", dest="sender", help="the signing member (its key from DIR/keys/)")
    if to:
        parser.add_argument("--to", required=True, help="the receiving member")
    parser.add_argument("--amount", required=True, help="e.g. '12.34 CNY' (exact: at most the currency's decimals)")
    parser.add_argument("--wait", action="store_true", help="return when committed and print the receipt")


def _reader_options(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--as", dest="reader", help="the member who signs the read (default: the account's "
                        "owner if its key is at hand, else auditor)")


# --- wiring ---


def _client(args: argparse.Namespace, member: str | None) -> Client:
    """A client of ``--node`` URLs or the devnet's, signing as ``member`` (or as ``--key``'s member)."""
    urls = args.node
    if not urls:
        from node.devnet import load_devnet  # noqa: PLC0415

        urls = [node.api for node in load_devnet(args.dir)]
    if args.key is not None:
        name, key = load_key(args.key)
        if member is not None and member != name:
            raise CliError("invalid_argument", f"--key {args.key} is {name}'s key, not {member}'s")
        return Client(urls, member=name, key=key)
    if member is None:
        raise CliError("invalid_argument", "say who signs: --from NAME (key in DIR/keys/) or --key FILE")
    path = args.dir / "keys" / f"{member}.json"
    if not path.exists():
        raise CliError("invalid_argument", f"no key for {member} at {path}: pass --key FILE")
    return Client(urls, member=member, key=load_key(path)[1])


def _exponents(client: Client) -> dict[str, int]:
    return {c["code"]: c["exponent"] for c in client.status().get("currencies", [])}


def _minor_units(client: Client, text: str) -> tuple[int, str]:
    number, currency = split_amount(text)
    exponents = _exponents(client)
    if currency not in exponents:
        raise CliError("unknown_currency", f"{currency} is not a currency of this chain ({', '.join(exponents)})")
    return parse_decimal(number, exponents[currency], currency), currency


def _guard(action: Any) -> int:
    """Run ``action``; a node's refusal is exit 1 with its code, an unreachable node exit 2."""
    try:
        return int(action())
    except ApiError as error:
        if error.status == 0:
            print(f"error: {error.detail}", file=sys.stderr)
            return EXIT_CANNOT_RUN
        print(f"refused: {error.code}: {error.detail} (HTTP {error.status})", file=sys.stderr)
        return EXIT_REFUSED


# --- tx ---


def _run_tx(args: argparse.Namespace) -> int:
    def act() -> int:
        with _client(args, args.sender) as client:
            if args.method in ("transfer", "issue", "redeem") and args.contract == "accounts" and \
                    getattr(args, "amount", None) is not None:
                amount, currency = _minor_units(client, args.amount)
                call_args: dict[str, Any] = {"amount_minor": amount, "currency": currency}
                if getattr(args, "to", None):
                    call_args["to"] = args.to
            else:
                call_args = _json_args(args.args)
            status = client.call(args.contract, args.method, call_args, wait=args.wait)
            return _print_tx(client, status, args.json, waited=args.wait)

    return _guard(act)


def _json_args(text: str) -> dict[str, Any]:
    def no_floats(value: str) -> Any:
        raise CliError("invalid_argument", f"{value} is not an integer: amounts are integer minor units")

    try:
        value = json.loads(text, parse_float=no_floats)
    except json.JSONDecodeError as error:
        raise CliError("invalid_argument", f"--args is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise CliError("invalid_argument", "--args must be a JSON object")
    return value


def _print_tx(client: Client, status: TxStatus, as_json: bool, waited: bool) -> int:
    record = {"tx_id": status.tx_id.hex(), "status": status.status, "height": status.height, "index": status.index,
              "code": status.code, "events": [{"name": e.name, "data": e.data} for e in status.events]}
    if as_json:
        print(json.dumps(record, indent=2))
    elif status.status in ("committed", "failed"):
        where = f"at height {status.height}, index {status.index}"
        print(f"{status.status} {where}: tx {status.tx_id.hex()}" + (f"  error {status.code}" if status.code else ""))
        exponents = _exponents(client) if status.events else {}
        for event in status.events:
            print(f"  {describe_event(event.name, event.data, exponents)}")
    else:
        print(f"{'submitted' if not waited else status.status}: tx {status.tx_id.hex()}"
              + ("" if waited else "  (ledger query tx ID, or --wait, to see it committed)"))
    if status.status == "failed":
        return EXIT_REFUSED
    if waited and status.status != "committed":
        print(f"not committed yet ({status.status}); it may still be: ledger query tx {status.tx_id.hex()}",
              file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK


def describe_event(name: str, data: dict[str, Any], exponents: dict[str, int]) -> str:
    parts = []
    currency = data.get("currency")
    for key, value in data.items():
        if key.endswith("_minor") and isinstance(value, int) and currency in exponents:
            parts.append(f"{key[:-6]} {format_amount(value, exponents[currency], currency)}")
        elif key != "currency" or not any(k.endswith("_minor") for k in data):
            parts.append(f"{key} {value}")
    return f"{name}: " + ", ".join(parts)


# --- query ---


def _default_reader(args: argparse.Namespace, owner: str | None) -> str | None:
    if args.reader:
        return str(args.reader)
    if args.key is not None:
        return None
    if owner and (args.dir / "keys" / f"{owner}.json").exists():
        return owner
    return "auditor"


def _genesis(args: argparse.Namespace) -> Genesis:
    path = args.dir / "genesis.json"
    if not path.exists():
        raise CliError("invalid_argument", f"--proof needs the chain's genesis (trusted): none at {path}")
    return Genesis.load(path)


def _run_query_account(args: argparse.Namespace) -> int:
    def act() -> int:
        with _client(args, _default_reader(args, args.name)) as client:
            info = client.get_account(args.name, proof=args.proof)
            verified_at = None
            if args.proof:
                assert info.proof is not None
                genesis = _genesis(args)
                info.proof.verify(genesis.chain_id, genesis.validator_set)
                verified_at = info.height
            if args.json:
                print(json.dumps({"name": info.name, "height": info.height, "nonce": info.nonce,
                                  "next_nonce": info.next_nonce, "balances_minor": info.balances,
                                  "balances": info.display, "proof_verified": verified_at is not None}, indent=2))
                return EXIT_OK
            print(f"{info.name} at height {info.height}   next nonce {info.next_nonce}")
            for currency in sorted(info.display):
                print(f"  {info.display[currency]:>32}")
            if not info.display:
                print("  (no balances)")
            if verified_at is not None:
                print(f"verified: these balances are in the state root of block {verified_at}, whose certificate "
                      "carries more than 2/3 of the genesis validators' power")
            return EXIT_OK

    return _guard(act)


def _run_query_tx(args: argparse.Namespace) -> int:
    def act() -> int:
        try:
            tx_id = bytes.fromhex(args.tx_id)
        except ValueError:
            raise CliError("invalid_argument", "a transaction id is 64 hex digits") from None
        with _client(args, _default_reader(args, None)) as client:
            status = client.get_transaction(tx_id)
            code = _print_tx(client, status, args.json, waited=True) if status.is_final else _print_pending(status)
            if args.proof and status.is_final:
                genesis = _genesis(args)
                inclusion: TxInclusion = client.get_tx_proof(tx_id)
                header = inclusion.verify(genesis.chain_id, genesis.validator_set)
                print(f"verified: leaf {inclusion.log_index} of the log of {header.log_size} in certified block "
                      f"{header.height} ({len(inclusion.path)} hashes)")
            return code

    return _guard(act)


def _print_pending(status: TxStatus) -> int:
    print(f"{status.status}: tx {status.tx_id.hex()}")
    return EXIT_OK if status.status == "pending" else EXIT_REFUSED


def _run_query_block(args: argparse.Namespace) -> int:
    def act() -> int:
        height = args.height
        if height != "latest" and not height.isdigit():
            raise CliError("invalid_argument", "a block height is a number, or 'latest'")
        with _client(args, _default_reader(args, None)) as client:
            block = client.get_block(height)
            if args.json:
                print(json.dumps(block, indent=2))
                return EXIT_OK
            header = block["header"]
            signers = ", ".join(s["validator"] for s in block["certificate"]["signatures"])
            print(f"block {block['height']}  hash {block['hash']}")
            print(f"  parent     {header['parent_hash']}\n  proposer   {header['proposer']}   "
                  f"time {header['timestamp_ms']} ms\n  tx root    {header['tx_root']}   ({header['tx_count']} "
                  f"transactions)\n  log        size {header['log_size']}  root {header['log_root']}\n"
                  f"  state root {header['state_root']}\n  certified  round {block['certificate']['round']} "
                  f"by {signers}")
            for tx_id in block["transactions"][:20]:
                print(f"  tx {tx_id}")
            if len(block["transactions"]) > 20:
                print(f"  ... and {len(block['transactions']) - 20} more (--json for all)")
            return EXIT_OK

    return _guard(act)


__all__ = ["add_commands", "describe_event"]
