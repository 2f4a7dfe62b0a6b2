"""The signer WAL (node/wal.py): no double signing across restarts, torn writes, kill -9.

The guard tests run against both ``SignerWal`` (a file, reopened to model a
crash) and ``MemoryWal`` (the simulator's). The file tests cut the file at
every byte of its last frames (a torn write), damage it in the middle (must
refuse), and SIGKILL a subprocess that records in a loop (the file must
always reopen, and keep everything acknowledged). A failure of the kill test
prints ``reproduce with WAL_CRASH_SEED=N``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import node.wal as wal_module
from ledger.block import VOTE_PRECOMMIT, VOTE_PREVOTE, Block, BlockHeader, Vote
from ledger.hashing import sha256
from ledger.keys import PrivateKey, verify_raw
from node.consensus import ConsensusState, ProofOfLock
from node.messages import sign_vote
from node.wal import (
    SIGN_STEP_PRECOMMIT,
    SIGN_STEP_PREVOTE,
    SIGN_STEP_PROPOSAL,
    WAL_MAGIC,
    DoubleSignRefused,
    MemoryWal,
    SignerWal,
    WalCorrupted,
)

CHAIN_ID = "wal-test"
KEY = PrivateKey(b"\x05" * 32)
REPOSITORY = Path(__file__).resolve().parent.parent
KILL_CYCLES_DEFAULT = 6
KILL_CYCLES_SLOW = 30


def vote_bytes(height: int, round_number: int, kind: int, block_hash: bytes = b"") -> bytes:
    return Vote(height, round_number, kind, block_hash, "validator-0").signing_bytes(CHAIN_ID)


def state_at(height: int, round_number: int, step: int, locked_round: int = -1, locked: bytes = b"") -> ConsensusState:
    return ConsensusState(height, round_number, step, locked_round, locked, locked_round, locked)


class FileWalFactory:
    """Opens the same file again: each ``reopen`` models a crash and restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.wal = SignerWal(path)

    def reopen(self) -> SignerWal:
        self.wal.close()
        self.wal = SignerWal(self.path)
        return self.wal


class MemoryWalFactory:
    def __init__(self) -> None:
        self.wal = MemoryWal()

    def reopen(self) -> MemoryWal:
        return self.wal  # a simulated crash loses nothing that was "fsynced"


@pytest.fixture(params=["file", "memory"])
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FileWalFactory | MemoryWalFactory]:
    if request.param == "file":
        made = FileWalFactory(tmp_path / "signer.wal")
        yield made
        made.wal.close()
    else:
        yield MemoryWalFactory()


def test_refuses_a_conflicting_vote_after_a_crash(factory: FileWalFactory | MemoryWalFactory) -> None:
    wal = factory.wal
    block_hash = b"\x01" * 32
    first = wal.check_and_record(3, 1, SIGN_STEP_PREVOTE, vote_bytes(3, 1, VOTE_PREVOTE, block_hash), KEY.sign_raw)
    assert verify_raw(KEY.public_key, vote_bytes(3, 1, VOTE_PREVOTE, block_hash), first)
    wal = factory.reopen()
    with pytest.raises(DoubleSignRefused) as refused:
        wal.check_and_record(3, 1, SIGN_STEP_PREVOTE, vote_bytes(3, 1, VOTE_PREVOTE), KEY.sign_raw)  # nil now
    assert refused.value.code == "exists_with_different_payload"
    again = wal.check_and_record(3, 1, SIGN_STEP_PREVOTE, vote_bytes(3, 1, VOTE_PREVOTE, block_hash), KEY.sign_raw)
    assert again == first  # the same payload: the recorded signature, to re-send


def test_identical_payload_returns_the_recorded_signature_without_signing(factory: FileWalFactory | MemoryWalFactory) -> None:
    wal = factory.wal
    payload = vote_bytes(1, 0, VOTE_PREVOTE)
    signature = wal.check_and_record(1, 0, SIGN_STEP_PREVOTE, payload, KEY.sign_raw)

    def must_not_sign(message: bytes) -> bytes:
        raise AssertionError("signed twice")

    assert factory.reopen().check_and_record(1, 0, SIGN_STEP_PREVOTE, payload, must_not_sign) == signature


@pytest.mark.parametrize(
    "position",
    [(4, 9, SIGN_STEP_PRECOMMIT), (5, 1, SIGN_STEP_PRECOMMIT), (5, 2, SIGN_STEP_PROPOSAL), (5, 2, SIGN_STEP_PREVOTE)],
)
def test_refuses_a_lower_height_round_or_step(factory: FileWalFactory | MemoryWalFactory, position: tuple[int, int, int]) -> None:
    factory.wal.check_and_record(5, 2, SIGN_STEP_PRECOMMIT, vote_bytes(5, 2, VOTE_PRECOMMIT), KEY.sign_raw)
    wal = factory.reopen()
    height, round_number, step = position
    with pytest.raises(DoubleSignRefused) as refused:
        wal.check_and_record(height, round_number, step, b"anything", KEY.sign_raw)
    assert refused.value.code == "height_round_step_regressed"
    wal.check_and_record(5, 3, SIGN_STEP_PROPOSAL, b"a proposal", KEY.sign_raw)  # higher is fine


def test_load_returns_the_last_heights_records_state_and_proof(factory: FileWalFactory | MemoryWalFactory) -> None:
    wal = factory.wal
    wal.check_and_record(1, 0, SIGN_STEP_PREVOTE, vote_bytes(1, 0, VOTE_PREVOTE), KEY.sign_raw, state_at(1, 0, 2))
    digest = sha256(b"x")
    block = Block(BlockHeader(CHAIN_ID, 2, digest, 1, "validator-1", 0, digest, 0, digest, digest, digest), ())
    block_hash = block.compute_hash()
    proof = ProofOfLock(1, block, (sign_vote(Vote(2, 1, VOTE_PREVOTE, block_hash, "validator-0"), KEY, CHAIN_ID),))
    wal.check_and_record(2, 0, SIGN_STEP_PREVOTE, vote_bytes(2, 0, VOTE_PREVOTE), KEY.sign_raw, state_at(2, 0, 2))
    locked_state = state_at(2, 1, 3, 1, block_hash)
    wal.check_and_record(2, 1, SIGN_STEP_PRECOMMIT, vote_bytes(2, 1, VOTE_PRECOMMIT, block_hash), KEY.sign_raw, locked_state, proof)
    loaded = factory.reopen().load()
    assert [r.get_position() for r in loaded.records] == [(2, 0, SIGN_STEP_PREVOTE), (2, 1, SIGN_STEP_PRECOMMIT)]
    assert loaded.state == locked_state
    assert loaded.proof_of_lock == proof
    signed = loaded.records[-1].to_signed_vote()
    assert signed is not None and signed.vote == Vote(2, 1, VOTE_PRECOMMIT, block_hash, "validator-0")
    assert signed.is_signed_by(KEY.public_key, CHAIN_ID)


def test_save_state_is_loaded(factory: FileWalFactory | MemoryWalFactory) -> None:
    factory.wal.save_state(state_at(7, 3, 1))
    assert factory.reopen().load().state == state_at(7, 3, 1)


# --- The file: torn writes, damage, compaction -------------------------------------------


def write_records(path: Path, count: int) -> list[int]:
    """Record ``count`` signatures; returns the file size after each one."""
    sizes = []
    with SignerWal(path) as wal:
        for index in range(count):
            wal.check_and_record(1, index, SIGN_STEP_PREVOTE, vote_bytes(1, index, VOTE_PREVOTE), KEY.sign_raw,
                                 state_at(1, index, 2))
            sizes.append(path.stat().st_size)
    return sizes


def test_torn_tail_at_every_byte_keeps_the_last_complete_record(tmp_path: Path) -> None:
    original = tmp_path / "original.wal"
    sizes = write_records(original, 3)
    data = original.read_bytes()
    for cut in range(sizes[0] - 1, len(data)):  # every cut from inside record 1 to the end
        path = tmp_path / f"cut-{cut}.wal"
        path.write_bytes(data[:cut])
        complete = sum(1 for size in sizes if size <= cut)
        with SignerWal(path) as wal:
            loaded = wal.load()
            assert len(loaded.records) == complete, cut
            assert path.stat().st_size == ([len(WAL_MAGIC)] + sizes)[complete]  # the torn tail is cut off
            wal.check_and_record(1, 10, SIGN_STEP_PREVOTE, vote_bytes(1, 10, VOTE_PREVOTE), KEY.sign_raw)
        with SignerWal(path) as wal:
            assert wal.load().last_record.get_position() == (1, 10, SIGN_STEP_PREVOTE)  # type: ignore[union-attr]


@pytest.mark.parametrize("tail", [b"\x00" * 100, b"\xff" * 7, bytes(range(256))])
def test_garbage_tail_is_a_torn_write(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "signer.wal"
    write_records(path, 2)
    path.write_bytes(path.read_bytes() + tail)
    with SignerWal(path) as wal:
        assert len(wal.load().records) == 2


def test_torn_creation_is_an_empty_wal(tmp_path: Path) -> None:
    path = tmp_path / "signer.wal"
    path.write_bytes(WAL_MAGIC[:5])
    with SignerWal(path) as wal:
        assert wal.load().records == ()
    assert path.read_bytes() == WAL_MAGIC


def test_damage_before_the_last_frame_refuses_to_open(tmp_path: Path) -> None:
    path = tmp_path / "signer.wal"
    sizes = write_records(path, 3)
    data = bytearray(path.read_bytes())
    data[sizes[0] - 5] ^= 0xFF  # inside record 1; records 2 and 3 follow intact
    path.write_bytes(bytes(data))
    with pytest.raises(WalCorrupted):
        SignerWal(path)


def test_a_file_that_is_not_a_wal_refuses_to_open(tmp_path: Path) -> None:
    path = tmp_path / "signer.wal"
    path.write_bytes(b"something else entirely")
    with pytest.raises(WalCorrupted) as refused:
        SignerWal(path)
    assert refused.value.code == "not_a_wal_file"


def test_compaction_keeps_the_last_height(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wal_module, "WAL_BYTES_MAX", 2048)
    path = tmp_path / "signer.wal"
    with SignerWal(path) as wal:
        for height in range(1, 40):
            for step, kind in ((SIGN_STEP_PREVOTE, VOTE_PREVOTE), (SIGN_STEP_PRECOMMIT, VOTE_PRECOMMIT)):
                wal.check_and_record(height, 0, step, vote_bytes(height, 0, kind), KEY.sign_raw, state_at(height, 0, step))
            assert path.stat().st_size <= 2048 + 1024
    with SignerWal(path) as wal:
        loaded = wal.load()
        assert [r.get_position() for r in loaded.records] == [(39, 0, SIGN_STEP_PREVOTE), (39, 0, SIGN_STEP_PRECOMMIT)]
        assert loaded.state == state_at(39, 0, SIGN_STEP_PRECOMMIT)
        with pytest.raises(DoubleSignRefused):
            wal.check_and_record(39, 0, SIGN_STEP_PREVOTE, b"other", KEY.sign_raw)


# --- kill -9 ----------------------------------------------------------------------------------

WRITER = """
import sys
from pathlib import Path
import node.wal as wal_module
from ledger.keys import PrivateKey
wal_module.WAL_BYTES_MAX = 4096  # compact often, so some kills land inside a compaction
wal = wal_module.SignerWal(Path(sys.argv[1]))
last = wal.load().last_record
height, round_number, step = (last.height, last.round, last.step) if last else (1, 0, 0)
key = PrivateKey(bytes([5]) * 32)
while True:
    step += 1
    if step > 3:
        step, round_number = 1, round_number + 1
    if round_number > 2:
        round_number, height = 0, height + 1
    wal.check_and_record(height, round_number, step, f"{height}/{round_number}/{step}".encode(), key.sign_raw)
    print(height, round_number, step, flush=True)
"""


def run_kill_cycles(path: Path, seed: int, cycles: int) -> None:
    rng = random.Random(seed)
    acknowledged: tuple[int, int, int] = (0, 0, 0)
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    for cycle in range(cycles):
        process = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, env=environment, cwd=REPOSITORY)
        time.sleep(rng.uniform(0.0, 0.4))  # start-up takes ~0.15 s: some kills land before any record
        process.send_signal(signal.SIGKILL)
        output, _ = process.communicate(timeout=10)
        lines = [line for line in output.decode().split("\n") if line.strip()]
        if lines:
            acknowledged = tuple(int(part) for part in lines[-1].split())  # type: ignore[assignment]
        where = f"cycle {cycle}; reproduce with WAL_CRASH_SEED={seed}"
        with SignerWal(path) as wal:  # must open: a kill never leaves an unreadable WAL
            last = wal.load().last_record
            position = last.get_position() if last else (0, 0, 0)
            assert position >= acknowledged, f"lost an acknowledged signature: {position} < {acknowledged}; {where}"
            if last is not None:
                with pytest.raises(DoubleSignRefused):
                    wal.check_and_record(*position, b"a different payload", KEY.sign_raw)


def test_kill_9_while_recording_never_leaves_an_unreadable_wal(tmp_path: Path) -> None:
    seed = int(os.environ.get("WAL_CRASH_SEED", "1"))
    run_kill_cycles(tmp_path / "signer.wal", seed, KILL_CYCLES_DEFAULT)


@pytest.mark.slow
def test_kill_9_many_cycles(tmp_path: Path) -> None:
    seed = int(os.environ.get("WAL_CRASH_SEED", "2"))
    run_kill_cycles(tmp_path / "signer.wal", seed, KILL_CYCLES_SLOW)


def test_records_of_one_height_accumulate(factory: FileWalFactory | MemoryWalFactory) -> None:
    wal = factory.wal
    sign: Callable[[bytes], bytes] = KEY.sign_raw
    for round_number in range(3):
        wal.check_and_record(1, round_number, SIGN_STEP_PREVOTE, vote_bytes(1, round_number, VOTE_PREVOTE), sign)
    assert len(factory.reopen().load().records) == 3
