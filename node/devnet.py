"""A local network of validator processes on loopback: ``ledger net up / status / down``.

    DIR/devnet.json        the nodes: name, home, peer port, API port
    DIR/genesis.json       the chain (4 validators and the demo members by default)
    DIR/keys/<name>.json   every key: validators' and members' (the demo signs with them)
    DIR/<validator>/       a node home (node.json, key.json, genesis.json, data/, node.log, node.pid)

``up`` creates all that if DIR has none, then starts every node that is not
running (so it restarts a crashed one and changes nothing else), and waits
until each answers and has committed a block.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ledger.errors import LedgerError
from node.netgen import ValidatorAddress, create_network

DEVNET_FILE = "devnet.json"
PID_FILE = "node.pid"
LOG_FILE = "node.log"
HOST = "127.0.0.1"
UP_TIMEOUT_S = 90
DOWN_TIMEOUT_S = 15
NODES_MAX = 16
DEVNET_DAY_MS = 20_000
"""A local devnet's "day" is 20 s, so T+1 settlement and daily limits can be seen in a demo (docs/CONTRACTS.md)."""


class DevnetError(LedgerError):
    """A devnet command could not do what was asked (the message says what to do)."""


@dataclass(frozen=True, slots=True)
class DevnetNode:
    name: str
    home: Path
    peer_port: int
    api_port: int

    @property
    def api(self) -> str:
        return f"http://{HOST}:{self.api_port}"


def free_ports(count: int) -> list[int]:
    """Ports the OS says are free now (the nodes bind them moments later)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def create_devnet(directory: Path, nodes: int) -> list[DevnetNode]:
    if not 1 <= nodes <= NODES_MAX:
        raise DevnetError("invalid_config", f"--nodes must be between 1 and {NODES_MAX}")
    directory = directory.resolve()
    ports = free_ports(2 * nodes)
    members = [DevnetNode(f"validator-{i}", directory / f"validator-{i}", ports[2 * i], ports[2 * i + 1])
               for i in range(nodes)]
    create_network(directory, [ValidatorAddress(n.name, HOST, n.peer_port, n.api_port) for n in members],
                   demo_members=True, extra_params={"day_ms": DEVNET_DAY_MS})
    (directory / DEVNET_FILE).write_text(json.dumps(
        {"nodes": [{"name": n.name, "home": str(n.home.resolve()), "peer_port": n.peer_port, "api_port": n.api_port}
                   for n in members]}, indent=2) + "\n")
    return members


def load_devnet(directory: Path) -> list[DevnetNode]:
    path = directory / DEVNET_FILE
    try:
        data = json.loads(path.read_text())
        return [DevnetNode(n["name"], Path(n["home"]), int(n["peer_port"]), int(n["api_port"])) for n in data["nodes"]]
    except FileNotFoundError:
        raise DevnetError("invalid_config", f"no devnet in {directory}: run `ledger net up --dir {directory}`") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DevnetError("invalid_config", f"{path} is malformed: {error}") from error


def get_pid(node: DevnetNode) -> int | None:
    """The node's pid if that process is alive and is this node."""
    try:
        pid = int((node.home / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except (ProcessLookupError, PermissionError, OSError):
        return None
    return pid if str(node.home).encode() in cmdline else None


def start_node(node: DevnetNode) -> int:
    """Start a detached node process (its own session; it outlives this command)."""
    log_fd = os.open(node.home / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    try:
        pid = os.posix_spawn(
            sys.executable, [sys.executable, "-m", "node.cli", "node", "run", "--home", str(node.home)],
            dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent)),
            file_actions=[(os.POSIX_SPAWN_DUP2, null_fd, 0), (os.POSIX_SPAWN_DUP2, log_fd, 1),
                          (os.POSIX_SPAWN_DUP2, log_fd, 2)],
            setsid=True)
    finally:
        os.close(log_fd)
        os.close(null_fd)
    (node.home / PID_FILE).write_text(f"{pid}\n")
    return pid


def get_status(node: DevnetNode, timeout_s: float = 2.0) -> dict[str, Any] | None:
    try:
        response = httpx.get(f"{node.api}/v1/status", timeout=timeout_s)
        if response.status_code == 200:
            return response.json()  # type: ignore[no-any-return]
    except httpx.HTTPError:
        return None
    return None


def up(directory: Path, nodes: int, progress: Any = print) -> list[tuple[DevnetNode, int, bool]]:
    """Start what is not running; returns (node, pid, started now) for every node."""
    if not (directory / DEVNET_FILE).exists():
        members = create_devnet(directory, nodes)
        progress(f"created a devnet of {len(members)} validators in {directory}")
    else:
        members = load_devnet(directory)
    started = []
    for node in members:
        if get_pid(node) is None:
            started.append((node, start_node(node)))
    deadline = time.monotonic() + UP_TIMEOUT_S
    waiting = {node.name for node in members}
    while waiting and time.monotonic() < deadline:
        for node in members:
            if node.name in waiting:
                status = get_status(node, 1.0)
                if status is not None and status.get("height", 0) >= 1:
                    waiting.discard(node.name)
                elif get_pid(node) is None and node.name in [s.name for s, _ in started]:
                    raise DevnetError("invalid_config", f"{node.name} exited; see {node.home / LOG_FILE}")
        time.sleep(0.3)
    if waiting:
        raise DevnetError("invalid_config", f"not ready after {UP_TIMEOUT_S}s: {', '.join(sorted(waiting))}; "
                          f"see their {LOG_FILE}")
    started_names = {node.name for node, _pid in started}
    return [(node, get_pid(node) or 0, node.name in started_names) for node in members]


def down(directory: Path) -> list[str]:
    stopped = []
    members = load_devnet(directory)
    pids = {node.name: get_pid(node) for node in members}
    for pid in pids.values():
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + DOWN_TIMEOUT_S
    for node in members:
        pid = pids[node.name]
        if pid is None:
            continue
        while get_pid(node) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if get_pid(node) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stopped.append(node.name)
    return stopped
