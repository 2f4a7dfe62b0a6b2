"""Safety across restarts: the signer's write-ahead log.

A validator must never sign two different messages for one (height, round,
step). It must also never sign at a lower (height, round, step) than one it
has already signed at, because that is how a restarted node would
equivocate. Before the shell signs, it calls ``check_and_record``. That call
refuses what would break the rule. Otherwise it signs, writes the record and
fsyncs it, and only then returns the signature, so a signature never leaves
before its record is durable. (CometBFT ``privval/file.go``: ``CheckHRS`` and
``saveSigned``.)

    check_and_record(h, r, step, sign_bytes, sign, state) -> signature
        (h, r, step) <  last       DoubleSignRefused("height_round_step_regressed")
        (h, r, step) == last, same bytes   the recorded signature (a restarted node may re-send it)
        (h, r, step) == last, other bytes  DoubleSignRefused("exists_with_different_payload")
        (h, r, step) >  last       sign, append the record, fsync, return the signature

Steps are ordered as a round signs them: proposal (1) < prevote (2) <
precommit (3). Each record also carries the core's ``ConsensusState`` as it
asked to sign (round, step, lock, valid round). A precommit for a block also
records its ``ProofOfLock`` (the block and the 2f+1 prevotes for it).
``load()`` returns the last state, the last proof of lock and every record of
the last height. With them a restarted core keeps its lock and can
re-propose its valid block, and the shell can re-send the votes it signed.

**File format** (``SignerWal``): an append-only log. The file starts with
``WAL_MAGIC``, then frames of ``[length: u32 BE][crc32: u32 BE][payload]``.
The payload is ``encode([kind, record])``: kind 1 is a ``WalRecord``, kind 2
a ``ConsensusState`` saved on its own, and kind 3 a ``ProofOfLock``, written
in the same append as (and just before) the record it goes with. Why append and not write-temp-and-
rename: a signature costs one ``fdatasync`` instead of two fsyncs (the file
and its directory), and a crash can tear only the last frame. On open, frames
are read until the first bad one (short, a bad length, a bad checksum, or
undecodable). If no good frame follows it, it is a torn tail: it is cut off
and the last complete record wins. Its signature never left, because that
happens only after the fsync returns. If a good frame does follow a bad one,
the middle of the file is damaged, and opening fails with ``WalCorrupted``
rather than forget what was signed. When the file grows past
``WAL_BYTES_MAX``, it is rewritten with only the last height's records (temp
file, fsync, rename, fsync directory).

``MemoryWal`` has the same interface for the simulator. Every record is
"fsynced" when the call returns, so a simulated crash loses nothing: the
restarted node reads the same object.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self

from ledger import encoding as enc
from ledger import keys
from ledger.block import VOTE_PRECOMMIT, VOTE_PREVOTE, Vote
from ledger.errors import EncodingError
from ledger.files import write_all, write_file_atomically
from ledger.validators import VALIDATORS_MAX
from node.consensus import ConsensusState, ProofOfLock
from node.messages import PROPOSAL_MESSAGE_BYTES_MAX, SIGNED_VOTE_BYTES_MAX, SignedVote

SIGN_STEP_PROPOSAL = 1
SIGN_STEP_PREVOTE = 2
SIGN_STEP_PRECOMMIT = 3
SIGN_STEPS = (SIGN_STEP_PROPOSAL, SIGN_STEP_PREVOTE, SIGN_STEP_PRECOMMIT)
SIGN_STEP_BY_VOTE_KIND = {VOTE_PREVOTE: SIGN_STEP_PREVOTE, VOTE_PRECOMMIT: SIGN_STEP_PRECOMMIT}

WAL_MAGIC = b"ledger-signer-wal/v1\n"
WAL_FILE_NAME = "signer.wal"
FRAME_HEADER_BYTES = 8
SIGN_BYTES_MAX = 1024
"""A vote's or proposal's signing input is ~200 bytes; anything near this is a bug."""
RECORD_FRAME_BYTES_MAX = 4096
"""One record: signing input, signature and state, with room to spare."""
FRAME_PAYLOAD_BYTES_MAX = PROPOSAL_MESSAGE_BYTES_MAX + VALIDATORS_MAX * SIGNED_VOTE_BYTES_MAX
"""The largest frame: a proof of lock (a full block and a prevote from every validator)."""
WAL_RECORDS_KEPT_MAX = 1024
"""Records of the last height kept by ``load`` and by compaction (the newest; ~340 rounds)."""
WAL_BYTES_MAX = 32 * 1024 * 1024
"""Past this size the file is rewritten with only the last height's records."""

assert SIGN_BYTES_MAX + keys.SIGNATURE_BYTES + 256 <= RECORD_FRAME_BYTES_MAX
assert RECORD_FRAME_BYTES_MAX <= FRAME_PAYLOAD_BYTES_MAX
# A compacted file (kept records, one proof of lock, one state) is well below the threshold.
assert WAL_RECORDS_KEPT_MAX * RECORD_FRAME_BYTES_MAX + 2 * FRAME_PAYLOAD_BYTES_MAX < WAL_BYTES_MAX
assert SIGN_STEP_PROPOSAL < SIGN_STEP_PREVOTE < SIGN_STEP_PRECOMMIT

_FRAME_KIND_RECORD = 1
_FRAME_KIND_STATE = 2
_FRAME_KIND_PROOF_OF_LOCK = 3
_frame_header = struct.Struct(">II")


class WalError(Exception):
    """A signer-WAL failure; ``code`` is stable."""

    code: str

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        super().__init__(f"{code}: {detail}")


class DoubleSignRefused(WalError):
    """Signing this would equivocate or go back in (height, round, step); nothing was signed."""


class WalCorrupted(WalError):
    """The WAL file is damaged before its last frame (not a torn write); refusing to guess."""


@dataclass(frozen=True, slots=True)
class WalRecord(enc.Record):
    """One signature we gave out, and the core's state when it asked for it."""

    height: int
    round: int
    step: int
    """``SIGN_STEP_PROPOSAL``, ``SIGN_STEP_PREVOTE`` or ``SIGN_STEP_PRECOMMIT``."""
    sign_bytes: bytes
    """The exact signing input that was signed."""
    signature: bytes
    state: ConsensusState | None
    """The core's state as it asked to sign (None if the shell gave none)."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.uint(64),
        enc.uint(32),
        enc.uint(8),
        enc.var_bytes(SIGN_BYTES_MAX),
        enc.fixed_bytes(keys.SIGNATURE_BYTES),
        enc.optional(enc.record(ConsensusState)),
    )

    def get_position(self) -> tuple[int, int, int]:
        return (self.height, self.round, self.step)

    def to_signed_vote(self) -> SignedVote | None:
        """The signed vote this record holds, to re-send after a restart (None for a proposal)."""
        if self.step == SIGN_STEP_PROPOSAL:
            return None
        _domain, _chain_id, message = enc.decode(self.sign_bytes)
        return SignedVote(Vote.decode(message), self.signature)


@dataclass(frozen=True, slots=True)
class WalState:
    """What ``load`` returns: enough to resume without signing anything twice."""

    records: tuple[WalRecord, ...]
    """Every record of the last height we signed at (the newest ``WAL_RECORDS_KEPT_MAX``), in order."""
    state: ConsensusState | None
    """The last consensus state recorded (with a signature or by ``save_state``)."""
    proof_of_lock: ProofOfLock | None = None
    """The last proof of lock recorded (with a precommit for a block), for ``ConsensusCore``."""

    @property
    def last_record(self) -> WalRecord | None:
        return self.records[-1] if self.records else None


Sign = Callable[[bytes], bytes]
"""Signs the signing input: e.g. ``PrivateKey.sign_raw``."""


class Wal(Protocol):
    """The seam the shell signs through: ``SignerWal`` on disk, ``MemoryWal`` in the simulator."""

    def load(self) -> WalState: ...

    def check_and_record(
        self,
        height: int,
        round: int,
        step: int,
        sign_bytes: bytes,
        sign: Sign,
        state: ConsensusState | None = None,
        proof_of_lock: ProofOfLock | None = None,
    ) -> bytes: ...

    def save_state(self, state: ConsensusState) -> None: ...


def check_position(last: WalRecord | None, height: int, round_number: int, step: int, sign_bytes: bytes) -> bytes | None:
    """The guard, in order: not lower, then not different at the same position.

    Returns the recorded signature if this exact payload was already signed
    here, None if signing is new and allowed; raises ``DoubleSignRefused``.
    """
    assert step in SIGN_STEPS, step
    if last is None:
        return None
    position = (height, round_number, step)
    if position < last.get_position():
        raise DoubleSignRefused("height_round_step_regressed", f"{position} is below the last signed {last.get_position()}")
    if position == last.get_position():
        if sign_bytes == last.sign_bytes:
            return last.signature
        raise DoubleSignRefused("exists_with_different_payload", f"already signed something else at {position}")
    return None


class _WalMemory:
    """What both WALs keep in memory: the last height's records and the last state."""

    def __init__(self) -> None:
        self.records: list[WalRecord] = []
        self.state: ConsensusState | None = None
        self.proof_of_lock: ProofOfLock | None = None

    def add_record(self, record: WalRecord) -> None:
        if self.records and self.records[-1].height != record.height:
            self.records = []
        if self.proof_of_lock is not None and self.proof_of_lock.height < record.height:
            self.proof_of_lock = None  # a lock never outlives its height
        self.records.append(record)
        if len(self.records) > WAL_RECORDS_KEPT_MAX:
            del self.records[: len(self.records) - WAL_RECORDS_KEPT_MAX]
        if record.state is not None:
            self.state = record.state

    def get_wal_state(self) -> WalState:
        return WalState(tuple(self.records), self.state, self.proof_of_lock)

    def get_last_record(self) -> WalRecord | None:
        return self.records[-1] if self.records else None


class MemoryWal:
    """The signer WAL in memory: a simulated crash keeps everything (all of it was "fsynced")."""

    def __init__(self) -> None:
        self._memory = _WalMemory()
        self.records_written = 0

    def load(self) -> WalState:
        return self._memory.get_wal_state()

    def check_and_record(
        self,
        height: int,
        round: int,
        step: int,
        sign_bytes: bytes,
        sign: Sign,
        state: ConsensusState | None = None,
        proof_of_lock: ProofOfLock | None = None,
    ) -> bytes:
        existing = check_position(self._memory.get_last_record(), height, round, step, sign_bytes)
        if existing is not None:
            return existing
        record = WalRecord(height, round, step, sign_bytes, sign(sign_bytes), state)
        if proof_of_lock is not None:
            self._memory.proof_of_lock = proof_of_lock
        self._memory.add_record(record)
        self.records_written += 1
        return record.signature

    def save_state(self, state: ConsensusState) -> None:
        self._memory.state = state


# --- The file ------------------------------------------------------------------------------


def encode_frame(kind: int, value: enc.Record) -> bytes:
    payload = enc.encode([kind, value.to_wire()])
    assert 0 < len(payload) <= FRAME_PAYLOAD_BYTES_MAX, len(payload)
    assert kind == _FRAME_KIND_PROOF_OF_LOCK or len(payload) <= RECORD_FRAME_BYTES_MAX, len(payload)
    return _frame_header.pack(len(payload), zlib.crc32(payload)) + payload


def _decode_frame_at(data: bytes, offset: int) -> tuple[WalRecord | ConsensusState | ProofOfLock, int] | None:
    """The value of the frame at ``offset`` and the next offset, or None if it is not a good frame."""
    if offset + FRAME_HEADER_BYTES > len(data):
        return None
    length, checksum = _frame_header.unpack_from(data, offset)
    end = offset + FRAME_HEADER_BYTES + length
    if not 0 < length <= FRAME_PAYLOAD_BYTES_MAX or end > len(data):
        return None
    payload = data[offset + FRAME_HEADER_BYTES : end]
    if zlib.crc32(payload) != checksum:
        return None
    try:
        kind, wire = enc.decode(payload, max_bytes=FRAME_PAYLOAD_BYTES_MAX)
        value: WalRecord | ConsensusState | ProofOfLock
        if kind == _FRAME_KIND_RECORD:
            value = WalRecord.from_wire(wire)
        elif kind == _FRAME_KIND_STATE:
            value = ConsensusState.from_wire(wire)
        elif kind == _FRAME_KIND_PROOF_OF_LOCK:
            value = ProofOfLock.from_wire(wire)
        else:
            return None
    except (EncodingError, ValueError, TypeError):
        return None
    return value, end


def _has_good_frame_after(data: bytes, offset: int) -> bool:
    """True if any offset past a bad frame starts a good one: damage in the middle, not a torn tail."""
    return any(_decode_frame_at(data, start) is not None for start in range(offset + 1, len(data) - FRAME_HEADER_BYTES))


def parse_wal_bytes(data: bytes) -> tuple[_WalMemory, int]:
    """Replay a WAL file's bytes; returns what it holds and the length of its good prefix."""
    if not data.startswith(WAL_MAGIC):
        if WAL_MAGIC.startswith(data):
            return _WalMemory(), 0  # torn while being created: nothing was ever recorded
        raise WalCorrupted("not_a_wal_file", "the file does not start with the signer-WAL magic")
    memory = _WalMemory()
    offset = len(WAL_MAGIC)
    while offset < len(data):
        frame = _decode_frame_at(data, offset)
        if frame is None:
            if _has_good_frame_after(data, offset):
                raise WalCorrupted("wal_corrupt", f"bad frame at byte {offset} followed by good ones")
            break  # a torn tail: the last complete record wins
        value, offset = frame
        if isinstance(value, WalRecord):
            last = memory.get_last_record()
            if last is not None and value.get_position() <= last.get_position():
                raise WalCorrupted("wal_corrupt", f"record at byte {offset} does not advance")
            memory.add_record(value)
        elif isinstance(value, ProofOfLock):
            memory.proof_of_lock = value
        else:
            memory.state = value
    return memory, offset


def _sync_data(fd: int) -> None:
    sync: Any = getattr(os, "fdatasync", os.fsync)
    sync(fd)


class SignerWal:
    """The signer WAL in one append-only file (see the module docstring for the format)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            write_file_atomically(self.path, WAL_MAGIC)
        data = self.path.read_bytes()
        self._memory, good_length = parse_wal_bytes(data)
        if good_length == 0:  # only part of the magic: it was never used
            write_file_atomically(self.path, WAL_MAGIC)
            data = WAL_MAGIC
            good_length = len(WAL_MAGIC)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        if good_length < len(data):
            os.ftruncate(self._fd, good_length)  # cut the torn tail before appending after it
            _sync_data(self._fd)
        self._size = good_length

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def load(self) -> WalState:
        return self._memory.get_wal_state()

    def check_and_record(
        self,
        height: int,
        round: int,
        step: int,
        sign_bytes: bytes,
        sign: Sign,
        state: ConsensusState | None = None,
        proof_of_lock: ProofOfLock | None = None,
    ) -> bytes:
        assert self._fd >= 0, "the WAL is closed"
        existing = check_position(self._memory.get_last_record(), height, round, step, sign_bytes)
        if existing is not None:
            return existing
        record = WalRecord(height, round, step, sign_bytes, sign(sign_bytes), state)
        frames = encode_frame(_FRAME_KIND_RECORD, record)
        if proof_of_lock is not None:  # first, so a torn write keeps at most the proof, never a lone record
            frames = encode_frame(_FRAME_KIND_PROOF_OF_LOCK, proof_of_lock) + frames
        self._append(frames)  # one write, one fdatasync
        if proof_of_lock is not None:
            self._memory.proof_of_lock = proof_of_lock
        self._memory.add_record(record)
        if self._size > WAL_BYTES_MAX:
            self._compact()
        return record.signature  # only now, after the fsync, may it leave

    def save_state(self, state: ConsensusState) -> None:
        assert self._fd >= 0, "the WAL is closed"
        self._append(encode_frame(_FRAME_KIND_STATE, state))
        self._memory.state = state

    def _append(self, frame: bytes) -> None:
        write_all(self._fd, frame)
        _sync_data(self._fd)
        self._size += len(frame)

    def _compact(self) -> None:
        frames = [encode_frame(_FRAME_KIND_RECORD, record) for record in self._memory.records]
        if self._memory.proof_of_lock is not None:
            frames.insert(0, encode_frame(_FRAME_KIND_PROOF_OF_LOCK, self._memory.proof_of_lock))
        if self._memory.state is not None:
            frames.append(encode_frame(_FRAME_KIND_STATE, self._memory.state))
        data = WAL_MAGIC + b"".join(frames)
        os.close(self._fd)
        write_file_atomically(self.path, data)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._size = len(data)


enc.check_record_wire(WalRecord)

__all__ = [
    "SIGN_STEPS",
    "SIGN_STEP_BY_VOTE_KIND",
    "SIGN_STEP_PRECOMMIT",
    "SIGN_STEP_PREVOTE",
    "SIGN_STEP_PROPOSAL",
    "WAL_BYTES_MAX",
    "WAL_FILE_NAME",
    "WAL_MAGIC",
    "WAL_RECORDS_KEPT_MAX",
    "DoubleSignRefused",
    "MemoryWal",
    "SignerWal",
    "Wal",
    "WalCorrupted",
    "WalError",
    "WalRecord",
    "WalState",
    "check_position",
    "encode_frame",
    "parse_wal_bytes",
]
