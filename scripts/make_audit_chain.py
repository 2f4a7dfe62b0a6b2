"""A large, realistic chain for benchmarking ``ledger audit`` (issue 6), built without consensus.

    python scripts/make_audit_chain.py --out DIR [--txs 1000000] [--block-txs 1000] [--members 1000]
                                       [--seed 1] [--validators 4] [--mix 0.03]
    python scripts/make_audit_chain.py --out DIR --append-blocks N [--block-txs K] [--seed S]

The first form writes a new chain into DIR (which must not exist or be empty);
the second extends the chain in DIR by N blocks of K transactions each (e.g.
1,000 blocks of 10 to measure an incremental audit after a full one).

What is in the chain
--------------------
A genesis like ``ledger net up``'s (the demo members with their roles and
keys, among them ``auditor``, the issuers ``bank-cn``/``bank-us``/``bank-jp``,
the FX provider ``fx-hk`` and the aggregator ``alipay-agg``; the devnet's
20-second "day"; CNY, JPY and USD), plus ``--members`` participants
``m-00000`` ... (at most ~9,970: the genesis allows 10,000 members). Blocks
are executed through the contracts, certified with every validator's key
(no consensus: ``sign_commit``, as ``ledger demo`` does) and appended to the
store with fsync off (``Store.create(..., durable=False)``); the file is
fsynced once at the end. Block timestamps are genesis time + 1 s per height.

- First blocks: the issuers fund every participant in all three currencies
  (3 x members ``accounts.issue``), fx-hk and alipay-agg get liquidity,
  alipay-agg registers merchant-001 and merchant-002 (T+0), fx-hk posts
  quotes CNY->USD, USD->CNY and CNY->JPY.
- Then: ``accounts.transfer`` between random participants (random sender, so
  nonces and accounts are spread; log-uniform amounts of 1 minor unit to
  100,000.00; currency CNY 60 %, USD 30 %, JPY 10 %), and a ``--mix``
  fraction (default 3 %) of other calls: ``fx.pay`` by a participant through
  fx-hk's quotes, ``escrow.lock`` (each posted by its payer two blocks
  later), ``merchant.record_payment`` by alipay-agg through wechat / alipay /
  unionpay (its open batches settled with ``merchant.settle`` every 20
  blocks).
- Balances are funded far above what the transfers can move, and the genesis
  sets no payment or daily limits, so every receipt should be ok; the count of
  failed receipts (by code) is printed at the end and kept in DIR/chain.json.

Layout of DIR
-------------
    DIR/genesis.json        the chain's genesis (chain id ``audit-bench``)
    DIR/keys/<name>.json    every key: validators', demo members' (auditor.json, ...) and participants' (0600)
    DIR/validator-<i>/      a node home per validator, as ``ledger genesis`` writes it: node.json (peer and
                            API ports on 127.0.0.1, chosen free when DIR was made), key.json, genesis.json
    DIR/data/ledger.sqlite  the store (WAL mode; no consensus.wal until a node runs over it)
    DIR/chain.json          how it was made: parameters, transactions, blocks, seconds, failed receipts, runs

Auditing it
-----------
    .venv/bin/ledger audit --data-dir DIR/data [--json] [--no-replay] [--state FILE]
    .venv/bin/ledger audit --node URL --genesis DIR/genesis.json --key DIR/keys/auditor.json   (a node as below)

scripts/bench_audit.py times these (from the data dir, over the API, incrementally).

Serving it over HTTP (one node)
-------------------------------
    .venv/bin/ledger node run --home DIR/validator-0 --data-dir DIR/data
    curl http://127.0.0.1:$(python -c "import json;print(json.load(open('DIR/validator-0/node.json'))['api'].split(':')[1])")/v1/status

The node opens the store as its own (the genesis matches) and serves the
whole chain: ``GET /v1/status``, signed reads of ``/v1/blocks...`` as the
member ``auditor`` with DIR/keys/auditor.json, e.g.
``ledger query block latest --node URL --as auditor --key DIR/keys/auditor.json``.
It holds 1 of the validators' voting power (with the default 4 validators) and
its peers never come up, so it cannot commit: the chain stays exactly as made
(an audit over the API sees the same head as an audit of DIR/data). It does
write DIR/data/consensus.wal (its signer WAL). Stop it with SIGTERM (Ctrl-C).
If its API port is taken, copy DIR/validator-0 elsewhere, edit ``api`` in its
node.json and pass that home with ``--data-dir DIR/data``
(scripts/bench_audit.py does this). Do not append to DIR while a node runs
over it. With ``--validators 1`` the node would be the whole network and add
an empty block every second.

Speed: see the report printed at the end (tx/s of the whole build, one
process; signing, executing and appending each take a share).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contracts import merchant as merchant_contract
from contracts.block_builder import build_block
from contracts.fx import QUOTE_WINDOW_HEIGHTS_MAX
from ledger.block import sign_commit
from ledger.genesis import MEMBERS_MAX, Genesis, Member
from ledger.keyfile import load_key, save_key
from ledger.keys import PrivateKey
from ledger.state import StateView
from ledger.store import STORE_FILE_NAME, Store
from ledger.transaction import SignedTransaction, Transaction
from node import devchain
from node.config import GENESIS_FILE, KEY_FILE, NodeConfig, PeerConfig
from node.devnet import free_ports

CHAIN_ID = "audit-bench"
DAY_MS = 20_000
"""The devnet's day (node/devnet.py), so merchant batches turn over every 20 blocks."""
BLOCK_INTERVAL_MS = 1_000
PARTICIPANT_PREFIX = "m-"
CHAIN_FILE = "chain.json"
DATA_DIR = "data"
KEYS_DIR = "keys"
HOST = "127.0.0.1"

CURRENCY_WEIGHTS = (("CNY", 60), ("USD", 30), ("JPY", 10))
FUNDING_MINOR = {"CNY": 10**12, "USD": 10**12, "JPY": 10**13}
"""Each participant's opening balance: far above what ~1,000 payments of at most 10**7 can move."""
LIQUIDITY_MINOR = 10**15
"""fx-hk's balance in each currency and alipay-agg's in CNY."""
ISSUERS = {"CNY": "bank-cn", "USD": "bank-us", "JPY": "bank-jp"}
AMOUNT_MAX_MINOR = 10**7
FX_PROVIDER = "fx-hk"
FX_QUOTES = (  # quote id, source, target, rate_num / rate_den = target major units per source major unit
    ("cnyusd", "CNY", "USD", 10_000, 71_234),
    ("usdcny", "USD", "CNY", 71_234, 10_000),
    ("cnyjpy", "CNY", "JPY", 2_051, 100),
)
FX_QUOTE_SIZE_MINOR = 10**14
FX_QUOTE_REPOST_BLOCKS = 100_000
AGGREGATOR = "alipay-agg"
MERCHANTS = ("merchant-001", "merchant-002")
CHANNELS = ("wechat", "alipay", "unionpay")
SETTLE_EVERY_BLOCKS = 20
ESCROW_POST_AFTER_BLOCKS = 2
ESCROW_TIMEOUT_BLOCKS = 1_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def participant_names(count: int) -> list[str]:
    return [f"{PARTICIPANT_PREFIX}{i:05d}" for i in range(count)]


# --- the network: genesis, keys, node homes ---------------------------------------------------------------------


def make_network(members: int, validators: int, seed: int) -> devchain.DemoNetwork:
    """The devnet's genesis (demo members, day of 20 s) plus ``members`` participants, all keys from ``seed``."""
    base = devchain.make_demo_network([f"validator-{i}" for i in range(validators)], seed=seed, chain_id=CHAIN_ID,
                                      extra_params={"day_ms": DAY_MS})
    rng = random.Random(f"participants-{seed}")
    extra_keys = {name: PrivateKey(rng.randbytes(32)) for name in participant_names(members)}
    extra = [Member(name, key.public_key, ("participant",)) for name, key in extra_keys.items()]
    genesis = Genesis(base.genesis.chain_id, base.genesis.genesis_time_ms, base.genesis.validator_set,
                      tuple(sorted((*base.genesis.members, *extra), key=lambda member: member.name)),
                      base.genesis.currencies, base.genesis.params)
    return devchain.DemoNetwork(genesis, base.validator_keys, {**base.member_keys, **extra_keys})


def write_network(directory: Path, network: devchain.DemoNetwork) -> None:
    """Node homes as ``ledger genesis`` writes them (loopback, free ports), every key, then genesis.json."""
    names = sorted(network.validator_keys)
    ports = free_ports(2 * len(names))
    addresses = {name: (ports[2 * i], ports[2 * i + 1]) for i, name in enumerate(names)}
    for name in names:
        home = directory / name
        peers = tuple(PeerConfig(peer, HOST, addresses[peer][0], network.validator_keys[peer].public_key)
                      for peer in names if peer != name)
        NodeConfig(home, name, HOST, addresses[name][0], HOST, addresses[name][1], peers).save()
        save_key(home / KEY_FILE, name, network.validator_keys[name])
        network.genesis.save(home / GENESIS_FILE)
    for name, key in {**network.validator_keys, **network.member_keys}.items():
        save_key(directory / KEYS_DIR / f"{name}.json", name, key)
    network.genesis.save(directory / GENESIS_FILE)


def load_network(directory: Path) -> devchain.DemoNetwork:
    genesis = Genesis.load(directory / GENESIS_FILE)
    validator_names = {v.name for v in genesis.validator_set.validators}
    keys = dict(load_key(path) for path in sorted((directory / KEYS_DIR).glob("*.json")))
    return devchain.DemoNetwork(genesis, {n: k for n, k in keys.items() if n in validator_names},
                                {n: k for n, k in keys.items() if n not in validator_names})


# --- the load ------------------------------------------------------------------------------------------------


class Load:
    """Signed, valid transactions: tracks nonces (read from the store on first use) and pending escrows."""

    def __init__(self, network: devchain.DemoNetwork, store: Store, participants: list[str], seed: int,
                 mix: float) -> None:
        self.network = network
        self.store = store
        self.chain_id = network.genesis.chain_id
        self.participants = participants
        self.rng = random.Random(seed)
        self.mix = mix
        self.nonces: dict[str, int] = {}
        self.escrows: list[tuple[int, str, str]] = []  # (lock height, payer, escrow id), posted by the payer later
        self._currencies = [code for code, _weight in CURRENCY_WEIGHTS]
        self._cum_weights = list(itertools.accumulate(weight for _code, weight in CURRENCY_WEIGHTS))
        self.counts: Counter[str] = Counter()

    def sign(self, sender: str, contract: str, method: str, **args: Any) -> SignedTransaction:
        nonce = self.nonces.get(sender)
        if nonce is None:
            nonce = StateView(self.store).get_account(sender).nonce
        self.nonces[sender] = nonce + 1
        self.counts[f"{contract}.{method}"] += 1
        return Transaction(sender, nonce, contract, method, args, 0).sign(self.network.member_keys[sender],
                                                                            self.chain_id)

    def amount(self, low: int = 1, high: int = AMOUNT_MAX_MINOR) -> int:
        """Log-uniform in [low, high]: many small payments, a few large ones."""
        return min(high, max(low, int(math.exp(self.rng.uniform(math.log(low), math.log(high + 1))))))

    def currency(self) -> str:
        return self.rng.choices(self._currencies, cum_weights=self._cum_weights)[0]

    def pair(self) -> tuple[str, str]:
        """Two distinct participants: (payer, payee)."""
        payer, payee = self.rng.sample(self.participants, 2)
        return payer, payee

    # the opening blocks

    def setup(self) -> list[SignedTransaction]:
        """Funding, liquidity, merchants and quotes: issued once, before any payment."""
        txs = [self.sign(ISSUERS[ccy], "accounts", "issue", currency=ccy, to=name, amount_minor=FUNDING_MINOR[ccy])
               for name in self.participants for ccy in ISSUERS]
        txs += [self.sign(ISSUERS[ccy], "accounts", "issue", currency=ccy, to=FX_PROVIDER, amount_minor=LIQUIDITY_MINOR)
                for ccy in ISSUERS]
        txs.append(self.sign("bank-cn", "accounts", "issue", currency="CNY", to=AGGREGATOR,
                             amount_minor=LIQUIDITY_MINOR))
        txs += [self.sign(AGGREGATOR, "merchant", "register_merchant", merchant=m, settlement_cycle=0)
                for m in MERCHANTS]
        txs += self.post_quotes(self.store.head_height + 1)
        return txs

    def post_quotes(self, height: int) -> list[SignedTransaction]:
        """(Re)post fx-hk's quotes, valid from now for the longest window the contract allows."""
        return [self.sign(FX_PROVIDER, "fx", "post_quote", quote_id=quote_id, source_currency=source,
                          target_currency=target, rate_num=num, rate_den=den, spread_bps=25, fee_minor=100,
                          valid_until_height=height + QUOTE_WINDOW_HEIGHTS_MAX - 1,
                          size_target_minor=FX_QUOTE_SIZE_MINOR)
                for quote_id, source, target, num, den in FX_QUOTES]

    # the steady load

    def transfer(self) -> SignedTransaction:
        payer, payee = self.pair()
        return self.sign(payer, "accounts", "transfer", currency=self.currency(), to=payee,
                         amount_minor=self.amount())

    def other(self, height: int, index: int) -> SignedTransaction:
        kind = self.rng.random()
        if kind < 0.4:
            quote_id, source, target, _num, _den = self.rng.choice(FX_QUOTES)
            payer, payee = self.pair()
            return self.sign(payer, "fx", "pay", provider=FX_PROVIDER, quote_id=quote_id, to=payee,
                             source_currency=source, target_currency=target,
                             source_minor=self.amount(100_000), min_target_minor=1)
        if kind < 0.7:
            payer, payee = self.pair()
            escrow_id = f"e{height}-{index}"
            self.escrows.append((height, payer, escrow_id))
            return self.sign(payer, "escrow", "lock", escrow_id=escrow_id, to=payee, currency=self.currency(),
                             amount_minor=self.amount(), timeout_height=height + ESCROW_TIMEOUT_BLOCKS)
        return self.sign(AGGREGATOR, "merchant", "record_payment", merchant=self.rng.choice(MERCHANTS),
                         channel=self.rng.choice(CHANNELS), currency="CNY", amount_minor=self.amount(100),
                         payment_ref=f"p{height}-{index}")

    def housekeeping(self, height: int, room: int) -> list[SignedTransaction]:
        """At a block's start: post escrows locked two blocks ago; every 20 blocks, settle open merchant batches."""
        txs: list[SignedTransaction] = []
        while self.escrows and self.escrows[0][0] <= height - ESCROW_POST_AFTER_BLOCKS and len(txs) < room:
            _locked, payer, escrow_id = self.escrows.pop(0)
            txs.append(self.sign(payer, "escrow", "post", payer=payer, escrow_id=escrow_id))
        if height % SETTLE_EVERY_BLOCKS == 0:
            view = StateView(self.store)
            for merchant in MERCHANTS:
                cursor = merchant_contract.get_cursor(view, AGGREGATOR, merchant, "CNY")
                for _ in range(cursor.next_batch - cursor.first_unsettled):
                    if len(txs) < room:
                        txs.append(self.sign(AGGREGATOR, "merchant", "settle", merchant=merchant, currency="CNY"))
        return txs

    def block(self, height: int, size: int, first: list[SignedTransaction]) -> list[SignedTransaction]:
        """``first`` (already signed), then housekeeping, then payments up to ``size``."""
        txs = first + self.housekeeping(height, size // 4 or 1)
        if height % FX_QUOTE_REPOST_BLOCKS == 0:
            txs += self.post_quotes(height)
        while len(txs) < size:
            txs.append(self.other(height, len(txs)) if self.rng.random() < self.mix else self.transfer())
        return txs


# --- building ------------------------------------------------------------------------------------------------


class Builder:
    def __init__(self, store: Store, network: devchain.DemoNetwork) -> None:
        self.store = store
        self.signers = list(network.validator_keys.items())
        self.failed: Counter[str] = Counter()
        self.blocks = 0
        self.txs = 0

    def append(self, transactions: list[SignedTransaction]) -> None:
        store = self.store
        height = store.head_height + 1
        genesis_ms = store.genesis.genesis_time_ms
        timestamp_ms = genesis_ms + height * BLOCK_INTERVAL_MS
        proposer = store.get_validator_set_at(height).get_proposer(height, 0).name
        # We signed these ourselves a moment ago: skip the check (as a node does for what its mempool checked);
        # the audit checks every signature.
        executed = build_block(store, transactions, proposer, timestamp_ms, already_verified=lambda _id, _key: True)
        for receipt in executed.receipts:
            if not receipt.is_ok:
                self.failed[receipt.code] += 1
        certificate = sign_commit(store.chain_id, executed.block.header, 0, self.signers)
        store.append_block(executed.block, certificate, executed.changes, executed.encoded_receipts)
        self.blocks += 1
        self.txs += len(transactions)


def fsync_store(data_dir: Path) -> None:
    for path in data_dir.iterdir():
        if path.name.startswith(STORE_FILE_NAME) and path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def run_blocks(builder: Builder, load: Load, blocks: int | None, total_txs: int | None, block_txs: int,
               pending: list[SignedTransaction]) -> float:
    """Append the ``pending`` setup transactions, then blocks of ``block_txs`` until ``blocks`` or ``total_txs``."""
    started = last_report = time.monotonic()
    made = 0
    while len(pending) >= block_txs:
        builder.append(pending[:block_txs])
        pending = pending[block_txs:]
    while (blocks is None or made < blocks) and (total_txs is None or builder.txs < total_txs):
        size = block_txs if total_txs is None else min(block_txs, total_txs - builder.txs)
        builder.append(load.block(builder.store.head_height + 1, size, pending))
        pending = []
        made += 1
        now = time.monotonic()
        if now - last_report >= 10:
            last_report = now
            elapsed = now - started
            goal = f"/{total_txs:,}" if total_txs is not None else f" ({made}/{blocks} blocks)"
            log(f"  ... height {builder.store.head_height:,}, {builder.txs:,}{goal} txs, {elapsed:.0f}s, "
                f"{builder.txs / elapsed:,.0f} tx/s, rss {peak_rss_mib():.0f} MiB, failed {sum(builder.failed.values())}")
    return time.monotonic() - started


def create_chain(args: argparse.Namespace) -> dict[str, Any]:
    directory: Path = args.out
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise SystemExit(f"error: {directory} exists and is not empty (use --append-blocks to extend a chain)")
    fixed = len(devchain.DEMO_MEMBERS) + args.validators
    if not 2 <= args.members <= MEMBERS_MAX - fixed:
        raise SystemExit(f"error: --members must be between 2 and {MEMBERS_MAX - fixed} (genesis holds at most "
                         f"{MEMBERS_MAX} members)")
    if args.block_txs < 1 or args.txs < 1 or not 0 <= args.mix <= 1:
        raise SystemExit("error: --txs and --block-txs must be >= 1, --mix in [0, 1]")
    started = time.monotonic()
    network = make_network(args.members, args.validators, args.seed)
    directory.mkdir(parents=True, exist_ok=True)
    write_network(directory, network)
    keys_s = time.monotonic() - started
    log(f"wrote genesis ({len(network.genesis.members)} members, {args.validators} validators), keys and node homes "
        f"in {keys_s:.1f}s")
    store = Store.create(directory / DATA_DIR, network.genesis, durable=False)
    load = Load(network, store, participant_names(args.members), args.seed, args.mix)
    builder = Builder(store, network)
    log(f"building {args.txs:,} transactions in blocks of {args.block_txs:,} ...")
    seconds = run_blocks(builder, load, None, args.txs, args.block_txs, load.setup())
    head = store.head_height
    store.close()
    fsync_store(directory / DATA_DIR)
    run = {"mode": "create", "blocks": builder.blocks, "transactions": builder.txs, "block_txs": args.block_txs,
           "seconds": round(seconds, 2), "tx_per_s": round(builder.txs / seconds), "head_height": head,
           "failed_receipts": dict(builder.failed), "calls": dict(load.counts),
           "peak_rss_mib": round(peak_rss_mib()), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    record = {"chain_id": CHAIN_ID, "members": args.members, "validators": args.validators, "seed": args.seed,
              "mix": args.mix, "transactions": builder.txs, "blocks": head, "runs": [run]}
    (directory / CHAIN_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return run


def append_chain(args: argparse.Namespace) -> dict[str, Any]:
    directory: Path = args.out
    try:
        record = json.loads((directory / CHAIN_FILE).read_text())
    except (OSError, ValueError) as error:
        raise SystemExit(f"error: {directory} holds no chain made by this script ({error})") from error
    if args.append_blocks < 1 or args.block_txs < 1:
        raise SystemExit("error: --append-blocks and --block-txs must be >= 1")
    network = load_network(directory)
    store = Store.open(directory / DATA_DIR, network.genesis)
    # Different seed per run, so appended payments differ from the ones before.
    load = Load(network, store, participant_names(record["members"]), args.seed * 1_000_003 + store.head_height,
                record["mix"])
    builder = Builder(store, network)
    start_height = store.head_height
    log(f"appending {args.append_blocks:,} blocks of {args.block_txs:,} transactions on height {start_height:,} ...")
    # (fx-hk's quotes are re-posted every FX_QUOTE_REPOST_BLOCKS heights, well inside their window.)
    seconds = run_blocks(builder, load, args.append_blocks, None, args.block_txs, [])
    head = store.head_height
    store.close()
    run = {"mode": "append", "from_height": start_height, "blocks": builder.blocks, "transactions": builder.txs,
           "block_txs": args.block_txs, "seconds": round(seconds, 2), "tx_per_s": round(builder.txs / seconds),
           "head_height": head, "failed_receipts": dict(builder.failed), "calls": dict(load.counts),
           "peak_rss_mib": round(peak_rss_mib()), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    record["transactions"] += builder.txs
    record["blocks"] = head
    record["runs"].append(run)
    (directory / CHAIN_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")
    parser.add_argument("--txs", type=int, default=1_000_000, help="transactions in all, setup included (create)")
    parser.add_argument("--block-txs", type=int, default=1_000, help="transactions per block")
    parser.add_argument("--members", type=int, default=1_000, help="participants besides the demo members (create)")
    parser.add_argument("--validators", type=int, default=4, help="validators in the genesis (create)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mix", type=float, default=0.03,
                        help="fraction of fx / escrow / merchant calls among payments (create; append keeps the "
                             "chain's)")
    parser.add_argument("--append-blocks", type=int, metavar="N", help="extend the chain in DIR by N blocks")
    args = parser.parse_args()
    if args.append_blocks is not None:
        run = append_chain(args)
    else:
        run = create_chain(args)
    failed = sum(run["failed_receipts"].values())
    print(f"{run['mode']}: {run['transactions']:,} transactions in {run['blocks']:,} blocks (head {run['head_height']:,}) "
          f"in {run['seconds']:.1f}s = {run['tx_per_s']:,} tx/s; peak RSS {run['peak_rss_mib']} MiB")
    print(f"failed receipts: {failed}" + (f" {run['failed_receipts']}" if failed else ""))
    print(f"calls: {json.dumps(run['calls'], sort_keys=True)}")
    print(f"audit: .venv/bin/ledger audit --data-dir {args.out / DATA_DIR}")
    print(f"serve: .venv/bin/ledger node run --home {args.out / 'validator-0'} --data-dir {args.out / DATA_DIR}")


if __name__ == "__main__":
    main()
