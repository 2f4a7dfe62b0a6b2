"""The consensus core in the deterministic simulator (tests/sim), over many seeds.

Each seed draws its own swarm of options and faults (``tests.sim.cluster``):
4 validators mostly, 1 or 7 sometimes, loss, duplication, reordering,
partitions, crashes with restarts from the signer WAL, and up to f Byzantine
validators. It runs a safety phase, then a liveness phase. The checkers are
listed in ``tests/sim/cluster.py``.

To rerun one seed::

    SIM_SEED=N .venv/bin/pytest tests/test_consensus_sim.py

If ``tests/conftest.py`` registers a ``--seed`` option, ``--seed=N`` works
too, and failure messages say so.
"""

from __future__ import annotations

import os
import random

import pytest

from ledger.block import Block, BlockHeader, CommitCertificate
from ledger.hashing import sha256
from tests.sim.cluster import (
    CHAIN_ID,
    DOUBLE_VOTER,
    Cluster,
    SimulationFailure,
    options_swarm,
    run_seed,
)

SEEDS_DEFAULT = 1000
"""The default suite: ~70 ms a seed on average, about 80 s in all on a 2-core machine."""
SEEDS_FIXED_SIZE = 25
"""Extra seeds with exactly 1 and exactly 7 validators in the default suite."""
SEEDS_SLOW = 300
"""The slow run: 7 validators (f = 2, so two Byzantine validators at once)."""
SLOW_SEED_BASE = 1_000_000


SEED_RANGES = {
    "test_swarm": (0, SEEDS_DEFAULT),
    "test_swarm_one_validator": (0, SEEDS_FIXED_SIZE),
    "test_swarm_seven_validators": (0, SEEDS_FIXED_SIZE),
    "test_swarm_seven_validators_slow": (SLOW_SEED_BASE, SEEDS_SLOW),
}
"""(first seed, count) for each seeded test."""


def get_chosen_seed(config: pytest.Config) -> int | None:
    try:
        chosen = config.getoption("seed", default=None)
    except ValueError:
        chosen = None
    if chosen is None:
        chosen = os.environ.get("SIM_SEED")
    return None if chosen in (None, "") else int(chosen)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``seed``: every default seed, or only the one chosen by SIM_SEED / --seed."""
    if "seed" not in metafunc.fixturenames:
        return
    base, count = SEED_RANGES[metafunc.function.__name__]
    chosen = get_chosen_seed(metafunc.config)
    seeds = [chosen] if chosen is not None else list(range(base, base + count))
    metafunc.parametrize("seed", seeds, ids=[f"seed={seed}" for seed in seeds])


def reproduce_hint(config: pytest.Config, seed: int, test_name: str) -> str:
    try:
        config.getoption("seed")
    except ValueError:
        return f"reproduce with: SIM_SEED={seed} pytest tests/test_consensus_sim.py -k {test_name}"
    return f"reproduce with: pytest tests/test_consensus_sim.py --seed={seed} -k {test_name}"


def run_or_fail(config: pytest.Config, seed: int, test_name: str, validators: int | None = None) -> None:
    try:
        run_seed(seed, validators)
    except SimulationFailure as failure:
        message = f"{failure}\n{reproduce_hint(config, seed, test_name)}"
    else:
        return
    pytest.fail(message, pytrace=False)  # outside the except: one report, not a chained pair


def test_swarm(pytestconfig: pytest.Config, seed: int) -> None:
    run_or_fail(pytestconfig, seed, "test_swarm")


def test_swarm_one_validator(pytestconfig: pytest.Config, seed: int) -> None:
    run_or_fail(pytestconfig, seed, "test_swarm_one_validator", validators=1)


def test_swarm_seven_validators(pytestconfig: pytest.Config, seed: int) -> None:
    run_or_fail(pytestconfig, seed, "test_swarm_seven_validators", validators=7)


@pytest.mark.slow
def test_swarm_seven_validators_slow(pytestconfig: pytest.Config, seed: int) -> None:
    run_or_fail(pytestconfig, seed, "test_swarm_seven_validators_slow", validators=7)


# --- The simulator itself ---------------------------------------------------------------


def summarize(seed: int) -> tuple[object, ...]:
    rng = random.Random(seed)
    cluster = Cluster(options_swarm(seed, rng), rng)
    cluster.run()
    chains = tuple(tuple(node.store.get_block_hashes()) for node in cluster.nodes.values())
    return chains, cluster.now_ms, cluster.network.packets_sent, len(cluster.evidence)


@pytest.mark.parametrize("replayed_seed", [3, 12, 35])
def test_a_seed_replays_exactly(replayed_seed: int) -> None:
    assert summarize(replayed_seed) == summarize(replayed_seed)


def test_options_cover_every_fault() -> None:
    """Across the default seeds, every kind of fault is drawn (the swarm is not degenerate)."""
    seen: set[str] = set()
    for seed in range(200):
        options = options_swarm(seed, random.Random(seed))
        seen |= {behaviour for _name, behaviour in options.byzantine}
        seen |= {f"validators={options.validators}"}
        if options.network.loss_probability:
            seen.add("loss")
        if options.network.duplicate_probability:
            seen.add("duplication")
        if options.partition_interval_ms:
            seen.add("partitions")
        if options.crash_interval_ms:
            seen.add("crashes")
        if options.followers:
            seen.add("followers")
    expected = {"equivocating_proposer", "double_voter", "silent", "validators=1", "validators=4",
                "validators=7", "loss", "duplication", "partitions", "crashes", "followers"}
    assert expected <= seen


def make_cluster(seed: int = 5) -> Cluster:
    rng = random.Random(seed)
    return Cluster(options_swarm(seed, rng, validators=4), rng)


def test_checker_catches_two_blocks_at_one_height() -> None:
    cluster = make_cluster()
    nodes = list(cluster.nodes.values())
    blocks = [node.application.propose_block(1, 0, 1_700_000_000_000 + index) for index, node in enumerate(nodes[:2])]
    keys = [(node.name, node.key) for node in nodes if node.key is not None]
    from ledger.block import sign_commit

    certificates = [sign_commit(CHAIN_ID, block.header, 0, keys) for block in blocks]  # type: ignore[arg-type]
    cluster._store_block(nodes[0], blocks[0], certificates[0])
    with pytest.raises(SimulationFailure, match="safety"):
        cluster._store_block(nodes[1], blocks[1], certificates[1])


def test_checker_catches_a_certificate_without_quorum() -> None:
    cluster = make_cluster()
    node = next(iter(cluster.nodes.values()))
    block = node.application.propose_block(1, 0, 1_700_000_000_000)
    from ledger.block import sign_commit

    certificate = sign_commit(CHAIN_ID, block.header, 0, [(node.name, node.key)])  # type: ignore[list-item]
    with pytest.raises(SimulationFailure, match="bad certificate"):
        cluster._store_block(node, block, certificate)


def test_checker_catches_a_height_gap_and_a_broken_link() -> None:
    cluster = make_cluster()
    node = next(iter(cluster.nodes.values()))
    digest = sha256(b"elsewhere")
    orphan = Block(BlockHeader(CHAIN_ID, 1, digest, 1, node.name, 0, digest, 0, digest, digest, digest), ())
    with pytest.raises(SimulationFailure, match="does not link"):
        cluster._store_block(node, orphan, CommitCertificate(1, 0, orphan.compute_hash(), ()))
    skipped = Block(BlockHeader(CHAIN_ID, 2, digest, 1, node.name, 0, digest, 0, digest, digest, digest), ())
    with pytest.raises(SimulationFailure, match="not consecutive"):
        cluster._store_block(node, skipped, CommitCertificate(2, 0, skipped.compute_hash(), ()))


def test_failure_message_names_the_seed_options_and_recent_events() -> None:
    cluster = make_cluster(seed=77)
    cluster.trace.append("+1 something happened")
    with pytest.raises(SimulationFailure) as failure:
        cluster.fail("what went wrong")
    message = str(failure.value)
    assert "what went wrong" in message and "seed=77" in message and "+1 something happened" in message


def test_double_voter_is_caught() -> None:
    """A seed with a double-voter among 4 validators: evidence names it and only it."""
    for seed in range(400):
        rng = random.Random(seed)
        options = options_swarm(seed, rng, validators=4)
        if any(behaviour == DOUBLE_VOTER for _name, behaviour in options.byzantine):
            cluster = Cluster(options, rng)
            cluster.run()
            accused = {evidence.vote_a.vote.validator for _reporter, evidence in cluster.evidence}
            assert accused == {name for name, behaviour in options.byzantine if behaviour == DOUBLE_VOTER}
            return
    raise AssertionError("no seed below 400 draws a double-voter")
