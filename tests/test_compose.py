"""docker-compose.yml and the Dockerfile, tested without a Docker engine.

The structure is checked from the parsed YAML. Then each service's command
(the Dockerfile's ENTRYPOINT plus the service's ``entrypoint``/``command``)
and environment run as local processes, the way the containers would run
them, with three stand-ins for what Docker provides:

- each named volume is a directory under tmp_path, and every container path
  a service mounts is replaced by that directory in its command and
  environment (as a bind mount would);
- the image's PATH is this virtualenv's bin first (``ledger`` and ``python``
  there are the image's ``ledger`` and ``python``);
- Docker's DNS, which resolves a service name to its container, is the one
  translation: after the genesis service has run, the peers' host names in
  each node.json (service names) are rewritten to 127.0.0.1.

Because every validator uses its own ports (peer 26650+N, API 8000+N), the
four nodes then run side by side, are reached on their published container
ports, commit blocks, agree on a head, pass their healthchecks and stop
cleanly on SIGTERM, each with its store in its own volume.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]

from ledger.store import STORE_FILE_NAME, Store
from ledger.verify import verify_store

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
INIT = "genesis"
VALIDATORS = [f"validator-{i}" for i in range(4)]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 20


# --- Reading the files -------------------------------------------------------------------------


def dockerfile_instruction(name: str) -> list[str]:
    """The arguments of every ``NAME ...`` line (continuation lines joined)."""
    text = DOCKERFILE.replace("\\\n", " ")
    return [line.split(None, 1)[1].strip() for line in text.splitlines() if line.upper().startswith(name + " ")]


def argv_of(value: str | list[str] | None) -> list[str]:
    """Compose's exec form (a list) or shell-split string form."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else shlex.split(value)


def mounts_of(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(volume, container path, read-only) for each short-syntax named-volume mount."""
    mounts = []
    for spec in service.get("volumes", []):
        source, target, *mode = spec.split(":")
        assert source in COMPOSE["volumes"], f"{spec}: only named volumes (declared at the top level)"
        mounts.append((source, target, mode == ["ro"]))
    return mounts


def published_ports(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) for each ``[IP:]HOST:CONTAINER`` mapping."""
    ports = []
    for spec in service.get("ports", []):
        *ip, host, container = str(spec).split(":")
        ports.append((ip[0] if ip else "0.0.0.0", int(host), int(container)))
    return ports


def api_port(name: str) -> int:
    [(_ip, _host, container)] = published_ports(SERVICES[name])
    return container


# --- Structure ---------------------------------------------------------------------------------


def test_compose_has_four_validators_one_image_and_a_one_shot_genesis() -> None:
    assert sorted(SERVICES) == sorted([INIT, *VALIDATORS])
    assert [name for name, service in SERVICES.items() if "build" in service] == [INIT], "built once"
    assert SERVICES[INIT]["build"] in (".", {"context": "."})
    assert len({service["image"] for service in SERVICES.values()}) == 1, "one image for every service"
    assert SERVICES[INIT].get("restart") == "no"
    assert "$" not in COMPOSE_TEXT, "no variable interpolation: the local run below uses the text as it is"
    for name in VALIDATORS:
        service = SERVICES[name]
        assert service["depends_on"] == {INIT: {"condition": "service_completed_successfully"}}
        assert service["pull_policy"] == "never" and service["restart"] == "unless-stopped"
        assert "entrypoint" not in service, "validators run the image's ENTRYPOINT (ledger)"


def test_each_validator_has_its_own_volume_and_reads_the_shared_one() -> None:
    [(shared, _target, _ro)] = mounts_of(SERVICES[INIT])
    own = []
    for name in VALIDATORS:
        mounts = mounts_of(SERVICES[name])
        assert (shared, "/net", True) in mounts, f"{name} mounts the generated network read-only"
        writable = [volume for volume, _target, read_only in mounts if not read_only]
        assert len(writable) == 1, f"{name}: exactly one volume of its own"
        own.extend(writable)
    assert len(set(own)) == len(VALIDATORS) and shared not in own, "every validator's data volume is its own"
    assert set(COMPOSE["volumes"]) == {shared, *own}


def test_validators_publish_distinct_api_ports_and_check_them() -> None:
    host_ports, container_ports = set(), set()
    for number, name in enumerate(VALIDATORS):
        service = SERVICES[name]
        [(ip, host, container)] = published_ports(service)
        assert (ip, host, container) == ("127.0.0.1", 8000 + number, 8000 + number)
        host_ports.add(host)
        container_ports.add(container)
        check = service["healthcheck"]
        assert check["test"][0] == "CMD"
        assert f"http://127.0.0.1:{container}/v1/status" in " ".join(check["test"])
        assert {"interval", "timeout", "retries", "start_period"} <= set(check)
    assert len(host_ports) == len(container_ports) == len(VALIDATORS)


def test_dockerfile_installs_the_project_as_a_non_root_user() -> None:
    assert dockerfile_instruction("FROM") == ["python:3.11-slim"]
    assert json.loads(dockerfile_instruction("ENTRYPOINT")[0]) == ["ledger"]
    [user] = dockerfile_instruction("USER")
    assert user not in ("root", "0")
    assert any("pip install ." in run for run in dockerfile_instruction("RUN"))
    copied = {source for line in dockerfile_instruction("COPY") for source in line.split()[:-1]}
    assert {"pyproject.toml", "README.md", "ledger", "contracts", "node"} <= copied
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", ".devnet"} <= ignored
    assert not copied & ignored, "the .dockerignore must not hide what the Dockerfile copies"
    for mount in ("/net", "/data"):
        assert any(f"chown {user}" in run and mount in run for run in dockerfile_instruction("RUN")), (
            f"{mount} must belong to {user} so a fresh named volume there is writable")


# --- Running the services as local processes ----------------------------------------------------


class LocalHost:
    """Named volumes as directories, the image's PATH, container paths mapped to host paths."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.volumes = {name: root / "volumes" / name for name in COMPOSE["volumes"]}
        for path in self.volumes.values():
            path.mkdir(parents=True)
        bin_dir = Path(sys.executable).parent
        assert (bin_dir / "ledger").exists(), f"the `ledger` console script should be in {bin_dir}"
        self.environment = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
        [entrypoint] = dockerfile_instruction("ENTRYPOINT")
        self.image_entrypoint = json.loads(entrypoint)

    def _mapper(self, service: dict[str, Any]) -> Any:
        targets = {target: str(self.volumes[volume]) for volume, target, _ro in mounts_of(service)}
        if not targets:
            return lambda text: text
        pattern = re.compile("|".join(rf"(?<![\w./-]){re.escape(t)}(?![\w.-])"
                                      for t in sorted(targets, key=len, reverse=True)))
        return lambda text: pattern.sub(lambda match: targets[match.group(0)], text)

    def argv(self, service: dict[str, Any]) -> list[str]:
        entrypoint = argv_of(service["entrypoint"]) if "entrypoint" in service else self.image_entrypoint
        to_host = self._mapper(service)
        return [to_host(arg) for arg in entrypoint + argv_of(service.get("command"))]

    def env(self, service: dict[str, Any]) -> dict[str, str]:
        to_host = self._mapper(service)
        extra = service.get("environment", {})
        if isinstance(extra, list):
            extra = dict(item.split("=", 1) for item in extra)
        return {**self.environment, **{key: to_host(str(value)) for key, value in extra.items()}}

    def run_healthcheck(self, name: str) -> subprocess.CompletedProcess[str]:
        service = SERVICES[name]
        kind, *rest = service["healthcheck"]["test"]
        to_host = self._mapper(service)
        argv = [to_host(arg) for arg in (rest if kind == "CMD" else ["sh", "-c", *rest])]
        return subprocess.run(argv, env=self.env(service), cwd=self.root, capture_output=True, text=True,
                              timeout=10, check=False)

    def run_once(self, name: str) -> subprocess.CompletedProcess[str]:
        service = SERVICES[name]
        return subprocess.run(self.argv(service), env=self.env(service), cwd=self.root, capture_output=True,
                              text=True, timeout=60, check=False)

    def start(self, name: str) -> subprocess.Popen[bytes]:
        service = SERVICES[name]
        with open(self.root / f"{name}.log", "wb") as log:
            return subprocess.Popen(self.argv(service), env=self.env(service), cwd=self.root, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)


def resolve_service_names_to_loopback(net: Path) -> None:
    """What Docker's DNS does for the containers: a peer's service name reaches that service."""
    for config_file in net.glob("*/node.json"):
        config = json.loads(config_file.read_text())
        for peer in config["peers"]:
            host, _, port = peer["address"].rpartition(":")
            assert host in SERVICES, f"{config_file}: peers should be dialled by service name, not {host}"
            peer["address"] = f"127.0.0.1:{port}"
        config_file.write_text(json.dumps(config))


def require_free(port: int, wait_s: float = 30) -> None:
    """The nodes bind fixed ports (as in their containers): wait a little for one that is taken, then say so."""
    deadline = time.monotonic() + wait_s
    while True:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the node's servers do
            try:
                sock.bind(("0.0.0.0", port))
                return
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"port {port} is in use (a compose network, or another run of this test?): "
                                "docker-compose.yml fixes it")
        time.sleep(0.5)


def get_status(port: int) -> dict[str, Any] | None:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/v1/status", timeout=1.0)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None  # type: ignore[no-any-return]


def stop(process: subprocess.Popen[bytes], sig: int) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)


@pytest.mark.timeout(180)
def test_compose_services_run_as_local_processes(tmp_path: Path) -> None:
    host = LocalHost(tmp_path)
    [(net_volume, _target, _ro)] = mounts_of(SERVICES[INIT])
    net = host.volumes[net_volume]

    # A half-written volume (no genesis.json) is refused rather than completed.
    stray = LocalHost(tmp_path / "stray")
    (stray.volumes[net_volume] / "leftover").write_text("")
    refused = stray.run_once(INIT)
    assert refused.returncode != 0 and "output_exists" in refused.stderr

    # The genesis service runs once; run again, it keeps what is there.
    created = host.run_once(INIT)
    assert created.returncode == 0, created.stderr
    written = {path: path.read_bytes() for path in net.rglob("*") if path.is_file()}
    again = host.run_once(INIT)
    assert again.returncode == 0 and "keeping it" in again.stdout, again.stderr
    assert {path: path.read_bytes() for path in net.rglob("*") if path.is_file()} == written
    genesis_bytes = (net / "genesis.json").read_bytes()
    for name in VALIDATORS:
        assert (net / name / "genesis.json").read_bytes() == genesis_bytes
        node_json = json.loads((net / name / "node.json").read_text())
        assert node_json["api"] == f"0.0.0.0:{api_port(name)}", "the API a validator serves is the one it publishes"
        require_free(api_port(name))
        require_free(int(node_json["listen"].rpartition(":")[2]))

    resolve_service_names_to_loopback(net)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in VALIDATORS:
            processes[name] = host.start(name)

        deadline = time.monotonic() + START_TIMEOUT_S
        heads: set[tuple[int, str]] = set()
        while time.monotonic() < deadline:
            for name, process in processes.items():
                assert process.poll() is None, f"{name} exited: {(tmp_path / f'{name}.log').read_text()[-3000:]}"
            statuses = [get_status(api_port(name)) for name in VALIDATORS]
            heads = {(s["height"], s["head_hash"]) for s in statuses if s is not None}
            if all(statuses) and len(heads) == 1 and min(h for h, _ in heads) >= 3:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"no common head at height >= 3 after {START_TIMEOUT_S}s: {heads}")

        for name in VALIDATORS:
            check = host.run_healthcheck(name)
            assert check.returncode == 0, f"{name} healthcheck: {check.stderr}"

        for process in processes.values():
            stop(process, signal.SIGTERM)
        for name, process in processes.items():
            assert process.wait(timeout=STOP_TIMEOUT_S) == 0, name
            assert "stopped cleanly" in (tmp_path / f"{name}.log").read_text(), name
        assert host.run_healthcheck(VALIDATORS[0]).returncode != 0, "it fails when the node does not answer"
    finally:
        for process in processes.values():
            stop(process, signal.SIGKILL)
            process.wait()

    # Each node's chain is in its own volume, none in the shared one, and all hold the same blocks.
    common = min(h for h, _ in heads)
    hashes = set()
    for name in VALIDATORS:
        [data_volume] = [v for v, _target, read_only in mounts_of(SERVICES[name]) if not read_only]
        assert (host.volumes[data_volume] / STORE_FILE_NAME).exists(), name
        assert not (net / name / "data").exists(), f"{name} wrote into the shared volume"
        store = Store.open(host.volumes[data_volume])
        try:
            assert verify_store(store).ok, name
            hashes.add(store.get_header(common).compute_hash())
        finally:
            store.close()
    assert len(hashes) == 1
