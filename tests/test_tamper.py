"""Tamper detection: damage a closed store's SQLite file, and the damage must be named.

One small chain (13 blocks: the issuance, then 12 blocks of 20 transfers,
all from fixed seeds) is built and closed once. Each case copies it, changes
the database directly with sqlite3 (a flipped byte in a BLOB, a replaced
value, a deleted or swapped row), and reopens it. Either ``Store.open``
refuses it, naming the height (damage to the head, which is all that opening
checks), or ``verify_store`` reports ``ok=False`` with the exact height of
the first damaged block (or of the damaged row's last write) and a code
that says what is wrong.

While the chain is built, the heights that first wrote each state-tree node
and each log node are recorded, so a flipped node has an exact expected
height too.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger.block import BlockHeader, CommitCertificate, compute_tx_root
from ledger.errors import LedgerError
from ledger.state import Account, Balance, account_key
from ledger.store import STORE_FILE_NAME, Store, _decode_transactions, _encode_transactions
from ledger.verify import verify_store
from node.cli import main
from node.devchain import DemoLoad, append_certified_block, create_demo_network

NETWORK_SEED = 31
TRANSFER_BLOCKS = 12
TXS_PER_BLOCK = 20
HEAD = TRANSFER_BLOCKS + 1
"""Block 1 is the issuance."""
MIDDLE = 6
"""The block most cases damage."""
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class BuiltChain:
    """The intact store, and what the cases need to know about it."""

    directory: Path
    state_node_heights: dict[bytes, int]
    """State-tree node hash -> the height that first wrote it (0: genesis)."""
    log_node_heights: dict[tuple[int, int], int]
    """Log node (level, index) -> the height that wrote it."""


@dataclass(frozen=True)
class Expected:
    """Where the damage must be caught: at ``open`` or by ``verify``, at which height, with which code."""

    stage: str
    height: int
    codes: frozenset[str]


def at_open(height: int, *codes: str) -> Expected:
    return Expected("open", height, frozenset(codes))


def at_verify(height: int, *codes: str) -> Expected:
    return Expected("verify", height, frozenset(codes))


@pytest.fixture(scope="module")
def built_chain(tmp_path_factory: pytest.TempPathFactory) -> BuiltChain:
    root = tmp_path_factory.mktemp("tamper")
    network = create_demo_network(root / "network", seed=NETWORK_SEED)
    store = Store.create(root / "data", network.genesis)
    state_node_heights = {node_hash: 0 for node_hash in read_state_node_hashes(store)}
    log_node_heights: dict[tuple[int, int], int] = {}
    load = DemoLoad(network)
    for height in range(1, HEAD + 1):
        transactions = load.issuance() if height == 1 else list(load.transfers(TXS_PER_BLOCK))
        append_certified_block(store, network, transactions, network.genesis.genesis_time_ms + height * 1000)
        for node_hash in read_state_node_hashes(store):
            state_node_heights.setdefault(node_hash, height)
        for node in store._conn.execute("SELECT level, idx FROM log_nodes"):  # noqa: SLF001
            log_node_heights.setdefault((node[0], node[1]), height)
    assert verify_store(store).ok
    store.close()
    return BuiltChain(root / "data", state_node_heights, log_node_heights)


def read_state_node_hashes(store: Store) -> list[bytes]:
    return [bytes(row[0]) for row in store._conn.execute("SELECT hash FROM state_nodes")]  # noqa: SLF001


# --- tampering helpers: each changes the database file directly ---


def flip_byte(data: bytes, index: int) -> bytes:
    changed = bytearray(data)
    changed[index] ^= 0x01
    return bytes(changed)


def read_block_column(db: sqlite3.Connection, column: str, height: int) -> bytes:
    return bytes(db.execute(f"SELECT {column} FROM blocks WHERE height = ?", (height,)).fetchone()[0])


def write_block_column(db: sqlite3.Connection, column: str, height: int, value: bytes) -> None:
    db.execute(f"UPDATE blocks SET {column} = ? WHERE height = ?", (value, height))


def flip_block_byte(column: str, height: int, index: int = -1) -> Callable[[sqlite3.Connection, BuiltChain], None]:
    def tamper(db: sqlite3.Connection, chain: BuiltChain) -> None:
        write_block_column(db, column, height, flip_byte(read_block_column(db, column, height), index))
    return tamper


def read_state_row_height(db: sqlite3.Connection, key: bytes) -> int:
    return int(db.execute("SELECT height FROM state WHERE key = ?", (key,)).fetchone()[0])


def flip_state_row_byte(db: sqlite3.Connection, chain: BuiltChain) -> None:
    key = account_key("bank-jp")
    value = bytes(db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()[0])
    db.execute("UPDATE state SET value = ? WHERE key = ?", (flip_byte(value, len(value) // 2), key))


def change_balance(db: sqlite3.Connection, chain: BuiltChain) -> None:
    """A well-formed Account with one more minor unit of CNY than the chain gave it."""
    key = account_key("merchant-001")
    account = Account.decode(bytes(db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()[0]))
    richer = account.with_balance("CNY", account.get_balance("CNY") + 1)
    assert richer != account and Account.decode(richer.encode()) == richer
    db.execute("UPDATE state SET value = ? WHERE key = ?", (richer.encode(), key))


def add_foreign_balance(db: sqlite3.Connection, chain: BuiltChain) -> None:
    """A balance in a currency the account never held (the supply check would also see it)."""
    key = account_key("auditor")
    account = Account.decode(bytes(db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()[0]))
    forged = dataclasses.replace(account, balances=(Balance("USD", 1),))
    db.execute("UPDATE state SET value = ? WHERE key = ?", (forged.encode(), key))


def delete_state_row(db: sqlite3.Connection, chain: BuiltChain) -> None:
    db.execute("DELETE FROM state WHERE key = ?", (account_key("bank-jp"),))


def delete_block(height: int) -> Callable[[sqlite3.Connection, BuiltChain], None]:
    def tamper(db: sqlite3.Connection, chain: BuiltChain) -> None:
        db.execute("DELETE FROM blocks WHERE height = ?", (height,))
    return tamper


def swap_blocks(db: sqlite3.Connection, chain: BuiltChain) -> None:
    columns = ("hash", "header", "transactions", "certificate")
    rows = {height: [read_block_column(db, column, height) for column in columns] for height in (5, 8)}
    for height, other in ((5, 8), (8, 5)):
        for column, value in zip(columns, rows[other]):
            write_block_column(db, column, height, value)


def drop_transaction(rewrite_above: bool) -> Callable[[sqlite3.Connection, BuiltChain], None]:
    """Drop block MIDDLE's last transaction and rewrite its header (tx root, count, hash) to match.

    With ``rewrite_above`` the blocks above are relinked too (parent hash, hash),
    up to the head; only the certificates, which need the validators' keys, stay.
    """
    def tamper(db: sqlite3.Connection, chain: BuiltChain) -> None:
        transactions = _decode_transactions(read_block_column(db, "transactions", MIDDLE))[:-1]
        header = BlockHeader.decode(read_block_column(db, "header", MIDDLE))
        header = dataclasses.replace(header, tx_count=len(transactions),
                                     tx_root=compute_tx_root([signed.tx_id for signed in transactions]))
        write_block_column(db, "transactions", MIDDLE, _encode_transactions(transactions))
        write_header(db, header)
        for height in range(MIDDLE + 1, HEAD + 1 if rewrite_above else MIDDLE + 1):
            above = BlockHeader.decode(read_block_column(db, "header", height))
            header = dataclasses.replace(above, parent_hash=header.compute_hash())
            write_header(db, header)
    return tamper


def write_header(db: sqlite3.Connection, header: BlockHeader) -> None:
    write_block_column(db, "header", header.height, header.encode())
    write_block_column(db, "hash", header.height, header.compute_hash())


def replace_signature(height: int) -> Callable[[sqlite3.Connection, BuiltChain], None]:
    """The second validator's precommit signature becomes the first validator's."""
    def tamper(db: sqlite3.Connection, chain: BuiltChain) -> None:
        certificate = CommitCertificate.decode(read_block_column(db, "certificate", height))
        first, second, *rest = certificate.signatures
        forged = (first, dataclasses.replace(second, signature=first.signature), *rest)
        write_block_column(db, "certificate", height, dataclasses.replace(certificate, signatures=forged).encode())
    return tamper


def delete_tx_index_row(db: sqlite3.Connection, chain: BuiltChain) -> None:
    transactions = _decode_transactions(read_block_column(db, "transactions", MIDDLE))
    deleted = db.execute("DELETE FROM txs WHERE tx_id = ?", (transactions[3].tx_id,)).rowcount
    assert deleted == 1


def change_state_change(db: sqlite3.Connection, chain: BuiltChain) -> None:
    """Block MIDDLE's recorded write of merchant-002 no longer matches the header's state root."""
    key = account_key("merchant-002")
    value = bytes(db.execute("SELECT value FROM state_changes WHERE height = ? AND key = ?",
                             (MIDDLE, key)).fetchone()[0])
    db.execute("UPDATE state_changes SET value = ? WHERE height = ? AND key = ?",
               (flip_byte(value, -1), MIDDLE, key))


def flip_log_node(level: int) -> Callable[[sqlite3.Connection, BuiltChain], None]:
    """Flip a byte of a log node block MIDDLE wrote at ``level``."""
    def tamper(db: sqlite3.Connection, chain: BuiltChain) -> None:
        level_index = min(node for node, height in chain.log_node_heights.items()
                          if height == MIDDLE and node[0] == level)
        node_hash = bytes(db.execute("SELECT hash FROM log_nodes WHERE level = ? AND idx = ?", level_index).fetchone()[0])
        db.execute("UPDATE log_nodes SET hash = ? WHERE level = ? AND idx = ?", (flip_byte(node_hash, 0), *level_index))
    return tamper


def flip_head_log_frontier(db: sqlite3.Connection, chain: BuiltChain) -> None:
    """Flip the newest leaf: a node the head's log root is folded from, so opening reads it."""
    level_index = max(node for node in chain.log_node_heights if node[0] == 0)
    node_hash = bytes(db.execute("SELECT hash FROM log_nodes WHERE level = ? AND idx = ?", level_index).fetchone()[0])
    db.execute("UPDATE log_nodes SET hash = ? WHERE level = ? AND idx = ?", (flip_byte(node_hash, 0), *level_index))


def flip_state_node(height: int) -> Callable[[sqlite3.Connection, BuiltChain], None]:
    """Flip a byte in the body of a state-tree node first written at ``height``."""
    def tamper(db: sqlite3.Connection, chain: BuiltChain) -> None:
        node_hash = min(h for h, first in chain.state_node_heights.items() if first == height)
        body = bytes(db.execute("SELECT body FROM state_nodes WHERE hash = ?", (node_hash,)).fetchone()[0])
        db.execute("UPDATE state_nodes SET body = ? WHERE hash = ?", (flip_byte(body, len(body) // 2), node_hash))
    return tamper


def delete_state_node(db: sqlite3.Connection, chain: BuiltChain) -> None:
    node_hash = min(h for h, first in chain.state_node_heights.items() if first == MIDDLE)
    db.execute("DELETE FROM state_nodes WHERE hash = ?", (node_hash,))


# --- the cases ---

TAMPER_CASES = [
    pytest.param(flip_block_byte("header", MIDDLE), at_verify(MIDDLE, "wrong_block_hash"), id="header_byte"),
    pytest.param(flip_block_byte("header", MIDDLE, 3), at_verify(MIDDLE, "wrong_block_hash", "block_unreadable"),
                 id="header_byte_in_chain_id"),
    pytest.param(flip_block_byte("transactions", MIDDLE), at_verify(MIDDLE, "invalid_signature"),
                 id="transactions_byte"),
    pytest.param(flip_block_byte("certificate", MIDDLE), at_verify(MIDDLE, "invalid_signature"),
                 id="certificate_byte"),
    pytest.param(flip_state_row_byte, at_verify(1, "state_row_mismatch"), id="state_row_byte"),
    pytest.param(change_balance, at_verify(HEAD, "state_row_mismatch"), id="state_balance_changed"),
    pytest.param(add_foreign_balance, at_verify(0, "state_row_mismatch"), id="state_balance_added"),
    pytest.param(delete_state_row, at_verify(1, "state_row_mismatch"), id="state_row_deleted"),
    pytest.param(delete_block(MIDDLE), at_verify(MIDDLE, "wrong_height"), id="block_row_deleted"),
    pytest.param(swap_blocks, at_verify(5, "wrong_height"), id="block_rows_swapped"),
    pytest.param(drop_transaction(rewrite_above=False), at_verify(MIDDLE, "bad_certificate"),
                 id="transaction_dropped_header_rewritten"),
    pytest.param(drop_transaction(rewrite_above=True), at_open(HEAD, "bad_certificate"),
                 id="transaction_dropped_chain_rewritten"),
    pytest.param(replace_signature(MIDDLE), at_verify(MIDDLE, "invalid_signature"),
                 id="certificate_signature_replaced"),
    pytest.param(delete_tx_index_row, at_verify(MIDDLE, "wrong_tx_index"), id="tx_index_row_deleted"),
    pytest.param(change_state_change, at_verify(MIDDLE, "wrong_state_root"), id="state_change_altered"),
    pytest.param(flip_log_node(0), at_verify(MIDDLE, "store_corrupt"), id="log_leaf_node_byte"),
    pytest.param(flip_log_node(3), at_verify(MIDDLE, "store_corrupt"), id="log_inner_node_byte"),
    pytest.param(flip_state_node(MIDDLE), at_verify(MIDDLE, "store_corrupt"), id="state_node_byte"),
    pytest.param(flip_state_node(0), at_verify(0, "store_corrupt"), id="state_node_byte_genesis"),
    pytest.param(delete_state_node, at_verify(MIDDLE, "store_corrupt"), id="state_node_deleted"),
    pytest.param(flip_block_byte("header", HEAD), at_open(HEAD, "store_corrupt"), id="head_header_byte"),
    pytest.param(replace_signature(HEAD), at_open(HEAD, "invalid_signature"), id="head_certificate_signature"),
    pytest.param(flip_head_log_frontier, at_open(HEAD, "store_corrupt"), id="head_log_frontier_byte"),
]


def make_tampered_copy(chain: BuiltChain, destination: Path,
                       tamper: Callable[[sqlite3.Connection, BuiltChain], None]) -> Path:
    shutil.copytree(chain.directory, destination)
    db = sqlite3.connect(destination / STORE_FILE_NAME)
    try:
        with db:
            tamper(db, chain)
    finally:
        db.close()
    return destination


@pytest.mark.parametrize(("tamper", "expected"), TAMPER_CASES)
def test_tampering_is_detected(
    built_chain: BuiltChain, tmp_path: Path, tamper: Callable[[sqlite3.Connection, BuiltChain], None],
    expected: Expected,
) -> None:
    directory = make_tampered_copy(built_chain, tmp_path / "data", tamper)
    if expected.stage == "open":
        with pytest.raises(LedgerError) as caught:
            Store.open(directory)
        assert (caught.value.height, caught.value.code) in {(expected.height, code) for code in expected.codes}, \
            caught.value
        return
    store = Store.open(directory)
    try:
        report = verify_store(store)
    finally:
        store.close()
    assert not report.ok
    assert (report.failure_height, report.failure_code) in {(expected.height, code) for code in expected.codes}, \
        report.describe()


def test_intact_copy_verifies(built_chain: BuiltChain, tmp_path: Path) -> None:
    directory = make_tampered_copy(built_chain, tmp_path / "data", lambda db, chain: None)
    store = Store.open(directory)
    try:
        report = verify_store(store)
    finally:
        store.close()
    assert report.ok, report.describe()
    assert (report.blocks_verified, report.transactions_verified) == (HEAD, 3 + TRANSFER_BLOCKS * TXS_PER_BLOCK)


REPLAY_AUDIT_EXPECTED = {
    "transactions_byte": at_verify(MIDDLE, "wrong_tx_root"),
    "transaction_dropped_chain_rewritten": at_verify(MIDDLE, "bad_certificate"),
    "head_header_byte": at_verify(HEAD, "wrong_block_hash"),
}
"""Where ``ledger audit`` names another first failure than the store's own checks: a changed transaction
changes its id, so the header's transaction root is what breaks first; and the audit does not start from the
store's head (as opening a store does) but from the genesis, so a rewritten chain fails at its first bad block."""
DEEP_ONLY = {"log_leaf_node_byte", "log_inner_node_byte", "state_node_byte", "state_node_byte_genesis",
             "state_node_deleted"}
"""Damage to historical log nodes and state-tree pages (used only for proofs about the past): ``--deep``."""


@pytest.mark.parametrize(("tamper", "expected"), TAMPER_CASES)
def test_ledger_audit_names_the_height_and_the_reason(
    built_chain: BuiltChain, tmp_path: Path, tamper: Callable[[sqlite3.Connection, BuiltChain], None],
    expected: Expected, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str],
) -> None:
    """The replaying audit (``ledger audit --data-dir``) finds every case and says where and why."""
    case = request.node.callspec.id
    expected = REPLAY_AUDIT_EXPECTED.get(case, expected)
    directory = make_tampered_copy(built_chain, tmp_path / "data", tamper)
    deep = ["--deep"] if case in DEEP_ONLY else []
    code = main(["audit", "--data-dir", str(directory), "--json", "--workers", "1", *deep])
    report = json.loads(capsys.readouterr().out)
    source = report["sources"][0]
    assert code == 1, report
    assert (source["height"], source["code"]) in {(expected.height, c) for c in expected.codes}, source


def run_audit(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node.cli", "audit", *arguments], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def test_audit_command_exit_codes(built_chain: BuiltChain, tmp_path: Path) -> None:
    intact = make_tampered_copy(built_chain, tmp_path / "intact", lambda db, chain: None)
    tampered = make_tampered_copy(built_chain, tmp_path / "tampered", replace_signature(MIDDLE))
    result = run_audit("--data-dir", str(intact))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout
    result = run_audit("--data-dir", str(tampered))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"FAILED at height {MIDDLE}: invalid_signature" in result.stdout
    result = run_audit("--data-dir", str(tampered), "--data-dir", str(intact), "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    stores = json.loads(result.stdout)["sources"]
    assert [(entry["ok"], entry["height"], entry["code"]) for entry in stores] == [
        (False, MIDDLE, "invalid_signature"), (True, None, "")]
