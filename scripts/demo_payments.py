"""Settle payments on a running devnet and show them committed on every node.

    python scripts/demo_payments.py [--dir .devnet] [--transfers 200]

Issues CNY, USD and JPY from their issuer banks, then pays merchants from the
aggregator through the HTTP API, waits for commitment, prints receipts, and
shows that every validator holds the same head. (The cross-border FX leg,
``scripts/demo_crossborder.py``, comes with the FX contract.)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node import devnet  # noqa: E402
from node.client import ApiError, Client  # noqa: E402
from node.devchain import DemoLoad, load_demo_network  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path(".devnet"))
    parser.add_argument("--transfers", type=int, default=200)
    args = parser.parse_args()
    nodes = devnet.load_devnet(args.dir)
    network = load_demo_network(args.dir)
    load = DemoLoad(network, seed=int(time.time()))
    # The auditor reads every receipt and account (docs/SECURITY.md: owners, auditors, regulators).
    with Client.from_devnet(args.dir, "auditor") as client:
        for sender in load.nonces:  # resume after earlier runs: nonces come from the chain
            load.nonces[sender] = client.get_account(sender).next_nonce
        issuance = load.issuance()
        transfers = list(load.transfers(args.transfers))
        started = time.monotonic()
        results = client.submit_batch(issuance + transfers)
        errors = [r for r in results if isinstance(r, ApiError)]
        if errors:
            print(f"{len(errors)} submissions refused, first: {errors[0]}", file=sys.stderr)
            return 1
        print(f"submitted {len(results)} signed transactions to {nodes[0].api} (and peers by gossip)")
        last = client.wait_for(transfers[-1].tx_id, timeout_s=30)
        if last.status != "committed":
            print(f"not committed within 30 s: {last}", file=sys.stderr)
            return 1
        print(f"all committed in {time.monotonic() - started:.2f}s; last one at height {last.height}")
        for signed in issuance:
            receipt = client.get_transaction(signed.tx_id)
            event = receipt.events[0]
            print(f"  height {receipt.height:>4}  {signed.body.sender:<9} issued {event.data['amount_minor']:>16,} "
                  f"minor units of {event.data['currency']} to {event.data['to']}")
        print(f"  ... and {len(transfers)} CNY transfers from alipay-agg to merchants")
    time.sleep(1.5)
    heads = {}
    for node in nodes:
        status = devnet.get_status(node) or {}
        heads[node.name] = (status.get("height"), (status.get("head_hash") or "")[:16])
        print(f"  {node.name:<12} height {status.get('height')}  head {heads[node.name][1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
