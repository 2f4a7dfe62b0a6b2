"""The verification engine: the auditor's core, with no networking.

``ChainVerifier`` takes the genesis (the only thing an auditor trusts,
besides the validators' keys it names) and then blocks in height order,
from a store or from any stream, and checks (numbers as in INTERFACE.md's
"What ledger audit checks"):

1. each block links to its parent's hash and heights are consecutive;
2. each block's commit certificate holds valid, distinct precommits of
   more than 2/3 of the voting power of the set in force at that height;
3. each transaction is signed by its sender with the key in force, and its
   nonce is the sender's next one;
4. the header's transaction root, and the transparency log's size and root
   after the block, match the transactions (the verifier keeps its own
   O(log n) log frontier, so each checkpoint extends the previous one);
5. (structural part; full replay through the contracts comes with them)
   the block's recorded state changes turn the previous state root into the
   header's state root.

``verify_store`` adds what only a store has: the tx index; every stored
log node and state-tree node, each compared with the node the verifier
made itself at the height that first wrote it; every state row against the
last verified write of its key; and the supply invariant per currency. It
stops at the first failure and names its height and reason; it streams the
blocks and never loads the chain at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from ledger import keys, merkle, smt
from ledger.block import Block, BlockHeader, CommitCertificate, compute_tx_root
from ledger.errors import (
    EncodingError,
    InvalidBlock,
    LedgerError,
    StoreCorruption,
    VerificationFailure,
)
from ledger.genesis import Genesis, Member
from ledger.hashing import sha256
from ledger.state import (
    KEY_PENDING_VALIDATORS,
    KEY_VALIDATORS,
    Account,
    CurrencySupply,
    PendingValidators,
    compute_genesis_state,
)
from ledger.store import OverlayNodeStore, Store, _decode_transactions
from ledger.tlog import FrontierOnlyNodeStore, LogNodeStore, TransparencyLog
from ledger.validators import ValidatorSet

ProgressCallback = Callable[[int, int], None]
"""Called with (height verified, head height) after each block."""


class _CheckedLogNodes(FrontierOnlyNodeStore):
    """Keeps only what the verified log made since the last check, to compare with the stored log."""

    def __init__(self, stored: LogNodeStore) -> None:
        super().__init__()
        self._stored = stored
        self._made: list[tuple[int, int, bytes]] = []

    def put_nodes(self, nodes: Iterable[tuple[int, int, bytes]]) -> None:  # type: ignore[override]
        self._made.extend(nodes)

    def check_stored(self) -> None:
        """Each node made since the last check must be the stored node at its place."""
        made, self._made = self._made, []
        for level, index, node_hash in made:
            if self._stored.get_node(level, index) != node_hash:
                raise StoreCorruption("store_corrupt", f"stored log node ({level}, {index}) missing or altered")


class _CheckedStateNodes(OverlayNodeStore):
    """The verifier's own state tree; the nodes it makes are compared with the stored ones.

    Bodies are compared as bytes, so this holds whatever the tree's node format.
    """

    def __init__(self, stored: smt.NodeStore) -> None:
        super().__init__(stored)
        self._stored = stored
        self._made: dict[bytes, bytes] = {}

    def put_nodes(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        made = list(items)
        self._made.update(made)
        super().put_nodes(made)

    def check_stored(self) -> None:
        """Each node made since the last check must be stored under its hash, byte for byte."""
        made, self._made = self._made, {}
        stored = self._stored.get_nodes(list(made))
        for node_hash, body in made.items():
            if stored.get(node_hash) != body:
                raise StoreCorruption("store_corrupt", f"stored state node {node_hash.hex()[:16]} missing or altered")
        self.forget_new_nodes()  # they equal the stored ones: read those from now on, keep memory flat


@dataclass
class VerificationReport:
    """What was checked, and the first failure if any."""

    ok: bool = True
    blocks_verified: int = 0
    transactions_verified: int = 0
    head_height: int = 0
    head_hash: bytes = b""
    failure_height: int | None = None
    failure_code: str = ""
    failure_detail: str = ""
    checks: list[str] = field(default_factory=list)

    def fail(self, error: LedgerError, height: int | None) -> None:
        self.ok = False
        self.failure_height = error.height if error.height is not None else height
        self.failure_code = error.code
        self.failure_detail = error.detail

    def describe(self) -> str:
        if self.ok:
            return (f"OK: {self.blocks_verified} blocks, {self.transactions_verified} transactions verified; "
                    f"head {self.head_height} {self.head_hash.hex()[:16]}")
        return f"FAILED at height {self.failure_height}: {self.failure_code}: {self.failure_detail}"


class ChainVerifier:
    """Checks 1-4 and structural 5 over blocks fed in height order."""

    def __init__(
        self, genesis: Genesis, state_nodes: smt.NodeStore | None = None, log_nodes: LogNodeStore | None = None
    ) -> None:
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.height = 0
        self.head_hash = genesis.compute_hash()
        self.timestamp_ms = 0
        self.validator_set: ValidatorSet = genesis.validator_set
        self.pending_validators: PendingValidators | None = None
        """A set scheduled by governance (state key ``validators/pending``), in force from its effective height."""
        self.members: dict[str, Member] = {m.name: m for m in genesis.members}
        self.nonces: dict[str, int] = {m.name: 0 for m in genesis.members}
        self.log = TransparencyLog(log_nodes if log_nodes is not None else FrontierOnlyNodeStore(), 0)
        self._tree = smt.StateTree(state_nodes) if state_nodes is not None else None
        if self._tree is not None:
            self.state_root = self._tree.update(smt.EMPTY_HASH, compute_genesis_state(genesis))
        self.transactions_verified = 0

    def verify_block(
        self,
        block: Block,
        certificate: CommitCertificate,
        state_changes: Mapping[bytes, bytes | None] | None = None,
    ) -> None:
        """Check one block against everything verified so far; raise on the first problem."""
        header = block.header
        height = self.height + 1
        check_header_links(header, self.chain_id, height, self.head_hash, self.timestamp_ms)
        block_hash = header.compute_hash()
        in_force = self.validator_set
        if self.pending_validators is not None and self.pending_validators.effective_height <= height:
            in_force = self.pending_validators.validator_set
        if header.validator_set_hash != in_force.compute_hash():
            raise InvalidBlock("wrong_validator_set", height=height)
        certificate.verify(self.chain_id, in_force, block_hash, height)
        tx_ids = self._check_transactions(block, height)
        append_checked(self.log, header, tx_ids)
        if state_changes is not None:
            self._apply_state_changes(header, state_changes, height)
        self.height = height
        self.head_hash = block_hash
        self.timestamp_ms = header.timestamp_ms

    def _check_transactions(self, block: Block, height: int) -> list[bytes]:
        items: list[tuple[bytes, bytes, bytes]] = []
        for signed in block.transactions:
            member = self.members.get(signed.body.sender)
            if member is None:
                raise InvalidBlock("unknown_sender", f"{signed.body.sender} is not a member", height=height)
            items.append((member.public_key, signed.body.signing_bytes(self.chain_id), signed.signature))
        verdicts = keys.verify_many(items)
        tx_ids = []
        for index, (signed, is_valid) in enumerate(zip(block.transactions, verdicts)):
            tx = signed.body
            if not is_valid:
                raise InvalidBlock("invalid_signature", f"transaction {index} from {tx.sender}", height=height)
            expected = self.nonces[tx.sender]
            if tx.nonce != expected:
                raise InvalidBlock("bad_nonce", f"transaction {index}: nonce {tx.nonce}, expected {expected}", height=height)
            if tx.expiry_height and tx.expiry_height < height:
                raise InvalidBlock("expired", f"transaction {index}", height=height)
            self.nonces[tx.sender] = expected + 1
            tx_ids.append(signed.tx_id)
        self.transactions_verified += len(tx_ids)
        return tx_ids

    def _apply_state_changes(self, header: BlockHeader, changes: Mapping[bytes, bytes | None], height: int) -> None:
        assert self._tree is not None, "state checks need a state node store"
        new_root = self._tree.update(self.state_root, changes)
        if new_root != header.state_root:
            raise InvalidBlock("wrong_state_root", "recorded state changes do not give the header's root", height=height)
        self.state_root = new_root
        for key, value in changes.items():
            self._follow_registry(key, value, height)

    def _follow_registry(self, key: bytes, value: bytes | None, height: int) -> None:
        """Track members, nonces and the validator set as the state changes them."""
        if key.startswith(b"member/") and value is not None:
            member = Member.decode(value)
            self.members[member.name] = member
            self.nonces.setdefault(member.name, 0)
        elif key.startswith(b"member/"):  # removed by governance; its nonce stays (no replay if re-added)
            self.members.pop(key[len(b"member/"):].decode(), None)
        elif key.startswith(b"account/") and value is not None:
            name = key[len(b"account/"):].decode()
            if Account.decode(value).nonce != self.nonces.get(name, 0):
                raise InvalidBlock("bad_nonce", f"state nonce of {name} disagrees with its transactions", height=height)
        elif key == KEY_VALIDATORS and value is not None:
            self.validator_set = ValidatorSet.decode(value)
        elif key == KEY_PENDING_VALIDATORS:
            self.pending_validators = None if value is None else PendingValidators.decode(value)


def check_header_links(header: BlockHeader, chain_id: str, height: int, parent_hash: bytes,
                       parent_timestamp_ms: int) -> None:
    """Check 1: the block at ``height`` of this chain, on its parent, not earlier than it."""
    if header.chain_id != chain_id:
        raise InvalidBlock("wrong_chain", f"chain id {header.chain_id!r}", height=height)
    if header.height != height:
        raise InvalidBlock("wrong_height", f"expected height {height}, found {header.height}", height=height)
    if header.parent_hash != parent_hash:
        raise InvalidBlock("wrong_parent", "parent hash does not match the previous block", height=height)
    if header.timestamp_ms < parent_timestamp_ms:
        raise InvalidBlock("wrong_timestamp", "earlier than its parent", height=height)


def append_checked(log: TransparencyLog, header: BlockHeader, tx_ids: list[bytes]) -> None:
    """Check 4: the transactions give the header's tx root; appended to ``log``, its size and root."""
    height = header.height
    if header.tx_count != len(tx_ids) or compute_tx_root(tx_ids) != header.tx_root:
        raise InvalidBlock("wrong_tx_root", f"{len(tx_ids)} transactions do not give the header's tx root",
                           height=height)
    log.append_many(merkle.hash_leaf(tx_id) for tx_id in tx_ids)
    if log.size != header.log_size or log.root() != header.log_root:
        raise InvalidBlock("wrong_log_root", f"log size {log.size} vs header {header.log_size}", height=height)


def verify_store(store: Store, progress: ProgressCallback | None = None) -> VerificationReport:
    """Verify every block of a store, then its index, log nodes and state rows.

    Runs inside one read transaction: a node may keep committing while an
    auditor reads its data dir, and SQLite's WAL gives this reader a fixed
    snapshot of the store as of the start.
    """
    store._conn.execute("BEGIN")
    try:
        store._load_head()
        return _verify_store_snapshot(store, progress)
    finally:
        store._conn.execute("ROLLBACK")


def _verify_store_snapshot(store: Store, progress: ProgressCallback | None) -> VerificationReport:
    report = VerificationReport()
    head = _stored_head_height(store)
    height = 0  # the block being verified; an error that names no height happened there
    verifier: ChainVerifier | None = None
    state_nodes = _CheckedStateNodes(store._state_nodes)
    log_nodes = _CheckedLogNodes(store._log_nodes)
    try:
        verifier = ChainVerifier(store.genesis, state_nodes, log_nodes)
        if verifier.state_root != store.genesis_state_root:
            raise VerificationFailure("wrong_state_root", "genesis state root", height=0)
        state_nodes.check_stored()
        last_writes = _record_writes({}, compute_genesis_state(store.genesis), 0)
        for height, block, certificate in _iter_stored_blocks(store, head):
            changes = store.get_state_changes(height)
            verifier.verify_block(block, certificate, changes)
            state_nodes.check_stored()  # after the block's rules: a node that differs is the store's damage
            log_nodes.check_stored()
            _check_tx_index(store, block, verifier.log.size - len(block.transactions))
            _record_writes(last_writes, changes, height)
            report.blocks_verified += 1
            if progress is not None:
                progress(height, head)
        height = head  # what follows checks the store as of its head
        _check_stored_log(store, verifier)
        _check_state_rows(store, last_writes)
        _check_supply(store, head)
    except LedgerError as error:
        report.fail(error, height)
    if verifier is not None:
        report.transactions_verified = verifier.transactions_verified
        report.head_height = verifier.height
        report.head_hash = verifier.head_hash
    return report


def _stored_head_height(store: Store) -> int:
    row = store._conn.execute("SELECT MAX(height) FROM blocks").fetchone()
    return int(row[0] or 0)


def _iter_stored_blocks(store: Store, head: int) -> Iterator[tuple[int, Block, CommitCertificate]]:
    expected = 1
    for height, block_hash, header_bytes, tx_bytes, cert_bytes in store.iter_raw_block_rows(1, head):
        if height != expected:
            raise InvalidBlock("wrong_height", f"block {expected} is missing", height=expected)
        try:
            header = BlockHeader.decode(header_bytes)
            transactions = _decode_transactions(tx_bytes)
            certificate = CommitCertificate.decode(cert_bytes)
        except EncodingError as error:
            raise InvalidBlock("block_unreadable", error.detail, height=height) from error
        if header.compute_hash() != block_hash:
            raise InvalidBlock("wrong_block_hash", height=height)
        yield height, Block(header, transactions), certificate
        expected += 1


def _check_tx_index(store: Store, block: Block, log_start: int) -> None:
    height = block.header.height
    for index, signed in enumerate(block.transactions):
        location = store.get_tx_location(signed.tx_id)
        if location is None or (location.height, location.index, location.log_index) != (height, index, log_start + index):
            raise VerificationFailure("wrong_tx_index", f"transaction index wrong for tx {index}", height=height)


def _check_stored_log(store: Store, verifier: ChainVerifier) -> None:
    """The stored log's head (its frontier) must be the verified one.

    Every other stored log node was already compared with the verifier's own
    as each block was checked (``_CheckedLogNodes``).
    """
    if store.log.size != verifier.log.size or store.log.root() != verifier.log.root():
        raise InvalidBlock("wrong_log_root", "stored log nodes disagree with the verified log", height=verifier.height)


def _record_writes(
    last_writes: dict[bytes, tuple[bytes, int]], changes: Mapping[bytes, bytes | None], height: int
) -> dict[bytes, tuple[bytes, int]]:
    """Keep, per live key hash, the hash of its value and the height that wrote it."""
    for key, value in changes.items():
        if value is None:
            last_writes.pop(sha256(key), None)
        else:
            last_writes[sha256(key)] = (sha256(value), height)
    return last_writes


def _check_state_rows(store: Store, last_writes: dict[bytes, tuple[bytes, int]]) -> None:
    """The state rows must be exactly the verified writes: the leaves under the head's root.

    The verified writes are the genesis state and each block's state changes,
    which checks 5 tied to every header's state root. A bad row names the
    height of its key's last verified write.
    """
    unmatched = dict(last_writes)
    for key_hash, key, value, height in store.iter_state_rows():
        if key_hash != sha256(key):
            raise VerificationFailure("state_row_mismatch", f"state row key hash wrong for {key!r}", height=height)
        written = unmatched.pop(key_hash, None)
        if written is None:
            raise VerificationFailure("state_row_mismatch", f"state row {key!r} was never written", height=height)
        if written != (sha256(value), height):
            raise VerificationFailure("state_row_mismatch", f"state row {key!r} was altered", height=written[1])
    if unmatched:
        height = min(height for _value_hash, height in unmatched.values())
        raise VerificationFailure("state_row_mismatch", f"{len(unmatched)} written keys have no state row", height=height)


def _check_supply(store: Store, head: int) -> None:
    check_supply(((key, value) for _key_hash, key, value, _height in store.iter_state_rows()), head)


def check_supply(state_items: Iterable[tuple[bytes, bytes]], height: int) -> None:
    """For each currency, all balances (holding accounts included) sum to issued minus redeemed."""
    totals: dict[str, int] = {}
    outstanding: dict[str, int] = {}
    for key, value in state_items:
        if key.startswith(b"account/"):
            for balance in Account.decode(value).balances:
                totals[balance.currency] = totals.get(balance.currency, 0) + balance.amount_minor
        elif key.startswith(b"currency/"):
            supply = CurrencySupply.decode(value)
            outstanding[supply.code] = supply.outstanding_minor
    for code in sorted(set(totals) | set(outstanding)):
        if totals.get(code, 0) != outstanding.get(code, 0):
            raise VerificationFailure(
                "supply_mismatch",
                f"{code}: balances sum to {totals.get(code, 0)}, issued minus redeemed is {outstanding.get(code, 0)}",
                height=height,
            )


__all__ = ["ChainVerifier", "VerificationReport", "append_checked", "check_header_links",
           "check_supply", "verify_store"]
