"""A store writer that appends deterministic demo blocks until it is killed.

    python tests/crash_writer.py STORE_DIR [--kill-at SQL_PREFIX N]

``tests/test_store_crash.py`` runs this in a subprocess and SIGKILLs it at
random moments. It opens the store (or creates it), then appends blocks
forever and prints ``<height> <block hash hex>`` for each block only after
``append_block`` has returned: a printed height is an acknowledged one, and
the store promises it is durable.

The chain is a function of the height alone, so a writer that resumes after
a kill extends the stored head with exactly the blocks a writer that was
never killed would have written: block 1 issues the demo currencies; block
h > 1 holds ``TXS_PER_BLOCK`` transfers drawn from an RNG seeded with h, and
every sender's nonce is read back from its account in the store.

``--kill-at SQL_PREFIX N`` makes the writer SIGKILL itself as the N-th SQL
statement starting with SQL_PREFIX begins (counted over the whole run): a
crash at an exact point, e.g. just before ``COMMIT`` runs.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
from pathlib import Path

from ledger import store as store_module
from ledger.state import EMPTY_ACCOUNT, Account, account_key
from ledger.store import Store
from ledger.transaction import SignedTransaction
from node.devchain import DemoLoad, DemoNetwork, append_certified_block, create_demo_network

NETWORK_SEED = 2024
TXS_PER_BLOCK = 5
BLOCK_INTERVAL_MS = 1000


def create_network(directory: Path) -> DemoNetwork:
    """The writer's keys and genesis; the same for every writer and for the test."""
    return create_demo_network(directory, seed=NETWORK_SEED)


def compute_timestamp_ms(network: DemoNetwork, height: int) -> int:
    return network.genesis.genesis_time_ms + height * BLOCK_INTERVAL_MS


def compute_block_transactions(store: Store, load: DemoLoad, height: int) -> list[SignedTransaction]:
    """The transactions of block ``height``, given the state the store holds after ``height - 1``."""
    for name in load.nonces:
        data = store.get(account_key(name))
        load.nonces[name] = (EMPTY_ACCOUNT if data is None else Account.decode(data)).nonce
    if height == 1:
        return load.issuance()
    load.rng.seed(f"crash-writer/block/{height}")
    return list(load.transfers(TXS_PER_BLOCK))


def install_kill_at(sql_prefix: str, occurrence: int) -> None:
    """SIGKILL this process as the ``occurrence``-th statement starting with ``sql_prefix`` begins."""
    seen = 0
    open_connection = store_module.connect

    def trace(sql: str) -> None:
        nonlocal seen
        if sql.lstrip().startswith(sql_prefix):
            seen += 1
            if seen == occurrence:
                os.kill(os.getpid(), signal.SIGKILL)

    def connect(path: Path) -> sqlite3.Connection:
        connection = open_connection(path)
        connection.set_trace_callback(trace)
        return connection

    store_module.connect = connect


def main(argv: list[str]) -> int:
    store_dir = Path(argv[1])
    if len(argv) == 5 and argv[2] == "--kill-at":
        install_kill_at(argv[3], int(argv[4]))
    network = create_network(store_dir.parent / "writer-network")
    store = Store.open_or_create(store_dir, network.genesis)
    load = DemoLoad(network)
    while True:
        height = store.head_height + 1
        transactions = compute_block_transactions(store, load, height)
        append_certified_block(store, network, transactions, compute_timestamp_ms(network, height))
        # Only now is the block acknowledged: append_block has committed and fsynced it.
        print(height, store.head_hash.hex(), flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
