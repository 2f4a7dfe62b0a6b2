"""The peer transport over real loopback sockets: mesh, handshake refusals, limits, restarts.

Every test runs its own event loop through ``run`` (pytest-asyncio is not a
dependency), bounded by a timeout, and ends by checking that no task is
left behind. Ports are the OS's choice: the lower name of a pair dials, so
nodes start highest name first and each dials peers whose ports are known.

Tests wait on what the transport reports (``on_message`` and
``on_connection_change``), not on sleeps (the restart test sleeps once, to
make an outage, not to wait for one); a refusal is observed from the refused
side as the connection closing, which happens after the refusal is counted.
``RawPeer`` speaks the protocol one frame at a time to play impostors,
replayers and broken peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import pytest

from ledger.block import BLOCK_BYTES_MAX
from ledger.encoding import encode
from ledger.errors import ERROR_CODES
from ledger.keys import DOMAIN_PEER_HANDSHAKE, PrivateKey, signing_input, verify_raw
from node import transport
from node.transport import (
    FRAME_BYTES_MAX,
    HEARTBEAT_FRAME,
    TRANSPORT_ERROR_CODES,
    Hello,
    PeerAddress,
    PeerNetwork,
    Proof,
    TransportConfig,
    compute_proof,
    compute_proof_message,
    decode_hello,
    decode_proof,
    encode_frame,
    is_dialer,
    read_handshake_frame,
)

pytestmark = pytest.mark.timeout(30)

CHAIN = "test-chain"
HOST = "127.0.0.1"
TEST_TIMEOUT_S = 10.0
WAIT_TIMEOUT_S = 5.0
KEYS = {name: PrivateKey(bytes([index + 1]) * 32) for index, name in enumerate("abcdz")}
"""Fixed keys; ``z`` is never a configured validator (the unknown name)."""
FAST = TransportConfig(
    handshake_timeout_ms=1_000,
    reconnect_delay_ms_min=10,
    reconnect_delay_ms_max=100,
    heartbeat_interval_ms=100,
    idle_timeout_ms=2_000,
    write_timeout_ms=2_000,
)


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run one async test on a fresh loop, bounded, and check it left no task behind."""

    async def bounded() -> None:
        async with asyncio.timeout(TEST_TIMEOUT_S):
            await body()
        assert asyncio.all_tasks() == {asyncio.current_task()}, "a task outlived its test"

    asyncio.run(bounded())
    gc.collect()  # an unclosed socket or transport warns now, inside this test (warnings are errors)


class Probe:
    """What one node's transport reported; tests await conditions on it."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.connected: set[str] = set()
        self.changes: list[tuple[str, bool]] = []
        self._changed = asyncio.Event()

    def on_message(self, peer: str, payload: bytes) -> None:
        self.messages.append((peer, payload))
        self._changed.set()

    def on_connection_change(self, peer: str, is_connected: bool) -> None:
        (self.connected.add if is_connected else self.connected.discard)(peer)
        self.changes.append((peer, is_connected))
        self._changed.set()

    def payloads_from(self, peer: str) -> list[bytes]:
        return [payload for sender, payload in self.messages if sender == peer]

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float = WAIT_TIMEOUT_S) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


def address(name: str, port: int = 0) -> PeerAddress:
    return PeerAddress(name, HOST, port, KEYS[name].public_key)


def make_node(
    name: str,
    peers: Sequence[PeerAddress],
    *,
    port: int = 0,
    config: TransportConfig = FAST,
    key: PrivateKey | None = None,
    chain_id: str = CHAIN,
    on_message: Callable[[str, bytes], None] | None = None,
) -> tuple[PeerNetwork, Probe]:
    probe = Probe()
    network = PeerNetwork(
        chain_id,
        name,
        key or KEYS[name],
        HOST,
        port,
        peers,
        on_message or probe.on_message,
        config=config,
        on_connection_change=probe.on_connection_change,
    )
    return network, probe


async def start_mesh(
    names: Sequence[str], config: TransportConfig = FAST, *, absent: Sequence[str] = ()
) -> dict[str, tuple[PeerNetwork, Probe]]:
    """Start a full mesh, highest name first, so every node dials ports already bound.

    ``absent`` names are configured validators that are not running (raw peers play them).
    """
    ports: dict[str, int] = {}
    nodes: dict[str, tuple[PeerNetwork, Probe]] = {}
    for name in sorted(names, reverse=True):
        peers = [address(other, ports.get(other, 0)) for other in [*names, *absent] if other != name]
        network, probe = make_node(name, peers, config=config)
        await network.start()
        ports[name] = network.listen_port
        nodes[name] = (network, probe)
    for name, (_, probe) in nodes.items():
        others = set(names) - {name}
        await probe.wait_until(lambda probe=probe, others=others: probe.connected == others)  # type: ignore[misc]
    return nodes


async def stop_all(networks: Sequence[PeerNetwork]) -> None:
    for network in networks:
        await network.stop()


class RawPeer:
    """A hand-driven peer speaking the wire protocol one frame at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.challenge = os.urandom(32)

    @classmethod
    async def dial(cls, port: int) -> RawPeer:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    def send_frame(self, payload: bytes) -> None:
        self.writer.write(encode_frame(payload))

    def send_hello(self, name: str, chain_id: str = CHAIN) -> None:
        self.send_frame(Hello(chain_id, name, self.challenge).encode())

    async def read_hello(self) -> Hello:
        return decode_hello(await read_handshake_frame(self.reader))

    async def read_proof(self) -> Proof:
        return decode_proof(await read_handshake_frame(self.reader))

    async def authenticate_as(self, name: str, key: PrivateKey) -> tuple[Hello, Proof]:
        """The dialer's side of a full handshake; returns the node's Hello and Proof."""
        self.send_hello(name)
        node_hello = await self.read_hello()
        self.send_frame(compute_proof(key, CHAIN, name, node_hello).encode())
        node_proof = await self.read_proof()
        message = compute_proof_message(self.challenge, node_hello.name, name)
        expected_key = KEYS[node_hello.name].public_key
        assert verify_raw(expected_key, signing_input(DOMAIN_PEER_HANDSHAKE, CHAIN, message), node_proof.signature)
        return node_hello, node_proof

    async def expect_closed(self) -> None:
        """The other side closes: read (and discard) until EOF or reset."""
        async with asyncio.timeout(WAIT_TIMEOUT_S):
            with contextlib.suppress(ConnectionResetError):
                while await self.reader.read(65536):
                    pass

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def raw_peer(port: int) -> Any:
    peer = await RawPeer.dial(port)
    try:
        yield peer
    finally:
        await peer.close()


# --- Pure pieces ----------------------------------------------------------------------------


def test_limits_fit_a_full_block_and_a_handshake() -> None:
    assert BLOCK_BYTES_MAX + 1024 <= FRAME_BYTES_MAX < 2**32
    longest = "x" * transport.NAME_BYTES_MAX
    hello = Hello(longest, longest, b"\xff" * 32).encode()
    proof = Proof(longest, b"\xff" * 64).encode()
    assert max(len(hello), len(proof)) <= transport.HANDSHAKE_FRAME_BYTES_MAX


def test_frames_and_proof_bytes_are_exactly_as_documented() -> None:
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert HEARTBEAT_FRAME == encode_frame(b"")
    hello = Hello(CHAIN, "a", bytes(range(32)))
    assert hello.encode() == encode([CHAIN, "a", bytes(range(32))])
    assert decode_hello(hello.encode()) == hello
    message = compute_proof_message(b"\x07" * 32, "a", "b")
    assert message == b"\x93\xc4\x20" + b"\x07" * 32 + b"\xa1a\xa1b"
    proof = compute_proof(KEYS["a"], CHAIN, "a", Hello(CHAIN, "b", b"\x07" * 32))
    assert proof.encode() == encode(["a", proof.signature])
    signed = encode([DOMAIN_PEER_HANDSHAKE, CHAIN, message])
    assert verify_raw(KEYS["a"].public_key, signed, proof.signature)


HANDSHAKE_EXAMPLE = {
    "dialer_hello_frame": "0000003493aa64656d6f2d636861696ea576616c2d31c420" + "11" * 32,
    "acceptor_hello_frame": "0000003493aa64656d6f2d636861696ea576616c2d32c420" + "22" * 32,
    "dialer_proof_message": "93c420" + "22" * 32 + "a576616c2d31a576616c2d32",
    "dialer_signing_input": "93b36c65646765722f68616e647368616b652f7631aa64656d6f2d636861696ec42f93c420"
    + "22" * 32
    + "a576616c2d31a576616c2d32",
    "dialer_proof_frame": "0000004992a576616c2d31c440a7f4587d664a15c627439b2aebf41ce1c7bbbcc8c24d8165af0716"
    "0770ee1aff3b26203afab148f8f7ed19b3bc3358b3cca0bca9d339f2cff9712e97f7bc760e",
    "acceptor_proof_frame": "0000004992a576616c2d32c44054ae99b591a2bb68ee3ffb1e8e84044c63408606079eb665a1fd"
    "06609bd5bde97f7ee44c3d4b616534625305734db7e82c99f1b58a991e703236a44eb0d17c01",
}
"""The worked example quoted in docs/PROTOCOL.md ("Peer transport"): chain ``demo-chain``,
dialer ``val-1`` (seed 01*32, challenge 11*32), acceptor ``val-2`` (seed 02*32, challenge 22*32)."""


def test_handshake_worked_example_is_byte_exact() -> None:
    chain = "demo-chain"
    dialer, acceptor = PrivateKey(b"\x01" * 32), PrivateKey(b"\x02" * 32)
    dialer_hello = Hello(chain, "val-1", b"\x11" * 32)
    acceptor_hello = Hello(chain, "val-2", b"\x22" * 32)
    message = compute_proof_message(acceptor_hello.challenge, "val-1", "val-2")
    produced = {
        "dialer_hello_frame": encode_frame(dialer_hello.encode()),
        "acceptor_hello_frame": encode_frame(acceptor_hello.encode()),
        "dialer_proof_message": message,
        "dialer_signing_input": signing_input(DOMAIN_PEER_HANDSHAKE, chain, message),
        "dialer_proof_frame": encode_frame(compute_proof(dialer, chain, "val-1", acceptor_hello).encode()),
        "acceptor_proof_frame": encode_frame(compute_proof(acceptor, chain, "val-2", dialer_hello).encode()),
    }
    assert {name: data.hex() for name, data in produced.items()} == HANDSHAKE_EXAMPLE
    signature = produced["dialer_proof_frame"][-64:]
    assert verify_raw(dialer.public_key, produced["dialer_signing_input"], signature)


def test_lower_name_dials() -> None:
    assert is_dialer("a", "b") and not is_dialer("b", "a")
    assert is_dialer("val-1", "val-10") and is_dialer("Z", "a")  # UTF-8 byte order


def test_transport_codes_are_documented_and_distinct() -> None:
    assert not set(TRANSPORT_ERROR_CODES) & set(ERROR_CODES)
    assert all(text.endswith(".") for text in TRANSPORT_ERROR_CODES.values())
    with pytest.raises(AssertionError):
        transport.TransportError("no_such_code")


# --- Mesh -----------------------------------------------------------------------------------


def test_full_mesh_delivers_every_pair_both_ways_in_order() -> None:
    async def body() -> None:
        names = "abcd"
        nodes = await start_mesh(names)
        try:
            count = 200
            for sender, (network, _) in nodes.items():
                for receiver in names:
                    if receiver != sender:
                        for index in range(count):
                            assert network.send(receiver, f"{sender}>{receiver}#{index}".encode())
                assert network.broadcast(f"{sender} says hi".encode()) == 3
            for receiver, (_, probe) in nodes.items():
                await probe.wait_until(lambda probe=probe: len(probe.messages) == 3 * (count + 1))  # type: ignore[misc]
                for sender in names:
                    if sender != receiver:
                        expected = [f"{sender}>{receiver}#{index}".encode() for index in range(count)]
                        assert probe.payloads_from(sender) == [*expected, f"{sender} says hi".encode()]
            for network, _ in nodes.values():
                stats = network.stats()
                assert stats["frames_sent"] == stats["frames_received"] == 3 * (count + 1)
                assert stats["handshake_failures"] == {} and stats["drops"] == {}
                assert stats["connections"] == 3
        finally:
            await stop_all([network for network, _ in nodes.values()])

    run(body)


# --- Handshake refusals ---------------------------------------------------------------------


def test_invalid_impostor_dialer_is_refused() -> None:
    """Right name, wrong key: the node never signs anything for it."""

    async def body() -> None:
        network, _ = make_node("d", [address("a"), address("b")])
        await network.start()
        try:
            async with raw_peer(network.listen_port) as impostor:
                impostor.send_hello("a")
                node_hello = await impostor.read_hello()
                impostor.send_frame(compute_proof(KEYS["z"], CHAIN, "a", node_hello).encode())
                await impostor.expect_closed()
            assert network.stats()["handshake_failures"] == {"invalid_signature": 1}
            assert network.connected_peers() == []
        finally:
            await network.stop()

    run(body)


def test_invalid_impostor_acceptor_is_refused() -> None:
    """The node dials ``b``'s address and finds someone holding another key."""

    async def body() -> None:
        captured: list[RawPeer] = []
        accepted = asyncio.Event()

        def on_accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            captured.append(RawPeer(reader, writer))
            accepted.set()

        server = await asyncio.start_server(on_accept, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        config = TransportConfig(reconnect_delay_ms_min=5_000, reconnect_delay_ms_max=5_000)
        network, _ = make_node("a", [address("b", port)], config=config)
        await network.start()
        try:
            await accepted.wait()
            impostor = captured[0]
            node_hello = await impostor.read_hello()
            impostor.send_hello("b")
            await impostor.read_proof()  # the dialer proves first: it reached the address it meant
            impostor.send_frame(compute_proof(KEYS["z"], CHAIN, "b", node_hello).encode())
            await impostor.expect_closed()
            assert network.stats()["handshake_failures"] == {"invalid_signature": 1}
            assert network.connected_peers() == []
        finally:
            await network.stop()
            for peer in captured:
                await peer.close()
            server.close()
            await server.wait_closed()

    run(body)


@pytest.mark.parametrize(
    ("claimed_name", "chain_id", "code"),
    [
        ("z", CHAIN, "unknown_peer"),
        ("a", "other-chain", "wrong_chain"),
        ("c", CHAIN, "peer_is_self"),
        ("d", CHAIN, "wrong_dialer"),  # d > c, so c dials d, never the reverse
    ],
)
def test_invalid_hello_is_refused_before_the_node_says_anything(claimed_name: str, chain_id: str, code: str) -> None:
    async def body() -> None:
        network, _ = make_node("c", [address("a"), address("b"), address("d", 1)])
        await network.start()
        try:
            async with raw_peer(network.listen_port) as stranger:
                stranger.send_hello(claimed_name, chain_id)
                assert await stranger.reader.read() == b""  # no Hello, no proof: just closed
            assert network.stats()["handshake_failures"] == {code: 1}
        finally:
            await network.stop()

    run(body)


def test_invalid_replayed_proof_is_refused() -> None:
    """A proof captured from one session fails in the next session and at another node."""

    async def body() -> None:
        node_c, _ = make_node("c", [address("a")])
        node_d, _ = make_node("d", [address("a")])
        await node_c.start()
        await node_d.start()
        try:
            async with raw_peer(node_c.listen_port) as honest_a:  # a session an eavesdropper records
                honest_a.send_hello("a")
                node_hello = await honest_a.read_hello()
                captured_proof = compute_proof(KEYS["a"], CHAIN, "a", node_hello).encode()
                honest_a.send_frame(captured_proof)
                await honest_a.read_proof()
            for target in (node_c, node_d):
                async with raw_peer(target.listen_port) as replayer:
                    replayer.send_hello("a")
                    await replayer.read_hello()  # a fresh challenge the captured proof does not sign
                    replayer.send_frame(captured_proof)
                    await replayer.expect_closed()
                assert target.stats()["handshake_failures"] == {"invalid_signature": 1}
            assert node_c.stats()["connections"] == 1  # only the honest session
        finally:
            await stop_all([node_c, node_d])

    run(body)


def test_invalid_second_connection_is_refused() -> None:
    async def body() -> None:
        network, probe = make_node("c", [address("a")])
        await network.start()
        try:
            async with raw_peer(network.listen_port) as first:
                await first.authenticate_as("a", KEYS["a"])
                await probe.wait_until(lambda: probe.connected == {"a"})
                async with raw_peer(network.listen_port) as second:
                    second.send_hello("a")
                    assert await second.reader.read() == b""
                assert network.stats()["handshake_failures"] == {"already_connected": 1}
                assert network.send("a", b"still here")
                assert await read_data_frame(first) == b"still here"
        finally:
            await network.stop()

    run(body)


async def read_data_frame(peer: RawPeer) -> bytes:
    """The next non-heartbeat frame."""
    while True:
        length = int.from_bytes(await peer.reader.readexactly(4), "big")
        if length:
            return await peer.reader.readexactly(length)


def test_garbage_handshakes_do_not_crash_the_listener() -> None:
    async def body() -> None:
        config = TransportConfig(handshake_timeout_ms=200, reconnect_delay_ms_min=10, reconnect_delay_ms_max=50)
        ports: dict[str, int] = {}
        node_b, probe_b = make_node("b", [address("a")], config=config)
        await node_b.start()
        ports["b"] = node_b.listen_port
        try:
            garbage = [
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # a header claiming ~1.2 GB: too_large
                encode_frame(b"\xc1" * 20),  # a frame of invalid msgpack
                encode_frame(encode(["test-chain", "a"])),  # the wrong shape
                encode_frame(encode([CHAIN, "a", b"short"])),  # a 5-byte challenge
                b"\x00\x00\x00\x40abc",  # a frame cut short, then EOF
            ]
            for data in garbage:
                async with raw_peer(ports["b"]) as stranger:
                    stranger.writer.write(data)
                    if data.startswith(b"\x00\x00\x00\x40"):
                        stranger.writer.write_eof()
                    await stranger.expect_closed()
            async with raw_peer(ports["b"]) as silent:
                await silent.expect_closed()  # says nothing: cut off at the handshake timeout
            failures = node_b.stats()["handshake_failures"]
            assert failures == {
                "too_large": 1,
                "malformed_encoding": 3,
                "connection_lost": 1,
                "handshake_timeout": 1,
            }
            node_a, probe_a = make_node("a", [address("b", ports["b"])], config=config)
            await node_a.start()
            try:
                await probe_a.wait_until(lambda: probe_a.connected == {"b"})
                assert node_a.send("b", b"after the garbage")
                await probe_b.wait_until(lambda: probe_b.messages == [("a", b"after the garbage")])
            finally:
                await node_a.stop()
        finally:
            await node_b.stop()

    run(body)


# --- Limits ---------------------------------------------------------------------------------


def test_oversize_frame_closes_the_connection_and_the_node_keeps_serving() -> None:
    async def body() -> None:
        node_d, probe_d = make_node("d", [address("a"), address("c")])
        await node_d.start()
        node_c, _ = make_node("c", [address("d", node_d.listen_port)])
        await node_c.start()
        try:
            await probe_d.wait_until(lambda: probe_d.connected == {"c"})
            async with raw_peer(node_d.listen_port) as raw_a:
                await raw_a.authenticate_as("a", KEYS["a"])
                await probe_d.wait_until(lambda: probe_d.connected == {"a", "c"})
                raw_a.send_frame(b"fine")
                raw_a.writer.write((FRAME_BYTES_MAX + 1).to_bytes(4, "big"))
                await raw_a.expect_closed()
            await probe_d.wait_until(lambda: probe_d.connected == {"c"})
            assert probe_d.payloads_from("a") == [b"fine"]
            assert node_d.stats()["disconnects"] == {"too_large": 1}
            assert node_c.send("d", b"still serving")
            await probe_d.wait_until(lambda: probe_d.payloads_from("c") == [b"still serving"])
        finally:
            await stop_all([node_c, node_d])

    run(body)


def test_send_to_a_down_peer_queues_until_full_then_returns_false() -> None:
    async def body() -> None:
        config = TransportConfig(send_queue_frames_max=4)
        network, _ = make_node("a", [address("b", 1)], config=config)  # b never answers
        assert [network.send("b", b"x") for _ in range(5)] == [True, True, True, True, False]
        assert network.send("nobody", b"x") is False
        assert network.broadcast(b"x") == 0
        stats = network.stats()
        assert stats["drops"] == {"queue_full": 2, "unknown_peer": 1}
        assert stats["queued_frames"] == {"b": 4}
        await network.stop()
        assert network.send("b", b"x") is False

    run(body)


def test_send_to_a_peer_that_stops_reading_returns_false_without_blocking() -> None:
    async def body() -> None:
        config = TransportConfig(send_queue_frames_max=8, write_timeout_ms=60_000, idle_timeout_ms=60_000)
        network, probe = make_node("c", [address("a")], config=config)
        await network.start()
        try:
            async with raw_peer(network.listen_port) as stuck:
                await stuck.authenticate_as("a", KEYS["a"])  # and then never reads again
                await probe.wait_until(lambda: probe.connected == {"a"})
                payload = b"\x01" * (1024 * 1024)
                slowest_send_s = 0.0
                for attempt in range(1_000):
                    started = time.perf_counter()
                    accepted = network.send("a", payload)
                    slowest_send_s = max(slowest_send_s, time.perf_counter() - started)
                    if not accepted:
                        break
                    await asyncio.sleep(0)  # let the writer fill the socket
                assert not accepted, "the queue never filled"
                assert slowest_send_s < 0.05
                assert network.stats()["drops"] == {"queue_full": 1}
                assert network.connected_peers() == ["a"]  # backpressure is not a disconnect
        finally:
            await network.stop()

    run(body)


def test_a_silent_peer_is_cut_off_and_an_idle_link_carries_heartbeats() -> None:
    async def body() -> None:
        config = TransportConfig(heartbeat_interval_ms=20, idle_timeout_ms=200)
        network, probe = make_node("c", [address("a")], config=config)
        await network.start()
        try:
            async with raw_peer(network.listen_port) as silent:
                await silent.authenticate_as("a", KEYS["a"])
                assert await silent.reader.readexactly(4) == HEARTBEAT_FRAME
                await silent.expect_closed()
            assert network.stats()["disconnects"] == {"idle_timeout": 1}
            assert probe.changes == [("a", True), ("a", False)]
        finally:
            await network.stop()

    run(body)


# --- Reconnection and shutdown --------------------------------------------------------------


@pytest.mark.parametrize("restarted", ["b", "a"])
def test_a_restarted_peer_is_reconnected(restarted: str) -> None:
    """``b`` only accepts, so a's backoff must find it again; a restarted ``a`` dials on start."""

    async def body() -> None:
        nodes = await start_mesh("ab")
        node_a, _ = nodes["a"]
        node_b, _ = nodes["b"]
        survivor, survivor_probe = nodes["b" if restarted == "a" else "a"]
        old, _ = nodes[restarted]
        port = old.listen_port
        other = "b" if restarted == "a" else "a"
        peers = [address(other, node_b.listen_port if other == "b" else 0)]
        fresh: PeerNetwork | None = None
        try:
            await old.stop()
            await survivor_probe.wait_until(lambda: survivor_probe.connected == set())
            assert survivor.send(restarted, b"queued while down")
            await asyncio.sleep(0.2)  # a real outage: the dialer's backoff (10..100 ms) fails a few times
            fresh, fresh_probe = make_node(restarted, peers, port=port)
            await fresh.start()
            await survivor_probe.wait_until(lambda: survivor_probe.connected == {restarted})
            await fresh_probe.wait_until(lambda: fresh_probe.payloads_from(other) == [b"queued while down"])
            assert fresh.send(other, b"back")
            await survivor_probe.wait_until(lambda: survivor_probe.payloads_from(restarted) == [b"back"])
            assert survivor.stats()["reconnects"] == 1
            if restarted == "b":
                assert node_a.stats()["dial_failures"] >= 2
        finally:
            await stop_all([node for node in (node_a, node_b, fresh) if node is not None and node is not old])

    run(body)


def test_stop_mid_handshake_and_mid_traffic_leaves_nothing_behind() -> None:
    async def body() -> None:
        nodes = await start_mesh("bcd", absent="a")
        node_c, _ = nodes["c"]
        async with raw_peer(node_c.listen_port) as half:
            half.send_hello("a")  # and stops there: c waits for a proof while stopping
            await half.read_hello()
            for network, _ in nodes.values():
                network.broadcast(b"in flight" * 1000)
            await stop_all([network for network, _ in nodes.values()])
            await half.expect_closed()
        for network, _ in nodes.values():
            assert network.connected_peers() == []
        # run() asserts no task is left

    run(body)


def test_a_bug_in_on_message_surfaces_at_stop() -> None:
    class Boom(Exception):
        pass

    def explode(peer: str, payload: bytes) -> None:
        raise Boom(peer)

    reported: list[dict[str, Any]] = []

    async def body() -> None:
        bug_reported = asyncio.Event()

        def report(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            reported.append(context)
            bug_reported.set()

        asyncio.get_running_loop().set_exception_handler(report)
        receiver, probe = make_node("b", [address("a")], on_message=explode)
        await receiver.start()
        sender, _ = make_node("a", [address("b", receiver.listen_port)])
        await sender.start()
        try:
            await probe.wait_until(lambda: probe.connected == {"a"})
            sender.send("b", b"trigger")
            await bug_reported.wait()
            assert probe.connected == set() and receiver.connected_peers() == []
            assert receiver.send("a", b"after the bug") is False  # the whole transport stopped
        finally:
            await sender.stop()
            with pytest.raises(Boom):
                await receiver.stop()
        assert [type(context["exception"]) for context in reported] == [Boom]

    run(body)


# --- Throughput (printed, not asserted) -----------------------------------------------------


def test_throughput_of_1_kib_frames_between_two_nodes(capsys: pytest.CaptureFixture[str]) -> None:
    frames = 100_000
    result: dict[str, float] = {}

    async def body() -> None:
        payload = b"\x5a" * 1024
        done = asyncio.Event()
        received = 0

        def count(peer: str, data: bytes) -> None:  # no list: measure the transport, not the probe
            nonlocal received
            received += 1
            if received == frames:
                done.set()

        node_b, probe_b = make_node("b", [address("a")], on_message=count)
        await node_b.start()
        node_a, _ = make_node("a", [address("b", node_b.listen_port)])
        await node_a.start()
        try:
            await probe_b.wait_until(lambda: probe_b.connected == {"a"})
            started = time.perf_counter()
            sent = 0
            while sent < frames:
                if node_a.send("b", payload):
                    sent += 1
                else:
                    await asyncio.sleep(0)
            await done.wait()
            result["seconds"] = time.perf_counter() - started
        finally:
            await stop_all([node_a, node_b])

    run(body)
    rate = frames / result["seconds"]
    with capsys.disabled():
        print(f"\ntransport throughput: {rate:,.0f} frames/s of 1 KiB ({rate * 1024 / 2**20:,.1f} MiB/s)")
