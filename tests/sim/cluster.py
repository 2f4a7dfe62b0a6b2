"""A deterministic cluster: N real consensus cores over a simulated network, clock and disk.

Modelled on TigerBeetle's VOPR (``src/vopr.zig``). One ``random.Random(seed)``
draws a swarm of options (``options_swarm``) and then every fault. The run
has two phases:

- **Safety.** Delay, loss, duplication and reordering. Partitions start and
  heal. Honest nodes crash and restart from their committed chain and their
  signer WAL. Up to f validators are Byzantine (``BEHAVIOURS``).
- **Liveness** (``enter_liveness``). Partitions heal, loss stops, every
  crashed node restarts. Every honest node must then commit
  ``liveness_heights`` more blocks within ``liveness_budget_ms`` of
  simulated time.

Checkers run on every event that could break them. No two honest nodes
commit different blocks at one height. Every committed block has a
certificate that ``CommitCertificate.verify`` accepts. Each store's heights
are consecutive and link to their parents, so the honest chains are
prefixes of one another. An honest validator never signs two different
messages for one (height, round, step), crashes included. Every vote an
honest core asks to sign obeys the paper's rules, judged by a model: its
lock comes from its own signed precommits, and the proofs from every prevote
anyone signed. Evidence names only the double-voter. An honest node that
received both of its conflicting votes at their height reports them, once.
A violation raises ``SimulationFailure``.

The shell here is the simulator's own (``SimNode`` and ``Cluster._run_actions``).
It signs through the WAL and feeds signed messages back to the core. Sign
actions are handled in FIFO order. On ``CommitBlock`` it stores the block
first and calls ``on_committed`` after a simulated disk delay. Its block sync
is minimal: a node that sees messages from two or more heights ahead asks
that peer for certified blocks. Sync messages are plain objects, because the
node team defines the real ones (envelope kinds 11 and 12).
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ledger.block import (
    NIL_BLOCK_HASH,
    VOTE_PRECOMMIT,
    VOTE_PREVOTE,
    Block,
    BlockHeader,
    CommitCertificate,
    Vote,
    compute_tx_root,
)
from ledger.errors import InvalidBlock
from ledger.hashing import sha256
from ledger.keys import PrivateKey, verify_raw
from ledger.transaction import SignedTransaction, Transaction
from ledger.validators import Validator, ValidatorSet
from node.consensus import (
    ROUNDS_AHEAD_MAX,
    Action,
    Broadcast,
    CommitBlock,
    ConsensusConfig,
    ConsensusCore,
    ReportEvidence,
    ScheduleTimeout,
    SignProposal,
    SignVote,
    Timeout,
)
from node.messages import (
    Proposal,
    ProposalMessage,
    SignedProposal,
    SignedVote,
    decode_consensus_message,
    decode_envelope,
    encode_consensus_message,
    sign_proposal,
    sign_vote,
)
from node.wal import SIGN_STEP_BY_VOTE_KIND, SIGN_STEP_PROPOSAL, DoubleSignRefused, MemoryWal
from tests.sim.network import Network, NetworkOptions

CHAIN_ID = "sim-chain"
GENESIS_TIME_MS = 1_700_000_000_000
TICK_INTERVAL_MS = 100
"""How often each node's shell calls ``on_tick`` and checks whether it should sync."""
SYNC_DELAY_MS = 400
"""A node that has seen heights >= head + 2 for this long asks for blocks."""
SYNC_BLOCKS_MAX = 8
"""Blocks per sync response."""
EVENTS_MAX = 2_000_000
"""A run that needs more events than this is a bug in the simulator or a livelock."""
TRACE_EVENTS_KEPT = 40
"""Recent events shown in a failure message."""

EQUIVOCATING_PROPOSER = "equivocating_proposer"
"""Signs two different blocks for each of its proposals and sends each to part of the peers."""
DOUBLE_VOTER = "double_voter"
"""Signs a second, conflicting vote for each of its votes and sends it to some peers."""
SILENT = "silent"
"""Sends nothing at all."""
AMNESIA = "amnesia"
"""Forgets its lock before every step (the amnesia attack) and sends each precommit to one peer
only, so that a decision is seen by few: the pattern that breaks a core whose locks are wrong."""
BEHAVIOURS = (EQUIVOCATING_PROPOSER, DOUBLE_VOTER, SILENT, AMNESIA)


class SimulationFailure(AssertionError):
    """A checker found a violation; the message says which and how to reproduce it."""


class AmnesiaCore(ConsensusCore):
    """A Byzantine validator's core: the real rules, but it forgets its lock before each one."""

    def _fire_one_rule(self) -> bool:
        self._locked_round = -1
        self._locked_block_hash = NIL_BLOCK_HASH
        return super()._fire_one_rule()


# --- Options ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SwarmOptions:
    """Everything one seed's run varies (TigerBeetle's ``options_swarm``)."""

    seed: int
    validators: int
    followers: int
    """Nodes that follow without a key (not in the validator set)."""
    byzantine: tuple[tuple[str, str], ...]
    """(validator name, behaviour), at most f of them."""
    network: NetworkOptions
    consensus: ConsensusConfig
    partition_interval_ms: int
    """Mean time between partition events in the safety phase (0 = never)."""
    partition_duration_ms_max: int
    clog_interval_ms: int
    """Mean time between clogging one directed link in the safety phase (0 = never)."""
    clog_duration_ms_max: int
    crash_interval_ms: int
    """Mean time between crashes of an honest node in the safety phase (0 = never)."""
    restart_delay_ms_max: int
    commit_delay_ms_max: int
    """Simulated disk time between storing a block and ``on_committed`` (at least 1 ms, so that
    a lone validator cannot commit forever without the clock moving)."""
    clock_skew_ms_max: int
    safety_duration_ms: int
    safety_heights_max: int
    """The safety phase ends early once some node has committed this many blocks."""
    liveness_heights: int
    liveness_budget_ms: int


def options_swarm(seed: int, rng: random.Random, validators: int | None = None) -> SwarmOptions:
    """Draw a run's options from its RNG: most runs have 4 validators, some 1 or 7."""
    count = validators if validators is not None else rng.choice((4, 4, 4, 4, 4, 4, 4, 4, 1, 7))
    faults_max = (count - 1) // 3
    names = [f"validator-{index}" for index in range(count)]
    byzantine_count = rng.randint(0, faults_max) if rng.random() < 0.6 else 0
    byzantine = tuple(
        (name, rng.choice(BEHAVIOURS)) for name in sorted(rng.sample(names, byzantine_count))
    )
    delay_ms_max = rng.choice((5, 20, 50, 150, 400))
    network = NetworkOptions(
        delay_ms_min=rng.randint(0, min(5, delay_ms_max)),
        delay_ms_max=delay_ms_max,
        loss_probability=rng.choice((0.0, 0.0, 0.02, 0.1, 0.3)),
        duplicate_probability=rng.choice((0.0, 0.05, 0.2)),
    )
    propose_base_ms = rng.choice((50, 200, 1000))
    consensus = ConsensusConfig(
        timeout_propose_base_ms=propose_base_ms,
        timeout_propose_delta_ms=rng.choice((10, 100, 500)),
        timeout_prevote_base_ms=max(1, propose_base_ms // 2),
        timeout_prevote_delta_ms=rng.choice((10, 50, 250)),
        timeout_precommit_base_ms=max(1, propose_base_ms // 2),
        timeout_precommit_delta_ms=rng.choice((10, 50, 250)),
        rebroadcast_interval_ms=rng.choice((300, 1000)),
    )
    return SwarmOptions(
        seed=seed,
        validators=count,
        followers=rng.choice((0, 0, 1)),
        byzantine=byzantine,
        network=network,
        consensus=consensus,
        partition_interval_ms=rng.choice((0, 0, 500, 2000)),
        partition_duration_ms_max=rng.choice((200, 1000, 3000)),
        clog_interval_ms=rng.choice((0, 0, 100, 400)),
        clog_duration_ms_max=rng.choice((100, 500, 2000)),
        crash_interval_ms=rng.choice((0, 0, 700, 2500)),
        restart_delay_ms_max=rng.choice((50, 500, 3000)),
        commit_delay_ms_max=rng.choice((1, 5, 50)),
        clock_skew_ms_max=rng.choice((0, 20, 500)),
        safety_duration_ms=rng.randint(1000, 8000),
        safety_heights_max=rng.randint(4, 12),
        liveness_heights=rng.randint(2, 5),
        liveness_budget_ms=180_000,
    )


# --- The fake application and its store ----------------------------------------------------


@dataclass
class SimStore:
    """A node's durable chain: survives crashes."""

    genesis_hash: bytes
    blocks: list[tuple[Block, CommitCertificate]] = field(default_factory=list)

    @property
    def head_height(self) -> int:
        return len(self.blocks)

    @property
    def head_hash(self) -> bytes:
        return self.blocks[-1][0].compute_hash() if self.blocks else self.genesis_hash

    @property
    def head_timestamp_ms(self) -> int:
        return self.blocks[-1][0].header.timestamp_ms if self.blocks else GENESIS_TIME_MS

    def get_block_hashes(self) -> list[bytes]:
        return [block.compute_hash() for block, _certificate in self.blocks]


def compute_fake_state_root(parent_hash: bytes, height: int, tx_ids: list[bytes]) -> bytes:
    """A deterministic stand-in for the state root: a function of the parent, height and txs."""
    return sha256(b"sim-state\0" + parent_hash + height.to_bytes(8, "big") + b"".join(tx_ids))


class FakeApplication:
    """Deterministic blocks on the store's head: a few dummy signed transactions, fake roots."""

    def __init__(self, name: str, store: SimStore, validator_set: ValidatorSet, member_key: PrivateKey) -> None:
        self.name = name
        self.store = store
        self.validator_set = validator_set
        self.validator_set_hash = validator_set.compute_hash()
        self.member_key = member_key
        self._transactions: dict[int, tuple[SignedTransaction, ...]] = {}

    def get_transactions(self, height: int) -> tuple[SignedTransaction, ...]:
        cached = self._transactions.get(height)
        if cached is None:
            cached = tuple(
                Transaction("alice", height * 4 + index, "accounts", "transfer", {"amount_minor": height}, 0).sign(
                    self.member_key, CHAIN_ID
                )
                for index in range(height % 3)
            )
            self._transactions = {height: cached}
        return cached

    def propose_block(self, height: int, round: int, timestamp_ms: int) -> Block:
        assert height == self.store.head_height + 1, (height, self.store.head_height)
        transactions = self.get_transactions(height)
        tx_ids = [tx.tx_id for tx in transactions]
        parent_hash = self.store.head_hash
        header = BlockHeader(
            chain_id=CHAIN_ID,
            height=height,
            parent_hash=parent_hash,
            timestamp_ms=max(timestamp_ms, self.store.head_timestamp_ms),
            proposer=self.name,
            tx_count=len(transactions),
            tx_root=compute_tx_root(tx_ids),
            log_size=0,
            log_root=sha256(b"sim-log\0" + parent_hash),
            state_root=compute_fake_state_root(parent_hash, height, tx_ids),
            validator_set_hash=self.validator_set_hash,
        )
        return Block(header, transactions)

    def validate_block(self, block: Block) -> bool:
        header = block.header
        tx_ids = [tx.tx_id for tx in block.transactions]
        return (
            header.chain_id == CHAIN_ID
            and header.height == self.store.head_height + 1
            and header.parent_hash == self.store.head_hash
            and header.timestamp_ms >= self.store.head_timestamp_ms
            and self.validator_set.get(header.proposer) is not None
            and header.tx_count == len(block.transactions)
            and header.tx_root == compute_tx_root(tx_ids)
            and header.log_root == sha256(b"sim-log\0" + header.parent_hash)
            and header.state_root == compute_fake_state_root(header.parent_hash, header.height, tx_ids)
            and header.validator_set_hash == self.validator_set_hash
        )


# --- Nodes ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SyncRequest:
    from_height: int


@dataclass(frozen=True, slots=True)
class SyncResponse:
    blocks: tuple[tuple[Block, CommitCertificate], ...]


@dataclass
class SimNode:
    name: str
    key: PrivateKey | None
    behaviour: str | None
    """None for an honest node, else one of ``BEHAVIOURS``."""
    store: SimStore
    application: FakeApplication
    wal: MemoryWal
    clock_skew_ms: int
    core: ConsensusCore | None = None
    is_up: bool = True
    generation: int = 0
    """Bumped by a crash: timers and notices of an older generation are dropped."""
    highest_height_seen: int = 0
    highest_height_source: str = ""
    behind_since_ms: int | None = None
    twins: dict[tuple[int, int], ProposalMessage] = field(default_factory=dict)
    """Equivocating proposer: the second proposal of each (height, round)."""
    block_hashes_seen: dict[tuple[int, int], bytes] = field(default_factory=dict)
    """Double-voter: a real block hash seen per (height, round), to vote for the wrong one."""
    double_votes_received: dict[tuple[str, int, int, int], set[bytes]] = field(default_factory=dict)
    """Honest node, this boot: values of each double-voter vote it received at the vote's height."""
    evidence_reported: set[tuple[str, int, int, int]] = field(default_factory=set)
    """Honest node, this boot: (validator, height, round, kind) it reported."""

    @property
    def is_honest(self) -> bool:
        return self.behaviour is None

    def get_core(self) -> ConsensusCore:
        assert self.core is not None
        return self.core


# --- The cluster ------------------------------------------------------------------------


class Cluster:
    """Runs one seed: builds the nodes, drives the event queue, checks after every step."""

    def __init__(self, options: SwarmOptions, rng: random.Random) -> None:
        self.options = options
        self.rng = rng
        self.now_ms = GENESIS_TIME_MS
        self._queue: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self._sequence = 0
        self.network = Network(rng, options.network, self._schedule_delivery)
        self.phase = "safety"
        self.trace: deque[str] = deque(maxlen=TRACE_EVENTS_KEPT)
        self.canonical: dict[int, bytes] = {}
        """Height -> block hash of the first honest commit at that height."""
        self._certificates_checked: set[tuple[int, bytes, tuple[str, ...]]] = set()
        self._signed_by_honest: dict[tuple[str, int, int, int], bytes] = {}
        self._prevoters: dict[tuple[int, int, bytes], set[str]] = {}
        """(height, round, block hash) -> validators that signed a prevote for it (anyone, any time)."""
        self._honest_locks: dict[tuple[str, int], tuple[int, bytes]] = {}
        """(validator, height) -> (round, block hash) of its latest signed precommit for a block."""
        self.evidence: list[tuple[str, ReportEvidence]] = []
        self.double_votes_sent = 0
        self.refusals = 0
        self.liveness_target_height = 0
        self.liveness_deadline_ms = 0
        self._build_nodes()

    # --- Setup ---

    def _build_nodes(self) -> None:
        options = self.options
        keys = {f"validator-{index}": PrivateKey(self.rng.randbytes(32)) for index in range(options.validators)}
        self.validator_set = ValidatorSet(
            tuple(Validator(name, key.public_key, 1) for name, key in sorted(keys.items()))
        )
        member_key = PrivateKey(self.rng.randbytes(32))
        genesis_hash = sha256(b"sim-genesis\0" + options.seed.to_bytes(8, "big"))
        behaviours = dict(options.byzantine)
        self.nodes: dict[str, SimNode] = {}
        entries: list[tuple[str, PrivateKey | None]] = sorted(keys.items())
        entries += [(f"follower-{index}", None) for index in range(options.followers)]
        for name, key in entries:
            store = SimStore(genesis_hash)
            self.nodes[name] = SimNode(
                name=name,
                key=key,
                behaviour=behaviours.get(name),
                store=store,
                application=FakeApplication(name, store, self.validator_set, member_key),
                wal=MemoryWal(),
                clock_skew_ms=self.rng.randint(0, options.clock_skew_ms_max),
            )

    def _new_core(self, node: SimNode) -> ConsensusCore:
        height = node.store.head_height + 1
        wal_state = node.wal.load()
        core_class = AmnesiaCore if node.behaviour == AMNESIA else ConsensusCore
        return core_class(
            chain_id=CHAIN_ID,
            validator_set=self.validator_set,
            height=height,
            application=node.application,
            validator_name=node.name if node.key is not None else None,
            config=self.options.consensus,
            resume=wal_state.state,
            proof_of_lock=wal_state.proof_of_lock,
        )

    # --- The event queue ---

    def _schedule(self, at_ms: int, handler: Callable[..., None], *arguments: Any) -> None:
        self._sequence += 1
        heapq.heappush(self._queue, (at_ms, self._sequence, handler, arguments))

    def _schedule_delivery(self, at_ms: int, source: str, target: str, payload: Any) -> None:
        self._schedule(at_ms, self._on_delivery, source, target, payload)

    def run(self) -> None:
        for node in self.nodes.values():
            self._boot(node)
        self._schedule_faults()
        self._schedule(self.now_ms + self.options.safety_duration_ms, self._on_liveness_time)
        for _ in range(EVENTS_MAX):
            if not self._queue:
                self.fail("the event queue ran dry")
            at_ms, _sequence, handler, arguments = heapq.heappop(self._queue)
            assert at_ms >= self.now_ms
            self.now_ms = self.network.now_ms = at_ms
            handler(*arguments)
            if self.phase == "safety" and self._get_max_head() >= self.options.safety_heights_max:
                self.enter_liveness()
            if self.phase == "liveness":
                if self._is_liveness_reached():
                    self._check_final()
                    return
                if self.now_ms > self.liveness_deadline_ms:
                    self.fail(f"liveness: honest heads {self._describe_heads()} did not reach "
                              f"{self.liveness_target_height} within {self.options.liveness_budget_ms} ms")
        self.fail(f"more than {EVENTS_MAX} events")

    def fail(self, what: str) -> None:
        lines = [
            what,
            f"options: {self.options}",
            f"phase {self.phase} at +{self.now_ms - GENESIS_TIME_MS} ms; heads {self._describe_heads()}",
            *(f"  {name}: {self._describe_node(node)}" for name, node in self.nodes.items()),
            "recent events:",
            *self.trace,
        ]
        raise SimulationFailure("\n".join(lines))

    def _node_now(self, node: SimNode) -> int:
        return self.now_ms + node.clock_skew_ms

    # --- Node lifecycle ---

    def _boot(self, node: SimNode) -> None:
        """Start (or restart) a node from its store and WAL; re-send the votes it signed."""
        node.is_up = True
        node.generation += 1
        node.highest_height_seen = 0
        node.behind_since_ms = None
        node.double_votes_received = {}
        node.evidence_reported = set()
        core = node.core = self._new_core(node)
        now_ms = self._node_now(node)
        actions: list[Action] = []
        for record in node.wal.load().records:
            signed_vote = record.to_signed_vote()
            if signed_vote is not None and record.height == core.height:
                actions += core.on_vote(signed_vote, now_ms)
        actions += core.start(now_ms)
        self.trace.append(f"+{self.now_ms - GENESIS_TIME_MS} {node.name} boots at height {core.height} "
                          f"round {core.round} step {core.step.name}")
        self._run_actions(node, actions)
        self._schedule(self.now_ms + TICK_INTERVAL_MS, self._on_tick, node.name, node.generation)

    def _on_crash(self, name: str) -> None:
        node = self.nodes[name]
        if self.phase != "safety" or not node.is_up:
            return
        node.is_up = False
        node.generation += 1
        node.core = None
        self.trace.append(f"+{self.now_ms - GENESIS_TIME_MS} {name} crashes")
        delay_ms = self.rng.randint(1, self.options.restart_delay_ms_max)
        self._schedule(self.now_ms + delay_ms, self._on_restart, name)

    def _on_restart(self, name: str) -> None:
        node = self.nodes[name]
        if not node.is_up:
            self._boot(node)

    def _schedule_faults(self) -> None:
        options = self.options
        end_ms = self.now_ms + options.safety_duration_ms
        honest = [name for name, node in self.nodes.items() if node.is_honest]
        if options.crash_interval_ms and honest:
            at_ms = self.now_ms
            while True:
                at_ms += self.rng.randint(1, 2 * options.crash_interval_ms)
                if at_ms >= end_ms:
                    break
                self._schedule(at_ms, self._on_crash, self.rng.choice(honest))
        if options.partition_interval_ms and len(self.nodes) >= 2:
            at_ms = self.now_ms
            while True:
                at_ms += self.rng.randint(1, 2 * options.partition_interval_ms)
                if at_ms >= end_ms:
                    break
                self._schedule(at_ms, self._on_partition, self.rng.randint(1, options.partition_duration_ms_max))
        if options.clog_interval_ms and len(self.nodes) >= 2:
            at_ms = self.now_ms
            while True:
                at_ms += self.rng.randint(1, 2 * options.clog_interval_ms)
                if at_ms >= end_ms:
                    break
                source, target = self.rng.sample(sorted(self.nodes), 2)
                self._schedule(at_ms, self._on_clog, source, target, self.rng.randint(1, options.clog_duration_ms_max))

    def _on_partition(self, duration_ms: int) -> None:
        if self.phase != "safety" or self.network.is_partitioned:
            return
        group = self.network.start_partition(sorted(self.nodes))
        self.trace.append(f"+{self.now_ms - GENESIS_TIME_MS} partition cuts off {group}")
        self._schedule(self.now_ms + duration_ms, self._on_heal)

    def _on_clog(self, source: str, target: str, duration_ms: int) -> None:
        if self.phase == "safety":
            self.network.clog(source, target, self.now_ms + duration_ms)
            self.trace.append(f"+{self.now_ms - GENESIS_TIME_MS} link {source} -> {target} clogged for {duration_ms} ms")

    def _on_heal(self) -> None:
        if self.network.is_partitioned:
            self.network.heal()
            self.trace.append(f"+{self.now_ms - GENESIS_TIME_MS} partition heals")

    def _on_liveness_time(self) -> None:
        if self.phase == "safety":
            self.enter_liveness()

    def enter_liveness(self) -> None:
        """Heal everything (TigerBeetle's ``transition_to_liveness_mode``); Byzantine nodes stay."""
        self.phase = "liveness"
        self.network.heal()
        self.network.options = NetworkOptions(
            delay_ms_min=self.options.network.delay_ms_min,
            delay_ms_max=min(self.options.network.delay_ms_max, 100),
            loss_probability=0.0,
            duplicate_probability=self.options.network.duplicate_probability,
        )
        for node in self.nodes.values():
            if not node.is_up:
                self._boot(node)
        self.liveness_target_height = self._get_max_head() + self.options.liveness_heights
        self.liveness_deadline_ms = self.now_ms + self.options.liveness_budget_ms
        self.trace.append(f"+{self.now_ms - GENESIS_TIME_MS} liveness: target height {self.liveness_target_height}")

    # --- Events for a node ---

    def _on_tick(self, name: str, generation: int) -> None:
        node = self.nodes[name]
        if not node.is_up or node.generation != generation:
            return
        self._run_actions(node, node.get_core().on_tick(self._node_now(node)))
        self._maybe_request_sync(node)
        self._schedule(self.now_ms + TICK_INTERVAL_MS, self._on_tick, name, generation)

    def _on_timeout(self, name: str, generation: int, timeout: Timeout) -> None:
        node = self.nodes[name]
        if node.is_up and node.generation == generation:
            self._run_actions(node, node.get_core().on_timeout(timeout, self._node_now(node)))

    def _on_committed_notice(self, name: str, generation: int, height: int) -> None:
        node = self.nodes[name]
        if node.is_up and node.generation == generation:
            actions = node.get_core().on_committed(height, self.validator_set, self._node_now(node))
            self._run_actions(node, actions)

    def _on_delivery(self, source: str, target: str, payload: Any) -> None:
        node = self.nodes[target]
        if not node.is_up or not self.network.is_link_up(source, target):
            return
        if isinstance(payload, SyncRequest):
            self._answer_sync(node, source, payload)
        elif isinstance(payload, SyncResponse):
            self._apply_sync(node, payload)
        else:
            self._receive_consensus_message(node, source, payload)

    def _receive_consensus_message(self, node: SimNode, source: str, data: bytes) -> None:
        message = decode_consensus_message(decode_envelope(data))
        core = node.get_core()
        now_ms = self._node_now(node)
        if isinstance(message, ProposalMessage):
            height = message.proposal.height
            node.block_hashes_seen[(height, message.proposal.round)] = message.proposal.block_hash
            actions = core.on_proposal(message, now_ms)
        else:
            height = message.vote.height
            actions = core.on_vote(message, now_ms)
        if height > node.highest_height_seen:
            node.highest_height_seen = height
            node.highest_height_source = source
        self._run_actions(node, actions)
        if isinstance(message, SignedVote):
            self._check_double_vote_reported(node, message, core)

    def _check_double_vote_reported(self, node: SimNode, signed_vote: SignedVote, core: ConsensusCore) -> None:
        """An honest node that has received two different votes of one slot at its height reports it."""
        vote = signed_vote.vote
        accused = self.nodes.get(vote.validator)
        if not node.is_honest or accused is None or accused.behaviour != DOUBLE_VOTER:
            return
        if vote.height != core.height or vote.round > core.round + ROUNDS_AHEAD_MAX:
            return  # the core rightly ignores it (or buffers it for the next height)
        key = (vote.validator, vote.height, vote.round, vote.kind)
        values = node.double_votes_received.setdefault(key, set())
        values.add(vote.block_hash)
        if len(values) >= 2 and key not in node.evidence_reported:
            self.fail(f"{node.name} received two different votes of {key} and reported no evidence")

    # --- The shell: actions ---

    def _run_actions(self, node: SimNode, actions: list[Action]) -> None:
        """Perform actions in order; signed messages go back into the core (FIFO)."""
        queue = deque(actions)
        while queue and node.is_up:
            action = queue.popleft()
            core = node.get_core()
            now_ms = self._node_now(node)
            if isinstance(action, SignVote):
                signed_vote = self._sign_vote(node, action)
                if signed_vote is not None:
                    queue.extend(core.on_vote(signed_vote, now_ms))
            elif isinstance(action, SignProposal):
                message = self._sign_proposal(node, action)
                if message is not None:
                    queue.extend(core.on_proposal(message, now_ms))
            elif isinstance(action, Broadcast):
                self._broadcast(node, action.message)
            elif isinstance(action, ScheduleTimeout):
                self._schedule(self.now_ms + action.delay_ms, self._on_timeout, node.name, node.generation, action.timeout)
            elif isinstance(action, CommitBlock):
                self._store_block(node, action.block, action.certificate)
                delay_ms = self.rng.randint(1, self.options.commit_delay_ms_max)
                self._schedule(self.now_ms + delay_ms, self._on_committed_notice, node.name, node.generation,
                               action.block.height)
            else:
                assert isinstance(action, ReportEvidence), action
                self._check_evidence(node, action)

    def _sign_vote(self, node: SimNode, action: SignVote) -> SignedVote | None:
        vote = action.vote
        assert node.key is not None and vote.validator == node.name
        if node.behaviour is not None:
            signed_vote = sign_vote(vote, node.key, CHAIN_ID)  # Byzantine: no WAL
            self._note_signed_vote(vote)
            if node.behaviour == DOUBLE_VOTER:
                self._send_conflicting_vote(node, signed_vote)
            return signed_vote
        self._check_vote_is_justified(vote)
        sign_bytes = vote.signing_bytes(CHAIN_ID)
        try:
            signature = node.wal.check_and_record(
                vote.height, vote.round, SIGN_STEP_BY_VOTE_KIND[vote.kind], sign_bytes, node.key.sign_raw,
                action.state, action.proof_of_lock,
            )
        except DoubleSignRefused:
            self.refusals += 1
            return None
        self._check_honest_signature(node.name, vote.height, vote.round, vote.kind, sign_bytes)
        self._note_signed_vote(vote)
        if vote.kind == VOTE_PRECOMMIT and vote.block_hash != NIL_BLOCK_HASH:
            lock = self._honest_locks.get((vote.validator, vote.height), (-1, NIL_BLOCK_HASH))
            if vote.round > lock[0]:
                self._honest_locks[(vote.validator, vote.height)] = (vote.round, vote.block_hash)
        return SignedVote(vote, signature)

    def _sign_proposal(self, node: SimNode, action: SignProposal) -> ProposalMessage | None:
        proposal = action.proposal
        assert node.key is not None and proposal.proposer == node.name
        if node.behaviour is not None:
            message = ProposalMessage(sign_proposal(proposal, node.key, CHAIN_ID), action.block)
            if node.behaviour == EQUIVOCATING_PROPOSER:
                self._make_twin_proposal(node, action)
            return message
        sign_bytes = proposal.signing_bytes(CHAIN_ID)
        try:
            signature = node.wal.check_and_record(
                proposal.height, proposal.round, SIGN_STEP_PROPOSAL, sign_bytes, node.key.sign_raw, action.state
            )
        except DoubleSignRefused:
            self.refusals += 1
            return None
        self._check_honest_signature(node.name, proposal.height, proposal.round, 0, sign_bytes)
        return ProposalMessage(SignedProposal(proposal, signature), action.block)

    def _broadcast(self, node: SimNode, message: SignedVote | ProposalMessage) -> None:
        if node.behaviour == SILENT:
            return
        peers = [name for name in self.nodes if name != node.name]
        data = encode_consensus_message(message)
        if node.behaviour == AMNESIA and isinstance(message, SignedVote) and message.vote.kind == VOTE_PRECOMMIT:
            peers = [self.rng.choice(peers)] if peers else []
        if isinstance(message, ProposalMessage) and node.behaviour == EQUIVOCATING_PROPOSER:
            twin = node.twins.get((message.proposal.height, message.proposal.round))
            if twin is not None and twin.proposal.block_hash != message.proposal.block_hash:
                twin_data = encode_consensus_message(twin)
                for peer in peers:
                    self.network.send(self.now_ms, node.name, peer, data if self.rng.random() < 0.5 else twin_data)
                return
        for peer in peers:
            self.network.send(self.now_ms, node.name, peer, data)

    # --- Byzantine behaviour ---

    def _make_twin_proposal(self, node: SimNode, action: SignProposal) -> None:
        assert node.key is not None
        proposal = action.proposal
        block = action.block
        header = block.header
        twin_header = BlockHeader(
            header.chain_id, header.height, header.parent_hash, header.timestamp_ms + 1 + self.rng.randint(0, 50),
            header.proposer, header.tx_count, header.tx_root, header.log_size, header.log_root, header.state_root,
            header.validator_set_hash,
        )
        twin_block = Block(twin_header, block.transactions)
        twin_proposal = Proposal(
            proposal.height, proposal.round, proposal.pol_round, twin_block.compute_hash(), proposal.proposer
        )
        node.twins = {(proposal.height, proposal.round): ProposalMessage(
            sign_proposal(twin_proposal, node.key, CHAIN_ID), twin_block
        )}

    def _send_conflicting_vote(self, node: SimNode, signed_vote: SignedVote) -> None:
        assert node.key is not None
        vote = signed_vote.vote
        if vote.block_hash == NIL_BLOCK_HASH:
            other_hash = node.block_hashes_seen.get((vote.height, vote.round)) or sha256(
                b"sim-bogus\0" + vote.encode()
            )
        else:
            other_hash = NIL_BLOCK_HASH
        self._note_signed_vote(Vote(vote.height, vote.round, vote.kind, other_hash, vote.validator))
        conflicting = sign_vote(Vote(vote.height, vote.round, vote.kind, other_hash, vote.validator),
                                node.key, CHAIN_ID)
        data = encode_consensus_message(conflicting)
        self.double_votes_sent += 1
        everyone = self.phase == "liveness"
        for peer in self.nodes:
            if peer != node.name and (everyone or self.rng.random() < 0.5):
                self.network.send(self.now_ms, node.name, peer, data)

    # --- Block sync (the shell's job; minimal here) ---

    def _maybe_request_sync(self, node: SimNode) -> None:
        head = node.store.head_height
        if node.highest_height_seen < head + 2:
            node.behind_since_ms = None
            return
        if node.behind_since_ms is None:
            node.behind_since_ms = self.now_ms
            return
        if self.now_ms - node.behind_since_ms >= SYNC_DELAY_MS:
            node.behind_since_ms = self.now_ms
            self.network.send(self.now_ms, node.name, node.highest_height_source, SyncRequest(head + 1))

    def _answer_sync(self, node: SimNode, source: str, request: SyncRequest) -> None:
        if node.behaviour == SILENT or request.from_height < 1:
            return
        blocks = tuple(node.store.blocks[request.from_height - 1 : request.from_height - 1 + SYNC_BLOCKS_MAX])
        if blocks:
            self.network.send(self.now_ms, node.name, source, SyncResponse(blocks))

    def _apply_sync(self, node: SimNode, response: SyncResponse) -> None:
        stored_any = False
        for block, certificate in response.blocks:
            if block.height != node.store.head_height + 1:
                continue
            try:
                certificate.verify(CHAIN_ID, self.validator_set, block.compute_hash(), block.height)
            except InvalidBlock:
                return
            if not node.application.validate_block(block):
                return
            self._store_block(node, block, certificate)
            stored_any = True
        if stored_any:
            self.trace.append(f"+{self.now_ms - GENESIS_TIME_MS} {node.name} synced to {node.store.head_height}")
            actions = node.get_core().on_committed(node.store.head_height, self.validator_set, self._node_now(node))
            self._run_actions(node, actions)
            if node.is_up and node.highest_height_seen >= node.store.head_height + 2:
                self.network.send(self.now_ms, node.name, node.highest_height_source,
                                  SyncRequest(node.store.head_height + 1))

    # --- Checkers ---

    def _store_block(self, node: SimNode, block: Block, certificate: CommitCertificate) -> None:
        """Append to the node's durable store, checking what every commit must satisfy."""
        height = block.height
        block_hash = block.compute_hash()
        if height != node.store.head_height + 1:
            self.fail(f"{node.name} commits height {height} on head {node.store.head_height}: not consecutive")
        if block.header.parent_hash != node.store.head_hash:
            self.fail(f"{node.name} commits height {height} that does not link to its head")
        self._check_certificate(node, block_hash, height, certificate)
        node.store.blocks.append((block, certificate))
        self.trace.append(f"+{self.now_ms - GENESIS_TIME_MS} {node.name} commits {height} {block_hash.hex()[:8]} "
                          f"(round {certificate.round})")
        if node.is_honest:
            canonical = self.canonical.setdefault(height, block_hash)
            if canonical != block_hash:
                self.fail(f"safety: {node.name} committed {block_hash.hex()} at height {height}, "
                          f"another honest node committed {canonical.hex()}")

    def _check_certificate(self, node: SimNode, block_hash: bytes, height: int, certificate: CommitCertificate) -> None:
        key = (height, block_hash, tuple(item.validator for item in certificate.signatures))
        if key in self._certificates_checked:
            return
        try:
            certificate.verify(CHAIN_ID, self.validator_set, block_hash, height)
        except InvalidBlock as error:
            self.fail(f"{node.name} committed height {height} with a bad certificate: {error}")
        self._certificates_checked.add(key)

    def _check_honest_signature(self, name: str, height: int, round_number: int, kind: int, sign_bytes: bytes) -> None:
        key = (name, height, round_number, kind)
        previous = self._signed_by_honest.setdefault(key, sign_bytes)
        if previous != sign_bytes:
            self.fail(f"honest {name} signed two different messages at height {height} round {round_number} "
                      f"kind {kind}")

    def _note_signed_vote(self, vote: Vote) -> None:
        if vote.kind == VOTE_PREVOTE:
            self._prevoters.setdefault((vote.height, vote.round, vote.block_hash), set()).add(vote.validator)

    def _has_prevote_quorum(self, height: int, round_number: int, block_hash: bytes) -> bool:
        signers = self._prevoters.get((height, round_number, block_hash), set())
        return self.validator_set.has_quorum(len(signers))  # every validator has power 1 here

    def _check_vote_is_justified(self, vote: Vote) -> None:
        """A model of the paper's voting rules, judged on every vote an honest core asks to sign.

        The lock is derived from the validator's own signed precommits (the paper locks exactly
        when it precommits a block, L38-40), and proofs from every prevote signed by anyone, so a
        core that forgets or ignores its lock is caught at its first wrong prevote, fork or not.
        """
        if vote.block_hash == NIL_BLOCK_HASH:
            return
        if vote.kind == VOTE_PRECOMMIT:  # L36: 2f+1 prevotes for it in this round
            if not self._has_prevote_quorum(vote.height, vote.round, vote.block_hash):
                self.fail(f"honest {vote.validator} precommits {vote.block_hash.hex()[:8]} at height {vote.height} "
                          f"round {vote.round} without 2f+1 prevotes for it")
            return
        locked_round, locked_hash = self._honest_locks.get((vote.validator, vote.height), (-1, NIL_BLOCK_HASH))
        if locked_round < 0 or locked_hash == vote.block_hash:  # L23, L29 (lockedValue = v)
            return
        if any(self._has_prevote_quorum(vote.height, pol, vote.block_hash) for pol in range(locked_round, vote.round)):
            return  # L28-29: a proof of lock at a round >= lockedRound
        self.fail(f"honest {vote.validator} prevotes {vote.block_hash.hex()[:8]} at height {vote.height} round "
                  f"{vote.round} while locked on {locked_hash.hex()[:8]} at round {locked_round} with no newer proof")

    def _check_evidence(self, node: SimNode, evidence: ReportEvidence) -> None:
        if not node.is_honest:
            return
        vote_a, vote_b = evidence.vote_a.vote, evidence.vote_b.vote
        accused = self.nodes.get(vote_a.validator)
        same_slot = (vote_a.height, vote_a.round, vote_a.kind, vote_a.validator) == (
            vote_b.height, vote_b.round, vote_b.kind, vote_b.validator
        )
        if not same_slot or vote_a == vote_b:
            self.fail(f"{node.name} reported evidence of two votes that do not conflict: {vote_a} {vote_b}")
        validator = self.validator_set.get(vote_a.validator)
        assert validator is not None
        for signed in (evidence.vote_a, evidence.vote_b):
            if not verify_raw(validator.public_key, signed.vote.signing_bytes(CHAIN_ID), signed.signature):
                self.fail(f"{node.name} reported evidence with a bad signature")
        if accused is None or accused.behaviour != DOUBLE_VOTER:
            self.fail(f"{node.name} reported evidence against {vote_a.validator}, which is not a double-voter")
        key = (vote_a.validator, vote_a.height, vote_a.round, vote_a.kind)
        if key in node.evidence_reported:
            self.fail(f"{node.name} reported {key} twice")
        node.evidence_reported.add(key)
        self.evidence.append((node.name, evidence))

    def _check_final(self) -> None:
        """Honest chains are prefixes of one another."""
        chains = {name: node.store.get_block_hashes() for name, node in self.nodes.items() if node.is_honest}
        longest = max(chains.values(), key=len)
        for name, chain in chains.items():
            if chain != longest[: len(chain)]:
                self.fail(f"{name}'s chain is not a prefix of the longest honest chain")

    # --- Progress ---

    def _get_max_head(self) -> int:
        return max(node.store.head_height for node in self.nodes.values() if node.is_honest)

    def _is_liveness_reached(self) -> bool:
        return all(
            node.store.head_height >= self.liveness_target_height for node in self.nodes.values() if node.is_honest
        )

    def _describe_node(self, node: SimNode) -> str:
        if node.core is None:
            return "down"
        state = node.core.get_state()
        return (f"{node.behaviour or 'honest'} height {state.height} round {state.round} step {state.step} "
                f"locked {state.locked_round} {state.locked_block_hash.hex()[:8]} "
                f"valid {state.valid_round} {state.valid_block_hash.hex()[:8]}")

    def _describe_heads(self) -> str:
        return ", ".join(f"{name}={node.store.head_height}" for name, node in self.nodes.items())


@dataclass(frozen=True, slots=True)
class RunSummary:
    seed: int
    heights: int
    refusals: int
    evidence: int
    packets_sent: int
    simulated_ms: int


def run_seed(seed: int, validators: int | None = None) -> RunSummary:
    """Run one seed end to end; raises ``SimulationFailure`` on any violation."""
    rng = random.Random(seed)
    options = options_swarm(seed, rng, validators)
    cluster = Cluster(options, rng)
    cluster.run()
    return RunSummary(
        seed=seed,
        heights=cluster._get_max_head(),
        refusals=cluster.refusals,
        evidence=len(cluster.evidence),
        packets_sent=cluster.network.packets_sent,
        simulated_ms=cluster.now_ms - GENESIS_TIME_MS,
    )


__all__ = [
    "BEHAVIOURS",
    "CHAIN_ID",
    "DOUBLE_VOTER",
    "EQUIVOCATING_PROPOSER",
    "SILENT",
    "Cluster",
    "FakeApplication",
    "RunSummary",
    "SimNode",
    "SimStore",
    "SimulationFailure",
    "SwarmOptions",
    "options_swarm",
    "run_seed",
]
