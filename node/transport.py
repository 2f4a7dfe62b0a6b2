"""Validator-to-validator transport: authenticated, persistent asyncio TCP connections.

Each pair of validators keeps exactly one TCP connection. The validator
whose name sorts lower (by UTF-8 bytes) dials; the other only accepts, and
refuses a dial from a higher name (``wrong_dialer``) or a second connection
from a peer already connected (``already_connected``). One rule, known to
both sides before anything is sent, so two nodes never race to pick which of
two connections survives. A connection left half-open by a crashed peer
cannot lock that peer out for long: heartbeats written into it are reset by
the restarted host within ``heartbeat_interval_ms``, and a host that is gone
falls silent and is cut at ``idle_timeout_ms``.

Wire format (docs/PROTOCOL.md, "Peer transport"):

- A **frame** is a 4-byte big-endian length, then that many payload bytes.
  A payload is at most ``FRAME_BYTES_MAX`` bytes; a longer declared length
  closes the connection before any of it is read. A zero-length frame is a
  heartbeat: never delivered, it only proves the peer is alive.
- The **handshake** comes first, in four frames of at most
  ``HANDSHAKE_FRAME_BYTES_MAX`` bytes::

      dialer   -> acceptor  Hello(chain_id, dialer_name, dialer_challenge)
      acceptor -> dialer    Hello(chain_id, acceptor_name, acceptor_challenge)
      dialer   -> acceptor  Proof(dialer_name, sig_dialer)
      acceptor -> dialer    Proof(acceptor_name, sig_acceptor)

  where ``sig_X = Ed25519(key_X, encode(["ledger/handshake/v1", chain_id,
  encode([challenge_of_other_side, X_name, other_name])]))``. The signature
  binds the other side's fresh 32-byte challenge and both names, so a proof
  cannot be replayed in another session or to another node. The acceptor
  signs only after the dialer's proof verifies: a stranger who dials in
  never gets a signature out of a validator.

After the handshake, each side delivers every data frame to ``on_message``
in order. Each peer has one bounded outbound queue that outlives its
connections (frames queued while a peer is down go out when it is back); a
full queue drops the frame and ``send`` returns False, which consensus
tolerates because it re-gossips.

What this does not do: it authenticates the opening of a connection, not
each later frame, and it does not encrypt, so an active man in the middle
can relay a handshake and then inject frames. Across networks we do not
control, run it inside TLS or a VPN until the handshake derives a session
key (docs/PROTOCOL.md, "Peer transport").
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from ledger import encoding as enc
from ledger.block import BLOCK_BYTES_MAX
from ledger.errors import ERROR_CODES, EncodingError
from ledger.keys import DOMAIN_PEER_HANDSHAKE, SIGNATURE_BYTES, PrivateKey, verify

# --- Limits ---------------------------------------------------------------------------------

FRAME_HEADER_BYTES = 4
"""The big-endian length in front of every frame."""
FRAME_BYTES_MAX = 8 * 1024 * 1024 + 64 * 1024
"""Largest frame payload: a full block plus its consensus envelope (proposal, signature, round)."""
CHALLENGE_BYTES = 32
"""Fresh random bytes in each Hello; the other side signs over them."""
NAME_BYTES_MAX = 64
"""Longest validator name or chain id in a handshake (member-name and chain-id rules)."""
HANDSHAKE_FRAME_BYTES_MAX = 256
"""Largest Hello or Proof frame; a handshake cannot make us buffer more."""
WRITE_BATCH_BYTES_MAX = 1024 * 1024
"""Most payload bytes the writer hands to the socket before waiting for it to drain."""
HEARTBEAT_FRAME = b"\x00" * FRAME_HEADER_BYTES
"""A zero-length frame: keeps an idle connection provably alive."""

_HELLO_BYTES_MAX = 1 + 2 * (2 + NAME_BYTES_MAX) + (2 + CHALLENGE_BYTES)
_PROOF_BYTES_MAX = 1 + (2 + NAME_BYTES_MAX) + (2 + SIGNATURE_BYTES)
assert _HELLO_BYTES_MAX <= HANDSHAKE_FRAME_BYTES_MAX  # the largest Hello fits
assert _PROOF_BYTES_MAX <= HANDSHAKE_FRAME_BYTES_MAX  # the largest Proof fits
assert BLOCK_BYTES_MAX + 1024 <= FRAME_BYTES_MAX  # a full block plus its envelope fits one frame
assert FRAME_BYTES_MAX < 2 ** (8 * FRAME_HEADER_BYTES)  # every legal length fits the header
assert WRITE_BATCH_BYTES_MAX <= FRAME_BYTES_MAX

# --- Errors ---------------------------------------------------------------------------------

TRANSPORT_ERROR_CODES: dict[str, str] = {
    "unknown_peer": "A handshake names a validator that is not in our peer list.",
    "peer_is_self": "A handshake names our own validator (a misconfigured address or a reflected Hello).",
    "wrong_dialer": "A peer dialled us although the lower-named validator of the pair must dial.",
    "unexpected_peer": "The validator that answered, or its proof, is not the one we expected.",
    "already_connected": "A peer that already has an authenticated connection opened another.",
    "handshake_timeout": "The handshake did not complete within handshake_timeout_ms.",
    "too_many_handshakes": "More inbound handshakes were in progress than the limit allows.",
    "connection_lost": "The connection closed, was reset, or could not be opened.",
    "idle_timeout": "Nothing, not even a heartbeat, arrived from a peer within idle_timeout_ms.",
    "write_timeout": "A peer did not read our frames within write_timeout_ms.",
}
"""Codes this module adds; it also uses ``wrong_chain``, ``invalid_signature``,
``too_large`` and ``malformed_encoding`` from ``ledger.errors``."""
assert not set(TRANSPORT_ERROR_CODES) & set(ERROR_CODES)  # each code has one meaning


class TransportError(Exception):
    """A peer broke the transport protocol; the connection is refused or closed.

    Transport-local until the codes move into ``ledger.errors`` (then this
    becomes a ``LedgerError`` subclass).
    """

    code: str
    detail: str

    def __init__(self, code: str, detail: str = "") -> None:
        assert code in TRANSPORT_ERROR_CODES or code in ERROR_CODES, f"undocumented code {code!r}"
        self.code = code
        self.detail = detail or TRANSPORT_ERROR_CODES.get(code) or ERROR_CODES[code]
        super().__init__(f"{code}: {self.detail}")


# --- Types ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerAddress:
    """Where a validator listens and the key it must prove it holds."""

    name: str
    """Validator name, as in the validator set."""
    host: str
    """Host or IP to dial (only the lower-named side of a pair dials)."""
    port: int
    """TCP port to dial."""
    public_key: bytes
    """The validator's Ed25519 key; its handshake proof must verify under it."""


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Per-node knobs. The frame size is not one: it is a protocol constant both sides share."""

    send_queue_frames_max: int = 10_000
    """Frames queued per peer before ``send`` drops."""
    send_queue_bytes_max: int = 64 * 1024 * 1024
    """Payload bytes queued per peer before ``send`` drops."""
    handshake_timeout_ms: int = 5_000
    """Connecting plus the whole handshake must finish within this."""
    handshakes_in_progress_max: int = 64
    """Inbound connections still in their handshake; more are refused at once."""
    reconnect_delay_ms_min: int = 50
    """First redial delay, and the delay after a connection that did authenticate."""
    reconnect_delay_ms_max: int = 5_000
    """The doubling redial delay stops growing here (each wait is jittered to 50-100%)."""
    heartbeat_interval_ms: int = 1_000
    """An idle connection sends a zero-length frame this often."""
    idle_timeout_ms: int = 15_000
    """A connection on which nothing arrives for this long is closed (a full frame must arrive within it)."""
    write_timeout_ms: int = 15_000
    """A connection whose peer does not drain our writes for this long is closed."""

    def __post_init__(self) -> None:
        assert self.send_queue_frames_max >= 1
        assert self.send_queue_bytes_max >= FRAME_BYTES_MAX  # an empty queue takes any legal frame
        assert self.handshake_timeout_ms >= 1
        assert self.handshakes_in_progress_max >= 1
        assert 1 <= self.reconnect_delay_ms_min <= self.reconnect_delay_ms_max
        assert self.heartbeat_interval_ms >= 1
        # A late heartbeat or two is not a death.
        assert self.idle_timeout_ms >= 3 * self.heartbeat_interval_ms
        assert self.write_timeout_ms >= 1


MessageHandler = Callable[[str, bytes], None]
"""``on_message(peer_name, payload)``: called on the event loop for each data frame."""
ConnectionHandler = Callable[[str, bool], None]
"""``on_connection_change(peer_name, is_connected)``: after a peer authenticates (True) or its
connection ends (False); the node re-gossips its latest votes to a peer that comes back."""


class PeerTransport(Protocol):
    """The seam the node's consensus shell uses; tests may pass a dict-backed fake."""

    def send(self, peer: str, payload: bytes) -> bool: ...
    def broadcast(self, payload: bytes) -> int: ...
    def connected_peers(self) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Hello(enc.Record):
    """The first handshake frame from each side."""

    chain_id: str
    """The sender's chain id; it must equal ours."""
    name: str
    """The sender's validator name."""
    challenge: bytes
    """32 fresh random bytes the other side's proof must sign over."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.text(NAME_BYTES_MAX),
        enc.text(NAME_BYTES_MAX),
        enc.fixed_bytes(CHALLENGE_BYTES),
    )


@dataclass(frozen=True, slots=True)
class Proof(enc.Record):
    """The second handshake frame from each side: proof of holding the validator key."""

    name: str
    """The signer's validator name (the same as in its Hello)."""
    signature: bytes
    """Ed25519 over ``compute_proof_message(other's challenge, name, other's name)`` in the handshake domain."""

    WIRE: ClassVar[tuple[enc.FieldCheck, ...]] = (
        enc.text(NAME_BYTES_MAX),
        enc.fixed_bytes(SIGNATURE_BYTES),
    )


enc.check_record_wire(Hello)
enc.check_record_wire(Proof)


# --- Pure helpers (shared with tests and other implementations) -----------------------------


def is_dialer(name: str, peer_name: str) -> bool:
    """True iff ``name`` dials ``peer_name``: the lower name by UTF-8 bytes dials."""
    assert name != peer_name
    return name.encode("utf-8") < peer_name.encode("utf-8")


def encode_frame(payload: bytes) -> bytes:
    """The frame carrying ``payload``: its 4-byte big-endian length, then the payload."""
    assert len(payload) <= FRAME_BYTES_MAX
    return len(payload).to_bytes(FRAME_HEADER_BYTES, "big") + payload


def compute_proof_message(challenge: bytes, signer_name: str, verifier_name: str) -> bytes:
    """What a handshake proof signs: ``encode([verifier's challenge, signer, verifier])``."""
    return enc.encode([challenge, signer_name, verifier_name])


def compute_proof(key: PrivateKey, chain_id: str, name: str, peer_hello: Hello) -> Proof:
    """Our proof for a peer that sent ``peer_hello``."""
    message = compute_proof_message(peer_hello.challenge, name, peer_hello.name)
    return Proof(name, key.sign(DOMAIN_PEER_HANDSHAKE, chain_id, message))


def decode_hello(data: bytes) -> Hello:
    try:
        return Hello.decode(data, max_bytes=HANDSHAKE_FRAME_BYTES_MAX)
    except EncodingError as error:
        raise TransportError("malformed_encoding", f"bad Hello: {error.detail}") from None


def decode_proof(data: bytes) -> Proof:
    try:
        return Proof.decode(data, max_bytes=HANDSHAKE_FRAME_BYTES_MAX)
    except EncodingError as error:
        raise TransportError("malformed_encoding", f"bad Proof: {error.detail}") from None


async def read_handshake_frame(reader: asyncio.StreamReader) -> bytes:
    """One handshake frame; a declared length over the handshake limit is refused unread."""
    length = int.from_bytes(await reader.readexactly(FRAME_HEADER_BYTES), "big")
    if length > HANDSHAKE_FRAME_BYTES_MAX:
        raise TransportError("too_large", f"handshake frame of {length} bytes")
    return await reader.readexactly(length)


# --- The network ----------------------------------------------------------------------------


@dataclass(eq=False)
class _Peer:
    """One configured peer: its address, its outbound queue and whether it is connected."""

    address: PeerAddress
    queue: collections.deque[bytes] = field(default_factory=collections.deque)
    queued_bytes: int = 0
    queued: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the queue becomes non-empty; the connection's writer waits on it."""
    connection: _Connection | None = None
    ever_connected: bool = False


@dataclass(eq=False)
class _Connection:
    """One authenticated connection and why it ended (the first reason wins)."""

    peer: _Peer
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    received_time: float
    """Loop time of the last complete frame from the peer (heartbeats included)."""
    close_reason: str | None = None

    def fail(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason
        self.writer.transport.abort()


class PeerNetwork:
    """A validator's connections to its peers: listen, dial, authenticate, frame, queue."""

    def __init__(
        self,
        chain_id: str,
        name: str,
        key: PrivateKey,
        listen_host: str,
        listen_port: int,
        peers: Sequence[PeerAddress],
        on_message: MessageHandler,
        *,
        config: TransportConfig = TransportConfig(),
        logger: logging.Logger | None = None,
        on_connection_change: ConnectionHandler | None = None,
    ) -> None:
        names = [peer.name for peer in peers]
        assert len(set(names)) == len(names), "peer names must be distinct"
        assert name not in names, "our own name is not a peer"
        assert all(len(peer.public_key) == 32 for peer in peers)
        self.chain_id = chain_id
        self.name = name
        self._key = key
        self._listen_host = listen_host
        self._listen_port = listen_port
        self._peers = {peer.name: _Peer(peer) for peer in peers}
        self._on_message = on_message
        self._on_connection_change = on_connection_change
        self._config = config
        self._logger = logger or logging.getLogger("ledger.transport")
        self._random = random.Random()  # jitter only; challenges come from os.urandom
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._failures: list[BaseException] = []
        self._handshakes_in_progress = 0
        self._started = False
        self._stopping = False
        self._frames_sent = 0
        self._bytes_sent = 0
        self._frames_received = 0
        self._bytes_received = 0
        self._connections = 0
        self._reconnects = 0
        self._dial_attempts = 0
        self._dial_failures = 0
        self._drops: collections.Counter[str] = collections.Counter()
        self._handshake_failures: collections.Counter[str] = collections.Counter()
        self._disconnects: collections.Counter[str] = collections.Counter()

    # --- Public API -------------------------------------------------------------------------

    @property
    def listen_port(self) -> int:
        """The port we listen on (the OS's choice when constructed with 0, once started)."""
        if self._server is not None and self._server.sockets:
            port = self._server.sockets[0].getsockname()[1]
            assert isinstance(port, int)
            return port
        return self._listen_port

    async def start(self) -> None:
        """Listen, then dial every peer whose name sorts above ours."""
        assert not self._started, "a PeerNetwork starts once"
        self._started = True
        self._server = await asyncio.start_server(self._on_accept, self._listen_host, self._listen_port)
        self._logger.info("%s listening on %s:%d", self.name, self._listen_host, self.listen_port)
        for peer in self._peers.values():
            if is_dialer(self.name, peer.address.name):
                self._spawn(self._dial_loop(peer), f"dial {self.name}->{peer.address.name}")

    async def stop(self) -> None:
        """Close the listener and every connection, and wait for every task to end.

        Re-raises the first bug seen while running (an exception from a
        callback or from this module), after everything is closed. A bug also
        stops the transport at once and goes to the loop's exception handler.
        """
        self._stopping = True
        if self._server is not None:
            self._server.close()
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        for peer in self._peers.values():
            peer.queue.clear()
            peer.queued_bytes = 0
        assert not self._tasks, "every task ends when cancelled"
        if self._failures:
            raise self._failures[0]

    def send(self, peer: str, payload: bytes) -> bool:
        """Queue one frame for ``peer``; False (a counted drop) if unknown, full or stopped.

        Never blocks and never raises for a peer that is down: its frames wait
        in its queue until it is back. Call it on the event loop's thread.
        """
        assert type(payload) is bytes, "payloads are bytes"
        assert 0 < len(payload) <= FRAME_BYTES_MAX, "empty frames are heartbeats; big ones never fit"
        target = self._peers.get(peer)
        if target is None:
            self._drops["unknown_peer"] += 1
            return False
        if self._stopping:
            self._drops["stopped"] += 1
            return False
        if (
            len(target.queue) >= self._config.send_queue_frames_max
            or target.queued_bytes + len(payload) > self._config.send_queue_bytes_max
        ):
            self._drops["queue_full"] += 1
            return False
        target.queue.append(payload)
        target.queued_bytes += len(payload)
        target.queued.set()
        return True

    def broadcast(self, payload: bytes) -> int:
        """Queue one frame for every peer; returns how many queues took it."""
        return sum(self.send(name, payload) for name in self._peers)

    def connected_peers(self) -> list[str]:
        """Names of the peers with an authenticated connection, sorted."""
        return sorted(name for name, peer in self._peers.items() if peer.connection is not None)

    def stats(self) -> dict[str, Any]:
        """Counters since construction (a snapshot; mutating it changes nothing).

        ``frames_*``/``bytes_*`` count data frames and their payload bytes
        (not headers or heartbeats); "sent" means handed to the socket.
        """
        return {
            "frames_sent": self._frames_sent,
            "bytes_sent": self._bytes_sent,
            "frames_received": self._frames_received,
            "bytes_received": self._bytes_received,
            "drops": dict(self._drops),
            "handshake_failures": dict(self._handshake_failures),
            "disconnects": dict(self._disconnects),
            "connections": self._connections,
            "reconnects": self._reconnects,
            "dial_attempts": self._dial_attempts,
            "dial_failures": self._dial_failures,
            "queued_frames": {name: len(peer.queue) for name, peer in self._peers.items()},
        }

    # --- Tasks ------------------------------------------------------------------------------

    def _spawn(self, coroutine: Any, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._on_task_done)
        return task

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return
        # A bug, ours or on_message's: stop the whole transport (not just one link), report it
        # through the loop's exception handler (the node may make that fatal), raise it from stop().
        self._failures.append(error)
        if not self._stopping:
            self._stopping = True
            if self._server is not None:
                self._server.close()
            for other in list(self._tasks):
                other.cancel()
        message = f"{self.name}: transport task {task.get_name()!r} failed; the transport stopped"
        loop = asyncio.get_running_loop()
        loop.call_exception_handler({"message": message, "exception": error, "task": task})

    def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._stopping:
            writer.transport.abort()
            return
        self._spawn(self._run_connection(reader, writer, None), f"accept {self.name}")

    async def _dial_loop(self, peer: _Peer) -> None:
        """Keep one connection to ``peer``: dial, serve, back off (doubling, jittered), repeat."""
        delay_ms = self._config.reconnect_delay_ms_min
        failures = 0
        while True:
            self._dial_attempts += 1
            try:
                async with asyncio.timeout(self._config.handshake_timeout_ms / 1000):
                    reader, writer = await asyncio.open_connection(peer.address.host, peer.address.port)
            except (OSError, TimeoutError) as error:
                self._dial_failures += 1
                failures += 1
                level = logging.INFO if failures == 1 else logging.DEBUG
                self._logger.log(level, "%s: cannot reach %s: %s", self.name, peer.address.name, error)
            else:
                if await self._run_connection(reader, writer, peer):
                    delay_ms = self._config.reconnect_delay_ms_min
                    failures = 0
            await asyncio.sleep(self._random.uniform(delay_ms / 2, delay_ms) / 1000)
            delay_ms = min(2 * delay_ms, self._config.reconnect_delay_ms_max)

    async def _run_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dialled: _Peer | None
    ) -> bool:
        """Authenticate, then serve until the connection ends; True iff it authenticated."""
        try:
            peer = await self._authenticate(reader, writer, dialled)
            if peer is None:
                return False
            await self._serve(peer, reader, writer)
            return True
        finally:
            writer.transport.abort()  # idempotent; drops unsent bytes of a dead or refused link
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    # --- Handshake --------------------------------------------------------------------------

    async def _authenticate(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dialled: _Peer | None
    ) -> _Peer | None:
        """Run the handshake; register and return the peer, or count the refusal and return None."""
        remote = writer.get_extra_info("peername")
        inbound = dialled is None
        if inbound and self._handshakes_in_progress >= self._config.handshakes_in_progress_max:
            self._refuse(TransportError("too_many_handshakes"), remote, dialled)
            return None
        self._handshakes_in_progress += 1 if inbound else 0
        try:
            async with asyncio.timeout(self._config.handshake_timeout_ms / 1000):
                peer = await self._exchange_handshake(reader, writer, dialled)
        except TimeoutError:
            self._refuse(TransportError("handshake_timeout"), remote, dialled)
            return None
        except TransportError as error:
            self._refuse(error, remote, dialled)
            return None
        except (asyncio.IncompleteReadError, OSError) as error:
            self._refuse(TransportError("connection_lost", str(error) or type(error).__name__), remote, dialled)
            return None
        finally:
            self._handshakes_in_progress -= 1 if inbound else 0
        if peer.connection is not None:  # checked again: another handshake may have won meanwhile
            self._refuse(TransportError("already_connected"), remote, dialled)
            return None
        return peer

    async def _exchange_handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dialled: _Peer | None
    ) -> _Peer:
        """The four handshake frames; the acceptor signs only after the dialer's proof verifies."""
        challenge = os.urandom(CHALLENGE_BYTES)
        hello = encode_frame(Hello(self.chain_id, self.name, challenge).encode())
        if dialled is not None:
            writer.write(hello)
            peer_hello = decode_hello(await read_handshake_frame(reader))
            peer = self._check_hello(peer_hello, dialled)
            writer.write(encode_frame(compute_proof(self._key, self.chain_id, self.name, peer_hello).encode()))
            self._check_proof(decode_proof(await read_handshake_frame(reader)), peer_hello, challenge, peer)
        else:
            peer_hello = decode_hello(await read_handshake_frame(reader))
            peer = self._check_hello(peer_hello, None)
            writer.write(hello)
            self._check_proof(decode_proof(await read_handshake_frame(reader)), peer_hello, challenge, peer)
            writer.write(encode_frame(compute_proof(self._key, self.chain_id, self.name, peer_hello).encode()))
        await writer.drain()
        return peer

    def _check_hello(self, hello: Hello, dialled: _Peer | None) -> _Peer:
        """Checks on the peer's Hello, in this order (the first failure is the reason)."""
        # The peer serves another network.
        if hello.chain_id != self.chain_id:
            raise TransportError("wrong_chain", f"peer is on chain {hello.chain_id!r}")
        # A node never talks to itself: a misconfigured address or a reflected Hello.
        if hello.name == self.name:
            raise TransportError("peer_is_self", f"peer claims our name {hello.name!r}")
        # Only validators in our peer list may connect.
        peer = self._peers.get(hello.name)
        if peer is None:
            raise TransportError("unknown_peer", f"peer claims to be {hello.name!r}")
        # The address we dialled must be the validator we meant.
        if dialled is not None and peer is not dialled:
            raise TransportError("unexpected_peer", f"dialled {dialled.address.name!r}, got {hello.name!r}")
        # Only the lower name of a pair dials, so the pair has one connection.
        if dialled is None and not is_dialer(hello.name, self.name):
            raise TransportError("wrong_dialer", f"{hello.name!r} must wait for {self.name!r} to dial")
        # One connection per pair.
        if peer.connection is not None:
            raise TransportError("already_connected", f"{hello.name!r} is already connected")
        return peer

    def _check_proof(self, proof: Proof, peer_hello: Hello, challenge: bytes, peer: _Peer) -> None:
        """Checks on the peer's Proof, in this order."""
        # The proof comes from the validator that said Hello.
        if proof.name != peer_hello.name:
            raise TransportError("unexpected_peer", f"Hello from {peer_hello.name!r}, proof from {proof.name!r}")
        # It signs our fresh challenge and both names under the key on record (not a replay, not an impostor).
        message = compute_proof_message(challenge, proof.name, self.name)
        if not verify(peer.address.public_key, DOMAIN_PEER_HANDSHAKE, self.chain_id, message, proof.signature):
            raise TransportError("invalid_signature", f"{proof.name!r} did not prove its key")

    def _refuse(self, error: TransportError, remote: Any, dialled: _Peer | None) -> None:
        self._handshake_failures[error.code] += 1
        who = f"dialled {dialled.address.name}" if dialled is not None else "inbound"
        self._logger.warning("%s: refused %s connection %s: %s", self.name, who, remote, error)

    # --- Serving an authenticated connection ------------------------------------------------

    async def _serve(self, peer: _Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Deliver the peer's frames and drain our queue to it until either side fails."""
        assert peer.connection is None
        connection = _Connection(peer, reader, writer, asyncio.get_running_loop().time())
        peer.connection = connection
        self._connections += 1
        self._reconnects += peer.ever_connected
        peer.ever_connected = True
        self._logger.info("%s: connected to %s at %s", self.name, peer.address.name, writer.get_extra_info("peername"))
        writer_task = self._spawn(self._write_frames(connection), f"write {self.name}->{peer.address.name}")
        try:
            if self._on_connection_change is not None:
                self._on_connection_change(peer.address.name, True)
            await self._read_frames(connection)
        except TransportError as error:
            connection.fail(error.code)
        except (asyncio.IncompleteReadError, OSError):
            connection.fail("connection_lost")
        except asyncio.CancelledError:
            connection.fail("stopped")
            raise
        finally:
            try:
                await _cancel_and_wait(writer_task)
            finally:
                peer.connection = None
                self._count_disconnect(connection)
                if self._on_connection_change is not None:
                    self._on_connection_change(peer.address.name, False)

    def _count_disconnect(self, connection: _Connection) -> None:
        reason = connection.close_reason or "connection_lost"
        if reason != "stopped":
            self._disconnects[reason] += 1
        level = logging.INFO if reason in ("stopped", "connection_lost") else logging.WARNING
        self._logger.log(level, "%s: disconnected from %s: %s", self.name, connection.peer.address.name, reason)

    async def _read_frames(self, connection: _Connection) -> None:
        """Deliver data frames in order; returns never, raises when the connection ends."""
        reader = connection.reader
        name = connection.peer.address.name
        loop = asyncio.get_running_loop()
        on_message = self._on_message
        while True:
            length = int.from_bytes(await reader.readexactly(FRAME_HEADER_BYTES), "big")
            if length > FRAME_BYTES_MAX:
                raise TransportError("too_large", f"{name} sent a frame of {length} bytes")
            payload = await reader.readexactly(length) if length else b""
            connection.received_time = loop.time()
            if not length:
                continue  # heartbeat
            self._frames_received += 1
            self._bytes_received += length
            on_message(name, payload)

    async def _write_frames(self, connection: _Connection) -> None:
        """Drain the peer's queue into the socket in batches; heartbeat when idle; watch for silence."""
        peer = connection.peer
        writer = connection.writer
        loop = asyncio.get_running_loop()
        heartbeat_s = self._config.heartbeat_interval_ms / 1000
        idle_s = self._config.idle_timeout_ms / 1000
        try:
            while True:
                if not peer.queue:
                    peer.queued.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(heartbeat_s):
                            await peer.queued.wait()
                if loop.time() - connection.received_time > idle_s:
                    connection.fail("idle_timeout")
                    return
                chunks = self._take_batch(peer) or [HEARTBEAT_FRAME]
                writer.writelines(chunks)
                async with asyncio.timeout(self._config.write_timeout_ms / 1000):
                    await writer.drain()
        except TimeoutError:
            connection.fail("write_timeout")
        except OSError:
            connection.fail("connection_lost")
        finally:
            connection.writer.transport.abort()  # whatever ended the writer ends the connection

    def _take_batch(self, peer: _Peer) -> list[bytes]:
        """Pop frames (header, payload, ...) up to WRITE_BATCH_BYTES_MAX payload bytes."""
        chunks: list[bytes] = []
        batch_bytes = 0
        queue = peer.queue
        while queue and batch_bytes < WRITE_BATCH_BYTES_MAX:
            payload = queue.popleft()
            chunks.append(len(payload).to_bytes(FRAME_HEADER_BYTES, "big"))
            chunks.append(payload)
            batch_bytes += len(payload)
        peer.queued_bytes -= batch_bytes
        self._frames_sent += len(chunks) // 2
        self._bytes_sent += batch_bytes
        return chunks


async def _cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it; its bug (if any) propagates, its cancellation does not."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise


__all__ = [
    "CHALLENGE_BYTES",
    "FRAME_BYTES_MAX",
    "FRAME_HEADER_BYTES",
    "HANDSHAKE_FRAME_BYTES_MAX",
    "HEARTBEAT_FRAME",
    "TRANSPORT_ERROR_CODES",
    "ConnectionHandler",
    "Hello",
    "MessageHandler",
    "PeerAddress",
    "PeerNetwork",
    "PeerTransport",
    "Proof",
    "TransportConfig",
    "TransportError",
    "compute_proof",
    "compute_proof_message",
    "decode_hello",
    "decode_proof",
    "encode_frame",
    "is_dialer",
    "read_handshake_frame",
]
