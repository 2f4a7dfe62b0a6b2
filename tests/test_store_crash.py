"""Crash safety: SIGKILL a writer at random moments; the store must reopen whole.

``tests/crash_writer.py`` appends deterministic blocks forever and prints each
height once ``append_block`` has returned. Each cycle starts it, kills it with
SIGKILL after a delay drawn from one seeded ``random.Random``, and reopens the
store in this process. After every kill:

- the store opens without error (or does not exist yet, if nothing was acknowledged);
- its head is at least the last height the writer printed (acknowledged means
  durable) and at most one more (the block being appended when it died);
- every acknowledged block is stored with the hash the writer printed;
- ``verify_store`` passes: nothing half-written is visible.

Then the next writer resumes from the stored head. Delays mix three kinds:
very early (interpreter start-up, creating the store), a moment after the
writer starts (opening the store, the first blocks), and a moment after the
k-th acknowledgement (in the middle of an append). A failure prints
``reproduce with CRASH_SEED=N``: that environment variable reruns one seed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ledger.genesis import Genesis
from ledger.store import STORE_FILE_NAME, Store
from ledger.verify import verify_store
from tests import crash_writer

WRITER_PATH = Path(crash_writer.__file__)
CYCLES_DEFAULT = 25
CYCLES_SLOW = 200
EXIT_TIMEOUT_S = 10.0
"""How long a killed writer may take to be reaped (generous: SIGKILL is immediate)."""
ACKS_BEFORE_KILL_MAX = 8
"""Kills aimed mid-append wait for up to this many acknowledgements first."""
STARTUP_DELAY_S_MAX = 0.35
"""Time-based kills land within this long after the writer starts (its first block takes ~0.25 s).

Both bounds keep the chain short, because every cycle verifies all of it."""


@dataclass
class CrashHistory:
    """What the writers acknowledged, across every cycle of one run."""

    acknowledged: dict[int, str] = field(default_factory=dict)
    """Height -> block hash hex, as printed by a writer."""
    head_height_min: int = 0
    """The store's head may never be below this again."""


def draw_kill_plan(rng: random.Random) -> tuple[int, float]:
    """(acknowledgements to wait for, then seconds to wait) for one cycle."""
    kind = rng.random()
    if kind < 0.2:
        return 0, rng.uniform(0.0, 0.05)  # very early: start-up, imports, creating the store
    if kind < 0.45:
        return 0, rng.uniform(0.05, STARTUP_DELAY_S_MAX)  # opening the store, the first blocks
    return rng.randint(1, ACKS_BEFORE_KILL_MAX), rng.uniform(0.0, 0.006)  # in the middle of an append


def run_writer_until_killed(
    store_dir: Path, acks_before_kill: int, delay_s: float, stderr_path: Path, options: tuple[str, ...] = ()
) -> list[str]:
    """Start a writer, kill it as planned, and return every complete line it printed.

    With ``--kill-at`` options the writer may kill itself first; either way it dies by SIGKILL.
    """
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(WRITER_PATH), str(store_dir), *options], stdout=subprocess.PIPE, stderr=stderr
        )
    assert process.stdout is not None
    lines: list[bytes] = []
    for _ in range(acks_before_kill):
        line = process.stdout.readline()
        if not line:
            break  # the writer died on its own; checked below
        lines.append(line)
    time.sleep(delay_s)
    process.send_signal(signal.SIGKILL)
    lines.extend(process.stdout.read().splitlines(keepends=True))
    process.stdout.close()
    return_code = process.wait(timeout=EXIT_TIMEOUT_S)
    assert return_code == -signal.SIGKILL, f"writer exited by itself ({return_code}): {stderr_path.read_text()}"
    # A line cut short by the kill was never acknowledged.
    return [line.decode() for line in lines if line.endswith(b"\n")]


def check_store_after_kill(store_dir: Path, genesis: Genesis, printed: list[str], history: CrashHistory) -> None:
    for line in printed:
        height_text, hash_hex = line.split()
        history.acknowledged[int(height_text)] = hash_hex
    last_acknowledged = max(history.acknowledged, default=0)
    if not (store_dir / STORE_FILE_NAME).exists():
        assert last_acknowledged == 0, "acknowledged blocks but the store is gone"
        return
    store = Store.open(store_dir, genesis)
    try:
        # Acknowledged means durable; at most the one block in flight may be there besides.
        assert store.head_height >= max(last_acknowledged, history.head_height_min)
        # (a block durable but never acknowledged in an earlier cycle is part of the chain now)
        assert store.head_height <= max(last_acknowledged, history.head_height_min) + 1
        for line in printed:  # each acknowledged block is checked once, in the cycle that wrote it
            height_text, hash_hex = line.split()
            assert store.get_header(int(height_text)).compute_hash().hex() == hash_hex, f"block {height_text} changed"
        report = verify_store(store)
        assert report.ok, report.describe()
        assert report.head_height == store.head_height
        history.head_height_min = store.head_height
    finally:
        store.close()


def run_crash_cycles(tmp_path: Path, seed: int, cycles: int) -> None:
    rng = random.Random(seed)
    store_dir = tmp_path / "data"
    genesis = crash_writer.create_network(tmp_path / "test-network").genesis
    history = CrashHistory()
    for cycle in range(cycles):
        acks_before_kill, delay_s = draw_kill_plan(rng)
        context = (f"cycle {cycle} (wait for {acks_before_kill} acks, then {delay_s * 1000:.1f} ms); "
                   f"reproduce with CRASH_SEED={seed}")
        try:
            printed = run_writer_until_killed(store_dir, acks_before_kill, delay_s, tmp_path / "writer.stderr")
            check_store_after_kill(store_dir, genesis, printed, history)
        except Exception as error:
            raise AssertionError(f"{context}: {error}") from error
    assert history.acknowledged, f"no block was ever acknowledged; reproduce with CRASH_SEED={seed}"


def get_seed(default: int) -> int:
    return int(os.environ.get("CRASH_SEED", default))


def test_kill_and_reopen_cycles(tmp_path: Path) -> None:
    run_crash_cycles(tmp_path, get_seed(1), CYCLES_DEFAULT)


@pytest.mark.slow
def test_kill_and_reopen_cycles_long(tmp_path: Path) -> None:
    run_crash_cycles(tmp_path, get_seed(2), CYCLES_SLOW)


def test_writer_resumes_the_same_chain(tmp_path: Path) -> None:
    """Blocks written across kills equal the blocks of one uninterrupted writer."""
    killed_dir = tmp_path / "killed" / "data"
    for _ in range(3):
        run_writer_until_killed(killed_dir, 4, 0.0, tmp_path / "killed.stderr")
    straight_dir = tmp_path / "straight" / "data"
    printed = run_writer_until_killed(straight_dir, 20, 0.0, tmp_path / "straight.stderr")
    straight_hashes = {int(h): hash_hex for h, hash_hex in (line.split() for line in printed)}
    store = Store.open(killed_dir)
    try:
        assert store.head_height >= 12
        for height in range(1, store.head_height + 1):
            assert store.get_header(height).compute_hash().hex() == straight_hashes[height]
    finally:
        store.close()


KILL_POINTS = [
    # (SQL statement prefix, occurrence, head height the store must reopen at; None: no store yet).
    # Occurrences count whole-store events: one create, then one write transaction per block
    # (block 1 holds 3 transactions); executemany runs its statement once per row.
    pytest.param("BEGIN IMMEDIATE", 1, None, id="create-begin"),
    pytest.param("CREATE TABLE IF NOT EXISTS state ", 1, None, id="create-schema"),
    pytest.param("INSERT INTO meta", 1, None, id="create-genesis-meta"),
    pytest.param("COMMIT", 1, None, id="create-commit"),
    pytest.param("SELECT height FROM blocks", 1, 0, id="create-done"),
    pytest.param("BEGIN IMMEDIATE", 2, 0, id="block-1-begin"),
    pytest.param("INSERT INTO blocks", 1, 0, id="block-1-row"),
    pytest.param("COMMIT", 2, 0, id="block-1-commit"),
    pytest.param("BEGIN IMMEDIATE", 3, 1, id="block-2-begin"),
    pytest.param("INSERT INTO txs", 3 + 3, 1, id="block-2-tx-index"),
    pytest.param("COMMIT", 3, 1, id="block-2-commit"),
    pytest.param("BEGIN IMMEDIATE", 4, 2, id="block-3-begin"),
]


@pytest.mark.parametrize(("sql_prefix", "occurrence", "head_height"), KILL_POINTS)
def test_kill_at_statement(tmp_path: Path, sql_prefix: str, occurrence: int, head_height: int | None) -> None:
    """A crash at an exact statement: the store holds exactly the committed blocks, and resumes."""
    store_dir = tmp_path / "data"
    genesis = crash_writer.create_network(tmp_path / "test-network").genesis
    history = CrashHistory()
    options = ("--kill-at", sql_prefix, str(occurrence))
    printed = run_writer_until_killed(store_dir, 10, 0.0, tmp_path / "writer.stderr", options)
    assert len(printed) == (head_height or 0), printed  # the writer killed itself before its 10th ack
    check_store_after_kill(store_dir, genesis, printed, history)
    if head_height is None:
        assert not (store_dir / STORE_FILE_NAME).exists()
    else:
        store = Store.open(store_dir, genesis)
        assert store.head_height == head_height
        store.close()
    printed = run_writer_until_killed(store_dir, 3, 0.0, tmp_path / "writer.stderr")  # resume
    check_store_after_kill(store_dir, genesis, printed, history)
    assert max(history.acknowledged) >= (head_height or 0) + 3
