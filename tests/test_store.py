"""The durable store: round trips, and refusals that leave it exactly as it was.

A stored chain reads back block for block (headers, transactions,
certificates, tx locations, state values) and reopens at the same head hash,
state root and log root. A block that does not extend the head, is not
certified, or whose header disagrees with its own content is refused with a
stable code, and the refusal must change nothing: the same head, the same
rows, the same state and log nodes, the next valid block still appends, and
the transparency log still serves proofs that verify. That is the rollback
path of ``append_block``, which runs its root checks inside the write
transaction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts.block_builder import ExecutedBlock, build_block
from ledger import merkle, smt
from ledger.block import Block, CommitCertificate, sign_commit
from ledger.errors import GenesisError, InvalidBlock, LedgerError, StoreError
from ledger.hashing import sha256
from ledger.state import EMPTY_ACCOUNT, Account, account_key, compute_genesis_state
from ledger.store import STAGING_SUFFIX, STORE_FILE_NAME, Store, TxLocation
from ledger.verify import verify_store
from node.devchain import DemoLoad, DemoNetwork, append_certified_block, create_demo_network

TXS_PER_BLOCK = 5
BLOCK_INTERVAL_MS = 1000

Appendable = tuple[Block, CommitCertificate, dict[bytes, bytes | None], list[bytes]]
"""The four arguments of ``Store.append_block``."""


# --- helpers ---


def compute_timestamp_ms(network: DemoNetwork, height: int) -> int:
    return network.genesis.genesis_time_ms + height * BLOCK_INTERVAL_MS


def build_next_block(store: Store, network: DemoNetwork, load: DemoLoad) -> ExecutedBlock:
    """A valid next block: the demo issuance first, then transfers."""
    height = store.head_height + 1
    transactions = load.issuance() if height == 1 else list(load.transfers(TXS_PER_BLOCK))
    proposer = store.get_validator_set_at(height).get_proposer(height, 0).name
    return build_block(store, transactions, proposer, compute_timestamp_ms(network, height))


def append_next_block(store: Store, network: DemoNetwork, load: DemoLoad) -> None:
    height = store.head_height + 1
    transactions = load.issuance() if height == 1 else list(load.transfers(TXS_PER_BLOCK))
    append_certified_block(store, network, transactions, compute_timestamp_ms(network, height))


def certify(network: DemoNetwork, block: Block, validators: int | None = None) -> CommitCertificate:
    """A certificate from the first ``validators`` validators (all by default)."""
    signers = sorted(network.validator_keys.items())[:validators]
    return sign_commit(network.genesis.chain_id, block.header, 0, signers)


def as_appendable(network: DemoNetwork, executed: ExecutedBlock) -> Appendable:
    block = executed.block
    return block, certify(network, block), dict(executed.changes), list(executed.encoded_receipts)


def with_header(network: DemoNetwork, executed: ExecutedBlock, **fields: Any) -> Appendable:
    """The block with some header fields replaced, certified by every validator."""
    block = Block(dataclasses.replace(executed.block.header, **fields), executed.block.transactions)
    return block, certify(network, block), dict(executed.changes), list(executed.encoded_receipts)


@dataclasses.dataclass(frozen=True)
class StoreSnapshot:
    """Everything a refused append must leave as it was."""

    head_height: int
    head_hash: bytes
    state_root: bytes
    log_size: int
    log_root: bytes
    table_rows: dict[str, int]
    state_rows: list[tuple[bytes, bytes, bytes, int]]


def take_snapshot(store: Store) -> StoreSnapshot:
    tables = ("blocks", "txs", "state", "state_changes", "state_nodes", "log_nodes")
    table_rows = {table: store._conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in tables}  # noqa: SLF001
    return StoreSnapshot(store.head_height, store.head_hash, store.state_root, store.log.size, store.log.root(),
                         table_rows, list(store.iter_state_rows()))


def check_log_proofs(store: Store) -> None:
    """Every transaction has a verifying inclusion proof in the head's log, and old heads are consistent."""
    header = store.head_header
    assert header is not None
    assert store.log.size == header.log_size and store.log.root() == header.log_root
    for height in range(1, store.head_height + 1):
        old_header = store.get_header(height)
        proof = store.log.consistency_proof(old_header.log_size, header.log_size)
        merkle.verify_consistency(old_header.log_size, header.log_size, old_header.log_root, header.log_root, proof)
        for signed in store.get_block(height).transactions:
            location = store.get_tx_location(signed.tx_id)
            assert location is not None and location.height == height
            path = store.log.inclusion_proof(location.log_index, header.log_size)
            merkle.verify_inclusion(merkle.hash_leaf(signed.tx_id), location.log_index, header.log_size, path,
                                    header.log_root)


def check_state_proof(store: Store, key: bytes) -> None:
    proof = store.tree.get_proof(store.state_root, key)
    smt.verify_proof(store.state_root, key, store.get(key), proof)


def get_nonce(store: Store, name: str) -> int:
    data = store.get(account_key(name))
    return (EMPTY_ACCOUNT if data is None else Account.decode(data)).nonce


@pytest.fixture
def chain(tmp_path: Path, network: DemoNetwork) -> Iterator[tuple[Store, DemoLoad]]:
    """A store with three blocks (issuance, then two blocks of transfers), and the load that made them."""
    store = Store.create(tmp_path / "data", network.genesis)
    load = DemoLoad(network)
    for _ in range(3):
        append_next_block(store, network, load)
    yield store, load
    store.close()


# --- creating and opening ---


def test_create_starts_at_genesis(tmp_path: Path, network: DemoNetwork) -> None:
    store = Store.create(tmp_path / "data", network.genesis)
    try:
        assert (store.head_height, store.head_hash, store.head_header) == (0, network.genesis.compute_hash(), None)
        assert store.log.size == 0 and store.count_txs() == 0
        for key, value in compute_genesis_state(network.genesis).items():
            assert store.get(key) == value
        assert store.state_root == smt.StateTree(smt.MemoryNodeStore()).update(
            smt.EMPTY_HASH, compute_genesis_state(network.genesis))
        check_state_proof(store, account_key("bank-cn"))
    finally:
        store.close()
    assert not (tmp_path / "data" / (STORE_FILE_NAME + STAGING_SUFFIX)).exists()


def test_create_refuses_an_existing_store(tmp_path: Path, network: DemoNetwork) -> None:
    Store.create(tmp_path / "data", network.genesis).close()
    with pytest.raises(StoreError) as caught:
        Store.create(tmp_path / "data", network.genesis)
    assert caught.value.code == "store_conflict"


def test_create_discards_what_a_killed_create_left(tmp_path: Path, network: DemoNetwork) -> None:
    directory = tmp_path / "data"
    directory.mkdir()
    (directory / (STORE_FILE_NAME + STAGING_SUFFIX)).write_bytes(b"half a database")
    (directory / (STORE_FILE_NAME + STAGING_SUFFIX + "-wal")).write_bytes(b"half a journal")
    Store.create(directory, network.genesis).close()
    store = Store.open(directory, network.genesis)
    assert store.head_height == 0
    store.close()


def test_open_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as caught:
        Store.open(tmp_path / "missing")
    assert caught.value.code == "store_not_found"


def test_open_with_another_genesis(tmp_path: Path, network: DemoNetwork) -> None:
    Store.create(tmp_path / "data", network.genesis).close()
    other = create_demo_network(tmp_path / "other-network", seed=12)
    with pytest.raises(GenesisError) as caught:
        Store.open(tmp_path / "data", other.genesis)
    assert caught.value.code == "genesis_mismatch"


def test_open_without_genesis_reads_the_stored_one(tmp_path: Path, network: DemoNetwork) -> None:
    Store.create(tmp_path / "data", network.genesis).close()
    store = Store.open(tmp_path / "data")
    assert store.genesis == network.genesis and store.chain_id == network.genesis.chain_id
    store.close()


# --- round trips ---


def test_blocks_read_back_as_appended(tmp_path: Path, network: DemoNetwork) -> None:
    store = Store.create(tmp_path / "data", network.genesis)
    load = DemoLoad(network)
    appended: list[tuple[ExecutedBlock, CommitCertificate]] = []
    for _ in range(4):
        executed = build_next_block(store, network, load)
        certificate = certify(network, executed.block)
        store.append_block(executed.block, certificate, executed.changes, executed.encoded_receipts)
        appended.append((executed, certificate))
        assert store.head_height == executed.block.height
        assert store.head_hash == executed.block.compute_hash()
        assert store.state_root == executed.block.header.state_root
    log_index = 0
    for height, (executed, certificate) in enumerate(appended, start=1):
        assert store.get_header(height) == executed.block.header
        assert store.get_block(height) == executed.block
        assert store.get_certificate(height) == certificate
        assert store.get_state_changes(height) == executed.changes
        for index, (signed, receipt) in enumerate(zip(executed.block.transactions, executed.encoded_receipts)):
            assert store.get_tx_location(signed.tx_id) == TxLocation(height, index, log_index, receipt)
            log_index += 1
    assert store.count_txs() == log_index == 3 + 3 * TXS_PER_BLOCK
    assert get_nonce(store, "alipay-agg") == 3 * TXS_PER_BLOCK
    assert get_nonce(store, "bank-cn") == get_nonce(store, "bank-us") == get_nonce(store, "bank-jp") == 1
    assert get_nonce(store, "auditor") == 0
    for key, value in appended[-1][0].changes.items():
        assert store.get(key) == value
    check_state_proof(store, account_key("merchant-001"))
    check_log_proofs(store)
    store.close()


def test_reopen_gives_the_same_head(chain: tuple[Store, DemoLoad], tmp_path: Path, network: DemoNetwork) -> None:
    store, _load = chain
    before = take_snapshot(store)
    head_header = store.head_header
    store.close()
    reopened = Store.open(tmp_path / "data", network.genesis)
    try:
        assert take_snapshot(reopened) == before
        assert reopened.head_header == head_header
        assert reopened.genesis_state_root == store.genesis_state_root
        check_log_proofs(reopened)
        assert verify_store(reopened).ok
    finally:
        reopened.close()


def test_reopened_store_keeps_appending(chain: tuple[Store, DemoLoad], tmp_path: Path, network: DemoNetwork) -> None:
    store, load = chain
    store.close()
    reopened = Store.open(tmp_path / "data", network.genesis)
    try:
        append_next_block(reopened, network, load)
        assert reopened.head_height == 4
        check_log_proofs(reopened)
        report = verify_store(reopened)
        assert report.ok, report.describe()
        assert (report.blocks_verified, report.transactions_verified) == (4, 3 + 3 * TXS_PER_BLOCK)
    finally:
        reopened.close()


# --- refusals ---


def drop_last_transaction(network: DemoNetwork, executed: ExecutedBlock) -> Appendable:
    """The transactions lose one, the header still names them all."""
    block = Block(executed.block.header, executed.block.transactions[:-1])
    return block, certify(network, block), dict(executed.changes), list(executed.encoded_receipts[:-1])


def drop_one_state_change(network: DemoNetwork, executed: ExecutedBlock) -> Appendable:
    block, certificate, changes, receipts = as_appendable(network, executed)
    del changes[min(changes)]
    return block, certificate, changes, receipts


def certify_with(validators: int) -> Callable[[DemoNetwork, ExecutedBlock], Appendable]:
    def mutate(network: DemoNetwork, executed: ExecutedBlock) -> Appendable:
        block, _certificate, changes, receipts = as_appendable(network, executed)
        return block, certify(network, block, validators), changes, receipts
    return mutate


def certify_another_block(network: DemoNetwork, executed: ExecutedBlock) -> Appendable:
    block, _certificate, changes, receipts = as_appendable(network, executed)
    other = Block(dataclasses.replace(block.header, proposer="validator-3"), block.transactions)
    return block, certify(network, other), changes, receipts


def swap_two_signatures(network: DemoNetwork, executed: ExecutedBlock) -> Appendable:
    block, certificate, changes, receipts = as_appendable(network, executed)
    first, second, *rest = certificate.signatures
    swapped = (dataclasses.replace(first, signature=second.signature),
               dataclasses.replace(second, signature=first.signature), *rest)
    return block, dataclasses.replace(certificate, signatures=swapped), changes, receipts


def change_header(**fields: Any) -> Callable[[DemoNetwork, ExecutedBlock], Appendable]:
    def mutate(network: DemoNetwork, executed: ExecutedBlock) -> Appendable:
        return with_header(network, executed, **fields)
    return mutate


def change_header_by(**deltas: Callable[[Any], Any]) -> Callable[[DemoNetwork, ExecutedBlock], Appendable]:
    """Replace header fields with a function of their old value."""
    def mutate(network: DemoNetwork, executed: ExecutedBlock) -> Appendable:
        header = executed.block.header
        return with_header(network, executed, **{name: delta(getattr(header, name)) for name, delta in deltas.items()})
    return mutate


OTHER_HASH = sha256(b"not the right hash")

REFUSALS = [
    # (mutation of a valid next block, exception type, code)
    pytest.param(change_header_by(height=lambda h: h + 1), StoreError, "store_conflict", id="skips_a_height"),
    pytest.param(change_header_by(height=lambda h: h - 1), StoreError, "store_conflict", id="repeats_a_height"),
    pytest.param(change_header(parent_hash=OTHER_HASH), InvalidBlock, "wrong_parent", id="wrong_parent"),
    pytest.param(change_header(chain_id="another-chain"), InvalidBlock, "wrong_chain", id="wrong_chain_id"),
    pytest.param(change_header_by(timestamp_ms=lambda t: t - 10 * BLOCK_INTERVAL_MS), InvalidBlock,
                 "wrong_timestamp", id="timestamp_goes_back"),
    pytest.param(change_header(validator_set_hash=OTHER_HASH), InvalidBlock, "wrong_validator_set",
                 id="wrong_validator_set"),
    pytest.param(certify_with(2), InvalidBlock, "insufficient_voting_power", id="certificate_two_of_four"),
    pytest.param(certify_with(0), InvalidBlock, "insufficient_voting_power", id="certificate_empty"),
    pytest.param(certify_another_block, InvalidBlock, "bad_certificate", id="certificate_of_another_block"),
    pytest.param(swap_two_signatures, InvalidBlock, "invalid_signature", id="certificate_signatures_swapped"),
    pytest.param(change_header(tx_root=OTHER_HASH), InvalidBlock, "wrong_tx_root", id="header_tx_root"),
    pytest.param(change_header_by(tx_count=lambda n: n + 1), InvalidBlock, "wrong_tx_root", id="header_tx_count"),
    pytest.param(drop_last_transaction, InvalidBlock, "wrong_tx_root", id="transaction_missing"),
    pytest.param(change_header(state_root=OTHER_HASH), InvalidBlock, "wrong_state_root", id="header_state_root"),
    pytest.param(drop_one_state_change, InvalidBlock, "wrong_state_root", id="state_change_missing"),
    pytest.param(change_header(log_root=OTHER_HASH), InvalidBlock, "wrong_log_root", id="header_log_root"),
    pytest.param(change_header_by(log_size=lambda n: n + 1), InvalidBlock, "wrong_log_root", id="header_log_size"),
]


@pytest.mark.parametrize(("mutate", "error_type", "code"), REFUSALS)
def test_invalid_block_is_refused_and_changes_nothing(
    chain: tuple[Store, DemoLoad],
    tmp_path: Path,
    network: DemoNetwork,
    mutate: Callable[[DemoNetwork, ExecutedBlock], Appendable],
    error_type: type[LedgerError],
    code: str,
) -> None:
    store, load = chain
    executed = build_next_block(store, network, load)
    before = take_snapshot(store)
    block, certificate, changes, receipts = mutate(network, executed)
    with pytest.raises(error_type) as caught:
        store.append_block(block, certificate, changes, receipts)
    assert caught.value.code == code
    assert caught.value.height == block.height  # the height the refused block claims
    assert take_snapshot(store) == before
    check_log_proofs(store)
    # The refusal left nothing behind: the valid block appends, and all of it checks out.
    store.append_block(*as_appendable(network, executed))
    assert (store.head_height, store.head_hash) == (before.head_height + 1, executed.block.compute_hash())
    check_log_proofs(store)
    check_state_proof(store, account_key("alipay-agg"))
    report = verify_store(store)
    assert report.ok, report.describe()
    store.close()
    reopened = Store.open(tmp_path / "data", network.genesis)
    try:
        assert (reopened.head_height, reopened.head_hash) == (before.head_height + 1, executed.block.compute_hash())
        check_log_proofs(reopened)
    finally:
        reopened.close()


def test_the_stored_head_is_refused_again(chain: tuple[Store, DemoLoad], network: DemoNetwork) -> None:
    store, _load = chain
    head = store.head_height
    block, certificate = store.get_block(head), store.get_certificate(head)
    receipts = []
    for signed in block.transactions:
        location = store.get_tx_location(signed.tx_id)
        assert location is not None
        receipts.append(location.receipt)
    before = take_snapshot(store)
    with pytest.raises(StoreError) as caught:
        store.append_block(block, certificate, store.get_state_changes(head), receipts)
    assert caught.value.code == "store_conflict"
    assert take_snapshot(store) == before
